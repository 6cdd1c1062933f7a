//! The API's body for the autoscaler (`GET /v1/autoscale`): its settings, the workers it
//! manages and its recent decisions.

use serde::{Deserialize, Serialize};

/// What the autoscaler of the answering server is doing.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AutoscaleStatus {
    /// Whether this server was started with `--autoscale`.
    pub enabled: bool,
    /// The provider (`docker`), when enabled.
    pub provider: Option<String>,
    /// Whether this server leads the group: only the leader scales, so only its
    /// answer lists workers and decisions.
    pub leader: bool,
    pub min: u32,
    pub max: u32,
    /// How long a managed worker stays idle before it is drained.
    pub cooldown_ms: u64,
    /// The worker sizes it may start, smallest first.
    pub sizes: Vec<WorkerSizeInfo>,
    /// The workers it manages, as its provider lists them.
    pub workers: Vec<ManagedWorkerInfo>,
    /// Its latest decisions, oldest first.
    pub decisions: Vec<AutoscaleDecision>,
    /// The provider's last error, while it lasts (e.g. the Docker engine is unreachable).
    pub error: Option<String>,
    /// How to find this cluster's instances with the provider's own tools, e.g.
    /// `label=drover.cluster=3f9a...` for `docker ps --filter`.
    pub instance_filter: Option<String>,
}

/// A size of worker the autoscaler may start.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct WorkerSizeInfo {
    pub cpu_milli: u32,
    pub memory_bytes: u64,
}

/// One worker the autoscaler manages.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ManagedWorkerInfo {
    /// The worker's name (also its container's).
    pub name: String,
    /// The provider's id of it (the container id).
    pub instance: String,
    pub size: WorkerSizeInfo,
    /// `starting` (not joined yet), `active`, `draining`, `lost` or `exited`.
    pub state: String,
    /// Tasks running or queued on it.
    pub tasks: u32,
    /// How long it has had nothing to do, while it has not.
    pub idle_ms: Option<u64>,
}

/// A decision of the autoscaler.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AutoscaleDecision {
    /// When, in milliseconds since the Unix epoch (this server's wall clock: for
    /// people, not for ordering).
    pub at_unix_ms: u64,
    /// `start`, `drain` or `stop`.
    pub action: String,
    pub worker: String,
    pub size: WorkerSizeInfo,
    /// Why, in a sentence.
    pub reason: String,
    /// Set when carrying it out failed.
    pub error: Option<String>,
}
