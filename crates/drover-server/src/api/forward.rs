//! Writes sent to a follower are forwarded to the leader.
//!
//! Only the leader can append to the log. Rather than have every client learn where the
//! leader is, a follower passes a write (any method but GET/HEAD/OPTIONS) on to the
//! leader and relays its answer. While no leader is known (an election) the write waits,
//! up to [`LEADER_WAIT`], then fails with 503. Reads, task output included, are answered
//! locally.

use super::ApiError;
use super::error::NotLeader;
use crate::auth::PEER_PREFIX;
use crate::node::Node;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderName, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use drover_proto::worker::WORKER_CONNECT_PATH;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long a write waits for a leader to be elected (or reachable).
pub const LEADER_WAIT: Duration = Duration::from_secs(10);
/// Longest a forwarded write may take at the leader (a large job is one write).
const FORWARD_TIMEOUT: Duration = Duration::from_secs(120);
/// Marks a forwarded request: a server never forwards one again (no loops while two
/// servers disagree on who leads).
pub(crate) const FORWARDED: HeaderName = HeaderName::from_static("x-drover-forwarded");
/// On the leader's answer to a forwarded request: the log index it had applied.
const APPLIED: HeaderName = HeaderName::from_static("x-drover-applied");
/// Longest a follower waits to apply a forwarded write before relaying the answer.
const APPLY_WAIT: Duration = Duration::from_secs(2);

pub async fn forward_writes(
    State(node): State<Arc<Node>>,
    request: Request,
    next: Next,
) -> Response {
    let path = request.uri().path();
    let read = matches!(
        *request.method(),
        Method::GET | Method::HEAD | Method::OPTIONS
    );
    // Task output is on every server too (`output_replication.rs`), so it is read
    // locally like the rest.
    if read || path.starts_with(PEER_PREFIX) || path == WORKER_CONNECT_PATH || !node.is_clustered()
    {
        return next.run(request).await;
    }
    let forwarded = request.headers().contains_key(&FORWARDED);
    let deadline = Instant::now() + LEADER_WAIT;
    let Some(mut leader) = node.wait_for_leader(deadline).await else {
        return no_leader();
    };
    // The body, kept: a write this server refuses because it turns out not to lead (a
    // restarted leader believes it still does until it hears of the new term) is passed
    // on to the leader rather than failed, since nothing was applied.
    let (parts, body) = request.into_parts();
    let body = match axum::body::to_bytes(body, node.config.max_body_bytes).await {
        Ok(b) => b,
        Err(e) => return ApiError::too_large(e.to_string()).into_response(),
    };
    if leader == node.config.node_id {
        let mut again = Request::builder()
            .method(parts.method.clone())
            .uri(parts.uri.clone())
            .version(parts.version);
        if let Some(h) = again.headers_mut() {
            *h = parts.headers.clone();
        }
        // (The extensions carry the body limit set by the outer layer.)
        if let Some(x) = again.extensions_mut() {
            *x = parts.extensions.clone();
        }
        let request = match again.body(Body::from(body.clone())) {
            Ok(r) => r,
            Err(e) => return ApiError::internal(e.to_string()).into_response(),
        };
        let mut resp = next.run(request).await;
        if resp.extensions().get::<NotLeader>().is_some() && !forwarded {
            match node.wait_for_leader(deadline).await {
                Some(l) if l != node.config.node_id => leader = l,
                _ => return resp,
            }
            return forward(&node, leader, parts, body, deadline, None).await;
        }
        if forwarded {
            // What the forwarding server must have applied before it answers, so that
            // a client reading from it next sees its own write.
            let applied = node
                .raft
                .metrics()
                .borrow()
                .last_applied
                .map_or(0, |l| l.index);
            resp.headers_mut()
                .insert(APPLIED, axum::http::HeaderValue::from(applied));
        }
        return resp;
    }
    if forwarded {
        return ApiError::unavailable(
            "this server is not the leader (the write was forwarded here by a server that thought it was); try again",
        )
        .into_response();
    }
    forward(&node, leader, parts, body, deadline, Some(next)).await
}

/// Sends a write to the leader and relays its answer.
async fn forward(
    node: &Node,
    leader: u64,
    parts: axum::http::request::Parts,
    body: axum::body::Bytes,
    deadline: Instant,
    // `None` once this server has run the request itself (and refused it).
    next: Option<Next>,
) -> Response {
    let path_and_query = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| parts.uri.path().to_string());
    let mut leader = leader;
    loop {
        let Some(addr) = node.address_of(leader) else {
            return no_leader();
        };
        let mut req = node
            .http
            .request(
                parts.method.clone(),
                format!("{}{path_and_query}", node.config.peer_url(&addr)),
            )
            .header(&FORWARDED, node.config.node_id.to_string())
            .body(body.clone())
            .timeout(FORWARD_TIMEOUT);
        for (name, value) in &parts.headers {
            if name != axum::http::header::HOST
                && name != axum::http::header::CONTENT_LENGTH
                && name != axum::http::header::CONNECTION
            {
                req = req.header(name, value);
            }
        }
        match req.send().await {
            // The one we took for the leader was removed from the group and refused
            // the write untouched: send it to the next leader, once there is one.
            Ok(resp)
                if resp.headers().contains_key(super::NOT_A_MEMBER)
                    && Instant::now() < deadline =>
            {
                tracing::debug!(%addr, "forwarding a write: the leader was removed; waiting for another");
                match next_leader(node, leader, deadline).await {
                    Some(l) if l == node.config.node_id => {
                        let Some(next) = next else {
                            return no_leader();
                        };
                        let request = Request::from_parts(parts, Body::from(body));
                        return next.run(request).await;
                    }
                    Some(l) => leader = l,
                    None => return no_leader(),
                }
            }
            Ok(resp) => {
                let applied = resp
                    .headers()
                    .get(&APPLIED)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse::<u64>().ok());
                if let Some(index) = applied {
                    // Read-your-writes through this server: wait (briefly) until it
                    // has applied what the leader had when it answered.
                    let _ = node
                        .raft
                        .wait(Some(APPLY_WAIT))
                        .applied_index_at_least(Some(index), "the forwarded write applied here")
                        .await;
                }
                return relay(resp).await;
            }
            // Never sent: the leader is gone. Safe to send again, to the next one.
            Err(e) if e.is_connect() && Instant::now() < deadline => {
                tracing::debug!(%addr, "forwarding a write: the leader is unreachable ({e}); waiting for another");
                tokio::time::sleep(Duration::from_millis(100)).await;
                match node.wait_for_leader(deadline).await {
                    Some(l) if l == node.config.node_id => {
                        let Some(next) = next else {
                            return no_leader();
                        };
                        let request = Request::from_parts(parts, Body::from(body));
                        return next.run(request).await;
                    }
                    Some(l) => leader = l,
                    None => return no_leader(),
                }
            }
            Err(e) => {
                return ApiError::unavailable(format!(
                    "the leader ({addr}) did not answer the forwarded write: {e}; it may or may not have been applied"
                ))
                .into_response();
            }
        }
    }
}

/// A leader other than `gone`, once one is known; `None` if none is by `deadline`.
async fn next_leader(node: &Node, gone: u64, deadline: Instant) -> Option<u64> {
    loop {
        let l = node.wait_for_leader(deadline).await?;
        if l != gone {
            return Some(l);
        }
        if Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn no_leader() -> Response {
    ApiError::unavailable(format!(
        "no leader: the servers could not elect one within {LEADER_WAIT:?} (is a majority of them up?)"
    ))
    .into_response()
}

/// The leader's answer, relayed as it streams in.
async fn relay(resp: reqwest::Response) -> Response {
    let status = StatusCode::from_u16(resp.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
    let content_type = resp.headers().get(reqwest::header::CONTENT_TYPE).cloned();
    let mut out = (status, Body::from_stream(resp.bytes_stream())).into_response();
    if let Some(ct) = content_type {
        out.headers_mut()
            .insert(axum::http::header::CONTENT_TYPE, ct);
    }
    out
}
