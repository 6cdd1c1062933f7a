//! The HTTP/JSON API under `/v1`.
//!
//! Reads are served from the applied state under a short read lock; writes become
//! commands through the proposer and answer once committed and applied, so a client
//! that got a 201 for a submission knows it survives `kill -9`.

mod cluster;
mod error;
mod json;
mod openapi;
mod output;
mod tasks;

pub use error::ApiError;

use crate::auth::{ClusterToken, require_token};
use crate::node::Node;
use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use drover_types::Millis;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

pub fn router(node: Arc<Node>) -> Router {
    let token: ClusterToken = node.token.clone();
    let limit = node.config.max_body_bytes;
    Router::new()
        .route("/v1/health", get(cluster::health))
        .route("/v1/openapi.json", get(openapi::document))
        .route("/v1/cluster", get(cluster::summary))
        .route(
            "/v1/policy",
            get(cluster::get_policy).put(cluster::set_policy),
        )
        .route("/v1/workers", get(cluster::workers))
        .route("/v1/workers/{worker}/drain", post(cluster::drain))
        .route("/v1/workers/{worker}/resume", post(cluster::resume))
        .route("/v1/tasks", get(tasks::list).post(tasks::submit_task))
        .route("/v1/tasks/{task}", get(tasks::get))
        .route("/v1/tasks/{task}/cancel", post(tasks::cancel))
        .route("/v1/tasks/{task}/output", get(output::read))
        .route("/v1/jobs", post(tasks::submit_job))
        .route("/v1/jobs/{job}", get(tasks::get_job))
        .route("/v1/jobs/{job}/cancel", post(tasks::cancel_job))
        .route(
            drover_proto::worker::WORKER_CONNECT_PATH,
            get(crate::worker_session::connect),
        )
        .fallback(|| async { ApiError::not_found("no such route; see /v1/openapi.json") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                axum::http::StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "this route does not take that method; see /v1/openapi.json",
                None,
            )
        })
        .layer(DefaultBodyLimit::max(limit))
        .layer(axum::middleware::from_fn_with_state(token, require_token))
        .with_state(node)
}

/// Wall-clock time for pending reasons and durations of running tasks.
pub(crate) fn wall_now() -> Millis {
    Millis(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0),
    )
}
