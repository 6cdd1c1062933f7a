//! What the result cache (in `drover-state`) asks of the core: complete a task that
//! need not run, and hold a task back while another with the same cache key runs.
//!
//! These are not [`crate::Event`]s: the state machine calls them while it applies a
//! command, deciding from the committed state alone (the cache table and the task's
//! transitions), so every replica makes the same calls at the same point.
//!
//! A held task is `Waiting` with all its parents succeeded, out of the queue; the set
//! of held tasks is not in the core's snapshot (the state machine's cache table is,
//! and it gives them back with [`Scheduler::restore_held`]).

use crate::error::CoreError;
use crate::scheduler::{Scheduler, ix};
use drover_types::{TaskId, TaskState};

impl Scheduler {
    /// Ends a `Ready` (or held) task as `Succeeded` without an attempt: its result
    /// comes from the cache. Its children become ready as after a run.
    pub fn complete_cached(&mut self, id: TaskId) -> Result<(), CoreError> {
        let rec = self.rec(id).ok_or(CoreError::UnknownTask(id))?;
        match rec.state {
            TaskState::Ready => self.dequeue(id),
            TaskState::Waiting if self.held.contains_key(&id) => {
                self.held.remove(&id);
            }
            state => {
                return Err(CoreError::BadTransition {
                    task: id,
                    from: state,
                    to: TaskState::Succeeded,
                });
            }
        }
        self.succeed(id);
        Ok(())
    }

    /// Takes a `Ready` task that has never been placed out of the queue until
    /// [`Scheduler::release_held`]: the task `runner` computes the same result.
    pub fn hold(&mut self, id: TaskId, runner: TaskId) -> Result<(), CoreError> {
        let rec = self.rec(id).ok_or(CoreError::UnknownTask(id))?;
        if rec.state != TaskState::Ready || rec.attempt != 0 {
            return Err(CoreError::BadTransition {
                task: id,
                from: rec.state,
                to: TaskState::Waiting,
            });
        }
        self.dequeue(id);
        self.set_state(id, TaskState::Waiting);
        self.held.insert(id, runner);
        Ok(())
    }

    /// Puts a held task back in the queue (the task it waited for did not succeed).
    pub fn release_held(&mut self, id: TaskId) {
        if self.held.remove(&id).is_some() && self.tasks[ix(id)].state == TaskState::Waiting {
            self.make_ready(id);
        }
    }

    /// The task a held task waits for.
    pub fn held_by(&self, id: TaskId) -> Option<TaskId> {
        self.held.get(&id).copied()
    }

    /// After a restore: the held tasks, as the state machine's snapshot lists them.
    pub fn restore_held(&mut self, held: impl IntoIterator<Item = (TaskId, TaskId)>) {
        for (id, runner) in held {
            if self.rec(id).is_some_and(|r| r.state == TaskState::Waiting) {
                self.held.insert(id, runner);
            }
        }
    }
}
