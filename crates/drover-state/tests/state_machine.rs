//! The state machine's contract with the replicated log: the same entries give the same
//! state and the same dispatches everywhere; a snapshot restores an equivalent machine;
//! results flow from parents to their dependents; stale reports change nothing.

use drover_proto::worker::{AttemptReport, AttemptUsage};
use drover_sched::{CancelTarget, SchedulerConfig};
use drover_state::{Command, CommandResult, Dispatch, LogEntry, StateMachine};
use drover_types::{
    ArraySpec, Attempt, DepRef, JobSpec, Millis, Outcome, Resources, TaskId, TaskSpec, TaskState,
    WorkerId, WorkerSpec,
};

fn entry(now: u64, commands: Vec<Command>) -> LogEntry {
    LogEntry {
        now: Millis(now),
        commands,
    }
}

fn worker(name: &str, cpus: u32) -> Command {
    Command::WorkerJoin {
        spec: WorkerSpec {
            name: name.into(),
            capacity: Resources {
                cpu_milli: cpus * 1000,
                memory_bytes: 8 << 30,
                ..Resources::default()
            },
            ..WorkerSpec::default()
        },
        running: vec![],
    }
}

fn finished(worker: WorkerId, task: TaskId, attempt: Attempt, code: i32, result: &str) -> Command {
    Command::TaskFinished {
        worker,
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
    }
}

fn starts(dispatches: &[Dispatch]) -> Vec<(WorkerId, TaskId, Attempt)> {
    dispatches
        .iter()
        .filter_map(|d| match d {
            Dispatch::Start { worker, start } => Some((*worker, start.task, start.attempt)),
            _ => None,
        })
        .collect()
}

/// Drives a machine like a cluster would: every start is reported started, then
/// finished with the task's index as its result, entry after entry.
fn drive(machine: &mut StateMachine, first: Vec<Command>, rounds: usize) -> Vec<Vec<Dispatch>> {
    let mut log = Vec::new();
    let mut now = 1_000;
    let (_, d) = machine.apply(&entry(now, first));
    let mut pending = starts(&d);
    log.push(d);
    for _ in 0..rounds {
        now += 10;
        let mut commands = Vec::new();
        for (w, t, a) in pending.drain(..) {
            commands.push(Command::TaskStarted {
                task: t,
                attempt: a,
                worker: w,
                gpus: Vec::new(),
            });
            commands.push(finished(w, t, a, 0, &t.0.to_string()));
        }
        if commands.is_empty() {
            commands.push(Command::Tick);
        }
        let (_, d) = machine.apply(&entry(now, commands));
        pending = starts(&d);
        log.push(d);
    }
    log
}

fn dag_job() -> JobSpec {
    let mut part = TaskSpec::command(["part"]);
    part.key = Some("part".into());
    part.array = Some(ArraySpec { start: 0, end: 5 });
    let mut combine = TaskSpec::command(["combine"]);
    combine.key = Some("combine".into());
    combine.after = vec![DepRef::Key("part".into())];
    JobSpec {
        name: "dag".into(),
        owner: String::new(),
        tasks: vec![part, combine],
    }
}

fn setup() -> Vec<Command> {
    vec![
        worker("a", 2),
        worker("b", 1),
        Command::Submit {
            job: dag_job(),
            idempotency: None,
            submitter: None,
            staged: None,
        },
    ]
}

#[test]
fn the_same_entries_give_the_same_dispatches_and_state() {
    let mut one = StateMachine::new(SchedulerConfig::default());
    let mut two = StateMachine::new(SchedulerConfig::default());
    let a = drive(&mut one, setup(), 12);
    let b = drive(&mut two, setup(), 12);
    assert_eq!(a, b);
    let snap_a = serde_json::to_string(&one.snapshot()).unwrap();
    let snap_b = serde_json::to_string(&two.snapshot()).unwrap();
    assert_eq!(snap_a, snap_b);
}

#[test]
fn parents_results_reach_the_combine_step_in_order() {
    let mut m = StateMachine::new(SchedulerConfig::default());
    let log = drive(&mut m, setup(), 12);
    let combine_start = log
        .iter()
        .flatten()
        .find_map(|d| match d {
            Dispatch::Start { start, .. } if start.spec.command == ["combine"] => {
                Some(start.clone())
            }
            _ => None,
        })
        .expect("the combine task started");
    // The six parts are tasks 1..=6; each reported its own id as its result.
    assert_eq!(combine_start.inputs, vec!["1", "2", "3", "4", "5", "6"]);
    let sched = m.scheduler();
    assert!((1..=7).all(|i| sched.task(TaskId(i)).unwrap().state == TaskState::Succeeded));
    assert_eq!(m.record(TaskId(7)).unwrap().result.as_deref(), Some("7"));
}

#[test]
fn a_restored_snapshot_behaves_like_the_original() {
    let mut original = StateMachine::new(SchedulerConfig::default());
    let (_, d) = original.apply(&entry(1_000, setup()));
    let first_starts = starts(&d);
    assert!(!first_starts.is_empty());
    let json = serde_json::to_string(&original.snapshot()).unwrap();
    let mut restored = StateMachine::restore(serde_json::from_str(&json).unwrap());
    let next: Vec<Command> = first_starts
        .iter()
        .flat_map(|(w, t, a)| {
            [
                Command::TaskStarted {
                    task: *t,
                    attempt: *a,
                    worker: *w,
                    gpus: Vec::new(),
                },
                finished(*w, *t, *a, 0, "x"),
            ]
        })
        .collect();
    let e = entry(2_000, next);
    assert_eq!(original.apply(&e), restored.apply(&e));
    assert_eq!(
        serde_json::to_string(&original.snapshot()).unwrap(),
        serde_json::to_string(&restored.snapshot()).unwrap()
    );
}

/// A snapshot written before the core kept job names still resolves `JOB_NAME/KEY`:
/// the core learns the names from the state machine's own job records.
#[test]
fn a_snapshot_without_job_names_in_the_core_learns_them_on_restore() {
    let mut m = StateMachine::new(SchedulerConfig::default());
    let job = |name: &str| Command::Submit {
        job: JobSpec {
            name: name.into(),
            tasks: vec![TaskSpec {
                key: Some("part".into()),
                ..TaskSpec::command(["true"])
            }],
            ..JobSpec::default()
        },
        idempotency: None,
        submitter: None,
        staged: None,
    };
    m.apply(&entry(
        1_000,
        vec![job("nightly"), job(""), job("nightly"), job("other")],
    ));
    let mut old: serde_json::Value = serde_json::to_value(m.snapshot()).unwrap();
    let sched = old["sched"].as_object_mut().unwrap();
    assert!(sched.remove("job_names").is_some());
    for j in sched["jobs"].as_array_mut().unwrap() {
        assert!(j.as_object_mut().unwrap().remove("name").is_some());
    }
    let restored = StateMachine::restore(serde_json::from_value(old).unwrap());
    restored.scheduler().check_invariants().unwrap();
    let resolve = |r: &str| {
        restored
            .scheduler()
            .resolve(&DepRef::Key(r.into()))
            .map(|t| t.first)
    };
    assert_eq!(resolve("nightly/part"), Ok(TaskId(3)));
    assert_eq!(resolve("other/part"), Ok(TaskId(4)));
    assert_eq!(
        serde_json::to_string(&restored.snapshot()).unwrap(),
        serde_json::to_string(&m.snapshot()).unwrap(),
        "the same state as if the names had been there"
    );
}

#[test]
fn a_stale_report_is_rejected_changes_nothing_and_is_still_acknowledged() {
    let mut m = StateMachine::new(SchedulerConfig::default());
    let (_, d) = m.apply(&entry(1_000, setup()));
    let (w, t, a) = starts(&d)[0];
    let stale = Attempt(a.0 + 5);
    let before = serde_json::to_string(&m.snapshot()).unwrap();
    // Same instant, so that the only possible change is the report's.
    let (results, dispatches) = m.apply(&entry(1_000, vec![finished(w, t, stale, 0, "late")]));
    assert!(
        matches!(&results[0], CommandResult::Rejected(r) if r.code == "stale"),
        "{results:?}"
    );
    assert!(dispatches.contains(&Dispatch::FinishedAck {
        worker: w,
        task: t,
        attempt: stale
    }));
    assert_eq!(before, serde_json::to_string(&m.snapshot()).unwrap());
}

#[test]
fn submissions_and_cancellations_answer_per_command() {
    let mut m = StateMachine::new(SchedulerConfig::default());
    let (results, _) = m.apply(&entry(
        1_000,
        vec![
            Command::Submit {
                job: dag_job(),
                idempotency: None,
                submitter: None,
                staged: None,
            },
            Command::Submit {
                job: JobSpec {
                    tasks: vec![TaskSpec::default()],
                    ..JobSpec::default()
                },
                idempotency: None,
                submitter: None,
                staged: None,
            },
            Command::Cancel {
                target: CancelTarget::Task(TaskId(7)),
            },
        ],
    ));
    assert!(
        matches!(&results[0], CommandResult::Submitted { tasks, .. } if tasks.first == TaskId(1) && tasks.count == 7)
    );
    assert!(
        matches!(&results[1], CommandResult::Rejected(r) if r.field.as_deref() == Some("tasks[0].command")),
        "{:?}",
        results[1]
    );
    assert_eq!(results[2], CommandResult::Cancelled { count: 1 });
    let job = m.job(drover_types::JobId(1)).unwrap();
    assert_eq!(
        (job.first, job.count, job.name.as_str()),
        (TaskId(1), 7, "dag")
    );
}
