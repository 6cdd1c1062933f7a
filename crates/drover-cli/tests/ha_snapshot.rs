//! Snapshots and compaction in a group of three real `drover server` processes: a
//! follower whose data directory is wiped while it is down rejoins after the group has
//! compacted its log, catches up from the leader's snapshot (sent in binary chunks)
//! plus the log after it, and then serves the same state as the leader.

mod common;

use common::servers::ServerSet;
use common::*;
use serde_json::{Value, json};
use std::time::Duration;

/// Every task, as server `i` lists them (a stale read from its own state), page after
/// page; `None` if it does not answer.
fn all_tasks(set: &ServerSet, i: usize) -> Option<Vec<Value>> {
    let mut tasks = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/v1/tasks?limit=1000&cursor={c}"),
            None => "/v1/tasks?limit=1000".to_string(),
        };
        let r = http_with(&set.addrs[i], "GET", &path, Some(&set.token), &[], None).ok()?;
        if r.status != 200 {
            return None;
        }
        let page: Value = serde_json::from_slice(&r.body).ok()?;
        tasks.extend(page["tasks"].as_array()?.iter().cloned());
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => return Some(tasks),
        }
    }
}

fn submit(set: &ServerSet, leader: usize, spec: Value) -> u64 {
    let body = serde_json::to_vec(&spec).unwrap();
    let r = http(
        &set.addrs[leader],
        "POST",
        "/v1/tasks",
        Some(&set.token),
        Some(&body),
    );
    assert_eq!(r.status, 201, "submitting {spec}: {}", r.text());
    r.json()["first"].as_u64().expect("a task id")
}

/// The snapshot file of server `i`: its header must be the binary format's.
fn snapshot_header(set: &ServerSet, i: usize) -> Option<Vec<u8>> {
    let path = set.data_dir(i).join("server").join("snapshot.bin");
    let bytes = std::fs::read(path).ok()?;
    Some(bytes[..bytes.len().min(8)].to_vec())
}

#[test]
fn a_wiped_follower_rejoins_from_the_snapshot_and_serves_the_leaders_state() {
    let mut set = ServerSet::new("ha-snapshot");
    // A snapshot every 20 entries, 5 kept behind it: a few dozen tasks compact the log.
    set.add_server_args(&["--snapshot-every", "20", "--keep-after-snapshot", "5"]);
    for i in 0..3 {
        set.start(i);
    }
    let leader = set.wait_leader(SLOW);
    set.add_worker("w", &["--cpus", "2"]);
    let follower = (leader + 1) % 3;

    // Some work every server has.
    let first = submit(&set, leader, json!({"command": ["true"], "name": "before"}));
    poll(
        "the follower has the first task",
        SLOW,
        || set.task_on(follower, first),
        || set.logs(),
    );

    // The follower goes down and loses everything it had.
    set.kill(follower);
    std::fs::remove_dir_all(set.data_dir(follower)).expect("wipe the follower's data");

    // The two others go on: successes, failures, tasks that wait on others, some
    // cancelled; each task is several entries (submitted, started, finished).
    let mut last = first;
    for n in 0..40 {
        let spec = match n % 4 {
            0 => {
                json!({"command": ["true"], "name": format!("ok-{n}"), "labels": {"n": n.to_string()}})
            }
            1 => {
                json!({"command": ["false"], "name": format!("fails-{n}"), "retry": {"max_attempts": 2, "backoff": {"initial_ms": 10, "max_ms": 10}}})
            }
            2 => {
                json!({"command": ["sh", "-c", "echo out-$0", format!("{n}")], "name": format!("echo-{n}"), "after": [last]})
            }
            _ => {
                json!({"command": ["sleep", "60"], "name": format!("cancelled-{n}"), "priority": -1})
            }
        };
        last = submit(&set, leader, spec);
        if n % 4 == 3 {
            let r = http(
                &set.addrs[leader],
                "POST",
                &format!("/v1/tasks/{last}/cancel"),
                Some(&set.token),
                None,
            );
            assert!(r.status < 300, "cancel {last}: {}", r.text());
        }
    }
    // Everything settles (no task left running or waiting).
    let final_states = [
        "succeeded",
        "failed",
        "cancelled",
        "dependency_failed",
        "timed_out",
    ];
    poll(
        "every task in a final state on the leader",
        Duration::from_secs(90),
        || {
            let tasks = all_tasks(&set, leader)?;
            (tasks.len() == 41
                && tasks
                    .iter()
                    .all(|t| final_states.contains(&t["state"].as_str().unwrap_or(""))))
            .then_some(())
        },
        || set.logs(),
    );
    // The leader has snapshotted (in the binary format) and purged its log behind.
    assert_eq!(
        snapshot_header(&set, leader).as_deref(),
        Some(&b"DROVSNAP"[..]),
        "the leader's snapshot.bin\n{}",
        set.logs()
    );
    let leader_log = std::fs::read_to_string(set.log(leader)).unwrap_or_default();
    assert!(
        leader_log.contains("built a snapshot"),
        "the leader built snapshots\n{}",
        set.logs()
    );

    // Back, empty: it is sent the snapshot, then the entries after it.
    set.start(follower);
    let expected = all_tasks(&set, leader).expect("the leader's tasks");
    poll(
        "the rejoined follower serves the same tasks as the leader",
        Duration::from_secs(60),
        || (all_tasks(&set, follower)? == expected).then_some(()),
        || {
            format!(
                "follower has {:?} tasks, leader {}\n{}",
                all_tasks(&set, follower).map(|t| t.len()),
                expected.len(),
                set.logs()
            )
        },
    );
    let follower_log = std::fs::read_to_string(set.log(follower)).unwrap_or_default();
    assert!(
        follower_log.contains("installed a snapshot from the leader"),
        "the follower caught up from a snapshot, not from the whole log\n{}",
        set.logs()
    );
    assert_eq!(
        snapshot_header(&set, follower).as_deref(),
        Some(&b"DROVSNAP"[..]),
        "the received snapshot is the follower's own now"
    );

    // And it follows the log from there: a new task shows up on it too, and a task
    // from before the wipe reads the same on both.
    let after = submit(&set, leader, json!({"command": ["true"], "name": "after"}));
    let on_follower = poll(
        "the new task on the follower",
        SLOW,
        || set.task_on(follower, after).filter(|t| t.state.is_final()),
        || set.logs(),
    );
    assert_eq!(on_follower.state, drover_types::TaskState::Succeeded);
    let a = set.get(leader, &format!("/v1/tasks/{first}"));
    let b = set.get(follower, &format!("/v1/tasks/{first}"));
    assert_eq!(a.json(), b.json());
}
