//! The HTTP/JSON API under `/v1`.
//!
//! Reads are served from the applied state under a short read lock; writes become
//! commands through the proposer and answer once committed and applied, so a client
//! that got a 201 for a submission knows it survives `kill -9`.

pub(crate) mod access;
mod autoscale;
mod body_deadline;
mod cache;
mod checkpoint_peer;
mod cluster;
mod disttask;
mod error;
mod events;
mod forward;
mod json;
pub mod json_depth;
mod metrics;
mod openapi;
mod output;
mod output_peer;
mod raft;
mod read_index;
pub(crate) mod resize;
mod state_failed;
mod tasks;
mod tokens;
mod worker_identity;

pub use error::ApiError;
pub use json::parse_body;
pub use read_index::NOT_A_MEMBER;

use crate::auth::{AclTokens, Credentials, TokenLimiter, require_token};
use crate::node::Node;
use axum::Router;
use axum::extract::DefaultBodyLimit;
use std::sync::Arc;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use utoipa_swagger_ui::{Config, SwaggerUi};

/// Every route of the API, each registered from its handler's `#[utoipa::path]`: the
/// router and the OpenAPI document come from this one list.
pub(crate) fn routes() -> OpenApiRouter<Arc<Node>> {
    OpenApiRouter::with_openapi(openapi::ApiDoc::openapi())
        .routes(routes!(cluster::health))
        .routes(routes!(openapi::serve))
        .routes(routes!(cluster::summary))
        .routes(routes!(cluster::get_policy, cluster::set_policy))
        .routes(routes!(cluster::workers))
        .routes(routes!(cluster::servers, cluster::add_server))
        .routes(routes!(cluster::remove_server))
        .routes(routes!(cluster::drain))
        .routes(routes!(cluster::resume))
        .routes(routes!(tasks::list, tasks::submit_task))
        .routes(routes!(tasks::get))
        .routes(routes!(tasks::cancel))
        .routes(routes!(resize::resize))
        .routes(routes!(output::read))
        .routes(routes!(events::stream))
        .routes(routes!(tasks::submit_job))
        .routes(routes!(tasks::get_job))
        .routes(routes!(tasks::cancel_job))
        .routes(routes!(tokens::list, tokens::create))
        .routes(routes!(tokens::revoke))
        .routes(routes!(cache::list, cache::clear))
        .routes(routes!(cache::remove))
        .routes(routes!(crate::worker_session::connect))
        .routes(routes!(worker_identity::create_token))
        .routes(routes!(worker_identity::list))
        .routes(routes!(worker_identity::revoke))
        // DistTask-compatible routes (outside /v1: the seed's clients post to them).
        .routes(routes!(disttask::submit_task))
        .routes(routes!(disttask::get_results))
        .routes(routes!(disttask::status))
        .routes(routes!(autoscale::status))
}

/// The OpenAPI document of [`router`], as served at `/v1/openapi.json`.
pub fn openapi_document() -> &'static str {
    openapi::document()
}

/// The server's whole HTTP surface: the API, the browsable docs, the fallbacks, the
/// body limit and the token check.
pub fn router(node: Arc<Node>) -> Router {
    let credentials = Credentials {
        cluster: node.token.clone(),
        peer: node.peer_token.clone(),
        session: crate::ui::session::SessionKey::new(node.token.clone()),
        acl: Some(AclTokens {
            node: node.clone(),
            limiter: TokenLimiter::new(node.config.token_limits),
        }),
    };
    let limit = node.config.max_body_bytes;
    let (api, _) = routes().split_for_parts();
    let docs = SwaggerUi::new(openapi::DOCS_PATH).config(Config::from(openapi::SPEC_PATH));
    // The raft RPCs: internal, not in the OpenAPI document (see `api/raft.rs`).
    api.merge(docs)
        .merge(raft::routes())
        .route(metrics::PATH, axum::routing::get(metrics::scrape))
        .merge(output_peer::routes())
        .merge(checkpoint_peer::routes(
            node.config.input_limits.max_checkpoint_bytes,
        ))
        .fallback(|| async { ApiError::not_found("no such route; see /v1/openapi.json") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                axum::http::StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "this route does not take that method; see /v1/openapi.json",
                None,
            )
        })
        .layer(axum::middleware::from_fn_with_state(
            node.clone(),
            forward::forward_writes,
        ))
        .layer(axum::middleware::from_fn_with_state(
            node.clone(),
            read_index::linearize_reads,
        ))
        .layer(axum::middleware::from_fn_with_state(
            node.clone(),
            state_failed::refuse_when_state_failed,
        ))
        .layer(DefaultBodyLimit::max(limit))
        .layer(axum::middleware::from_fn_with_state(
            node.clone(),
            body_deadline::limit_body_time,
        ))
        .layer(axum::middleware::from_fn_with_state(
            credentials,
            require_token,
        ))
        .layer(axum::middleware::from_fn_with_state(
            node.clone(),
            metrics::time_requests,
        ))
        // The web UI, after the layers: its page and assets are public (they hold no
        // cluster data) and its login checks the token itself; never forwarded, since
        // the cookie it sets is for the server the browser talks to.
        .merge(crate::ui::routes())
        .with_state(node)
}
