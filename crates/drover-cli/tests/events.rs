//! The event stream seen from the outside: `drover events`, `GET /v1/events`
//! (resume, reset, filters, slow clients, restarts), and the commands that use it
//! instead of polling (`run`, `wait`, `logs -f`).

mod common;

use common::event_lines::{EventLines, id_of};
use common::*;
use serde_json::{Value, json};
use std::io::{BufRead, BufReader, Write};
use std::process::Stdio;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// `drover --json events ARGS` against the cluster, in the background.
struct Events;

impl Events {
    /// Starts `drover --json events ARGS` and returns once the server counts its stream
    /// open, so that everything after this call is in it (a fixed pause is not enough
    /// when the machine is busy and the CLI slow to start).
    fn start(c: &Cluster, args: &[&str]) -> EventLines {
        let before = open_streams(c);
        let mut all = vec!["--json", "events"];
        all.extend_from_slice(args);
        let lines = EventLines::spawn(c.cli_command(&all));
        c.poll("the event stream to open", SLOW, || {
            (open_streams(c) > before).then_some(())
        });
        lines
    }
}

/// Event streams this server has answered so far: the request counter of
/// `GET /v1/events`, which only grows (the open-streams gauge also falls when a killed
/// reader is noticed, at a moment the test does not control).
fn open_streams(c: &Cluster) -> u64 {
    let text = c.get("/metrics").text();
    text.lines()
        .filter(|l| {
            l.starts_with("drover_http_request_duration_seconds_count{")
                && l.contains("route=\"/v1/events\"")
                && l.contains("status=\"200\"")
        })
        .filter_map(|l| l.rsplit_once(' ')?.1.trim().parse::<f64>().ok())
        .map(|v| v as u64)
        .sum()
}

fn is_final_of(v: &Value, task: u64) -> bool {
    v["type"] == "task"
        && v["task"] == task
        && [
            "succeeded",
            "failed",
            "cancelled",
            "timed_out",
            "dependency_failed",
        ]
        .contains(&v["state"].as_str().unwrap_or(""))
}

fn states_of(events: &[Value], task: u64) -> Vec<String> {
    events
        .iter()
        .filter(|v| v["type"] == "task" && v["task"] == task)
        .map(|v| v["state"].as_str().unwrap().to_string())
        .collect()
}

fn assert_increasing(events: &[Value]) {
    for w in events.windows(2) {
        assert!(
            id_of(&w[0]) < id_of(&w[1]),
            "{} then {}",
            w[0]["id"],
            w[1]["id"]
        );
    }
}

#[test]
fn a_client_sees_a_task_go_ready_running_succeeded_with_ids_increasing() {
    let mut c = Cluster::start("ev-life");
    c.add_worker("w", &["--cpus", "2", "--memory", "2G"]);
    let ev = Events::start(&c, &[]);
    let id = c.submit(json!({"command": ["true"]}));
    let got = ev.until("the task's end", |v| is_final_of(v, id));
    assert_increasing(&got);
    assert_eq!(
        states_of(&got, id),
        ["ready", "assigned", "running", "succeeded"],
        "{got:#?}"
    );
    let end = got.last().unwrap();
    assert_eq!(end["attempt"], 1);
    assert_eq!(end["outcome"]["kind"], "exited");
    assert_eq!(end["outcome"]["code"], 0);
    assert!(end["worker"].is_u64());
    // The job's progress follows: 1 of 1 done.
    let job = ev.until("job progress", |v| v["type"] == "job" && v["done"] == 1);
    assert_eq!(job.last().unwrap()["total"], 1);
}

#[test]
fn filters_pick_tasks_jobs_workers_and_types() {
    let mut c = Cluster::start("ev-filter");
    let only_jobs = Events::start(&c, &["--type", "job"]);
    let only_workers = Events::start(&c, &["--type", "worker"]);
    // A worker named by an id it does not have yet.
    let on_w1 = Events::start(&c, &["--worker", "w1"]);
    c.add_worker("w", &["--cpus", "2", "--memory", "2G"]);
    let a = c.submit(json!({"command": ["true"]}));
    let only_b = Events::start(&c, &["--task", &(a + 1).to_string()]);
    let b = c.submit(json!({"command": ["true"]}));
    assert_eq!(b, a + 1);
    c.wait_final(a, SLOW);
    c.wait_final(b, SLOW);
    let got = only_b.until("b's end", |v| is_final_of(v, b));
    assert!(
        got.iter().all(|v| v["type"] == "task" && v["task"] == b),
        "{got:#?}"
    );
    let jobs = only_jobs.until("two jobs done", |v| v["done"] == 1 && v["job"] == 2);
    assert!(jobs.iter().all(|v| v["type"] == "job"), "{jobs:#?}");
    let workers = only_workers.until("the join", |v| v["change"] == "joined");
    assert!(
        workers.iter().all(|v| v["type"] == "worker"),
        "{workers:#?}"
    );
    let w1 = on_w1.until("b's end on w1", |v| is_final_of(v, b));
    assert_eq!(w1[0]["type"], "worker", "{w1:#?}");
    assert!(
        w1.iter().all(|v| v["worker"] == 1 && v["type"] != "job"),
        "{w1:#?}"
    );
    // Behind the token like every other route.
    let r = http(&c.addr, "GET", "/v1/events", None, None);
    assert_eq!(r.status, 401);
    // A job filter over the API, comma-separated kinds, and a bad kind refused.
    let bad = c.get("/v1/events?type=tasks");
    assert_eq!(bad.status, 400, "{}", bad.text());
    assert!(
        bad.text().contains("task, worker, job, policy"),
        "{}",
        bad.text()
    );
}

/// Resuming with Last-Event-ID (via `--since`) after a disconnection gives exactly the
/// events a reader that never disconnected got: no gap, no duplicate.
#[test]
fn last_event_id_resumes_with_no_gap_and_no_duplicate() {
    let mut c = Cluster::start("ev-resume");
    c.add_worker("w", &["--cpus", "2", "--memory", "2G"]);
    let steady = Events::start(&c, &[]);
    let first = Events::start(&c, &[]);
    let a = c.submit(json!({"command": ["true"]}));
    let got1 = first.until("a's end", |v| is_final_of(v, a));
    drop(first); // disconnected mid-stream
    let last = got1.last().unwrap()["id"].as_str().unwrap().to_string();
    let b = c.submit(json!({"command": ["true"]}));
    let d = c.submit(json!({"command": ["true"]}));
    c.wait_final(b, SLOW);
    c.wait_final(d, SLOW);
    let second = Events::start(&c, &["--since", &last]);
    let got2 = second.until("d's end", |v| is_final_of(v, d));
    let all = steady.until("d's end", |v| is_final_of(v, d));
    let mut joined = got1.clone();
    joined.extend(got2.clone());
    assert_increasing(&joined);
    let ids = |v: &[Value]| v.iter().map(|e| e["id"].clone()).collect::<Vec<_>>();
    assert_eq!(ids(&joined), ids(&all));
    assert_eq!(joined, all);
    // The resumed reader also saw a's job complete, which came after `last`.
    assert_eq!(
        states_of(&got2, b),
        ["ready", "assigned", "running", "succeeded"]
    );
}

#[test]
fn an_id_older_than_the_retained_window_gets_a_reset() {
    let mut c = Cluster::start_with(
        "ev-reset",
        &[
            "--worker-timeout",
            "3s",
            "--heartbeat-interval",
            "250ms",
            "--events-retained",
            "5",
        ],
    );
    c.add_worker("w", &["--cpus", "2", "--memory", "2G"]);
    for _ in 0..3 {
        let id = c.submit(json!({"command": ["true"]}));
        c.wait_final(id, SLOW);
    }
    let ev = Events::start(&c, &["--since", "1-0"]);
    let got = ev.until("the retained events", |v| {
        v["type"] == "job" && v["job"] == 3 && v["done"] == 1
    });
    assert_eq!(got[0]["type"], "reset", "{got:#?}");
    let dropped = got[0]["dropped_through"].as_str().unwrap().to_string();
    assert!(
        got[0]["message"]
            .as_str()
            .unwrap()
            .contains("no longer retained")
    );
    // Then exactly the 5 retained events, all after what was dropped.
    let rest = &got[1..];
    assert_eq!(rest.len(), 5, "{got:#?}");
    assert_increasing(rest);
    let d = id_of(&json!({"id": dropped}));
    assert!(rest.iter().all(|v| id_of(v) > d));
    // An id within the window resumes without a reset.
    let within = rest[1]["id"].as_str().unwrap().to_string();
    let ev2 = Events::start(&c, &["--since", &within]);
    let got2 = ev2.until("the rest", |v| {
        v["type"] == "job" && v["job"] == 3 && v["done"] == 1
    });
    assert_eq!(got2, rest[2..].to_vec());
}

/// Clients that never read their stream slow neither apply nor other clients.
#[test]
fn a_slow_client_does_not_delay_another_clients_run() {
    let mut c = Cluster::start_with(
        "ev-slow",
        &[
            "--worker-timeout",
            "3s",
            "--heartbeat-interval",
            "250ms",
            "--events-retained",
            "1000",
        ],
    );
    c.add_worker("w", &["--cpus", "4", "--memory", "2G"]);
    let time_run = |c: &Cluster| {
        let t = Instant::now();
        c.cli_ok(&["run", "--", "true"]);
        t.elapsed()
    };
    let before = time_run(&c);
    // Three readers that never read, then a flood of events for them.
    let mut stuck = Vec::new();
    for _ in 0..3 {
        let mut s = tls::connect(&c.addr).unwrap();
        write!(
            s,
            "GET /v1/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\n\r\n",
            c.token
        )
        .unwrap();
        stuck.push(s);
    }
    let mut name = String::from("x");
    for _ in 0..12 {
        name.push_str("yyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyy");
    }
    let tasks: Vec<Value> = (0..300).map(|_| json!({"command": ["true"]})).collect();
    let (_, first, count) = c.submit_job(json!({"name": name, "tasks": tasks}));
    c.wait_final(first + count - 1, SLOW);
    let after = time_run(&c);
    eprintln!("drover run: {before:?} alone, {after:?} with 3 stuck readers after a flood");
    assert!(
        after < before * 3 + Duration::from_millis(500),
        "{before:?} -> {after:?}"
    );
    drop(stuck);
}

/// After a restart the buffer holds what the server re-applied after its snapshot (here
/// the whole log: no snapshot yet), with the same ids: a reader resumes as before.
#[test]
fn after_a_restart_resume_gets_the_same_events_again() {
    let mut c = Cluster::start("ev-restart");
    c.add_worker("w", &["--cpus", "2", "--memory", "2G"]);
    let ev = Events::start(&c, &[]);
    let a = c.submit(json!({"command": ["true"]}));
    let before = ev.until("a's end", |v| is_final_of(v, a));
    drop(ev);
    c.kill_server();
    c.restart_server();
    let since = before[0]["id"].as_str().unwrap().to_string();
    let again = Events::start(&c, &["--since", &since]);
    let got = again.until("a's end again", |v| is_final_of(v, a));
    assert_eq!(got, before[1..].to_vec());
}

fn now_ms() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
        * 1000.0
}

/// `drover logs -f` gets each line as it is printed, not on a polling quantum.
#[test]
fn logs_follow_shows_lines_as_they_are_printed() {
    let mut c = Cluster::start("ev-logs");
    c.add_worker("w", &["--cpus", "2", "--memory", "2G"]);
    let id = c.submit(json!({
        "command": ["sh", "-c", "for i in 1 2 3 4 5 6 7 8; do date +%s%N; sleep 0.3; done"]
    }));
    c.wait_state(id, "running", SLOW);
    let mut child = c
        .cli_command(&["logs", "-f", &id.to_string()])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let out = BufReader::new(child.stdout.take().unwrap());
    let mut lags = Vec::new();
    for line in out.lines() {
        let line = line.unwrap();
        let printed: f64 = line.trim().parse::<f64>().unwrap() / 1e6;
        lags.push(now_ms() - printed);
    }
    child.wait().unwrap();
    // The first lines were printed before we followed.
    let live: Vec<f64> = lags.iter().copied().filter(|l| *l < 250.0).collect();
    eprintln!("logs -f lag per line (ms): {lags:.0?}");
    assert!(live.len() >= 4, "{lags:?}");
    let mut sorted = live.clone();
    sorted.sort_by(f64::total_cmp);
    assert!(sorted[sorted.len() / 2] < 100.0, "median lag {sorted:?}");
}

/// `drover run` returns soon after the task ends: woken by the stream, not polling.
#[test]
fn run_returns_soon_after_the_task_ends() {
    let mut c = Cluster::start("ev-run");
    c.add_worker("w", &["--cpus", "2", "--memory", "2G"]);
    let mut lags = Vec::new();
    for _ in 0..5 {
        let out = c.cli_ok(&["run", "--shell", "--", "sleep 0.5; date +%s%N"]);
        let ended = now_ms();
        let printed: f64 = out.stdout.trim().parse::<f64>().unwrap() / 1e6;
        lags.push(ended - printed);
    }
    eprintln!("run: from the task's last line to the CLI's exit (ms): {lags:.0?}");
    let mut sorted = lags.clone();
    sorted.sort_by(f64::total_cmp);
    assert!(sorted[2] < 150.0, "{lags:?}");
}
