//! Workers, their reservations, and the indexes placement searches.

use crate::task_table::Shape;
use drover_types::{
    LabelSelector, Resources, TaskId, WorkerId, WorkerSpec, WorkerState, WorkerUsage,
};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};

/// How much of the binding dimension a task needs free (see [`WorkerPool::binding`]).
#[derive(Clone, Copy, Debug)]
pub enum Need {
    Cpu(u32),
    Mem(u64),
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct WorkerRec {
    #[serde(with = "crate::compact::worker_spec")]
    pub spec: WorkerSpec,
    pub state: WorkerState,
    /// Sum of the resources of the attempts placed on it (never above capacity).
    #[serde(with = "crate::compact::resources")]
    pub allocated: Resources,
    pub usage: WorkerUsage,
    /// Tasks whose current attempt holds resources here. Unordered (a push and a
    /// swap-remove are cheaper than an ordered set on the hot path; each task knows its
    /// slot, `TaskRec::slot`); every use whose order could matter sorts it first (see
    /// [`WorkerRec::running_sorted`]).
    pub running: Vec<TaskId>,
    /// Prefetched tasks: bound to this worker but holding nothing, in the order the
    /// worker will start them (and the core promote them) as room frees.
    #[serde(default)]
    pub queued: VecDeque<TaskId>,
}

impl WorkerRec {
    /// Takes new placements: active, and no prefetched task waiting for its room (that
    /// room is promised to the queue, in order).
    pub fn placeable(&self) -> bool {
        self.state == WorkerState::Active && self.queued.is_empty()
    }

    pub fn free_cpu(&self) -> u32 {
        self.spec
            .capacity
            .cpu_milli
            .saturating_sub(self.allocated.cpu_milli)
    }

    pub fn free_mem(&self) -> u64 {
        self.spec
            .capacity
            .memory_bytes
            .saturating_sub(self.allocated.memory_bytes)
    }

    /// Would `req` fit in what is not yet reserved?
    pub fn fits_free(&self, req: &Resources) -> bool {
        req.fits_beside(&self.allocated, &self.spec.capacity)
    }

    /// Free (cpu, memory, gpus): what the fit tree indexes.
    pub fn free_main(&self) -> (u32, u64, u32) {
        let gpus = self.spec.capacity.gpus.saturating_sub(self.allocated.gpus);
        (self.free_cpu(), self.free_mem(), gpus)
    }

    /// The worker's load in thousandths of its capacity, for load-aware placement: per
    /// dimension (CPU, memory) the larger of what its tasks were measured using (the
    /// latest usage from the log) and what is reserved on it, relative to capacity;
    /// then the larger of the two dimensions. Reservations count because a task just
    /// placed uses nothing yet, and the measurement counts because a task may use more
    /// than it reserved. Integers only: every replica computes the same.
    pub fn load_permille(&self) -> u32 {
        let cap = &self.spec.capacity;
        let share = |used: u128, cap: u128| -> u32 {
            if cap == 0 {
                return 1000;
            }
            (used * 1000 / cap).min(u32::MAX as u128) as u32
        };
        let cpu = share(
            self.usage.cpu_milli.max(self.allocated.cpu_milli) as u128,
            cap.cpu_milli as u128,
        );
        let mem = share(
            self.usage.memory_bytes.max(self.allocated.memory_bytes) as u128,
            cap.memory_bytes as u128,
        );
        cpu.max(mem)
    }

    pub fn running_sorted(&self) -> Vec<TaskId> {
        let mut v = self.running.clone();
        v.sort_unstable();
        v
    }

    pub fn matches(&self, constraints: &[LabelSelector]) -> bool {
        constraints.iter().all(|c| c.matches(&self.spec.labels))
    }

    /// Whether tasks of `shape` may go here: its hard constraints match and the worker
    /// has its driver. (Capacity and state are the caller's to check.)
    pub fn admits(&self, shape: &Shape) -> bool {
        self.matches(&shape.constraints)
            && shape
                .driver
                .as_deref()
                .is_none_or(|d| self.spec.has_driver(d))
    }
}

/// All workers ever joined, by id (ids from 1, in order of the first join of a name).
#[derive(Debug, Default)]
pub(crate) struct WorkerPool {
    pub workers: Vec<WorkerRec>,
    pub by_name: BTreeMap<String, WorkerId>,
    /// (free CPU, id) of every Active worker: bin-pack scans it upwards from the
    /// requested CPU, spread downwards, so workers without enough free CPU are never
    /// visited.
    pub free_cpu: BTreeSet<(u32, WorkerId)>,
    /// (free memory, id) of every Active worker, for tasks whose binding dimension is
    /// memory (see [`WorkerPool::binding`]).
    pub free_mem: BTreeSet<(u64, WorkerId)>,
    /// Largest free CPU and memory per subtree of worker slots (fallback search).
    pub fit_tree: FitTree,
    /// Capacity of the Active workers in all.
    pub total_cpu: u64,
    pub total_mem: u128,
    /// Active workers in id order (round-robin).
    pub active: BTreeSet<WorkerId>,
    /// Data key -> workers holding it (locality candidates).
    pub data: HashMap<String, BTreeSet<WorkerId>>,
    /// Round-robin position: the next worker id to try first.
    pub rr_cursor: u32,
    /// Workers with prefetched tasks (promoted at the start of every round).
    pub with_queue: BTreeSet<WorkerId>,
    /// (load in thousandths, id) of every placeable worker (see
    /// [`WorkerRec::load_permille`]): load-aware placement walks it upwards.
    pub by_load: BTreeSet<(u32, WorkerId)>,
    /// The load each worker is indexed under in `by_load` (by slot), so that its entry
    /// can be found after its usage or allocation changed.
    pub load_key: Vec<u32>,
}

impl WorkerPool {
    pub fn get(&self, w: WorkerId) -> Option<&WorkerRec> {
        (w.0 as usize)
            .checked_sub(1)
            .and_then(|i| self.workers.get(i))
    }

    pub fn rec(&self, w: WorkerId) -> &WorkerRec {
        &self.workers[w.0 as usize - 1]
    }

    fn rec_mut(&mut self, w: WorkerId) -> &mut WorkerRec {
        &mut self.workers[w.0 as usize - 1]
    }

    pub fn ids(&self) -> impl Iterator<Item = WorkerId> + '_ {
        (1..=self.workers.len() as u32).map(WorkerId)
    }

    /// Adds a new worker (state Active) and returns its id.
    pub fn add(&mut self, spec: WorkerSpec) -> WorkerId {
        let id = WorkerId(self.workers.len() as u32 + 1);
        self.by_name.insert(spec.name.clone(), id);
        self.workers.push(WorkerRec {
            spec,
            state: WorkerState::Lost,
            allocated: Resources::default(),
            usage: WorkerUsage::default(),
            running: Vec::new(),
            queued: VecDeque::new(),
        });
        self.index_data(id, true);
        self.set_state(id, WorkerState::Active);
        id
    }

    /// Replaces a worker's spec (a rejoin), keeping its reservations.
    pub fn replace_spec(&mut self, w: WorkerId, spec: WorkerSpec) {
        let state = self.rec(w).state;
        self.set_state(w, WorkerState::Lost);
        self.index_data(w, false);
        self.rec_mut(w).spec = spec;
        self.index_data(w, true);
        self.set_state(w, state);
    }

    pub fn set_data_keys(&mut self, w: WorkerId, keys: Vec<String>) {
        self.index_data(w, false);
        self.rec_mut(w).spec.data_keys = keys;
        self.index_data(w, true);
    }

    fn index_data(&mut self, w: WorkerId, add: bool) {
        let keys = std::mem::take(&mut self.rec_mut(w).spec.data_keys);
        for k in &keys {
            if add {
                self.data.entry(k.clone()).or_default().insert(w);
            } else if let Some(set) = self.data.get_mut(k) {
                set.remove(&w);
                if set.is_empty() {
                    self.data.remove(k);
                }
            }
        }
        self.rec_mut(w).spec.data_keys = keys;
    }

    pub fn set_state(&mut self, w: WorkerId, state: WorkerState) {
        self.unindex_free(w);
        let rec = &self.workers[w.0 as usize - 1];
        let was_active = rec.state == WorkerState::Active;
        let (cap_cpu, cap_mem) = (
            rec.spec.capacity.cpu_milli as u64,
            rec.spec.capacity.memory_bytes as u128,
        );
        if was_active {
            self.active.remove(&w);
            self.total_cpu -= cap_cpu;
            self.total_mem -= cap_mem;
        }
        self.rec_mut(w).state = state;
        if state == WorkerState::Active {
            self.active.insert(w);
            self.total_cpu += cap_cpu;
            self.total_mem += cap_mem;
        }
        self.index_free(w);
    }

    /// Takes a worker out of the free-resource indexes (if it is in them).
    fn unindex_free(&mut self, w: WorkerId) {
        let rec = &self.workers[w.0 as usize - 1];
        if rec.placeable() {
            let (free, free_mem) = (rec.free_cpu(), rec.free_mem());
            self.free_cpu.remove(&(free, w));
            self.free_mem.remove(&(free_mem, w));
            let key = self.load_key[w.0 as usize - 1];
            self.by_load.remove(&(key, w));
        }
        self.fit_tree.set(w, (0, 0, 0));
    }

    /// Puts a worker into the free-resource indexes if it takes placements.
    fn index_free(&mut self, w: WorkerId) {
        let rec = &self.workers[w.0 as usize - 1];
        if rec.placeable() {
            let (free, free_mem, f) = (rec.free_cpu(), rec.free_mem(), rec.free_main());
            self.free_cpu.insert((free, w));
            self.free_mem.insert((free_mem, w));
            self.fit_tree.set(w, f);
            self.index_load(w);
        }
    }

    /// Puts a placeable worker into the load index under its current load.
    fn index_load(&mut self, w: WorkerId) {
        let slot = w.0 as usize - 1;
        if self.load_key.len() <= slot {
            self.load_key.resize(slot + 1, 0);
        }
        let key = self.workers[slot].load_permille();
        self.load_key[slot] = key;
        self.by_load.insert((key, w));
    }

    /// Records a worker's measured usage (from the log) and moves it in the load index.
    pub fn set_usage(&mut self, w: WorkerId, usage: WorkerUsage) {
        if self.rec(w).placeable() {
            let key = self.load_key[w.0 as usize - 1];
            self.by_load.remove(&(key, w));
            self.rec_mut(w).usage = usage;
            self.index_load(w);
        } else {
            self.rec_mut(w).usage = usage;
        }
    }

    /// Moves a placeable worker's entries in the free-resource indexes after its
    /// allocation changed from `before` (free CPU, free memory).
    fn refresh_free(&mut self, w: WorkerId, (before, before_mem): (u32, u64)) {
        let rec = &self.workers[w.0 as usize - 1];
        if !rec.placeable() {
            return;
        }
        let (after, after_mem, f) = (rec.free_cpu(), rec.free_mem(), rec.free_main());
        if before != after {
            self.free_cpu.remove(&(before, w));
            self.free_cpu.insert((after, w));
        }
        if before_mem != after_mem {
            self.free_mem.remove(&(before_mem, w));
            self.free_mem.insert((after_mem, w));
        }
        self.fit_tree.set(w, f);
        let key = self.load_key[w.0 as usize - 1];
        self.by_load.remove(&(key, w));
        self.index_load(w);
    }

    /// Binds a prefetched task to `w` (at the back of its queue).
    pub fn enqueue(&mut self, w: WorkerId, task: TaskId) {
        self.unindex_free(w);
        self.rec_mut(w).queued.push_back(task);
        self.with_queue.insert(w);
        self.index_free(w);
    }

    /// Unbinds a prefetched task from `w`, wherever it is in the queue.
    pub fn unqueue(&mut self, w: WorkerId, task: TaskId) {
        self.unindex_free(w);
        let rec = self.rec_mut(w);
        if let Some(i) = rec.queued.iter().position(|t| *t == task) {
            rec.queued.remove(i);
        }
        if rec.queued.is_empty() {
            self.with_queue.remove(&w);
        }
        self.index_free(w);
    }

    /// Reserves `r` on `w` for `task`; returns the task's slot in `w.running`.
    pub fn allocate(&mut self, w: WorkerId, task: TaskId, r: &Resources) -> u32 {
        let rec = &mut self.workers[w.0 as usize - 1];
        let before = (rec.free_cpu(), rec.free_mem());
        rec.allocated.add(r);
        let slot = rec.running.len() as u32;
        rec.running.push(task);
        self.refresh_free(w, before);
        slot
    }

    /// Changes a reservation on `w` from `old` to `new` in place (a granted resize).
    pub fn resize(&mut self, w: WorkerId, old: &Resources, new: &Resources) {
        let rec = &mut self.workers[w.0 as usize - 1];
        let before = (rec.free_cpu(), rec.free_mem());
        rec.allocated.sub(old);
        rec.allocated.add(new);
        self.refresh_free(w, before);
    }

    /// Frees `r` on `w` for the task in `slot` of `w.running`. O(1): the last task of
    /// the list moves into the slot, and is returned so that its slot can be updated.
    pub fn release(&mut self, w: WorkerId, slot: u32, r: &Resources) -> Option<TaskId> {
        let rec = &mut self.workers[w.0 as usize - 1];
        let before = (rec.free_cpu(), rec.free_mem());
        rec.allocated.sub(r);
        rec.running.swap_remove(slot as usize);
        let moved = rec.running.get(slot as usize).copied();
        self.refresh_free(w, before);
        moved
    }

    /// The dimension that binds a request: memory when it asks for a larger share of
    /// the active cluster's memory than of its CPU, else CPU. Placement walks the
    /// free-resource index of that dimension, so workers short of it are never visited
    /// (a memory-heavy task does not step over every worker with spare CPU but no
    /// memory). Deterministic: it depends only on the request and the active workers.
    pub fn binding(&self, req: &Resources) -> Need {
        if req.memory_bytes as u128 * self.total_cpu as u128
            > req.cpu_milli as u128 * self.total_mem
        {
            Need::Mem(req.memory_bytes)
        } else {
            Need::Cpu(req.cpu_milli)
        }
    }

    /// How many of `inputs` worker `w` holds.
    pub fn inputs_held(&self, w: WorkerId, inputs: &[String]) -> u32 {
        inputs
            .iter()
            .filter(|k| self.data.get(k.as_str()).is_some_and(|s| s.contains(&w)))
            .count() as u32
    }
}

/// A segment tree over worker slots (id order) holding, for each subtree, the largest
/// free CPU, memory and GPUs among its Active workers. It finds *a* worker with at least
/// that much free in O(log W) when one exists (subtrees whose maxima are too small are
/// never entered; a leaf that passes all three maxima may still fail on a custom
/// resource or a constraint, which costs a step of backtracking). Placement uses it as
/// the fallback when the policy's own order has not found a fit within a bounded number
/// of steps, and round-robin walks it from its cursor.
#[derive(Debug, Default)]
pub(crate) struct FitTree {
    size: usize,
    cpu: Vec<u32>,
    mem: Vec<u64>,
    gpu: Vec<u32>,
}

impl FitTree {
    /// Recomputes node `n` from its children; false if it did not change.
    fn pull(&mut self, n: usize) -> bool {
        let c = self.cpu[2 * n].max(self.cpu[2 * n + 1]);
        let m = self.mem[2 * n].max(self.mem[2 * n + 1]);
        let g = self.gpu[2 * n].max(self.gpu[2 * n + 1]);
        let changed = (self.cpu[n], self.mem[n], self.gpu[n]) != (c, m, g);
        (self.cpu[n], self.mem[n], self.gpu[n]) = (c, m, g);
        changed
    }

    /// Sets worker `w`'s free (cpu, memory, gpus); zeros for a worker not taking tasks.
    pub fn set(&mut self, w: WorkerId, free: (u32, u64, u32)) {
        let slot = w.0 as usize - 1;
        if slot >= self.size {
            let mut size = self.size.max(16);
            while size <= slot {
                size *= 2;
            }
            let mut grown = FitTree {
                size,
                cpu: vec![0; 2 * size],
                mem: vec![0; 2 * size],
                gpu: vec![0; 2 * size],
            };
            for i in 0..self.size {
                grown.cpu[size + i] = self.cpu[self.size + i];
                grown.mem[size + i] = self.mem[self.size + i];
                grown.gpu[size + i] = self.gpu[self.size + i];
            }
            for n in (1..size).rev() {
                grown.pull(n);
            }
            *self = grown;
        }
        let mut n = self.size + slot;
        (self.cpu[n], self.mem[n], self.gpu[n]) = free;
        while n > 1 {
            n /= 2;
            if !self.pull(n) {
                break;
            }
        }
    }

    /// The largest free (cpu, memory, gpus) of any worker, each on its own: O(1).
    pub fn root(&self) -> (u32, u64, u32) {
        if self.size == 0 {
            return (0, 0, 0);
        }
        (self.cpu[1], self.mem[1], self.gpu[1])
    }

    /// The free (cpu, memory, gpus) recorded for `w`.
    pub fn get(&self, w: WorkerId) -> (u32, u64, u32) {
        let n = self.size + w.0 as usize - 1;
        if n >= 2 * self.size {
            return (0, 0, 0);
        }
        (self.cpu[n], self.mem[n], self.gpu[n])
    }

    /// The first worker in id order with at least `req`'s cpu, memory and gpus free
    /// that `ok` accepts.
    pub fn first_fit(
        &self,
        req: &Resources,
        ok: &mut dyn FnMut(WorkerId) -> bool,
    ) -> Option<WorkerId> {
        self.first_fit_in(WorkerId(1), WorkerId(u32::MAX), req, ok)
    }

    /// Like [`Self::first_fit`], among workers with ids in `from..to`.
    pub fn first_fit_in(
        &self,
        from: WorkerId,
        to: WorkerId,
        req: &Resources,
        ok: &mut dyn FnMut(WorkerId) -> bool,
    ) -> Option<WorkerId> {
        if self.size == 0 {
            return None;
        }
        let from = (from.0 as usize).saturating_sub(1);
        let to = (to.0 as usize).saturating_sub(1);
        let (cpu, mem, gpu) = (req.cpu_milli, req.memory_bytes, req.gpus);
        // (node, first slot it covers, slots it covers)
        let mut stack = vec![(1usize, 0usize, self.size)];
        while let Some((n, lo, len)) = stack.pop() {
            let outside = lo + len <= from || lo >= to;
            if outside || self.cpu[n] < cpu || self.mem[n] < mem || self.gpu[n] < gpu {
                continue;
            }
            if n >= self.size {
                let w = WorkerId(lo as u32 + 1);
                if ok(w) {
                    return Some(w);
                }
                continue;
            }
            let half = len / 2;
            stack.push((2 * n + 1, lo + half, half));
            stack.push((2 * n, lo, half));
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fit_tree_finds_the_first_fit_in_a_range() {
        let mut t = FitTree::default();
        for (w, cpu) in [(1, 1000), (2, 4000), (3, 500), (40, 4000)] {
            t.set(WorkerId(w), (cpu, 1 << 30, 0));
        }
        let req = Resources::cpus(2000);
        assert_eq!(t.first_fit(&req, &mut |_| true), Some(WorkerId(2)));
        assert_eq!(
            t.first_fit_in(WorkerId(3), WorkerId(u32::MAX), &req, &mut |_| true),
            Some(WorkerId(40))
        );
        assert_eq!(
            t.first_fit_in(WorkerId(3), WorkerId(40), &req, &mut |_| true),
            None
        );
        assert_eq!(
            t.first_fit(&req, &mut |w| w != WorkerId(2)),
            Some(WorkerId(40))
        );
        t.set(WorkerId(40), (0, 0, 0));
        assert_eq!(t.first_fit(&req, &mut |w| w != WorkerId(2)), None);
        assert_eq!(t.get(WorkerId(2)), (4000, 1 << 30, 0));
    }
}
