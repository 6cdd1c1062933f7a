//! A job large enough to be sent in parts (several `SubmitPart` entries, then its
//! `Submit`; see `drover-state/src/staging.rs`): it is applied once, whole, and a server
//! killed with -9 and restarted (no snapshot at stop) rebuilds it from the entries read
//! back from redb, every task as submitted.

mod common;

use common::*;
use serde_json::{Value, json};
use std::time::Duration;

const TASKS: u64 = 30_000;

/// Tasks in state `ready` as the server counts them.
fn ready(c: &Cluster) -> Option<u64> {
    let r = http_with(&c.addr, "GET", "/v1/cluster", Some(&c.token), &[], None).ok()?;
    if r.status != 200 {
        return None;
    }
    let v: Value = serde_json::from_slice(&r.body).ok()?;
    v["tasks"]["ready"].as_u64()
}

#[test]
fn a_large_job_is_applied_once_and_rebuilt_from_the_log_after_a_kill_9() {
    // No worker: every task stays ready.
    let mut c = Cluster::start("large-job");
    // Distinct names and commands: the log entry is several MiB.
    let tasks: Vec<Value> = (0..TASKS)
        .map(|i| json!({"name": format!("t{i}"), "command": ["sleep", format!("{i}")]}))
        .collect();
    let r = c.post("/v1/jobs", &json!({"name": "large", "tasks": tasks}));
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(r.json()["count"].as_u64(), Some(TASKS));
    assert_eq!(ready(&c), Some(TASKS));
    let last = c.task(TASKS);
    assert_eq!(last.spec.name, format!("t{}", TASKS - 1));

    // kill -9: no snapshot at stop, so the restart re-applies the entry from redb.
    c.kill_server();
    c.restart_server();
    poll(
        "the restarted server holds the job again",
        Duration::from_secs(60),
        || (ready(&c) == Some(TASKS)).then_some(()),
        || c.logs(),
    );
    let last = c.task(TASKS);
    assert_eq!(last.spec.name, format!("t{}", TASKS - 1));
    assert_eq!(
        last.spec.command,
        vec!["sleep".to_string(), format!("{}", TASKS - 1)]
    );
    // And nothing twice: one job, its tasks only.
    let cluster = c.get_ok("/v1/cluster");
    let total: u64 = cluster["tasks"]
        .as_object()
        .expect("counts by state")
        .values()
        .filter_map(Value::as_u64)
        .sum();
    assert_eq!(total, TASKS, "{cluster}");
}
