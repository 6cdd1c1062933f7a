//! A server joining a running group (`drover server --join`).
//!
//! A node id must be known before raft opens the log, and the leader hands out ids (it
//! alone sees the whole membership). So a newcomer first serves a small waiting
//! router on its listener: `/v1/health` (saying `joining`) and `/v1/raft/adopt`, where
//! the leader offers it an id. It stores that id (`member.json`) and only then starts
//! raft and the full API on the same socket. Meanwhile, given a member's address, it
//! asks the group to add it (`/v1/raft/join`); `drover servers add` makes the same
//! offer at an admin's request.

use crate::auth::{ClusterToken, Credentials, require_token};
use crate::identity::{MemberState, ServerIdentity};
use crate::join_target::JoinTarget;
use crate::membership::Adoption;
use crate::raft::{PEER_ADOPT_PATH, PEER_JOIN_PATH};
use crate::server::ServerError;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use drover_proto::api::{AddServer, Health};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::oneshot;

/// What the waiting router's adopt handler needs.
#[derive(Clone)]
struct Waiting {
    data_dir: PathBuf,
    adopted: Arc<Mutex<Option<oneshot::Sender<ServerIdentity>>>>,
}

/// Serves the waiting router on a clone of `listener` until the leader offers an id;
/// returns the stored identity. The listener itself stays open for the full API.
pub(crate) async fn await_adoption(
    listener: &std::net::TcpListener,
    data_dir: &Path,
    credentials: Credentials,
    tls: Option<Arc<rustls::ServerConfig>>,
) -> Result<ServerIdentity, ServerError> {
    let addr = listener.local_addr().map_err(|source| ServerError::Bind {
        addr: ([0, 0, 0, 0], 0).into(),
        source,
    })?;
    let bind_err = |source| ServerError::Bind { addr, source };
    let waiting_socket = listener.try_clone().map_err(bind_err)?;
    let waiting_socket = tokio::net::TcpListener::from_std(waiting_socket).map_err(bind_err)?;
    let (tx, rx) = oneshot::channel();
    let state = Waiting {
        data_dir: data_dir.to_path_buf(),
        adopted: Arc::new(Mutex::new(Some(tx))),
    };
    let app = Router::new()
        .route("/v1/health", get(health))
        .route(PEER_ADOPT_PATH, post(adopt))
        .fallback(|| async {
            crate::api::ApiError::unavailable(
                "this server waits to join a group (drover server --join); it serves nothing yet",
            )
        })
        .layer(axum::middleware::from_fn_with_state(
            credentials,
            require_token,
        ))
        .with_state(state);
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(async move {
        let stop = async {
            let _ = stopped.await;
        };
        // The default header timeout: this listener serves only the health check and
        // the leader's offer, before the server's own settings matter.
        let header_read_timeout = crate::input_limits::InputLimits::default().header_read_timeout;
        if let Err(e) =
            crate::tls::listener::serve(waiting_socket, app, tls, header_read_timeout, stop).await
        {
            tracing::warn!("the waiting listener failed: {e}");
        }
    });
    tracing::info!(%addr, "waiting to be added to a group (drover servers add, or --join ADDRESS)");
    let identity = rx.await.map_err(|_| ServerError::Bind {
        addr,
        source: std::io::Error::other("the waiting listener stopped"),
    })?;
    let _ = stop.send(());
    tracing::info!(
        node_id = identity.node_id,
        "offered an id by the group's leader"
    );
    Ok(identity)
}

async fn health() -> Json<Health> {
    Json(Health {
        status: "ok".into(),
        leader: false,
        reason: None,
        membership: "joining".into(),
    })
}

async fn adopt(State(waiting): State<Waiting>, body: axum::body::Bytes) -> Response {
    let offer: Adoption = match serde_json::from_slice(&body) {
        Ok(o) => o,
        Err(e) => {
            return crate::api::ApiError::invalid(Some("node_id".into()), e.to_string())
                .into_response();
        }
    };
    let identity = ServerIdentity {
        node_id: offer.node_id,
        state: MemberState::Member,
        joined: true,
    };
    let dir = waiting.data_dir.clone();
    let to_store = identity.clone();
    match tokio::task::spawn_blocking(move || to_store.store(&dir)).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return crate::api::ApiError::internal(e.to_string()).into_response(),
        Err(e) => return crate::api::ApiError::internal(e.to_string()).into_response(),
    }
    let sender = waiting
        .adopted
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .take();
    match sender {
        Some(tx) => {
            let _ = tx.send(identity);
            Json(offer).into_response()
        }
        // A second offer (a retry) while raft starts: the id is taken already.
        None => (StatusCode::CONFLICT, "adopted already").into_response(),
    }
}

/// Asks the member at `group` (any member: a follower passes it to the leader) to add
/// this server, until one request succeeds. The answer comes once this server is a
/// voter, which takes its catching up with the log; a refusal because another change
/// is under way (409) or an election (503) is retried. Once the join is done (or can
/// never be), the remembered target in `data_dir` is cleared (see `join_target.rs`).
pub(crate) async fn ask_to_join(
    group: String,
    address: String,
    peer_token: ClusterToken,
    data_dir: PathBuf,
    http: reqwest::Client,
    scheme: &'static str,
) {
    let done = ask_until_answered(&group, &address, &peer_token, &http, scheme).await;
    let cleared = tokio::task::spawn_blocking(move || JoinTarget::clear(&data_dir)).await;
    if let Ok(Err(e)) = cleared {
        tracing::warn!(
            group,
            joined = done,
            "could not forget the join target (a restart asks the group again, which is harmless): {e}"
        );
    }
}

/// Whether this server was added (`false`: it can never be).
async fn ask_until_answered(
    group: &str,
    address: &str,
    peer_token: &ClusterToken,
    http: &reqwest::Client,
    scheme: &str,
) -> bool {
    let url = format!(
        "{scheme}://{}{PEER_JOIN_PATH}",
        group
            .trim_start_matches("http://")
            .trim_start_matches("https://")
    );
    loop {
        let sent = http
            .post(&url)
            .bearer_auth(peer_token.as_str())
            .timeout(crate::membership::CATCH_UP + Duration::from_secs(30))
            .json(&AddServer {
                address: address.to_string(),
            })
            .send()
            .await;
        match sent {
            Ok(r) if r.status().is_success() => {
                tracing::info!(group, "joined the group");
                return true;
            }
            Ok(r) => {
                let status = r.status();
                let text = r.text().await.unwrap_or_default();
                let code = serde_json::from_str::<drover_proto::api::ErrorBody>(&text)
                    .map(|b| b.error.code)
                    .unwrap_or_default();
                if code == "not_joining" {
                    // This server refused the leader's offer: it was removed from the
                    // group. Asking again cannot help.
                    tracing::error!(group, "the group cannot add this server: {text}");
                    return false;
                }
                tracing::info!(group, %status, "the group did not add this server yet: {text}");
            }
            Err(e) => tracing::info!(group, "cannot ask the group to add this server: {e}"),
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}
