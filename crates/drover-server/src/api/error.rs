//! API errors: every one a status code and a JSON body naming the field and the reason.

use crate::proposer::ProposeError;
use crate::retention::Retention;
use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use drover_proto::api::{ErrorBody, ErrorDetail};
use drover_state::Rejection;

#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub detail: ErrorDetail,
    /// The write was refused because this server turned out not to lead: nothing was
    /// applied, so `api/forward.rs` may pass it on to the leader (see [`NotLeader`]).
    pub not_leader: bool,
}

/// Set on a response (as an extension) whose write was refused, unapplied, because
/// this server no longer leads.
#[derive(Clone, Copy, Debug)]
pub struct NotLeader;

impl ApiError {
    pub fn new(
        status: StatusCode,
        code: &str,
        message: impl Into<String>,
        field: Option<String>,
    ) -> ApiError {
        ApiError {
            status,
            detail: ErrorDetail {
                code: code.to_string(),
                message: message.into(),
                field,
            },
            not_leader: false,
        }
    }

    pub fn invalid(field: Option<String>, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "invalid_request", message, field)
    }

    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", message, None)
    }

    /// A task or job that existed and was retired (`410 Gone`, code `retired`): it
    /// finished longer ago than the retention keeps, so its record, results and output
    /// are gone.
    pub fn retired(what: &str, id: u64, retention: &Retention) -> ApiError {
        ApiError::new(
            StatusCode::GONE,
            "retired",
            format!("{what} {id} was retired ({})", retention.describe()),
            // The message names it; a field would only repeat the path parameter.
            None,
        )
    }

    pub fn unauthorized(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", message, None)
    }

    pub fn too_large(message: impl Into<String>) -> ApiError {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            message,
            None,
        )
    }

    pub fn unavailable(message: impl Into<String>) -> ApiError {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            message,
            None,
        )
    }

    pub fn internal(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message, None)
    }
}

impl From<Rejection> for ApiError {
    fn from(r: Rejection) -> ApiError {
        let status = match r.code.as_str() {
            "invalid_request" => StatusCode::BAD_REQUEST,
            "not_found" => StatusCode::NOT_FOUND,
            "conflict" | "stale" => StatusCode::CONFLICT,
            "unavailable" => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::BAD_REQUEST,
        };
        ApiError::new(status, &r.code, r.message, r.field)
    }
}

impl From<ProposeError> for ApiError {
    fn from(e: ProposeError) -> ApiError {
        match e {
            ProposeError::NotLeader { .. } => ApiError {
                not_leader: true,
                ..ApiError::unavailable(e.to_string())
            },
            ProposeError::ShuttingDown => ApiError::unavailable(e.to_string()),
            ProposeError::NoQuorum { .. } => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "no_quorum",
                e.to_string(),
                None,
            ),
            ProposeError::Storage { .. } => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "storage_failed",
                e.to_string(),
                None,
            ),
            ProposeError::StateFailed { .. } => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "state_failed",
                e.to_string(),
                None,
            ),
            ProposeError::Stalled { .. } => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "write_stalled",
                e.to_string(),
                None,
            ),
            ProposeError::Raft(m) => {
                ApiError::unavailable(format!("the replicated log could not take the write: {m}"))
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut resp = (self.status, Json(ErrorBody { error: self.detail })).into_response();
        if self.not_leader {
            resp.extensions_mut().insert(NotLeader);
        }
        resp
    }
}

impl From<crate::membership::MembershipError> for ApiError {
    fn from(e: crate::membership::MembershipError) -> ApiError {
        use crate::membership::MembershipError as M;
        let (status, code) = match &e {
            M::Busy => (StatusCode::CONFLICT, "change_in_progress"),
            M::NotLeader | M::Removed => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            M::Unknown(_) => (StatusCode::NOT_FOUND, "not_found"),
            M::LastVoter { .. } => (StatusCode::CONFLICT, "last_voter"),
            M::NoMajority { .. } => (StatusCode::CONFLICT, "no_majority"),
            M::NotJoining { .. } => (StatusCode::CONFLICT, "not_joining"),
            M::IdTaken { .. } => (StatusCode::CONFLICT, "id_taken"),
            M::Unreachable { .. } | M::CatchUpTimeout { .. } => {
                (StatusCode::BAD_GATEWAY, "unreachable")
            }
            M::Raft(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
        };
        ApiError::new(status, code, e.to_string(), None)
    }
}
