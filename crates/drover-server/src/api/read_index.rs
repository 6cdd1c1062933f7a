//! Linearizable reads: a GET on tasks, jobs, workers, the cluster or the policy sees
//! at least every write acknowledged before it was sent, on whichever server answers.
//!
//! The read-index method (Raft §6.4), through openraft: the leader confirms with a
//! heartbeat round that a majority still follows it and takes its commit index as the
//! read index (`get_read_log_id`); the answering server serves once it has applied that
//! far. On the leader that is `ensure_linearizable`. A follower asks the leader for the
//! index (`GET /v1/raft/read-index`, one round trip plus the leader's heartbeat round)
//! and then waits for its own apply, so the read itself is still served locally.
//! Chosen over a leader lease because it assumes nothing about clocks, and over
//! forwarding the read because the follower's copy answers large lists without
//! shipping them through the leader.
//!
//! `?stale=true` skips the check and reads the local state as it is (what every read
//! was before): no network at all. A server alone skips it too: it is its own majority.

use super::ApiError;
use crate::node::Node;
use crate::raft::PEER_READ_INDEX_PATH;
use axum::extract::{Request, State};
use axum::http::{HeaderName, HeaderValue, Method, Uri};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long a read waits for the leader's confirmation and the local apply.
const READ_WAIT: Duration = Duration::from_secs(5);

/// On a removed server's refusals: the client should use another server.
pub const NOT_A_MEMBER: HeaderName = HeaderName::from_static("x-drover-not-a-member");

/// The leader's answer to `GET /v1/raft/read-index`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ReadIndex {
    pub index: u64,
}

/// The reads that go through the check: the replicated state. Not the output (read on
/// the leader anyway), the event stream (ordered by log index itself), health, the
/// server list (raft metrics, not state) or the docs.
fn is_state_read(path: &str) -> bool {
    let output = path.starts_with("/v1/tasks/") && path.ends_with("/output");
    !output
        && (path == "/v1/tasks"
            || path.starts_with("/v1/tasks/")
            || path.starts_with("/v1/jobs/")
            || path == "/v1/workers"
            || path == "/v1/cluster"
            || path == "/v1/policy")
}

pub async fn linearize_reads(
    State(node): State<Arc<Node>>,
    mut request: Request,
    next: Next,
) -> Response {
    if node.is_removed() && serves_members_only(request.uri().path()) {
        return not_a_member();
    }
    if request.method() != Method::GET {
        return next.run(request).await;
    }
    let stale = match take_stale(request.uri()) {
        Ok((stale, uri)) => {
            *request.uri_mut() = uri;
            stale
        }
        Err(e) => return e.into_response(),
    };
    if stale || !is_state_read(request.uri().path()) || !node.is_clustered() {
        return next.run(request).await;
    }
    if let Err(e) = read_barrier(&node).await {
        return e.into_response();
    }
    next.run(request).await
}

/// What a removed server refuses (its state is frozen at its removal, and it takes no
/// writes): everything but health, the API's description and the raft routes (which
/// answer the leader's notice and refuse an offer to rejoin).
fn serves_members_only(path: &str) -> bool {
    path.starts_with("/v1/")
        && path != "/v1/health"
        && path != "/v1/openapi.json"
        && !path.starts_with("/v1/docs")
        && !path.starts_with(crate::auth::PEER_PREFIX)
}

fn not_a_member() -> Response {
    let mut resp = ApiError::new(
        axum::http::StatusCode::SERVICE_UNAVAILABLE,
        "not_a_member",
        "this server was removed from the group; ask another server",
        None,
    )
    .into_response();
    resp.headers_mut()
        .insert(NOT_A_MEMBER, HeaderValue::from_static("1"));
    resp
}

/// Reads and removes `stale` from the query (the routes' own query parsers are strict).
fn take_stale(uri: &Uri) -> Result<(bool, Uri), ApiError> {
    let Some(query) = uri.query() else {
        return Ok((false, uri.clone()));
    };
    let mut stale = false;
    let mut kept = Vec::new();
    for pair in query.split('&') {
        match pair.split_once('=').unwrap_or((pair, "")) {
            ("stale", "true") => stale = true,
            ("stale", "false") => stale = false,
            ("stale", _) => {
                return Err(ApiError::invalid(
                    Some("stale".into()),
                    "must be true or false",
                ));
            }
            _ => kept.push(pair),
        }
    }
    let path_and_query = if kept.is_empty() {
        uri.path().to_string()
    } else {
        format!("{}?{}", uri.path(), kept.join("&"))
    };
    let mut parts = uri.clone().into_parts();
    parts.path_and_query = path_and_query.parse().ok();
    Ok((
        stale,
        Uri::from_parts(parts).unwrap_or_else(|_| uri.clone()),
    ))
}

/// Waits until this server has applied everything committed when the read arrived.
/// Through an election (a leader gone or removed) it keeps trying, up to [`READ_WAIT`],
/// as writes wait for the next leader.
async fn read_barrier(node: &Node) -> Result<(), ApiError> {
    let deadline = Instant::now() + READ_WAIT;
    loop {
        let tried = if node.is_leader() {
            confirm_here(node, deadline).await
        } else {
            confirm_with_leader(node, deadline).await
        };
        match tried {
            Ok(()) => return Ok(()),
            Err(e) if Instant::now() + RETRY_AFTER >= deadline => return Err(e),
            Err(e) => {
                tracing::debug!("a linearizable read waits: {}", e.detail.message);
                tokio::time::sleep(RETRY_AFTER).await;
            }
        }
    }
}

/// Between two tries of a read's check.
const RETRY_AFTER: Duration = Duration::from_millis(100);

/// On the leader: a heartbeat round confirms it still leads, then it waits until it
/// has applied its commit index.
async fn confirm_here(node: &Node, deadline: Instant) -> Result<(), ApiError> {
    let left = deadline.saturating_duration_since(Instant::now());
    match tokio::time::timeout(left, node.raft.ensure_linearizable()).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(ApiError::unavailable(format!(
            "this server could not confirm it still leads: {e}; try again, or read with ?stale=true"
        ))),
        Err(_) => Err(ApiError::unavailable(format!(
            "a majority did not confirm the leader within {READ_WAIT:?}; try again, or read with ?stale=true"
        ))),
    }
}

/// On a follower: the leader's read index, then this server's apply up to it.
async fn confirm_with_leader(node: &Node, deadline: Instant) -> Result<(), ApiError> {
    let leader = node
        .wait_for_leader(deadline)
        .await
        .and_then(|l| node.address_of(l).filter(|_| l != node.config.node_id))
        .ok_or_else(|| {
            ApiError::unavailable(
                "no leader is known to confirm the read; try again, or read with ?stale=true",
            )
        })?;
    let left = deadline.saturating_duration_since(Instant::now());
    let answer = node
        .http
        .get(format!(
            "{}{PEER_READ_INDEX_PATH}",
            node.config.peer_url(&leader)
        ))
        .bearer_auth(node.peer_token.as_str())
        .timeout(left)
        .send()
        .await
        .map_err(|e| {
            ApiError::unavailable(format!(
                "the leader at {leader} did not give a read index: {e}; try again, or read with ?stale=true"
            ))
        })?;
    if !answer.status().is_success() {
        return Err(ApiError::unavailable(format!(
            "the leader at {leader} did not give a read index (HTTP {}); try again, or read with ?stale=true",
            answer.status()
        )));
    }
    let ReadIndex { index } = answer
        .json()
        .await
        .map_err(|e| ApiError::unavailable(format!("unreadable read index from {leader}: {e}")))?;
    node.raft
        .wait(Some(deadline.saturating_duration_since(Instant::now())))
        .applied_index_at_least(Some(index), "the read index applied here")
        .await
        .map_err(|_| {
            ApiError::unavailable(format!(
                "this server did not apply up to the read index {index} within {READ_WAIT:?}; try again, or read with ?stale=true"
            ))
        })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stale_of(uri: &str) -> Result<(bool, String), String> {
        let uri: Uri = uri.parse().unwrap();
        take_stale(&uri)
            .map(|(stale, uri)| (stale, uri.to_string()))
            .map_err(|e| e.detail.field.unwrap_or_default())
    }

    #[test]
    fn stale_is_taken_out_of_the_query_and_the_rest_kept() {
        assert_eq!(stale_of("/v1/tasks"), Ok((false, "/v1/tasks".into())));
        assert_eq!(
            stale_of("/v1/tasks?stale=true"),
            Ok((true, "/v1/tasks".into()))
        );
        assert_eq!(
            stale_of("/v1/tasks?limit=1&stale=true&state=running"),
            Ok((true, "/v1/tasks?limit=1&state=running".into()))
        );
        assert_eq!(
            stale_of("/v1/tasks?stale=false&limit=2"),
            Ok((false, "/v1/tasks?limit=2".into()))
        );
        assert_eq!(stale_of("/v1/tasks?stale=yes"), Err("stale".into()));
    }

    #[test]
    fn only_reads_of_the_replicated_state_are_checked() {
        for path in [
            "/v1/tasks",
            "/v1/tasks/3",
            "/v1/jobs/1",
            "/v1/workers",
            "/v1/cluster",
            "/v1/policy",
        ] {
            assert!(is_state_read(path), "{path}");
        }
        for path in [
            "/v1/tasks/3/output",
            "/v1/events",
            "/v1/health",
            "/v1/servers",
            "/v1/openapi.json",
        ] {
            assert!(!is_state_read(path), "{path}");
        }
    }
}
