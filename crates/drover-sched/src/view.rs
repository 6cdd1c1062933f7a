//! Read-only views of the core's state, for the API and for pending reasons.

use drover_types::{
    Attempt, FailureCause, JobId, Millis, Outcome, Resources, TaskId, TaskState, WorkerId,
    WorkerSpec, WorkerState, WorkerUsage,
};
use serde::{Deserialize, Serialize};

/// One attempt of a task.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttemptRecord {
    pub attempt: Attempt,
    pub worker: WorkerId,
    pub assigned_at: Millis,
    pub started_at: Option<Millis>,
    pub ended_at: Option<Millis>,
    /// The worker's report, when it sent one.
    pub outcome: Option<Outcome>,
    /// Why the attempt ended without success, when it did.
    pub failure: Option<FailureCause>,
    /// The GPU indices its worker gave it (from its start report).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gpus: Vec<u32>,
}

/// A task as the core knows it.
#[derive(Clone, Debug)]
pub struct TaskView<'a> {
    pub id: TaskId,
    pub job: JobId,
    /// Its spec: `spec.to_spec()` whole; `spec.shared()` for any field but key, name
    /// and command without putting it together.
    pub spec: &'a crate::StoredSpec,
    /// For an element of a task array: its index and the array's length.
    pub array_index: Option<u32>,
    pub array_count: Option<u32>,
    /// For a chunk of a split: its slice of the range, inclusive, once assigned.
    pub slice: Option<(u64, u64)>,
    pub state: TaskState,
    /// The current attempt (0 before the first placement).
    pub attempt: Attempt,
    /// Where the current attempt is placed, while it is.
    pub worker: Option<WorkerId>,
    pub submitted_at: Millis,
    /// When the current attempt started, and when the task reached a final state.
    pub started_at: Option<Millis>,
    pub ended_at: Option<Millis>,
    /// Resolved dependencies in the order given (an array expands in index order).
    pub deps: &'a [TaskId],
    pub attempts: &'a [AttemptRecord],
}

/// A consecutive range of task ids: one task, or all the elements of an array.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskRange {
    pub first: TaskId,
    pub count: u32,
}

/// A worker as the core knows it.
#[derive(Clone, Debug)]
pub struct WorkerView<'a> {
    pub id: WorkerId,
    pub spec: &'a WorkerSpec,
    pub state: WorkerState,
    /// Reserved by the attempts placed on it.
    pub allocated: Resources,
    /// Its tasks' measured usage, as last reported through the log.
    pub usage: &'a WorkerUsage,
    /// What load-aware placement orders it by: thousandths of its capacity (the larger
    /// of measured usage and reservations, CPU or memory whichever is higher).
    pub load_permille: u32,
    pub running: Vec<TaskId>,
    /// Prefetched to it, in the order it will start them (holding nothing yet).
    pub queued: Vec<TaskId>,
}

/// Tasks per state and workers per state.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    /// Indexed by the position of the state in [`TaskState::ALL`].
    pub tasks: [u64; 10],
    pub workers_active: u32,
    pub workers_draining: u32,
    pub workers_lost: u32,
}

impl Counts {
    pub fn of(&self, state: TaskState) -> u64 {
        let i = TaskState::ALL.iter().position(|s| *s == state).unwrap_or(0);
        self.tasks[i]
    }
}
