//! Events derived while applying: the same entries give the same events with the same
//! ids on every replica, and a task's lifecycle reads as it happened.

use drover_proto::events::{ClusterEvent, EventBody, EventId, WorkerChange};
use drover_proto::worker::{AttemptReport, AttemptUsage};
use drover_sched::SchedulerConfig;
use drover_state::{Command, LogEntry, StateMachine};
use drover_types::{
    Attempt, JobId, JobSpec, Millis, Outcome, Resources, TaskId, TaskSpec, TaskState, WorkerId,
    WorkerSpec,
};

fn entry(now: u64, commands: Vec<Command>) -> LogEntry {
    LogEntry {
        now: Millis(now),
        commands,
    }
}

fn join(name: &str) -> Command {
    Command::WorkerJoin {
        spec: WorkerSpec {
            name: name.into(),
            capacity: Resources {
                cpu_milli: 4000,
                memory_bytes: 8 << 30,
                ..Resources::default()
            },
            ..WorkerSpec::default()
        },
        running: vec![],
    }
}

fn submit(name: &str, n: usize) -> Command {
    Command::Submit {
        job: JobSpec {
            name: name.into(),
            owner: String::new(),
            tasks: (0..n)
                .map(|i| TaskSpec::command(["t".to_string(), i.to_string()]))
                .collect(),
        },
        idempotency: None,
        submitter: None,
        staged: None,
    }
}

fn finished(task: u64, code: i32) -> Command {
    Command::TaskFinished {
        worker: WorkerId(1),
        report: AttemptReport {
            task: TaskId(task),
            attempt: Attempt(1),
            outcome: Outcome::Exited { code },
            usage: AttemptUsage::default(),
            result: String::new(),
            stdout_bytes: 0,
            stderr_bytes: 0,
            output_truncated: false,
            digest: String::new(),
        },
    }
}

fn started(task: u64) -> Command {
    Command::TaskStarted {
        task: TaskId(task),
        attempt: Attempt(1),
        worker: WorkerId(1),
        gpus: Vec::new(),
    }
}

fn log() -> Vec<LogEntry> {
    vec![
        entry(1_000, vec![join("w")]),
        entry(1_010, vec![submit("two", 2)]),
        entry(1_020, vec![started(1), started(2)]),
        entry(1_030, vec![finished(1, 0), finished(2, 3)]),
        entry(
            1_040,
            vec![Command::WorkerDrain {
                worker: WorkerId(1),
            }],
        ),
        entry(
            1_050,
            vec![Command::WorkerDrain {
                worker: WorkerId(1),
            }],
        ),
        entry(
            1_060,
            vec![Command::WorkerResume {
                worker: WorkerId(1),
            }],
        ),
        entry(
            1_070,
            vec![Command::WorkerLost {
                worker: WorkerId(1),
            }],
        ),
    ]
}

fn run(log: &[LogEntry]) -> Vec<ClusterEvent> {
    let mut m = StateMachine::new(SchedulerConfig::default());
    let mut all = Vec::new();
    for (i, e) in log.iter().enumerate() {
        all.extend(m.apply_indexed(i as u64 + 1, e).events);
    }
    all
}

#[test]
fn two_replicas_derive_the_same_events_with_the_same_ids() {
    let a = run(&log());
    let b = run(&log());
    assert!(!a.is_empty());
    assert_eq!(a, b);
    // Strictly increasing ids, numbered from 0 within each entry.
    for w in a.windows(2) {
        assert!(w[0].id < w[1].id, "{} then {}", w[0].id, w[1].id);
    }
    let mut seq = 0;
    let mut index = 0;
    for e in &a {
        if e.id.index != index {
            index = e.id.index;
            seq = 0;
        }
        assert_eq!(e.id, EventId::new(index, seq));
        seq += 1;
    }
}

#[test]
fn a_task_lifecycle_reads_as_it_happened() {
    let events = run(&log());
    let states: Vec<(u64, TaskState, TaskState, Option<WorkerId>)> = events
        .iter()
        .filter_map(|e| match &e.body {
            EventBody::Task {
                task,
                from,
                state,
                worker,
                ..
            } if *task == TaskId(1) => Some((e.id.index, *from, *state, *worker)),
            _ => None,
        })
        .collect();
    assert_eq!(
        states,
        vec![
            (2, TaskState::Waiting, TaskState::Ready, None),
            (2, TaskState::Ready, TaskState::Assigned, Some(WorkerId(1))),
            (
                3,
                TaskState::Assigned,
                TaskState::Running,
                Some(WorkerId(1))
            ),
            (
                4,
                TaskState::Running,
                TaskState::Succeeded,
                Some(WorkerId(1))
            ),
        ]
    );
    // Task 2 failed with its exit code in the event.
    let failed = events
        .iter()
        .find_map(|e| match &e.body {
            EventBody::Task {
                task,
                state: TaskState::Failed,
                outcome,
                attempt,
                ..
            } if *task == TaskId(2) => Some((outcome.clone(), *attempt)),
            _ => None,
        })
        .expect("task 2 failed");
    assert_eq!(failed, (Some(Outcome::Exited { code: 3 }), Attempt(1)));
    // Job progress: submitted (0 of 2), then both done in one entry, one failed.
    let jobs: Vec<(u64, u64, u64, u64)> = events
        .iter()
        .filter_map(|e| match &e.body {
            EventBody::Job {
                job,
                done,
                failed,
                total,
                ..
            } => {
                assert_eq!(*job, JobId(1));
                Some((e.id.index, *done, *failed, *total))
            }
            _ => None,
        })
        .collect();
    assert_eq!(jobs, vec![(2, 0, 0, 2), (4, 2, 1, 2)]);
    // Worker changes; the second drain changed nothing and says nothing.
    let workers: Vec<(u64, WorkerChange)> = events
        .iter()
        .filter_map(|e| match &e.body {
            EventBody::Worker { change, .. } => Some((e.id.index, *change)),
            _ => None,
        })
        .collect();
    assert_eq!(
        workers,
        vec![
            (1, WorkerChange::Joined),
            (5, WorkerChange::Drained),
            (7, WorkerChange::Resumed),
            (8, WorkerChange::Lost),
        ]
    );
}

#[test]
fn a_restored_machine_goes_on_with_the_same_events_and_progress() {
    let log = log();
    let mut a = StateMachine::new(SchedulerConfig::default());
    for (i, e) in log[..2].iter().enumerate() {
        a.apply_indexed(i as u64 + 1, e);
    }
    let mut b = StateMachine::restore(a.snapshot());
    for (i, e) in log.iter().enumerate().skip(2) {
        let ea = a.apply_indexed(i as u64 + 1, e).events;
        let eb = b.apply_indexed(i as u64 + 1, e).events;
        assert_eq!(ea, eb);
    }
}

#[test]
fn a_policy_switch_is_an_event() {
    let mut m = StateMachine::new(SchedulerConfig::default());
    let policy = drover_types::PolicyConfig {
        prefetch_per_worker: 2,
        ..Default::default()
    };
    let out = m.apply_indexed(
        9,
        &entry(
            5,
            vec![Command::SetPolicy {
                policy: policy.clone(),
            }],
        ),
    );
    assert_eq!(out.events.len(), 1);
    assert_eq!(out.events[0].id, EventId::new(9, 0));
    assert_eq!(out.events[0].body, EventBody::Policy { policy });
}
