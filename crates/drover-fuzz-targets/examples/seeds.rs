//! Writes the starting corpora of the fuzz targets: real encodings of each input kind
//! (a fuzzer mutating valid inputs gets past the first checks far sooner than one
//! starting from nothing). `cargo run -p drover-fuzz-targets --example seeds -- fuzz/corpus`

use drover_proto::worker::{AttemptReport, AttemptUsage, OutputFrame, OutputStream, WorkerMessage};
use drover_sched::SchedulerConfig;
use drover_state::{Command, LogEntry, StateMachine, write_snapshot};
use drover_types::{
    Attempt, DepRef, JobSpec, Millis, Outcome, Resources, TaskId, TaskSpec, WorkerId, WorkerSpec,
    WorkerUsage,
};
use std::io::Cursor;
use std::path::Path;

fn main() {
    let root = std::env::args().nth(1).expect("usage: seeds DIR");
    let root = Path::new(&root);
    let put = |target: &str, name: &str, data: &[u8]| {
        let dir = root.join(target);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(format!("seed-{name}")), data).unwrap();
    };

    let job = JobSpec {
        name: "seed".into(),
        owner: String::new(),
        tasks: vec![
            TaskSpec {
                key: Some("a".into()),
                ..TaskSpec::command(["echo", "hi"])
            },
            TaskSpec {
                key: Some("b".into()),
                after: vec![DepRef::Key("a".into()), DepRef::Id(TaskId(3))],
                ..TaskSpec::command(["cat"])
            },
        ],
    };
    let worker_spec = WorkerSpec {
        name: "w1".into(),
        capacity: Resources {
            cpu_milli: 2000,
            memory_bytes: 1 << 30,
            ..Resources::default()
        },
        ..WorkerSpec::default()
    };
    let report = AttemptReport {
        task: TaskId(1),
        attempt: Attempt(1),
        outcome: Outcome::Exited { code: 0 },
        usage: AttemptUsage::default(),
        result: "hi\n".into(),
        stdout_bytes: 3,
        stderr_bytes: 0,
        output_truncated: false,
        digest: String::new(),
    };

    // Job files: the example in the repository and a few shapes of task.
    let example = include_str!("../../../examples/sum_of_squares.yaml");
    put("job_file", "example", example.as_bytes());
    put(
        "job_file",
        "json",
        serde_json::to_string(&serde_json::json!({"tasks": [{"command": "echo hi"}]}))
            .unwrap()
            .as_bytes(),
    );
    put(
        "job_file",
        "fields",
        b"name: j\ntasks:\n  - key: a\n    command: 'sh -c \"echo $X\"'\n    env: {X: y}\n    cpus: 250m\n    memory: 1G\n    timeout: 1m 30s\n    retries: 2\n    backoff: {initial: 1s, max: 1m}\n    labels: {team: x}\n    constraints: ['zone in (a, b)', 'gpu exists']\n    array: 0-3\n  - key: b\n    after: [a]\n    shell: true\n    command: echo done\n",
    );

    // API bodies: a job, a single task, nested oddities.
    put("api_body", "job", &serde_json::to_vec(&job).unwrap());
    put(
        "api_body",
        "task",
        &serde_json::to_vec(&job.tasks[1]).unwrap(),
    );
    put("api_body", "minimal", br#"{"command":["true"]}"#);
    put(
        "api_body",
        "deep",
        format!("{{\"command\":{}\"x\"{}}}", "[".repeat(70), "]".repeat(70)).as_bytes(),
    );

    // Worker messages.
    let messages = [
        WorkerMessage::Hello {
            protocol_version: drover_proto::worker::PROTOCOL_VERSION,
            spec: worker_spec.clone(),
            kill_grace_ms: 5000,
            running: vec![(TaskId(2), Attempt(1))],
            finished: vec![report.clone()],
        },
        WorkerMessage::Heartbeat {
            seq: 7,
            usage: WorkerUsage::default(),
            tasks: vec![],
            load: None,
            data: None,
        },
        WorkerMessage::Started {
            task: TaskId(1),
            attempt: Attempt(1),
            gpus: Vec::new(),
        },
        WorkerMessage::Finished(report.clone()),
    ];
    for (i, m) in messages.iter().enumerate() {
        put(
            "worker_message",
            &i.to_string(),
            &serde_json::to_vec(m).unwrap(),
        );
    }

    // Output frames and batches of them.
    let frames: Vec<OutputFrame> = (0..3)
        .map(|i| OutputFrame {
            task: TaskId(i + 1),
            attempt: Attempt(1),
            stream: if i == 1 {
                OutputStream::Stderr
            } else {
                OutputStream::Stdout
            },
            offset: i * 10,
            data: format!("line {i}\n").into_bytes(),
        })
        .collect();
    for (i, f) in frames.iter().enumerate() {
        put("output_frame", &i.to_string(), &f.encode());
    }
    put(
        "output_batch",
        "three",
        &drover_server::output_replication::encode_batch(&frames),
    );
    put(
        "output_batch",
        "one",
        &drover_server::output_replication::encode_batch(&frames[..1]),
    );
    put(
        "output_batch",
        "empty-frame",
        &drover_server::output_replication::encode_batch(&[OutputFrame {
            data: vec![],
            ..frames[0].clone()
        }]),
    );

    // Log entries, and a snapshot of the machine they build.
    let entries = [
        LogEntry {
            now: Millis(1000),
            commands: vec![Command::WorkerJoin {
                spec: worker_spec.clone(),
                running: vec![],
            }],
        },
        LogEntry {
            now: Millis(2000),
            commands: vec![Command::Submit {
                job: job.clone(),
                idempotency: None,
                submitter: None,
                staged: None,
            }],
        },
        LogEntry {
            now: Millis(3000),
            commands: vec![
                Command::TaskStarted {
                    task: TaskId(1),
                    attempt: Attempt(1),
                    worker: WorkerId(1),
                    gpus: Vec::new(),
                },
                Command::TaskFinished {
                    worker: WorkerId(1),
                    report: report.clone(),
                },
                Command::Tick,
            ],
        },
    ];
    let mut machine = StateMachine::new(SchedulerConfig::default());
    for (i, e) in entries.iter().enumerate() {
        put("log_entry", &i.to_string(), &serde_json::to_vec(e).unwrap());
        machine.apply(e);
    }
    for (name, meta) in [("empty-meta", &b""[..]), ("meta", &b"{\"last\":3}"[..])] {
        let bytes = write_snapshot(meta, &machine.snapshot(), Cursor::new(Vec::new()))
            .unwrap()
            .into_inner();
        put("snapshot", name, &bytes);
    }
    let empty = StateMachine::new(SchedulerConfig::default());
    let bytes = write_snapshot(b"", &empty.snapshot(), Cursor::new(Vec::new()))
        .unwrap()
        .into_inner();
    put("snapshot", "empty-state", &bytes);

    // Snapshot chunks: the envelope is JSON of openraft's vote and snapshot metadata.
    let envelope = |offset: u64, done: bool| {
        serde_json::json!({
            "vote": {"leader_id": {"term": 2, "node_id": 1}, "committed": true},
            "meta": {
                "last_log_id": {"leader_id": {"term": 2, "node_id": 1}, "index": 40},
                "last_membership": {"log_id": null, "membership": {"configs": [[1]], "nodes": {"1": {"addr": "127.0.0.1:7070"}}}},
                "snapshot_id": "2-1-40-7"
            },
            "offset": offset,
            "done": done
        })
    };
    for (name, offset, done, data) in [
        ("first", 0, false, &b"DROVSNAP"[..]),
        ("last", 8, true, &b"rest"[..]),
    ] {
        let env = serde_json::to_vec(&envelope(offset, done)).unwrap();
        let mut body = (env.len() as u32).to_le_bytes().to_vec();
        body.extend_from_slice(&env);
        body.extend_from_slice(data);
        drover_server::raft::SnapshotChunk::decode(&body).expect("a seed chunk decodes");
        put("snapshot_chunk", name, &body);
    }
    put("snapshot_chunk", "short", &[4, 0, 0, 0, b'{', b'}']);
}
