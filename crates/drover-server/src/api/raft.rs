//! The receiving side of the server-to-server transport (`raft/network.rs` sends):
//! openraft's three RPCs, as JSON but for snapshot chunks (binary, see
//! `SnapshotChunk`). Internal: only the peer token opens these routes
//! (see `auth.rs`), and they are deliberately left out of the OpenAPI document.

use crate::node::Node;
use crate::raft::{APPEND_PATH, SNAPSHOT_PATH, SnapshotChunk, TypeConfig, VOTE_PATH};
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use openraft::raft::{AppendEntriesRequest, VoteRequest};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::sync::Arc;

pub(crate) fn routes() -> Router<Arc<Node>> {
    Router::new()
        .route(APPEND_PATH, post(append))
        .route(VOTE_PATH, post(vote))
        .route(SNAPSHOT_PATH, post(snapshot))
}

fn parse<T: DeserializeOwned>(body: &[u8]) -> Result<T, super::ApiError> {
    serde_json::from_slice(body)
        .map_err(|e| super::ApiError::invalid(None, format!("not a raft RPC: {e}")))
}

/// The RPC's `Result` as JSON; the sender turns an `Err` into openraft's remote error.
fn answer<T: Serialize>(value: &T) -> Response {
    match serde_json::to_vec(value) {
        Ok(body) => ([(header::CONTENT_TYPE, "application/json")], body).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

async fn append(State(node): State<Arc<Node>>, body: Bytes) -> Response {
    let rpc: AppendEntriesRequest<TypeConfig> = match parse(&body) {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    answer(&node.raft.append_entries(rpc).await)
}

async fn vote(State(node): State<Arc<Node>>, body: Bytes) -> Response {
    let rpc: VoteRequest<u64> = match parse(&body) {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    answer(&node.raft.vote(rpc).await)
}

async fn snapshot(State(node): State<Arc<Node>>, body: Bytes) -> Response {
    let rpc = match SnapshotChunk::decode(&body) {
        Ok(r) => r,
        Err(e) => {
            return super::ApiError::invalid(None, format!("not a snapshot chunk: {e}"))
                .into_response();
        }
    };
    answer(&node.raft.install_snapshot(rpc).await)
}
