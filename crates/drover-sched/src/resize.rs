//! Dynamic resources: a placed attempt's reservation changed in place
//! ([`crate::Event::Resize`]).
//!
//! A resize is decided against the worker the attempt holds: granted when the worker's
//! capacity, minus every other reservation on it, holds the new amounts (so shrinking is
//! always granted), refused otherwise. Refused-only: a request is never queued until
//! room frees (the task may ask again). The new reservation lasts until the attempt
//! ends; a retry reserves the spec's resources again.
//!
//! Kept beside the task table, not in [`crate::task_table::TaskRec`] (which must stay
//! small for a million queued tasks): resized attempts are few. The map is durable (a
//! restored replica must count what the worker really holds), and travels in the state
//! machine's snapshot as a [`ResizeSnapshot`] (format 4), restored by
//! [`Scheduler::restore_resizes`].

use crate::scheduler::{Applied, Scheduler, ix};
use crate::task_table::{NO_WORKER, PREFETCHED};
use crate::{Action, CoreError};
use drover_types::{Attempt, Millis, Resources, TaskId, TaskState, WorkerId};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// At most this many decisions are kept per task (the newest).
pub const MAX_RESIZE_HISTORY: usize = 16;

/// What a resize asks for: the new amounts of the dimensions named; the others keep
/// what the attempt holds. (No `skip_serializing_if`: it is also written into the
/// snapshot's postcard, which has no field names.)
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResizeRequest {
    #[serde(default)]
    pub cpu_milli: Option<u32>,
    #[serde(default)]
    pub memory_bytes: Option<u64>,
}

/// The core's answer to a resize. Externally tagged (postcard cannot read an internally
/// tagged enum); the API has its own JSON shape for it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResizeDecision {
    /// The attempt now holds `resources` (the whole reservation).
    Granted {
        #[serde(with = "crate::compact::resources")]
        resources: Resources,
    },
    /// Nothing changed.
    Refused { refusal: ResizeRefusal },
}

impl ResizeDecision {
    pub fn is_granted(&self) -> bool {
        matches!(self, ResizeDecision::Granted { .. })
    }
}

/// Why a resize was refused.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResizeRefusal {
    /// The worker has not enough room beside its other reservations. `free` counts the
    /// attempt's own reservation as free.
    NoRoom {
        worker: WorkerId,
        free_cpu_milli: u32,
        free_memory_bytes: u64,
        wanted_cpu_milli: u32,
        wanted_memory_bytes: u64,
    },
}

impl fmt::Display for ResizeRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use drover_types::{format_bytes, format_cpus};
        match self {
            ResizeRefusal::NoRoom {
                worker,
                free_cpu_milli,
                free_memory_bytes,
                wanted_cpu_milli,
                wanted_memory_bytes,
            } => {
                let mut short = Vec::new();
                if wanted_cpu_milli > free_cpu_milli {
                    short.push(format!(
                        "{} cpu free, {} more needed",
                        format_cpus(*free_cpu_milli),
                        format_cpus(wanted_cpu_milli - free_cpu_milli)
                    ));
                }
                if wanted_memory_bytes > free_memory_bytes {
                    short.push(format!(
                        "{} memory free, {} more needed",
                        format_bytes(*free_memory_bytes),
                        format_bytes(wanted_memory_bytes - free_memory_bytes)
                    ));
                }
                write!(f, "worker {worker} has {}", short.join("; "))
            }
        }
    }
}

/// One decision, as kept for `drover status`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResizeRecord {
    pub at: Millis,
    pub attempt: Attempt,
    pub request: ResizeRequest,
    pub decision: ResizeDecision,
}

/// The core's dynamic-resource state.
#[derive(Clone, Debug, Default)]
pub(crate) struct Resizes {
    /// The reservation of each placed attempt that was resized (absent: its shape's).
    pub reserved: BTreeMap<TaskId, Resources>,
    /// The newest decisions per task, oldest first; dropped when the task is retired.
    pub history: BTreeMap<TaskId, Vec<ResizeRecord>>,
}

// format 4: dynamic resources
/// The durable part of the resize state, for the state machine's snapshot.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResizeSnapshot {
    reserved: Vec<ReservedEntry>,
    history: Vec<(TaskId, Vec<ResizeRecord>)>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct ReservedEntry {
    task: TaskId,
    #[serde(with = "crate::compact::resources")]
    resources: Resources,
}

impl ResizeSnapshot {
    pub fn is_empty(&self) -> bool {
        self.reserved.is_empty() && self.history.is_empty()
    }
}

impl Scheduler {
    /// What the current attempt of `id` holds on its worker (meaningful while it does).
    pub(crate) fn held_resources(&self, id: TaskId) -> &Resources {
        self.resizes
            .reserved
            .get(&id)
            .unwrap_or_else(|| &self.shapes.list[self.tasks[ix(id)].shape as usize].res)
    }

    /// The reservation of the task's current attempt if it was resized.
    pub fn resized_reservation(&self, id: TaskId) -> Option<&Resources> {
        self.resizes.reserved.get(&id)
    }

    /// The task's resize decisions, oldest first (at most [`MAX_RESIZE_HISTORY`]).
    pub fn resize_history(&self, id: TaskId) -> &[ResizeRecord] {
        self.resizes.history.get(&id).map_or(&[], Vec::as_slice)
    }

    pub fn resize_snapshot(&self) -> ResizeSnapshot {
        ResizeSnapshot {
            reserved: self
                .resizes
                .reserved
                .iter()
                .map(|(t, r)| ReservedEntry {
                    task: *t,
                    resources: r.clone(),
                })
                .collect(),
            history: self
                .resizes
                .history
                .iter()
                .map(|(t, h)| (*t, h.clone()))
                .collect(),
        }
    }

    /// Puts back the resize state of a snapshot, after [`Scheduler::restore`]. The
    /// workers' `allocated` in the core's snapshot already counts the resized amounts;
    /// only the fair-share usage, rebuilt from the shapes, is corrected here.
    pub fn restore_resizes(&mut self, snap: ResizeSnapshot) {
        for ReservedEntry { task, resources } in snap.reserved {
            let Some(rec) = self.tasks.get(task) else {
                continue;
            };
            if rec.holder == NO_WORKER || rec.slot == PREFETCHED {
                continue;
            }
            let (owner, shape_cpu) = (
                rec.owner,
                self.shapes.list[rec.shape as usize].res.cpu_milli,
            );
            self.shift_usage(owner, shape_cpu, resources.cpu_milli);
            self.resizes.reserved.insert(task, resources);
        }
        for (task, h) in snap.history {
            if self.tasks.get(task).is_some() {
                self.resizes.history.insert(task, h);
            }
        }
    }

    /// Moves an owner's fair-share usage from `from` to `to` millicores (no placement
    /// is counted: a resize is not a new service for the tie-break).
    fn shift_usage(&mut self, owner: u32, from: u32, to: u32) {
        let o = owner as usize;
        if self.owner_usage.len() <= o {
            self.owner_usage.resize(o + 1, 0);
        }
        self.owner_usage[o] = self.owner_usage[o] - from as u64 + to as u64;
        if self.queue.by_group() {
            let share = self.share_of(owner);
            self.queue.set_share(owner, share);
        }
    }

    /// Forgets the resized reservation of the task's attempt (it released it).
    pub(crate) fn forget_reservation(&mut self, id: TaskId) {
        if !self.resizes.reserved.is_empty() {
            self.resizes.reserved.remove(&id);
        }
    }

    /// Forgets everything about a retired task.
    pub(crate) fn forget_resizes(&mut self, id: TaskId) {
        if !self.resizes.history.is_empty() {
            self.resizes.history.remove(&id);
        }
        self.forget_reservation(id);
    }

    /// Applies [`crate::Event::Resize`].
    pub(crate) fn resize(
        &mut self,
        task: TaskId,
        attempt: Option<Attempt>,
        worker: Option<WorkerId>,
        request: ResizeRequest,
    ) -> Result<Applied, CoreError> {
        let rec = self.rec(task).ok_or(CoreError::UnknownTask(task))?;
        if let Some(a) = attempt
            && a.0 != rec.attempt
        {
            return Err(CoreError::StaleAttempt {
                task,
                attempt: a,
                current: Attempt(rec.attempt),
            });
        }
        let holding = rec.holder != NO_WORKER
            && rec.slot != PREFETCHED
            && rec.kill.is_none()
            && matches!(rec.state, TaskState::Assigned | TaskState::Running);
        if !holding {
            return Err(CoreError::NotRunning {
                task,
                state: rec.state,
            });
        }
        let w = WorkerId(rec.holder);
        if let Some(from) = worker
            && from != w
        {
            return Err(CoreError::WrongWorker {
                task,
                attempt: Attempt(rec.attempt),
                worker: from,
            });
        }
        let current_attempt = Attempt(rec.attempt);
        let owner = rec.owner;
        let old = self.held_resources(task).clone();
        let mut new = old.clone();
        if let Some(c) = request.cpu_milli {
            new.cpu_milli = c;
        }
        if let Some(m) = request.memory_bytes {
            new.memory_bytes = m;
        }
        let wrec = self.pool.rec(w);
        let mut others = wrec.allocated.clone();
        others.sub(&old);
        let mut actions = Vec::new();
        let decision = if new.fits_beside(&others, &wrec.spec.capacity) {
            if new != old {
                self.pool.resize(w, &old, &new);
                self.shift_usage(owner, old.cpu_milli, new.cpu_milli);
                if new == self.shapes.list[self.tasks[ix(task)].shape as usize].res {
                    self.resizes.reserved.remove(&task);
                } else {
                    self.resizes.reserved.insert(task, new.clone());
                }
            }
            actions.push(Action::Resize {
                task,
                attempt: current_attempt,
                worker: w,
                resources: new.clone(),
            });
            ResizeDecision::Granted { resources: new }
        } else {
            let cap = &wrec.spec.capacity;
            ResizeDecision::Refused {
                refusal: ResizeRefusal::NoRoom {
                    worker: w,
                    free_cpu_milli: cap.cpu_milli.saturating_sub(others.cpu_milli),
                    free_memory_bytes: cap.memory_bytes.saturating_sub(others.memory_bytes),
                    wanted_cpu_milli: new.cpu_milli,
                    wanted_memory_bytes: new.memory_bytes,
                },
            }
        };
        let history = self.resizes.history.entry(task).or_default();
        if history.len() >= MAX_RESIZE_HISTORY {
            history.remove(0);
        }
        history.push(ResizeRecord {
            at: self.now,
            attempt: current_attempt,
            request,
            decision: decision.clone(),
        });
        Ok(Applied {
            resize: Some(decision),
            actions,
            ..Applied::default()
        })
    }
}
