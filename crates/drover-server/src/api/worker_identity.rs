//! Join tokens and worker credentials: create a join token, list, revoke a credential.
//! Admin routes (the cluster token); see ARCHITECTURE.md, "Worker identities".

use super::error::ApiError;
use super::json::{JsonBody, PathParam};
use super::openapi::{NotFound, Refused, TooLarge, Unauthorized, WriteRefused};
use crate::node::Node;
use crate::worker_identity::{IssuedSecret, JOIN_PREFIX};
use axum::Json;
use axum::extract::State;
use drover_proto::api::Ack;
use drover_proto::worker_identity::{
    JoinTokenCreated, JoinTokenInfo, JoinTokenRequest, WorkerCredentialInfo, WorkerIdentities,
};
use drover_state::worker_identity::{MAX_JOIN_TOKEN_TTL_MS, MAX_JOIN_TOKEN_USES};
use drover_state::{Command, CommandResult};
use std::sync::Arc;

/// Default life of a join token: long enough to start a machine, short enough that a
/// token pasted somewhere stops working soon.
const DEFAULT_TTL_MS: u64 = 3600 * 1000;

/// Creates a join token: `uses` workers (default 1) may join with it within `ttl_ms`
/// (default one hour). The secret is in this answer only; the cluster keeps its digest.
#[utoipa::path(
    post,
    path = "/v1/worker-tokens",
    tag = "cluster",
    request_body = JoinTokenRequest,
    responses(
        (status = 200, description = "The new join token, shown once", body = JoinTokenCreated),
        Refused, TooLarge, WriteRefused
    )
)]
pub async fn create_token(
    State(node): State<Arc<Node>>,
    JsonBody(request): JsonBody<JoinTokenRequest>,
) -> Result<Json<JoinTokenCreated>, ApiError> {
    let ttl_ms = request.ttl_ms.unwrap_or(DEFAULT_TTL_MS);
    if ttl_ms == 0 || ttl_ms > MAX_JOIN_TOKEN_TTL_MS {
        return Err(ApiError::invalid(
            Some("ttl_ms".into()),
            format!("must be between 1 and {MAX_JOIN_TOKEN_TTL_MS} (30 days)"),
        ));
    }
    let uses = request.uses.unwrap_or(1);
    if uses == 0 || uses > MAX_JOIN_TOKEN_USES {
        return Err(ApiError::invalid(
            Some("uses".into()),
            format!("must be between 1 and {MAX_JOIN_TOKEN_USES}"),
        ));
    }
    let issued = IssuedSecret::new(JOIN_PREFIX).map_err(|e| {
        ApiError::new(
            axum::http::StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            e.to_string(),
            None,
        )
    })?;
    let command = Command::JoinTokenCreate {
        id: issued.id.clone(),
        digest: issued.digest.clone(),
        ttl_ms,
        uses,
    };
    if let CommandResult::Rejected(r) = node.proposer.propose(command).await? {
        return Err(r.into());
    }
    let expires_at_ms = node
        .state
        .read()
        .identities()
        .token(&issued.id)
        .map(|t| t.expires)
        .unwrap_or_default();
    tracing::info!(id = %issued.id, uses, ttl_ms, "created a join token");
    Ok(Json(JoinTokenCreated {
        id: issued.id,
        token: issued.secret,
        expires_at_ms,
        uses,
    }))
}

/// The worker credentials (by the worker they are bound to) and the live join tokens;
/// never their secrets.
#[utoipa::path(
    get,
    path = "/v1/worker-credentials",
    tag = "cluster",
    responses((status = 200, description = "Credentials and join tokens", body = WorkerIdentities), Unauthorized)
)]
pub async fn list(State(node): State<Arc<Node>>) -> Json<WorkerIdentities> {
    let sm = node.state.read();
    let ids = sm.identities();
    let now = node.proposer.now();
    Json(WorkerIdentities {
        credentials: ids
            .credentials()
            .map(|(id, c)| WorkerCredentialInfo {
                id: id.to_string(),
                worker_name: c.name.clone(),
                join_token: c.join_token.clone(),
                issued_at_ms: c.issued,
            })
            .collect(),
        join_tokens: ids
            .tokens()
            .filter(|(_, t)| t.expires > now)
            .map(|(id, t)| JoinTokenInfo {
                id: id.to_string(),
                created_at_ms: t.created,
                expires_at_ms: t.expires,
                uses_left: t.uses_left,
            })
            .collect(),
    })
}

/// Revokes the credential of a worker (by the worker's name, or the credential's id):
/// its connection is closed and it cannot connect again with it. Takes no body.
#[utoipa::path(
    delete,
    path = "/v1/worker-credentials/{worker}",
    tag = "cluster",
    params(("worker" = String, Path, description = "The worker's name, or the credential's id")),
    responses(
        (status = 200, description = "Revoked", body = Ack),
        Refused, NotFound, WriteRefused
    )
)]
pub async fn revoke(
    State(node): State<Arc<Node>>,
    PathParam(worker): PathParam<String>,
) -> Result<Json<Ack>, ApiError> {
    let name = {
        let sm = node.state.read();
        let ids = sm.identities();
        match ids.credential_of(&worker) {
            Some((_, c)) => c.name.clone(),
            None => ids
                .credential(&worker)
                .map(|c| c.name.clone())
                .unwrap_or_else(|| worker.clone()),
        }
    };
    match node
        .proposer
        .propose(Command::WorkerRevoke {
            name: worker.clone(),
        })
        .await?
    {
        CommandResult::Rejected(r) => Err(r.into()),
        _ => {
            // Effective at once: a connected worker must not keep working on the
            // credential (it is told by the closed connection, and cannot reconnect).
            let id = node.state.read().scheduler().worker_by_name(&name);
            if let Some(id) = id {
                node.sessions.disconnect(id);
            }
            tracing::info!(worker = %name, "revoked a worker credential");
            Ok(Json(Ack { ok: true }))
        }
    }
}
