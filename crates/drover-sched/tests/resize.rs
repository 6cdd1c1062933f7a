//! Dynamic resources: resizing a placed attempt's reservation. Every event and round is
//! followed by the invariant checker (see `common::Env`), which recomputes each
//! worker's reservations from its attempts' (resized or not) and the owners' usage.

mod common;
use common::*;
use drover_sched::{
    Action, CancelTarget, CoreError, Event, ResizeDecision, ResizeRefusal, ResizeRequest, Scheduler,
};
use drover_types::{Attempt, Millis, Outcome, Resources, TaskId, TaskState, WorkerId};

fn req(cpus: Option<u32>, mem_gib: Option<u64>) -> ResizeRequest {
    ResizeRequest {
        cpu_milli: cpus.map(|c| c * 1000),
        memory_bytes: mem_gib.map(|g| g * GIB),
    }
}

fn resize(env: &mut Env, t: TaskId, r: ResizeRequest) -> Result<ResizeDecision, CoreError> {
    let (a, w) = (env.attempt(t), env.worker_of(t));
    env.apply(Event::Resize {
        task: t,
        attempt: Some(a),
        worker: w,
        request: r,
    })
    .map(|applied| applied.resize.expect("a resize answers with a decision"))
}

fn allocated(env: &Env, w: WorkerId) -> (u32, u64) {
    let v = env.s.worker(w).unwrap();
    (v.allocated.cpu_milli, v.allocated.memory_bytes)
}

/// One worker of 4 cpus / 8 GiB running a 1 cpu / 1 GiB task, started.
fn one_running() -> (Env, WorkerId, TaskId) {
    let mut env = Env::new();
    let w = env.join("w", 4, 8);
    let t = env.submit(vec![mem(cpus(task(), 1), 1)])[0];
    assert_eq!(env.starts().len(), 1);
    env.started(t);
    (env, w, t)
}

#[test]
fn a_resize_is_granted_when_the_worker_has_room_and_refused_otherwise() {
    // (request, granted?, cpus and GiB held after, refusal text)
    let table: Vec<(ResizeRequest, bool, (u32, u64), &str)> = vec![
        (req(Some(3), None), true, (3, 1), ""),
        (req(None, Some(6)), true, (3, 6), ""),
        // The task's own reservation counts as free: 4 of 4 cpus is fine.
        (req(Some(4), Some(8)), true, (4, 8), ""),
        (
            req(Some(5), None),
            false,
            (4, 8),
            "worker w1 has 4 cpu free, 1 more needed",
        ),
        (
            req(Some(6), Some(10)),
            false,
            (4, 8),
            "worker w1 has 4 cpu free, 2 more needed; 8 GiB memory free, 2 GiB more needed",
        ),
        // Shrinking is always granted.
        (req(Some(1), Some(1)), true, (1, 1), ""),
        (req(Some(0), None), true, (0, 1), ""),
    ];
    let (mut env, w, t) = one_running();
    for (i, (r, granted, held, text)) in table.into_iter().enumerate() {
        let d = resize(&mut env, t, r.clone()).unwrap();
        assert_eq!(d.is_granted(), granted, "row {i}: {d:?}");
        assert_eq!(
            allocated(&env, w),
            (held.0 * 1000, held.1 * GIB),
            "row {i}: the worker's reservations"
        );
        if let ResizeDecision::Refused { refusal } = &d {
            assert_eq!(refusal.to_string(), text, "row {i}");
        }
        let last = env.s.resize_history(t).last().unwrap().clone();
        assert_eq!((last.request, last.decision), (r, d), "row {i}: history");
    }
    assert_eq!(env.s.resize_history(t).len(), 7);
}

#[test]
fn a_grant_tells_the_worker_and_changes_what_else_fits() {
    let (mut env, w, t) = one_running();
    let other = env.submit(vec![cpus(task(), 3)])[0];
    let applied = env
        .apply(Event::Resize {
            task: t,
            attempt: None,
            worker: None,
            request: req(Some(2), Some(2)),
        })
        .unwrap();
    assert_eq!(
        applied.actions,
        vec![Action::Resize {
            task: t,
            attempt: Attempt(1),
            worker: w,
            resources: Resources {
                cpu_milli: 2000,
                memory_bytes: 2 * GIB,
                ..Resources::default()
            },
        }]
    );
    // 2 of 4 cpus held now: the 3-cpu task waits.
    assert!(env.starts().is_empty());
    assert_eq!(env.state(other), TaskState::Ready);
    // Shrinking gives the room back, and the next round uses it.
    resize(&mut env, t, req(Some(1), None)).unwrap();
    assert_eq!(env.starts(), vec![(other, Attempt(1), w)]);
    assert_eq!(allocated(&env, w).0, 4000);
}

/// Whether an error is the one expected.
type ErrorCheck = fn(&CoreError) -> bool;

#[test]
fn only_the_current_placed_attempt_of_its_worker_can_be_resized() {
    let mut env = Env::new();
    let w = env.join("w", 2, 8);
    env.join("v", 2, 8);
    let ids = env.submit(vec![cpus(task(), 2), cpus(task(), 2), cpus(task(), 2)]);
    env.starts();
    env.started(ids[0]);
    let waiting = ids[2];
    assert_eq!(env.state(waiting), TaskState::Ready);
    let r = req(Some(1), None);
    let cases: Vec<(&str, Event, ErrorCheck)> = vec![
        (
            "unknown task",
            Event::Resize {
                task: TaskId(99),
                attempt: None,
                worker: None,
                request: r.clone(),
            },
            |e| matches!(e, CoreError::UnknownTask(_)),
        ),
        (
            "another attempt",
            Event::Resize {
                task: ids[0],
                attempt: Some(Attempt(2)),
                worker: Some(w),
                request: r.clone(),
            },
            |e| matches!(e, CoreError::StaleAttempt { .. }),
        ),
        (
            "another worker's attempt",
            Event::Resize {
                task: ids[0],
                attempt: Some(Attempt(1)),
                worker: Some(WorkerId(2)),
                request: r.clone(),
            },
            |e| matches!(e, CoreError::WrongWorker { .. }),
        ),
        (
            "not placed",
            Event::Resize {
                task: waiting,
                attempt: None,
                worker: None,
                request: r.clone(),
            },
            |e| matches!(e, CoreError::NotRunning { .. }),
        ),
    ];
    for (what, event, is_expected) in cases {
        let err = env.apply(event).expect_err(what);
        assert!(is_expected(&err), "{what}: {err:?}");
    }
    assert!(env.s.resize_history(ids[0]).is_empty());
    // A cancelled attempt still holds its worker until it ends, but cannot grow.
    env.ok(Event::Cancel {
        target: CancelTarget::Task(ids[0]),
    });
    let err = resize(&mut env, ids[0], req(Some(1), None)).unwrap_err();
    assert!(matches!(err, CoreError::NotRunning { .. }), "{err:?}");
}

#[test]
fn the_end_of_a_resized_attempt_frees_exactly_what_it_held_and_a_retry_asks_the_spec() {
    let mut env = Env::new();
    let w = env.join("w", 4, 8);
    let t = env.submit(vec![retries(mem(cpus(task(), 1), 1), 2, 0)])[0];
    env.starts();
    env.started(t);
    resize(&mut env, t, req(Some(3), Some(5))).unwrap();
    assert_eq!(env.s.resized_reservation(t).unwrap().cpu_milli, 3000);
    env.exit(t, 1);
    assert_eq!(allocated(&env, w), (0, 0));
    assert!(env.s.resized_reservation(t).is_none());
    // The retry holds the spec's resources again; the history stays.
    env.starts();
    assert_eq!(env.attempt(t), Attempt(2));
    assert_eq!(allocated(&env, w), (1000, GIB));
    assert_eq!(env.s.resize_history(t).len(), 1);
}

#[test]
fn a_lost_worker_or_a_rejoin_counts_the_resized_reservation() {
    let mut env = Env::new();
    let w = env.join("w", 4, 8);
    let t = env.submit(vec![retries(mem(cpus(task(), 1), 1), 3, 0)])[0];
    env.starts();
    env.started(t);
    resize(&mut env, t, req(Some(3), Some(7))).unwrap();
    // A rejoin listing the attempt keeps it with its resized reservation.
    env.ok(Event::WorkerJoin {
        spec: worker("w", 4, 8),
        running: vec![(t, Attempt(1))],
    });
    assert_eq!(allocated(&env, w), (3000, 7 * GIB));
    // A rejoin with less capacity than the resized reservation gives the attempt up.
    env.ok(Event::WorkerJoin {
        spec: worker("w", 2, 8),
        running: vec![(t, Attempt(1))],
    });
    assert_eq!(allocated(&env, w), (0, 0));
    assert!(env.s.resized_reservation(t).is_none());
    env.starts();
    env.started(t);
    resize(&mut env, t, req(Some(2), None)).unwrap();
    env.ok(Event::WorkerLost { worker: w });
    assert_eq!(allocated(&env, w), (0, 0));
    assert!(env.s.resized_reservation(t).is_none());
}

#[test]
fn preemption_counts_what_a_resized_victim_holds() {
    let mut env = Env::with_policy(drover_types::PolicyConfig {
        prefetch_per_worker: 0,
        preemption: true,
        ..drover_types::PolicyConfig::default()
    });
    let w = env.join("w", 4, 8);
    // Retryable, hence preemptible.
    let low = env.submit(vec![retries(prio(cpus(task(), 1), 0), 2, 0)])[0];
    env.starts();
    env.started(low);
    resize(&mut env, low, req(Some(4), None)).unwrap();
    // A high-priority 1-cpu task only fits if the resized low one (4 cpus) goes.
    let high = env.submit(vec![prio(cpus(task(), 1), 10)])[0];
    let actions = env.schedule();
    assert_eq!(
        kills(&actions),
        vec![(low, drover_sched::KillReason::Preempted)]
    );
    env.finish(low, Outcome::Signaled { signal: 15 });
    // Both fit now: the evicted one comes back with its spec's 1 cpu, not 4.
    assert_eq!(
        env.starts(),
        vec![(high, Attempt(1), w), (low, Attempt(2), w)]
    );
    assert_eq!(allocated(&env, w).0, 2000);
}

#[test]
fn a_restored_core_counts_resized_reservations_and_keeps_the_history() {
    let (mut env, w, t) = one_running();
    resize(&mut env, t, req(Some(3), Some(6))).unwrap();
    resize(&mut env, t, req(Some(9), None)).unwrap();
    let snap = env.s.snapshot();
    let resizes = env.s.resize_snapshot();
    let mut restored = Scheduler::restore(snap);
    restored.restore_resizes(resizes);
    restored.check_invariants().unwrap();
    assert_eq!(
        restored.resized_reservation(t),
        env.s.resized_reservation(t)
    );
    assert_eq!(restored.resize_history(t), env.s.resize_history(t));
    let v = restored.worker(w).unwrap();
    assert_eq!(v.allocated.cpu_milli, 3000);
    // The restored core goes on exactly as the original: the end frees 3 cpus.
    let end = Event::TaskFinished {
        task: t,
        attempt: Attempt(1),
        worker: w,
        outcome: Outcome::Exited { code: 0 },
    };
    restored.apply(Millis(env.now), end).unwrap();
    restored.check_invariants().unwrap();
    assert!(restored.worker(w).unwrap().allocated.is_zero());
}

#[test]
fn the_history_is_bounded_and_goes_with_retirement() {
    let (mut env, _w, t) = one_running();
    for i in 0..40 {
        resize(&mut env, t, req(Some(1 + i % 3), None)).unwrap();
    }
    assert_eq!(
        env.s.resize_history(t).len(),
        drover_sched::MAX_RESIZE_HISTORY
    );
    env.exit(t, 0);
    env.advance(10_000);
    env.ok(Event::Retire {
        keep_ms: 0,
        keep_max: 0,
    });
    assert!(env.s.task(t).is_none());
    assert!(env.s.resize_history(t).is_empty());
}

#[test]
fn a_refusal_names_the_worker_and_the_shortfall() {
    let r = ResizeRefusal::NoRoom {
        worker: WorkerId(3),
        free_cpu_milli: 1000,
        free_memory_bytes: 8 * GIB,
        wanted_cpu_milli: 4000,
        wanted_memory_bytes: GIB,
    };
    assert_eq!(r.to_string(), "worker w3 has 1 cpu free, 3 more needed");
}
