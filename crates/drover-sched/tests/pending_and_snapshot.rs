//! Pending reasons, and snapshot/restore.

mod common;
use common::*;
use drover_sched::{Event, Scheduler, SchedulerSnapshot};
use drover_types::{Millis, PolicyConfig, QueuePolicyKind, TaskId, TaskSpec};

#[test]
fn pending_reasons_read_like_sentences() {
    let mut env = Env::new();
    let named = |k: &str, n: &str| TaskSpec {
        key: Some(k.into()),
        name: n.into(),
        ..task()
    };
    let ids = env.submit(vec![
        named("prepare", "prepare"),
        keyed("a"),
        keyed("b"),
        after(task(), &["prepare", "a", "b"]),
        mem(task(), 64),
    ]);
    assert_eq!(env.reason(ids[0]), "no worker has joined yet");
    env.join("w1", 1, 32);
    assert_eq!(
        env.reason(ids[4]),
        "needs 64 GiB memory; the largest worker has 32 GiB"
    );
    assert_eq!(
        env.reason(ids[3]),
        "waiting for 3 of 3 dependencies: prepare, a, b"
    );
    assert_eq!(
        env.reason(ids[2]),
        "queued behind 2 tasks of higher or equal priority"
    );
    let s = env.starts();
    assert_eq!(s[0].0, ids[0]);
    assert_eq!(
        env.reason(ids[0]),
        "assigned to worker w1 at 00:16:40; waiting for the worker to start it"
    );
    env.started(ids[0]);
    env.exit(ids[0], 3);
    assert_eq!(
        env.reason(ids[0]),
        "failed: exited with code 3 on attempt 1 of 1"
    );
    assert_eq!(env.reason(ids[3]), "dependency 1 (prepare) failed");
    assert_eq!(
        env.reason(ids[1]),
        "ready; it will be placed in the next scheduling round"
    );
    let ok = env.starts()[0].0;
    env.run_ok(ok);
    assert_eq!(env.reason(ok), "succeeded");
}

#[test]
fn a_large_queue_counts_with_separators() {
    let mut env = Env::new();
    env.join("w1", 1, 8);
    env.submit((0..1_300).map(|_| prio(task(), 5)).collect());
    let last = env.submit(vec![task()])[0];
    assert_eq!(
        env.reason(last),
        "queued behind 1,300 tasks of higher or equal priority"
    );
}

#[test]
fn counts_of_one_are_singular() {
    let mut env = Env::new();
    env.join("w1", 1, 8);
    let ids = env.submit(vec![task(), task(), task(), task()]);
    env.starts();
    assert_eq!(
        env.reason(ids[2]),
        "queued behind 1 task of higher or equal priority; no worker has 1 cpu free"
    );
    assert_eq!(
        env.reason(ids[3]),
        "queued behind 2 tasks of higher or equal priority; no worker has 1 cpu free"
    );
    let mut one_gpu = task();
    one_gpu.resources.gpus = 1;
    let g = env.submit(vec![one_gpu])[0];
    assert_eq!(env.reason(g), "needs 1 gpu; the largest worker has 0");
}

/// Drives a scenario, snapshots it (through JSON, as a replica would read it), and
/// checks that the original and the restored core then behave identically.
#[test]
fn a_restored_core_behaves_identically() {
    let mut env = Env::with_policy(PolicyConfig {
        queue: QueuePolicyKind::FairShare {
            weights: Default::default(),
        },
        preemption: true,
        ..PolicyConfig::default()
    });
    env.join("w1", 2, 8);
    env.join("w2", 3, 8);
    let mut arr = keyed("arr");
    arr.array = Some(drover_types::ArraySpec { start: 0, end: 9 });
    let ids = env.submit(vec![
        TaskSpec {
            owner: "x".into(),
            ..retries(keyed("a"), 3, 500)
        },
        arr,
        after(
            TaskSpec {
                max_runtime_ms: Some(5_000),
                ..task()
            },
            &["a"],
        ),
    ]);
    env.starts();
    env.started(ids[0]);
    env.exit(ids[0], 1);
    env.started(ids[1]);
    let json = serde_json::to_string(&env.s.snapshot()).unwrap();
    let snap: SchedulerSnapshot = serde_json::from_str(&json).unwrap();
    let mut restored = Scheduler::restore(snap);
    restored.check_invariants().unwrap();
    assert_eq!(restored.counts(), env.s.counts());
    assert!(std::ptr::eq(
        restored.task(TaskId(2)).unwrap().spec.shared(),
        restored.task(TaskId(5)).unwrap().spec.shared()
    ));
    let script: Vec<(u64, Option<Event>)> = vec![
        (1_000_600, None),
        (
            1_000_700,
            Some(Event::WorkerJoin {
                spec: worker("w3", 4, 8),
                running: vec![],
            }),
        ),
        (1_000_800, None),
        (
            1_000_900,
            Some(Event::Submit {
                job: drover_types::JobSpec {
                    tasks: vec![prio(task(), 50)],
                    ..Default::default()
                },
            }),
        ),
        (1_001_000, None),
    ];
    for (now, e) in script {
        let (a, b) = match e {
            Some(e) => (
                format!("{:?}", env.s.apply(Millis(now), e.clone())),
                format!("{:?}", restored.apply(Millis(now), e)),
            ),
            None => (
                format!("{:?}", env.s.schedule(Millis(now))),
                format!("{:?}", restored.schedule(Millis(now))),
            ),
        };
        assert_eq!(a, b);
        restored.check_invariants().unwrap();
    }
    for id in 1..=13 {
        assert_eq!(
            env.s.pending_reason(TaskId(id), Millis(1_001_000)),
            restored.pending_reason(TaskId(id), Millis(1_001_000))
        );
    }
}

#[test]
fn the_core_can_be_shared_between_threads_and_an_empty_one_restores() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Scheduler>();
    assert_send_sync::<SchedulerSnapshot>();
    let s = Scheduler::new(Default::default());
    let json = serde_json::to_string(&s.snapshot()).unwrap();
    let r = Scheduler::restore(serde_json::from_str(&json).unwrap());
    r.check_invariants().unwrap();
    assert_eq!(r.counts(), s.counts());
    assert_eq!(r.policy(), s.policy());
}

#[test]
fn every_kind_of_pending_reason() {
    let mut env = Env::new();
    let mut gpu_box = worker("gpu-box", 2, 8);
    gpu_box.capacity.gpus = 1;
    env.join_spec(gpu_box);
    env.join("fat", 1, 64);
    let mut gpus2 = task();
    gpus2.resources.gpus = 2;
    let mut licensed = task();
    licensed.resources.custom.insert("license".into(), 3);
    let table: Vec<(&str, TaskSpec, &str)> = vec![
        (
            "more cpu than any worker",
            cpus(task(), 4),
            "needs 4 cpu; the largest worker has 2 cpu",
        ),
        (
            "more gpus than any worker",
            gpus2,
            "needs 2 gpus; the largest worker has 1",
        ),
        (
            "a custom resource nobody has",
            licensed,
            "needs 3 license; the largest worker has 0",
        ),
        (
            "each dimension fits some worker, never all on one",
            mem(cpus(task(), 2), 16),
            "needs 2 cpu, 16 GiB memory; no single worker has all of that",
        ),
        (
            "a constrained task names the largest matching worker",
            constraint(cpus(task(), 2), "gpu"),
            "no active worker matches its constraints: gpu",
        ),
    ];
    for (rule, spec, expected) in table {
        let id = env.submit(vec![spec])[0];
        assert_eq!(env.reason(id), expected, "{rule}");
    }
}

#[test]
fn backoff_reasons_say_what_failed_and_when_the_retry_is() {
    let mut env = Env::new();
    env.join("w1", 1, 8);
    let t = env.submit(vec![retries(task(), 3, 4_000)])[0];
    env.starts();
    env.started(t);
    env.exit(t, 7);
    // now = 1,000,000 ms = 00:16:40; the retry is 4 s later.
    assert_eq!(
        env.reason(t),
        "attempt 1 exited with code 7; retry 2 of 3 at 00:16:44 after backoff"
    );
}

/// The GPU indices a worker reports with a start are kept on the attempt (a repeated
/// report changes nothing, a stale one is refused), survive a snapshot, and the next
/// attempt starts without any.
#[test]
fn an_attempt_keeps_the_gpu_indices_of_its_start_report() {
    let mut env = Env::new();
    let w = env.join_spec(drover_types::WorkerSpec {
        isolation: drover_types::Isolation {
            enforced: vec![drover_types::EnforcedLimit::Memory],
            mechanism: "cgroup v1 (memory)".into(),
            gpu_ids: vec![0, 1, 2, 3],
        },
        ..gpu_worker("g", 4)
    });
    let ids = env.submit(vec![
        drover_types::TaskSpec {
            retry: drover_types::RetryPolicy {
                max_attempts: 2,
                ..Default::default()
            },
            ..gpus(task(), 2)
        },
        gpus(task(), 2),
    ]);
    let starts = env.starts();
    assert_eq!(starts.len(), 2);
    let started = |t: TaskId, a: drover_types::Attempt, g: Vec<u32>| Event::TaskStarted {
        task: t,
        attempt: a,
        worker: w,
        gpus: g,
    };
    // (event, accepted?, the first task's attempt gpus after it)
    let table: Vec<(Event, bool, Vec<u32>)> = vec![
        (
            started(ids[0], drover_types::Attempt(1), vec![2, 3]),
            true,
            vec![2, 3],
        ),
        // Repeated after a reconnect: the same report, nothing changes.
        (
            started(ids[0], drover_types::Attempt(1), vec![2, 3]),
            true,
            vec![2, 3],
        ),
        // A stale attempt number is fenced off.
        (
            started(ids[0], drover_types::Attempt(7), vec![0]),
            false,
            vec![2, 3],
        ),
        (
            started(ids[1], drover_types::Attempt(1), vec![0, 1]),
            true,
            vec![2, 3],
        ),
    ];
    for (event, accepted, want) in table {
        let desc = format!("{event:?}");
        assert_eq!(env.apply(event).is_ok(), accepted, "{desc}");
        assert_eq!(env.s.task(ids[0]).unwrap().attempts[0].gpus, want, "{desc}");
    }
    assert_eq!(env.s.task(ids[1]).unwrap().attempts[0].gpus, vec![0, 1]);
    // Through a snapshot (JSON, as the API's tests read it) and back.
    let json = serde_json::to_string(&env.s.snapshot()).unwrap();
    let snap: SchedulerSnapshot = serde_json::from_str(&json).unwrap();
    let restored = Scheduler::restore(snap);
    restored.check_invariants().unwrap();
    assert_eq!(restored.task(ids[0]).unwrap().attempts[0].gpus, vec![2, 3]);
    assert_eq!(
        restored.workers().next().unwrap().spec.isolation.gpu_ids,
        vec![0, 1, 2, 3]
    );
    // A retry is a new attempt: no devices until its own start report.
    env.exit(ids[0], 1);
    env.advance(3_600_000); // past any backoff
    let again = env.starts();
    assert_eq!(again[0].0, ids[0]);
    let rec = env.s.task(ids[0]).unwrap();
    assert_eq!(rec.attempts.len(), 2);
    assert!(rec.attempts[1].gpus.is_empty());
    assert_eq!(rec.attempts[0].gpus, vec![2, 3]);
}
