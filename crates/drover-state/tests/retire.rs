//! Retirement through the state machine: a `Retire` command removes complete jobs
//! with their results, reports the retired ranges (for the servers' output files),
//! derives no event, and gives the same state on a replica restored from a snapshot.

use drover_proto::worker::{AttemptReport, AttemptUsage};
use drover_sched::{SchedulerConfig, TaskRange};
use drover_state::{Command, CommandResult, Dispatch, LogEntry, StateMachine};
use drover_types::{JobSpec, Millis, Outcome, Resources, TaskId, TaskSpec, WorkerSpec};

fn apply(
    m: &mut StateMachine,
    index: u64,
    now: u64,
    commands: Vec<Command>,
) -> drover_state::Output {
    m.apply_indexed(
        index,
        &LogEntry {
            now: Millis(now),
            commands,
        },
    )
}

/// Runs every start of `out` to success, in one entry.
fn finish_all(
    m: &mut StateMachine,
    index: u64,
    now: u64,
    out: &drover_state::Output,
) -> drover_state::Output {
    let mut commands = Vec::new();
    for d in &out.dispatches {
        if let Dispatch::Start { worker, start } = d {
            commands.push(Command::TaskStarted {
                task: start.task,
                attempt: start.attempt,
                worker: *worker,
                gpus: Vec::new(),
            });
            commands.push(Command::TaskFinished {
                worker: *worker,
                report: AttemptReport {
                    task: start.task,
                    attempt: start.attempt,
                    outcome: Outcome::Exited { code: 0 },
                    usage: AttemptUsage::default(),
                    result: format!("r{}", start.task.0),
                    stdout_bytes: 3,
                    stderr_bytes: 0,
                    output_truncated: false,
                    digest: String::new(),
                },
            });
        }
    }
    apply(m, index, now, commands)
}

#[test]
fn a_retirement_removes_jobs_and_results_and_reports_the_ranges() {
    let mut m = StateMachine::new(SchedulerConfig::default());
    apply(
        &mut m,
        1,
        1_000,
        vec![Command::WorkerJoin {
            spec: WorkerSpec {
                name: "w".into(),
                capacity: Resources {
                    cpu_milli: 8_000,
                    memory_bytes: 8 << 30,
                    ..Resources::default()
                },
                ..WorkerSpec::default()
            },
            running: vec![],
        }],
    );
    let job = |name: &str| Command::Submit {
        job: JobSpec {
            name: name.into(),
            owner: String::new(),
            tasks: vec![TaskSpec::command(["true"]), TaskSpec::command(["true"])],
        },
        idempotency: None,
        submitter: None,
        staged: None,
    };
    let out = apply(&mut m, 2, 1_000, vec![job("a")]);
    let out = finish_all(&mut m, 3, 1_010, &out);
    assert!(
        out.dispatches
            .iter()
            .all(|d| matches!(d, Dispatch::FinishedAck { .. }))
    );
    let out = apply(&mut m, 4, 2_000, vec![job("b")]);
    finish_all(&mut m, 5, 2_010, &out);
    assert_eq!(
        m.record(TaskId(1))
            .and_then(|r| r.result.clone())
            .as_deref(),
        Some("r1")
    );
    let before = serde_json::to_string(&m.snapshot()).unwrap();

    // Kept 1 s: at 2.5 s the first job (done at 1.01 s) goes, the second stays.
    let retire = Command::Retire {
        keep_ms: 1_000,
        keep_max: u64::MAX,
    };
    let out = apply(&mut m, 6, 2_500, vec![retire.clone()]);
    assert_eq!(
        out.results,
        vec![CommandResult::Retired { jobs: 1, tasks: 2 }]
    );
    assert_eq!(
        out.retired,
        vec![TaskRange {
            first: TaskId(1),
            count: 2
        }]
    );
    assert!(
        out.events.is_empty(),
        "a retirement emits no event: {:?}",
        out.events
    );
    assert!(m.record(TaskId(1)).is_none());
    assert!(m.job(drover_types::JobId(1)).is_none());
    assert!(m.scheduler().task_retired(TaskId(2)));
    assert!(m.record(TaskId(3)).is_some());
    m.scheduler().check_invariants().unwrap();

    // A replica restored from the snapshot taken before applies the same entry alike.
    let mut replica = StateMachine::restore(serde_json::from_str(&before).unwrap());
    let again = apply(&mut replica, 6, 2_500, vec![retire]);
    assert_eq!(again.results, out.results);
    assert_eq!(again.retired, out.retired);
    assert_eq!(
        serde_json::to_string(&replica.snapshot()).unwrap(),
        serde_json::to_string(&m.snapshot()).unwrap()
    );
    // And a snapshot taken after restores with the holes in place.
    let after = StateMachine::restore(
        serde_json::from_str(&serde_json::to_string(&m.snapshot()).unwrap()).unwrap(),
    );
    after.scheduler().check_invariants().unwrap();
    assert!(after.scheduler().task_retired(TaskId(1)));
    assert_eq!(after.scheduler().next_task_id(), TaskId(5));
}
