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
    for (id, rec) in s.tasks.iter() {
        if id >= s.tasks.next_id() {
            return Err(format!("task {id} held at or past the next id"));
        }
        match s.jobs.get(&rec.job) {
            Some(j) if j.first <= id && id.0 < j.first.0 + j.count as u64 => {}
            _ => return Err(format!("task {id}: its job {} is not held", rec.job)),
        }
        // Retirement never takes a task something still waits on: the parents of a
        // task that is not final are held, and so are the children listed.
        if !rec.state.is_final()
            && let Some(d) = rec.deps.iter().find(|&&d| s.tasks.get(d).is_none())
        {
            return Err(format!(
                "task {id} is {} but its parent {d} is retired",
                rec.state
            ));
        }
        if let Some(c) = rec.children.iter().find(|&&c| s.tasks.get(c).is_none()) {
            return Err(format!("task {id} lists retired child {c}"));
        }
        if let Some(p) = rec
            .deps
            .iter()
            .find(|&&d| s.tasks.get(d).is_some_and(|p| !p.children.contains(&id)))
        {
            return Err(format!(
                "task {id} is missing from its parent {p}'s children"
            ));
        }
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
                let held = s.held_resources(id);
                alloc[w - 1].add(held);
                running[w - 1].insert(id);
                usage[rec.owner as usize] += held.cpu_milli as u64;
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
        if rec.spent > rec.attempt || rec.spent > rec.spec.shared().retry.max_attempts {
            return Err(format!(
                "task {id}: {} attempts spent of {}",
                rec.spent,
                rec.spec.shared().retry.max_attempts
            ));
        }
        let unsucceeded: BTreeSet<TaskId> = rec
            .deps
            .iter()
            .copied()
            .filter(|&d| {
                s.tasks
                    .get(d)
                    .is_some_and(|p| p.state != TaskState::Succeeded)
            })
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
                if unsucceeded.is_empty() && !s.held.contains_key(&id) && !s.split_gated(id) {
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
                // A retired parent was final when it went.
                if let Some(ps) = s.tasks.get(*p).map(|r| r.state)
                    && (!ps.is_final() || ps == TaskState::Succeeded)
                {
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
        if rec.limit_ms != rec.spec.shared().max_runtime_ms.unwrap_or(0) {
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
    if s.queue.by_group() {
        for o in 0..s.owners.names.len() as u32 {
            if s.queue.share(o) != s.share_of(o) {
                return Err(format!("owner {o}'s place in the queue is out of date"));
            }
        }
    }
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
        if w.placeable() && !s.pool.by_load.contains(&(w.load_permille(), id)) {
            return Err(format!(
                "worker {id}: load index out of date (load {} not indexed)",
                w.load_permille()
            ));
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
    if s.pool.by_load.len() != placeable {
        return Err("load index has stale entries".into());
    }
    for (o, u) in usage.iter().enumerate() {
        if s.owner_usage.get(o).copied().unwrap_or(0) != *u {
            return Err(format!("owner {} usage out of date", s.owners.names[o]));
        }
    }
    check_resizes(s)?;
    check_references(s)
}

/// A resized reservation belongs to an attempt that holds resources (the sums above
/// count it) and differs from its shape's (else it is not kept); histories belong to
/// held tasks.
fn check_resizes(s: &Scheduler) -> Result<(), String> {
    for (id, r) in &s.resizes.reserved {
        let Some(rec) = s.tasks.get(*id) else {
            return Err(format!(
                "resized reservation of task {id}, which is not held"
            ));
        };
        if rec.holder == NO_WORKER || rec.slot == PREFETCHED {
            return Err(format!(
                "task {id} keeps a resized reservation but holds nothing"
            ));
        }
        if *r == s.shapes.list[rec.shape as usize].res {
            return Err(format!(
                "task {id}: resized reservation equal to its shape's"
            ));
        }
    }
    for (id, h) in &s.resizes.history {
        if s.tasks.get(*id).is_none() {
            return Err(format!("resize history of task {id}, which is not held"));
        }
        if h.is_empty() || h.len() > crate::resize::MAX_RESIZE_HISTORY {
            return Err(format!("task {id}: {} resize records", h.len()));
        }
    }
    Ok(())
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
    for (id, j) in &s.jobs {
        if j.name as usize > s.job_names.names.len() {
            return Err(format!("job {id}: unknown name number {}", j.name));
        }
        if j.name != 0 && s.job_names.names[j.name as usize - 1].is_empty() {
            return Err(format!("job {id} bears a freed name number {}", j.name));
        }
        if *id >= s.next_job {
            return Err(format!("job {id} held at or past the next id"));
        }
        if let Some(n) =
            (j.first.0..j.first.0 + j.count as u64).find(|&n| s.tasks.get(TaskId(n)).is_none())
        {
            return Err(format!("job {id}: its task {n} is not held"));
        }
    }
    let mut complete = std::collections::BTreeSet::new();
    for p in s.recompute_jobs_progress() {
        let (id, open, done_at) = (p.job, p.open, p.done_at);
        let j = &s.jobs[&id];
        if (j.open(), j.done_at) != (open, done_at) {
            return Err(format!(
                "job {id}: open {} done at {} but its tasks say {open} and {done_at}",
                j.open(),
                j.done_at
            ));
        }
        if j.states != p.states {
            return Err(format!(
                "job {id}: counts per state {:?} but its tasks say {:?}",
                j.states, p.states
            ));
        }
        if open == 0 {
            complete.insert((done_at, id));
        }
    }
    if complete != s.complete {
        return Err("the set of complete jobs is out of date".into());
    }
    let held: u64 = s.jobs.values().map(|j| j.count as u64).sum();
    if held != s.tasks.len() as u64 {
        return Err(format!(
            "jobs hold {held} tasks, the table {}",
            s.tasks.len()
        ));
    }
    let names = crate::keys::JobNames::rebuild(s.job_names.names.clone(), &s.jobs);
    if names != s.job_names {
        return Err("job-name index out of date".into());
    }
    check_splits(s)
}

/// Each split's slices cover its range from the start without gap or overlap, one per
/// slot in slot order; a covered split has no slot waiting for a slice, and a slot
/// without a slice never ran.
fn check_splits(s: &Scheduler) -> Result<(), String> {
    for (&first, rec) in &s.splits {
        if rec.first != first || rec.chunks.len() as u64 > rec.slots as u64 {
            return Err(format!(
                "split at {first}: {} slices for {} slots",
                rec.chunks.len(),
                rec.slots
            ));
        }
        let mut next = rec.start;
        for (k, &(a, b)) in rec.chunks.iter().enumerate() {
            if a != next || b < a || b > rec.end {
                return Err(format!(
                    "split at {first}: slice {k} is {a}-{b}, expected to start at {next} and end by {}",
                    rec.end
                ));
            }
            next = b.wrapping_add(1);
        }
        let covered = rec.chunks.last().is_some_and(|&(_, b)| b == rec.end);
        for k in rec.chunks.len() as u64..rec.slots as u64 {
            let id = TaskId(first.0 + k);
            let Some(t) = s.tasks.get(id) else { continue };
            if t.attempt != 0 {
                return Err(format!("split at {first}: slot {id} ran without a slice"));
            }
            if covered && t.state == TaskState::Waiting && t.remaining == 0 {
                return Err(format!(
                    "split at {first}: slot {id} waits although the range is covered"
                ));
            }
        }
        if (rec.chunks.len() as u64) == rec.slots as u64 && !covered {
            return Err(format!(
                "split at {first}: every slot has a slice but the range is not covered"
            ));
        }
    }
    Ok(())
}
