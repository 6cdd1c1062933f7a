//! Cluster-wide reads and settings: health, summary, workers, policy.

use super::error::ApiError;
use super::json::{JsonBody, NoBody, PathParam, id_param};
use crate::node::Node;
use axum::Json;
use axum::extract::State;
use drover_proto::api::{ClusterSummary, Health, WorkerInfo};
use drover_state::{Command, CommandResult};
use drover_types::{PolicyConfig, TaskState, WorkerId};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

pub async fn health(State(node): State<Arc<Node>>) -> Json<Health> {
    Json(Health {
        status: "ok".into(),
        leader: node.is_leader(),
    })
}

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
            }
        })
        .collect();
    Json(list)
}

pub async fn get_policy(State(node): State<Arc<Node>>) -> Json<PolicyConfig> {
    Json(node.state.read().scheduler().policy().clone())
}

pub async fn set_policy(
    State(node): State<Arc<Node>>,
    JsonBody(policy): JsonBody<PolicyConfig>,
) -> Result<Json<PolicyConfig>, ApiError> {
    match node.proposer.propose(Command::SetPolicy { policy }).await? {
        CommandResult::Rejected(r) => Err(r.into()),
        _ => Ok(Json(node.state.read().scheduler().policy().clone())),
    }
}

async fn worker_command(
    node: &Node,
    command: Command,
) -> Result<Json<serde_json::Value>, ApiError> {
    match node.proposer.propose(command).await? {
        CommandResult::Rejected(r) => Err(r.into()),
        _ => Ok(Json(serde_json::json!({"ok": true}))),
    }
}

pub async fn drain(
    State(node): State<Arc<Node>>,
    PathParam(worker): PathParam<String>,
    _: NoBody,
) -> Result<Json<serde_json::Value>, ApiError> {
    let id = id_param("worker", &worker, u32::MAX.into())? as u32;
    worker_command(
        &node,
        Command::WorkerDrain {
            worker: WorkerId(id),
        },
    )
    .await
}

pub async fn resume(
    State(node): State<Arc<Node>>,
    PathParam(worker): PathParam<String>,
    _: NoBody,
) -> Result<Json<serde_json::Value>, ApiError> {
    let id = id_param("worker", &worker, u32::MAX.into())? as u32;
    worker_command(
        &node,
        Command::WorkerResume {
            worker: WorkerId(id),
        },
    )
    .await
}
