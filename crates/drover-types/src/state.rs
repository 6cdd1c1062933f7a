//! A task's lifecycle states and the outcome of one attempt.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Where a task is in its life.
///
/// ```text
/// Waiting --deps succeeded--> Ready --placed--> Assigned --worker started it--> Running
/// Running --exit 0--> Succeeded
/// Running --failure, attempts left--> Backoff --delay over--> Ready
/// Running --failure, no attempts left--> Failed | TimedOut
/// Assigned/Running --worker lost or preempted--> Backoff/Ready (new attempt) or Failed
/// any non-final --cancel--> Cancelled
/// Waiting --a parent ended without success--> DependencyFailed
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum TaskState {
    /// Waiting for its dependencies to succeed.
    Waiting,
    /// Eligible to run; queued for placement.
    Ready,
    /// Waiting out a retry backoff before it becomes ready again.
    Backoff,
    /// Placed on a worker; the worker has not yet reported it started.
    Assigned,
    Running,
    Succeeded,
    Failed,
    TimedOut,
    Cancelled,
    /// A dependency ended without succeeding; this task will never run.
    DependencyFailed,
}

impl TaskState {
    pub const ALL: [TaskState; 10] = [
        TaskState::Waiting,
        TaskState::Ready,
        TaskState::Backoff,
        TaskState::Assigned,
        TaskState::Running,
        TaskState::Succeeded,
        TaskState::Failed,
        TaskState::TimedOut,
        TaskState::Cancelled,
        TaskState::DependencyFailed,
    ];

    /// Final states never change again.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            TaskState::Succeeded
                | TaskState::Failed
                | TaskState::TimedOut
                | TaskState::Cancelled
                | TaskState::DependencyFailed
        )
    }

    /// States in which an attempt holds resources on a worker.
    pub fn is_on_worker(self) -> bool {
        matches!(self, TaskState::Assigned | TaskState::Running)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            TaskState::Waiting => "waiting",
            TaskState::Ready => "ready",
            TaskState::Backoff => "backoff",
            TaskState::Assigned => "assigned",
            TaskState::Running => "running",
            TaskState::Succeeded => "succeeded",
            TaskState::Failed => "failed",
            TaskState::TimedOut => "timed_out",
            TaskState::Cancelled => "cancelled",
            TaskState::DependencyFailed => "dependency_failed",
        }
    }

    pub fn parse(text: &str) -> Option<TaskState> {
        let t = text.trim().to_ascii_lowercase().replace('-', "_");
        TaskState::ALL.into_iter().find(|s| s.as_str() == t)
    }
}

impl fmt::Display for TaskState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How one attempt ended, as the worker reports it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Outcome {
    /// The process exited by itself with this code.
    Exited { code: i32 },
    /// The process was ended by this signal (not sent by Drover).
    Signaled { signal: i32 },
    /// Drover ended it at its time limit.
    TimedOut,
    /// Drover ended it because it was cancelled or evicted.
    Killed,
    /// It went over its memory limit and was ended.
    OutOfMemory,
    /// It tried to run more than `limit` processes and threads at once (a fork bomb,
    /// or a runaway pool) and was ended.
    TooManyProcesses { limit: u64 },
    /// It could not be started (no such program, bad working directory, ...).
    SpawnFailed { message: String },
    /// Its worker stopped it because it could not reach the server for so long that the
    /// server may have re-placed the task (the self-fence).
    Fenced,
}

impl Outcome {
    pub fn is_success(&self) -> bool {
        matches!(self, Outcome::Exited { code: 0 })
    }

    /// Whether only a process that ran can end this way. `Killed` and `Fenced` also
    /// end attempts a worker held queued and never started; `SpawnFailed` never ran.
    pub fn proves_a_start(&self) -> bool {
        matches!(
            self,
            Outcome::Exited { .. }
                | Outcome::Signaled { .. }
                | Outcome::TimedOut
                | Outcome::OutOfMemory
                | Outcome::TooManyProcesses { .. }
        )
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Exited { code } => write!(f, "exited with code {code}"),
            Outcome::Signaled { signal } => write!(f, "killed by signal {signal}"),
            Outcome::TimedOut => f.write_str("timed out"),
            Outcome::Killed => f.write_str("killed by Drover"),
            Outcome::OutOfMemory => f.write_str("went over its memory limit"),
            Outcome::TooManyProcesses { limit } => {
                write!(f, "went over its limit of {limit} processes")
            }
            Outcome::SpawnFailed { message } => write!(f, "could not start: {message}"),
            Outcome::Fenced => f.write_str("stopped by its worker, cut off from the server"),
        }
    }
}

/// Why an attempt ended without success, including causes no worker reports.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum FailureCause {
    /// The worker reported this outcome.
    Outcome { outcome: Outcome },
    /// The worker running the attempt was declared lost.
    WorkerLost { worker: crate::WorkerId },
    /// The attempt was evicted to make room for a higher-priority task.
    Preempted,
    /// A prefetched attempt was taken back from a busy worker to run on a free one.
    Retracted,
    /// The attempt went past its time limit and the core ended it.
    TimeLimit,
}

impl fmt::Display for FailureCause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FailureCause::Outcome { outcome } => write!(f, "{outcome}"),
            FailureCause::WorkerLost { worker } => write!(f, "worker {worker} was lost"),
            FailureCause::Preempted => f.write_str("preempted by a higher-priority task"),
            FailureCause::Retracted => {
                f.write_str("taken back from a busy worker to run on a free one")
            }
            FailureCause::TimeLimit => f.write_str("went past its time limit"),
        }
    }
}

/// Resources one attempt used, measured by the worker's execution driver. Which
/// figures are exact and which are sampled depends on the driver (see drover-exec).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(default)]
pub struct AttemptUsage {
    pub wall_ms: u64,
    /// User + system CPU time of the whole process tree.
    pub cpu_time_ms: u64,
    pub peak_memory_bytes: u64,
    /// Bytes read from / written to storage (not page-cache hits).
    pub read_bytes: u64,
    pub write_bytes: u64,
}
