//! Cluster-wide reads and settings: health, summary, workers, policy.

use super::error::ApiError;
use super::json::{JsonBody, NoBody, PathParam};
use super::openapi::{MembershipRefused, NotFound, Refused, TooLarge, Unauthorized, WriteRefused};
use crate::node::Node;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use drover_proto::api::{
    Ack, AddServer, ClusterSummary, Health, ServerChange, ServerInfo, WorkerInfo,
};
use drover_state::{Command, CommandResult};
use drover_types::{PolicyConfig, TaskState, WorkerId, WorkerRef};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Liveness of this server.
#[utoipa::path(
    get,
    path = "/v1/health",
    tag = "meta",
    security(()),
    responses(
        (status = 200, description = "The server is up", body = Health),
        (status = 503, description = "The server cannot write to its data directory (status `storage_failed`, with the reason; it refuses writes until it can, and still answers reads), or its state machine stopped (status `state_failed`: applying an entry failed; it answers nothing but this until restarted)", body = Health)
    )
)]
pub async fn health(State(node): State<Arc<Node>>) -> (StatusCode, Json<Health>) {
    let membership = if node.is_removed() {
        "removed"
    } else {
        "member"
    }
    .to_string();
    // A server that cannot write must not look healthy: a load balancer or a peer
    // probing it takes a non-2xx answer as "send nothing here".
    if let Some(reason) = node.state.failure() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(Health {
                status: "state_failed".into(),
                leader: node.is_leader(),
                reason: Some(reason),
                membership,
            }),
        );
    }
    match node.storage.failure() {
        None => (
            StatusCode::OK,
            Json(Health {
                status: "ok".into(),
                leader: node.is_leader(),
                reason: None,
                membership,
            }),
        ),
        Some(f) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(Health {
                status: "storage_failed".into(),
                leader: node.is_leader(),
                reason: Some(format!(
                    "writes to the data directory fail: {} (for {} s)",
                    f.reason,
                    f.since.elapsed().as_secs()
                )),
                membership,
            }),
        ),
    }
}

/// The cluster at a glance: tasks per state, workers, leader, policy.
#[utoipa::path(
    get,
    path = "/v1/cluster",
    tag = "cluster",
    responses((status = 200, description = "The cluster summary", body = ClusterSummary), Unauthorized)
)]
pub async fn summary(State(node): State<Arc<Node>>) -> Json<ClusterSummary> {
    let metrics = node.raft.metrics().borrow().clone();
    let sm = node.state.read();
    let sched = sm.scheduler();
    let counts = sched.counts();
    let tasks: BTreeMap<TaskState, u64> =
        TaskState::ALL.iter().map(|s| (*s, counts.of(*s))).collect();
    Json(ClusterSummary {
        version: env!("CARGO_PKG_VERSION").to_string(),
        node_id: node.config.node_id,
        leader: metrics.current_leader,
        term: metrics.current_term,
        last_applied: metrics.last_applied.map(|l| l.index),
        tasks,
        workers_active: counts.workers_active,
        workers_draining: counts.workers_draining,
        workers_lost: counts.workers_lost,
        policy: sched.policy().clone(),
    })
}

/// Every worker: capacity, allocation, usage, running tasks, state.
#[utoipa::path(
    get,
    path = "/v1/workers",
    tag = "cluster",
    responses((status = 200, description = "The workers", body = Vec<WorkerInfo>), Unauthorized)
)]
pub async fn workers(State(node): State<Arc<Node>>) -> Json<Vec<WorkerInfo>> {
    let now = Instant::now();
    let sm = node.state.read();
    let list = sm
        .scheduler()
        .workers()
        .map(|w| {
            let live = node.sessions.liveness(w.id);
            WorkerInfo {
                id: w.id,
                name: w.spec.name.clone(),
                state: w.state,
                connected: node.sessions.is_connected(w.id),
                capacity: w.spec.capacity.clone(),
                allocated: w.allocated.clone(),
                usage: live.as_ref().map(|l| l.usage.clone()).unwrap_or_default(),
                labels: w.spec.labels.clone(),
                running: w.running.clone(),
                last_seen_ms_ago: live.map(|l| now.duration_since(l.last_seen).as_millis() as u64),
                credential: sm
                    .identities()
                    .credential_of(&w.spec.name)
                    .map(|(id, _)| id.to_string()),
                drivers: w.spec.driver_names(),
                load: w.usage.clone(),
                load_permille: w.load_permille,
                data_keys: w.spec.data_keys.clone(),
                isolation: w.spec.isolation.clone(),
            }
        })
        .collect();
    Json(list)
}

/// The scheduling policy in force.
#[utoipa::path(
    get,
    path = "/v1/policy",
    tag = "cluster",
    responses((status = 200, description = "The policy", body = PolicyConfig), Unauthorized)
)]
pub async fn get_policy(State(node): State<Arc<Node>>) -> Json<PolicyConfig> {
    Json(node.state.read().scheduler().policy().clone())
}

/// Switches the scheduling policy; fields left out take their defaults.
#[utoipa::path(
    put,
    path = "/v1/policy",
    tag = "cluster",
    request_body = PolicyConfig,
    responses(
        (status = 200, description = "The policy now in force", body = PolicyConfig),
        Refused, TooLarge, WriteRefused
    )
)]
pub async fn set_policy(
    State(node): State<Arc<Node>>,
    JsonBody(policy): JsonBody<PolicyConfig>,
) -> Result<Json<PolicyConfig>, ApiError> {
    match node.proposer.propose(Command::SetPolicy { policy }).await? {
        CommandResult::Rejected(r) => Err(r.into()),
        _ => Ok(Json(node.state.read().scheduler().policy().clone())),
    }
}

async fn worker_command(node: &Node, command: Command) -> Result<Json<Ack>, ApiError> {
    match node.proposer.propose(command).await? {
        CommandResult::Rejected(r) => Err(r.into()),
        _ => Ok(Json(Ack { ok: true })),
    }
}

/// The worker a path names: `w3`, `3` or its name.
pub(crate) fn worker_of(node: &Node, text: &str) -> Result<WorkerId, ApiError> {
    let sm = node.state.read();
    let workers: Vec<(WorkerId, String)> = sm
        .scheduler()
        .workers()
        .map(|w| (w.id, w.spec.name.clone()))
        .collect();
    WorkerRef::parse(text)
        .resolve(workers.iter().map(|(w, n)| (*w, n.as_str())))
        .ok_or_else(|| ApiError::not_found(format!("no worker {text:?} (give w3, 3 or a name)")))
}

/// Stops placing tasks on a worker; its running tasks finish. Takes no body (or `{}`).
#[utoipa::path(
    post,
    path = "/v1/workers/{worker}/drain",
    tag = "cluster",
    params(("worker" = String, Path, description = "The worker: its id (`3`), `w3`, or its name")),
    responses(
        (status = 200, description = "Done", body = Ack),
        Refused, NotFound, WriteRefused
    )
)]
pub async fn drain(
    State(node): State<Arc<Node>>,
    PathParam(worker): PathParam<String>,
    _: NoBody,
) -> Result<Json<Ack>, ApiError> {
    let worker = worker_of(&node, &worker)?;
    worker_command(&node, Command::WorkerDrain { worker }).await
}

/// Places tasks on a drained worker again. Takes no body (or `{}`).
#[utoipa::path(
    post,
    path = "/v1/workers/{worker}/resume",
    tag = "cluster",
    params(("worker" = String, Path, description = "The worker: its id (`3`), `w3`, or its name")),
    responses(
        (status = 200, description = "Done", body = Ack),
        Refused, NotFound, WriteRefused
    )
)]
pub async fn resume(
    State(node): State<Arc<Node>>,
    PathParam(worker): PathParam<String>,
    _: NoBody,
) -> Result<Json<Ack>, ApiError> {
    let worker = worker_of(&node, &worker)?;
    worker_command(&node, Command::WorkerResume { worker }).await
}

/// On a follower, the leader's list: only the leader knows how far each server has
/// replicated. `None` (answer from the local view) on the leader, on a server alone,
/// for a request a follower passed here already, or when the leader does not answer.
async fn leaders_view(node: &Node, headers: &axum::http::HeaderMap) -> Option<Vec<ServerInfo>> {
    if node.is_leader() || !node.is_clustered() || headers.contains_key(&super::forward::FORWARDED)
    {
        return None;
    }
    let leader = node.raft.metrics().borrow().current_leader?;
    let addr = node.address_of(leader)?;
    let mut req = node
        .http
        .get(format!("{}/v1/servers", node.config.peer_url(&addr)))
        .header(&super::forward::FORWARDED, node.config.node_id.to_string())
        .timeout(Duration::from_secs(2));
    if let Some(auth) = headers.get(axum::http::header::AUTHORIZATION) {
        req = req.header(axum::http::header::AUTHORIZATION, auth);
    }
    let resp = req.send().await.ok()?;
    if !resp.status().is_success() {
        return None;
    }
    resp.json().await.ok()
}

/// The servers of the replicated group, as the leader sees them (a follower asks the
/// leader, and answers from its own raft metrics only when the leader does not
/// answer); reachability by probing each one's `/v1/health`, 500 ms at most.
#[utoipa::path(
    get,
    path = "/v1/servers",
    tag = "cluster",
    responses((status = 200, description = "The servers", body = Vec<ServerInfo>), Unauthorized)
)]
pub async fn servers(
    State(node): State<Arc<Node>>,
    headers: axum::http::HeaderMap,
) -> Json<Vec<ServerInfo>> {
    if let Some(list) = leaders_view(&node, &headers).await {
        return Json(list);
    }
    let metrics = node.raft.metrics().borrow().clone();
    let membership = metrics.membership_config.membership().clone();
    let voters: BTreeSet<u64> = membership.voter_ids().collect();
    let mut members: Vec<(u64, String)> = membership
        .nodes()
        .map(|(id, n)| (*id, n.addr.clone()))
        .collect();
    if members.is_empty() {
        // Not yet formed: the configured list, or this server alone.
        members = if node.is_clustered() {
            node.config
                .sorted_peers()
                .into_iter()
                .enumerate()
                .map(|(i, a)| (i as u64 + 1, a))
                .collect()
        } else {
            vec![(node.config.node_id, node.config.listen.to_string())]
        };
    }
    let probes = members.iter().map(|(id, addr)| {
        let http = node.http.clone();
        let me = *id == node.config.node_id;
        let url = format!("{}/v1/health", node.config.peer_url(addr));
        async move {
            if me {
                return true;
            }
            // Any answer counts: a server whose disk is full answers 503, but answers.
            http.get(url)
                .timeout(Duration::from_millis(500))
                .send()
                .await
                .is_ok()
        }
    });
    let reachable = futures_util::future::join_all(probes).await;
    let replication = metrics.replication.clone().unwrap_or_default();
    let list = members
        .into_iter()
        .zip(reachable)
        .map(|((id, address), reachable)| {
            let role = if id == node.config.node_id && node.is_removed() {
                "removed"
            } else if metrics.current_leader == Some(id) && !node.is_removed() {
                "leader"
            } else if voters.contains(&id) || voters.is_empty() {
                "follower"
            } else {
                "learner"
            };
            let last_applied = if id == node.config.node_id {
                metrics.last_applied.map(|l| l.index)
            } else {
                replication.get(&id).cloned().flatten().map(|l| l.index)
            };
            ServerInfo {
                id,
                address,
                role: role.to_string(),
                term: metrics.current_term,
                last_applied,
                reachable,
            }
        })
        .collect();
    Json(list)
}

/// An address as the group will record it: `host:port` with an IP (what `--listen`
/// takes), normalized.
pub(crate) fn checked_address(text: &str) -> Result<String, ApiError> {
    let text = text
        .trim()
        .trim_start_matches("http://")
        .trim_start_matches("https://")
        .trim_end_matches('/');
    text.parse::<std::net::SocketAddr>()
        .map(|a| a.to_string())
        .map_err(|_| {
            ApiError::invalid(
                Some("address".into()),
                format!("{text:?} is not an address (IP:PORT, as the server's --listen)"),
            )
        })
}

pub(crate) fn server_change(c: crate::membership::Changed) -> ServerChange {
    ServerChange {
        id: c.id,
        address: c.address,
        voters: c.voters,
    }
}

/// Adds a running server that waits to join (started with `drover server --join`):
/// the leader gives it a node id, adds it as a learner, waits until it has caught up
/// with the log (up to a minute), then makes it a voter (joint consensus). One
/// membership change at a time; a server already a voter is left as it is.
#[utoipa::path(
    post,
    path = "/v1/servers",
    tag = "cluster",
    request_body = AddServer,
    responses(
        (status = 200, description = "The server is a voter", body = ServerChange),
        MembershipRefused
    )
)]
pub async fn add_server(
    State(node): State<Arc<Node>>,
    JsonBody(add): JsonBody<AddServer>,
) -> Result<Json<ServerChange>, ApiError> {
    let address = checked_address(&add.address)?;
    let changed = node.changes.add(&node, &address).await?;
    Ok(Json(server_change(changed)))
}

/// Removes a server from the group, by id or address; the leader too (it steps down
/// once the change is committed, and the others elect a new one). Refused for the last
/// voter, and when the voters left could not form a majority among those reachable.
/// The removed server stops taking part (its health says `removed`).
#[utoipa::path(
    delete,
    path = "/v1/servers/{server}",
    tag = "cluster",
    params(("server" = String, Path, description = "The server: its node id (`2`) or its address (`10.0.0.2:7070`)")),
    responses(
        (status = 200, description = "The server is out of the group", body = ServerChange),
        MembershipRefused
    )
)]
pub async fn remove_server(
    State(node): State<Arc<Node>>,
    PathParam(server): PathParam<String>,
    _: NoBody,
) -> Result<Json<ServerChange>, ApiError> {
    let which = checked_address(&server).unwrap_or(server);
    let changed = node.changes.remove(&node, &which).await?;
    Ok(Json(server_change(changed)))
}
