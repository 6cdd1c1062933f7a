//! Adaptive splitting: a task entry with `split` covers a range of integers with
//! chunks whose sizes the core chooses as the chunks finish.
//!
//! At submission a split takes `SplitSpec::slots()` consecutive task ids (its *slots*,
//! like an array's elements), so that the job stays a block of ids and the split's key
//! names every slot: a combine step that depends on it waits for all of them. A slot
//! gets its slice of the range when the core *assigns* it; until then it is `Waiting`
//! and never queued (it is "gated"). Slots are assigned in id order and slices in range
//! order, so slot order is range order.
//!
//! - A fixed count (`chunks: N`) assigns every slot at submission, in equal slices.
//! - `chunks: auto` assigns a first wave of small *probe* slices, one per free slot of
//!   the cluster for this task's shape at submission (at least 1, at most
//!   [`MAX_WAVE`]). Each success of a chunk adds its slice's length and its runtime
//!   (the longer of the log's time at its end minus its start, both entry times, and
//!   the wall time its worker reported in the same end command) to the split's
//!   measure, and assigns the next slices, each sized so that it should take the
//!   target duration at the measured rate, keeping about as many chunks in flight as
//!   there were probes (more when more room is free then). A slice is never smaller
//!   than what the remaining slots need to cover the rest, and the last slot takes the
//!   whole rest, so the range is always covered exactly.
//! - When the range is covered, the slots left over end `Succeeded` without running
//!   (the state machine gives a combine step no input for them).
//! - A chunk that ends without success (failure, cancel) stops the split: the slots not
//!   yet assigned end `DependencyFailed`, blaming it.
//!
//! Everything is integer arithmetic over the committed state: every replica assigns the
//! same slices at the same entry.

use crate::scheduler::{Scheduler, ix};
use drover_types::{Resources, SplitChunks, SplitRange, SplitSpec, TaskId, TaskState};
use serde::{Deserialize, Serialize};

/// Most probe chunks of an automatic split, and most chunks it keeps in flight.
pub const MAX_WAVE: u32 = 16;
/// An automatic split's probe slices are about 1/(PROBE_DIVISOR × slots) of the range.
const PROBE_DIVISOR: u64 = 4;

/// The progress of one split (format 4: adaptive splitting). Kept by the core beside
/// the task table; in snapshots through the state machine's snapshot.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SplitRecord {
    /// The first slot; the slots are `first .. first + slots`.
    pub first: TaskId,
    pub slots: u32,
    /// The range, inclusive.
    pub start: u64,
    pub end: u64,
    /// The fixed count, or `None` for `chunks: auto`.
    pub fixed: Option<u32>,
    /// The target duration as given (`None`: the default).
    pub chunk_duration_ms: Option<u64>,
    /// Chunks an automatic split keeps in flight (its probe wave).
    pub wave: u32,
    /// The slices of the slots assigned so far, in slot (and range) order.
    pub chunks: Vec<(u64, u64)>,
    /// Items and milliseconds of the chunks that succeeded: the measured rate.
    pub done_items: u64,
    pub done_ms: u64,
    /// A chunk ended without success: nothing more is assigned.
    pub stopped: bool,
}

/// A split as the API shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SplitView<'a> {
    pub record: &'a SplitRecord,
    /// Integers assigned to chunks so far.
    pub covered: u64,
    /// Chunks that succeeded.
    pub succeeded: u32,
}

impl SplitRecord {
    fn new(first: TaskId, slots: u32, spec: &SplitSpec) -> SplitRecord {
        SplitRecord {
            first,
            slots,
            start: spec.range.start,
            end: spec.range.end,
            fixed: match spec.chunks {
                SplitChunks::Count(n) => Some(n),
                SplitChunks::Auto => None,
            },
            chunk_duration_ms: spec.chunk_duration_ms,
            wave: 1,
            chunks: Vec::new(),
            done_items: 0,
            done_ms: 0,
            stopped: false,
        }
    }

    /// The spec it was made from (restored into its slots' specs after a snapshot).
    pub fn spec(&self) -> SplitSpec {
        SplitSpec {
            range: SplitRange {
                start: self.start,
                end: self.end,
            },
            chunks: self.fixed.map_or(SplitChunks::Auto, SplitChunks::Count),
            chunk_duration_ms: self.chunk_duration_ms,
        }
    }

    pub fn len(&self) -> u64 {
        self.end - self.start + 1
    }

    pub fn is_empty(&self) -> bool {
        false
    }

    /// The first integer not yet assigned, or `None` when the range is covered.
    fn next_start(&self) -> Option<u64> {
        match self.chunks.last() {
            None => Some(self.start),
            Some(&(_, e)) if e >= self.end => None,
            Some(&(_, e)) => Some(e + 1),
        }
    }

    /// Integers assigned so far.
    pub fn covered(&self) -> u64 {
        self.chunks.iter().map(|(a, b)| b - a + 1).sum()
    }

    /// The slice of the slot `id`, if it has one.
    pub fn slice_of(&self, id: TaskId) -> Option<(u64, u64)> {
        let k = id.0.checked_sub(self.first.0)?;
        self.chunks.get(usize::try_from(k).ok()?).copied()
    }

    fn holds(&self, id: TaskId) -> bool {
        id >= self.first && id.0 < self.first.0 + self.slots as u64
    }

    /// The length of the next slice: `probe` before anything was measured, else the
    /// target duration at the measured rate; at least what the remaining slots need to
    /// cover the rest, at most the rest; the last slot takes all of it.
    fn next_len(&self, rest: u64) -> u64 {
        let slots_left = (self.slots as u64).saturating_sub(self.chunks.len() as u64);
        if slots_left <= 1 {
            return rest;
        }
        if let Some(n) = self.fixed {
            // Equal slices; the first `len % n` are one longer.
            let (len, n) = (self.len(), n as u64);
            let k = self.chunks.len() as u64;
            return (len / n + u64::from(k < len % n)).min(rest);
        }
        if self.done_items == 0 {
            // A probe: small, whatever the slots left (at most MAX_WAVE of them).
            return (self.len() / (PROBE_DIVISOR * self.slots as u64))
                .max(1)
                .min(rest);
        }
        let target = self
            .chunk_duration_ms
            .unwrap_or(drover_types::DEFAULT_CHUNK_DURATION_MS);
        let per = target as u128 * self.done_items as u128 / self.done_ms.max(1) as u128;
        let wanted = u64::try_from(per).unwrap_or(u64::MAX).max(1);
        let floor = rest.div_ceil(slots_left);
        wanted.max(floor).min(rest)
    }

    /// Assigns the next slot its slice; returns that slot, or `None` if the range is
    /// covered or every slot is used.
    fn assign_next(&mut self) -> Option<TaskId> {
        let from = self.next_start()?;
        if self.chunks.len() as u64 >= self.slots as u64 {
            return None;
        }
        let len = self.next_len(self.end - from + 1);
        let slot = TaskId(self.first.0 + self.chunks.len() as u64);
        self.chunks.push((from, from + len - 1));
        Some(slot)
    }
}

impl Scheduler {
    /// At submission, after the slots exist: makes the split's record and assigns its
    /// first slices (the slots' release to the queue follows in `submit`).
    pub(crate) fn split_submitted(&mut self, first: TaskId, spec: &SplitSpec, res: &Resources) {
        let slots = spec.slots() as u32;
        let mut rec = SplitRecord::new(first, slots, spec);
        let initial = match spec.chunks {
            SplitChunks::Count(_) => slots,
            SplitChunks::Auto => {
                let free = self.free_slots_for(res).clamp(1, MAX_WAVE as u64) as u32;
                rec.wave = free.min(slots);
                rec.wave
            }
        };
        for _ in 0..initial {
            rec.assign_next();
        }
        self.splits.insert(first, rec);
    }

    /// How many tasks needing `res` the active workers could start now (each worker
    /// counted up to `MAX_WAVE`): the width of an automatic split's wave.
    fn free_slots_for(&self, res: &Resources) -> u64 {
        self.pool
            .active
            .iter()
            .map(|&w| {
                let r = self.pool.rec(w);
                if !r.placeable() {
                    return 0;
                }
                let cpu = match res.cpu_milli {
                    0 => MAX_WAVE as u64,
                    c => (r.free_cpu() / c) as u64,
                };
                let mem = match res.memory_bytes {
                    0 => MAX_WAVE as u64,
                    m => r.free_mem() / m,
                };
                cpu.min(mem).min(MAX_WAVE as u64)
            })
            .sum()
    }

    /// The first slot of the split holding task `id`, if it is a slot.
    fn split_key_of(&self, id: TaskId) -> Option<TaskId> {
        let (&first, rec) = self.splits.range(..=id).next_back()?;
        rec.holds(id).then_some(first)
    }

    /// Whether `id` is a slot that has no slice yet (it must not be queued).
    pub(crate) fn split_gated(&self, id: TaskId) -> bool {
        self.split_key_of(id)
            .is_some_and(|f| self.splits[&f].slice_of(id).is_none())
    }

    /// After a slot succeeded: measure it, assign what follows, and end the slots left
    /// over once the range is covered.
    pub(crate) fn split_chunk_succeeded(&mut self, id: TaskId) {
        let Some(first) = self.split_key_of(id) else {
            return;
        };
        let now = self.now;
        let started = self.tasks[ix(id)].started_at;
        let spec = self.tasks[ix(id)].spec.clone();
        let free = self.free_slots_for(&spec.shared().resources);
        let rec = self.splits.get_mut(&first).expect("found above");
        let Some((a, b)) = rec.slice_of(id) else {
            // A slot left over (ended by `split_chunk_succeeded` itself).
            return;
        };
        rec.done_items = rec.done_items.saturating_add(b - a + 1);
        let logged = started.map_or(0, |s| now.0.saturating_sub(s.0));
        let reported = match self.reported_runtime {
            Some((t, wall)) if t == id => wall,
            _ => 0,
        };
        let ms = logged.max(reported);
        rec.done_ms = rec.done_ms.saturating_add(ms.max(1));
        if rec.stopped {
            return;
        }
        let mut assigned = Vec::new();
        if rec.fixed.is_none() {
            let in_flight_goal = free.clamp(rec.wave as u64, MAX_WAVE as u64);
            let in_flight = (0..rec.chunks.len())
                .filter(|&k| !self.tasks[ix(TaskId(first.0 + k as u64))].state.is_final())
                .count() as u64;
            let rec = self.splits.get_mut(&first).expect("found above");
            for _ in in_flight..in_flight_goal.max(in_flight + 1) {
                match rec.assign_next() {
                    Some(slot) => assigned.push(slot),
                    None => break,
                }
            }
        }
        for slot in assigned {
            let r = &self.tasks[ix(slot)];
            if r.state == TaskState::Waiting && r.remaining == 0 {
                self.make_ready(slot);
            }
        }
        let rec = &self.splits[&first];
        if rec.next_start().is_none() {
            let (from, to) = (rec.chunks.len() as u64, rec.slots as u64);
            for k in from..to {
                let slot = TaskId(first.0 + k);
                let r = &self.tasks[ix(slot)];
                // Its parents succeeded (a chunk of the same split ran after them).
                if r.state == TaskState::Waiting && r.remaining == 0 {
                    self.succeed(slot);
                }
            }
        }
    }

    /// After a slot ended without success: the split stops, and its slots without a
    /// slice end `DependencyFailed`, blaming `id`. Returns those slots (their own
    /// dependants are failed by the caller, `propagate_failure`).
    pub(crate) fn split_chunk_failed(&mut self, id: TaskId) -> Vec<TaskId> {
        let Some(first) = self.split_key_of(id) else {
            return Vec::new();
        };
        let rec = self.splits.get_mut(&first).expect("found above");
        if rec.slice_of(id).is_none() {
            return Vec::new();
        }
        rec.stopped = true;
        let (from, to) = (rec.chunks.len() as u64, rec.slots as u64);
        let mut ended = Vec::new();
        for k in from..to {
            let slot = TaskId(first.0 + k);
            if self.tasks[ix(slot)].state == TaskState::Waiting {
                self.end_final(slot, TaskState::DependencyFailed);
                self.dep_failed_by.insert(slot, id);
                ended.push(slot);
            }
        }
        ended
    }

    /// The slice of a split's slot, if it has one (`DROVER_RANGE_START`/`_END`).
    pub fn chunk_slice(&self, id: TaskId) -> Option<(u64, u64)> {
        self.split_key_of(id)
            .and_then(|f| self.splits[&f].slice_of(id))
    }

    /// Whether `id` is a slot of a split that ended without a slice (a combine step
    /// gets no input for it).
    pub fn is_unused_slot(&self, id: TaskId) -> bool {
        self.split_gated(id)
            && self
                .rec(id)
                .is_some_and(|r| r.state == TaskState::Succeeded)
    }

    /// The splits whose first slot lies in `first .. first + count` (a job's), in order.
    pub fn splits_in(&self, first: TaskId, count: u32) -> Vec<SplitView<'_>> {
        let end = TaskId(first.0 + count as u64);
        self.splits
            .range(first..end)
            .map(|(&f, record)| SplitView {
                record,
                covered: record.covered(),
                succeeded: (0..record.chunks.len() as u64)
                    .filter(|&k| {
                        self.rec(TaskId(f.0 + k))
                            .is_some_and(|r| r.state == TaskState::Succeeded)
                    })
                    .count() as u32,
            })
            .collect()
    }

    /// Every split, for the state machine's snapshot.
    pub fn split_records(&self) -> Vec<SplitRecord> {
        self.splits.values().cloned().collect()
    }

    /// Forgets the splits of a retired job.
    pub(crate) fn retire_splits(&mut self, first: TaskId, count: u32) {
        let end = TaskId(first.0 + count as u64);
        let gone: Vec<TaskId> = self.splits.range(first..end).map(|(&f, _)| f).collect();
        for f in gone {
            self.splits.remove(&f);
        }
    }
}
