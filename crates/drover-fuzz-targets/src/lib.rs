//! Every decoder that reads bytes from outside the process, each behind one function
//! taking `&[u8]`: the cargo-fuzz targets in `fuzz/` call these, and
//! `tests/corpus_replay.rs` feeds every saved corpus file through them as an ordinary
//! test, so that `cargo test` (stable, no cargo-fuzz) keeps what fuzzing found fixed.
//!
//! Each function must not panic, whatever the bytes; where a decoder has an encoder,
//! what decodes must encode back to the same bytes (a round trip the fuzzer checks for
//! free). Errors are the expected answer to most inputs and are ignored.

use drover_proto::worker::{OutputFrame, WorkerMessage};
use drover_types::{JobSpec, Limits, TaskSpec, validate_job};

/// The job file decoder lives in the `drover` binary (not a library); it is compiled
/// here from the same source file so that the fuzzer runs the very code the CLI does.
#[path = "../../drover-cli/src/jobfile.rs"]
#[allow(dead_code)]
mod jobfile;

/// A fuzz target: its name (the directory of its corpus) and its function.
pub type Target = (&'static str, fn(&[u8]));

/// Every target, for the corpus replay test.
pub const TARGETS: &[Target] = &[
    ("job_file", job_file),
    ("api_body", api_body),
    ("worker_message", worker_message),
    ("output_frame", output_frame),
    ("log_entry", log_entry),
    ("snapshot", snapshot),
    ("output_batch", output_batch),
    ("snapshot_chunk", snapshot_chunk),
];

/// `drover submit -f job.yaml`: the YAML job file, then the validation the server
/// applies to what the CLI sends.
pub fn job_file(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(job) = jobfile::parse(text) {
        let _ = validate_job(&job, &Limits::default());
    }
}

/// `POST /v1/jobs` and `POST /v1/tasks`: the API's body reader (depth limit, JSON,
/// strict deserializer) and the validation that runs before anything is proposed.
pub fn api_body(data: &[u8]) {
    if let Ok(job) = drover_server::api::parse_body::<JobSpec>(data) {
        let _ = validate_job(&job, &Limits::default());
    }
    if let Ok(task) = drover_server::api::parse_body::<TaskSpec>(data) {
        let _ = drover_types::validate_task(&task, &Limits::default(), "");
    }
}

/// A worker's text message on its WebSocket (hello, heartbeat, started, finished).
pub fn worker_message(data: &[u8]) {
    let _ = serde_json::from_slice::<WorkerMessage>(data);
}

/// A worker's binary message: one chunk of a task's output.
pub fn output_frame(data: &[u8]) {
    if let Ok(frame) = OutputFrame::decode(data) {
        assert_eq!(frame.encode(), data, "an output frame does not round-trip");
    }
}

/// A log entry as the log store reads it back (openraft's entry around Drover's
/// `LogEntry`, whose commands have their own decoder in `drover-state`).
pub fn log_entry(data: &[u8]) {
    let _ = serde_json::from_slice::<drover_state::LogEntry>(data);
    let _ = serde_json::from_slice::<openraft::Entry<drover_server::raft::TypeConfig>>(data);
}

/// A snapshot file, as read at start-up or installed from the leader.
pub fn snapshot(data: &[u8]) {
    if let Ok(reader) = drover_state::SnapshotReader::open(std::io::Cursor::new(data)) {
        let _ = reader.state();
    }
}

/// A batch of output frames copied from another server.
pub fn output_batch(data: &[u8]) {
    if let Ok(frames) = drover_server::output_replication::decode_batch(data) {
        assert_eq!(
            drover_server::output_replication::encode_batch(&frames),
            data,
            "an output batch does not round-trip"
        );
    }
}

/// One chunk of a snapshot sent by the leader (`InstallSnapshot`).
pub fn snapshot_chunk(data: &[u8]) {
    let _ = drover_server::raft::SnapshotChunk::decode(data);
}
