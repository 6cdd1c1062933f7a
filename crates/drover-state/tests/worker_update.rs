//! `Command::WorkerUpdate`: a worker's measured load and live data keys reach the core
//! through the log, steer placement identically on every replica, survive the binary
//! snapshot, and an update for an unknown worker is refused without a change.

use drover_sched::SchedulerConfig;
use drover_state::{
    Command, CommandResult, Dispatch, LogEntry, SnapshotReader, StateMachine, write_snapshot,
};
use drover_types::{
    JobSpec, Millis, PlacementPolicyKind, PolicyConfig, Resources, TaskId, TaskSpec, WorkerId,
    WorkerSpec, WorkerUsage,
};
use std::io::Cursor;

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

fn update(worker: u32, cpu_milli: u32, keys: Option<&[&str]>) -> Command {
    Command::WorkerUpdate {
        worker: WorkerId(worker),
        usage: WorkerUsage {
            cpu_milli,
            ..WorkerUsage::default()
        },
        data_keys: keys.map(|k| k.iter().map(|s| s.to_string()).collect()),
    }
}

fn submit(inputs: &[&str]) -> Command {
    Command::Submit {
        job: JobSpec {
            name: "j".into(),
            owner: String::new(),
            tasks: vec![TaskSpec {
                inputs: inputs.iter().map(|s| s.to_string()).collect(),
                ..TaskSpec::command(["true"])
            }],
        },
        idempotency: None,
        submitter: None,
        staged: None,
    }
}

fn started_on(dispatches: &[Dispatch]) -> Vec<(TaskId, WorkerId)> {
    dispatches
        .iter()
        .filter_map(|d| match d {
            Dispatch::Start { worker, start } => Some((start.task, *worker)),
            _ => None,
        })
        .collect()
}

fn machine() -> StateMachine {
    StateMachine::new(SchedulerConfig {
        policy: PolicyConfig {
            placement: PlacementPolicyKind::LoadAware,
            prefetch_per_worker: 0,
            ..PolicyConfig::default()
        },
        ..SchedulerConfig::default()
    })
}

#[test]
fn updates_steer_placement_the_same_on_every_replica_and_survive_a_snapshot() {
    let log = vec![
        entry(1_000, vec![join("a"), join("b"), join("c")]),
        entry(
            1_010,
            vec![
                update(1, 3000, Some(&["part1"])),
                update(2, 500, None),
                update(3, 2000, None),
            ],
        ),
        // Task 1 reads part1: the holder, a, though the busiest.
        entry(1_020, vec![submit(&["part1"])]),
        // Task 2 reads nothing anybody holds: the least loaded, b.
        entry(1_030, vec![submit(&[])]),
    ];
    let mut replicas = [machine(), machine()];
    let mut placed = Vec::new();
    for e in &log {
        let outs: Vec<_> = replicas.iter_mut().map(|m| m.apply(e)).collect();
        assert_eq!(outs[0].0, outs[1].0, "same results on every replica");
        assert_eq!(outs[0].1, outs[1].1, "same dispatches on every replica");
        assert!(
            outs[0]
                .0
                .iter()
                .all(|r| !matches!(r, CommandResult::Rejected(_))),
            "{:?}",
            outs[0].0
        );
        placed.extend(started_on(&outs[0].1));
    }
    assert_eq!(
        placed,
        vec![(TaskId(1), WorkerId(1)), (TaskId(2), WorkerId(2))]
    );
    let sched = replicas[0].scheduler();
    assert_eq!(
        sched.placement_note(TaskId(1)).as_deref(),
        Some("placed on a: holds input part1")
    );

    // Through the binary snapshot and back: the keys and the load are there, and the
    // restored machine places the next task as the original does.
    let bytes = write_snapshot(b"m", &replicas[0].snapshot(), Cursor::new(Vec::new()))
        .unwrap()
        .into_inner();
    let mut restored =
        StateMachine::restore(SnapshotReader::open(&bytes[..]).unwrap().state().unwrap());
    let w = restored.scheduler().worker(WorkerId(1)).unwrap();
    assert_eq!(w.spec.data_keys, vec!["part1".to_string()]);
    assert_eq!(w.usage.cpu_milli, 3000);
    let next = entry(1_040, vec![submit(&[])]);
    let (_, original) = replicas[0].apply(&next);
    let (_, again) = restored.apply(&next);
    assert_eq!(started_on(&original), started_on(&again));
    // b now holds one task (1 of 4 cpus reserved: 250 ‰, above its 125 ‰ measured),
    // c is at 500 ‰: b again.
    assert_eq!(started_on(&again), vec![(TaskId(3), WorkerId(2))]);
    restored.scheduler().check_invariants().unwrap();
}

#[test]
fn an_update_for_an_unknown_worker_is_refused() {
    let mut m = machine();
    let (results, _) = m.apply(&entry(1_000, vec![update(7, 100, Some(&["x"]))]));
    match &results[0] {
        CommandResult::Rejected(r) => assert_eq!(r.code, "not_found"),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[test]
fn the_command_round_trips_through_the_log_format() {
    for c in [update(2, 1500, Some(&["a/b", "c"])), update(2, 0, None)] {
        let text = serde_json::to_string(&c).unwrap();
        let back: Command = serde_json::from_str(&text).unwrap();
        assert_eq!(back, c, "{text}");
    }
    // Without data keys, the field is left out (and read back as "unchanged").
    let text = serde_json::to_string(&update(2, 0, None)).unwrap();
    assert!(!text.contains("data_keys"), "{text}");
}
