//! Retention: finished work leaves the core, so that its state stays bounded over
//! months.
//!
//! The unit is the job: a job is retired whole, once it is complete (every task
//! final), none of its tasks still holds a worker (a cancelled attempt whose end is
//! not reported yet), and no task of another job that is not final depends on one of
//! its tasks. Complete jobs are kept in `Scheduler::complete`, ordered by when they
//! completed, and retired oldest first. Retirement is an event carried by the log
//! (`Event::Retire`), so every replica removes the same jobs at the same point; time
//! is the entry's `now`, never a clock.
//!
//! What goes: the task records, the job record, their keys (a key then names the
//! newest entry still held, or nothing) and job names (likewise). What stays: the ids,
//! which are never reused, so that an id below `next_task_id` that is not held was
//! retired (`Scheduler::was_retired`); owner names and shapes (interned, few).

use crate::scheduler::{Applied, MAX_RETIRED_PER_EVENT, Scheduler};
use crate::task_table::NO_WORKER;
use crate::view::TaskRange;
use drover_types::{JobId, Millis, TaskId, TaskState};

impl Scheduler {
    /// The next task id to issue: every id below it was issued once.
    pub fn next_task_id(&self) -> TaskId {
        self.tasks.next_id()
    }

    /// The next job id to issue.
    pub fn next_job_id(&self) -> JobId {
        self.next_job
    }

    /// Whether this task existed and was retired (ids are never skipped nor reused).
    pub fn task_retired(&self, id: TaskId) -> bool {
        id.0 >= 1 && id < self.next_task_id() && self.tasks.get(id).is_none()
    }

    /// Whether this job existed and was retired.
    pub fn job_retired(&self, id: JobId) -> bool {
        id.0 >= 1 && id < self.next_job && !self.jobs.contains_key(&id)
    }

    /// Tasks held in a final state.
    pub fn finished_held(&self) -> u64 {
        TaskState::ALL
            .iter()
            .filter(|s| s.is_final())
            .map(|&s| self.counts[s as usize])
            .sum()
    }

    /// Whether an [`crate::Event::Retire`] at `now` with these limits would find a
    /// candidate: the oldest complete job is old enough, or there are too many
    /// finished tasks. Cheap (the leader asks before proposing one); a candidate may
    /// still turn out to be pinned by a dependant.
    pub fn retirement_due(&self, now: Millis, keep_ms: u64, keep_max: u64) -> bool {
        let Some(&(done_at, _)) = self.complete.first() else {
            return false;
        };
        now.0
            .checked_sub(keep_ms)
            .is_some_and(|cut| done_at.0 <= cut)
            || self.finished_held() > keep_max
    }

    pub(crate) fn retire(&mut self, keep_ms: u64, keep_max: u64) -> Applied {
        let cutoff = self.now.0.checked_sub(keep_ms);
        let mut finished = self.finished_held();
        let mut budget = MAX_RETIRED_PER_EVENT;
        let mut picked = Vec::new();
        for &(done_at, job) in &self.complete {
            let by_age = cutoff.is_some_and(|c| done_at.0 <= c);
            if (!by_age && finished <= keep_max) || budget == 0 {
                // Ordered by completion: every later job is as young or younger.
                break;
            }
            if !self.retirable(job) {
                continue;
            }
            let count = self.jobs[&job].count as u64;
            finished -= count;
            budget = budget.saturating_sub(count);
            picked.push(job);
        }
        let mut retired = Vec::with_capacity(picked.len());
        for job in picked {
            retired.push((job, self.retire_job(job)));
        }
        Applied {
            retired,
            ..Applied::default()
        }
    }

    /// A complete job whose tasks hold nothing and feed no task still to run.
    fn retirable(&self, job: JobId) -> bool {
        let j = &self.jobs[&job];
        (j.first.0..j.first.0 + j.count as u64).all(|n| {
            let rec = &self.tasks[n as usize - 1];
            rec.holder == NO_WORKER
                && rec
                    .children
                    .iter()
                    .all(|c| self.tasks.get(*c).is_none_or(|c| c.state.is_final()))
        })
    }

    fn retire_job(&mut self, job: JobId) -> TaskRange {
        let j = self.jobs.remove(&job).expect("a complete job is held");
        self.complete.remove(&(j.done_at, job));
        let range = TaskRange {
            first: j.first,
            count: j.count,
        };
        if !self.splits.is_empty() {
            self.retire_splits(j.first, j.count);
        }
        for n in j.first.0..j.first.0 + j.count as u64 {
            let id = TaskId(n);
            let rec = self.tasks.remove(id).expect("a held job's tasks are held");
            self.counts[rec.state as usize] -= 1;
            self.dep_failed_by.remove(&id);
            self.forget_resizes(id);
            if let Some(k) = rec.spec.key()
                && crate::keys::first_of_entry(rec.array_index, rec.spec.shared())
            {
                let count = rec.spec.shared().expanded_len() as u32;
                self.keys.remove(k, TaskRange { first: id, count });
            }
            // A parent still held (in an older job) forgets this child; parents of the
            // same job are going too (and would make a wide fan-in quadratic).
            for &p in rec.deps.iter() {
                if p >= j.first {
                    continue;
                }
                if let Some(parent) = self.tasks.get_mut(p) {
                    parent.children.retain(|&c| c != id);
                }
            }
        }
        self.job_names.forget(j.name, job, &self.jobs);
        range
    }

    /// Keeps the set of complete jobs as one of job `job`'s tasks enters (`to_final`)
    /// or leaves a final state; its counts per state are already updated.
    pub(crate) fn job_finality(&mut self, job: JobId, to_final: bool) {
        let Some(j) = self.jobs.get_mut(&job) else {
            return;
        };
        let open = j.open();
        if to_final && open == 0 {
            j.done_at = self.now;
            self.complete.insert((self.now, job));
        } else if !to_final && open == 1 {
            // Complete until this task left its final state.
            self.complete.remove(&(j.done_at, job));
        }
    }

    /// Recomputes every job's open count, completion time and count per state, and
    /// the complete set, from the task table (restore, invariant checks).
    pub(crate) fn recompute_jobs_progress(&self) -> Vec<JobProgress> {
        self.jobs
            .iter()
            .map(|(&id, j)| {
                let mut open = 0;
                let mut done_at = Millis::ZERO;
                let mut states = [0; TaskState::ALL.len()];
                for n in j.first.0..j.first.0 + j.count as u64 {
                    let rec = &self.tasks[n as usize - 1];
                    states[rec.state as usize] += 1;
                    if rec.state.is_final() {
                        done_at = done_at.max(rec.ended_at.unwrap_or(Millis::ZERO));
                    } else {
                        open += 1;
                    }
                }
                JobProgress {
                    job: id,
                    open,
                    done_at: if open == 0 { done_at } else { Millis::ZERO },
                    states,
                }
            })
            .collect()
    }

    pub(crate) fn rebuild_jobs_progress(&mut self) {
        self.complete.clear();
        for p in self.recompute_jobs_progress() {
            let j = self.jobs.get_mut(&p.job).expect("listed from the jobs");
            j.done_at = p.done_at;
            j.states = p.states;
            if p.open == 0 {
                self.complete.insert((p.done_at, p.job));
            }
        }
    }
}

/// A job's derived progress, recomputed from its tasks.
#[derive(Debug)]
pub(crate) struct JobProgress {
    pub job: JobId,
    pub open: u32,
    pub done_at: Millis,
    pub states: [u32; TaskState::ALL.len()],
}
