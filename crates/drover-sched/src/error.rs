//! Why the core refused an event.

use drover_types::{Attempt, JobId, TaskId, TaskState, ValidationError, WorkerId};

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CoreError {
    /// The submission is malformed, names an unknown dependency, or reuses a key.
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
    #[error("task {task} is already {state}")]
    AlreadyFinal { task: TaskId, state: TaskState },
    #[error("task {task} cannot go from {from} to {to}")]
    BadTransition {
        task: TaskId,
        from: TaskState,
        to: TaskState,
    },
}

/// A broken invariant, found by [`crate::Scheduler::check_invariants`]. Never expected
/// outside a bug; tests run the checker after every event.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invariant violated: {0}")]
pub struct InvariantViolation(pub String);
