//! The event stream across a leader change: `drover events` given every server follows
//! the leader until it is killed (`kill -9`), moves to a survivor, resumes after the
//! last id it printed, and misses nothing and repeats nothing; the change of leader is
//! itself an event, told at the same id by every server.

mod common;

use common::event_lines::{EventLines, id_of};
use common::servers::ServerSet;
use common::*;
use serde_json::Value;

/// `drover --json events ARGS` given `servers`, in the background.
fn events_from(set: &ServerSet, servers: &str, args: &[&str]) -> EventLines {
    let mut c = drover_command();
    c.arg("--data-dir")
        .arg(set.root.join("cli"))
        .args([
            "--server", servers, "--token", &set.token, "--json", "events",
        ])
        .args(set.ca_args())
        .args(args);
    EventLines::spawn(c)
}

fn succeeded(v: &Value, task: u64) -> bool {
    v["type"] == "task" && v["task"] == task && v["state"] == "succeeded"
}

#[test]
fn a_follower_of_the_stream_moves_to_a_survivor_without_a_gap_or_a_duplicate() {
    let mut set = ServerSet::new("ha-events");
    for i in 0..3 {
        set.start(i);
    }
    let leader = set.wait_leader(SLOW);
    set.add_worker("w", &["--cpus", "2"]);

    // The stream is read from the leader first (its URL first in the list), from the
    // start of the log, so that both halves can be compared with a survivor's.
    let mut order = vec![leader];
    order.extend((0..3).filter(|i| *i != leader));
    let servers = order
        .iter()
        .map(|i| set.url(*i))
        .collect::<Vec<_>>()
        .join(",");
    let stream = events_from(&set, &servers, &["--since", "0-0"]);

    let before: Vec<u64> = (0..3)
        .map(|_| {
            let out = set.cli_ok(&["submit", "--cpus", "0.5", "--", "true"]);
            out.stdout.trim().parse().unwrap()
        })
        .collect();
    let last_before = *before.last().unwrap();
    let mut seen = stream.until("the last task before the kill", |v| {
        succeeded(v, last_before)
    });
    let old_term = seen
        .iter()
        .filter(|v| v["type"] == "leader")
        .map(|v| v["term"].as_u64().unwrap())
        .max()
        .expect("the first leader's election is an event");

    set.kill(leader);
    let new_leader = set.wait_leader(SLOW);
    let after: Vec<u64> = (0..3)
        .map(|_| {
            let out = set.cli_ok(&["submit", "--cpus", "0.5", "--", "true"]);
            out.stdout.trim().parse().unwrap()
        })
        .collect();
    let last_after = *after.last().unwrap();
    seen.extend(stream.until("the last task after the kill", |v| succeeded(v, last_after)));

    // Strictly increasing ids: no duplicate, nothing out of order across the move.
    for pair in seen.windows(2) {
        assert!(
            id_of(&pair[0]) < id_of(&pair[1]),
            "ids not increasing: {} then {}",
            pair[0],
            pair[1]
        );
    }
    // The new leader's election was told, with a higher term and its node id.
    // Node ids are 1-based positions in the sorted peer list (the set's order).
    let new_id = new_leader as u64 + 1;
    assert!(
        seen.iter().any(|v| v["type"] == "leader"
            && v["term"].as_u64().unwrap() > old_term
            && v["leader"].as_u64() == Some(new_id)),
        "no leader event for server {new_id} after term {old_term}: {seen:#?}"
    );
    // No gap: a survivor read from the start gives exactly the same events over the
    // same range (every replica derives them from the same committed entries).
    let survivor = (0..3).find(|i| *i != leader).unwrap();
    let reference = events_from(&set, &set.url(survivor), &["--since", "0-0"]);
    let last_id = seen.last().unwrap()["id"].clone();
    let full = reference.until("the survivor's copy", |v| v["id"] == last_id);
    let strip = |v: &Value| {
        let mut v = v.clone();
        v.as_object_mut().unwrap().remove("at");
        v
    };
    assert_eq!(
        seen.len(),
        full.len(),
        "the stream that moved saw {} events, the survivor holds {}",
        seen.len(),
        full.len()
    );
    for (a, b) in seen.iter().zip(&full) {
        assert_eq!(a["id"], b["id"]);
        assert_eq!(strip(a), strip(b));
        assert_eq!(a["at"], b["at"], "event times differ between servers");
    }
    for t in before.iter().chain(&after) {
        assert!(
            seen.iter().any(|v| succeeded(v, *t)),
            "task {t} succeeded unseen"
        );
    }
}
