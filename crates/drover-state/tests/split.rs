//! Adaptive splitting through the state machine: starts carry each chunk's slice, the
//! combine step's inputs are the chunks' results in range order without the slots left
//! over, and a snapshot taken midway (through the binary format, version 4) restores a
//! machine that goes on exactly like the original. A version 3 snapshot still reads.

use drover_proto::worker::{AttemptReport, AttemptUsage};
use drover_sched::SchedulerConfig;
use drover_state::{
    Command, FORMAT_VERSION, LogEntry, SnapshotReader, StateMachine, write_snapshot,
};
use drover_types::{
    Attempt, DepRef, JobSpec, Millis, Outcome, Resources, SplitChunks, SplitRange, SplitSpec,
    TaskId, TaskSpec, TaskState, WorkerId, WorkerSpec,
};
use std::io::Cursor;

fn entry(now: u64, commands: Vec<Command>) -> LogEntry {
    LogEntry {
        now: Millis(now),
        commands,
    }
}

fn job() -> JobSpec {
    JobSpec {
        name: "sum".into(),
        owner: String::new(),
        tasks: vec![
            TaskSpec {
                key: Some("part".into()),
                split: Some(SplitSpec {
                    range: SplitRange {
                        start: 1,
                        end: 5000,
                    },
                    chunks: SplitChunks::Auto,
                    chunk_duration_ms: Some(400),
                }),
                ..TaskSpec::command(["sum"])
            },
            TaskSpec {
                key: Some("combine".into()),
                after: vec![DepRef::Key("part".into())],
                ..TaskSpec::command(["combine"])
            },
        ],
    }
}

fn machine() -> (StateMachine, u64) {
    // Without prefetch: every start below is a placement that holds its CPU.
    let mut m = StateMachine::new(SchedulerConfig {
        policy: drover_types::PolicyConfig {
            prefetch_per_worker: 0,
            ..Default::default()
        },
        ..SchedulerConfig::default()
    });
    m.apply(&entry(
        1_000,
        vec![Command::WorkerJoin {
            spec: WorkerSpec {
                name: "w".into(),
                capacity: Resources::cpus(3000),
                ..WorkerSpec::default()
            },
            running: vec![],
        }],
    ));
    m.apply(&entry(
        1_001,
        vec![Command::Submit {
            job: job(),
            idempotency: None,
            submitter: None,
            staged: None,
        }],
    ));
    (m, 1_002)
}

fn finished(task: TaskId, attempt: Attempt, result: String) -> Command {
    Command::TaskFinished {
        worker: WorkerId(1),
        report: AttemptReport {
            task,
            attempt,
            outcome: Outcome::Exited { code: 0 },
            usage: AttemptUsage::default(),
            result,
            stdout_bytes: 0,
            stderr_bytes: 0,
            output_truncated: false,
            digest: String::new(),
        },
    }
}

/// Runs the attempts the machine started, one at a time, at 1 ms per integer of their
/// slice, each printing its partial sum; `limit` caps how many run. Returns the combine
/// step's inputs if it started.
fn run(m: &mut StateMachine, now: &mut u64, limit: usize) -> Option<Vec<String>> {
    let mut ran = 0;
    let mut combine_inputs = None;
    while ran < limit {
        let starts: Vec<(TaskId, Attempt)> = (1..=129)
            .filter_map(|i| {
                let v = m.scheduler().task(TaskId(i))?;
                (v.state == TaskState::Assigned).then_some((v.id, v.attempt))
            })
            .collect();
        if starts.is_empty() {
            break;
        }
        for (task, attempt) in starts {
            let start = m.start_message(task, attempt).unwrap();
            if task == TaskId(129) {
                combine_inputs = Some(start.inputs.clone());
                assert!(start.slice.is_none());
            }
            let (a, b) = start.slice.unwrap_or((0, 0));
            m.apply(&entry(
                *now,
                vec![Command::TaskStarted {
                    task,
                    attempt,
                    worker: WorkerId(1),
                    gpus: Vec::new(),
                }],
            ));
            *now += b - a + 1;
            let sum: u64 = (a..=b).sum();
            m.apply(&entry(
                *now,
                vec![finished(task, attempt, format!("{sum}\n"))],
            ));
            *now += 1;
            ran += 1;
            if ran == limit {
                break;
            }
        }
    }
    combine_inputs
}

fn encode(m: &StateMachine) -> Vec<u8> {
    write_snapshot(b"", &m.snapshot(), Cursor::new(Vec::new()))
        .unwrap()
        .into_inner()
}

fn decode(bytes: &[u8]) -> StateMachine {
    StateMachine::restore(SnapshotReader::open(bytes).unwrap().state().unwrap())
}

fn as_json(m: &StateMachine) -> String {
    serde_json::to_string(&m.snapshot()).unwrap()
}

#[test]
fn starts_carry_slices_and_the_combine_step_reads_the_chunks_in_range_order() {
    let (mut m, mut now) = machine();
    let inputs = run(&mut m, &mut now, usize::MAX).expect("the combine step ran");
    let splits = m.scheduler().split_records();
    let slices = &splits[0].chunks;
    assert_eq!(
        inputs.len(),
        slices.len(),
        "one input per chunk, none for unused slots"
    );
    for (input, (a, b)) in inputs.iter().zip(slices) {
        assert_eq!(*input, format!("{}\n", (*a..=*b).sum::<u64>()));
    }
    let total: u64 = inputs
        .iter()
        .map(|s| s.trim().parse::<u64>().unwrap())
        .sum();
    assert_eq!(total, 5000 * 5001 / 2);
}

#[test]
fn a_snapshot_midway_restores_a_machine_that_goes_on_the_same() {
    let (mut m, mut now) = machine();
    run(&mut m, &mut now, 6);
    let progress = m.scheduler().split_records();
    assert!(progress[0].chunks.len() > 3, "{progress:?}");
    assert!(progress[0].chunks.last().unwrap().1 < 5000, "{progress:?}");
    let bytes = encode(&m);
    assert_eq!(
        u32::from_le_bytes(bytes[8..12].try_into().unwrap()),
        FORMAT_VERSION
    );
    assert_eq!(FORMAT_VERSION, 4);
    let mut r = decode(&bytes);
    r.scheduler().check_invariants().unwrap();
    assert_eq!(r.scheduler().split_records(), progress);
    assert_eq!(as_json(&r), as_json(&m));
    assert!(
        r.scheduler()
            .task(TaskId(7))
            .unwrap()
            .spec
            .shared()
            .split
            .is_some()
    );
    let (mut now_r, mut now_m) = (now, now);
    let a = run(&mut m, &mut now_m, usize::MAX);
    let b = run(&mut r, &mut now_r, usize::MAX);
    assert_eq!(a, b);
    assert!(a.is_some());
    assert_eq!(as_json(&r), as_json(&m));
}

/// A version 3 file is the version 4 one without the resize state and the splits at
/// the end (with no workers, the rest is laid out alike): it must still read, with no
/// splits.
#[test]
fn a_version_3_snapshot_still_reads() {
    let m = StateMachine::new(SchedulerConfig::default());
    let v4 = encode(&m);
    let snap = m.snapshot();
    let tail = postcard::to_stdvec(&(&snap.resizes, &snap.splits)).unwrap();
    assert_eq!(&v4[v4.len() - tail.len()..], &tail[..]);
    let mut v3 = v4[..v4.len() - tail.len()].to_vec();
    v3[8..12].copy_from_slice(&3u32.to_le_bytes());
    let len = (v3.len() - 24) as u64;
    v3[16..24].copy_from_slice(&len.to_le_bytes());
    let crc = crc32fast::hash(&v3[24..]);
    v3[12..16].copy_from_slice(&crc.to_le_bytes());
    let restored = decode(&v3);
    assert!(restored.scheduler().split_records().is_empty());
    assert_eq!(as_json(&restored), as_json(&m));
}
