//! The receiving side of the server-to-server transport (`raft/network.rs` sends):
//! openraft's three RPCs, as JSON but for snapshot chunks (binary, see
//! `SnapshotChunk`). Internal: only the peer token opens these routes
//! (see `auth.rs`), and they are deliberately left out of the OpenAPI document.

use crate::membership::Adoption;
use crate::node::Node;
use crate::raft::{
    APPEND_PATH, PEER_ADOPT_PATH, PEER_JOIN_PATH, PEER_READ_INDEX_PATH, PEER_REMOVED_PATH,
    SNAPSHOT_PATH, SnapshotChunk, TypeConfig, VOTE_PATH,
};
use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use drover_proto::api::AddServer;
use openraft::raft::{AppendEntriesRequest, VoteRequest};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::sync::Arc;

pub(crate) fn routes() -> Router<Arc<Node>> {
    Router::new()
        .route(APPEND_PATH, post(append))
        .route(VOTE_PATH, post(vote))
        .route(SNAPSHOT_PATH, post(snapshot))
        .route(PEER_JOIN_PATH, post(join))
        .route(PEER_ADOPT_PATH, post(adopt))
        .route(PEER_REMOVED_PATH, post(removed))
        .route(PEER_READ_INDEX_PATH, get(read_index))
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

/// A server asks to be added (`drover server --join`); on a follower, passed to the
/// leader (these routes are not forwarded by the API's middleware).
async fn join(State(node): State<Arc<Node>>, body: Bytes) -> Response {
    let ask: AddServer = match parse(&body) {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    if node.is_leader() {
        return match super::cluster::checked_address(&ask.address) {
            Ok(address) => match node.changes.add(&node, &address).await {
                Ok(c) => Json(super::cluster::server_change(c)).into_response(),
                Err(e) => super::ApiError::from(e).into_response(),
            },
            Err(e) => e.into_response(),
        };
    }
    let deadline = std::time::Instant::now() + super::forward::LEADER_WAIT;
    let Some(leader) = node.wait_for_leader(deadline).await else {
        return super::ApiError::unavailable("no leader known to pass the request to")
            .into_response();
    };
    let Some(addr) = node
        .address_of(leader)
        .filter(|_| leader != node.config.node_id)
    else {
        return super::ApiError::unavailable("no leader known to pass the request to")
            .into_response();
    };
    let sent = node
        .http
        .post(format!("{}{PEER_JOIN_PATH}", node.config.peer_url(&addr)))
        .bearer_auth(node.peer_token.as_str())
        .timeout(crate::membership::CATCH_UP + std::time::Duration::from_secs(20))
        .body(body)
        .header(header::CONTENT_TYPE, "application/json")
        .send()
        .await;
    match sent {
        Ok(r) => {
            let status =
                StatusCode::from_u16(r.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
            let text = r.bytes().await.unwrap_or_default();
            (status, [(header::CONTENT_TYPE, "application/json")], text).into_response()
        }
        Err(e) => super::ApiError::unavailable(format!("the leader at {addr} did not answer: {e}"))
            .into_response(),
    }
}

/// The leader offers an id to a server that waits to join; a running member answers
/// with the id it has (it is rejoining), a removed one refuses.
async fn adopt(State(node): State<Arc<Node>>) -> Response {
    if node.is_removed() {
        return super::ApiError::new(
            StatusCode::CONFLICT,
            "removed",
            "this server was removed from the group; start a fresh one (a new data directory) to add",
            None,
        )
        .into_response();
    }
    Json(Adoption {
        node_id: node.config.node_id,
    })
    .into_response()
}

/// The leader says this server was removed from the group.
async fn removed(State(node): State<Arc<Node>>) -> Response {
    node.mark_removed();
    StatusCode::NO_CONTENT.into_response()
}

/// A follower asks the leader for a read index (see `api/read_index.rs`): the leader
/// confirms with a majority that it still leads and answers its commit point.
async fn read_index(State(node): State<Arc<Node>>) -> Response {
    match node.raft.get_read_log_id().await {
        Ok((read, _applied)) => Json(super::read_index::ReadIndex {
            index: read.map_or(0, |l| l.index),
        })
        .into_response(),
        Err(e) => super::ApiError::unavailable(format!("not the leader: {e}")).into_response(),
    }
}
