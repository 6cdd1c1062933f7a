//! The OpenAPI document of the API, served at `/v1/openapi.json` and browsable at
//! `/v1/docs`.
//!
//! Generated, not written: every route is registered through utoipa-axum's
//! `OpenApiRouter` from its handler's `#[utoipa::path]` (see `api/mod.rs`), so a route
//! the router serves is a route the document lists, with its parameters, bodies and
//! answers taken from the handlers' types (`drover-types` and `drover-proto` derive
//! their schemas under their `openapi` feature).

use axum::http::header;
use axum::response::{IntoResponse, Response};
use drover_proto::api::ErrorBody;
use std::sync::OnceLock;
use utoipa::openapi::OpenApi as Document;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi};

/// Where the browsable documentation is served.
pub const DOCS_PATH: &str = "/v1/docs";
/// Where the document is served.
pub const SPEC_PATH: &str = "/v1/openapi.json";

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Drover API",
        description = "Submit, watch and control tasks on a Drover cluster.\n\n\
            Every route but `/v1/health`, this document and the docs UI needs a bearer \
            credential (`Authorization: Bearer <token>`): the cluster token (in \
            `<data dir>/server/token`; the admin's) or a client token made with \
            `POST /v1/tokens`, whose role (`read`, `submit`, `operator`, `admin`) must open \
            the route (403 otherwise).\n\n\
            Request bodies are read strictly: objects must be objects, unknown or repeated \
            fields are errors, and scalars are never converted. Every refusal is a 4xx with \
            `{\"error\": {\"code\", \"message\", \"field\"}}`, where `field` is the path of \
            the offending field (`tasks[2].resources.cpu_milli`).\n\n\
            Reads of tasks, jobs, workers, the cluster and the policy are linearizable on \
            every server of a group: they see every write acknowledged before they were \
            sent (a 503 when no majority confirms the leader). Every GET also takes \
            `stale=true` in its query: the answering server's state as it is, without that \
            check.",
        license(name = "Apache-2.0", identifier = "Apache-2.0")
    ),
    modifiers(&BearerToken),
    security(("token" = [])),
    components(schemas(ErrorBody)),
    tags(
        (name = "tasks", description = "Submit, read, list and cancel tasks and jobs"),
        (name = "cluster", description = "The cluster, its workers and its scheduling policy"),
        (name = "meta", description = "Health, this document, the worker endpoint"),
        (name = "tokens", description = "Client ACL tokens (admin only)"),
        (name = "disttask", description = "DistTask-compatible routes over the task API: serialized Python functions (see the Python SDK)"),
        (name = "cache", description = "The result cache: entries by key, removal"),
    )
)]
pub struct ApiDoc;

struct BearerToken;

impl Modify for BearerToken {
    fn modify(&self, doc: &mut Document) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "token",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
    }
}

/// The document, built once from the same routes the server serves.
pub fn document() -> &'static str {
    static DOC: OnceLock<String> = OnceLock::new();
    DOC.get_or_init(|| {
        let (_, doc) = super::routes().split_for_parts();
        doc.to_pretty_json()
            .expect("the OpenAPI document serializes")
    })
}

/// This document.
#[utoipa::path(
    get,
    path = "/v1/openapi.json",
    tag = "meta",
    security(()),
    responses((status = 200, description = "This OpenAPI document (OpenAPI 3.1)", content_type = "application/json", body = Object))
)]
pub async fn serve() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], document()).into_response()
}

/// Error answers shared by the routes. Each is the JSON error body; `field` names the
/// offending field or parameter when one is to blame.
#[derive(utoipa::IntoResponses)]
#[allow(dead_code)]
pub enum Refused {
    /// The request is malformed or invalid: a body, a path or a query parameter.
    #[response(status = 400)]
    Invalid(ErrorBody),
    /// No credential, or a malformed, unknown, expired or revoked one.
    #[response(status = 401)]
    Unauthorized(ErrorBody),
    /// The credential's role or namespace does not open this route or this task.
    #[response(status = 403)]
    Forbidden(ErrorBody),
    /// A client token over its rate or concurrency limit; see `Retry-After`.
    #[response(status = 429)]
    TooManyRequests(ErrorBody),
}

#[derive(utoipa::IntoResponses)]
#[allow(dead_code)]
pub enum Unauthorized {
    /// No token, or the wrong one.
    #[response(status = 401)]
    Unauthorized(ErrorBody),
}

#[derive(utoipa::IntoResponses)]
#[allow(dead_code)]
pub enum NotFound {
    /// No such task, job or worker.
    #[response(status = 404)]
    NotFound(ErrorBody),
    /// The task or job finished and was retired after the retention period (code
    /// `retired`).
    #[response(status = 410)]
    Retired(ErrorBody),
}

#[derive(utoipa::IntoResponses)]
#[allow(dead_code)]
pub enum WriteRefused {
    /// The write conflicts with the state: a key already taken, a stale report.
    #[response(status = 409)]
    Conflict(ErrorBody),
    /// This server cannot take writes now (not the leader, shutting down).
    #[response(status = 503)]
    Unavailable(ErrorBody),
}

#[derive(utoipa::IntoResponses)]
#[allow(dead_code)]
pub enum TooLarge {
    /// The body is larger than the server accepts.
    #[response(status = 413)]
    TooLarge(ErrorBody),
}

#[derive(utoipa::IntoResponses)]
#[allow(dead_code)]
pub enum MembershipRefused {
    /// The address is not `IP:PORT`, or the body is malformed.
    #[response(status = 400)]
    Invalid(ErrorBody),
    /// No token, or the wrong one.
    #[response(status = 401)]
    Unauthorized(ErrorBody),
    /// No member with that id or address.
    #[response(status = 404)]
    NotFound(ErrorBody),
    /// Another membership change is under way (`change_in_progress`), the server is
    /// the last voter (`last_voter`), too few voters would be left reachable
    /// (`no_majority`), or the server to add is not waiting to join (`not_joining`).
    #[response(status = 409)]
    Conflict(ErrorBody),
    /// The server to add could not be reached or did not catch up in time.
    #[response(status = 502)]
    Unreachable(ErrorBody),
    /// No leader now (an election), or this server was removed.
    #[response(status = 503)]
    Unavailable(ErrorBody),
}
