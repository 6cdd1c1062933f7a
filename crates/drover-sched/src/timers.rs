//! Timers: retry backoffs that end and time limits that pass, in one ordered set.
//!
//! Entries are `(due, kind, task)`; firing pops from the front, so a round costs
//! O(log n) per timer that fires and nothing for the ones that do not. Entries are
//! removed eagerly when what they watch ends (the due time is recomputed from the task
//! record), so the set only ever holds live timers and a restore can rebuild it exactly.

use drover_types::{Millis, TaskId};
use std::collections::BTreeSet;

pub(crate) const BACKOFF: u8 = 0;
pub(crate) const TIME_LIMIT: u8 = 1;

#[derive(Debug, Default)]
pub(crate) struct Timers {
    set: BTreeSet<(Millis, u8, TaskId)>,
}

impl Timers {
    pub fn arm(&mut self, due: Millis, kind: u8, task: TaskId) {
        self.set.insert((due, kind, task));
    }

    pub fn disarm(&mut self, due: Millis, kind: u8, task: TaskId) -> bool {
        self.set.remove(&(due, kind, task))
    }

    /// The earliest timer due at or before `now`, removed.
    pub fn pop_due(&mut self, now: Millis) -> Option<(Millis, u8, TaskId)> {
        let first = *self.set.first()?;
        if first.0 > now {
            return None;
        }
        self.set.pop_first()
    }

    /// When the earliest timer is due.
    pub fn next_due(&self) -> Option<Millis> {
        self.set.first().map(|t| t.0)
    }

    pub fn contains(&self, due: Millis, kind: u8, task: TaskId) -> bool {
        self.set.contains(&(due, kind, task))
    }

    pub fn len(&self) -> usize {
        self.set.len()
    }
}
