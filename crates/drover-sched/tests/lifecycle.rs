//! Table tests for the lifecycle rules. Every event and round is followed by the
//! invariant checker (see `common::Env`).

mod common;
use common::*;
use drover_sched::{Action, CancelTarget, CoreError, Event, KillReason};
use drover_types::{
    ArraySpec, Attempt, DepRef, FailureCause, JobSpec, Millis, Outcome, TaskId, TaskState,
    WorkerState,
};

#[test]
fn ids_are_consecutive_and_arrays_expand_in_index_order() {
    let mut env = Env::new();
    let mut arr = keyed("arr");
    arr.array = Some(ArraySpec { start: 5, end: 7 });
    let ids = env.submit(vec![keyed("a"), arr, task()]);
    assert_eq!(ids, (1..=5).map(TaskId).collect::<Vec<_>>());
    let t3 = env.s.task(TaskId(3)).unwrap();
    assert_eq!((t3.array_index, t3.array_count), (Some(6), Some(3)));
    assert_eq!(
        env.s.resolve(&DepRef::Key("arr".into())).unwrap().first,
        TaskId(2)
    );
    assert_eq!(env.s.resolve(&DepRef::Key("arr".into())).unwrap().count, 3);
    assert_eq!(env.s.resolve(&DepRef::Id(TaskId(5))).unwrap().count, 1);
    assert!(env.s.resolve(&DepRef::Id(TaskId(6))).is_err());
    // The elements of an array share one spec.
    assert!(std::ptr::eq(
        env.s.task(TaskId(2)).unwrap().spec.shared(),
        env.s.task(TaskId(4)).unwrap().spec.shared()
    ));
    let more = env.submit(vec![task()]);
    assert_eq!(more, vec![TaskId(6)]);
    assert_eq!(
        env.s
            .tasks_after(Some(TaskId(4)))
            .map(|t| t.id)
            .collect::<Vec<_>>(),
        vec![TaskId(5), TaskId(6)]
    );
}

#[test]
fn submissions_naming_unknown_tasks_or_reusing_a_key_are_rejected_whole() {
    let mut env = Env::new();
    env.submit(vec![keyed("x")]);
    let table: Vec<(&str, Vec<drover_types::TaskSpec>, &str, &str)> = vec![
        (
            "unknown key",
            vec![task(), after(task(), &["x", "nope"])],
            "tasks[1].after[1]",
            "no task with key \"nope\"",
        ),
        (
            "unknown id",
            vec![after(task(), &["99"])],
            "tasks[0].after[0]",
            "no task 99",
        ),
        (
            "key used twice in the job",
            vec![keyed("y"), keyed("y")],
            "tasks[1].key",
            "already the key of tasks[0]",
        ),
        (
            "unknown job id",
            vec![after(task(), &["x", "7/x"])],
            "tasks[0].after[1]",
            "no job 7",
        ),
        (
            "cycle",
            vec![after(keyed("p"), &["q"]), after(keyed("q"), &["p"])],
            "tasks[0].after",
            "dependency cycle",
        ),
    ];
    for (rule, tasks, field, reason) in table {
        let before = env.s.counts();
        let err = env
            .apply(Event::Submit {
                job: JobSpec {
                    tasks,
                    ..JobSpec::default()
                },
            })
            .unwrap_err();
        let CoreError::Invalid(v) = err else {
            panic!("{rule}: {err:?}")
        };
        assert_eq!(v.field, field, "{rule}");
        assert!(v.reason.contains(reason), "{rule}: {}", v.reason);
        assert_eq!(env.s.counts(), before, "{rule}: nothing changed");
    }
    // Ids were not consumed by the rejected jobs.
    assert_eq!(env.submit(vec![task()]), vec![TaskId(2)]);
}

#[test]
fn a_task_goes_ready_assigned_running_succeeded() {
    let mut env = Env::new();
    let w = env.join("w1", 4, 8);
    let [t] = env.submit(vec![task()])[..] else {
        panic!()
    };
    assert_eq!(env.state(t), TaskState::Ready);
    assert_eq!(env.starts(), vec![(t, Attempt(1), w)]);
    assert_eq!(env.state(t), TaskState::Assigned);
    assert_eq!(env.s.worker(w).unwrap().allocated.cpu_milli, 1000);
    env.started(t);
    assert_eq!(env.state(t), TaskState::Running);
    assert_eq!(env.reason(t), "<running>");
    env.exit(t, 0);
    assert_eq!(env.state(t), TaskState::Succeeded);
    assert_eq!(env.s.worker(w).unwrap().allocated.cpu_milli, 0);
    assert_eq!(env.s.counts().of(TaskState::Succeeded), 1);
    // A repeated report of the attempt that ended it.
    let e = env.apply(Event::TaskFinished {
        task: t,
        attempt: Attempt(1),
        worker: w,
        outcome: Outcome::Exited { code: 0 },
    });
    assert!(matches!(e, Err(CoreError::AlreadyFinal { .. })));
}

#[test]
fn a_task_becomes_ready_only_when_all_parents_succeeded() {
    let mut env = Env::new();
    env.join("w1", 8, 8);
    let ids = env.submit(vec![keyed("a"), keyed("b"), after(keyed("c"), &["a", "b"])]);
    let (a, b, c) = (ids[0], ids[1], ids[2]);
    assert_eq!(env.state(c), TaskState::Waiting);
    assert_eq!(env.reason(c), "waiting for 2 of 2 dependencies: a, b");
    env.starts();
    env.run_ok(a);
    assert_eq!(env.state(c), TaskState::Waiting);
    assert_eq!(env.reason(c), "waiting for 1 of 2 dependencies: b");
    env.run_ok(b);
    assert_eq!(env.state(c), TaskState::Ready);
    // A later job depending on a finished task by id is ready at once.
    let d = env.submit(vec![after(task(), &["1"])])[0];
    assert_eq!(env.state(d), TaskState::Ready);
}

#[test]
fn depending_on_an_array_key_means_on_every_element() {
    let mut env = Env::new();
    env.join("w1", 8, 8);
    let mut arr = keyed("arr");
    arr.array = Some(ArraySpec { start: 0, end: 2 });
    let ids = env.submit(vec![arr, after(keyed("sum"), &["arr"])]);
    assert_eq!(
        env.s.task(ids[3]).unwrap().deps,
        &[TaskId(1), TaskId(2), TaskId(3)]
    );
    env.starts();
    env.run_ok(ids[0]);
    env.run_ok(ids[1]);
    assert_eq!(env.state(ids[3]), TaskState::Waiting);
    env.run_ok(ids[2]);
    assert_eq!(env.state(ids[3]), TaskState::Ready);
}

#[test]
fn failure_cancellation_and_timeouts_fail_dependents_transitively() {
    for (how, end_state) in [
        ("fails", TaskState::Failed),
        ("times out", TaskState::TimedOut),
        ("is cancelled", TaskState::Cancelled),
    ] {
        let mut env = Env::new();
        env.join("w1", 8, 8);
        let ids = env.submit(vec![
            keyed("a"),
            after(keyed("b"), &["a"]),
            after(keyed("c"), &["b"]),
            task(),
        ]);
        env.starts();
        match end_state {
            TaskState::Failed => {
                env.started(ids[0]);
                env.exit(ids[0], 3);
            }
            TaskState::TimedOut => {
                env.started(ids[0]);
                env.finish(ids[0], Outcome::TimedOut);
            }
            _ => {
                env.ok(Event::Cancel {
                    target: CancelTarget::Task(ids[0]),
                });
            }
        }
        assert_eq!(env.state(ids[0]), end_state, "a {how}");
        assert_eq!(env.state(ids[1]), TaskState::DependencyFailed, "a {how}: b");
        assert_eq!(env.state(ids[2]), TaskState::DependencyFailed, "a {how}: c");
        assert_eq!(
            env.state(ids[3]),
            TaskState::Assigned,
            "a {how}: unrelated task unaffected"
        );
        assert!(
            env.reason(ids[1]).starts_with("dependency 1 (a) "),
            "{}",
            env.reason(ids[1])
        );
        // A new job depending on a failed task fails at once.
        let late = env.submit(vec![after(task(), &["c"])])[0];
        assert_eq!(env.state(late), TaskState::DependencyFailed);
    }
}

#[test]
fn reports_from_stale_attempts_or_wrong_workers_are_rejected_and_change_nothing() {
    let mut env = Env::new();
    let w1 = env.join("w1", 1, 8);
    let w2 = env.join("w2", 1, 8);
    let t = env.submit(vec![retries(task(), 3, 0)])[0];
    let placed = env.starts()[0];
    let (other, _) = if placed.2 == w1 { (w2, w1) } else { (w1, w2) };
    let wrong = env.apply(Event::TaskStarted {
        task: t,
        attempt: Attempt(1),
        worker: other,
        gpus: Vec::new(),
    });
    assert!(
        matches!(wrong, Err(CoreError::WrongWorker { .. })),
        "{wrong:?}"
    );
    let future = env.apply(Event::TaskStarted {
        task: t,
        attempt: Attempt(2),
        worker: placed.2,
        gpus: Vec::new(),
    });
    assert!(
        matches!(
            future,
            Err(CoreError::StaleAttempt {
                current: Attempt(1),
                ..
            })
        ),
        "{future:?}"
    );
    env.started(t);
    // The worker is lost: attempt 1 is given up, attempt 2 goes elsewhere.
    env.ok(Event::WorkerLost { worker: placed.2 });
    let second = env.starts();
    assert_eq!(second, vec![(t, Attempt(2), other)]);
    let snapshot_state = (env.state(t), env.attempt(t), env.s.counts());
    for e in [
        Event::TaskFinished {
            task: t,
            attempt: Attempt(1),
            worker: placed.2,
            outcome: Outcome::Exited { code: 0 },
        },
        Event::TaskStarted {
            task: t,
            attempt: Attempt(1),
            worker: placed.2,
            gpus: Vec::new(),
        },
    ] {
        let r = env.apply(e);
        assert!(
            matches!(
                r,
                Err(CoreError::StaleAttempt {
                    attempt: Attempt(1),
                    current: Attempt(2),
                    ..
                })
            ),
            "{r:?}"
        );
        assert_eq!(
            (env.state(t), env.attempt(t), env.s.counts()),
            snapshot_state
        );
    }
    assert!(matches!(
        env.apply(Event::TaskStarted {
            task: TaskId(9),
            attempt: Attempt(1),
            worker: other,
            gpus: Vec::new(),
        }),
        Err(CoreError::UnknownTask(_))
    ));
    assert!(matches!(
        env.apply(Event::WorkerDrain {
            worker: drover_types::WorkerId(77)
        }),
        Err(CoreError::UnknownWorker(_))
    ));
}

#[test]
fn a_failed_attempt_with_attempts_left_backs_off_then_retries() {
    let mut env = Env::new();
    let w = env.join("w1", 4, 8);
    let t = env.submit(vec![retries(task(), 3, 1_000)])[0];
    env.starts();
    env.started(t);
    env.exit(t, 1);
    assert_eq!(env.state(t), TaskState::Backoff);
    assert_eq!(env.s.worker(w).unwrap().allocated.cpu_milli, 0);
    assert!(
        env.reason(t).contains("retry 2 of 3 at"),
        "{}",
        env.reason(t)
    );
    env.advance(999);
    assert!(env.starts().is_empty(), "not before the backoff is over");
    env.advance(1);
    assert_eq!(env.starts(), vec![(t, Attempt(2), w)]);
    env.started(t);
    env.exit(t, 1);
    // Second retry waits twice as long.
    env.advance(1_999);
    assert!(env.starts().is_empty());
    env.advance(1);
    assert_eq!(env.starts().len(), 1);
    env.started(t);
    env.exit(t, 3);
    assert_eq!(env.state(t), TaskState::Failed);
    assert_eq!(
        env.reason(t),
        "failed: exited with code 3 on attempt 3 of 3"
    );
}

#[test]
fn only_listed_exit_codes_are_retried() {
    let mut env = Env::new();
    env.join("w1", 4, 8);
    let mut spec = retries(task(), 5, 10);
    spec.retry.retry_on_exit_codes = vec![75];
    let ids = env.submit(vec![spec.clone(), spec]);
    env.starts();
    env.started(ids[0]);
    env.exit(ids[0], 75);
    assert_eq!(env.state(ids[0]), TaskState::Backoff);
    env.started(ids[1]);
    env.exit(ids[1], 2);
    assert_eq!(env.state(ids[1]), TaskState::Failed);
}

#[test]
fn a_lost_worker_requeues_retryable_tasks_and_fails_the_others() {
    let mut env = Env::new();
    let w = env.join("w3", 4, 8);
    let ids = env.submit(vec![
        retries(keyed("r"), 2, 500),
        keyed("once"),
        after(task(), &["once"]),
    ]);
    env.starts();
    env.started(ids[0]);
    env.ok(Event::WorkerLost { worker: w });
    assert_eq!(env.s.worker(w).unwrap().state, WorkerState::Lost);
    assert_eq!(env.state(ids[0]), TaskState::Backoff);
    assert!(
        env.reason(ids[0])
            .starts_with("worker w3 was lost; re-queued"),
        "{}",
        env.reason(ids[0])
    );
    assert_eq!(env.state(ids[1]), TaskState::Failed);
    let last = env
        .s
        .task(ids[1])
        .unwrap()
        .attempts
        .last()
        .unwrap()
        .failure
        .clone();
    assert_eq!(last, Some(FailureCause::WorkerLost { worker: w }));
    assert_eq!(env.state(ids[2]), TaskState::DependencyFailed);
    // The retry goes to another worker once the backoff is over.
    let w2 = env.join("w4", 4, 8);
    env.advance(500);
    assert_eq!(env.starts(), vec![(ids[0], Attempt(2), w2)]);
}

#[test]
fn cancelling_ends_tasks_and_kills_running_ones_without_freeing_early() {
    let mut env = Env::new();
    let w = env.join("w1", 1, 8);
    let ids = env.submit(vec![keyed("first"), task(), after(task(), &["first"])]);
    env.starts();
    env.started(ids[0]);
    let a = env.ok(Event::Cancel {
        target: CancelTarget::Task(ids[0]),
    });
    assert_eq!(a.cancelled, 1);
    assert_eq!(
        a.actions,
        vec![Action::Kill {
            task: ids[0],
            attempt: Attempt(1),
            worker: w,
            reason: KillReason::Cancelled,
            grace_ms: drover_sched::KILL_GRACE_MS
        }]
    );
    assert_eq!(env.state(ids[0]), TaskState::Cancelled);
    assert_eq!(env.state(ids[2]), TaskState::DependencyFailed);
    // Still holding its CPU: task 2 cannot be placed yet (1 cpu worker).
    assert!(env.starts().is_empty());
    assert_eq!(
        env.reason(ids[0]),
        "cancelled; waiting for worker w1 to stop it"
    );
    env.finish(ids[0], Outcome::Killed);
    assert_eq!(env.state(ids[0]), TaskState::Cancelled);
    assert_eq!(env.starts().len(), 1);
    let again = env.apply(Event::Cancel {
        target: CancelTarget::Task(ids[0]),
    });
    assert!(matches!(
        again,
        Err(CoreError::AlreadyFinal {
            state: TaskState::Cancelled,
            ..
        })
    ));
    // Cancelling the job ends what is left of it.
    let job = env.s.task(ids[1]).unwrap().job;
    let a = env.ok(Event::Cancel {
        target: CancelTarget::Job(job),
    });
    assert_eq!(a.cancelled, 1);
    assert_eq!(kills(&a.actions), vec![(ids[1], KillReason::Cancelled)]);
}

#[test]
fn cancelling_a_job_cancels_its_waiting_tasks_rather_than_failing_them() {
    let mut env = Env::new();
    let ids = env.submit(vec![keyed("a"), after(keyed("b"), &["a"])]);
    let job = env.s.task(ids[0]).unwrap().job;
    assert_eq!(
        env.ok(Event::Cancel {
            target: CancelTarget::Job(job)
        })
        .cancelled,
        2
    );
    assert_eq!(env.state(ids[1]), TaskState::Cancelled);
}

#[test]
fn a_rejoining_worker_keeps_listed_attempts_loses_missing_ones_and_kills_stale_ones() {
    let mut env = Env::new();
    let w = env.join("w1", 4, 8);
    let ids = env.submit(vec![retries(task(), 3, 0), retries(task(), 3, 0)]);
    env.starts();
    env.started(ids[0]);
    env.started(ids[1]);
    // It comes back still running task 1 attempt 1, but not task 2, plus a ghost.
    let a = env.ok(Event::WorkerJoin {
        spec: worker("w1", 4, 8),
        running: vec![(ids[0], Attempt(1)), (TaskId(99), Attempt(4))],
    });
    assert_eq!(a.worker, Some(w));
    assert_eq!(kills(&a.actions), vec![(TaskId(99), KillReason::Stale)]);
    assert_eq!(env.state(ids[0]), TaskState::Running);
    assert_eq!(env.state(ids[1]), TaskState::Ready);
    // Declared lost, then back: nothing allocated, and what it still runs is stale.
    env.ok(Event::WorkerLost { worker: w });
    let a = env.ok(Event::WorkerJoin {
        spec: worker("w1", 4, 8),
        running: vec![(ids[0], Attempt(1))],
    });
    assert_eq!(kills(&a.actions), vec![(ids[0], KillReason::Stale)]);
    assert_eq!(env.s.worker(w).unwrap().state, WorkerState::Active);
    assert_eq!(env.s.worker(w).unwrap().allocated.cpu_milli, 0);
    let r = env.apply(Event::TaskFinished {
        task: ids[0],
        attempt: Attempt(1),
        worker: w,
        outcome: Outcome::Exited { code: 0 },
    });
    assert!(matches!(r, Err(CoreError::StaleAttempt { .. })), "{r:?}");
}

#[test]
fn a_rejoin_that_does_not_list_a_start_it_never_got_requeues_it_without_spending_an_attempt() {
    let mut env = Env::new();
    let w = env.join("w1", 4, 8);
    // No retries: losing the attempt would fail the task.
    let ids = env.submit(vec![task(), task()]);
    let placed = env.starts();
    assert_eq!(placed.len(), 2);
    env.started(ids[0]);
    // The worker reconnects listing only what it runs: the second start was placed
    // after its hello was read, so it never reached it.
    let a = env.ok(Event::WorkerJoin {
        spec: worker("w1", 4, 8),
        running: vec![(ids[0], Attempt(1))],
    });
    assert!(kills(&a.actions).is_empty(), "{:?}", a.actions);
    assert_eq!(env.state(ids[0]), TaskState::Running);
    // Back in the queue, nothing spent, placed again at once (same worker, attempt 2).
    let again = env.starts();
    assert_eq!(again, vec![(ids[1], Attempt(2), w)]);
    let view = env.s.task(ids[1]).unwrap();
    assert_eq!(
        view.attempts[0].failure,
        Some(FailureCause::Retracted),
        "{:?}",
        view.attempts
    );
    env.started(ids[1]);
    env.exit(ids[1], 0);
    assert_eq!(env.state(ids[1]), TaskState::Succeeded);
    // A started attempt the worker no longer lists was lost, and that spends one.
    let a = env.ok(Event::WorkerJoin {
        spec: worker("w1", 4, 8),
        running: vec![],
    });
    assert!(kills(&a.actions).is_empty());
    assert_eq!(env.state(ids[0]), TaskState::Failed);
}

#[test]
fn a_rejoin_with_less_capacity_never_over_commits() {
    let mut env = Env::new();
    let w = env.join("w1", 4, 8);
    let ids = env.submit(vec![
        cpus(retries(task(), 2, 0), 2),
        cpus(retries(task(), 2, 0), 2),
    ]);
    env.starts();
    let a = env.ok(Event::WorkerJoin {
        spec: worker("w1", 3, 8),
        running: vec![(ids[0], Attempt(1)), (ids[1], Attempt(1))],
    });
    assert_eq!(kills(&a.actions), vec![(ids[1], KillReason::Stale)]);
    assert_eq!(env.s.worker(w).unwrap().allocated.cpu_milli, 2000);
    assert_eq!(env.state(ids[1]), TaskState::Ready);
}

#[test]
fn a_draining_worker_takes_no_new_tasks_and_its_running_ones_finish() {
    let mut env = Env::new();
    let w = env.join("w1", 1, 8);
    let ids = env.submit(vec![task(), task()]);
    env.starts();
    env.started(ids[0]);
    env.ok(Event::WorkerDrain { worker: w });
    env.exit(ids[0], 0);
    assert!(env.starts().is_empty());
    assert_eq!(
        env.reason(ids[1]),
        "no worker is taking tasks (1 draining, 0 lost)"
    );
    env.ok(Event::WorkerResume { worker: w });
    assert_eq!(env.starts().len(), 1);
    assert_eq!(env.s.counts().workers_active, 1);
}

#[test]
fn resources_are_never_over_committed() {
    let mut env = Env::new();
    env.join("small", 2, 4);
    env.join("big", 4, 16);
    let specs = (0..20)
        .map(|i| mem(cpus(task(), 1 + i % 2), 1 + (i % 3) as u64))
        .collect();
    env.submit(specs);
    let placed = env.starts();
    let cpu: u32 = env.s.workers().map(|w| w.allocated.cpu_milli).sum();
    assert!(cpu <= 6000);
    assert!(!placed.is_empty());
    // The invariant checker ran after the round: no worker is over its capacity.
}

#[test]
fn an_unplaceable_task_stays_ready_says_why_and_blocks_nothing() {
    let mut env = Env::new();
    env.join("w1", 4, 32);
    let ids = env.submit(vec![
        prio(mem(task(), 64), 100),
        task(),
        constraint(task(), "gpu=a100"),
    ]);
    let starts = env.starts();
    assert_eq!(starts.iter().map(|s| s.0).collect::<Vec<_>>(), vec![ids[1]]);
    assert_eq!(env.state(ids[0]), TaskState::Ready);
    assert_eq!(
        env.reason(ids[0]),
        "needs 64 GiB memory; the largest worker has 32 GiB"
    );
    assert_eq!(
        env.reason(ids[2]),
        "no active worker matches its constraints: gpu=a100"
    );
    // A big enough worker joins later: it runs.
    env.join("big", 4, 128);
    assert_eq!(
        env.starts().iter().map(|s| s.0).collect::<Vec<_>>(),
        vec![ids[0]]
    );
}

#[test]
fn time_only_moves_forward() {
    let mut env = Env::new();
    env.join("w1", 1, 8);
    let t = env.submit(vec![retries(task(), 2, 1_000)])[0];
    env.starts();
    env.started(t);
    env.exit(t, 1);
    let wake = env.now + 1_000;
    // The leader's clock jumps back: the core keeps its latest time.
    env.now -= 60_000;
    assert!(env.starts().is_empty());
    assert_eq!(env.s.now(), Millis(wake - 1_000));
    env.now = wake;
    assert_eq!(env.starts().len(), 1);
}

#[test]
fn heartbeats_update_usage_and_data_keys() {
    let mut env = Env::new();
    let w = env.join("w1", 1, 8);
    env.ok(Event::WorkerHeartbeat {
        worker: w,
        usage: drover_types::WorkerUsage {
            cpu_milli: 300,
            ..Default::default()
        },
        data_keys: Some(vec!["k1".into()]),
    });
    let v = env.s.worker(w).unwrap();
    assert_eq!(v.usage.cpu_milli, 300);
    assert_eq!(v.spec.data_keys, vec!["k1".to_string()]);
    assert_eq!(env.s.worker_by_name("w1"), Some(w));
}

#[test]
fn a_job_whose_dependencies_expand_too_far_is_refused_before_expanding() {
    let mut env = Env::new();
    let mut big = keyed("big");
    big.array = Some(ArraySpec {
        start: 0,
        end: 99_999,
    });
    let mut fan = after(keyed("fan"), &["big"]);
    fan.array = Some(ArraySpec { start: 0, end: 999 });
    // 1,000 elements each depending on 100,000: 10^8 edges.
    let err = env
        .apply(Event::Submit {
            job: JobSpec {
                tasks: vec![big, fan],
                ..JobSpec::default()
            },
        })
        .unwrap_err();
    let CoreError::Invalid(v) = err else {
        panic!("{err:?}")
    };
    assert_eq!(v.field, "tasks[1].after");
    assert_eq!(env.s.counts().tasks.iter().sum::<u64>(), 0);
}

#[test]
fn a_worker_with_tens_of_thousands_of_tiny_tasks_stays_cheap() {
    // 1-millicore tasks: a 32-core worker holds 32,000 of them. Ending them one by one
    // must not cost O(tasks on the worker) each.
    use drover_sched::{Scheduler, SchedulerConfig};
    let mut s = Scheduler::new(SchedulerConfig::default());
    let now = Millis(1);
    s.apply(
        now,
        Event::WorkerJoin {
            spec: worker("big", 32, 64),
            running: vec![],
        },
    )
    .unwrap();
    let tiny = drover_types::TaskSpec {
        resources: drover_types::Resources::cpus(1),
        ..task()
    };
    let job = JobSpec {
        tasks: vec![tiny; 32_000],
        ..JobSpec::default()
    };
    s.apply(now, Event::Submit { job }).unwrap();
    let plan = s.schedule(now);
    assert_eq!(plan.actions.len(), 32_000);
    let started = std::time::Instant::now();
    for a in plan.actions {
        if let Action::Start {
            task,
            attempt,
            worker,
        } = a
        {
            s.apply(
                now,
                Event::TaskFinished {
                    task,
                    attempt,
                    worker,
                    outcome: Outcome::Exited { code: 0 },
                },
            )
            .unwrap();
        }
    }
    assert!(
        started.elapsed().as_secs() < 5,
        "took {:?}",
        started.elapsed()
    );
    s.check_invariants().unwrap();
    assert_eq!(s.counts().of(TaskState::Succeeded), 32_000);
}

#[test]
fn a_task_goes_only_to_a_worker_with_its_driver_and_says_so_while_none_has_it() {
    let mut env = Env::new();
    env.join("plain", 8, 32);
    let docker = |t: drover_types::TaskSpec| drover_types::TaskSpec {
        driver: Some("docker".into()),
        image: Some("drover-test-base:1".into()),
        ..t
    };
    let named_process = drover_types::TaskSpec {
        driver: Some("process".into()),
        ..task()
    };
    let ids = env.submit(vec![docker(task()), task(), named_process]);
    let placed: Vec<TaskId> = env.starts().iter().map(|s| s.0).collect();
    assert_eq!(
        placed,
        vec![ids[1], ids[2]],
        "process tasks run on any worker"
    );
    assert_eq!(env.state(ids[0]), TaskState::Ready);
    assert_eq!(env.reason(ids[0]), "no worker has driver docker");
    // A worker that declares docker (and process) joins: the docker task goes there,
    // and an old-style worker (no drivers declared) still gets process tasks only.
    let mut spec = worker("box", 8, 32);
    spec.drivers = vec!["process".into(), "docker".into()];
    let boxed = env.join_spec(spec);
    let starts = env.starts();
    assert_eq!(
        starts.iter().map(|s| (s.0, s.2)).collect::<Vec<_>>(),
        vec![(ids[0], boxed)]
    );
    // More docker work than the docker worker has room for waits for it, never the
    // plain worker, which has room.
    let more = env.submit(vec![cpus(docker(task()), 8), cpus(docker(task()), 8)]);
    let placed: Vec<_> = env.starts().iter().map(|s| (s.0, s.2)).collect();
    assert!(placed.iter().all(|(_, w)| *w == boxed), "{placed:?}");
    assert!(
        more.iter()
            .all(|t| env.worker_of(*t).is_none_or(|w| w == boxed))
    );
}
