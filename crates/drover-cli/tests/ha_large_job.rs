//! A large job through a replicated group: its tasks go ahead in bounded parts, one
//! log entry each, so every append fits in a heartbeat; the job appears whole, once,
//! on every server, and survives the loss of the leader. Before, one entry of 30,000
//! tasks (1.2 MiB) made the leader's appends time out: it lost its leadership on
//! every try and the job was never committed.

mod common;

use common::servers::ServerSet;
use common::*;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

const TASKS: u64 = 30_000;

/// Tasks in state `ready` as server `i` counts them.
/// (`None` while it does not answer, e.g. just restarted.)
fn ready_on(set: &ServerSet, i: usize) -> Option<u64> {
    let r = cluster_on(set, i)?;
    r["tasks"]["ready"].as_u64()
}

fn cluster_on(set: &ServerSet, i: usize) -> Option<Value> {
    let r = http_with(
        &set.addrs[i],
        "GET",
        "/v1/cluster",
        Some(&set.token),
        &[],
        None,
    )
    .ok()?;
    (r.status == 200).then(|| r.json())
}

/// Every task the server counts, in any state.
fn total_on(set: &ServerSet, i: usize) -> Option<u64> {
    let r = cluster_on(set, i)?;
    Some(
        r["tasks"]
            .as_object()?
            .values()
            .filter_map(Value::as_u64)
            .sum(),
    )
}

#[test]
fn a_job_of_30000_tasks_commits_in_a_group_of_three_and_survives_the_leader() {
    let mut set = ServerSet::new("ha-large-job");
    for i in 0..3 {
        set.start(i);
    }
    let leader = set.wait_leader(SLOW);
    // Distinct names and commands: about 1.2 MiB of JSON. No worker: all stay ready.
    let tasks: Vec<Value> = (0..TASKS)
        .map(|i| json!({"name": format!("t{i}"), "command": ["sleep", format!("{i}")]}))
        .collect();
    let body = json!({"name": "large", "tasks": tasks}).to_string();
    let key = unique("large");
    let t0 = Instant::now();
    // The leader may still change while the group settles: resend with the same key
    // (a resend of an applied job is answered as the first, never doubled).
    let answer = poll(
        "the group to acknowledge the large job",
        Duration::from_secs(180),
        || {
            (0..3).filter(|i| set.is_running(*i)).find_map(|i| {
                let r = http_with(
                    &set.addrs[i],
                    "POST",
                    "/v1/jobs",
                    Some(&set.token),
                    &[("Idempotency-Key", &key)],
                    Some(body.as_bytes()),
                )
                .ok()?;
                (r.status == 201).then(|| r.json())
            })
        },
        || set.logs(),
    );
    println!(
        "30,000 tasks acknowledged by the group in {:?}",
        t0.elapsed()
    );
    assert_eq!(answer["count"].as_u64(), Some(TASKS), "{answer}");
    let leaders_after = set.leaders();
    println!("leader before: {leader}, after: {leaders_after:?}");

    // Every server holds the job whole, and nothing else (parts are never tasks).
    for i in 0..3 {
        poll(
            &format!("server {i} to hold the whole job"),
            SLOW,
            || (ready_on(&set, i) == Some(TASKS)).then_some(()),
            || set.logs(),
        );
        assert_eq!(total_on(&set, i), Some(TASKS));
    }
    let last = set
        .task_on(leaders_after.first().copied().unwrap_or(leader), TASKS)
        .expect("the last task");
    assert_eq!(last.spec.name, format!("t{}", TASKS - 1));

    // The leader is killed: the next one serves the same job, and the killed server,
    // restarted, catches up to it.
    let old = set.wait_leader(SLOW);
    set.kill(old);
    let new = set.wait_leader(SLOW);
    assert_ne!(new, old);
    assert_eq!(ready_on(&set, new), Some(TASKS));
    set.start(old);
    poll(
        "the restarted server to hold the job again",
        SLOW,
        || (ready_on(&set, old) == Some(TASKS)).then_some(()),
        || set.logs(),
    );
    let first = set.task_on(old, 1).expect("the first task");
    assert_eq!(first.spec.command, vec!["sleep".to_string(), "0".into()]);
    for i in 0..3 {
        assert_eq!(total_on(&set, i), Some(TASKS), "server {i}");
    }
}
