//! Retention: complete jobs leave the core through `Event::Retire`, by age and by
//! count, never while something still depends on them. Table tests for the rules, then
//! a property test: random DAG jobs across jobs, random ends and cancels, random
//! retirements; the invariant checker after every event, the retention rules checked
//! after every retirement, and a snapshot taken halfway must behave the same.

mod common;

use common::*;
use drover_sched::{
    CancelTarget, Event, MAX_RETIRED_PER_EVENT, ResolveError, Scheduler, TaskRange,
};
use drover_types::{DepRef, JobId, JobSpec, Millis, Outcome, TaskId, TaskState};
use proptest::prelude::*;

const DAY: u64 = 86_400_000;

fn retire(e: &mut Env, keep_ms: u64, keep_max: u64) -> Vec<(JobId, TaskRange)> {
    e.ok(Event::Retire { keep_ms, keep_max }).retired
}

fn named_job(e: &mut Env, name: &str, tasks: Vec<drover_types::TaskSpec>) -> (JobId, Vec<TaskId>) {
    let a = e.ok(Event::Submit {
        job: JobSpec {
            name: name.into(),
            tasks,
            ..JobSpec::default()
        },
    });
    let (job, r) = a.job.unwrap();
    (
        job,
        (0..r.count as u64).map(|i| TaskId(r.first.0 + i)).collect(),
    )
}

fn run_all(e: &mut Env) {
    loop {
        let starts = e.starts();
        if starts.is_empty() {
            break;
        }
        for (t, _, _) in starts {
            e.run_ok(t);
        }
    }
}

#[test]
fn a_finished_job_goes_after_its_age_not_before() {
    let mut e = Env::new();
    e.join("w", 4, 4);
    let (job, ids) = named_job(&mut e, "nightly", vec![keyed("a"), keyed("b")]);
    run_all(&mut e);
    assert_eq!(e.state(ids[1]), TaskState::Succeeded);
    e.advance(DAY - 1);
    assert!(!e.s.retirement_due(Millis(e.now), DAY, u64::MAX));
    assert!(retire(&mut e, DAY, u64::MAX).is_empty());
    e.advance(1);
    assert!(e.s.retirement_due(Millis(e.now), DAY, u64::MAX));
    let gone = retire(&mut e, DAY, u64::MAX);
    assert_eq!(
        gone,
        vec![(
            job,
            TaskRange {
                first: ids[0],
                count: 2
            }
        )]
    );
    for &t in &ids {
        assert!(e.s.task(t).is_none());
        assert!(e.s.task_retired(t));
    }
    assert!(e.s.job_retired(job));
    assert!(!e.s.task_retired(TaskId(3)), "never issued is not retired");
    assert_eq!(e.s.finished_held(), 0);
    // Keys and the job name are free again: a reference to them names nothing…
    assert!(matches!(
        e.s.resolve(&DepRef::parse("nightly/a")),
        Err(ResolveError::NoJobNamed(_))
    ));
    assert!(matches!(
        e.s.resolve(&DepRef::parse("a")),
        Err(ResolveError::NoKey(_))
    ));
    // …and can be used again, with fresh ids (never reused).
    let (job2, ids2) = named_job(&mut e, "nightly", vec![keyed("a")]);
    assert_eq!(job2, JobId(2));
    assert_eq!(ids2, vec![TaskId(3)]);
    assert_eq!(
        e.s.resolve(&DepRef::parse("nightly/a")).unwrap().first,
        TaskId(3)
    );
}

#[test]
fn a_rejected_submission_issues_no_id() {
    let mut e = Env::new();
    let first = e.submit(vec![task()]);
    let bad = e.apply(Event::Submit {
        job: JobSpec {
            tasks: vec![after(task(), &["nope"])],
            ..JobSpec::default()
        },
    });
    assert!(bad.is_err());
    assert_eq!(e.s.next_task_id(), TaskId(first[0].0 + 1));
    assert_eq!(e.s.next_job_id(), JobId(2));
}

#[test]
fn the_count_cap_retires_the_oldest_completed_first() {
    let mut e = Env::new();
    e.join("w", 8, 8);
    let mut jobs = Vec::new();
    for _ in 0..4 {
        let (j, _) = named_job(&mut e, "", vec![task(), task()]);
        run_all(&mut e);
        e.advance(10);
        jobs.push(j);
    }
    assert_eq!(e.s.finished_held(), 8);
    // At most 3 finished tasks: the two oldest jobs (2 tasks each) go.
    let gone: Vec<JobId> = retire(&mut e, u64::MAX, 3)
        .into_iter()
        .map(|r| r.0)
        .collect();
    assert_eq!(gone, vec![jobs[0], jobs[1], jobs[2]]);
    assert_eq!(e.s.finished_held(), 2);
    assert!(retire(&mut e, u64::MAX, 2).is_empty());
}

#[test]
fn a_job_whose_tasks_still_run_is_kept() {
    let mut e = Env::new();
    e.join("w", 4, 4);
    let ids = e.submit(vec![task(), task()]);
    let starts = e.starts();
    assert_eq!(starts.len(), 2);
    e.run_ok(ids[0]);
    e.advance(DAY);
    assert!(retire(&mut e, 0, 0).is_empty(), "incomplete job");
    // Cancelled while running: final, but the attempt still holds the worker.
    e.started(ids[1]);
    e.ok(Event::Cancel {
        target: CancelTarget::Task(ids[1]),
    });
    assert_eq!(e.state(ids[1]), TaskState::Cancelled);
    assert!(
        retire(&mut e, 0, 0).is_empty(),
        "an attempt still holds a worker"
    );
    e.exit(ids[1], 143);
    assert_eq!(retire(&mut e, 0, 0).len(), 1);
}

#[test]
fn a_finished_parent_with_a_pending_child_in_another_job_is_kept() {
    let mut e = Env::new();
    e.join("w", 1, 4);
    let (parent_job, p) = named_job(&mut e, "up", vec![keyed("p")]);
    run_all(&mut e);
    // A later job's task waits on p (Succeeded already: it is ready, then runs).
    let (child_job, c) = named_job(
        &mut e,
        "down",
        vec![after(keyed("c"), &["up/p"]), keyed("d")],
    );
    // Hold the child: not started yet (the worker has one CPU and takes c or d first).
    let starts = e.starts();
    assert_eq!(starts.len(), 1);
    e.advance(DAY);
    assert!(
        retire(&mut e, 0, 0).is_empty(),
        "a child still to run pins the parent job"
    );
    assert!(e.s.task(p[0]).is_some());
    for (t, _, _) in starts {
        e.run_ok(t);
    }
    run_all(&mut e);
    for &t in &c {
        assert_eq!(e.state(t), TaskState::Succeeded);
    }
    let gone: Vec<JobId> = retire(&mut e, 0, 0).into_iter().map(|r| r.0).collect();
    assert_eq!(gone, vec![parent_job, child_job]);
}

#[test]
fn a_dag_job_with_a_waiting_child_is_not_complete() {
    let mut e = Env::new();
    e.join("w", 4, 4);
    let (_, ids) = named_job(&mut e, "dag", vec![keyed("a"), after(keyed("b"), &["a"])]);
    let s = e.starts();
    assert_eq!(s.len(), 1);
    e.run_ok(ids[0]);
    e.advance(DAY);
    // `a` finished long ago, `b` is ready or running: neither may go.
    assert!(retire(&mut e, 0, 0).is_empty());
    assert!(e.s.task(ids[0]).is_some());
}

#[test]
fn a_dependant_submitted_after_retirement_is_refused_by_field() {
    let mut e = Env::new();
    e.join("w", 4, 4);
    let ids = e.submit(vec![task()]);
    run_all(&mut e);
    retire(&mut e, 0, 0);
    let err = e
        .apply(Event::Submit {
            job: JobSpec {
                tasks: vec![drover_types::TaskSpec {
                    after: vec![DepRef::Id(ids[0])],
                    ..task()
                }],
                ..JobSpec::default()
            },
        })
        .unwrap_err();
    let drover_sched::CoreError::Invalid(v) = err else {
        panic!("{err:?}")
    };
    assert_eq!(v.field, "tasks[0].after[0]");
    assert!(v.reason.contains("retired"), "{}", v.reason);
}

#[test]
fn a_failed_chain_goes_whole_and_a_name_falls_back_to_an_older_job() {
    let mut e = Env::new();
    e.join("w", 4, 4);
    let (old, _) = named_job(&mut e, "n", vec![keyed("k")]);
    let (_, ids) = named_job(&mut e, "n", vec![keyed("x"), after(keyed("y"), &["x"])]);
    // The first job waits on nothing but never runs: it stays open.
    let s = e.starts();
    for (t, _, _) in s {
        e.started(t);
        if t == ids[0] {
            e.exit(t, 1);
        }
    }
    assert_eq!(e.state(ids[1]), TaskState::DependencyFailed);
    let gone = retire(&mut e, 0, 0);
    assert_eq!(gone.len(), 1, "only the complete job");
    // The newest job named `n` went; the name now names the older one.
    assert_eq!(e.s.resolve(&DepRef::parse("n/k")).unwrap().first, TaskId(1));
    let _ = old;
}

#[test]
fn one_retirement_is_bounded() {
    let mut e = Env::new();
    e.join("w", 64, 64);
    let n = MAX_RETIRED_PER_EVENT / 1000 + 5;
    for _ in 0..n {
        let arr = drover_types::TaskSpec {
            array: Some(drover_types::ArraySpec {
                start: 0,
                end: 1000,
            }),
            ..task()
        };
        e.s.apply(
            Millis(e.now),
            Event::Submit {
                job: JobSpec {
                    tasks: vec![arr],
                    ..JobSpec::default()
                },
            },
        )
        .unwrap();
        e.s.apply(
            Millis(e.now),
            Event::Cancel {
                target: CancelTarget::Job(JobId(e.s.next_job_id().0 - 1)),
            },
        )
        .unwrap();
    }
    e.check();
    let first = retire(&mut e, 0, 0);
    let tasks: u64 = first.iter().map(|r| r.1.count as u64).sum();
    // Whole jobs: the one that crosses the bound still goes in one piece.
    let size = first[0].1.count as u64;
    assert!((MAX_RETIRED_PER_EVENT..MAX_RETIRED_PER_EVENT + size).contains(&tasks));
    assert!(e.s.retirement_due(Millis(e.now), 0, 0));
    let rest: u64 = retire(&mut e, 0, 0).iter().map(|r| r.1.count as u64).sum();
    assert_eq!(tasks + rest, n * size);
    assert!(!e.s.retirement_due(Millis(e.now), 0, 0));
}

// ----- property test -------------------------------------------------------------

#[derive(Clone, Debug)]
enum Op {
    /// Tasks, each with up to two dependencies on recent ids (offsets back from the
    /// next id), and a name out of three.
    Submit(Vec<Vec<u8>>, u8),
    Round,
    Start(u8),
    Finish(u8, bool),
    Cancel(u8),
    Advance(u16),
    Retire(u8, u8),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (prop::collection::vec(prop::collection::vec(1u8..12, 0..3), 1..4), 0u8..3)
            .prop_map(|(t, n)| Op::Submit(t, n)),
        3 => Just(Op::Round),
        3 => any::<u8>().prop_map(Op::Start),
        4 => (any::<u8>(), any::<bool>()).prop_map(|(t, ok)| Op::Finish(t, ok)),
        1 => any::<u8>().prop_map(Op::Cancel),
        2 => any::<u16>().prop_map(Op::Advance),
        2 => (0u8..4, 0u8..4).prop_map(|(a, m)| Op::Retire(a, m)),
    ]
}

struct Run {
    s: Scheduler,
    now: u64,
    /// Every id ever retired.
    retired: Vec<TaskId>,
    log: Vec<String>,
}

impl Run {
    fn check(&self) {
        if let Err(e) = self.s.check_invariants() {
            panic!("{e}\n{}", self.log.join("\n"));
        }
    }

    fn held_where(&self, n: u8, pred: impl Fn(TaskState, bool) -> bool) -> Option<TaskId> {
        let v: Vec<TaskId> = self
            .s
            .tasks_after(None)
            .filter(|t| pred(t.state, t.worker.is_some()))
            .map(|t| t.id)
            .collect();
        (!v.is_empty()).then(|| v[n as usize % v.len()])
    }

    fn step(&mut self, op: Op) -> String {
        let now = Millis(self.now);
        let out = match op {
            Op::Submit(tasks, name) => {
                let next = self.s.next_task_id().0;
                let specs = tasks
                    .iter()
                    .map(|deps| drover_types::TaskSpec {
                        after: deps
                            .iter()
                            .filter(|&&b| (b as u64) < next)
                            .map(|&b| DepRef::Id(TaskId(next - b as u64)))
                            .collect(),
                        key: Some(format!("k{}", deps.len())),
                        ..task()
                    })
                    .collect();
                let mut specs: Vec<drover_types::TaskSpec> = specs;
                for (i, s) in specs.iter_mut().enumerate() {
                    s.key = Some(format!("k{i}"));
                }
                let r = self.s.apply(
                    now,
                    Event::Submit {
                        job: JobSpec {
                            name: ["", "a", "b"][name as usize].into(),
                            tasks: specs,
                            ..JobSpec::default()
                        },
                    },
                );
                if let Err(drover_sched::CoreError::Invalid(v)) = &r {
                    // Only a retired (or never issued) parent may refuse it.
                    assert!(
                        v.reason.contains("retired") || v.reason.contains("no task"),
                        "{v:?}"
                    );
                }
                format!("{r:?}")
            }
            Op::Round => {
                let p = self.s.schedule(now);
                format!("round {:?}", p.actions.len())
            }
            Op::Start(n) => match self.held_where(n, |s, _| s == TaskState::Assigned) {
                Some(t) => {
                    let v = self.s.task(t).unwrap();
                    let (attempt, worker) = (v.attempt, v.worker.unwrap());
                    let r = self.s.apply(
                        now,
                        Event::TaskStarted {
                            task: t,
                            attempt,
                            worker,
                            gpus: Vec::new(),
                        },
                    );
                    format!("start {t}: {r:?}")
                }
                None => "start none".into(),
            },
            Op::Finish(n, ok) => match self.held_where(n, |_, held| held) {
                Some(t) => {
                    let v = self.s.task(t).unwrap();
                    let (attempt, worker) = (v.attempt, v.worker.unwrap());
                    let outcome = Outcome::Exited {
                        code: if ok { 0 } else { 1 },
                    };
                    let r = self.s.apply(
                        now,
                        Event::TaskFinished {
                            task: t,
                            attempt,
                            worker,
                            outcome,
                        },
                    );
                    format!("finish {t} {ok}: {r:?}")
                }
                None => "finish none".into(),
            },
            Op::Cancel(n) => match self.held_where(n, |s, _| !s.is_final()) {
                Some(t) => {
                    let r = self.s.apply(
                        now,
                        Event::Cancel {
                            target: CancelTarget::Task(t),
                        },
                    );
                    format!("cancel {t}: {r:?}")
                }
                None => "cancel none".into(),
            },
            Op::Advance(ms) => {
                self.now += ms as u64;
                format!("advance {ms}")
            }
            Op::Retire(age, max) => {
                let keep_ms = [0, 1_000, 30_000, u64::MAX][age as usize];
                let keep_max = [0, 3, 10, u64::MAX][max as usize];
                let before: Vec<(TaskId, TaskState)> =
                    self.s.tasks_after(None).map(|t| (t.id, t.state)).collect();
                let r = self
                    .s
                    .apply(now, Event::Retire { keep_ms, keep_max })
                    .unwrap();
                self.check();
                for (job, range) in &r.retired {
                    assert!(self.s.job_retired(*job));
                    for n in range.first.0..range.first.0 + range.count as u64 {
                        let t = TaskId(n);
                        let was = before.iter().find(|(id, _)| *id == t).map(|x| x.1);
                        assert!(was.is_some_and(|s| s.is_final()), "retired {t} was {was:?}");
                        assert!(self.s.task_retired(t));
                        assert!(self.s.resolve(&DepRef::Id(t)).is_err());
                        self.retired.push(t);
                    }
                }
                // Complete: nothing old enough, or over the cap, is left that could go.
                let cut = self.now.checked_sub(keep_ms);
                let over = self.s.finished_held() > keep_max;
                for v in self.s.tasks_after(None) {
                    let job_done = self
                        .s
                        .tasks_after(None)
                        .filter(|o| o.job == v.job)
                        .all(|o| o.state.is_final() && o.worker.is_none());
                    let pinned = self.s.tasks_after(None).any(|o| {
                        !o.state.is_final()
                            && o.deps
                                .iter()
                                .any(|d| self.s.task(*d).is_some_and(|p| p.job == v.job))
                    });
                    let old = cut.is_some_and(|c| {
                        self.s
                            .tasks_after(None)
                            .filter(|o| o.job == v.job)
                            .all(|o| o.ended_at.is_some_and(|e| e.0 <= c))
                    });
                    assert!(
                        !(job_done && !pinned && (old || over)),
                        "task {} of job {} could have been retired\n{}",
                        v.id,
                        v.job,
                        self.log.join("\n")
                    );
                }
                format!("retire {keep_ms} {keep_max}: {:?}", r.retired)
            }
        };
        self.check();
        for t in &self.retired {
            assert!(self.s.task(*t).is_none() && self.s.task_retired(*t));
        }
        out
    }
}

fn replay(ops: &[Op]) -> Run {
    let mut r = Run {
        // Without prefetch: the model here tracks placements, not worker queues.
        s: Scheduler::new(drover_sched::SchedulerConfig {
            policy: drover_types::PolicyConfig {
                prefetch_per_worker: 0,
                ..Default::default()
            },
            ..Default::default()
        }),
        now: 1_000,
        retired: Vec::new(),
        log: Vec::new(),
    };
    for w in 0..2 {
        r.s.apply(
            Millis(0),
            Event::WorkerJoin {
                spec: worker(&format!("w{w}"), 2, 4),
                running: vec![],
            },
        )
        .unwrap();
    }
    for op in ops {
        let line = r.step(op.clone());
        r.log.push(line);
    }
    r
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]
    #[test]
    fn retirement_keeps_the_core_sound(ops in prop::collection::vec(op(), 1..120), cut in 0usize..120) {
        let cut = cut.min(ops.len());
        let mut a = replay(&ops[..cut]);
        // Through JSON, as a snapshot file would go.
        let json = serde_json::to_string(&a.s.snapshot()).unwrap();
        let mut b = Run {
            s: Scheduler::restore(serde_json::from_str(&json).unwrap()),
            now: a.now,
            retired: a.retired.clone(),
            log: a.log.clone(),
        };
        b.check();
        for op in &ops[cut..] {
            let (x, y) = (a.step(op.clone()), b.step(op.clone()));
            prop_assert_eq!(&x, &y);
            a.log.push(x);
            b.log.push(y);
        }
        prop_assert_eq!(a.s.next_task_id(), b.s.next_task_id());
    }
}
