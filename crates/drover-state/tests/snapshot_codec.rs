//! The binary snapshot format: a rich state (every task state, jobs, arrays, workers in
//! every state, a non-default policy, specs with every field set) survives the trip
//! through postcard, the restored machine behaves exactly like the original, and a
//! damaged or foreign file is refused with a typed error.

use drover_proto::worker::{AttemptReport, AttemptUsage};
use drover_sched::{CancelTarget, SchedulerConfig};
use drover_state::{
    Command, Dispatch, FORMAT_VERSION, LogEntry, SnapshotCodecError, SnapshotReader, StateMachine,
    write_snapshot,
};
use drover_types::{
    ArraySpec, Attempt, Backoff, DepRef, JobSpec, LabelSelector, Millis, Outcome,
    PlacementPolicyKind, PolicyConfig, QueuePolicyKind, Resources, RetryPolicy, SelectorOp, TaskId,
    TaskSpec, TaskState, WorkerId, WorkerSpec,
};
use std::collections::{BTreeMap, BTreeSet};
use std::io::Cursor;

fn entry(now: u64, commands: Vec<Command>) -> LogEntry {
    LogEntry {
        now: Millis(now),
        commands,
    }
}

fn worker(name: &str, cpus: u32, labels: &[(&str, &str)]) -> Command {
    Command::WorkerJoin {
        spec: WorkerSpec {
            name: name.into(),
            capacity: Resources {
                cpu_milli: cpus * 1000,
                memory_bytes: 16 << 30,
                disk_bytes: 100 << 30,
                gpus: 1,
                custom: BTreeMap::from([("licenses".to_string(), 4)]),
            },
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            data_keys: vec![format!("{name}-data")],
            drivers: vec!["process".into(), "docker".into()],
            isolation: drover_types::Isolation {
                enforced: vec![
                    drover_types::EnforcedLimit::Memory,
                    drover_types::EnforcedLimit::Cpu,
                    drover_types::EnforcedLimit::Pids,
                ],
                mechanism: "cgroup v1 (memory, cpuacct, cpu, pids)".into(),
                gpu_ids: vec![cpus],
            },
        },
        running: vec![],
    }
}

fn report(worker: WorkerId, task: TaskId, attempt: Attempt, outcome: Outcome) -> Command {
    Command::TaskFinished {
        worker,
        report: AttemptReport {
            task,
            attempt,
            outcome,
            usage: AttemptUsage {
                wall_ms: 12,
                cpu_time_ms: 7,
                peak_memory_bytes: 1 << 20,
                read_bytes: 3,
                write_bytes: 4,
            },
            result: format!("result of {task}"),
            stdout_bytes: 100,
            stderr_bytes: 5,
            output_truncated: task.0.is_multiple_of(2),
            digest: String::new(),
        },
    }
}

fn task(name: &str) -> TaskSpec {
    TaskSpec {
        key: Some(name.into()),
        name: format!("the {name} task"),
        command: vec![name.into(), "--flag".into()],
        ..TaskSpec::default()
    }
}

/// A spec with every field away from its default (the ones JSON leaves out when empty
/// are exactly the ones a positional format must still write).
fn full_spec(name: &str) -> TaskSpec {
    TaskSpec {
        key: Some(name.into()),
        name: "everything set".into(),
        command: vec!["sh".into(), "-c".into(), "echo hi".into()],
        shell: true,
        env: BTreeMap::from([("A".into(), "1".into()), ("B".into(), "".into())]),
        secret_env: BTreeMap::from([("S".into(), drover_types::SecretString::new("s3"))]),
        workdir: Some("/tmp".into()),
        resources: Resources {
            cpu_milli: 500,
            memory_bytes: 1 << 20,
            disk_bytes: 1 << 10,
            gpus: 0,
            custom: BTreeMap::from([("licenses".into(), 1)]),
        },
        after: vec![DepRef::Key("ok".into())],
        priority: -3,
        max_runtime_ms: Some(3_600_000),
        expected_runtime_ms: Some(1_000),
        retry: RetryPolicy {
            max_attempts: 4,
            backoff: Backoff {
                initial_ms: 10,
                multiplier_percent: 150,
                max_ms: 100,
            },
            retry_on_exit_codes: vec![1, 2],
        },
        labels: BTreeMap::from([("team".into(), "x".into())]),
        constraints: vec![LabelSelector {
            key: "zone".into(),
            op: SelectorOp::In,
            values: vec!["a".into(), "b".into()],
        }],
        affinity: vec![LabelSelector {
            key: "ssd".into(),
            op: SelectorOp::Exists,
            values: vec![],
        }],
        inputs: vec!["w1-data".into()],
        owner: "alice".into(),
        array: None,
        // Not written through the core's snapshot either: a split's record carries it
        // (`tests/split.rs`).
        split: None,
        driver: Some("docker".into()),
        image: Some("drover-test-base:1".into()),
        // Not written through the core's snapshot: the state machine's cache table
        // keeps the opt-ins (see `tests/result_cache.rs`).
        cache: None,
        checkpoint: Some(drover_types::CheckpointSpec { interval_ms: 1_000 }),
        preemptible: true,
    }
}

/// Builds a machine holding every task state.
fn rich() -> StateMachine {
    let mut m = StateMachine::new(SchedulerConfig::default());
    let apply = |m: &mut StateMachine, e: LogEntry| m.apply(&e).1;
    let policy = PolicyConfig {
        queue: QueuePolicyKind::FairShare {
            weights: BTreeMap::from([("alice".into(), 3), ("bob".into(), 1)]),
        },
        placement: PlacementPolicyKind::Spread,
        preemption: false,
        preemption_grace_ms: 1_234,
        locality_weight: 7,
        affinity_weight: 9,
        prefetch_per_worker: 0,
    };
    apply(
        &mut m,
        entry(
            1_000,
            vec![
                Command::SetPolicy { policy },
                worker("w1", 16, &[("zone", "a"), ("ssd", "yes")]),
                worker("w2", 16, &[("zone", "b")]),
                worker("w4", 1, &[]),
                Command::WorkerDrain {
                    worker: WorkerId(3),
                },
            ],
        ),
    );
    let mut retry = task("retry");
    retry.retry = RetryPolicy {
        max_attempts: 3,
        backoff: Backoff {
            initial_ms: 600_000,
            multiplier_percent: 200,
            max_ms: 600_000,
        },
        retry_on_exit_codes: vec![],
    };
    let mut ready = task("ready");
    ready.constraints = vec![LabelSelector {
        key: "zone".into(),
        op: SelectorOp::Eq,
        values: vec!["mars".into()],
    }];
    let mut child = task("child");
    child.after = vec![DepRef::Key("fail".into())];
    let mut waiting = task("waiting");
    waiting.after = vec![DepRef::Key("long".into())];
    let mut array = task("array");
    array.array = Some(ArraySpec { start: 0, end: 3 });
    let mut full = full_spec("full");
    full.owner = "bob".into();
    let job = JobSpec {
        name: "rich".into(),
        owner: "alice".into(),
        tasks: vec![
            task("long"),
            task("assigned"),
            task("fail"),
            retry,
            task("ok"),
            task("timeout"),
            task("spawn"),
            task("cancel"),
            ready,
            child,
            waiting,
            array,
            full,
        ],
    };
    let e = entry(
        2_000,
        vec![Command::Submit {
            job,
            idempotency: None,
            submitter: None,
            staged: None,
        }],
    );
    let (r, d) = m.apply(&e);
    assert!(
        matches!(r[0], drover_state::CommandResult::Submitted { .. }),
        "{r:?}"
    );
    let mut next = Vec::new();
    let mut later = Vec::new();
    for d in &d {
        let Dispatch::Start { worker, start } = d else {
            continue;
        };
        let (w, t, a) = (*worker, start.task, start.attempt);
        let started = Command::TaskStarted {
            task: t,
            attempt: a,
            worker: w,
            gpus: vec![t.0 as u32 % 3],
        };
        match start.spec.command[0].as_str() {
            "assigned" => {}
            "cancel" => next.push(Command::Cancel {
                target: CancelTarget::Task(t),
            }),
            "long" => next.push(started),
            "fail" => {
                next.push(started);
                next.push(report(w, t, a, Outcome::Exited { code: 3 }));
            }
            "retry" => {
                next.push(started);
                next.push(report(w, t, a, Outcome::Signaled { signal: 9 }));
            }
            "spawn" => next.push(report(
                w,
                t,
                a,
                Outcome::SpawnFailed {
                    message: "no such program".into(),
                },
            )),
            "timeout" => {
                next.push(started);
                later.push(report(w, t, a, Outcome::TimedOut));
            }
            _ => {
                next.push(started);
                next.push(report(w, t, a, Outcome::Exited { code: 0 }));
            }
        }
    }
    apply(&mut m, entry(3_000, next));
    apply(&mut m, entry(3_500, later));
    // A worker that is then lost, holding a retryable task only it can take.
    let mut doomed = task("doomed");
    doomed.constraints = vec![LabelSelector {
        key: "role".into(),
        op: SelectorOp::Eq,
        values: vec!["doomed".into()],
    }];
    doomed.retry.max_attempts = 2;
    // Task 5 ("ok") has succeeded; a dependency by id across jobs.
    doomed.after = vec![DepRef::Id(TaskId(5))];
    apply(
        &mut m,
        entry(4_000, vec![worker("w3", 1, &[("role", "doomed")])]),
    );
    apply(
        &mut m,
        entry(
            4_100,
            vec![Command::Submit {
                job: JobSpec {
                    name: String::new(),
                    owner: "bob".into(),
                    tasks: vec![doomed],
                },
                // The idempotency window is in snapshots too.
                idempotency: Some(drover_state::IdempotencyKey {
                    key: "retry-me".into(),
                    fingerprint: 42,
                }),
                submitter: None,
                staged: None,
            }],
        ),
    );
    apply(
        &mut m,
        entry(
            4_200,
            vec![Command::WorkerLost {
                worker: WorkerId(4),
            }],
        ),
    );
    m
}

fn encode(m: &StateMachine, meta: &[u8]) -> Vec<u8> {
    write_snapshot(meta, &m.snapshot(), Cursor::new(Vec::new()))
        .expect("encode")
        .into_inner()
}

fn decode(bytes: &[u8]) -> Result<(Vec<u8>, StateMachine), SnapshotCodecError> {
    let reader = SnapshotReader::open(bytes)?;
    let meta = reader.meta().to_vec();
    Ok((meta, StateMachine::restore(reader.state()?)))
}

fn as_json(m: &StateMachine) -> String {
    serde_json::to_string(&m.snapshot()).unwrap()
}

#[test]
fn a_rich_state_round_trips_and_the_restored_machine_behaves_the_same() {
    let mut original = rich();
    original.scheduler().check_invariants().unwrap();
    let states: BTreeSet<TaskState> = (1..=40)
        .filter_map(|i| original.scheduler().task(TaskId(i)).map(|v| v.state))
        .collect();
    assert_eq!(
        states,
        TaskState::ALL.into_iter().collect(),
        "the fixture holds every task state"
    );

    let bytes = encode(&original, b"{\"raft\":\"meta\"}");
    let json = serde_json::to_vec(&original.snapshot()).unwrap();
    assert!(
        bytes.len() < json.len(),
        "binary {} bytes, JSON {} bytes",
        bytes.len(),
        json.len()
    );
    let (meta, mut restored) = decode(&bytes).expect("decode");
    assert_eq!(meta, b"{\"raft\":\"meta\"}");
    restored.scheduler().check_invariants().unwrap();
    assert_eq!(as_json(&restored), as_json(&original));
    for i in 1..=30 {
        let (a, b) = (original.record(TaskId(i)), restored.record(TaskId(i)));
        assert_eq!(a, b, "task {i}'s record");
        let (a, b) = (
            original
                .scheduler()
                .task(TaskId(i))
                .map(|v| format!("{v:?}")),
            restored
                .scheduler()
                .task(TaskId(i))
                .map(|v| format!("{v:?}")),
        );
        assert_eq!(a, b, "task {i} as the core sees it");
    }

    // The same entries from here give the same answers, dispatches and events: a
    // retry's backoff ends, the time limit passes, a worker joins, more work comes.
    let more = [
        entry(700_000, vec![Command::Tick]),
        entry(701_000, vec![worker("w5", 8, &[("zone", "mars")])]),
        entry(
            702_000,
            vec![Command::Submit {
                job: JobSpec {
                    name: "rich".into(),
                    owner: String::new(),
                    tasks: vec![full_spec("again")],
                },
                // A retry of the keyed submission before the snapshot: both machines
                // must answer it as a replay (the window round-tripped).
                idempotency: Some(drover_state::IdempotencyKey {
                    key: "retry-me".into(),
                    fingerprint: 42,
                }),
                submitter: None,
                staged: None,
            }],
        ),
        entry(
            703_000,
            vec![Command::Cancel {
                target: CancelTarget::Task(TaskId(1)),
            }],
        ),
    ];
    for (i, e) in more.iter().enumerate() {
        let a = original.apply_indexed(100 + i as u64, e);
        let b = restored.apply_indexed(100 + i as u64, e);
        assert_eq!(a.results, b.results, "entry {i}: results");
        assert_eq!(a.dispatches, b.dispatches, "entry {i}: dispatches");
        assert_eq!(
            format!("{:?}", a.events),
            format!("{:?}", b.events),
            "entry {i}: events"
        );
    }
    assert_eq!(as_json(&restored), as_json(&original));
    // And once more through the format: nothing drifts on a second trip.
    let (_, again) = decode(&encode(&restored, b"")).unwrap();
    assert_eq!(as_json(&again), as_json(&original));
}

#[test]
fn an_unknown_version_is_named() {
    let m = rich();
    let mut bytes = encode(&m, b"");
    bytes[8..12].copy_from_slice(&(FORMAT_VERSION + 1).to_le_bytes());
    match decode(&bytes) {
        Err(SnapshotCodecError::UnknownVersion { found, known }) => {
            assert_eq!((found, known), (FORMAT_VERSION + 1, FORMAT_VERSION));
        }
        other => panic!("expected UnknownVersion, got {:?}", other.map(|_| ())),
    }
}

#[test]
fn a_foreign_file_is_not_a_snapshot() {
    for bytes in [&b"{\"meta\":{}}"[..], b"", b"DROVSNA"] {
        assert!(matches!(
            decode(bytes),
            Err(SnapshotCodecError::NotASnapshot)
        ));
    }
}

#[test]
fn a_damaged_snapshot_is_refused() {
    let m = rich();
    let bytes = encode(&m, b"meta");
    // Every single flipped byte of the body is caught (by the checksum, or earlier by
    // the decoder or the length check); none yields a state.
    for at in (24..bytes.len()).step_by(7) {
        let mut bad = bytes.clone();
        bad[at] ^= 0x5a;
        let got = decode(&bad);
        assert!(
            matches!(
                got,
                Err(SnapshotCodecError::Checksum { .. }
                    | SnapshotCodecError::Decode(_)
                    | SnapshotCodecError::Length { .. })
            ),
            "byte {at} flipped: {:?}",
            got.map(|_| ())
        );
    }
    // Cut short, or with bytes after the end.
    let got = decode(&bytes[..bytes.len() - 10]);
    assert!(
        matches!(
            got,
            Err(SnapshotCodecError::Decode(_) | SnapshotCodecError::Length { .. })
        ),
        "{:?}",
        got.map(|_| ())
    );
    let mut long = bytes.clone();
    long.extend_from_slice(b"tail");
    assert!(matches!(
        decode(&long),
        Err(SnapshotCodecError::Length { .. })
    ));
}

/// A version 2 snapshot (task and worker specs without their driver fields) still
/// reads: its tasks run on `process`, its workers have `process` only.
#[test]
fn a_version_2_snapshot_reads_with_process_drivers() {
    let m = rich();
    let state = m.snapshot();
    // Version 2's shape: the scheduler's state in the layout before drivers, task
    // records without checkpoints, and nothing after the worker identities.
    #[derive(serde::Serialize)]
    struct RecordV2<'a> {
        result: &'a Option<String>,
        usage: &'a Vec<(drover_types::Attempt, AttemptUsage)>,
        stdout_bytes: u64,
        stderr_bytes: u64,
        output_truncated: bool,
    }
    #[derive(serde::Serialize)]
    struct V2<'a> {
        sched: &'a drover_sched::SchedulerSnapshot,
        records: BTreeMap<TaskId, RecordV2<'a>>,
        jobs: &'a BTreeMap<drover_types::JobId, drover_state::JobRecord>,
        idempotency: &'a Vec<drover_state::idempotency::KeyRecord>,
        tokens: &'a drover_state::TokenSnapshot,
        identities: &'a drover_state::worker_identity::WorkerIdentities,
    }
    let records = state
        .records
        .iter()
        .map(|(t, r)| {
            (
                *t,
                RecordV2 {
                    result: &r.result,
                    usage: &r.usage,
                    stdout_bytes: r.stdout_bytes,
                    stderr_bytes: r.stderr_bytes,
                    output_truncated: r.output_truncated,
                },
            )
        })
        .collect();
    let mut body = 0u32.to_le_bytes().to_vec();
    body.extend(drover_sched::pre_driver_layout(|| {
        postcard::to_stdvec(&V2 {
            sched: &state.sched,
            records,
            jobs: &state.jobs,
            idempotency: &state.idempotency,
            tokens: &state.tokens,
            identities: &state.identities,
        })
        .unwrap()
    }));
    let mut v2 = drover_state::MAGIC.to_vec();
    v2.extend(2u32.to_le_bytes());
    v2.extend(crc32fast::hash(&body).to_le_bytes());
    v2.extend((body.len() as u64).to_le_bytes());
    v2.extend(&body);
    let (_, old) = decode(&v2).expect("a version 2 snapshot reads");
    let mut with_drivers = 0;
    for i in 1..=40 {
        let (Some(a), Some(b)) = (
            m.scheduler().task(TaskId(i)),
            old.scheduler().task(TaskId(i)),
        ) else {
            continue;
        };
        assert_eq!(a.state, b.state, "task {i}");
        with_drivers += usize::from(a.spec.shared().driver.is_some());
        assert_eq!(b.spec.shared().driver, None);
        assert_eq!(b.spec.shared().image, None);
    }
    assert!(with_drivers > 0, "the rich state has docker tasks");
    // Read as version 3, the same bytes are garbage or a different state: the layouts
    // really differ, so the version is what makes the old file readable.
    let mut as_v3 = v2.clone();
    as_v3[8..12].copy_from_slice(&3u32.to_le_bytes());
    let now = decode(&as_v3).map(|(_, m)| as_json(&m));
    assert_ne!(now.ok(), Some(as_json(&old)));
}

/// The multifactor policy (appended to the mirrored `QueuePolicyKind`) round-trips
/// through the binary format, and the restored machine orders its queue the same way;
/// the fair-share fixture above, written as before, still reads (same test, above).
#[test]
fn a_multifactor_policy_round_trips_through_the_binary_format() {
    let mut m = rich();
    let policy = PolicyConfig {
        queue: QueuePolicyKind::Multifactor {
            factors: drover_types::MultifactorWeights::parse(
                "priority=1000,age=1,fairshare=50,size=-2,label:business_value=10",
            )
            .unwrap(),
        },
        prefetch_per_worker: 0,
        ..PolicyConfig::default()
    };
    m.apply(&entry(
        5_000,
        vec![Command::SetPolicy {
            policy: policy.clone(),
        }],
    ));
    m.scheduler().check_invariants().unwrap();
    let (_, mut restored) = decode(&encode(&m, b"")).expect("decode");
    restored.scheduler().check_invariants().unwrap();
    assert_eq!(restored.scheduler().policy(), &policy);
    assert_eq!(as_json(&restored), as_json(&m));
    let more = entry(706_000, vec![worker("w6", 2, &[("zone", "mars")])]);
    let (a, b) = (
        m.apply_indexed(200, &more),
        restored.apply_indexed(200, &more),
    );
    assert_eq!(a.dispatches, b.dispatches);
}

/// A version 3 snapshot (worker specs without isolation, attempts without GPU
/// indices) still reads: its workers did not say what they enforce, its attempts name
/// no GPUs, and everything else is as it was.
#[test]
fn a_version_3_snapshot_reads_without_isolation() {
    let m = rich();
    let state = m.snapshot();
    // Version 3's shape is version 4's with the scheduler's state in the layout before
    // isolation, and without the resize state and the splits at the end.
    let mut body = 0u32.to_le_bytes().to_vec();
    let full = drover_sched::pre_isolation_layout(|| postcard::to_stdvec(&state).unwrap());
    let tail = postcard::to_stdvec(&(&state.resizes, &state.splits)).unwrap();
    assert_eq!(&full[full.len() - tail.len()..], &tail[..]);
    body.extend(&full[..full.len() - tail.len()]);
    let mut v3 = drover_state::MAGIC.to_vec();
    v3.extend(3u32.to_le_bytes());
    v3.extend(crc32fast::hash(&body).to_le_bytes());
    v3.extend((body.len() as u64).to_le_bytes());
    v3.extend(&body);
    let (_, old) = decode(&v3).expect("a version 3 snapshot reads");
    let workers: Vec<_> = old.scheduler().workers().collect();
    assert!(!workers.is_empty());
    for w in &workers {
        assert_eq!(w.spec.isolation, drover_types::Isolation::default());
        assert_eq!(w.spec.isolation.summary(), "unknown");
        assert!(!w.spec.drivers.is_empty(), "the fields before it are kept");
    }
    let mut with_gpus = 0;
    for i in 1..=40 {
        let (Some(a), Some(b)) = (
            m.scheduler().task(TaskId(i)),
            old.scheduler().task(TaskId(i)),
        ) else {
            continue;
        };
        assert_eq!(a.state, b.state, "task {i}");
        assert_eq!(a.attempts.len(), b.attempts.len(), "task {i}");
        with_gpus += a.attempts.iter().filter(|r| !r.gpus.is_empty()).count();
        assert!(b.attempts.iter().all(|r| r.gpus.is_empty()));
        for (x, y) in a.attempts.iter().zip(b.attempts) {
            assert_eq!((x.started_at, &x.outcome), (y.started_at, &y.outcome));
        }
    }
    assert!(with_gpus > 0, "the rich state has attempts with GPUs");
    // The current version keeps both.
    let (_, now) = decode(&encode(&m, b"")).unwrap();
    assert_eq!(as_json(&now), as_json(&m));
    assert_eq!(
        now.scheduler()
            .workers()
            .next()
            .unwrap()
            .spec
            .isolation
            .enforced
            .len(),
        3
    );
}

/// A generated job (tasks that differ only in key, name and command, in runs that
/// differ in more) comes back from the binary format with every spec whole and equal,
/// and the tasks of a run share one template again, as they did when submitted: a
/// restart must not cost a million queued tasks a whole spec each.
#[test]
fn a_generated_job_reads_back_with_its_templates_shared() {
    let mut m = StateMachine::new(SchedulerConfig::default());
    let tasks: Vec<TaskSpec> = (0..300)
        .map(|i| TaskSpec {
            key: (i % 3 == 0).then(|| format!("k{i}")),
            name: format!("t{i}"),
            command: vec!["echo".into(), i.to_string()],
            // Three runs: the template changes at 100 and at 200.
            priority: i / 100,
            ..TaskSpec::default()
        })
        // And an array, kept whole and shared by its elements.
        .chain([TaskSpec {
            key: Some("arr".into()),
            array: Some(ArraySpec { start: 0, end: 2 }),
            ..task("arr")
        }])
        .collect();
    let submit = Command::Submit {
        job: JobSpec {
            name: "generated".into(),
            owner: "alice".into(),
            tasks: tasks.clone(),
        },
        idempotency: None,
        submitter: None,
        staged: None,
    };
    let (results, _) = m.apply(&entry(1_000, vec![submit]));
    assert!(
        matches!(results[0], drover_state::CommandResult::Submitted { .. }),
        "{results:?}"
    );
    let (_, restored) = decode(&encode(&m, b"")).unwrap();
    restored.scheduler().check_invariants().unwrap();
    let view = |n: u64| restored.scheduler().task(TaskId(n)).unwrap();
    let mut ids = 1u64;
    for spec in &tasks {
        let len = spec.expanded_len();
        for _ in 0..len {
            let expected = TaskSpec {
                owner: if spec.owner.is_empty() {
                    "alice".into()
                } else {
                    spec.owner.clone()
                },
                ..spec.clone()
            };
            assert_eq!(*view(ids).spec.to_spec(), expected, "task {ids}");
            assert_eq!(view(ids).spec.name(), expected.name);
            assert_eq!(view(ids).spec.key(), expected.key.as_deref());
            ids += 1;
        }
    }
    let shared = |a: u64, b: u64| std::ptr::eq(view(a).spec.shared(), view(b).spec.shared());
    assert!(shared(1, 100) && shared(101, 200) && shared(201, 300));
    assert!(!shared(100, 101) && !shared(200, 201) && !shared(300, 301));
    assert!(shared(301, 303));
    // Put together from the template: the template itself holds no task's own fields.
    assert!(view(1).spec.shared().name.is_empty() && view(1).spec.shared().command.is_empty());
    assert_eq!(as_json(&restored), as_json(&m));
}
