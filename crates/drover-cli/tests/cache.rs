//! The result cache end to end, with a real server and worker: a task that counts its
//! runs in a file (in a directory the worker allows) runs once; the same task again is
//! completed from the cache (counter unchanged, same result and output, marked cached
//! in the API, `drover status`, `drover list`); another salt runs again; two identical
//! tasks in flight run once; an expired entry runs again; `drover cache ls|rm|clear`.

mod common;

use common::event_lines::EventLines;
use common::*;
use drover_types::TaskState;
use serde_json::json;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

fn lines(path: &Path) -> usize {
    std::fs::read_to_string(path)
        .map(|s| s.lines().count())
        .unwrap_or(0)
}

/// A shell line that appends to `counter`, prints how many runs it counted, then a
/// second line of output.
fn counting(counter: &Path) -> String {
    let c = counter.display();
    format!("echo run >> {c}; wc -l < {c}; echo second-line")
}

/// The id of the newest task.
fn newest(c: &Cluster) -> u64 {
    let v = c.get_ok("/v1/tasks");
    v["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_u64().unwrap())
        .max()
        .unwrap()
}

#[test]
fn identical_tasks_are_served_from_the_cache() {
    let mut c = Cluster::start("cache");
    let shared = c.root.join("shared");
    std::fs::create_dir_all(&shared).unwrap();
    // Tasks run as `nobody` when the worker is root.
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o777)).unwrap();
    let shared_arg = shared.display().to_string();
    c.add_worker("w", &["--cpus", "4", "--allow-path", &shared_arg]);

    // 1. The first run runs; the same task again is a hit.
    let counter = shared.join("counter");
    let script = counting(&counter);
    let first = c.cli_ok(&["run", "--cache", "--shell", "--", &script]);
    assert_eq!(lines(&counter), 1);
    assert_eq!(first.stdout, "1\nsecond-line\n", "{first}");
    let a = newest(&c);
    let events = EventLines::spawn(c.cli_command(&["--json", "events", "--type", "task"]));
    let second = c.cli_ok(&["run", "--cache", "--shell", "--", &script]);
    let b = newest(&c);
    assert_ne!(a, b);
    assert_eq!(lines(&counter), 1, "the second task did not run");
    assert_eq!(second.stdout, first.stdout, "the same output");
    let (ta, tb) = (c.task(a), c.task(b));
    assert_eq!(tb.state, TaskState::Succeeded, "{tb:#?}");
    assert_eq!(tb.cached_from, Some(drover_types::TaskId(a)), "{tb:#?}");
    assert_eq!(ta.cached_from, None);
    assert_eq!(tb.result, ta.result);
    assert!(tb.attempts.is_empty(), "nothing ran: {tb:#?}");
    let status = c.cli_ok(&["status", &b.to_string()]);
    assert!(
        status
            .stdout
            .contains(&format!("cached: result and output of task {a}")),
        "{status}"
    );
    let list = c.cli_ok(&["list"]);
    assert!(list.stdout.contains("succeeded (cached)"), "{list}");
    let logs_a = c.cli_ok(&["logs", &a.to_string()]);
    let logs_b = c.cli_ok(&["logs", &b.to_string()]);
    assert_eq!(logs_b.stdout, logs_a.stdout);
    assert_eq!(logs_b.stdout, "1\nsecond-line\n");
    // The event of the hit says so.
    let marked = format!("\"cached_from\":{a}");
    events.until("the hit's event", |v| v.to_string().contains(&marked));
    drop(events);

    // Counted in the metrics.
    let metrics = c.get("/metrics").text();
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("drover_cache_hits_total ")
                && l.split_whitespace()
                    .nth(1)
                    .and_then(|v| v.parse::<f64>().ok())
                    >= Some(1.0)),
        "{metrics}"
    );

    // 2. Another salt is another key: it runs.
    let salted = c.cli_ok(&["run", "--cache-salt", "v2", "--shell", "--", &script]);
    assert_eq!(lines(&counter), 2);
    assert_eq!(salted.stdout, "2\nsecond-line\n");

    // 3. Two identical tasks in flight run once: the second waits for the first.
    let counter2 = shared.join("counter2");
    let slow = format!(
        "echo run >> {c2}; sleep 2; wc -l < {c2}",
        c2 = counter2.display()
    );
    let task = json!({"command": [slow], "shell": true, "cache": {}});
    let (_, first_id, n) = c.submit_job(json!({"tasks": [task, task]}));
    assert_eq!(n, 2);
    let waiter = first_id + 1;
    let t = c.task(waiter);
    assert_eq!(t.state, TaskState::Waiting, "{t:#?}");
    let reason = t.reason.unwrap_or_default();
    assert!(
        reason.contains(&format!(
            "waiting for task {first_id} with the same cache key"
        )),
        "{reason}"
    );
    let done = c.wait_final(waiter, SLOW);
    assert_eq!(done.state, TaskState::Succeeded, "{done:#?}");
    assert_eq!(done.cached_from, Some(drover_types::TaskId(first_id)));
    assert_eq!(c.wait_final(first_id, SLOW).result, done.result);
    assert_eq!(lines(&counter2), 1, "ran once");

    // 4. An expired entry is not used.
    let counter3 = shared.join("counter3");
    let script3 = counting(&counter3);
    c.cli_ok(&["run", "--cache-ttl", "1s", "--shell", "--", &script3]);
    c.cli_ok(&["run", "--cache-ttl", "1s", "--shell", "--", &script3]);
    assert_eq!(lines(&counter3), 1, "within its TTL: a hit");
    std::thread::sleep(Duration::from_millis(1_500));
    let again = c.cli_ok(&["run", "--cache-ttl", "1s", "--shell", "--", &script3]);
    assert_eq!(lines(&counter3), 2, "expired: ran again");
    assert_eq!(again.stdout, "2\nsecond-line\n");

    // 5. `drover cache ls|rm|clear`.
    let ls = c.cli_ok(&["--json", "cache", "ls"]);
    let listed: serde_json::Value = serde_json::from_str(&ls.stdout).unwrap();
    let entries = listed["entries"].as_array().unwrap().clone();
    assert!(entries.len() >= 3, "{listed}");
    let of_a = entries
        .iter()
        .find(|e| e["task"] == a)
        .unwrap_or_else(|| panic!("no entry of task {a}: {listed}"));
    assert_eq!(of_a["hits"], 1, "{of_a}");
    let key = of_a["key"].as_str().unwrap().to_string();
    let human = c.cli_ok(&["cache", "ls"]);
    assert!(human.stdout.contains(&key), "{human}");
    c.cli_ok(&["cache", "rm", &key[..12]]);
    let gone = c.cli(&["cache", "rm", &key]);
    assert!(!gone.status.success(), "{gone}");
    assert!(gone.stderr.contains("no cache entry"), "{gone}");
    // Without the entry, the first task runs again.
    c.cli_ok(&["run", "--cache", "--shell", "--", &script]);
    assert_eq!(lines(&counter), 3);
    let cleared = c.cli_ok(&["cache", "clear"]);
    assert!(cleared.stdout.starts_with("removed "), "{cleared}");
    let after = c.get_ok("/v1/cache");
    assert_eq!(after["entries"].as_array().unwrap().len(), 0, "{after}");
    c.cli_ok(&["run", "--cache", "--shell", "--", &script]);
    assert_eq!(lines(&counter), 4, "cleared: ran again");
}
