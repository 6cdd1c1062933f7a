//! The servers' output routes (peer token only, not in the OpenAPI document): a leader
//! posts the frames workers sent it (`output_replication.rs`), and a server repairing
//! its copy of an ended attempt reads a peer's (`output_repair.rs`).

use super::ApiError;
use super::json::QueryParams;
use crate::node::Node;
use crate::output_repair::COVERED_HEADER;
use crate::output_replication::{OUTPUT_PATH, decode_batch};
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::header;
use axum::response::Response;
use axum::routing::post;
use drover_proto::worker::OutputStream;
use drover_types::{Attempt, TaskId};
use serde::Deserialize;
use std::sync::Arc;

/// Largest answer to one read; the repairing server asks again from where it got to.
const MAX_READ: usize = 16 << 20;

pub(crate) fn routes() -> Router<Arc<Node>> {
    Router::new().route(OUTPUT_PATH, post(store).get(read))
}

/// Stores a batch of frames (each skipped where this server already holds it).
async fn store(State(node): State<Arc<Node>>, body: Bytes) -> Result<(), ApiError> {
    let frames =
        decode_batch(&body).map_err(|e| ApiError::invalid(None, format!("the body: {e}")))?;
    let output = node.output.clone();
    // A frame past a hole in this copy (frames dropped for this server while it was
    // down) is left out; reads fill the hole from a peer.
    tokio::task::spawn_blocking(move || {
        frames
            .iter()
            .try_for_each(|f| output.append_copy(f).map(|_| ()))
    })
    .await
    .map_err(|e| ApiError::internal(e.to_string()))?
    .map_err(|e| ApiError::internal(format!("could not store the output: {e}")))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReadQuery {
    task: u64,
    attempt: u32,
    stream: String,
    offset: u64,
}

/// This server's copy of a stream from an offset, with how far it holds it.
async fn read(
    State(node): State<Arc<Node>>,
    QueryParams(q): QueryParams<ReadQuery>,
) -> Result<Response, ApiError> {
    let stream = match q.stream.as_str() {
        "stdout" => OutputStream::Stdout,
        "stderr" => OutputStream::Stderr,
        other => {
            return Err(ApiError::invalid(
                Some("stream".into()),
                format!("{other:?} is not a stream: use stdout or stderr"),
            ));
        }
    };
    let (task, attempt) = (TaskId(q.task), Attempt(q.attempt));
    let output = node.output.clone();
    let (covered, data) = tokio::task::spawn_blocking(move || {
        let covered = output.covered(task, attempt, stream)?;
        let (data, _) = output.read(task, attempt, stream, q.offset, MAX_READ)?;
        Ok::<_, std::io::Error>((covered, data))
    })
    .await
    .map_err(|e| ApiError::internal(e.to_string()))?
    .map_err(|e| ApiError::internal(format!("could not read the output: {e}")))?;
    Response::builder()
        .header(header::CONTENT_TYPE, "application/octet-stream")
        .header(COVERED_HEADER, covered)
        .body(Body::from(data))
        .map_err(|e| ApiError::internal(e.to_string()))
}
