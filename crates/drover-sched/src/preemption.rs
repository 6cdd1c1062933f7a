//! Preemption: evicting strictly lower-priority running tasks to make room.
//!
//! Tried during a round for the head of a shape that fits nowhere, when the policy
//! allows it, at most [`crate::scheduler::MAX_PREEMPTIONS_PER_ROUND`] times per round.
//! For each active worker that could hold the task (hard constraints match, capacity
//! large enough):
//!
//! 1. resources of attempts already being stopped there count as free, and if that is
//!    enough the task just waits (nothing more is evicted, so one task never evicts
//!    twice for the same need);
//! 2. otherwise the eligible victims (priority strictly lower, preemptible — retryable,
//!    or `preemptible: true`: a task with `max_attempts == 1` that did not say so is
//!    never preempted — and not already being stopped) are taken
//!    greedily in two orders — cheapest first (lowest priority, then least work lost,
//!    then id) and biggest first (fewest victims) — until the task fits, victims that
//!    turn out unnecessary are given back, and the cheaper of the two sets is kept.
//!
//! Priorities are the tasks' `priority` fields whatever the queue policy.
//!
//! The cheapest worker's set wins: fewest victims, then lowest highest-victim priority,
//! then least work lost, then lowest worker id. Cost: O(attempts on active workers ·
//! log) per search. Victims get `Kill { reason: Preempted }` with the policy's grace;
//! their resources stay reserved until the worker reports the end (never over-commit),
//! and they go back to Ready without spending an attempt.

use crate::action::{Action, KillReason};
use crate::scheduler::{Scheduler, ix};
use drover_types::{Attempt, Resources, TaskId, WorkerId};

/// The cost of evicting a set on a worker: (victims, highest victim priority, work
/// lost in ms, worker). Lower is cheaper; compared as a tuple.
type Cost = (usize, i32, u64, WorkerId);

impl Scheduler {
    pub(crate) fn try_preempt(&mut self, id: TaskId, actions: &mut Vec<Action>) {
        let now = self.now;
        let rec = &self.tasks[ix(id)];
        let priority = rec.spec.shared().priority;
        let shape = &self.shapes.list[rec.shape as usize];
        let mut best: Option<(Cost, Vec<TaskId>)> = None;
        for &w in &self.pool.active {
            let wr = self.pool.rec(w);
            if !wr.admits(shape) || !shape.res.fits_in(&wr.spec.capacity) {
                continue;
            }
            let mut alloc = wr.allocated.clone();
            let mut cands: Vec<(i32, u64, TaskId)> = Vec::new();
            for &t in &wr.running {
                let tr = &self.tasks[ix(t)];
                if tr.kill.is_some() {
                    alloc.sub(self.held_resources(t));
                } else if tr.state.is_on_worker()
                    && tr.spec.shared().priority < priority
                    && tr.spec.shared().is_preemptible()
                {
                    let lost = tr.started_at.map_or(0, |s| now.saturating_sub(s));
                    cands.push((tr.spec.shared().priority, lost, t));
                }
            }
            if shape.res.fits_beside(&alloc, &wr.spec.capacity) {
                // Enough is already being freed here: wait for it.
                return;
            }
            cands.sort_unstable();
            // Two greedy orders, the cheaper result kept: cheapest victims first
            // (lowest priority, least work lost), and biggest victims first (fewest
            // victims). Each is pruned of victims that turn out unnecessary.
            let mut by_size = cands.clone();
            by_size.sort_by_key(|c| {
                let r = self.held_resources(c.2);
                (std::cmp::Reverse((r.cpu_milli, r.memory_bytes, r.gpus)), *c)
            });
            for order in [cands, by_size] {
                let Some(chosen) =
                    self.greedy_victims(&shape.res, &wr.spec.capacity, alloc.clone(), order)
                else {
                    continue;
                };
                let cost = (
                    chosen.len(),
                    chosen.iter().map(|c| c.0).max().unwrap_or(i32::MIN),
                    chosen.iter().map(|c| c.1).sum::<u64>(),
                    w,
                );
                if best.as_ref().is_none_or(|(b, _)| cost < *b) {
                    let mut victims: Vec<TaskId> = chosen.into_iter().map(|c| c.2).collect();
                    victims.sort_unstable();
                    best = Some((cost, victims));
                }
            }
        }
        let Some(((_, _, _, w), victims)) = best else {
            return;
        };
        let grace = self.config.policy.preemption_grace_ms;
        for v in victims {
            let tr = &mut self.tasks[ix(v)];
            tr.kill = Some(KillReason::Preempted);
            actions.push(Action::Kill {
                task: v,
                attempt: Attempt(tr.attempt),
                worker: w,
                reason: KillReason::Preempted,
                grace_ms: grace,
            });
        }
    }

    /// Takes victims in `order` until `req` fits next to `alloc` (the worker's
    /// reservations minus what is already being freed) within `cap`, then gives back,
    /// last taken first, those not needed after all. `None` if they are not enough.
    fn greedy_victims(
        &self,
        req: &Resources,
        cap: &Resources,
        mut alloc: Resources,
        order: Vec<(i32, u64, TaskId)>,
    ) -> Option<Vec<(i32, u64, TaskId)>> {
        let mut chosen = Vec::new();
        for c in order {
            alloc.sub(self.held_resources(c.2));
            chosen.push(c);
            if req.fits_beside(&alloc, cap) {
                break;
            }
        }
        if !req.fits_beside(&alloc, cap) {
            return None;
        }
        let mut k = chosen.len();
        while k > 0 && chosen.len() > 1 {
            k -= 1;
            let res = self.held_resources(chosen[k].2);
            alloc.add(res);
            if req.fits_beside(&alloc, cap) {
                chosen.remove(k);
            } else {
                alloc.sub(res);
            }
        }
        Some(chosen)
    }
}
