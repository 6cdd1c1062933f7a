//! The result cache in the state machine: hits complete at once, identical tasks in
//! flight run once, failures hand over, TTLs expire, and all of it survives a
//! snapshot. The core's invariant checker runs after every entry.

use drover_proto::events::EventBody;
use drover_proto::worker::{AttemptReport, AttemptUsage};
use drover_sched::SchedulerConfig;
use drover_state::{Command, CommandResult, Dispatch, LogEntry, StateMachine};
use drover_types::{
    CacheSpec, JobSpec, Millis, Outcome, Resources, TaskId, TaskSpec, TaskState, WorkerId,
    WorkerSpec,
};

struct Cluster {
    m: StateMachine,
    now: u64,
    index: u64,
    /// Every task a `Start` was dispatched for, in order.
    started: Vec<TaskId>,
    events: Vec<EventBody>,
}

impl Cluster {
    fn new() -> Cluster {
        let mut c = Cluster {
            m: StateMachine::new(SchedulerConfig::default()),
            now: 1_000,
            index: 0,
            started: Vec::new(),
            events: Vec::new(),
        };
        c.apply(vec![Command::WorkerJoin {
            spec: WorkerSpec {
                name: "w".into(),
                capacity: Resources {
                    cpu_milli: 8000,
                    memory_bytes: 8 << 30,
                    ..Resources::default()
                },
                ..WorkerSpec::default()
            },
            running: vec![],
        }]);
        c
    }

    fn apply(&mut self, commands: Vec<Command>) -> Vec<CommandResult> {
        self.now += 10;
        self.index += 1;
        let out = self.m.apply_indexed(
            self.index,
            &LogEntry {
                now: Millis(self.now),
                commands,
            },
        );
        for d in &out.dispatches {
            if let Dispatch::Start { start, .. } = d {
                self.started.push(start.task);
            }
        }
        self.events.extend(out.events.into_iter().map(|e| e.body));
        self.m.scheduler().check_invariants().unwrap();
        out.results
    }

    fn submit(&mut self, tasks: Vec<TaskSpec>) -> Vec<TaskId> {
        let r = self.apply(vec![Command::Submit {
            job: JobSpec {
                name: String::new(),
                owner: String::new(),
                tasks,
            },
            idempotency: None,
            submitter: None,
            staged: None,
        }]);
        match &r[0] {
            CommandResult::Submitted { tasks, .. } => (0..tasks.count as u64)
                .map(|i| TaskId(tasks.first.0 + i))
                .collect(),
            other => panic!("{other:?}"),
        }
    }

    /// The worker runs `task`'s first attempt to `code` with `result`.
    fn run(&mut self, task: TaskId, code: i32, result: &str) {
        let attempt = self.m.scheduler().task(task).unwrap().attempt;
        self.apply(vec![
            Command::TaskStarted {
                task,
                attempt,
                worker: WorkerId(1),
                gpus: Vec::new(),
            },
            Command::TaskFinished {
                worker: WorkerId(1),
                report: AttemptReport {
                    task,
                    attempt,
                    outcome: Outcome::Exited { code },
                    usage: AttemptUsage::default(),
                    result: result.into(),
                    stdout_bytes: result.len() as u64,
                    stderr_bytes: 0,
                    output_truncated: false,
                    digest: String::new(),
                },
            },
        ]);
    }

    fn state(&self, t: TaskId) -> TaskState {
        self.m.scheduler().task(t).unwrap().state
    }

    fn result(&self, t: TaskId) -> Option<String> {
        self.m.record(t).and_then(|r| r.result.clone())
    }
}

fn cached(cmd: &str) -> TaskSpec {
    TaskSpec {
        cache: Some(CacheSpec::default()),
        ..TaskSpec::command(["sh", "-c", cmd])
    }
}

#[test]
fn a_second_identical_task_completes_from_the_first_without_running() {
    let mut c = Cluster::new();
    let a = c.submit(vec![cached("echo hi")])[0];
    assert_eq!(c.started, vec![a]);
    c.run(a, 0, "hi\n");
    assert_eq!(c.state(a), TaskState::Succeeded);
    assert_eq!(c.m.cache().entries().count(), 1);

    let b = c.submit(vec![cached("echo hi")])[0];
    assert_eq!(c.state(b), TaskState::Succeeded);
    assert_eq!(c.started, vec![a], "the hit ran nothing");
    assert_eq!(c.result(b).as_deref(), Some("hi\n"));
    assert_eq!(c.m.cache().served_from(b), Some(a));
    assert_eq!(c.m.scheduler().task(b).unwrap().attempts.len(), 0);
    assert!(c.events.iter().any(|e| matches!(
        e,
        EventBody::Task { task, state: TaskState::Succeeded, cached_from: Some(from), .. }
            if *task == b && *from == a
    )));
    assert_eq!(c.m.cache().entries().next().unwrap().hits, 1);

    // A failed run records nothing; a task without the opt-in never hits.
    let plain = c.submit(vec![TaskSpec::command(["sh", "-c", "echo hi"])])[0];
    assert_eq!(c.started.last(), Some(&plain));
    let mut other = cached("echo hi");
    other.cache.as_mut().unwrap().salt = "v2".into();
    let salted = c.submit(vec![other])[0];
    assert_eq!(c.started.last(), Some(&salted), "another salt runs");
    c.run(salted, 1, "");
    assert_eq!(c.m.cache().entries().count(), 1);
}

#[test]
fn identical_tasks_in_flight_run_once_and_a_failure_hands_over() {
    let mut c = Cluster::new();
    let ids = c.submit(vec![cached("work"), cached("work"), cached("work")]);
    let (a, b, d) = (ids[0], ids[1], ids[2]);
    assert_eq!(c.started, vec![a]);
    assert_eq!(c.state(b), TaskState::Waiting);
    let reason = c.m.scheduler().pending_reason(b, Millis(c.now)).unwrap();
    assert!(
        reason.contains(&format!("waiting for task {} with the same cache key", a.0)),
        "{reason}"
    );
    // The first fails: the next (by id) runs, the last waits for it now.
    c.run(a, 3, "");
    assert_eq!(c.state(a), TaskState::Failed);
    assert_eq!(c.started, vec![a, b]);
    assert_eq!(c.state(d), TaskState::Waiting);
    let reason = c.m.scheduler().pending_reason(d, Millis(c.now)).unwrap();
    assert!(reason.contains(&format!("task {}", b.0)), "{reason}");

    // A snapshot taken while d waits restores the wait.
    let mut restored = StateMachine::restore(c.m.snapshot());
    restored.scheduler().check_invariants().unwrap();
    std::mem::swap(&mut c.m, &mut restored);
    c.run(b, 0, "done");
    assert_eq!(c.state(d), TaskState::Succeeded);
    assert_eq!(c.result(d).as_deref(), Some("done"));
    assert_eq!(c.m.cache().served_from(d), Some(b));
    assert_eq!(c.started, vec![a, b]);
}

#[test]
fn a_cancelled_waiter_leaves_and_dependents_see_cached_results() {
    let mut c = Cluster::new();
    let ids = c.submit(vec![cached("work"), cached("work")]);
    c.apply(vec![Command::Cancel {
        target: drover_sched::CancelTarget::Task(ids[1]),
    }]);
    assert_eq!(c.state(ids[1]), TaskState::Cancelled);
    c.run(ids[0], 0, "x");
    assert_eq!(c.m.cache().entries().next().unwrap().hits, 0);

    // A dependent's key includes its parents' results: same result, same key.
    let mut parent = cached("work");
    parent.key = Some("p".into());
    let mut child = cached("child");
    child.after = vec![drover_types::DepRef::Key("p".into())];
    let ids = c.submit(vec![parent, child]);
    assert_eq!(c.state(ids[0]), TaskState::Succeeded, "parent cached");
    let child_id = ids[1];
    assert_eq!(c.started.last(), Some(&child_id), "child's first run");
    c.run(child_id, 0, "c");
    let mut parent = cached("work");
    parent.key = Some("p".into());
    let mut child = cached("child");
    child.after = vec![drover_types::DepRef::Key("p".into())];
    let ids = c.submit(vec![parent, child]);
    assert_eq!(c.state(ids[1]), TaskState::Succeeded, "child cached too");
    assert_eq!(c.m.cache().served_from(ids[1]), Some(child_id));
}

#[test]
fn entries_expire_and_can_be_removed() {
    let mut c = Cluster::new();
    let mut short = cached("t");
    short.cache.as_mut().unwrap().ttl_ms = Some(50);
    let a = c.submit(vec![short.clone()])[0];
    c.run(a, 0, "1");
    let b = c.submit(vec![short.clone()])[0];
    assert_eq!(c.state(b), TaskState::Succeeded);
    c.now += 100;
    let d = c.submit(vec![short.clone()])[0];
    assert_eq!(c.started.last(), Some(&d), "expired: runs again");
    c.run(d, 0, "2");
    let key = c.m.cache().entries().next().unwrap().key.clone();
    assert_eq!(
        c.apply(vec![Command::CacheRemove { key: key.clone() }])[0],
        CommandResult::CacheRemoved { count: 1 }
    );
    assert!(matches!(
        c.apply(vec![Command::CacheRemove { key }])[0],
        CommandResult::Rejected(_)
    ));
    let e = c.submit(vec![short.clone()])[0];
    c.run(e, 0, "3");
    assert_eq!(
        c.apply(vec![Command::CacheClear])[0],
        CommandResult::CacheRemoved { count: 1 }
    );
    assert_eq!(c.m.cache().entries().count(), 0);
}

#[test]
fn retiring_the_producing_task_drops_its_entry() {
    let mut c = Cluster::new();
    let a = c.submit(vec![cached("t")])[0];
    c.run(a, 0, "1");
    assert_eq!(c.m.cache().entries().count(), 1);
    c.apply(vec![Command::Retire {
        keep_ms: 0,
        keep_max: 0,
    }]);
    assert_eq!(c.m.cache().entries().count(), 0);
    let b = c.submit(vec![cached("t")])[0];
    assert_eq!(c.started.last(), Some(&b));
}

/// A small seeded generator (no dependency): the same seed, the same run.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// Random submissions of a few distinct cached tasks, ends (successes and failures,
/// with retries), cancellations, time passing past TTLs and snapshot restores: the
/// core's invariants hold after every entry, no two tasks with the same key are ever
/// on a worker at once, and a task completed from the cache ran nothing and carries
/// its origin's result.
#[test]
fn random_histories_never_run_one_key_twice_at_once() {
    let (mut hits, mut holds) = (0u64, 0u64);
    for seed in 1..=60u64 {
        let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
        let mut c = Cluster::new();
        for _step in 0..120 {
            match rng.below(10) {
                0..=2 => {
                    let n = 1 + rng.below(3);
                    let tasks = (0..n)
                        .map(|_| {
                            let mut t = cached(["a", "b", "c"][rng.below(3) as usize]);
                            t.cache.as_mut().unwrap().ttl_ms = Some(50 + rng.below(200));
                            t.retry.max_attempts = 1 + rng.below(2) as u32;
                            t.retry.backoff.initial_ms = 0;
                            t
                        })
                        .collect();
                    c.submit(tasks);
                }
                3..=6 => {
                    let on_worker: Vec<TaskId> =
                        c.m.scheduler()
                            .tasks_after(None)
                            .filter(|v| v.state.is_on_worker())
                            .map(|v| v.id)
                            .collect();
                    if !on_worker.is_empty() {
                        let t = on_worker[rng.below(on_worker.len() as u64) as usize];
                        let code = if rng.below(3) == 0 { 1 } else { 0 };
                        c.run(t, code, &format!("result of {}", t.0));
                    }
                }
                7 => {
                    let open: Vec<TaskId> =
                        c.m.scheduler()
                            .tasks_after(None)
                            .filter(|v| !v.state.is_final())
                            .map(|v| v.id)
                            .collect();
                    if !open.is_empty() {
                        let t = open[rng.below(open.len() as u64) as usize];
                        c.apply(vec![Command::Cancel {
                            target: drover_sched::CancelTarget::Task(t),
                        }]);
                    }
                }
                8 => {
                    c.now += rng.below(150);
                    c.apply(vec![Command::Tick]);
                }
                _ => {
                    c.m = StateMachine::restore(c.m.snapshot());
                    c.m.scheduler().check_invariants().unwrap();
                }
            }
            // One key, at most one task on a worker.
            let mut seen = std::collections::BTreeMap::new();
            for v in c.m.scheduler().tasks_after(None) {
                if v.state.is_on_worker() {
                    let key =
                        c.m.cache()
                            .key_of(v.id)
                            .expect("a running cached task has its key");
                    if let Some(other) = seen.insert(key.to_string(), v.id) {
                        panic!("seed {seed}: tasks {other} and {} both run key {key}", v.id);
                    }
                }
                if v.state == TaskState::Waiting
                    && c.m
                        .scheduler()
                        .pending_reason(v.id, Millis(c.now))
                        .is_some_and(|r| r.contains("same cache key"))
                {
                    holds += 1;
                }
                if let Some(origin) = c.m.cache().served_from(v.id) {
                    hits += 1;
                    assert_eq!(v.state, TaskState::Succeeded);
                    assert!(v.attempts.is_empty(), "seed {seed}: a cached task ran");
                    assert_eq!(
                        c.result(v.id),
                        Some(format!("result of {}", origin.0)),
                        "seed {seed}"
                    );
                }
            }
        }
    }
    // The histories did reach both paths.
    assert!(hits > 0 && holds > 0, "hits {hits}, holds {holds}");
}
