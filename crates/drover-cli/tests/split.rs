//! Adaptive splitting end to end, with a real server and worker: a job file's split
//! covers its range in chunks the server sizes, each chunk sees its slice, the combine
//! step reads the chunks' results in range order (and nothing for the slots left
//! over), `drover job` and `drover status` show the split; the API takes a fixed
//! count and refuses bad splits naming the field; the CLI's flags make a split.

mod common;

use common::*;
use drover_types::TaskState;
use serde_json::json;
use std::time::Duration;

#[test]
fn the_split_example_sums_the_range_in_sized_chunks_and_drover_job_shows_them() {
    let mut c = Cluster::start("split-auto");
    c.add_worker("w", &["--cpus", "4", "--memory", "4G"]);
    let file = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/split_sum.yaml");
    let out = run_with_timeout(
        c.cli_command(&["run", "-f", file]),
        Duration::from_secs(120),
        || c.logs(),
    );
    assert_eq!(out.code(), Some(0), "{out}\n{}", c.logs());
    assert_eq!(out.stdout, "500500\n", "{out}");

    let job = c.get_ok("/v1/jobs/1");
    let split = &job["splits"][0];
    assert_eq!(split["key"], "part", "{job}");
    assert_eq!(split["range_start"], 1, "{job}");
    assert_eq!(split["range_end"], 1000, "{job}");
    assert_eq!(split["covered"], 1000, "{job}");
    assert_eq!(split["slots"], 128, "{job}");
    // One probe per free slot at submission: 4 CPUs, 0.5 each.
    assert_eq!(split["wave"], 8, "{job}");
    let sizes: Vec<u64> = split["chunk_sizes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect();
    assert_eq!(sizes.iter().sum::<u64>(), 1000, "{job}");
    // Probes of one integer each (1000 / (4 × 128) rounds to 1), then sized chunks.
    assert_eq!(&sizes[..8], &[1; 8], "{job}");
    assert!(sizes.len() > 8, "{job}");
    let created = sizes.len() as u64;
    assert_eq!(split["chunks_created"], created, "{job}");
    assert_eq!(split["chunks_succeeded"], created, "{job}");

    // Each chunk saw its slice (contiguous, in slot order) and summed it.
    let mut next = 1;
    for id in 1..=created {
        let t = c.task(id);
        assert_eq!(t.state, TaskState::Succeeded, "{t:#?}");
        let (a, b) = (t.range_start.unwrap(), t.range_end.unwrap());
        assert_eq!(a, next, "{t:#?}");
        next = b + 1;
        let sum: u64 = (a..=b).sum();
        assert_eq!(
            t.result.as_deref(),
            Some(format!("{sum}\n").as_str()),
            "{t:#?}"
        );
    }
    assert_eq!(next, 1001);
    // A slot the range did not need ran nothing.
    let unused = c.task(128);
    assert_eq!(unused.state, TaskState::Succeeded, "{unused:#?}");
    assert!(
        unused.attempts.is_empty() && unused.range_start.is_none(),
        "{unused:#?}"
    );

    let shown = c.cli_ok(&["job", "1"]).stdout;
    assert!(
        shown.contains("split part (tasks 1 to 128): range 1-1000, chunks auto"),
        "{shown}"
    );
    assert!(shown.contains("covered 1000/1000 (100%)"), "{shown}");
    assert!(
        shown.contains(&format!("{created} chunks made, {created} succeeded")),
        "{shown}"
    );
    assert!(
        shown.contains("chunk sizes: 1, 1, 1, 1, 1, 1, 1, 1, "),
        "{shown}"
    );
    let status = c.cli_ok(&["status", "1"]).stdout;
    assert!(
        status.contains("split:     chunk 0 of 1-1000: 1-1 (1 integer)"),
        "{status}"
    );
    let status = c.cli_ok(&["status", "128"]).stdout;
    assert!(status.contains("not needed"), "{status}");
}

#[test]
fn the_api_takes_a_fixed_count_and_refuses_bad_splits_by_field() {
    let mut c = Cluster::start("split-api");
    c.add_worker("w", &["--cpus", "2", "--memory", "4G"]);
    let (job, first, count) = c.submit_job(json!({
        "tasks": [
            {"key": "p", "split": {"range": "1-100", "chunks": 4},
             "command": ["sh", "-c", "echo $DROVER_RANGE_START-$DROVER_RANGE_END"]},
            {"key": "c", "after": ["p"], "command": ["cat"]},
        ],
    }));
    assert_eq!(count, 5);
    let combine = c.wait_final(first + 4, SLOW);
    assert_eq!(combine.state, TaskState::Succeeded, "{combine:#?}");
    // In range order.
    assert_eq!(
        combine.result.as_deref(),
        Some("1-25\n26-50\n51-75\n76-100\n"),
        "{combine:#?}"
    );
    let j = c.get_ok(&format!("/v1/jobs/{job}"));
    assert_eq!(j["splits"][0]["chunks"], "4", "{j}");
    assert_eq!(
        j["splits"][0]["chunk_sizes"],
        json!([25, 25, 25, 25]),
        "{j}"
    );

    let refused = |task: serde_json::Value, field: &str| {
        let r = c.post("/v1/jobs", &json!({"tasks": [task]}));
        assert_eq!(r.status, 400, "{}", r.text());
        assert_eq!(r.error()["field"], field, "{}", r.text());
    };
    refused(
        json!({"command": ["true"], "split": {"range": "1-10"}, "array": {"start": 0, "end": 1}}),
        "tasks[0].split",
    );
    refused(
        json!({"command": ["true"], "split": {"range": "10-1"}}),
        "tasks[0].split.range",
    );
    refused(
        json!({"command": ["true"], "split": {"range": "1-10", "chunks": 0}}),
        "tasks[0].split.chunks",
    );
    refused(
        json!({"command": ["true"], "split": {"range": "1-10", "chunks": 2, "chunk_duration_ms": 5}}),
        "tasks[0].split.chunk_duration_ms",
    );
    let r = c.post(
        "/v1/jobs",
        &json!({"tasks": [{"command": ["true"], "split": {"range": "x"}}]}),
    );
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(
        r.error()["field"]
            .as_str()
            .unwrap_or("")
            .starts_with("tasks[0].split"),
        "{}",
        r.text()
    );
}

#[test]
fn the_cli_flags_make_a_split_and_refuse_a_bad_one() {
    let mut c = Cluster::start("split-cli");
    c.add_worker("w", &["--cpus", "2", "--memory", "4G"]);
    let out = c.cli_ok(&[
        "submit",
        "--split",
        "5-14",
        "--chunks",
        "3",
        "--shell",
        "--",
        "echo $DROVER_RANGE_START:$DROVER_RANGE_END",
    ]);
    // One entry, three tasks: the submission reports them as a job.
    assert!(out.stdout.contains("tasks 1 to 3 (3 tasks)"), "{out}");
    let mut slices = Vec::new();
    for id in 1..=3 {
        let t = c.wait_final(id, SLOW);
        assert_eq!(t.state, TaskState::Succeeded, "{t:#?}");
        slices.push(t.result.unwrap_or_default());
    }
    assert_eq!(slices, ["5:8\n", "9:11\n", "12:14\n"]);
    let bad = c.cli(&["submit", "--split", "9-1", "--", "true"]);
    assert_ne!(bad.code(), Some(0), "{bad}");
    assert!(bad.stderr.contains("split.range"), "{bad}");
    let bad = c.cli(&["submit", "--split", "1-9", "--chunks", "many", "--", "true"]);
    assert_ne!(bad.code(), Some(0), "{bad}");
    assert!(bad.stderr.contains("--chunks"), "{bad}");
}

/// Chunks that take 10 ms per integer (a sleep: never faster) and a 1 s target: after
/// the one-integer probes, the server sizes chunks from what it measured, so none is
/// longer than 100 integers, and the rest of the range is not given to one chunk.
#[test]
fn chunks_after_the_probes_are_sized_from_their_measured_runtimes() {
    let mut c = Cluster::start("split-sized");
    c.add_worker("w", &["--cpus", "4", "--memory", "4G"]);
    let (job, first, _) = c.submit_job(json!({
        "tasks": [
            {"key": "p", "split": {"range": "1-400", "chunk_duration_ms": 1000},
             "resources": {"cpu_milli": 500},
             "shell": true,
             "command": ["n=$((DROVER_RANGE_END - DROVER_RANGE_START + 1)); sleep $((n / 100)).$((n % 100 / 10))$((n % 10)); echo $n"]},
            {"key": "c", "after": ["p"], "shell": true,
             "command": ["s=0; while read -r x; do s=$((s + x)); done; echo $s"]},
        ],
    }));
    let combine = c.wait_final(first + 128, Duration::from_secs(90));
    assert_eq!(combine.state, TaskState::Succeeded, "{combine:#?}");
    assert_eq!(combine.result.as_deref(), Some("400\n"), "{combine:#?}");
    let j = c.get_ok(&format!("/v1/jobs/{job}"));
    let split = &j["splits"][0];
    assert_eq!(split["wave"], 8, "{j}");
    let sizes: Vec<u64> = split["chunk_sizes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect();
    assert_eq!(&sizes[..8], &[1; 8], "{j}");
    assert_eq!(sizes.iter().sum::<u64>(), 400, "{j}");
    let sized = &sizes[8..];
    assert!(
        sized.len() >= 4,
        "392 integers in chunks of at most 100: {j}"
    );
    assert!(sized.iter().all(|&n| n <= 100), "{j}");
}
