//! The closed set of things that can happen to the core.

use crate::resize::ResizeRequest;
use drover_types::{
    Attempt, JobId, JobSpec, Outcome, PolicyConfig, TaskId, WorkerId, WorkerSpec, WorkerUsage,
};
use serde::{Deserialize, Serialize};

/// Everything that can change the core's state. Each is applied at a `now` given by the
/// caller (the leader's timestamp on the log entry that carries it).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// A job: one or more tasks, accepted atomically or rejected whole.
    Submit {
        job: JobSpec,
    },
    Cancel {
        target: CancelTarget,
    },
    /// A worker joins, or rejoins after a disconnect or a restart (same `spec.name`).
    /// `running` lists the attempts it still runs: attempts the core placed there that
    /// are missing from it are treated as lost; listed attempts that are stale are killed.
    WorkerJoin {
        spec: WorkerSpec,
        running: Vec<(TaskId, Attempt)>,
    },
    WorkerHeartbeat {
        worker: WorkerId,
        usage: WorkerUsage,
        data_keys: Option<Vec<String>>,
    },
    /// No new tasks for this worker; its running ones finish.
    WorkerDrain {
        worker: WorkerId,
    },
    /// Back to taking tasks after a drain.
    WorkerResume {
        worker: WorkerId,
    },
    /// The worker missed its heartbeats. Its attempts end; each task is retried or
    /// failed per its retry policy.
    WorkerLost {
        worker: WorkerId,
    },
    /// The worker started the attempt.
    TaskStarted {
        task: TaskId,
        attempt: Attempt,
        worker: WorkerId,
        /// The GPU indices the worker gave it (recorded on the attempt, for display).
        gpus: Vec<u32>,
    },
    /// The attempt ended on the worker.
    TaskFinished {
        task: TaskId,
        attempt: Attempt,
        worker: WorkerId,
        outcome: Outcome,
    },
    /// Switch policies. Nothing queued is lost; the queue is re-ordered by the new policy.
    SetPolicy {
        policy: PolicyConfig,
    },
    /// Retention: removes complete jobs (every task final, no task still holding a
    /// worker, no task of another job still waiting on one of theirs), oldest
    /// completion first, while they completed `keep_ms` or more before `now`, or while
    /// more than `keep_max` final tasks are held. Their ids and names are not reused;
    /// their keys and job names become free. See `retire.rs`.
    Retire {
        keep_ms: u64,
        keep_max: u64,
    },
    /// Dynamic resources: change the reservation of the task's placed attempt (see
    /// `resize.rs`). `attempt` and `worker`, when given (a request from the task
    /// through its agent), must be the current ones; the API gives neither.
    Resize {
        task: TaskId,
        attempt: Option<Attempt>,
        worker: Option<WorkerId>,
        request: ResizeRequest,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "id", rename_all = "snake_case")]
pub enum CancelTarget {
    Task(TaskId),
    Job(JobId),
}
