//! A deadline for reading a request's body: a client that sent its headers and then
//! trickles the body (slowloris on the body) gets a 408 once
//! `InputLimits::body_read_timeout` has passed since the request arrived, instead of
//! holding a task and a connection for as long as it likes. The headers have their own
//! timeout in the listener (`tls/listener.rs`).

use crate::node::Node;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use futures_util::StreamExt;
use std::sync::Arc;
use std::time::Duration;

/// The error a body read ends with at its deadline; `json.rs` tells it from other
/// body errors by its type.
#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive within {0:?}")]
pub struct BodyReadTimedOut(pub Duration);

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Wraps the request's body so that reading it fails with [`BodyReadTimedOut`] at the
/// deadline. Bodies known to be empty (most GETs) are left alone.
pub async fn limit_body_time(State(node): State<Arc<Node>>, req: Request, next: Next) -> Response {
    use axum::body::HttpBody;
    if req.body().size_hint().exact() == Some(0) {
        return next.run(req).await;
    }
    let limit = node.config.input_limits.body_read_timeout;
    let deadline = tokio::time::Instant::now() + limit;
    let (parts, body) = req.into_parts();
    let chunks = body.into_data_stream();
    let timed = futures_util::stream::unfold(Some(chunks), move |chunks| {
        let node = node.clone();
        async move {
            let mut chunks = chunks?;
            match tokio::time::timeout_at(deadline, chunks.next()).await {
                Ok(Some(chunk)) => Some((chunk.map_err(BoxError::from), Some(chunks))),
                Ok(None) => None,
                Err(_) => {
                    node.state.metrics().limit_hit("body_read_timeout");
                    let e: BoxError = Box::new(BodyReadTimedOut(limit));
                    Some((Err(e), None))
                }
            }
        }
    });
    next.run(Request::from_parts(parts, Body::from_stream(timed)))
        .await
}

/// Whether a body read failed at its deadline (looked for along the error's sources).
pub fn timed_out(mut err: Option<&(dyn std::error::Error + 'static)>) -> bool {
    while let Some(e) = err {
        if e.is::<BodyReadTimedOut>() {
            return true;
        }
        err = e.source();
    }
    false
}
