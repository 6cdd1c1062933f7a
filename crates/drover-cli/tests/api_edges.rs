//! What the API and the CLI do with input they must refuse.

mod common;

use common::*;
use serde_json::{Value, json};
use std::io::{Read, Write};
use std::time::{Duration, Instant};

/// Posts raw bytes to `path`; requires a 4xx JSON error and returns (status, error).
fn reject(c: &Cluster, path: &str, body: &[u8]) -> (u16, Value) {
    let r = http(&c.addr, "POST", path, Some(&c.token), Some(body));
    assert!(
        (400..500).contains(&r.status),
        "POST {path} {:?} must be refused, got HTTP {} {}",
        String::from_utf8_lossy(body),
        r.status,
        r.text()
    );
    let ct = r.header("content-type").unwrap_or_default();
    assert!(
        ct.contains("application/json"),
        "error bodies are JSON, got content-type {ct:?}"
    );
    (r.status, r.error())
}

fn task_count(c: &Cluster) -> usize {
    c.get_ok("/v1/tasks")["tasks"]
        .as_array()
        .map_or(0, Vec::len)
}

#[test]
fn invalid_task_submissions_are_rejected_with_the_field_named() {
    let c = Cluster::start("invalid-task");
    let existing = c.submit(json!({"command": ["true"], "key": "taken"}));
    let cases: &[(&str, Value, &str, &str)] = &[
        ("empty command", json!({"command": []}), "command", "empty"),
        (
            "empty program",
            json!({"command": [""]}),
            "command[0]",
            "empty",
        ),
        ("missing command", json!({"name": "x"}), "command", ""),
        (
            "zero cpu",
            json!({"command": ["true"], "resources": {"cpu_milli": 0}}),
            "resources.cpu_milli",
            "",
        ),
        (
            "unknown dependency id",
            json!({"command": ["true"], "after": [99999]}),
            "after[0]",
            "99999",
        ),
        (
            "unknown dependency key",
            json!({"command": ["true"], "after": [1, "nokey"]}),
            "after[1]",
            "nokey",
        ),
        (
            "wrong type",
            json!({"command": ["true"], "resources": {"cpu_milli": "lots"}}),
            "resources.cpu_milli",
            "expected a whole number from 0 to 4294967295, found the string \"lots\"",
        ),
        (
            "unknown field",
            json!({"command": ["true"], "bogus": 1}),
            "bogus",
            "unknown field",
        ),
        (
            "zero attempts",
            json!({"command": ["true"], "retry": {"max_attempts": 0}}),
            "retry.max_attempts",
            "",
        ),
        (
            "too short a limit",
            json!({"command": ["true"], "max_runtime_ms": 1}),
            "max_runtime_ms",
            "",
        ),
        (
            "reserved env",
            json!({"command": ["true"], "env": {"DROVER_TASK_ID": "7"}}),
            "env.DROVER_TASK_ID",
            "reserved",
        ),
        (
            "all-digit key",
            json!({"command": ["true"], "key": "123"}),
            "key",
            "",
        ),
        (
            "bad key",
            json!({"command": ["true"], "key": "a b"}),
            "key",
            "",
        ),
        (
            "key with a slash",
            json!({"command": ["true"], "key": "a/b"}),
            "key",
            "'/'",
        ),
        (
            "dependency in an unknown job",
            json!({"command": ["true"], "after": ["nightly/taken"]}),
            "after[0]",
            "no job named \"nightly\"",
        ),
        (
            "negative array",
            json!({"command": ["true"], "array": {"start": 5, "end": 1}}),
            "array",
            "",
        ),
        (
            "nul in argument",
            json!({"command": ["true", "a\u{0}b"]}),
            "command[1]",
            "NUL",
        ),
    ];
    for (what, body, field, words) in cases {
        let (status, e) = reject(&c, "/v1/tasks", &serde_json::to_vec(body).unwrap());
        assert_eq!(status, 400, "{what}: {e}");
        assert_eq!(e["code"], "invalid_request", "{what}: {e}");
        assert_eq!(e["field"], *field, "{what}: the field is named: {e}");
        assert!(
            e["message"].as_str().unwrap().contains(words),
            "{what}: {e}"
        );
    }
    // Nothing of the above was created.
    assert_eq!(
        task_count(&c),
        1,
        "rejected submissions must create nothing"
    );
    assert_eq!(c.task(existing).state.as_str(), "ready");
}

#[test]
fn a_job_with_a_dependency_cycle_or_one_bad_task_is_rejected_whole() {
    let c = Cluster::start("invalid-job");
    let cycle = json!({"tasks": [
        {"key": "a", "command": ["true"], "after": ["c"]},
        {"key": "b", "command": ["true"], "after": ["a"]},
        {"key": "c", "command": ["true"], "after": ["b"]},
    ]});
    let (status, e) = reject(&c, "/v1/jobs", &serde_json::to_vec(&cycle).unwrap());
    assert_eq!(status, 400);
    assert!(e["message"].as_str().unwrap().contains("cycle"), "{e}");
    assert!(
        e["field"].as_str().is_some_and(|f| f.starts_with("tasks[")),
        "{e}"
    );

    let self_loop = json!({"tasks": [{"key": "me", "command": ["true"], "after": ["me"]}]});
    let (_, e) = reject(&c, "/v1/jobs", &serde_json::to_vec(&self_loop).unwrap());
    assert!(
        e["message"].as_str().unwrap().contains("cycle")
            || e["message"].as_str().unwrap().contains("itself"),
        "{e}"
    );

    let one_bad = json!({"tasks": [
        {"key": "fine", "command": ["true"]},
        {"key": "bad", "command": []},
    ]});
    let (_, e) = reject(&c, "/v1/jobs", &serde_json::to_vec(&one_bad).unwrap());
    assert_eq!(e["field"], "tasks[1].command", "{e}");

    let dup_keys = json!({"tasks": [
        {"key": "twice", "command": ["true"]},
        {"key": "twice", "command": ["true"]},
    ]});
    let (_, e) = reject(&c, "/v1/jobs", &serde_json::to_vec(&dup_keys).unwrap());
    assert!(
        e["field"]
            .as_str()
            .is_some_and(|f| f.starts_with("tasks[1]")),
        "{e}"
    );

    let (_, e) = reject(
        &c,
        "/v1/jobs",
        br#"{"tasks":[{"command":["true"],"resources":{"cpu_milli":-1}}]}"#,
    );
    assert_eq!(e["field"], "tasks[0].resources.cpu_milli", "{e}");

    assert_eq!(task_count(&c), 0, "a rejected job creates no task");
    assert_eq!(
        c.get("/v1/jobs/1").status,
        404,
        "a rejected job creates no job"
    );
}

#[test]
fn malformed_bodies_get_a_400_with_a_json_error() {
    let c = Cluster::start("malformed");
    let bodies: &[(&str, &[u8])] = &[
        ("truncated JSON", br#"{"command":"#),
        ("not JSON", b"command = true"),
        ("empty body", b""),
        ("trailing data", br#"{"command":["true"]} {"#),
        ("bad UTF-8 in a string", b"{\"command\":[\"\xff\xfe\"]}"),
        ("bad UTF-8 outside strings", b"{\"command\":[\"true\"]\xff}"),
        ("a JSON array instead of an object", br#"[["true"]]"#),
    ];
    for (what, body) in bodies {
        let (status, e) = reject(&c, "/v1/tasks", body);
        assert_eq!(status, 400, "{what}: {e}");
        assert_eq!(e["code"], "invalid_request", "{what}: {e}");
    }
    // Very deep nesting is refused, not a crash.
    let deep = format!(
        "{{\"command\":{}{}}}",
        "[".repeat(100_000),
        "]".repeat(100_000)
    );
    let (status, _) = reject(&c, "/v1/tasks", deep.as_bytes());
    assert_eq!(status, 400);
    // Bad query parameters name the parameter.
    for (q, field) in [
        ("limit=0", "limit"),
        ("limit=100000", "limit"),
        ("state=sleeping", "state"),
        ("cursor=x", "cursor"),
    ] {
        let r = c.get(&format!("/v1/tasks?{q}"));
        assert_eq!(r.status, 400, "{q}: {}", r.text());
        assert_eq!(r.error()["field"], field, "{q}");
    }
    let r = c.get("/v1/tasks?wat=1");
    assert_eq!(r.status, 400, "an unknown query parameter: {}", r.text());
    assert_eq!(task_count(&c), 0);
    // The server is still fine.
    assert_eq!(http(&c.addr, "GET", "/v1/health", None, None).status, 200);
}

#[test]
fn an_oversize_body_gets_a_413_with_a_json_error() {
    let c = Cluster::start("oversize");
    // The server accepts at most 256 MiB; declare and send more.
    let total: u64 = (256 << 20) + (4 << 20);
    // One connection (TLS), written by this thread and read by another: the server
    // answers while the body is still coming, and an answer left unread when the
    // connection is reset would be lost. Short timeouts let the two take turns.
    let conn = std::sync::Arc::new(std::sync::Mutex::new(tls::connect(&c.addr).unwrap()));
    {
        let g = conn.lock().unwrap();
        g.tcp()
            .set_read_timeout(Some(Duration::from_millis(20)))
            .unwrap();
        g.tcp()
            .set_write_timeout(Some(Duration::from_millis(200)))
            .unwrap();
    }
    let head = format!(
        "POST /v1/tasks HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\nContent-Length: {total}\r\nConnection: close\r\n\r\n",
        c.addr, c.token
    );
    conn.lock().unwrap().write_all(head.as_bytes()).unwrap();
    let reader = conn.clone();
    let read_thread = std::thread::spawn(move || {
        let mut got = Vec::new();
        let mut buf = [0u8; 8192];
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            let read = reader.lock().unwrap().read(&mut buf);
            match read {
                Ok(0) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) && Instant::now() < deadline =>
                {
                    std::thread::sleep(Duration::from_millis(2));
                }
                Err(_) => break,
            }
        }
        got
    });
    let chunk = vec![b' '; 64 << 10];
    let started = Instant::now();
    let mut sent = 0u64;
    while sent < total {
        let written = conn.lock().unwrap().write_all(&chunk);
        match written {
            Ok(()) => sent += chunk.len() as u64,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                // The server is not reading (now): let the reader have a turn.
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(_) => break, // the server stopped reading and closed: fine
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "sending took too long"
        );
    }
    let _ = conn.lock().unwrap().shutdown_write();
    let raw = read_thread.join().unwrap();
    let r = parse_response(&raw)
        .unwrap_or_else(|e| panic!("no HTTP answer to an oversize body ({e}); sent {sent} bytes"));
    assert_eq!(r.status, 413, "{}", r.text());
    assert_eq!(r.error()["code"], "payload_too_large");
    assert_eq!(task_count(&c), 0);
}

#[test]
fn unknown_tasks_jobs_and_routes_are_404_with_a_json_error() {
    let c = Cluster::start("notfound");
    for path in [
        "/v1/tasks/999",
        "/v1/tasks/no-such-key",
        "/v1/jobs/999",
        "/v1/nope",
        "/v1/tasks/999/output",
    ] {
        let r = c.get(path);
        assert_eq!(r.status, 404, "{path}: {}", r.text());
        assert_eq!(r.error()["code"], "not_found", "{path}");
    }
    let r = c.post("/v1/tasks/999/cancel", &json!({}));
    assert_eq!(r.status, 404, "{}", r.text());
    let r = c.get("/v1/openapi.json");
    assert_eq!(r.status, 200);
    assert!(r.json().get("openapi").is_some(), "the OpenAPI document");
}

#[test]
fn the_cli_rejects_bad_resource_amounts_with_a_clear_message() {
    for (flag, value) in [
        ("--cpus", "abc"),
        ("--cpus", "-1"),
        ("--cpus", "1.0001"),
        ("--memory", "lots"),
        ("--timeout", "soon"),
    ] {
        let mut cmd = drover_command();
        let arg = format!("{flag}={value}");
        cmd.args([
            "--server",
            "http://127.0.0.1:1",
            "--token",
            "x",
            "submit",
            &arg,
            "--",
            "true",
        ]);
        let out = run_with_timeout(cmd, Duration::from_secs(30), String::new);
        assert_ne!(out.code(), Some(0), "{flag} {value}: {out}");
        assert!(
            out.stderr.contains(flag),
            "{flag} {value}: the message names the flag: {out}"
        );
        assert!(
            out.stderr.contains(value),
            "{flag} {value}: the message quotes the value: {out}"
        );
        assert!(
            !out.stderr.contains("cannot reach"),
            "rejected before any network use: {out}"
        );
    }
}

#[test]
fn the_cli_reports_an_unreachable_server_and_exits_non_zero() {
    let started = Instant::now();
    let mut cmd = drover_command();
    cmd.args(["--server", "http://127.0.0.1:1", "--token", "x", "list"]);
    let out = run_with_timeout(cmd, Duration::from_secs(30), String::new);
    assert_ne!(out.code(), Some(0), "{out}");
    assert!(out.stderr.contains("cannot reach"), "{out}");
    assert!(
        out.stderr.contains("127.0.0.1:1"),
        "the message names the server: {out}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "gave up quickly"
    );

    // No server given and none running in the data directory.
    let empty = TempDir::new("no-server");
    let mut cmd = drover_command();
    cmd.arg("--data-dir").arg(empty.path()).arg("list");
    let out = run_with_timeout(cmd, Duration::from_secs(30), String::new);
    assert_ne!(out.code(), Some(0), "{out}");
    assert!(
        out.stderr.contains("--server"),
        "it says how to name a server: {out}"
    );
}

#[test]
fn the_cli_shows_the_servers_reason_for_a_rejected_submission() {
    let c = Cluster::start("cli-reject");
    let out = c.cli(&["submit", "--after", "99999", "--", "true"]);
    assert_ne!(out.code(), Some(0), "{out}");
    assert!(out.stderr.contains("after[0]"), "the field: {out}");
    assert!(out.stderr.contains("99999"), "the reason: {out}");
    let out = c.cli(&["status", "4242"]);
    assert_ne!(out.code(), Some(0), "{out}");
    assert!(out.stderr.contains("4242"), "{out}");
    let out = c.cli(&["submit"]);
    assert_ne!(out.code(), Some(0), "no command: {out}");
    assert_eq!(task_count(&c), 0);
}

#[test]
fn a_hundred_thousand_task_array_is_one_quick_atomic_submission_that_survives_a_restart() {
    let mut c = Cluster::start("huge-array");
    let started = Instant::now();
    let (job, first, count) = c.submit_job(
        json!({"tasks": [{"command": ["true"], "array": {"start": 0, "end": 99_999}}]}),
    );
    assert_eq!(count, 100_000);
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "took {:?}",
        started.elapsed()
    );
    let page = c.get_ok("/v1/tasks?limit=1000");
    assert_eq!(page["tasks"].as_array().unwrap().len(), 1000);
    c.kill_server();
    c.restart_server();
    let j = c.get_ok(&format!("/v1/jobs/{job}"));
    assert_eq!(j["count"], 100_000, "{j}");
    assert_eq!(j["states"]["ready"], 100_000, "{j}");
    let last = c.task(first + count - 1);
    assert_eq!(last.array_index, Some(99_999));
}

#[test]
fn bad_output_parameters_name_the_parameter() {
    let c = Cluster::start("output-params");
    let id = c.submit(json!({"command": ["true"]}));
    for (q, field, status) in [
        ("stream=stdin", "stream", 400),
        ("attempt=0", "attempt", 400),
        // Well-formed, but no such attempt.
        ("attempt=5", "attempt", 404),
    ] {
        let r = c.get(&format!("/v1/tasks/{id}/output?{q}"));
        assert_eq!(r.status, status, "{q}: {}", r.text());
        assert_eq!(r.error()["field"], field, "{q}");
    }
    let r = c.get(&format!("/v1/tasks/{id}/output?offset=-1"));
    assert_eq!(r.status, 400, "{}", r.text());
    let r = c.get(&format!("/v1/tasks/{id}/output"));
    assert_eq!(
        r.status,
        200,
        "a task that never ran has empty output: {}",
        r.text()
    );
    assert!(r.body.is_empty());
}

/// POST with an `Idempotency-Key` header.
fn post_keyed(c: &Cluster, path: &str, key: &str, body: &Value) -> Resp {
    let b = serde_json::to_vec(body).unwrap();
    http_with(
        &c.addr,
        "POST",
        path,
        Some(&c.token),
        &[("Idempotency-Key", key)],
        Some(&b),
    )
    .unwrap()
}

#[test]
fn a_submission_retried_with_its_idempotency_key_is_not_submitted_twice() {
    let mut c = Cluster::start("idempotency");
    let task = json!({"command": ["true"], "name": "once"});
    let first = post_keyed(&c, "/v1/tasks", "key-1", &task);
    assert_eq!(first.status, 201, "{}", first.text());
    let again = post_keyed(&c, "/v1/tasks", "key-1", &task);
    assert_eq!(again.status, 201, "{}", again.text());
    assert_eq!(again.json(), first.json(), "a retry names the same task");
    assert_eq!(first.header("idempotent-replayed"), None);
    assert_eq!(again.header("idempotent-replayed"), Some("true"));

    let job = json!({"name": "j", "tasks": [{"command": ["true"]}, {"command": ["true"]}]});
    let job_first = post_keyed(&c, "/v1/jobs", "key-2", &job);
    assert_eq!(job_first.status, 201, "{}", job_first.text());
    let job_again = post_keyed(&c, "/v1/jobs", "key-2", &job);
    assert_eq!(job_again.json(), job_first.json());
    assert_eq!(task_count(&c), 3, "one task and a job of two, once each");

    // The same key with another body: refused, naming the header.
    let other = post_keyed(&c, "/v1/tasks", "key-1", &json!({"command": ["false"]}));
    assert_eq!(other.status, 409, "{}", other.text());
    assert_eq!(other.error()["field"], "Idempotency-Key");
    // Malformed keys: 400 naming the header.
    for bad in ["has space", &"k".repeat(129)] {
        let r = post_keyed(&c, "/v1/tasks", bad, &task);
        assert_eq!(r.status, 400, "{bad:?}: {}", r.text());
        assert_eq!(r.error()["field"], "Idempotency-Key");
    }
    assert_eq!(task_count(&c), 3);

    // Keys are part of the replicated state: a restarted server still knows them.
    c.kill_server();
    c.restart_server();
    let after = post_keyed(&c, "/v1/tasks", "key-1", &task);
    assert_eq!(after.status, 201, "{}", after.text());
    assert_eq!(after.json(), first.json());
    assert_eq!(task_count(&c), 3);

    // The header is in the API's description.
    let doc = c.get_ok("/v1/openapi.json");
    for path in ["/v1/tasks", "/v1/jobs"] {
        let params = doc["paths"][path]["post"]["parameters"].as_array().cloned();
        assert!(
            params.is_some_and(|p| p
                .iter()
                .any(|p| p["name"] == "Idempotency-Key" && p["in"] == "header")),
            "POST {path} does not document Idempotency-Key: {}",
            doc["paths"][path]["post"]
        );
    }
}
