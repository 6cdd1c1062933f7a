//! `/v1/cache`: the result cache's entries, and removing them (see
//! `drover-state/src/result_cache.rs`). Listing needs `read`, removing `operator`; the
//! cache is cluster-wide, so namespace-scoped tokens get 403 (`api/access.rs`).

use super::error::ApiError;
use super::json::{NoBody, PathParam};
use super::openapi::{NotFound, Refused, WriteRefused};
use crate::node::Node;
use axum::Json;
use axum::extract::State;
use drover_proto::api::{CacheEntryInfo, CacheList, CacheRemoved};
use drover_state::result_cache::{MAX_BYTES, MAX_ENTRIES};
use drover_state::{CacheEntry, Command, CommandResult};
use std::sync::Arc;

fn info(e: &CacheEntry) -> CacheEntryInfo {
    CacheEntryInfo {
        key: e.key.clone(),
        task: e.task,
        attempt: e.attempt,
        result: e.result.clone(),
        stdout_bytes: e.stdout_bytes,
        stderr_bytes: e.stderr_bytes,
        created_at: e.created_at,
        expires_at: e.expires_at,
        hits: e.hits,
        size: e.size(),
    }
}

/// The live entries of the result cache, oldest first (expired ones are left out:
/// they are never used and go at the next retention).
#[utoipa::path(
    get,
    path = "/v1/cache",
    tag = "cache",
    responses((status = 200, description = "The entries, oldest first", body = CacheList), Refused)
)]
pub async fn list(State(node): State<Arc<Node>>) -> Json<CacheList> {
    let now = node.proposer.now();
    let sm = node.state.read();
    let mut entries: Vec<CacheEntryInfo> = sm
        .cache()
        .entries()
        .filter(|e| e.expires_at > now)
        .map(info)
        .collect();
    entries.sort_by(|a, b| (a.created_at, &a.key).cmp(&(b.created_at, &b.key)));
    Json(CacheList {
        entries,
        bytes: sm.cache().bytes(),
        max_bytes: MAX_BYTES,
        max_entries: MAX_ENTRIES as u64,
    })
}

/// Removes one entry: the next task with that key runs.
#[utoipa::path(
    delete,
    path = "/v1/cache/{key}",
    tag = "cache",
    params(("key" = String, Path, description = "The entry's key: 64 hex digits", pattern = "^[0-9a-fA-F]{64}$")),
    responses(
        (status = 200, description = "Removed", body = CacheRemoved),
        Refused, NotFound, WriteRefused
    )
)]
pub async fn remove(
    State(node): State<Arc<Node>>,
    PathParam(key): PathParam<String>,
    _: NoBody,
) -> Result<Json<CacheRemoved>, ApiError> {
    if key.len() != 64 || !key.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(ApiError::invalid(
            Some("key".into()),
            "a cache key is 64 hex digits (see GET /v1/cache)",
        ));
    }
    let key = key.to_ascii_lowercase();
    answer(node.proposer.propose(Command::CacheRemove { key }).await?)
}

/// Empties the result cache.
#[utoipa::path(
    delete,
    path = "/v1/cache",
    tag = "cache",
    responses((status = 200, description = "Emptied", body = CacheRemoved), Refused, WriteRefused)
)]
pub async fn clear(
    State(node): State<Arc<Node>>,
    _: NoBody,
) -> Result<Json<CacheRemoved>, ApiError> {
    answer(node.proposer.propose(Command::CacheClear).await?)
}

fn answer(result: CommandResult) -> Result<Json<CacheRemoved>, ApiError> {
    match result {
        CommandResult::CacheRemoved { count } => Ok(Json(CacheRemoved { removed: count })),
        CommandResult::Rejected(r) => Err(r.into()),
        other => Err(ApiError::internal(format!(
            "unexpected answer to a cache removal: {other:?}"
        ))),
    }
}
