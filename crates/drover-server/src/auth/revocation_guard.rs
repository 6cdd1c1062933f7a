//! Ends a response body once the ACL token that opened it stops being valid.
//!
//! An event stream or a followed log can stay open for hours; checking the token only
//! when it opens would let a revoked or expired token keep reading. Every response to an
//! ACL token (or a UI session of one) is wrapped: every [`CHECK_EVERY`] the token's
//! record in this server's applied state is looked at, and the body ends as soon as it
//! is revoked or expired. A revocation is applied on every server of the group within
//! a replication round trip, so streams close everywhere within a second. The wrapper
//! also holds the request's place in the token's concurrency limit until the body ends.

use super::token_limiter::InFlight;
use crate::node::Node;
use axum::body::{Body, Bytes};
use futures_util::Stream;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::time::{Interval, MissedTickBehavior};

/// How often an open body re-checks its token (a quarter of the 1 s promise).
pub const CHECK_EVERY: Duration = Duration::from_millis(250);

/// Whether ACL token `id` may still be used, by this server's applied state.
#[derive(Clone)]
pub struct TokenCheck {
    pub node: Arc<Node>,
    pub id: u64,
}

impl TokenCheck {
    pub fn usable(&self) -> bool {
        // The clock first: it takes the state lock too.
        let now = self.node.proposer.now();
        let sm = self.node.state.read();
        sm.tokens().get(self.id).is_some_and(|t| t.usable_at(now))
    }
}

/// A body that ends when its token stops being usable.
pub struct GuardedBody {
    inner: axum::body::BodyDataStream,
    tick: Interval,
    check: TokenCheck,
    _in_flight: Option<InFlight>,
    ended: bool,
}

impl GuardedBody {
    pub fn wrap(body: Body, check: TokenCheck, in_flight: Option<InFlight>) -> Body {
        let mut tick = tokio::time::interval(CHECK_EVERY);
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        // The first tick is immediate: the token was just checked, skip it.
        tick.reset();
        Body::from_stream(GuardedBody {
            inner: body.into_data_stream(),
            tick,
            check,
            _in_flight: in_flight,
            ended: false,
        })
    }
}

impl Stream for GuardedBody {
    type Item = Result<Bytes, axum::Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        if this.ended {
            return Poll::Ready(None);
        }
        while this.tick.poll_tick(cx).is_ready() {
            if !this.check.usable() {
                tracing::info!(
                    token = this.check.id,
                    "closing a response: its token was revoked or expired"
                );
                this.ended = true;
                return Poll::Ready(None);
            }
        }
        Pin::new(&mut this.inner).poll_next(cx)
    }
}
