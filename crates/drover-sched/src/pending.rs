//! Pending reasons: why a task is not running, in a sentence a person understands.
//!
//! Computed on demand from the task table, the workers and the queue; never on the
//! scheduling path. Counting the tasks ahead in the queue stops at [`AHEAD_CAP`], so a
//! reason costs O(workers + sub-queues + 10,000) at most, even with millions queued
//! (an API listing pages of tasks with their reasons stays cheap).

use crate::scheduler::{Scheduler, ix};
use crate::task_table::{NO_WORKER, TaskRec};
use drover_types::{
    FailureCause, Millis, Resources, TaskId, TaskState, WorkerId, WorkerState, format_bytes,
};

/// Tasks ahead are counted up to this many ("queued behind more than 10,000 tasks").
pub(crate) const AHEAD_CAP: u64 = 10_000;

pub(crate) fn reason(s: &Scheduler, id: TaskId, _now: Millis) -> Option<String> {
    let rec = s.rec(id)?;
    let max = rec.spec.shared().retry.max_attempts;
    Some(match rec.state {
        TaskState::Running => return None,
        TaskState::Waiting => match s.held.get(&id) {
            Some(runner) => format!(
                "waiting for task {} with the same cache key: it completes from that result, or runs if that one fails",
                runner.0
            ),
            None if rec.remaining == 0 && s.split_gated(id) => {
                "waiting for its slice of the split's range: the server sizes the next chunks as earlier ones finish".to_string()
            }
            None => waiting(s, rec),
        },
        TaskState::Ready => format!("{}{}", requeued(s, rec), ready(s, id, rec)),
        TaskState::Backoff => format!(
            "{}retry {} of {max} at {} after backoff",
            requeued(s, rec),
            rec.spent + 1,
            rec.wake_at
        ),
        TaskState::Assigned => {
            let since = rec
                .attempts
                .last()
                .map(|a| a.assigned_at)
                .unwrap_or_default();
            let w = WorkerId(rec.holder);
            if rec.slot == crate::task_table::PREFETCHED {
                let ahead = s
                    .pool
                    .rec(w)
                    .queued
                    .iter()
                    .position(|t| *t == id)
                    .unwrap_or(0);
                let preemption = if s.config.policy.preemption {
                    why_no_preemption(s, rec, &[(w, s.pool.rec(w))])
                } else {
                    String::new()
                };
                format!(
                    "queued on worker {} since {since}, {ahead} ahead of it: it starts there as soon as room frees{preemption}",
                    worker_name(s, w)
                )
            } else {
                format!(
                    "assigned to worker {} at {since}; waiting for the worker to start it",
                    worker_name(s, w)
                )
            }
        }
        TaskState::Succeeded => "succeeded".to_string(),
        TaskState::Failed => {
            let cause = match last_failure(rec) {
                Some(FailureCause::WorkerLost { worker }) => {
                    format!("worker {} was lost", worker_name(s, *worker))
                }
                Some(c) => c.to_string(),
                None => "no attempt succeeded".to_string(),
            };
            let mut text = format!("failed: {cause} on attempt {} of {max}", rec.spent);
            if matches!(last_failure(rec), Some(FailureCause::WorkerLost { .. })) && max == 1 {
                text.push_str(" (the task is not retryable, so it is not run again)");
            }
            text
        }
        TaskState::TimedOut => format!("timed out on attempt {} of {max}", rec.spent),
        TaskState::Cancelled => {
            if rec.holder != NO_WORKER {
                format!(
                    "cancelled; waiting for worker {} to stop it",
                    worker_name(s, WorkerId(rec.holder))
                )
            } else {
                "cancelled".to_string()
            }
        }
        TaskState::DependencyFailed => match s.dep_failed_by.get(&id) {
            Some(&p) => {
                let how = match s.tasks[ix(p)].state {
                    TaskState::Cancelled => "was cancelled",
                    TaskState::TimedOut => "timed out",
                    TaskState::DependencyFailed => "cannot run (one of its dependencies failed)",
                    _ => "failed",
                };
                format!("dependency {} {how}", long_label(s, p))
            }
            None => "a dependency failed".to_string(),
        },
    })
}

fn last_failure(rec: &TaskRec) -> Option<&FailureCause> {
    rec.attempts.last().and_then(|a| a.failure.as_ref())
}

/// Why a ready or backing-off task is back in the queue, when it was placed before.
fn requeued(s: &Scheduler, rec: &TaskRec) -> String {
    match last_failure(rec) {
        Some(FailureCause::WorkerLost { worker }) => {
            format!("worker {} was lost; re-queued; ", worker_name(s, *worker))
        }
        Some(FailureCause::Preempted) => {
            "preempted by a higher-priority task; re-queued; ".to_string()
        }
        Some(cause) if rec.state == TaskState::Backoff => {
            format!("attempt {} {cause}; ", rec.spent)
        }
        _ => String::new(),
    }
}

/// A worker as people know it: by its name (`gpu-03`), or its id when it has none.
pub(crate) fn placement_note(s: &Scheduler, id: TaskId) -> Option<String> {
    let rec = s.rec(id)?;
    let w = rec.attempts.last()?.worker;
    let worker = s.pool.get(w)?;
    let name = worker_name(s, w);
    let inputs = &rec.spec.shared().inputs;
    if !inputs.is_empty() && s.config.policy.locality_weight > 0 {
        let held: Vec<&str> = inputs
            .iter()
            .filter(|k| s.pool.inputs_held(w, std::slice::from_ref(k)) > 0)
            .map(String::as_str)
            .collect();
        let noun = if held.len() == 1 { "input" } else { "inputs" };
        return Some(if held.is_empty() {
            let holders = inputs
                .iter()
                .filter(|k| s.pool.data.contains_key(k.as_str()))
                .count();
            if holders == 0 {
                format!("placed on {name}: no worker holds its inputs")
            } else {
                format!(
                    "placed on {name}: it holds none of its inputs (no holder could take it then)"
                )
            }
        } else if held.len() == inputs.len() {
            format!("placed on {name}: holds {noun} {}", held.join(", "))
        } else {
            format!(
                "placed on {name}: holds {noun} {} ({} of {})",
                held.join(", "),
                held.len(),
                inputs.len()
            )
        });
    }
    if s.config.policy.placement == drover_types::PlacementPolicyKind::LoadAware {
        return Some(format!(
            "placed on {name} by load-aware placement (its load now: {}.{}% of capacity)",
            worker.load_permille() / 10,
            worker.load_permille() % 10
        ));
    }
    None
}

fn worker_name(s: &Scheduler, w: WorkerId) -> String {
    match s.pool.get(w) {
        Some(r) if !r.spec.name.is_empty() => r.spec.name.clone(),
        _ => w.to_string(),
    }
}

/// `a`, or `17 (name)`, or `17`.
fn short_label(s: &Scheduler, id: TaskId) -> String {
    let spec = &s.tasks[ix(id)].spec;
    match spec.key() {
        Some(k) if spec.shared().array.is_none() => k.to_owned(),
        _ => long_label(s, id),
    }
}

fn long_label(s: &Scheduler, id: TaskId) -> String {
    let rec = &s.tasks[ix(id)];
    let spec = &rec.spec;
    let name = spec
        .key()
        .filter(|k| !k.is_empty())
        .or((!spec.name().is_empty()).then_some(spec.name()));
    match (name, rec.array_index) {
        (Some(n), Some(i)) => format!("{id} ({n}[{i}])"),
        (Some(n), None) => format!("{id} ({n})"),
        (None, _) => id.to_string(),
    }
}

fn waiting(s: &Scheduler, rec: &TaskRec) -> String {
    // Distinct parents in the order given (a dependency may be named twice).
    let mut seen = std::collections::BTreeSet::new();
    let distinct: Vec<TaskId> = rec
        .deps
        .iter()
        .copied()
        .filter(|d| seen.insert(*d))
        .collect();
    let pending: Vec<TaskId> = distinct
        .iter()
        .copied()
        .filter(|&d| s.tasks[ix(d)].state != TaskState::Succeeded)
        .collect();
    const SHOWN: usize = 5;
    let mut names: Vec<String> = pending
        .iter()
        .take(SHOWN)
        .map(|&d| short_label(s, d))
        .collect();
    if pending.len() > SHOWN {
        names.push(format!(
            "and {} more",
            thousands(pending.len() as u64 - SHOWN as u64)
        ));
    }
    let noun = if distinct.len() == 1 {
        "dependency"
    } else {
        "dependencies"
    };
    format!(
        "waiting for {} of {} {noun}: {}",
        thousands(pending.len() as u64),
        thousands(distinct.len() as u64),
        names.join(", ")
    )
}

fn ready(s: &Scheduler, id: TaskId, rec: &TaskRec) -> String {
    let shape = &s.shapes.list[rec.shape as usize];
    let req = &shape.res;
    let workers = &s.pool.workers;
    let active: Vec<(WorkerId, &crate::worker_pool::WorkerRec)> = s
        .pool
        .ids()
        .map(|w| (w, s.pool.rec(w)))
        .filter(|(_, r)| r.state == WorkerState::Active)
        .collect();
    if active.is_empty() {
        if workers.is_empty() {
            return "no worker has joined yet".to_string();
        }
        let draining = workers
            .iter()
            .filter(|w| w.state == WorkerState::Draining)
            .count();
        let lost = workers.len() - draining;
        return format!("no worker is taking tasks ({draining} draining, {lost} lost)");
    }
    if let Some(driver) = &shape.driver
        && !active.iter().any(|(_, r)| r.spec.has_driver(driver))
    {
        return format!("no worker has driver {driver}");
    }
    let matching: Vec<_> = active.iter().filter(|(_, r)| r.admits(shape)).collect();
    if matching.is_empty() {
        let list: Vec<String> = shape.constraints.iter().map(|c| c.to_string()).collect();
        return format!(
            "no active worker matches its constraints: {}",
            list.join(", ")
        );
    }
    let which = if shape.constraints.is_empty() {
        "the largest worker"
    } else {
        "the largest matching worker"
    };
    let caps: Vec<&Resources> = matching.iter().map(|(_, r)| &r.spec.capacity).collect();
    let max_cpu = caps.iter().map(|c| c.cpu_milli).max().unwrap_or(0);
    if req.cpu_milli > max_cpu {
        return format!(
            "needs {} cpu; {which} has {} cpu",
            cpus(req.cpu_milli),
            cpus(max_cpu)
        );
    }
    let max_mem = caps.iter().map(|c| c.memory_bytes).max().unwrap_or(0);
    if req.memory_bytes > max_mem {
        return format!(
            "needs {} memory; {which} has {}",
            format_bytes(req.memory_bytes),
            format_bytes(max_mem)
        );
    }
    let max_disk = caps.iter().map(|c| c.disk_bytes).max().unwrap_or(0);
    if req.disk_bytes > max_disk {
        return format!(
            "needs {} disk; {which} has {}",
            format_bytes(req.disk_bytes),
            format_bytes(max_disk)
        );
    }
    let max_gpus = caps.iter().map(|c| c.gpus).max().unwrap_or(0);
    if req.gpus > max_gpus {
        let gpus = if req.gpus == 1 { "gpu" } else { "gpus" };
        return format!("needs {} {gpus}; {which} has {max_gpus}", req.gpus);
    }
    for (k, v) in &req.custom {
        let max = caps
            .iter()
            .map(|c| c.custom.get(k).copied().unwrap_or(0))
            .max()
            .unwrap_or(0);
        if *v > max {
            return format!("needs {v} {k}; {which} has {max}");
        }
    }
    if !caps.iter().any(|c| req.fits_in(c)) {
        return format!("needs {req}; no single worker has all of that");
    }
    let (group, _, key) = s.queue_slot(id);
    let ahead = s.queue.count_ahead(group, key, id, AHEAD_CAP + 1);
    let fits_now = matching.iter().any(|(_, r)| r.fits_free(req));
    let count = if ahead > AHEAD_CAP {
        format!("more than {}", thousands(AHEAD_CAP))
    } else {
        thousands(ahead)
    };
    let phrase = s.qpolicy.ahead_phrase();
    let tasks = if ahead == 1 { "task" } else { "tasks" };
    let preemption = if fits_now || !s.config.policy.preemption {
        String::new()
    } else {
        let workers: Vec<(WorkerId, &crate::worker_pool::WorkerRec)> =
            matching.iter().map(|p| **p).collect();
        why_no_preemption(s, rec, &workers)
    };
    match (ahead, fits_now) {
        (0, true) => "ready; it will be placed in the next scheduling round".to_string(),
        (0, false) => format!("waiting for resources: no worker has {req} free{preemption}"),
        (_, true) => format!("queued behind {count} {tasks} {phrase}"),
        (_, false) => {
            format!("queued behind {count} {tasks} {phrase}; no worker has {req} free{preemption}")
        }
    }
}

/// With preemption on, a task that fits nowhere says what preemption does for it: it
/// waits for evicted tasks to stop, or why the running tasks of the workers that could
/// hold it may not be evicted ("preemption on, but the 2 running tasks on w cannot be
/// preempted: not retryable"). Empty when some could be: the next round evicts them.
fn why_no_preemption(
    s: &Scheduler,
    rec: &TaskRec,
    workers: &[(WorkerId, &crate::worker_pool::WorkerRec)],
) -> String {
    let shape = &s.shapes.list[rec.shape as usize];
    let priority = rec.spec.shared().priority;
    let (mut stopping, mut evictable, mut not_retryable, mut not_lower) = (0u64, 0u64, 0u64, 0u64);
    let mut names: Vec<String> = Vec::new();
    for &(w, wr) in workers {
        if !shape.res.fits_in(&wr.spec.capacity) {
            continue;
        }
        let mut any = false;
        for &t in &wr.running {
            let tr = &s.tasks[ix(t)];
            if tr.kill.is_some() {
                stopping += 1;
            } else if !tr.state.is_on_worker() {
                continue;
            } else if tr.spec.shared().priority >= priority {
                not_lower += 1;
            } else if !tr.spec.shared().is_preemptible() {
                not_retryable += 1;
            } else {
                evictable += 1;
            }
            any = true;
        }
        if any {
            names.push(worker_name(s, w));
        }
    }
    if stopping > 0 {
        let tasks = if stopping == 1 { "task" } else { "tasks" };
        return format!("; preemption on: waiting for {stopping} evicted {tasks} to stop");
    }
    let blocked = not_retryable + not_lower;
    if evictable > 0 || blocked == 0 {
        return String::new();
    }
    const SHOWN: usize = 3;
    let more = names.len().saturating_sub(SHOWN);
    names.truncate(SHOWN);
    let mut on = names.join(", ");
    if more > 0 {
        on.push_str(&format!(" and {more} more"));
    }
    let why = match (not_retryable, not_lower) {
        (_, 0) => "not retryable (submit them with retries or as preemptible)".to_string(),
        (0, _) => format!("their priority is not below {priority}"),
        (r, l) => format!(
            "{r} not retryable (submit them with retries or as preemptible), {l} with a priority not below {priority}"
        ),
    };
    let the = if blocked == 1 {
        "the running task".to_string()
    } else {
        format!("the {blocked} running tasks")
    };
    format!("; preemption on, but {the} on {on} cannot be preempted: {why}")
}

fn cpus(milli: u32) -> String {
    if milli.is_multiple_of(1000) {
        (milli / 1000).to_string()
    } else {
        format!("{}.{:03}", milli / 1000, milli % 1000)
            .trim_end_matches('0')
            .to_string()
    }
}

/// `1204` -> `1,204`.
pub(crate) fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn thousands_are_separated() {
        assert_eq!(super::thousands(0), "0");
        assert_eq!(super::thousands(1204), "1,204");
        assert_eq!(super::thousands(1_000_000), "1,000,000");
    }
}
