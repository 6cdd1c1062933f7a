//! A server whose state machine stopped (applying an entry panicked) serves nothing
//! from it: the state may be half-applied, and a wrong answer is worse than none.

use super::ApiError;
use crate::node::Node;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::sync::Arc;

/// Refuses every request but the health check (which reports the failure) with 503
/// `state_failed` naming the reason, once the state machine has stopped.
pub async fn refuse_when_state_failed(
    State(node): State<Arc<Node>>,
    request: Request,
    next: Next,
) -> Response {
    match node.state.failure() {
        Some(reason) if request.uri().path() != "/v1/health" => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "state_failed",
            reason,
            None,
        )
        .into_response(),
        _ => next.run(request).await,
    }
}
