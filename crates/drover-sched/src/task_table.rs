//! The task table: one compact record per task, in a dense vector indexed by id.

use crate::action::KillReason;
use crate::stored_spec::StoredSpec;
use crate::view::AttemptRecord;
use drover_types::{JobId, LabelSelector, Millis, Resources, TaskId, TaskSpec, TaskState};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hash, Hasher};
use std::sync::Arc;

/// "No worker" in [`TaskRec::holder`].
pub(crate) const NO_WORKER: u32 = u32::MAX;
/// In [`TaskRec::slot`]: the task is bound to `holder` as a prefetched task, holding
/// nothing (it waits in the worker's queue); see `Scheduler::prefetch`.
pub(crate) const PREFETCHED: u32 = u32::MAX;
/// "Never ready yet" in [`TaskRec::ready_at`].
pub(crate) const NEVER: Millis = Millis(u64::MAX);

/// One task. Kept small (the spec's template is shared, a plain task keeps only its key,
/// name and command packed, and one `Arc` serves all the elements of an array) so that
/// a million queued tasks fit easily in memory.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct TaskRec {
    /// Restored separately by the snapshot, which stores each shared spec once.
    #[serde(skip)]
    pub spec: StoredSpec,
    pub job: JobId,
    /// Resolved dependencies in the order given.
    pub deps: Arc<[TaskId]>,
    /// Tasks that depend on this one (each once).
    pub children: Vec<TaskId>,
    #[serde(with = "crate::compact::attempts")]
    pub attempts: Vec<AttemptRecord>,
    pub submitted_at: Millis,
    /// When it first became ready ([`NEVER`] before); the age priority aging counts.
    pub ready_at: Millis,
    pub started_at: Option<Millis>,
    pub ended_at: Option<Millis>,
    /// End of the retry backoff, while in Backoff.
    pub wake_at: Millis,
    /// `max_runtime_ms` (0: none), copied here so that the hot path never has to load
    /// the spec.
    pub limit_ms: u64,
    /// Current attempt number: the fencing token (0 before the first placement).
    pub attempt: u32,
    /// Attempts that counted against `retry.max_attempts` (evictions do not).
    pub spent: u32,
    /// Distinct parents that have not succeeded yet.
    pub remaining: u32,
    pub array_index: Option<u32>,
    /// Interned owner (fair-share group).
    pub owner: u32,
    /// Interned placement shape; rebuilt on restore.
    #[serde(skip)]
    pub shape: u32,
    /// The worker the current attempt is bound to, or [`NO_WORKER`]: it holds that
    /// worker's resources, unless prefetched.
    pub holder: u32,
    /// Position in that worker's `running` list (O(1) removal), or [`PREFETCHED`].
    pub slot: u32,
    pub state: TaskState,
    /// Set when the core asked the worker to stop the current attempt.
    pub kill: Option<KillReason>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct JobRec {
    pub first: TaskId,
    pub count: u32,
    /// The job's name as a number in `JobNames` (0: none).
    #[serde(default)]
    pub name: u32,
    /// How many of its tasks are in each state, indexed by `TaskState as usize`:
    /// a job's status and its open count are read from here, not by visiting its
    /// tasks. Derived (rebuilt on restore).
    #[serde(skip)]
    pub states: [u32; TaskState::ALL.len()],
    /// When the job last became complete (`open` reached 0): the latest `ended_at` of
    /// its tasks. Derived.
    #[serde(skip)]
    pub done_at: Millis,
}

impl JobRec {
    /// Its tasks not in a final state yet.
    pub(crate) fn open(&self) -> u32 {
        TaskState::ALL
            .iter()
            .filter(|s| !s.is_final())
            .map(|s| self.states[*s as usize])
            .sum()
    }
}

/// What decides whether a task can fit on a worker: its resources and hard constraints
/// (plus whether it has preferences to score). Tasks with equal shapes fit on exactly
/// the same workers, and placing one needs nothing but its shape unless it is scored.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct Shape {
    pub res: Resources,
    pub constraints: Vec<LabelSelector>,
    /// The tasks have inputs or affinities to score (placement then looks at the spec).
    pub scored: bool,
    /// The driver the tasks need, `None` for `process` (which every worker has).
    pub driver: Option<String>,
}

/// The driver a spec needs from its worker, `None` for the one every worker has.
pub(crate) fn needed_driver(spec: &TaskSpec) -> Option<&str> {
    Some(spec.driver_name()).filter(|d| *d != drover_types::PROCESS_DRIVER)
}

#[derive(Debug, Default)]
pub(crate) struct Shapes {
    pub list: Vec<Shape>,
    /// Hash -> shape ids with that hash (lookups only; never iterated).
    index: HashMap<u64, Vec<u32>, BuildHasherDefault<Fnv>>,
}

/// FNV-1a: a small, fast, seedless hash for interning shapes (SipHash's resistance to
/// flooding buys nothing for keys that are compared in full anyway).
#[derive(Default)]
pub(crate) struct Fnv(u64);

impl Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        let mut h = if self.0 == 0 {
            0xcbf2_9ce4_8422_2325
        } else {
            self.0
        };
        for &b in bytes {
            h ^= b as u64;
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        self.0 = h;
    }
}

impl Shapes {
    pub fn intern(&mut self, spec: &TaskSpec) -> u32 {
        let mut h = Fnv::default();
        spec.resources.hash(&mut h);
        spec.constraints.hash(&mut h);
        let scored = !spec.inputs.is_empty() || !spec.affinity.is_empty();
        scored.hash(&mut h);
        let driver = needed_driver(spec);
        driver.hash(&mut h);
        let hash = h.finish();
        let ids = self.index.entry(hash).or_default();
        for &id in ids.iter() {
            let s = &self.list[id as usize];
            if s.res == spec.resources
                && s.constraints == spec.constraints
                && s.scored == scored
                && s.driver.as_deref() == driver
            {
                return id;
            }
        }
        let id = self.list.len() as u32;
        ids.push(id);
        self.list.push(Shape {
            res: spec.resources.clone(),
            constraints: spec.constraints.clone(),
            scored,
            driver: driver.map(str::to_string),
        });
        id
    }
}

/// Owner names to dense ids, in order of first appearance (part of the snapshot, since
/// fair-share breaks ties between owners by id).
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub(crate) struct Owners {
    pub names: Vec<String>,
    #[serde(skip)]
    index: HashMap<String, u32>,
}

impl Owners {
    pub fn intern(&mut self, name: &str) -> u32 {
        if let Some(&id) = self.index.get(name) {
            return id;
        }
        let id = self.names.len() as u32;
        self.names.push(name.to_string());
        self.index.insert(name.to_string(), id);
        id
    }

    pub fn reindex(&mut self) {
        self.index = self
            .names
            .iter()
            .enumerate()
            .map(|(i, n)| (n.clone(), i as u32))
            .collect();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A million queued tasks must fit in about 1 GiB of server memory; the record is
    /// the part every task pays whatever its spec, and a plain task of a generated job
    /// adds only its packed key, name and command (its template, a whole `TaskSpec`,
    /// is shared; an array's elements share one spec). Printed with `--nocapture` for
    /// the memory notes in `docs/benchmarks.md`.
    #[test]
    fn a_task_record_stays_small() {
        let rec = std::mem::size_of::<TaskRec>();
        let template = StoredSpec::new(
            TaskSpec {
                name: "t0".into(),
                ..TaskSpec::command(["sleep", "1"])
            },
            None,
        );
        let task = StoredSpec::new(
            TaskSpec {
                name: "t999999".into(),
                ..TaskSpec::command(["sleep", "1"])
            },
            Some(&template),
        );
        println!(
            "TaskRec {rec} B, own fields of a generated task {} B, TaskSpec {} B, \
             Resources {} B, AttemptRecord {} B",
            task.own_bytes(),
            std::mem::size_of::<TaskSpec>(),
            std::mem::size_of::<Resources>(),
            std::mem::size_of::<AttemptRecord>(),
        );
        assert!(rec <= 200, "TaskRec grew to {rec} bytes");
        assert!(task.shares_template_with(&template));
        // One small allocation (malloc's smallest classes hold up to 24 bytes).
        assert!(task.own_bytes() <= 24, "{} bytes", task.own_bytes());
    }
}
