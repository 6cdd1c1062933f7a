//! Property test: random sequences of events (submissions with random DAGs, joins,
//! heartbeats, losses, drains, completions, failures, stale reports, cancels, policy
//! switches, preemptions, time passing) against a simple reference model. Every job
//! reuses the same keys and a few names, and refers to earlier jobs' tasks by id, by
//! `JOB_ID/KEY`, `JOB_NAME/KEY` or a bare key (the newest). After every
//! step: the core's invariant checker, and the core's task states and worker
//! reservations must equal the model's. The core decides placements; the model checks
//! each one is legal and that after a round no ready task fits any active worker
//! (placement never leaves a fitting task waiting). Halfway, the core is snapshotted
//! (through JSON) and restored; the copy must then produce exactly the same outputs.

use drover_sched::{
    Action, CancelTarget, CoreError, Event, KillReason, Scheduler, SchedulerConfig,
    TIME_LIMIT_SLACK_MS,
};
use drover_types::{
    Attempt, Backoff, DepRef, JobId, JobSpec, LabelSelector, Millis, Outcome, PlacementPolicyKind,
    PolicyConfig, QueuePolicyKind, Resources, RetryPolicy, TaskId, TaskSpec, TaskState, WorkerId,
    WorkerSpec, WorkerState, WorkerUsage,
};
use proptest::prelude::*;
use std::collections::BTreeSet;

const GIB: u64 = 1 << 30;

fn zone_labels(zone_a: bool) -> std::collections::BTreeMap<String, String> {
    [(
        "zone".to_string(),
        if zone_a { "a" } else { "b" }.to_string(),
    )]
    .into()
}

/// A generated task: (cpu, memory, priority, max attempts, dependencies, time limit,
/// flags).
type GenTask = (u8, u8, i8, u8, Vec<u8>, bool, u8);

#[derive(Clone, Debug)]
enum Op {
    Submit(Vec<GenTask>),
    Join(u8, u8, u8),
    Rejoin(u8, u8),
    Heartbeat(u8),
    Drain(u8),
    Resume(u8),
    Lost(u8),
    Start(u8),
    Finish(u8, u8),
    Stale(u8),
    Cancel(u8),
    CancelJob(u8),
    Policy(u8, u8, bool),
    Advance(u16),
}

fn op() -> impl Strategy<Value = Op> {
    let task = (
        0u8..4,
        0u8..4,
        -2i8..3,
        1u8..4,
        // A dependency: which earlier task (d % 20) and how to name it (d / 20).
        prop::collection::vec(0u8..80, 0..3),
        any::<bool>(),
        0u8..8,
    );
    prop_oneof![
        4 => prop::collection::vec(task, 1..5).prop_map(Op::Submit),
        2 => (0u8..5, 1u8..8, 1u8..12).prop_map(|(a, b, c)| Op::Join(a, b, c)),
        1 => (any::<u8>(), any::<u8>()).prop_map(|(a, b)| Op::Rejoin(a, b)),
        1 => any::<u8>().prop_map(Op::Heartbeat),
        1 => any::<u8>().prop_map(Op::Drain),
        1 => any::<u8>().prop_map(Op::Resume),
        1 => any::<u8>().prop_map(Op::Lost),
        5 => any::<u8>().prop_map(Op::Start),
        6 => (any::<u8>(), 0u8..4).prop_map(|(a, b)| Op::Finish(a, b)),
        1 => any::<u8>().prop_map(Op::Stale),
        1 => any::<u8>().prop_map(Op::Cancel),
        1 => any::<u8>().prop_map(Op::CancelJob),
        1 => (0u8..6, 0u8..4, any::<bool>()).prop_map(|(a, b, c)| Op::Policy(a, b, c)),
        4 => (0u16..3000).prop_map(Op::Advance),
    ]
}

#[derive(Clone, Debug)]
struct MTask {
    state: TaskState,
    attempt: u32,
    spent: u32,
    max: u32,
    prio: i32,
    cpu: u32,
    mem: u64,
    deps: Vec<usize>,
    children: Vec<usize>,
    worker: Option<usize>,
    started: Option<u64>,
    limit: Option<u64>,
    kill: Option<KillReason>,
    wake: u64,
    zone_a: bool,
    /// Its job (index into `Model::jobs`) and its index in that job: its key is
    /// `k{idx}`, so every job reuses the same keys.
    job: usize,
    idx: usize,
}

#[derive(Clone, Debug)]
struct MWorker {
    name: String,
    zone_a: bool,
    cpu: u32,
    mem: u64,
    state: WorkerState,
    alloc_cpu: u32,
    alloc_mem: u64,
}

/// The name of the job at this index: jobs share a few names, and some have none.
fn job_name(job: usize) -> String {
    match job % 4 {
        3 => String::new(),
        n => format!("n{n}"),
    }
}

/// The reference model: plain vectors, every rule written the obvious way.
#[derive(Default)]
struct Model {
    tasks: Vec<MTask>,
    workers: Vec<MWorker>,
    jobs: Vec<Vec<usize>>,
    now: u64,
}

const BACKOFF: Backoff = Backoff {
    initial_ms: 200,
    multiplier_percent: 200,
    max_ms: 5_000,
};

impl Model {
    /// A reference to the earlier task `p` from a job of `size` tasks being submitted,
    /// in the form `how % 4` picks, and the task it names.
    fn earlier_ref(&self, p: usize, how: u8, size: usize) -> (DepRef, usize) {
        let (job, idx) = (self.tasks[p].job, self.tasks[p].idx);
        let name = job_name(job);
        match how % 4 {
            1 => (DepRef::Key(format!("{}/k{idx}", job + 1)), p),
            2 if !name.is_empty() => {
                let newest = (0..self.jobs.len())
                    .rev()
                    .find(|&j| job_name(j) == name)
                    .unwrap();
                match self.jobs[newest].get(idx) {
                    Some(&t) => (DepRef::Key(format!("{name}/k{idx}")), t),
                    None => (DepRef::Id(TaskId(p as u64 + 1)), p),
                }
            }
            // Only when the job being submitted has no task with that key.
            3 if idx >= size => {
                let newest = (0..self.tasks.len())
                    .rev()
                    .find(|&t| self.tasks[t].idx == idx)
                    .unwrap();
                (DepRef::Key(format!("k{idx}")), newest)
            }
            _ => (DepRef::Id(TaskId(p as u64 + 1)), p),
        }
    }

    fn release(&mut self, t: usize) {
        if let Some(w) = self.tasks[t].worker.take() {
            self.workers[w].alloc_cpu -= self.tasks[t].cpu;
            self.workers[w].alloc_mem -= self.tasks[t].mem;
        }
    }

    fn fail_dependents(&mut self, t: usize) {
        let mut stack = vec![t];
        while let Some(p) = stack.pop() {
            for c in self.tasks[p].children.clone() {
                if self.tasks[c].state == TaskState::Waiting {
                    self.tasks[c].state = TaskState::DependencyFailed;
                    stack.push(c);
                }
            }
        }
    }

    fn maybe_ready(&mut self, t: usize) {
        if self.tasks[t].state == TaskState::Waiting
            && self.tasks[t]
                .deps
                .iter()
                .all(|&d| self.tasks[d].state == TaskState::Succeeded)
        {
            self.tasks[t].state = TaskState::Ready;
        }
    }

    /// A task placed on a rejoining worker that does not list it: never started (and
    /// not being stopped), its start never arrived, so back to the queue with no
    /// attempt spent; started, it was lost.
    fn lose_on_rejoin(&mut self, t: usize, was_lost: bool) {
        if !was_lost && self.tasks[t].state == TaskState::Assigned && self.tasks[t].kill.is_none() {
            self.release(t);
            self.tasks[t].state = TaskState::Ready;
        } else {
            self.end(t, None);
        }
    }

    /// The current attempt ended; `code` None means the worker was lost.
    fn end(&mut self, t: usize, code: Option<i32>) {
        self.release(t);
        let kill = self.tasks[t].kill.take();
        if self.tasks[t].state == TaskState::Cancelled {
            return;
        }
        if code == Some(0) {
            self.tasks[t].state = TaskState::Succeeded;
            for c in self.tasks[t].children.clone() {
                self.maybe_ready(c);
            }
            return;
        }
        if kill == Some(KillReason::Preempted) {
            self.tasks[t].state = TaskState::Ready;
            return;
        }
        let task = &mut self.tasks[t];
        task.spent += 1;
        if task.spent < task.max {
            task.state = TaskState::Backoff;
            task.wake = self.now + BACKOFF.delay_before(task.spent + 1);
        } else {
            task.state = if kill == Some(KillReason::TimeLimit) {
                TaskState::TimedOut
            } else {
                TaskState::Failed
            };
            self.fail_dependents(t);
        }
    }

    fn cancel(&mut self, ids: &[usize]) {
        let ids: Vec<usize> = ids
            .iter()
            .copied()
            .filter(|&t| !self.tasks[t].state.is_final())
            .collect();
        for &t in &ids {
            {
                if self.tasks[t].worker.is_some() {
                    self.tasks[t].kill = Some(KillReason::Cancelled);
                }
                self.tasks[t].state = TaskState::Cancelled;
            }
        }
        for &t in &ids {
            self.fail_dependents(t);
        }
    }

    fn lose_worker(&mut self, w: usize) {
        self.workers[w].state = WorkerState::Lost;
        let on: Vec<usize> = (0..self.tasks.len())
            .filter(|&t| self.tasks[t].worker == Some(w))
            .collect();
        for t in on {
            self.end(t, None);
        }
    }

    fn fits(&self, t: usize, w: usize) -> bool {
        let (task, wk) = (&self.tasks[t], &self.workers[w]);
        (!task.zone_a || wk.zone_a)
            && wk.state == WorkerState::Active
            && wk.alloc_cpu + task.cpu <= wk.cpu
            && wk.alloc_mem + task.mem <= wk.mem
    }
}

struct Harness {
    s: Scheduler,
    m: Model,
    shadow: Option<Scheduler>,
    /// A second core fed the same events from the start. Its hash maps have other
    /// random seeds, so any hash-order leak into decisions would make it diverge.
    twin: Scheduler,
    log: Vec<String>,
}

impl Harness {
    fn apply(&mut self, e: Event) -> Result<drover_sched::Applied, CoreError> {
        let r = self.s.apply(Millis(self.m.now), e.clone());
        let r3 = self.twin.apply(Millis(self.m.now), e.clone());
        assert_eq!(
            format!("{r:?}"),
            format!("{r3:?}"),
            "twin core diverged on an event"
        );
        if let Some(sh) = &mut self.shadow {
            let r2 = sh.apply(Millis(self.m.now), e);
            assert_eq!(
                format!("{r:?}"),
                format!("{r2:?}"),
                "restored core diverged on an event"
            );
        }
        r
    }

    fn task_id(t: usize) -> TaskId {
        TaskId(t as u64 + 1)
    }

    fn round(&mut self) {
        // Timers the model expects.
        for t in 0..self.m.tasks.len() {
            if self.m.tasks[t].state == TaskState::Backoff && self.m.tasks[t].wake <= self.m.now {
                self.m.tasks[t].state = TaskState::Ready;
            }
        }
        let expected_limit_kills: BTreeSet<usize> = (0..self.m.tasks.len())
            .filter(|&t| {
                let k = &self.m.tasks[t];
                k.state == TaskState::Running
                    && k.kill != Some(KillReason::TimeLimit)
                    && matches!((k.started, k.limit), (Some(s), Some(l)) if s + l + TIME_LIMIT_SLACK_MS <= self.m.now)
            })
            .collect();
        let plan = self.s.schedule(Millis(self.m.now));
        assert_eq!(
            plan,
            self.twin.schedule(Millis(self.m.now)),
            "twin core diverged on a round"
        );
        if let Some(sh) = &mut self.shadow {
            assert_eq!(
                plan,
                sh.schedule(Millis(self.m.now)),
                "restored core diverged on a round"
            );
        }
        let mut limit_kills = BTreeSet::new();
        let preemption = self.s.policy().preemption;
        for a in &plan.actions {
            match *a {
                Action::Start {
                    task,
                    attempt,
                    worker,
                } => {
                    let (t, w) = (task.0 as usize - 1, worker.0 as usize - 1);
                    assert_eq!(
                        self.m.tasks[t].state,
                        TaskState::Ready,
                        "started a task that is not ready"
                    );
                    assert!(self.m.fits(t, w), "placed task {t} where it does not fit");
                    assert_eq!(attempt.0, self.m.tasks[t].attempt + 1);
                    let task = &mut self.m.tasks[t];
                    task.attempt += 1;
                    task.state = TaskState::Assigned;
                    task.worker = Some(w);
                    task.started = None;
                    self.m.workers[w].alloc_cpu += task.cpu;
                    self.m.workers[w].alloc_mem += task.mem;
                }
                Action::Kill {
                    task,
                    attempt,
                    worker,
                    reason,
                    ..
                } => {
                    let t = task.0 as usize - 1;
                    let k = &self.m.tasks[t];
                    assert_eq!(
                        (k.worker, k.attempt),
                        (Some(worker.0 as usize - 1), attempt.0)
                    );
                    match reason {
                        KillReason::TimeLimit => {
                            limit_kills.insert(t);
                        }
                        KillReason::Preempted => {
                            assert!(preemption, "preempted while preemption is off");
                            assert!(k.max > 1 && k.kill.is_none() && k.state.is_on_worker());
                            let higher = self
                                .m
                                .tasks
                                .iter()
                                .any(|o| o.state == TaskState::Ready && o.prio > k.prio);
                            assert!(higher, "preempted with no higher-priority task waiting");
                        }
                        other => panic!("unexpected kill {other:?} in a round"),
                    }
                    self.m.tasks[t].kill = Some(reason);
                }
                Action::Resize { .. } => panic!("a round never resizes"),
            }
        }
        assert_eq!(limit_kills, expected_limit_kills, "time-limit kills");
        // Placement leaves no ready task that fits on an active worker.
        for t in 0..self.m.tasks.len() {
            if self.m.tasks[t].state == TaskState::Ready {
                for w in 0..self.m.workers.len() {
                    assert!(
                        !self.m.fits(t, w),
                        "ready task {t} fits on worker {w} but was not placed"
                    );
                }
            }
        }
    }

    fn compare(&self) {
        if let Err(e) = self.s.check_invariants() {
            panic!("{e}\n{}", self.log.join("\n"));
        }
        for (i, t) in self.m.tasks.iter().enumerate() {
            let v = self.s.task(Self::task_id(i)).unwrap();
            assert_eq!(
                v.state,
                t.state,
                "task {} state\n{}",
                i + 1,
                self.log.join("\n")
            );
            assert_eq!(v.attempt.0, t.attempt, "task {} attempt", i + 1);
            // References (ids, keys, JOB/KEY) resolved to the tasks the model expects.
            assert!(
                v.deps
                    .iter()
                    .map(|d| d.0 as usize - 1)
                    .eq(t.deps.iter().copied()),
                "task {} deps {:?}, model {:?}",
                i + 1,
                v.deps,
                t.deps
            );
            assert_eq!(
                v.worker.map(|w| w.0 as usize - 1),
                t.worker,
                "task {} worker",
                i + 1
            );
            assert!(
                self.s
                    .pending_reason(Self::task_id(i), Millis(self.m.now))
                    .is_some()
                    || t.state == TaskState::Running
            );
        }
        for (i, w) in self.m.workers.iter().enumerate() {
            let v = self.s.worker(WorkerId(i as u32 + 1)).unwrap();
            assert_eq!(
                (v.state, v.allocated.cpu_milli, v.allocated.memory_bytes),
                (w.state, w.alloc_cpu, w.alloc_mem),
                "worker {i}"
            );
        }
    }

    fn pick(&self, n: u8, pred: impl Fn(&MTask) -> bool) -> Option<usize> {
        let c: Vec<usize> = (0..self.m.tasks.len())
            .filter(|&t| pred(&self.m.tasks[t]))
            .collect();
        (!c.is_empty()).then(|| c[n as usize % c.len()])
    }

    fn step(&mut self, op: Op) {
        self.log.push(format!("{:>6} {op:?}", self.m.now));
        match op {
            Op::Submit(specs) => {
                let first = self.m.tasks.len();
                let job = self.m.jobs.len();
                let mut tasks = Vec::new();
                for (i, (cpu, mem, prio, max, deps, limited, flags)) in specs.iter().enumerate() {
                    let mut dep_idx: Vec<usize> = Vec::new();
                    let mut after = Vec::new();
                    for d in deps {
                        // Earlier tasks of this job by key; tasks of earlier jobs by id,
                        // JOB_ID/KEY, JOB_NAME/KEY or a bare key, resolved here the
                        // obvious way (the bare key names the newest task with it).
                        let pool = first + i;
                        if pool == 0 {
                            continue;
                        }
                        let p = (*d % 20) as usize % pool;
                        let (reference, target) = if p >= first {
                            (DepRef::Key(format!("k{}", p - first)), p)
                        } else {
                            self.m.earlier_ref(p, *d / 20, specs.len())
                        };
                        dep_idx.push(target);
                        after.push(reference);
                    }
                    tasks.push(TaskSpec {
                        key: Some(format!("k{i}")),
                        resources: Resources {
                            cpu_milli: 1000 * (*cpu as u32 + 1) / 2,
                            memory_bytes: *mem as u64 * GIB,
                            ..Default::default()
                        },
                        priority: *prio as i32,
                        retry: RetryPolicy {
                            max_attempts: *max as u32,
                            backoff: BACKOFF,
                            retry_on_exit_codes: vec![],
                        },
                        max_runtime_ms: limited.then_some(1_500),
                        // flags: 1 = must run in zone a, 2 = reads input k1, 4 = prefers zone b.
                        constraints: if flags & 1 != 0 {
                            vec![LabelSelector::parse("zone=a").unwrap()]
                        } else {
                            vec![]
                        },
                        inputs: if flags & 2 != 0 {
                            vec!["k1".to_string()]
                        } else {
                            vec![]
                        },
                        affinity: if flags & 4 != 0 {
                            vec![LabelSelector::parse("zone=b").unwrap()]
                        } else {
                            vec![]
                        },
                        after,
                        owner: format!("o{}", prio.rem_euclid(2)),
                        ..TaskSpec::command(["x"])
                    });
                    self.m.tasks.push(MTask {
                        state: TaskState::Waiting,
                        attempt: 0,
                        spent: 0,
                        max: *max as u32,
                        prio: *prio as i32,
                        cpu: 1000 * (*cpu as u32 + 1) / 2,
                        mem: *mem as u64 * GIB,
                        deps: dep_idx,
                        children: vec![],
                        worker: None,
                        started: None,
                        limit: limited.then_some(1_500),
                        zone_a: flags & 1 != 0,
                        kill: None,
                        wake: 0,
                        job,
                        idx: i,
                    });
                }
                let r = self
                    .apply(Event::Submit {
                        job: JobSpec {
                            name: job_name(job),
                            tasks,
                            ..Default::default()
                        },
                    })
                    .unwrap();
                assert_eq!(r.job.unwrap().1.first, Self::task_id(first));
                self.m.jobs.push((first..self.m.tasks.len()).collect());
                for t in first..self.m.tasks.len() {
                    let deps = self.m.tasks[t].deps.clone();
                    for d in &deps {
                        if !self.m.tasks[*d].children.contains(&t) {
                            self.m.tasks[*d].children.push(t);
                        }
                    }
                }
                for t in first..self.m.tasks.len() {
                    let deps = self.m.tasks[t].deps.clone();
                    if self.m.tasks[t].state == TaskState::Waiting
                        && deps.iter().any(|&d| {
                            self.m.tasks[d].state.is_final()
                                && self.m.tasks[d].state != TaskState::Succeeded
                        })
                    {
                        self.m.tasks[t].state = TaskState::DependencyFailed;
                        self.m.fail_dependents(t);
                    }
                    self.m.maybe_ready(t);
                }
            }
            Op::Join(name, cpu, mem) => {
                let zone_a = name.is_multiple_of(2);
                let name = format!("w{name}");
                let spec = WorkerSpec {
                    name: name.clone(),
                    labels: zone_labels(zone_a),
                    capacity: Resources {
                        cpu_milli: cpu as u32 * 1000,
                        memory_bytes: mem as u64 * GIB,
                        ..Default::default()
                    },
                    ..Default::default()
                };
                let existing = self.m.workers.iter().position(|w| w.name == name);
                if let Some(w) = existing {
                    // A rejoin saying it runs nothing: everything it started is lost,
                    // what it never started goes back to the queue, and its capacity
                    // changes.
                    let on: Vec<usize> = (0..self.m.tasks.len())
                        .filter(|&t| self.m.tasks[t].worker == Some(w))
                        .collect();
                    let was_lost = self.m.workers[w].state == WorkerState::Lost;
                    for t in on {
                        self.m.lose_on_rejoin(t, was_lost);
                    }
                    self.m.workers[w].cpu = cpu as u32 * 1000;
                    self.m.workers[w].mem = mem as u64 * GIB;
                    if self.m.workers[w].state == WorkerState::Lost {
                        self.m.workers[w].state = WorkerState::Active;
                    }
                } else {
                    self.m.workers.push(MWorker {
                        name,
                        zone_a,
                        cpu: cpu as u32 * 1000,
                        mem: mem as u64 * GIB,
                        state: WorkerState::Active,
                        alloc_cpu: 0,
                        alloc_mem: 0,
                    });
                }
                let r = self
                    .apply(Event::WorkerJoin {
                        spec,
                        running: vec![],
                    })
                    .unwrap();
                assert_eq!(
                    r.worker.unwrap().0 as usize,
                    existing.unwrap_or(self.m.workers.len() - 1) + 1
                );
            }
            Op::Rejoin(w, keep) => {
                if self.m.workers.is_empty() {
                    return;
                }
                let w = w as usize % self.m.workers.len();
                let on: Vec<usize> = (0..self.m.tasks.len())
                    .filter(|&t| self.m.tasks[t].worker == Some(w))
                    .collect();
                // It still runs every other one of its attempts (from `keep`), plus a stale one.
                let kept: Vec<usize> = on
                    .iter()
                    .copied()
                    .enumerate()
                    .filter(|(i, _)| (i + keep as usize).is_multiple_of(2))
                    .map(|(_, t)| t)
                    .collect();
                let mut running: Vec<(TaskId, Attempt)> = kept
                    .iter()
                    .map(|&t| (Self::task_id(t), Attempt(self.m.tasks[t].attempt)))
                    .collect();
                running.push((TaskId(9_999), Attempt(1)));
                let was_lost = self.m.workers[w].state == WorkerState::Lost;
                for &t in &on {
                    if !kept.contains(&t) {
                        self.m.lose_on_rejoin(t, was_lost);
                    }
                }
                if was_lost {
                    self.m.workers[w].state = WorkerState::Active;
                }
                let mw = &self.m.workers[w];
                let spec = WorkerSpec {
                    name: mw.name.clone(),
                    labels: zone_labels(mw.zone_a),
                    capacity: Resources {
                        cpu_milli: mw.cpu,
                        memory_bytes: mw.mem,
                        ..Default::default()
                    },
                    ..Default::default()
                };
                let r = self.apply(Event::WorkerJoin { spec, running }).unwrap();
                let stale: Vec<TaskId> = r
                    .actions
                    .iter()
                    .filter_map(|a| match a {
                        Action::Kill {
                            task,
                            reason: KillReason::Stale,
                            ..
                        } => Some(*task),
                        _ => None,
                    })
                    .collect();
                assert_eq!(stale, vec![TaskId(9_999)]);
            }
            Op::Heartbeat(w) => {
                if self.m.workers.is_empty() {
                    return;
                }
                let w = WorkerId((w as usize % self.m.workers.len()) as u32 + 1);
                self.apply(Event::WorkerHeartbeat {
                    worker: w,
                    // Loads that differ by worker and over time, so that the
                    // load index moves (load-aware placement orders by it).
                    usage: WorkerUsage {
                        cpu_milli: 5 + (w.0 * 700 + (self.m.now % 1300) as u32) % 4000,
                        memory_bytes: (w.0 as u64 % 3) << 28,
                        ..Default::default()
                    },
                    data_keys: Some(if w.0.is_multiple_of(2) {
                        vec!["k1".to_string()]
                    } else {
                        vec![]
                    }),
                })
                .unwrap();
            }
            Op::Drain(w) | Op::Resume(w) | Op::Lost(w) => {
                if self.m.workers.is_empty() {
                    return;
                }
                let i = w as usize % self.m.workers.len();
                let id = WorkerId(i as u32 + 1);
                let st = self.m.workers[i].state;
                let e = match op {
                    Op::Drain(_) => {
                        if st == WorkerState::Active {
                            self.m.workers[i].state = WorkerState::Draining;
                        }
                        Event::WorkerDrain { worker: id }
                    }
                    Op::Resume(_) => {
                        if st == WorkerState::Draining {
                            self.m.workers[i].state = WorkerState::Active;
                        }
                        Event::WorkerResume { worker: id }
                    }
                    _ => {
                        if st != WorkerState::Lost {
                            self.m.lose_worker(i);
                        }
                        Event::WorkerLost { worker: id }
                    }
                };
                self.apply(e).unwrap();
            }
            Op::Start(n) => {
                let Some(t) = self.pick(n, |k| k.state == TaskState::Assigned) else {
                    return;
                };
                let k = &self.m.tasks[t];
                let e = Event::TaskStarted {
                    task: Self::task_id(t),
                    attempt: Attempt(k.attempt),
                    worker: WorkerId(k.worker.unwrap() as u32 + 1),
                    gpus: Vec::new(),
                };
                self.m.tasks[t].state = TaskState::Running;
                self.m.tasks[t].started = Some(self.m.now);
                self.apply(e).unwrap();
            }
            Op::Finish(n, how) => {
                let Some(t) = self.pick(n, |k| k.worker.is_some()) else {
                    return;
                };
                let k = &self.m.tasks[t];
                let outcome = match how {
                    0 | 1 => Outcome::Exited { code: 0 },
                    2 => Outcome::Exited { code: 1 },
                    _ => Outcome::Killed,
                };
                let e = Event::TaskFinished {
                    task: Self::task_id(t),
                    attempt: Attempt(k.attempt),
                    worker: WorkerId(k.worker.unwrap() as u32 + 1),
                    outcome,
                };
                self.m.end(t, Some(if how <= 1 { 0 } else { 1 }));
                self.apply(e).unwrap();
            }
            Op::Stale(n) => {
                let Some(t) = self.pick(n, |k| k.attempt > 0) else {
                    return;
                };
                let k = &self.m.tasks[t];
                // An attempt number that is not the holding one.
                let e = Event::TaskFinished {
                    task: Self::task_id(t),
                    attempt: Attempt(k.attempt + 1),
                    worker: WorkerId(1),
                    outcome: Outcome::Exited { code: 0 },
                };
                let r = self.apply(e);
                assert!(matches!(r, Err(CoreError::StaleAttempt { .. })), "{r:?}");
            }
            Op::Cancel(n) => {
                if self.m.tasks.is_empty() {
                    return;
                }
                let t = n as usize % self.m.tasks.len();
                let r = self.apply(Event::Cancel {
                    target: CancelTarget::Task(Self::task_id(t)),
                });
                if self.m.tasks[t].state.is_final() {
                    assert!(matches!(r, Err(CoreError::AlreadyFinal { .. })));
                } else {
                    r.unwrap();
                    self.m.cancel(&[t]);
                }
            }
            Op::CancelJob(n) => {
                if self.m.jobs.is_empty() {
                    return;
                }
                let j = n as usize % self.m.jobs.len();
                let ids = self.m.jobs[j].clone();
                let live = ids
                    .iter()
                    .filter(|&&t| !self.m.tasks[t].state.is_final())
                    .count() as u64;
                let r = self
                    .apply(Event::Cancel {
                        target: CancelTarget::Job(JobId(j as u64 + 1)),
                    })
                    .unwrap();
                assert_eq!(r.cancelled, live);
                self.m.cancel(&ids);
            }
            Op::Policy(q, p, preempt) => {
                let queue = match q {
                    0 => QueuePolicyKind::Fcfs,
                    1 => QueuePolicyKind::Priority { aging_ms: 500 },
                    2 => QueuePolicyKind::ShortestJobFirst,
                    3 => QueuePolicyKind::FairShare {
                        weights: [("o1".to_string(), 3)].into(),
                    },
                    // Owners ordered by head key + usage penalty, and without a split.
                    4 => QueuePolicyKind::Multifactor {
                        factors: drover_types::MultifactorWeights::parse(
                            "priority=1000,age=1,fairshare=700,size=-1,label:zone=5",
                        )
                        .unwrap(),
                    },
                    _ => QueuePolicyKind::Multifactor {
                        factors: drover_types::MultifactorWeights::parse(
                            "priority=3,age=-2,size=1",
                        )
                        .unwrap(),
                    },
                };
                let placement = [
                    PlacementPolicyKind::BinPack,
                    PlacementPolicyKind::Spread,
                    PlacementPolicyKind::RoundRobin,
                    PlacementPolicyKind::LoadAware,
                ][p as usize];
                self.apply(Event::SetPolicy {
                    policy: PolicyConfig {
                        queue,
                        placement,
                        preemption: preempt,
                        // The reference model has no prefetch (prefetch.rs tests it).
                        prefetch_per_worker: 0,
                        ..Default::default()
                    },
                })
                .unwrap();
            }
            Op::Advance(ms) => {
                self.m.now += ms as u64;
                self.round();
            }
        }
        self.compare();
    }
}

proptest! {
    // 256 cases keep `cargo test` fast in debug mode; PROPTEST_CASES=5000 for a soak.
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(256),
        ..ProptestConfig::default()
    })]
    #[test]
    fn the_core_agrees_with_the_reference_model(ops in prop::collection::vec(op(), 1..80), cut in 0usize..80) {
        let config = || SchedulerConfig {
            policy: PolicyConfig { prefetch_per_worker: 0, ..PolicyConfig::default() },
            ..SchedulerConfig::default()
        };
        let mut h = Harness { s: Scheduler::new(config()), m: Model { now: 10_000, ..Model::default() }, shadow: None, twin: Scheduler::new(config()), log: vec![] };
        for (i, op) in ops.into_iter().enumerate() {
            if i == cut {
                let json = serde_json::to_string(&h.s.snapshot()).unwrap();
                let restored = Scheduler::restore(serde_json::from_str(&json).unwrap());
                restored.check_invariants().unwrap();
                h.shadow = Some(restored);
            }
            h.step(op);
            if let Some(sh) = &h.shadow {
                prop_assert_eq!(sh.counts(), h.s.counts());
            }
        }
    }
}
