//! `/v1/tokens`: creating, listing and revoking client ACL tokens (admin only; see
//! `api/access.rs`). A token's secret is made here, on the server that takes the
//! request; only its hash goes into the log, and the secret is in this one answer.

use super::error::ApiError;
use super::json::{JsonBody, NoBody, PathParam, id_param};
use super::openapi::{NotFound, Refused, WriteRefused};
use crate::auth::NewSecret;
use crate::node::Node;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use drover_proto::api::{CreatedToken, TokenInfo, TokenList, TokenRequest};
use drover_state::{Command, CommandResult, NewToken, TokenRecord};
use std::sync::Arc;

/// Longest a token's name may be.
const NAME_MAX: usize = 64;
/// Longest a namespace may be (an owner name).
const NAMESPACE_MAX: usize = 128;
/// Longest lifetime a token may be given (ten years); longer is a typo.
const TTL_MAX_MS: u64 = 10 * 365 * 24 * 3600 * 1000;

fn info(t: &TokenRecord) -> TokenInfo {
    TokenInfo {
        id: t.id,
        name: t.name.clone(),
        role: t.role,
        namespace: t.namespace.clone(),
        created_at: t.created_at,
        expires_at: t.expires_at,
        revoked_at: t.revoked_at,
    }
}

fn check(req: &TokenRequest) -> Result<(), ApiError> {
    let printable = |s: &str| s.chars().all(|c| !c.is_control());
    if req.name.chars().count() > NAME_MAX || !printable(&req.name) {
        return Err(ApiError::invalid(
            Some("name".into()),
            format!("up to {NAME_MAX} printable characters"),
        ));
    }
    if let Some(ns) = &req.namespace
        && (ns.trim().is_empty() || ns.len() > NAMESPACE_MAX || !printable(ns))
    {
        return Err(ApiError::invalid(
            Some("namespace".into()),
            format!("a task owner: 1 to {NAMESPACE_MAX} printable characters"),
        ));
    }
    if let Some(ttl) = req.ttl_ms
        && (ttl == 0 || ttl > TTL_MAX_MS)
    {
        return Err(ApiError::invalid(
            Some("ttl_ms".into()),
            "between 1 ms and ten years",
        ));
    }
    Ok(())
}

/// Creates a client token. The answer holds its secret, which is never shown again.
#[utoipa::path(
    post,
    path = "/v1/tokens",
    tag = "tokens",
    request_body = TokenRequest,
    responses(
        (status = 201, description = "The token and its secret (shown once)", body = CreatedToken),
        Refused, WriteRefused
    )
)]
pub async fn create(
    State(node): State<Arc<Node>>,
    JsonBody(req): JsonBody<TokenRequest>,
) -> Result<(StatusCode, Json<CreatedToken>), ApiError> {
    check(&req)?;
    let secret = NewSecret::generate()
        .map_err(|e| ApiError::internal(format!("no randomness for a token: {e}")))?;
    let command = Command::TokenCreate {
        token: NewToken {
            name: req.name,
            role: req.role,
            namespace: req.namespace,
            ttl_ms: req.ttl_ms,
            hash: secret.hash,
        },
    };
    match node.proposer.propose(command).await? {
        CommandResult::TokenCreated { id } => {
            let token = node
                .state
                .read()
                .tokens()
                .get(id)
                .map(info)
                .ok_or_else(|| ApiError::internal(format!("token {id} vanished")))?;
            Ok((
                StatusCode::CREATED,
                Json(CreatedToken {
                    token,
                    secret: secret.reveal(id),
                }),
            ))
        }
        CommandResult::Rejected(r) => Err(r.into()),
        other => Err(ApiError::internal(format!(
            "unexpected answer to a token creation: {other:?}"
        ))),
    }
}

/// Every client token, revoked and expired ones included (never their secrets).
#[utoipa::path(
    get,
    path = "/v1/tokens",
    tag = "tokens",
    responses((status = 200, description = "The tokens, by id", body = TokenList), Refused)
)]
pub async fn list(State(node): State<Arc<Node>>) -> Json<TokenList> {
    let sm = node.state.read();
    Json(TokenList {
        tokens: sm.tokens().iter().map(info).collect(),
    })
}

/// Revokes a client token: every server refuses it, and closes what it has open,
/// within a second.
#[utoipa::path(
    delete,
    path = "/v1/tokens/{id}",
    tag = "tokens",
    params(("id" = u64, Path, description = "The token's id")),
    responses(
        (status = 200, description = "The token, revoked", body = TokenInfo),
        Refused, NotFound, WriteRefused
    )
)]
pub async fn revoke(
    State(node): State<Arc<Node>>,
    PathParam(id): PathParam<String>,
    _: NoBody,
) -> Result<Json<TokenInfo>, ApiError> {
    let id = id_param("id", &id, u64::MAX)?;
    match node.proposer.propose(Command::TokenRevoke { id }).await? {
        CommandResult::Done => node
            .state
            .read()
            .tokens()
            .get(id)
            .map(|t| Json(info(t)))
            .ok_or_else(|| ApiError::internal(format!("token {id} vanished"))),
        CommandResult::Rejected(r) => Err(r.into()),
        other => Err(ApiError::internal(format!(
            "unexpected answer to a token revocation: {other:?}"
        ))),
    }
}
