//! Checkpoints in the state machine: `CheckpointSaved` records the latest version (an
//! older or repeated one is refused), the next attempt's start carries it, and which
//! checkpoint each attempt started from is remembered.

use drover_proto::checkpoint::CheckpointRef;
use drover_proto::worker::{AttemptReport, AttemptUsage};
use drover_sched::SchedulerConfig;
use drover_state::{Command, CommandResult, Dispatch, LogEntry, StateMachine};
use drover_types::{
    Attempt, CheckpointSpec, JobSpec, Millis, Outcome, Resources, RetryPolicy, TaskId, TaskSpec,
    WorkerId, WorkerSpec,
};

fn entry(now: u64, commands: Vec<Command>) -> LogEntry {
    LogEntry {
        now: Millis(now),
        commands,
    }
}

fn saved(task: TaskId, attempt: u32, version: u32) -> Command {
    Command::CheckpointSaved {
        task,
        checkpoint: CheckpointRef {
            attempt: Attempt(attempt),
            version,
            size: 10,
            digest: format!("d{attempt}.{version}"),
            saved_at: Millis(0),
        },
    }
}

fn start_of(d: &[Dispatch]) -> Option<drover_proto::worker::StartTask> {
    d.iter().find_map(|d| match d {
        Dispatch::Start { start, .. } => Some((**start).clone()),
        _ => None,
    })
}

#[test]
fn the_latest_checkpoint_is_recorded_and_the_next_attempt_resumes_from_it() {
    let mut m = StateMachine::new(SchedulerConfig::default());
    let join = Command::WorkerJoin {
        spec: WorkerSpec {
            name: "w".into(),
            capacity: Resources::cpus(1000),
            ..WorkerSpec::default()
        },
        running: vec![],
    };
    let w = WorkerId(1);
    let spec = TaskSpec {
        checkpoint: Some(CheckpointSpec { interval_ms: 1000 }),
        retry: RetryPolicy {
            max_attempts: 3,
            backoff: drover_types::Backoff {
                initial_ms: 0,
                ..Default::default()
            },
            ..Default::default()
        },
        ..TaskSpec::command(["count"])
    };
    let plain = TaskSpec::command(["true"]);
    let submit = Command::Submit {
        job: JobSpec {
            name: "j".into(),
            tasks: vec![spec],
            ..Default::default()
        },
        idempotency: None,
        submitter: None,
        staged: None,
    };
    let (_, d) = m.apply(&entry(1_000, vec![join, submit]));
    let t = TaskId(1);
    let first = start_of(&d).expect("a start");
    assert_eq!(first.resume, None, "nothing to resume from yet");
    m.apply(&entry(
        1_010,
        vec![Command::TaskStarted {
            task: t,
            attempt: Attempt(1),
            worker: w,
            gpus: Vec::new(),
        }],
    ));

    let (results, _) = m.apply(&entry(
        2_000,
        vec![
            saved(t, 1, 1),
            saved(t, 1, 2),
            saved(t, 1, 2),
            saved(t, 1, 1),
        ],
    ));
    assert_eq!(results[0], CommandResult::Done);
    assert_eq!(results[1], CommandResult::Done);
    for r in &results[2..] {
        assert!(
            matches!(r, CommandResult::Rejected(r) if r.code == "stale"),
            "{r:?}"
        );
    }
    // A checkpoint for an attempt the task never had is refused too.
    let (results, _) = m.apply(&entry(2_001, vec![saved(t, 5, 1)]));
    assert!(matches!(&results[0], CommandResult::Rejected(r) if r.code == "stale"));
    let latest = m.record(t).unwrap().checkpoint.clone().unwrap();
    assert_eq!(
        (latest.attempt, latest.version, latest.saved_at),
        (Attempt(1), 2, Millis(2_000))
    );

    // The attempt fails; the retry's start names the checkpoint, and the state says so.
    let end = Command::TaskFinished {
        worker: w,
        report: AttemptReport {
            task: t,
            attempt: Attempt(1),
            outcome: Outcome::Exited { code: 1 },
            usage: AttemptUsage::default(),
            result: String::new(),
            stdout_bytes: 0,
            stderr_bytes: 0,
            output_truncated: false,
            digest: String::new(),
        },
    };
    let (_, d) = m.apply(&entry(3_000, vec![end]));
    let retry = start_of(&d).expect("the retry starts");
    assert_eq!(retry.attempt, Attempt(2));
    assert_eq!(retry.resume.as_ref(), Some(&latest));
    assert_eq!(
        m.record(t).unwrap().resumed,
        vec![(Attempt(2), latest.clone())]
    );
    // A start sent again (after a reconnect) names the same checkpoint.
    assert_eq!(m.start_message(t, Attempt(2)).unwrap().resume, Some(latest));

    // A task that does not checkpoint takes none.
    let (_, _) = m.apply(&entry(
        4_000,
        vec![Command::Submit {
            job: JobSpec {
                name: "p".into(),
                tasks: vec![plain],
                ..Default::default()
            },
            idempotency: None,
            submitter: None,
            staged: None,
        }],
    ));
    let (results, _) = m.apply(&entry(4_001, vec![saved(TaskId(2), 1, 1)]));
    assert!(matches!(&results[0], CommandResult::Rejected(r) if r.code == "invalid_request"));
}
