//! The scheduler: the task table, the workers, the queues and the policies.
//!
//! SKELETON: the public API below is the contract the state machine builds on.
//! Bodies are being implemented (issue 2).

use crate::action::{Action, Plan};
use crate::error::{CoreError, InvariantViolation};
use crate::event::Event;
use crate::view::{Counts, TaskRange, TaskView, WorkerView};
use drover_types::{DepRef, JobId, Limits, Millis, PolicyConfig, TaskId, WorkerId};
use serde::{Deserialize, Serialize};

/// Configuration fixed at creation (policies can change later through events).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SchedulerConfig {
    pub limits: Limits,
    pub policy: PolicyConfig,
}

/// What applying one event produced, besides actions.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Applied {
    /// For a submission: the job's id and its tasks (consecutive ids, in spec order,
    /// arrays expanded in index order).
    pub job: Option<(JobId, TaskRange)>,
    /// For a worker join: the worker's id.
    pub worker: Option<WorkerId>,
    /// For a cancellation: how many tasks it ended.
    pub cancelled: u64,
    /// Actions to carry out now (kills for a cancel, stale attempts on a rejoin, ...).
    pub actions: Vec<Action>,
}

/// The durable state of a scheduler, from which [`Scheduler::restore`] rebuilds an
/// identical one (indexes are rebuilt, not stored).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SchedulerSnapshot {}

#[derive(Debug)]
pub struct Scheduler {}

impl Scheduler {
    pub fn new(_config: SchedulerConfig) -> Scheduler {
        unimplemented!()
    }

    /// Applies one event at `now`. On error, nothing changed.
    pub fn apply(&mut self, _now: Millis, _event: Event) -> Result<Applied, CoreError> {
        unimplemented!()
    }

    /// One scheduling round at `now`: fire due timers, place ready tasks, preempt.
    pub fn schedule(&mut self, _now: Millis) -> Plan {
        unimplemented!()
    }

    pub fn task(&self, _id: TaskId) -> Option<TaskView<'_>> {
        unimplemented!()
    }

    /// The tasks a reference names: a numeric id, a task key, or an array's key.
    pub fn resolve(&self, _reference: &DepRef) -> Option<TaskRange> {
        unimplemented!()
    }

    /// Tasks in id order starting after `after` (cursor pagination).
    pub fn tasks_after(&self, _after: Option<TaskId>) -> Box<dyn Iterator<Item = TaskView<'_>> + '_> {
        unimplemented!()
    }

    /// Why a task that is not running is not running, in a sentence for people.
    /// `None` for running tasks.
    pub fn pending_reason(&self, _id: TaskId, _now: Millis) -> Option<String> {
        unimplemented!()
    }

    pub fn worker(&self, _id: WorkerId) -> Option<WorkerView<'_>> {
        unimplemented!()
    }

    pub fn worker_by_name(&self, _name: &str) -> Option<WorkerId> {
        unimplemented!()
    }

    pub fn workers(&self) -> Box<dyn Iterator<Item = WorkerView<'_>> + '_> {
        unimplemented!()
    }

    pub fn counts(&self) -> Counts {
        unimplemented!()
    }

    pub fn policy(&self) -> &PolicyConfig {
        unimplemented!()
    }

    /// Checks every invariant; tests call it after every event.
    pub fn check_invariants(&self) -> Result<(), InvariantViolation> {
        unimplemented!()
    }

    pub fn snapshot(&self) -> SchedulerSnapshot {
        unimplemented!()
    }

    pub fn restore(_snapshot: SchedulerSnapshot) -> Scheduler {
        unimplemented!()
    }
}
