//! The scheduling round: timers fire, then ready tasks are placed (see `queue.rs` and
//! `placement.rs` for the data structures, and the README for the algorithm).

use crate::action::{Action, KillReason};
use crate::placement::{LOCALITY_CANDIDATES, LOCALITY_KEYS, SCORE_CANDIDATES};
use crate::scheduler::{KILL_GRACE_MS, MAX_PREEMPTIONS_PER_ROUND, POLICY_STEPS, Scheduler, ix};
use crate::task_table::{NO_WORKER, PREFETCHED};
use crate::timers::{BACKOFF, TIME_LIMIT};

/// Prefetched attempts taken back in one round at most.
const MAX_RETRACTIONS_PER_ROUND: usize = 16;
use crate::view::AttemptRecord;
use drover_types::{Attempt, TaskId, TaskState, WorkerId, WorkerState};

impl Scheduler {
    pub(crate) fn fire_timers(&mut self, actions: &mut Vec<Action>) {
        while let Some((_, kind, id)) = self.timers.pop_due(self.now) {
            let rec = &mut self.tasks[ix(id)];
            match kind {
                BACKOFF if rec.state == TaskState::Backoff => self.make_ready(id),
                // Also when an eviction is under way: if the attempt outlives its limit,
                // the limit is what ended it.
                TIME_LIMIT
                    if rec.state == TaskState::Running
                        && rec.holder != NO_WORKER
                        && rec.kill != Some(KillReason::TimeLimit) =>
                {
                    rec.kill = Some(KillReason::TimeLimit);
                    actions.push(Action::Kill {
                        task: id,
                        attempt: Attempt(rec.attempt),
                        worker: WorkerId(rec.holder),
                        reason: KillReason::TimeLimit,
                        grace_ms: KILL_GRACE_MS,
                    });
                }
                _ => {}
            }
        }
    }

    pub(crate) fn place(&mut self, actions: &mut Vec<Action>) {
        let mut preemptions = 0;
        let preemption = self.config.policy.preemption;
        while let Some((id, sub, shape)) = self.queue.best() {
            // The largest free CPU, memory and GPUs on any active worker: O(1).
            let (cpu, mem, gpus) = self.pool.fit_tree.root();
            if !preemption
                && let Some((min_cpu, min_mem)) = self.queue.min_need()
                && (min_cpu > cpu || min_mem > mem)
            {
                // No ready task of any shape can fit anywhere: the round is over
                // (without this, a full cluster would cost one failed search per
                // shape per round).
                break;
            }
            let res = &self.shapes.list[shape as usize].res;
            let found = if res.cpu_milli > cpu || res.memory_bytes > mem || res.gpus > gpus {
                None
            } else {
                self.find_worker(id, shape)
            };
            match found {
                Some(w) => {
                    self.queue.pop_head(sub);
                    self.assign(id, w, actions);
                }
                None => {
                    if self.config.policy.preemption && preemptions < MAX_PREEMPTIONS_PER_ROUND {
                        preemptions += 1;
                        self.try_preempt(id, actions);
                    }
                    // Free resources only shrink during a round: this shape cannot fit
                    // anywhere until the round ends.
                    self.queue.block_shape(shape);
                }
            }
        }
        self.queue.unblock_all();
    }

    /// The worker the task goes to, or `None` if it fits on no active worker now.
    pub(crate) fn find_worker(&self, id: TaskId, shape: u32) -> Option<WorkerId> {
        let shape = &self.shapes.list[shape as usize];
        let pool = &self.pool;
        let eligible = |w: WorkerId| {
            let r = pool.rec(w);
            r.state == WorkerState::Active && r.fits_free(&shape.res) && r.admits(shape)
        };
        let policy = &self.config.policy;
        // Only a scored shape needs the spec (one memory load fewer per decision).
        let spec = if shape.scored {
            Some(&self.tasks[ix(id)].spec)
        } else {
            None
        };
        let score_inputs =
            policy.locality_weight > 0 && spec.is_some_and(|s| !s.shared().inputs.is_empty());
        let score_affinity =
            policy.affinity_weight > 0 && spec.is_some_and(|s| !s.shared().affinity.is_empty());
        // The policy's order is followed for at most POLICY_STEPS workers; past that,
        // the fit tree finds the first fitting worker by id in O(log W). So a decision
        // is bounded even when many workers have the binding resource free but not
        // another one (multi-dimensional fragmentation late in a round).
        let need = pool.binding(&shape.res);
        let mut steps = 0;
        if !score_inputs && !score_affinity {
            let mut found = None;
            self.placement.visit(pool, &shape.res, need, &mut |w| {
                steps += 1;
                if eligible(w) {
                    found = Some(w);
                }
                found.is_some() || steps >= POLICY_STEPS
            });
            if found.is_none() && steps >= POLICY_STEPS {
                found = pool.fit_tree.first_fit(&shape.res, &mut |w| eligible(w));
            }
            return found;
        }
        let mut cands: Vec<WorkerId> = Vec::with_capacity(SCORE_CANDIDATES + 8);
        self.placement.visit(pool, &shape.res, need, &mut |w| {
            steps += 1;
            if eligible(w) {
                cands.push(w);
            }
            cands.len() >= SCORE_CANDIDATES || steps >= POLICY_STEPS
        });
        if cands.is_empty() {
            if steps < POLICY_STEPS {
                return None;
            }
            cands.extend(pool.fit_tree.first_fit(&shape.res, &mut |w| eligible(w)));
            if cands.is_empty() {
                return None;
            }
        }
        let Some(spec) = spec else {
            return cands.first().copied();
        };
        if score_inputs {
            for key in spec.shared().inputs.iter().take(LOCALITY_KEYS) {
                if let Some(holders) = pool.data.get(key.as_str()) {
                    for &w in holders.iter().take(LOCALITY_CANDIDATES) {
                        if !cands.contains(&w) && eligible(w) {
                            cands.push(w);
                        }
                    }
                }
            }
        }
        let mut best: Option<(u64, WorkerId)> = None;
        for &w in &cands {
            let mut score = 0u64;
            if score_inputs {
                score += policy.locality_weight as u64
                    * pool.inputs_held(w, &spec.shared().inputs) as u64;
            }
            if score_affinity {
                let labels = &pool.rec(w).spec.labels;
                let n = spec
                    .shared()
                    .affinity
                    .iter()
                    .filter(|s| s.matches(labels))
                    .count() as u64;
                score += policy.affinity_weight as u64 * n;
            }
            if best.is_none_or(|(b, _)| score > b) {
                best = Some((score, w));
            }
        }
        best.map(|(_, w)| w)
    }

    pub(crate) fn assign(&mut self, id: TaskId, w: WorkerId, actions: &mut Vec<Action>) {
        self.bind(id, w, true, actions);
    }

    /// Binds a ready task to a worker too full for it now: it holds nothing, waits in
    /// the worker's queue, and is promoted (reserved) in queue order as room frees —
    /// by the core at the start of a round, or by the worker's report that it started
    /// it (the worker applies the same rule to the same ordered stream of ends).
    pub(crate) fn prefetch(&mut self, id: TaskId, w: WorkerId, actions: &mut Vec<Action>) {
        self.bind(id, w, false, actions);
    }

    /// Reserves a prefetched task's resources and takes it out of its worker's queue.
    pub(crate) fn promote(&mut self, id: TaskId) {
        let rec = &self.tasks[ix(id)];
        debug_assert_eq!(rec.slot, PREFETCHED);
        let w = WorkerId(rec.holder);
        self.pool.unqueue(w, id);
        let rec = &self.tasks[ix(id)];
        let res = &self.shapes.list[rec.shape as usize].res;
        let slot = self.pool.allocate(w, id, res);
        let (owner, cpu) = (rec.owner, res.cpu_milli);
        self.tasks[ix(id)].slot = slot;
        self.add_usage(owner, cpu, true);
    }

    /// Promotes each worker's queue heads, in order, while they fit.
    pub(crate) fn promote_queued(&mut self) {
        let workers: Vec<WorkerId> = self.pool.with_queue.iter().copied().collect();
        for w in workers {
            while let Some(&head) = self.pool.rec(w).queued.front() {
                let res = &self.shapes.list[self.tasks[ix(head)].shape as usize].res;
                if !self.pool.rec(w).fits_free(res) {
                    break;
                }
                self.promote(head);
            }
        }
    }

    /// After placement: binds ready tasks, in queue order, to workers that are too full
    /// for any of them (so no room that could be used now is promised away), up to
    /// `prefetch_per_worker` each. Bounded: at most POLICY_STEPS workers looked at per
    /// task, and a shape no worker takes is set aside for the rest of the round.
    pub(crate) fn prefetch_round(&mut self, actions: &mut Vec<Action>) {
        let per_worker = self.config.policy.prefetch_per_worker as usize;
        if per_worker == 0 {
            return;
        }
        while let Some((id, sub, shape)) = self.queue.best() {
            let Some((min_cpu, min_mem)) = self.queue.min_need() else {
                break;
            };
            let sh = &self.shapes.list[shape as usize];
            let mut best: Option<(usize, WorkerId)> = None;
            for (steps, &w) in self.pool.active.iter().enumerate() {
                if steps >= POLICY_STEPS {
                    break;
                }
                let r = self.pool.rec(w);
                let full = r.free_cpu() < min_cpu || r.free_mem() < min_mem;
                if full
                    && r.queued.len() < per_worker
                    && sh.res.fits_in(&r.spec.capacity)
                    && r.admits(sh)
                    && best.is_none_or(|(n, _)| r.queued.len() < n)
                {
                    best = Some((r.queued.len(), w));
                }
            }
            match best {
                Some((_, w)) => {
                    self.queue.pop_head(sub);
                    self.prefetch(id, w, actions);
                }
                None => self.queue.block_shape(shape),
            }
        }
        self.queue.unblock_all();
    }

    /// After placement, room left on a worker means no ready task fits it; if a task
    /// prefetched to a busy worker would, take it back (the last of its queue, the one
    /// that would wait longest): it returns to the queue, without spending an attempt,
    /// once the busy worker confirms, and the next round places it. Bounded per round.
    pub(crate) fn retract_round(&mut self, actions: &mut Vec<Action>) {
        if self.pool.with_queue.is_empty() {
            return;
        }
        let mut budget = MAX_RETRACTIONS_PER_ROUND;
        let free: Vec<WorkerId> = self
            .pool
            .active
            .iter()
            .copied()
            .filter(|&w| self.pool.rec(w).placeable() && self.pool.rec(w).free_cpu() > 0)
            .take(POLICY_STEPS)
            .collect();
        for to in free {
            let queues: Vec<WorkerId> = self.pool.with_queue.iter().copied().collect();
            for from in queues {
                if budget == 0 {
                    return;
                }
                let candidate = self.pool.rec(from).queued.iter().rev().copied().find(|&t| {
                    let rec = &self.tasks[ix(t)];
                    let shape = &self.shapes.list[rec.shape as usize];
                    rec.kill.is_none()
                        && rec.state == TaskState::Assigned
                        && self.pool.rec(to).fits_free(&shape.res)
                        && self.pool.rec(to).admits(shape)
                });
                if let Some(t) = candidate {
                    budget -= 1;
                    self.ask_back(t, from, actions);
                }
            }
        }
    }

    /// After prefetch: the best ready task must not wait behind a task prefetched to a
    /// worker it could run on when the queue policy puts it first (a later submission of
    /// higher priority, say; under fair share only within one owner). The tasks of that
    /// worker's queue that rank behind it are asked back, like a retraction: once the
    /// worker confirms they return to the queue without spending an attempt, and the
    /// next prefetch gives the worker the better task first. One worker per round, and
    /// none while a worker it could go to is already giving tasks back (that room is on
    /// its way): a single urgent task does not empty every queue of the cluster.
    pub(crate) fn overtake_round(&mut self, actions: &mut Vec<Action>) {
        if self.pool.with_queue.is_empty() {
            return;
        }
        let Some((best, _, shape)) = self.queue.best() else {
            return;
        };
        let (group, _, key) = self.queue_slot(best);
        let queues: Vec<WorkerId> = self
            .pool
            .with_queue
            .iter()
            .copied()
            .take(POLICY_STEPS)
            .collect();
        for w in queues {
            let r = self.pool.rec(w);
            let sh = &self.shapes.list[shape as usize];
            if r.state != WorkerState::Active || !sh.res.fits_in(&r.spec.capacity) || !r.admits(sh)
            {
                continue;
            }
            if r.queued
                .iter()
                .any(|&t| self.tasks[ix(t)].kill == Some(KillReason::Retracted))
            {
                return;
            }
            let behind: Vec<TaskId> = r
                .queued
                .iter()
                .copied()
                .filter(|&t| {
                    let rec = &self.tasks[ix(t)];
                    if rec.kill.is_some() || rec.state != TaskState::Assigned {
                        return false;
                    }
                    let (g, _, k) = self.queue_slot(t);
                    g == group && (k, t) > (key, best)
                })
                .take(MAX_RETRACTIONS_PER_ROUND)
                .collect();
            if behind.is_empty() {
                continue;
            }
            for t in behind {
                self.ask_back(t, w, actions);
            }
            return;
        }
    }

    /// Asks worker `w` to give back prefetched task `t` (see [`KillReason::Retracted`]).
    fn ask_back(&mut self, t: TaskId, w: WorkerId, actions: &mut Vec<Action>) {
        let rec = &mut self.tasks[ix(t)];
        rec.kill = Some(KillReason::Retracted);
        actions.push(Action::Kill {
            task: t,
            attempt: Attempt(rec.attempt),
            worker: w,
            reason: KillReason::Retracted,
            grace_ms: KILL_GRACE_MS,
        });
    }

    fn bind(&mut self, id: TaskId, w: WorkerId, reserve: bool, actions: &mut Vec<Action>) {
        let now = self.now;
        let rec = &mut self.tasks[ix(id)];
        rec.attempt += 1;
        rec.holder = w.0;
        rec.started_at = None;
        rec.kill = None;
        // Exactly one more slot: most tasks run once, and a default-grown Vec would
        // reserve four records.
        rec.attempts.reserve_exact(1);
        rec.attempts.push(AttemptRecord {
            attempt: Attempt(rec.attempt),
            worker: w,
            assigned_at: now,
            started_at: None,
            ended_at: None,
            outcome: None,
            failure: None,
            gpus: Vec::new(),
        });
        let attempt = Attempt(rec.attempt);
        let res = &self.shapes.list[rec.shape as usize].res;
        if reserve {
            rec.slot = self.pool.allocate(w, id, res);
            let (owner, cpu) = (rec.owner, res.cpu_milli);
            self.set_state(id, TaskState::Assigned);
            self.add_usage(owner, cpu, true);
        } else {
            rec.slot = PREFETCHED;
            self.pool.enqueue(w, id);
            self.set_state(id, TaskState::Assigned);
        }
        self.pool.rr_cursor = w.0 + 1;
        actions.push(Action::Start {
            task: id,
            attempt,
            worker: w,
        });
    }
}
