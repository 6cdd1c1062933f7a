//! The invariant checker: recomputes everything derivable from the task table and
//! compares it with what the core maintains incrementally. O(tasks + workers); tests
//! run it after every event.

use crate::action::KillReason;
use crate::scheduler::{Scheduler, ix, limit_due};
use crate::task_table::{NO_WORKER, PREFETCHED};
use crate::timers::{BACKOFF, TIME_LIMIT};
use drover_types::{Resources, TaskId, TaskState, WorkerState};
use std::collections::BTreeSet;

pub(crate) fn check(s: &Scheduler) -> Result<(), String> {
    let nw = s.pool.workers.len();
    let mut alloc = vec![Resources::default(); nw];
    let mut running: Vec<BTreeSet<TaskId>> = vec![BTreeSet::new(); nw];
    let mut counts = [0u64; 10];
    let mut usage = vec![0u64; s.owners.names.len()];
    let mut timers = 0usize;
    let mut prefetched = vec![0usize; nw];
    for (i, rec) in s.tasks.iter().enumerate() {
        let id = TaskId(i as u64 + 1);
        counts[rec.state as usize] += 1;
        if rec.holder != NO_WORKER {
            let w = rec.holder as usize;
            if w == 0 || w > nw {
                return Err(format!("task {id} held by unknown worker {w}"));
            }
            if !matches!(
                rec.state,
                TaskState::Assigned | TaskState::Running | TaskState::Cancelled
            ) {
                return Err(format!(
                    "task {id} is {} but holds resources on w{w}",
                    rec.state
                ));
            }
            if s.pool.workers[w - 1].state == WorkerState::Lost {
                return Err(format!("task {id} holds resources on lost worker w{w}"));
            }
            if rec.slot == PREFETCHED {
                // Bound, holding nothing: exactly once in its worker's queue, not started.
                let n = s.pool.workers[w - 1]
                    .queued
                    .iter()
                    .filter(|t| **t == id)
                    .count();
                if n != 1 {
                    return Err(format!("prefetched task {id} is {n} times in w{w}'s queue"));
                }
                if rec.state == TaskState::Running {
                    return Err(format!("task {id} runs but was never promoted on w{w}"));
                }
                prefetched[w - 1] += 1;
            } else {
                if s.pool.workers[w - 1].running.get(rec.slot as usize) != Some(&id) {
                    return Err(format!("task {id}: wrong slot {} on w{w}", rec.slot));
                }
                alloc[w - 1].add(&rec.spec.resources);
                running[w - 1].insert(id);
                usage[rec.owner as usize] += rec.spec.resources.cpu_milli as u64;
            }
        } else if rec.state.is_on_worker() {
            return Err(format!("task {id} is {} but holds no worker", rec.state));
        }
        if rec.attempts.len() != rec.attempt as usize {
            return Err(format!(
                "task {id}: attempt {} but {} attempt records",
                rec.attempt,
                rec.attempts.len()
            ));
        }
        if rec.spent > rec.attempt || rec.spent > rec.spec.retry.max_attempts {
            return Err(format!(
                "task {id}: {} attempts spent of {}",
                rec.spent, rec.spec.retry.max_attempts
            ));
        }
        let unsucceeded: BTreeSet<TaskId> = rec
            .deps
            .iter()
            .copied()
            .filter(|&d| s.tasks[ix(d)].state != TaskState::Succeeded)
            .collect();
        match rec.state {
            TaskState::Ready
            | TaskState::Backoff
            | TaskState::Assigned
            | TaskState::Running
            | TaskState::Succeeded
                if !unsucceeded.is_empty() =>
            {
                return Err(format!(
                    "task {id} is {} before all its parents succeeded (waiting on {:?})",
                    rec.state, unsucceeded
                ));
            }
            TaskState::Waiting => {
                if unsucceeded.is_empty() {
                    return Err(format!(
                        "task {id} waits although all its parents succeeded"
                    ));
                }
                if unsucceeded.len() != rec.remaining as usize {
                    return Err(format!(
                        "task {id}: remaining {} but {} parents pending",
                        rec.remaining,
                        unsucceeded.len()
                    ));
                }
                if let Some(p) = unsucceeded
                    .iter()
                    .find(|&&p| s.tasks[ix(p)].state.is_final())
                {
                    return Err(format!(
                        "task {id} still waits although its parent {p} ended without success"
                    ));
                }
            }
            TaskState::DependencyFailed => {
                let p = s
                    .dep_failed_by
                    .get(&id)
                    .ok_or(format!("task {id}: no record of the failed dependency"))?;
                let ps = s.tasks[ix(*p)].state;
                if !ps.is_final() || ps == TaskState::Succeeded {
                    return Err(format!("task {id} blames parent {p}, which is {ps}"));
                }
            }
            _ => {}
        }
        if rec.state == TaskState::Ready {
            let (g, sh, k) = s.queue_slot(id);
            if !s.queue.contains(g, sh, k, id) {
                return Err(format!("ready task {id} is not queued"));
            }
        }
        if rec.state == TaskState::Backoff {
            timers += 1;
            if !s.timers.contains(rec.wake_at, BACKOFF, id) {
                return Err(format!("task {id} in backoff has no timer"));
            }
        }
        if rec.limit_ms != rec.spec.max_runtime_ms.unwrap_or(0) {
            return Err(format!("task {id}: time limit copy out of date"));
        }
        if rec.state == TaskState::Running
            && rec.kill != Some(KillReason::TimeLimit)
            && let Some(due) = limit_due(rec)
        {
            timers += 1;
            if !s.timers.contains(due, TIME_LIMIT, id) {
                return Err(format!("running task {id} has no time-limit timer"));
            }
        }
    }
    if timers != s.timers.len() {
        return Err(format!(
            "{} timers armed, {timers} expected",
            s.timers.len()
        ));
    }
    if counts != s.counts {
        return Err(format!(
            "counts {:?} but the table says {counts:?}",
            s.counts
        ));
    }
    if s.queue.len() as u64 != counts[TaskState::Ready as usize] {
        return Err(format!(
            "{} queued but {} ready",
            s.queue.len(),
            counts[TaskState::Ready as usize]
        ));
    }
    let mut queued = BTreeSet::new();
    for t in s.queue.all() {
        if !queued.insert(t) {
            return Err(format!("task {t} queued twice"));
        }
    }
    s.queue.check()?;
    for (i, w) in s.pool.workers.iter().enumerate() {
        let id = drover_types::WorkerId(i as u32 + 1);
        if w.allocated != alloc[i] {
            return Err(format!(
                "worker {id}: allocated {:?} but its attempts hold {:?}",
                w.allocated, alloc[i]
            ));
        }
        if !w.allocated.fits_in(&w.spec.capacity) {
            return Err(format!(
                "worker {id} is over-committed: {} of {}",
                w.allocated, w.spec.capacity
            ));
        }
        if w.running_sorted() != running[i].iter().copied().collect::<Vec<_>>() {
            return Err(format!(
                "worker {id}: running set {:?} but {:?} hold it",
                w.running, running[i]
            ));
        }
        if w.queued.len() != prefetched[i] {
            return Err(format!(
                "worker {id}: {} queued but {} tasks prefetched to it",
                w.queued.len(),
                prefetched[i]
            ));
        }
        if w.queued.is_empty() == s.pool.with_queue.contains(&id) {
            return Err(format!("worker {id}: queue index out of date"));
        }
        let expected = if w.placeable() {
            w.free_main()
        } else {
            (0, 0, 0)
        };
        if s.pool.fit_tree.get(id) != expected {
            return Err(format!("worker {id}: fit tree out of date"));
        }
        let indexed = s.pool.free_cpu.contains(&(w.free_cpu(), id));
        if indexed != s.pool.free_mem.contains(&(w.free_mem(), id)) {
            return Err(format!("worker {id} wrongly indexed by free memory"));
        }
        if indexed != w.placeable()
            || s.pool.active.contains(&id) != (w.state == WorkerState::Active)
        {
            return Err(format!("worker {id} ({}) wrongly indexed", w.state));
        }
        if s.pool.by_name.get(&w.spec.name) != Some(&id) {
            return Err(format!("worker {id} missing from the name index"));
        }
    }
    let (cpu, mem) = s.pool.active.iter().fold((0u64, 0u128), |(c, m), &w| {
        let cap = &s.pool.rec(w).spec.capacity;
        (c + cap.cpu_milli as u64, m + cap.memory_bytes as u128)
    });
    if (cpu, mem) != (s.pool.total_cpu, s.pool.total_mem) {
        return Err("active capacity totals out of date".into());
    }
    // Every placeable worker (active, no prefetched task waiting) is indexed, no other.
    let placeable = s.pool.workers.iter().filter(|w| w.placeable()).count();
    if s.pool.free_cpu.len() != placeable || s.pool.free_mem.len() != placeable {
        return Err("free-CPU index has stale entries".into());
    }
    for (o, u) in usage.iter().enumerate() {
        if s.owner_usage.get(o).copied().unwrap_or(0) != *u {
            return Err(format!("owner {} usage out of date", s.owners.names[o]));
        }
    }
    check_references(s)
}

/// The key index lists exactly the keyed entries of the task table, oldest first; each
/// job's name is a known one, and each name points at the newest job bearing it.
fn check_references(s: &Scheduler) -> Result<(), String> {
    let expected = s.recompute_key_index();
    if expected != s.keys {
        let mut want = expected.iter();
        for (key, have) in s.keys.iter() {
            match want.next() {
                Some((k, w)) if k == key && w == have => {}
                Some((k, w)) => {
                    return Err(format!(
                        "key index: {key:?} -> {have:?}, but the table has {k:?} -> {w:?}"
                    ));
                }
                None => return Err(format!("key index: {key:?} is not a key in the table")),
            }
        }
        return Err("key index misses keys of the table".into());
    }
    for (i, j) in s.jobs.iter().enumerate() {
        if j.name as usize > s.job_names.names.len() {
            return Err(format!("job {}: unknown name number {}", i + 1, j.name));
        }
    }
    let names = crate::keys::JobNames::rebuild(s.job_names.names.clone(), &s.jobs);
    if names != s.job_names {
        return Err("job-name index out of date".into());
    }
    Ok(())
}
