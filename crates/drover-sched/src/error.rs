//! Why the core refused an event.

use drover_types::{Attempt, JobId, TaskId, TaskState, ValidationError, WorkerId};

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CoreError {
    /// The submission is malformed, or names an unknown dependency.
    #[error(transparent)]
    Invalid(#[from] ValidationError),
    #[error("no task {0}")]
    UnknownTask(TaskId),
    #[error("no job {0}")]
    UnknownJob(JobId),
    #[error("no worker {0}")]
    UnknownWorker(WorkerId),
    /// A report from an attempt that is not the task's current one (fencing).
    #[error("stale report for task {task}: attempt {attempt} is not the current attempt {current}")]
    StaleAttempt {
        task: TaskId,
        attempt: Attempt,
        current: Attempt,
    },
    /// A report for an attempt from a worker it was not placed on.
    #[error("task {task} attempt {attempt} is not placed on worker {worker}")]
    WrongWorker {
        task: TaskId,
        attempt: Attempt,
        worker: WorkerId,
    },
    /// A resize of a task whose current attempt holds no reservation (not placed,
    /// prefetched, being stopped, or ended).
    #[error(
        "task {task} is {state}: only a placed attempt that is not being stopped can be resized"
    )]
    NotRunning { task: TaskId, state: TaskState },
    #[error("task {task} is already {state}")]
    AlreadyFinal { task: TaskId, state: TaskState },
    #[error("task {task} cannot go from {from} to {to}")]
    BadTransition {
        task: TaskId,
        from: TaskState,
        to: TaskState,
    },
}

/// Why a reference ([`drover_types::DepRef`]) names no task; see
/// [`crate::Scheduler::resolve`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ResolveError {
    #[error("no task {0}")]
    NoTask(TaskId),
    /// A bare key no task has.
    #[error("no task with key {0:?}")]
    NoKey(String),
    /// `JOB_ID/KEY` naming a job that does not exist.
    #[error("no job {0}")]
    NoJob(JobId),
    /// `JOB_NAME/KEY` naming a name no job has.
    #[error("no job named {0:?}")]
    NoJobNamed(String),
    /// The job exists but has no task with that key.
    #[error(
        "no task with key {key:?} in job {job}{}",
        named.as_ref().map(|n| format!(" (the newest job named {n:?})")).unwrap_or_default()
    )]
    NoKeyInJob {
        key: String,
        job: JobId,
        named: Option<String>,
    },
}

/// A broken invariant, found by [`crate::Scheduler::check_invariants`]. Never expected
/// outside a bug; tests run the checker after every event.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invariant violated: {0}")]
pub struct InvariantViolation(pub String);
