//! The servers' checkpoint route (peer token only, not in the OpenAPI document): the
//! leader posts each version it took from a worker, and a server that lacks a version
//! reads a peer's (`checkpoint/peer_copies.rs`).

use super::ApiError;
use super::json::QueryParams;
use crate::checkpoint::CheckpointError;
use crate::checkpoint::peer_copies::CHECKPOINT_PATH;
use crate::node::Node;
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, State};
use axum::http::header;
use axum::response::Response;
use axum::routing::post;
use drover_proto::checkpoint::CheckpointRef;
use drover_types::{Attempt, TaskId};
use serde::Deserialize;
use std::sync::Arc;

pub(crate) fn routes(max_checkpoint: u64) -> Router<Arc<Node>> {
    // A version is posted whole: the route takes up to `--max-checkpoint` whatever the
    // API's body limit is (the innermost limit wins).
    let limit = usize::try_from(max_checkpoint).unwrap_or(usize::MAX);
    Router::new().route(
        CHECKPOINT_PATH,
        post(store).get(read).layer(DefaultBodyLimit::max(limit)),
    )
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct VersionQuery {
    task: u64,
    attempt: u32,
    version: u32,
    size: u64,
    digest: String,
}

impl VersionQuery {
    fn reference(&self) -> (TaskId, CheckpointRef) {
        (
            TaskId(self.task),
            CheckpointRef {
                attempt: Attempt(self.attempt),
                version: self.version,
                size: self.size,
                digest: self.digest.clone(),
                saved_at: Default::default(),
            },
        )
    }
}

/// Stores a version (checked against the digest and size named in the query). A
/// retired task's is refused: its checkpoints were deleted here, and a copy arriving
/// late must not bring them back.
async fn store(
    State(node): State<Arc<Node>>,
    QueryParams(q): QueryParams<VersionQuery>,
    body: Bytes,
) -> Result<(), ApiError> {
    let (task, c) = q.reference();
    if node.state.read().scheduler().task_retired(task) {
        return Err(ApiError::retired("task", task.0, &node.config.retention));
    }
    let store = node.checkpoints.clone();
    match tokio::task::spawn_blocking(move || store.save(task, &c, &body)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e @ CheckpointError::DigestMismatch { .. })) => {
            Err(ApiError::invalid(Some("digest".into()), e.to_string()))
        }
        Ok(Err(e)) => Err(ApiError::internal(e.to_string())),
        Err(e) => Err(ApiError::internal(e.to_string())),
    }
}

/// This server's copy of a version; 404 when it does not hold it whole.
async fn read(
    State(node): State<Arc<Node>>,
    QueryParams(q): QueryParams<VersionQuery>,
) -> Result<Response, ApiError> {
    let (task, c) = q.reference();
    let store = node.checkpoints.clone();
    let bytes = match tokio::task::spawn_blocking(move || store.load(task, &c)).await {
        Ok(Ok(b)) => b,
        Ok(Err(e @ CheckpointError::Missing { .. })) => {
            return Err(ApiError::not_found(e.to_string()));
        }
        // A damaged copy is as good as none: the asking server tries another peer.
        Ok(Err(e @ CheckpointError::DigestMismatch { .. })) => {
            return Err(ApiError::not_found(e.to_string()));
        }
        Ok(Err(e)) => return Err(ApiError::internal(e.to_string())),
        Err(e) => return Err(ApiError::internal(e.to_string())),
    };
    Response::builder()
        .header(header::CONTENT_TYPE, "application/octet-stream")
        .body(Body::from(bytes))
        .map_err(|e| ApiError::internal(e.to_string()))
}
