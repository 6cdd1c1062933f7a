//! Bodies of the HTTP/JSON API under `/v1`.

use crate::worker::AttemptUsage;
use drover_types::{
    Attempt, FailureCause, JobId, Millis, Outcome, PolicyConfig, Resources, TaskId, TaskSpec,
    TaskState, WorkerId, WorkerState, WorkerUsage,
};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The body of every error response (4xx and 5xx).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ErrorDetail {
    /// A stable, machine-readable code: `invalid_request`, `not_found`, `unauthorized`,
    /// `conflict`, `payload_too_large`, `unavailable`, `internal`.
    pub code: String,
    /// What went wrong, for people.
    pub message: String,
    /// The offending field's path, when one field is to blame (`tasks[2].after[0]`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

/// Answer to a task or job submission.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SubmitResponse {
    pub job: JobId,
    /// The job's tasks have consecutive ids `first .. first + count`.
    pub first: TaskId,
    pub count: u64,
}

impl SubmitResponse {
    pub fn task_ids(&self) -> impl Iterator<Item = TaskId> + use<> {
        let first = self.first.0;
        (first..first + self.count).map(TaskId)
    }
}

/// One attempt of a task, as the API shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AttemptInfo {
    pub attempt: Attempt,
    pub worker: WorkerId,
    pub worker_name: String,
    pub assigned_at: Millis,
    pub started_at: Option<Millis>,
    pub ended_at: Option<Millis>,
    pub outcome: Option<Outcome>,
    pub failure: Option<FailureCause>,
    pub usage: Option<AttemptUsage>,
    /// The checkpoint this attempt started from (restored into its checkpoint
    /// directory), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resumed_from: Option<crate::checkpoint::CheckpointRef>,
    /// The GPU indices its worker gave it (each held by no other running attempt).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gpus: Vec<u32>,
}

/// Everything about one task.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TaskInfo {
    pub id: TaskId,
    pub job: JobId,
    pub key: Option<String>,
    pub name: String,
    pub state: TaskState,
    /// Why it is not running (or how it ended), in a sentence.
    pub reason: Option<String>,
    /// Why its latest attempt went where it did, where placement had a choice that
    /// matters (inputs held there, load-aware placement): "placed on w2: holds input
    /// part1". Told from the state now, not recorded at the decision.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub placement: Option<String>,
    pub attempt: Attempt,
    pub max_attempts: u32,
    pub worker: Option<String>,
    pub submitted_at: Millis,
    pub started_at: Option<Millis>,
    pub ended_at: Option<Millis>,
    pub duration_ms: Option<u64>,
    pub exit_code: Option<i32>,
    pub signal: Option<i32>,
    pub outcome: Option<Outcome>,
    pub usage: Option<AttemptUsage>,
    /// The task's result (the start of its stdout), once it succeeded.
    pub result: Option<String>,
    pub array_index: Option<u32>,
    pub array_count: Option<u32>,
    /// For a chunk of a split: the first and last integer of its slice (inclusive),
    /// once the server assigned it one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub range_start: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub range_end: Option<u64>,
    pub deps: Vec<TaskId>,
    pub spec: TaskSpec,
    pub attempts: Vec<AttemptInfo>,
    /// Completed from the result cache: the task whose result (and output) it took.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cached_from: Option<TaskId>,
    /// The result cache key of a task that opted in, once it is known (when the task
    /// became ready; cleared when it ends).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_key: Option<String>,
    /// The latest saved checkpoint, for a task with `checkpoint` set: the next attempt
    /// starts from it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoint: Option<crate::checkpoint::CheckpointRef>,
    /// Under the multifactor queue policy, for a ready task: its effective priority
    /// as of the read, with its terms (the queue orders by the same sum).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub effective_priority: Option<drover_types::EffectivePriority>,
    /// What the current attempt holds when it was resized (dynamic resources);
    /// absent: the spec's `resources`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reserved: Option<Resources>,
    /// The task's resize decisions, oldest first (the newest 16).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resizes: Vec<ResizeInfo>,
}

/// `POST /v1/tasks/{task}/resize`: the new amounts for the task's running attempt.
/// A dimension left out keeps what the attempt holds.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ResizeBody {
    /// Cores: `4`, `0.5`, `250m`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpus: Option<String>,
    /// Bytes: `8G`, `512MiB`, `1048576`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<String>,
}

/// The decision on a resize: 200 when granted, 409 with this body (as `detail`) when
/// refused.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ResizeAnswer {
    pub task: TaskId,
    pub granted: bool,
    /// What the attempt holds after the decision (unchanged when refused).
    pub resources: Resources,
    /// Why it was refused: `worker w1 has 1 cpu free, 3 more needed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// One resize decision of a task.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ResizeInfo {
    pub at: Millis,
    pub attempt: Attempt,
    /// What was asked (absent: unchanged).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_milli: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_bytes: Option<u64>,
    pub granted: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// One row of a task listing.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TaskSummary {
    pub id: TaskId,
    pub job: JobId,
    pub key: Option<String>,
    pub name: String,
    pub state: TaskState,
    pub priority: i32,
    pub attempt: Attempt,
    pub worker: Option<String>,
    pub submitted_at: Millis,
    pub started_at: Option<Millis>,
    pub ended_at: Option<Millis>,
    pub exit_code: Option<i32>,
    /// Completed from the result cache: the task whose result it took.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cached_from: Option<TaskId>,
}

/// A page of tasks. Pass `next_cursor` as `cursor` to get the next page.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TaskList {
    pub tasks: Vec<TaskSummary>,
    pub next_cursor: Option<String>,
}

/// A job and the states of its tasks.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct JobInfo {
    pub id: JobId,
    pub name: String,
    pub first: TaskId,
    pub count: u64,
    /// Tasks per state (only states with tasks).
    pub states: BTreeMap<TaskState, u64>,
    /// True when every task is in a final state.
    pub finished: bool,
    pub succeeded: bool,
    /// The job's splits (tasks with `split`), in task order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub splits: Vec<SplitInfo>,
}

/// How far a split got: its range, the chunks made so far and their sizes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SplitInfo {
    pub key: Option<String>,
    /// Its first task (slot); its slots are `first .. first + slots`.
    pub first: TaskId,
    pub slots: u32,
    /// The range, inclusive.
    pub range_start: u64,
    pub range_end: u64,
    /// `auto`, or the fixed count.
    pub chunks: String,
    /// The target duration of an automatic split's chunks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chunk_duration_ms: Option<u64>,
    /// The width of its first (probe) wave.
    pub wave: u32,
    /// Integers given to chunks so far, of `range_end - range_start + 1`.
    pub covered: u64,
    pub total: u64,
    /// Chunks made so far, and how many of them succeeded.
    pub chunks_created: u32,
    pub chunks_succeeded: u32,
    /// Each chunk's length, in range order.
    pub chunk_sizes: Vec<u64>,
    /// Items per second measured over the chunks that succeeded (0 before any).
    pub items_per_second: u64,
    /// A chunk ended without success: no more chunks are made.
    pub stopped: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CancelResponse {
    pub cancelled: u64,
}

/// A worker as the API shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct WorkerInfo {
    pub id: WorkerId,
    pub name: String,
    pub state: WorkerState,
    pub connected: bool,
    pub capacity: Resources,
    pub allocated: Resources,
    pub usage: WorkerUsage,
    pub labels: BTreeMap<String, String>,
    pub running: Vec<TaskId>,
    /// Milliseconds since the server last heard from it (None when never, on this server).
    pub last_seen_ms_ago: Option<u64>,
    /// The id of the worker credential bound to this worker's name (it joined with a
    /// join token), or none: it connects with the cluster token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential: Option<String>,
    /// The execution drivers it runs tasks with (`process` at least), sorted.
    #[serde(default)]
    pub drivers: Vec<String>,
    /// What its tasks were measured using, as last logged (`usage` is the host's live
    /// reading, on the leader only): what load-aware placement goes by.
    #[serde(default)]
    pub load: WorkerUsage,
    /// Its load as placement sees it, in thousandths of its capacity: per dimension the
    /// larger of `load` and `allocated`, then the larger of CPU and memory.
    #[serde(default)]
    pub load_permille: u32,
    /// The data keys it holds (files in its data directory and declared keys), sorted.
    #[serde(default)]
    pub data_keys: Vec<String>,
    /// The limits its kernel enforces on every task (memory, cpu, pids), how, and
    /// the GPU indices it hands out.
    #[serde(default)]
    pub isolation: drover_types::Isolation,
}

/// The state of the whole cluster at a glance.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ClusterSummary {
    pub version: String,
    pub node_id: u64,
    pub leader: Option<u64>,
    pub term: u64,
    pub last_applied: Option<u64>,
    /// Tasks per state (every state listed).
    pub tasks: BTreeMap<TaskState, u64>,
    pub workers_active: u32,
    pub workers_draining: u32,
    pub workers_lost: u32,
    pub policy: PolicyConfig,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Health {
    /// `ok`; `storage_failed` (HTTP 503) while writes to the server's data directory
    /// fail (a full disk): it refuses writes then, but still answers reads;
    /// `state_failed` (HTTP 503) once applying an entry failed: it serves nothing
    /// else until restarted.
    pub status: String,
    /// Whether this server leads the cluster (only the leader takes writes).
    pub leader: bool,
    /// Why the status is not `ok` (the operating system's words).
    #[serde(default)]
    pub reason: Option<String>,
    /// `member` (in the group, or alone), `joining` (started with `--join`, not yet
    /// added) or `removed` (taken out of the group: it takes no part any more).
    #[serde(default = "member_default")]
    pub membership: String,
}

fn member_default() -> String {
    "member".into()
}

/// `POST /v1/servers`: add a running server that waits to join (started with
/// `drover server --join`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct AddServer {
    /// The server's address (IP:PORT) as the others reach it: its `--listen`. The
    /// pattern gives the IPv4 form; an IPv6 one (`[::1]:7070`) is taken as well.
    #[cfg_attr(
        feature = "openapi",
        schema(
            example = "10.0.0.4:7070",
            pattern = r"^((25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])\.){3}(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9]):(6553[0-5]|655[0-2][0-9]|65[0-4][0-9]{2}|6[0-4][0-9]{3}|[1-5][0-9]{4}|[1-9][0-9]{0,3}|0)$"
        )
    )]
    pub address: String,
}

/// The answer to adding or removing a server: the member concerned.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ServerChange {
    /// Its node id in the group.
    pub id: u64,
    /// Its address (host:port).
    pub address: String,
    /// The voters once the change is committed.
    pub voters: Vec<u64>,
}

/// The answer to a worker drain or resume.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Ack {
    pub ok: bool,
}

/// One server of the replicated group, as `GET /v1/servers` reports it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ServerInfo {
    /// The server's id in the group.
    pub id: u64,
    /// Its address (host:port), as the group knows it.
    pub address: String,
    /// `leader`, `follower` or `learner` (a member without a vote), as the answering
    /// server sees it.
    pub role: String,
    /// The answering server's current term.
    pub term: u64,
    /// The last log index this server has applied: its own figure for itself; for the
    /// others the leader's view of what they have replicated (null when unknown).
    pub last_applied: Option<u64>,
    /// Whether the answering server hears from it: itself always; the others as the
    /// leader's replication reports (a follower knows only the leader).
    pub reachable: bool,
}

/// `POST /v1/tokens`: a new client ACL token.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct TokenRequest {
    /// `read`, `submit`, `operator` or `admin`.
    pub role: drover_types::Role,
    /// A label for people (up to 64 printable characters).
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(pattern = "^[ -~]{0,64}$"))]
    pub name: String,
    /// Confines the token to tasks of this owner: it submits with this owner forced and
    /// reads and cancels only such tasks. 1 to 128 printable characters (the schema
    /// says ASCII; the server takes any printable text).
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(pattern = "^[!-~][ -~]{0,127}$"))]
    pub namespace: Option<String>,
    /// Lifetime in milliseconds (1 ms to ten years); none: until revoked.
    #[serde(default)]
    #[cfg_attr(
        feature = "openapi",
        schema(minimum = 1, maximum = 315_360_000_000_u64)
    )]
    pub ttl_ms: Option<u64>,
}

/// A client ACL token as the API shows it (never its secret).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TokenInfo {
    pub id: u64,
    pub name: String,
    pub role: drover_types::Role,
    #[serde(default)]
    pub namespace: Option<String>,
    /// Unix milliseconds.
    pub created_at: Millis,
    #[serde(default)]
    pub expires_at: Option<Millis>,
    #[serde(default)]
    pub revoked_at: Option<Millis>,
}

/// The answer to `POST /v1/tokens`: the token, and its secret, shown this once.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CreatedToken {
    pub token: TokenInfo,
    /// `drv_<id>_<secret>`: send it as `Authorization: Bearer …`. Only its hash is
    /// kept; it cannot be shown again.
    pub secret: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TokenList {
    pub tokens: Vec<TokenInfo>,
}

/// One result cache entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CacheEntryInfo {
    /// The cache key: 64 hex digits.
    pub key: String,
    /// The task whose run made the entry; a hit shows its output.
    pub task: TaskId,
    pub attempt: Attempt,
    /// The cached result (the start of that run's stdout).
    pub result: String,
    pub stdout_bytes: u64,
    pub stderr_bytes: u64,
    pub created_at: Millis,
    pub expires_at: Millis,
    /// Tasks completed from this entry so far.
    pub hits: u64,
    /// What the entry counts against the cache's size bound.
    pub size: u64,
}

/// The result cache's entries, oldest first.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CacheList {
    pub entries: Vec<CacheEntryInfo>,
    /// The sum of the entries' sizes, and the bounds.
    pub bytes: u64,
    pub max_bytes: u64,
    pub max_entries: u64,
}

/// What a removal from the result cache removed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CacheRemoved {
    pub removed: u64,
}
