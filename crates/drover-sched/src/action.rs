//! What the core asks the runtime to do.

use drover_types::{Attempt, Resources, TaskId, WorkerId};
use serde::{Deserialize, Serialize};

/// One instruction for the runtime. Actions are decided by the core when it applies a
/// committed event, so every replica computes the same ones; only the leader carries
/// them out.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Action {
    /// Start this attempt of the task on the worker. Its resources are already reserved.
    Start {
        task: TaskId,
        attempt: Attempt,
        worker: WorkerId,
    },
    /// Stop this attempt: SIGTERM to its process tree, SIGKILL `grace_ms` later.
    Kill {
        task: TaskId,
        attempt: Attempt,
        worker: WorkerId,
        reason: KillReason,
        grace_ms: u64,
    },
    /// The attempt's reservation changed (a granted resize): the worker sets the
    /// attempt's limits to `resources`.
    Resize {
        task: TaskId,
        attempt: Attempt,
        worker: WorkerId,
        #[serde(with = "crate::compact::resources")]
        resources: Resources,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KillReason {
    Cancelled,
    TimeLimit,
    /// Evicted to make room for a higher-priority task.
    Preempted,
    /// A prefetched attempt taken back from a busy worker, to run on one with room.
    /// The worker drops it if it has not started it yet; one it has started runs on
    /// (its start, when applied, cancels the retraction): a task is never killed and
    /// run again just to move it.
    Retracted,
    /// The worker runs an attempt that is no longer current (it rejoined after the
    /// attempt was given up on).
    Stale,
}

/// The actions of one scheduling round.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    pub actions: Vec<Action>,
}
