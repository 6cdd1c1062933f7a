//! The task table's storage: records addressed by id, some of which are retired.
//!
//! Ids are issued in increasing order and never reused, and retirement removes tasks
//! from anywhere (a job pinned by a pending dependant can outlive younger ones). So the
//! records live in a dense vector (`recs`, reordered by `swap_remove`) and an id finds
//! its record through `index`, one `u32` per id from the oldest held one on. A retired
//! id costs 4 bytes while an older task is still held, nothing once the front moves
//! past it: memory follows the tasks held, not the tasks ever submitted.

use crate::task_table::TaskRec;
use drover_types::TaskId;
use std::collections::VecDeque;
use std::ops::{Index, IndexMut};

/// In `index`: the id is retired.
const VACANT: u32 = u32::MAX;

#[derive(Clone, Debug, Default)]
pub(crate) struct TaskSlots {
    /// `id - 1` of the id at `index[0]`.
    base: u64,
    /// Per id from `base + 1` on: the position of its record in `recs`, or [`VACANT`].
    index: VecDeque<u32>,
    recs: Vec<TaskRec>,
    /// The id of each record in `recs` (to fix `index` when `swap_remove` moves one).
    ids: Vec<TaskId>,
}

impl TaskSlots {
    /// Rebuilds the table from records in id order (a snapshot); `next` is the next id
    /// to issue (past every record).
    pub fn from_parts(ids: Vec<TaskId>, recs: Vec<TaskRec>, next: TaskId) -> TaskSlots {
        let base = ids.first().map_or(next.0 - 1, |f| f.0 - 1);
        let mut t = TaskSlots {
            base,
            index: VecDeque::with_capacity((next.0 - 1 - base) as usize),
            recs,
            ids,
        };
        for (pos, id) in t.ids.iter().enumerate() {
            while (t.base + t.index.len() as u64 + 1) < id.0 {
                t.index.push_back(VACANT);
            }
            t.index.push_back(pos as u32);
        }
        while (t.base + t.index.len() as u64 + 1) < next.0 {
            t.index.push_back(VACANT);
        }
        t
    }

    /// The id the next pushed record gets: every id below it was issued.
    pub fn next_id(&self) -> TaskId {
        TaskId(self.base + self.index.len() as u64 + 1)
    }

    /// Records held.
    pub fn len(&self) -> usize {
        self.recs.len()
    }

    pub fn reserve(&mut self, n: usize) {
        self.recs.reserve(n);
        self.ids.reserve(n);
        self.index.reserve(n);
    }

    pub fn push(&mut self, rec: TaskRec) -> TaskId {
        let id = self.next_id();
        self.index.push_back(self.recs.len() as u32);
        self.recs.push(rec);
        self.ids.push(id);
        id
    }

    fn pos(&self, id: TaskId) -> Option<usize> {
        let i = id.0.checked_sub(self.base + 1)?;
        match self.index.get(i as usize) {
            Some(&p) if p != VACANT => Some(p as usize),
            _ => None,
        }
    }

    pub fn get(&self, id: TaskId) -> Option<&TaskRec> {
        self.pos(id).map(|p| &self.recs[p])
    }

    pub fn get_mut(&mut self, id: TaskId) -> Option<&mut TaskRec> {
        self.pos(id).map(|p| &mut self.recs[p])
    }

    /// Removes a record; the id stays issued (see [`TaskSlots::next_id`]).
    pub fn remove(&mut self, id: TaskId) -> Option<TaskRec> {
        let p = self.pos(id)?;
        self.index[(id.0 - self.base - 1) as usize] = VACANT;
        let rec = self.recs.swap_remove(p);
        self.ids.swap_remove(p);
        if let Some(&moved) = self.ids.get(p) {
            self.index[(moved.0 - self.base - 1) as usize] = p as u32;
        }
        while self.index.front() == Some(&VACANT) {
            self.index.pop_front();
            self.base += 1;
        }
        Some(rec)
    }

    /// Held records with their ids, in id order, starting after `after`.
    pub fn iter_after(&self, after: TaskId) -> impl Iterator<Item = (TaskId, &TaskRec)> + '_ {
        let skip = after.0.saturating_sub(self.base) as usize;
        let base = self.base;
        self.index
            .iter()
            .enumerate()
            .skip(skip)
            .filter(|(_, p)| **p != VACANT)
            .map(move |(i, &p)| (TaskId(base + i as u64 + 1), &self.recs[p as usize]))
    }

    /// Held records with their ids, in id order.
    pub fn iter(&self) -> impl Iterator<Item = (TaskId, &TaskRec)> + '_ {
        self.iter_after(TaskId(0))
    }

    /// Held ids in id order.
    pub fn ids(&self) -> Vec<TaskId> {
        self.iter().map(|(id, _)| id).collect()
    }
}

/// `tasks[ix(id)]`: the record of a held task (the core only addresses tasks it holds;
/// addressing a retired one is a bug, hence the panic).
impl Index<usize> for TaskSlots {
    type Output = TaskRec;

    fn index(&self, i: usize) -> &TaskRec {
        let id = TaskId(i as u64 + 1);
        let p = self
            .pos(id)
            .unwrap_or_else(|| panic!("task {id} is not held"));
        &self.recs[p]
    }
}

impl IndexMut<usize> for TaskSlots {
    fn index_mut(&mut self, i: usize) -> &mut TaskRec {
        let id = TaskId(i as u64 + 1);
        let p = self
            .pos(id)
            .unwrap_or_else(|| panic!("task {id} is not held"));
        &mut self.recs[p]
    }
}
