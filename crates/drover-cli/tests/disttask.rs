//! The DistTask-compatible routes (`POST /submit_task`, `GET /get_results`, `GET /status`)
//! against a real server and a real worker, from the server's side: the task they make,
//! how values and errors are read back from the tasks' results, paging, and a
//! namespace-scoped token seeing only its own tasks' results. The Python side (the real
//! `serialize_task` and `python3 -m drover.runner`) is tested by `python/tests`
//! (`scripts/python-tests.sh`).
//!
//! So that this test does not depend on the Python package being installed, the worker's
//! `python3` is a script first on its `PATH` that prints a runner's result line: the
//! payload it was given as the value, or an error for the payload `ZmFpbA==` ("fail").

mod common;

use common::*;
use serde_json::{Value, json};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

const STAND_IN: &str = r#"#!/bin/sh
# Stands in for `python3 -m drover.runner`: one result line, chosen by the payload.
[ "$1 $2" = "-m drover.runner" ] || { echo "unexpected arguments: $*" >&2; exit 2; }
case "$DROVERPY_PAYLOAD" in
  ZmFpbA==) echo '{"drover_python":1,"ok":false,"error":"ValueError: no","traceback":"Traceback: here"}'; exit 1 ;;
  *) printf '{"drover_python":1,"ok":true,"pickle":"","json":{"payload":"%s"},"repr":"x"}\n' "$DROVERPY_PAYLOAD" ;;
esac
"#;

/// A directory holding the stand-in `python3`, readable by the task user.
fn stand_in_bin(root: &Path) -> String {
    let bin = root.join("fake-python-bin");
    std::fs::create_dir_all(&bin).unwrap();
    let python = bin.join("python3");
    std::fs::write(&python, STAND_IN).unwrap();
    for (p, mode) in [
        (root, 0o755),
        (bin.as_path(), 0o755),
        (python.as_path(), 0o755),
    ] {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
    }
    bin.display().to_string()
}

fn submit(c: &Cluster, token: &str, task: &str) -> u64 {
    let body = serde_json::to_vec(&json!({ "task": task })).unwrap();
    let r = http(&c.addr, "POST", "/submit_task", Some(token), Some(&body));
    assert_eq!(r.status, 201, "POST /submit_task: {}", r.text());
    assert_eq!(r.json()["message"], "task submitted");
    r.json()["task_id"].as_u64().expect("a task id")
}

fn results(c: &Cluster, token: &str, query: &str) -> Value {
    let r = http(
        &c.addr,
        "GET",
        &format!("/get_results{query}"),
        Some(token),
        None,
    );
    assert_eq!(r.status, 200, "GET /get_results{query}: {}", r.text());
    r.json()
}

fn ids(body: &Value) -> Vec<u64> {
    body["results"]
        .as_array()
        .expect("results")
        .iter()
        .map(|r| r["task_id"].as_u64().unwrap())
        .collect()
}

#[test]
fn disttask_routes_make_ordinary_tasks_and_read_their_results_back() {
    let mut c = Cluster::start("disttask");
    let path = format!(
        "{}:{}",
        stand_in_bin(&c.root),
        std::env::var("PATH").unwrap_or_else(|_| "/usr/bin:/bin".into())
    );
    c.worker_env.push(("PATH".into(), path));
    c.add_worker("w", &["--cpus", "2"]);
    let token = c.token.clone();

    let ok = submit(&c, &token, "AAAA");
    let failing = submit(&c, &token, "ZmFpbA==");
    // An ordinary task is not a DistTask result.
    let plain = c.submit(json!({"command": ["true"]}));

    // The task is an ordinary one: the runner, the payload in its environment, a label.
    let info = c.get_ok(&format!("/v1/tasks/{ok}"));
    assert_eq!(
        info["spec"]["command"],
        json!(["python3", "-m", "drover.runner"])
    );
    assert_eq!(info["spec"]["env"]["DROVERPY_PAYLOAD"], "AAAA");
    assert_eq!(info["spec"]["labels"], json!({"drover.api": "disttask"}));

    let deadline = Instant::now() + Duration::from_secs(60);
    let body = loop {
        c.wait_final(plain, Duration::from_secs(60));
        let body = results(&c, &token, "");
        if ids(&body).len() == 2 {
            break body;
        }
        assert!(
            Instant::now() < deadline,
            "no results: {body}\n{}",
            c.logs()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(ids(&body), vec![ok, failing], "{body}");
    assert_eq!(body["pending"], 0);
    assert_eq!(
        body["results"][0],
        json!({"task_id": ok, "state": "succeeded", "result": {"payload": "AAAA"}})
    );
    assert_eq!(
        body["results"][1],
        json!({"task_id": failing, "state": "failed", "error": "ValueError: no", "traceback": "Traceback: here"})
    );

    // A page at a time.
    let first = results(&c, &token, "?limit=1");
    assert_eq!(ids(&first), vec![ok]);
    let next = first["next_after"].as_u64().expect("next_after");
    let rest = results(&c, &token, &format!("?after={next}"));
    assert_eq!(ids(&rest), vec![failing]);
    assert_eq!(rest["next_after"], Value::Null);

    // The workers and the counts.
    let r = http(&c.addr, "GET", "/status", Some(&token), None);
    assert_eq!(r.status, 200, "{}", r.text());
    let status = r.json();
    let names: Vec<&str> = status["workers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec![c.worker_name("w").as_str()]);
    assert_eq!(status["tasks"]["succeeded"], 2);
    assert_eq!(status["tasks"]["failed"], 1);

    // A namespace-scoped token submits as its namespace and reads only its own results.
    let out = c.cli_ok(&[
        "--json",
        "token",
        "create",
        "--role",
        "submit",
        "--namespace",
        "team-a",
    ]);
    let created: Value = serde_json::from_str(&out.stdout).unwrap();
    let scoped = created["secret"].as_str().unwrap().to_string();
    let own = submit(&c, &scoped, "QkJCQg==");
    assert_eq!(
        c.get_ok(&format!("/v1/tasks/{own}"))["spec"]["owner"],
        "team-a"
    );
    c.wait_final(own, Duration::from_secs(60));
    assert_eq!(ids(&results(&c, &scoped, "")), vec![own]);
    assert_eq!(ids(&results(&c, &token, "")), vec![ok, failing, own]);
    // /status is cluster-wide, like /v1/workers: not for a scoped token.
    let r = http(&c.addr, "GET", "/status", Some(&scoped), None);
    assert_eq!(r.status, 403, "{}", r.text());
}
