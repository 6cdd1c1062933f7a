//! `GET /metrics` checked against a known workload: the values, not only the names.

mod common;

use common::*;
use serde_json::json;
use std::collections::BTreeMap;

/// The samples of a Prometheus text page: `name{labels}` (labels as printed) → value.
fn parse(page: &str) -> BTreeMap<String, f64> {
    page.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let (k, v) = l.rsplit_once(' ').expect("NAME VALUE");
            (k.to_string(), v.parse::<f64>().expect("a number"))
        })
        .collect()
}

fn value(m: &BTreeMap<String, f64>, key: &str) -> f64 {
    *m.get(key)
        .unwrap_or_else(|| panic!("no sample {key} in:\n{}", dump(m)))
}

fn dump(m: &BTreeMap<String, f64>) -> String {
    m.iter()
        .map(|(k, v)| format!("{k} {v}"))
        .collect::<Vec<_>>()
        .join("\n")
}

fn scrape(c: &Cluster) -> BTreeMap<String, f64> {
    let r = c.get("/metrics");
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(
        r.header("content-type")
            .is_some_and(|t| t.starts_with("text/plain; version=0.0.4")),
        "{:?}",
        r.header("content-type")
    );
    parse(&r.text())
}

#[test]
fn metrics_count_a_known_workload() {
    let mut c = Cluster::start("metrics");
    let port = common::servers::free_ports(1)[0];
    let worker_metrics = format!("127.0.0.1:{port}");
    let worker = c.add_worker("w", &["--cpus", "2", "--metrics", &worker_metrics]);

    // Without the token: refused, like every other route.
    let anonymous = http(&c.addr, "GET", "/metrics", None, None);
    assert_eq!(anonymous.status, 401, "{}", anonymous.text());

    // 4 succeed (one of them high priority), 2 fail, 1 can never be placed (too big),
    // 1 waits on the unplaceable one, 1 sleeps (running at the scrape).
    let mut done = Vec::new();
    for i in 0..4 {
        let prio = if i == 0 { 5 } else { 0 };
        done.push(c.submit(json!({"command": ["true"], "priority": prio})));
    }
    for _ in 0..2 {
        done.push(c.submit(json!({"command": ["false"]})));
    }
    // A command that cannot be started: the driver refuses it.
    let unstartable = c.submit(json!({"command": ["/nonexistent/drover-test-binary"]}));
    let big =
        c.submit(json!({"command": ["true"], "resources": {"cpu_milli": 64000}, "priority": -3}));
    let child = c.submit(json!({"command": ["true"], "after": [big]}));
    let sleeper = c.submit(json!({"command": ["sleep", "30"], "resources": {"cpu_milli": 500}}));
    for id in &done {
        c.wait_final(*id, SLOW);
    }
    let refused = c.wait_final(unstartable, SLOW);
    eprintln!("the unstartable task: {refused:?}");
    c.wait_state(sleeper, "running", SLOW);

    let m = scrape(&c);
    let t = |state: &str, class: &str| {
        value(
            &m,
            &format!("drover_tasks{{state=\"{state}\",priority_class=\"{class}\"}}"),
        )
    };
    assert_eq!(t("succeeded", "high"), 1.0);
    assert_eq!(t("succeeded", "normal"), 3.0);
    assert_eq!(t("failed", "normal"), 3.0, "2 exited 1, 1 could not start");
    assert_eq!(t("ready", "low"), 1.0, "the task too big for any worker");
    assert_eq!(t("waiting", "normal"), 1.0, "its dependant");
    assert_eq!(t("running", "normal"), 1.0);
    assert_eq!(t("cancelled", "normal"), 0.0, "zeros are listed too");
    assert_eq!(value(&m, "drover_tasks_submitted"), 10.0);
    assert_eq!(value(&m, "drover_queue_depth{reason=\"resources\"}"), 1.0);
    assert_eq!(
        value(&m, "drover_queue_depth{reason=\"dependencies\"}"),
        1.0
    );

    // Counted as applied: 8 placements (7 done + the sleeper), 7 completions.
    assert_eq!(value(&m, "drover_task_placements_total"), 8.0);
    assert_eq!(
        value(&m, "drover_task_completions_total{state=\"succeeded\"}"),
        4.0
    );
    assert_eq!(
        value(&m, "drover_task_completions_total{state=\"failed\"}"),
        3.0
    );
    // 8 attempts began (the refused launch too: it starts and ends at once), 7 ended.
    assert_eq!(value(&m, "drover_task_submit_to_start_seconds_count"), 8.0);
    assert_eq!(value(&m, "drover_task_start_to_end_seconds_count"), 7.0);
    let sum = value(&m, "drover_task_start_to_end_seconds_sum");
    assert!((0.0..30.0).contains(&sum), "start to end sum {sum}");
    assert_eq!(
        value(&m, "drover_task_start_to_end_seconds_bucket{le=\"+Inf\"}"),
        7.0
    );

    // Workers and resources: one worker of 2 cpus, 0.5 reserved by the sleeper.
    assert_eq!(value(&m, "drover_workers{state=\"active\"}"), 1.0);
    assert_eq!(value(&m, "drover_workers{state=\"lost\"}"), 0.0);
    assert_eq!(value(&m, "drover_capacity{resource=\"cpu\"}"), 2.0);
    assert_eq!(value(&m, "drover_allocated{resource=\"cpu\"}"), 0.5);
    assert!(
        m.contains_key(&format!(
            "drover_worker_used{{worker=\"{worker}\",resource=\"cpu\"}}"
        )),
        "per-worker usage for {worker}:\n{}",
        dump(&m)
    );

    // Raft: one server leads itself, nothing left to apply.
    assert_eq!(value(&m, "drover_raft_is_leader"), 1.0);
    assert_eq!(value(&m, "drover_raft_leader_id"), 1.0);
    assert!(value(&m, "drover_raft_term") >= 1.0);
    assert!(value(&m, "drover_raft_applied_index") >= 1.0);
    assert_eq!(value(&m, "drover_raft_apply_lag"), 0.0);

    // API requests by route pattern (not by raw path), status included: the 10
    // submissions, and the refused scrape.
    assert_eq!(
        value(
            &m,
            "drover_http_request_duration_seconds_count{method=\"POST\",route=\"/v1/tasks\",status=\"201\"}"
        ),
        10.0
    );
    assert_eq!(
        value(
            &m,
            "drover_http_request_duration_seconds_count{method=\"GET\",route=\"/metrics\",status=\"401\"}"
        ),
        1.0
    );
    assert!(
        m.keys()
            .any(|k| k.contains("route=\"/v1/tasks/{task}\"") && k.contains("status=\"200\"")),
        "task reads are labelled by their pattern:\n{}",
        dump(&m)
    );
    assert!(
        !m.keys()
            .any(|k| k.contains(&format!("/v1/tasks/{sleeper}")))
    );

    // An open event stream is counted while it lasts.
    assert_eq!(value(&m, "drover_event_stream_clients"), 0.0);
    let mut events = c
        .cli_command(&["events"])
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("drover events");
    c.poll("the event stream counted", SLOW, || {
        (value(&scrape(&c), "drover_event_stream_clients") == 1.0).then_some(())
    });
    let _ = events.kill();
    let _ = events.wait();
    c.poll("the closed stream uncounted", SLOW, || {
        (value(&scrape(&c), "drover_event_stream_clients") == 0.0).then_some(())
    });
    let _ = child;

    // The worker's own endpoint: 8 launches, 1 could not start, 1 running, ends by outcome.
    let r = http(&worker_metrics, "GET", "/metrics", None, None);
    assert_eq!(r.status, 200, "{}", r.text());
    let w = parse(&r.text());
    assert_eq!(value(&w, "drover_worker_spawn_seconds_count"), 8.0);
    assert_eq!(value(&w, "drover_worker_driver_errors_total"), 1.0);
    assert_eq!(value(&w, "drover_worker_running_attempts"), 1.0);
    assert_eq!(value(&w, "drover_worker_waiting_starts"), 0.0);
    assert_eq!(
        value(&w, "drover_worker_attempts_ended_total{outcome=\"exited\"}"),
        6.0
    );
    assert_eq!(
        value(
            &w,
            "drover_worker_attempts_ended_total{outcome=\"spawn_failed\"}"
        ),
        1.0
    );

    // The Grafana dashboard in the repository asks only for series that exist.
    let dashboard: serde_json::Value = serde_json::from_str(&read(
        &std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../docs/grafana/drover-dashboard.json"),
    ))
    .expect("the dashboard is JSON");
    let mut asked = Vec::new();
    for panel in dashboard["panels"].as_array().expect("panels") {
        for target in panel["targets"].as_array().expect("targets") {
            let expr = target["expr"].as_str().expect("an expression");
            let mut rest = expr;
            while let Some(at) = rest.find("drover_") {
                let name: String = rest[at..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                rest = &rest[at + name.len()..];
                asked.push(name);
            }
        }
    }
    assert!(asked.len() > 15, "{asked:?}");
    for name in asked {
        let exists = m.keys().chain(w.keys()).any(|k| {
            k.strip_prefix(name.as_str())
                .is_some_and(|r| r.is_empty() || r.starts_with('{'))
        });
        assert!(
            exists,
            "the dashboard asks for {name}, which is not exported"
        );
    }
}
