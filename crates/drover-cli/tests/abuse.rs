//! Abuse and bad input, against a real server: what a worker sends is capped by the
//! server (not left to the worker), slow clients are cut off while others are served,
//! and bodies built to be expensive (deep nesting, a million dependency edges, a cycle)
//! get a quick 4xx naming the problem.

mod common;

use common::*;
use drover_types::TaskState;
use serde_json::{Value, json};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// The written mark where the server stopped storing a stream (see
/// `drover_server::input_limits`).
const TRUNCATED_MARK: &str = "[drover: output truncated here by the server";

fn metric(c: &Cluster, limit: &str) -> f64 {
    let text = c.get("/metrics").text();
    let prefix = format!("drover_input_limit_hits_total{{limit=\"{limit}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .map(|v| v.trim().parse().unwrap())
        .unwrap_or(0.0)
}

#[test]
fn a_huge_result_and_output_from_a_real_worker_are_capped_by_the_server() {
    let mut c = Cluster::start_with(
        "abuse-caps",
        &[
            "--worker-timeout",
            "3s",
            "--heartbeat-interval",
            "250ms",
            "--max-result",
            "1K",
            "--max-output",
            "100K",
        ],
    );
    c.add_worker("w", &[]);
    // 300,000 bytes of stdout: over the server's output cap (100 KiB), and a result of
    // the worker's own limit (64 KiB), over the server's (1 KiB).
    let id = c.submit(json!({
        "command": ["head -c 300000 /dev/zero | tr '\\0' x"],
        "shell": true,
    }));
    let t = c.wait_final(id, SLOW);
    assert_eq!(t.state, TaskState::Succeeded, "{t:?}");
    let result = t.result.unwrap_or_default();
    assert_eq!(result.len(), 1024, "the result is cut to --max-result");
    assert!(result.bytes().all(|b| b == b'x'));

    let out = c.get(&format!("/v1/tasks/{id}/output"));
    assert_eq!(out.status, 200, "{}", out.text());
    let text = out.text();
    let at = text
        .find(TRUNCATED_MARK)
        .unwrap_or_else(|| panic!("no truncation mark in {} bytes of output", text.len()));
    assert_eq!(at, 100 * 1024 + 1, "the mark follows the first 100 KiB");
    assert!(text[..at - 1].bytes().all(|b| b == b'x'));
    assert!(
        text.len() < 100 * 1024 + 200,
        "{} bytes stored: nothing past the mark",
        text.len()
    );
    assert!(metric(&c, "output") >= 1.0);
    assert!(metric(&c, "result") >= 1.0);
    // The server is fine and the worker still takes work.
    let next = c.submit(json!({"command": ["echo", "ok"]}));
    assert_eq!(
        c.wait_final(next, SLOW).result.as_deref(),
        Some("ok\n"),
        "{}",
        c.logs()
    );
}

/// Sends `bytes` one at a time, `every` apart, until the server closes the connection
/// or `stop_after` passes; returns how long the server took to close it and what it
/// answered.
fn trickle(addr: &str, bytes: &[u8], every: Duration, stop_after: Duration) -> (Duration, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_nodelay(true).unwrap();
    let mut reader = s.try_clone().unwrap();
    let start = Instant::now();
    let read = std::thread::spawn(move || {
        reader.set_read_timeout(Some(SLOW)).unwrap();
        let mut answer = Vec::new();
        let _ = reader.read_to_end(&mut answer);
        (
            start.elapsed(),
            String::from_utf8_lossy(&answer).into_owned(),
        )
    });
    for b in bytes.iter().cycle() {
        if read.is_finished() || start.elapsed() > stop_after || s.write_all(&[*b]).is_err() {
            break;
        }
        std::thread::sleep(every);
    }
    read.join().unwrap()
}

#[test]
fn slow_clients_are_cut_off_while_other_requests_are_served() {
    // Plain HTTP, so that the test's raw socket can trickle bytes from one thread while
    // another reads: the timeouts live in the one accept loop and hyper builder that
    // serve TLS connections too (`tls/listener.rs`), after the handshake (itself bounded
    // by a 10 s deadline).
    let c = Cluster::start_with(
        "abuse-slowloris",
        &[
            "--insecure-http",
            "--header-timeout",
            "1s",
            "--body-timeout",
            "1s",
        ],
    );
    let addr = c.addr.clone();
    // Headers sent a byte every 100 ms, never ending (slowloris).
    let headers = format!("GET /v1/health HTTP/1.1\r\nHost: {addr}\r\nX-Slow: ")
        .into_bytes()
        .into_iter()
        .chain(std::iter::repeat_n(b'a', 1000))
        .collect::<Vec<u8>>();
    let slow = {
        let addr = addr.clone();
        std::thread::spawn(move || {
            trickle(
                &addr,
                &headers,
                Duration::from_millis(100),
                Duration::from_secs(60),
            )
        })
    };
    // Meanwhile, other clients are served at once.
    for _ in 0..5 {
        let t = Instant::now();
        let r = c.get("/v1/health");
        assert_eq!(r.status, 200);
        assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
        std::thread::sleep(Duration::from_millis(100));
    }
    let (took, answer) = slow.join().unwrap();
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(5),
        "the trickling client was cut off after {took:?} (header timeout 1s); it got {answer:?}"
    );
    assert!(!answer.contains(" 200 "), "{answer}");

    // A body trickled after complete headers: a 408 with a JSON body.
    let body =
        serde_json::to_vec(&json!({"command": ["echo", "x"], "name": "n".repeat(200)})).unwrap();
    let request = request_bytes(&addr, "POST", "/v1/tasks", Some(&c.token), &[], Some(&body));
    let split = request.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    let mut s = TcpStream::connect(&addr).unwrap();
    s.write_all(&request[..split]).unwrap();
    let start = Instant::now();
    let mut reader = s.try_clone().unwrap();
    let read = std::thread::spawn(move || read_response(&mut reader));
    for b in &request[split..] {
        if read.is_finished() || s.write_all(&[*b]).is_err() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let r = read.join().unwrap().expect("an answer");
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(r.status, 408, "{}", r.text());
    assert_eq!(r.error()["code"], "body_timeout");
    assert!(metric(&c, "body_read_timeout") >= 1.0);
    // Nothing was submitted, and the server still answers.
    assert_eq!(
        c.get_ok("/v1/tasks")["tasks"].as_array().map(Vec::len),
        Some(0)
    );
}

#[test]
fn deeply_nested_json_is_refused_with_a_400_naming_the_limit() {
    let c = Cluster::start("abuse-deep");
    for depth in [65usize, 1_000, 1_000_000] {
        let body = format!("{{\"command\":{}{}}}", "[".repeat(depth), "]".repeat(depth));
        let t = Instant::now();
        let r = http(
            &c.addr,
            "POST",
            "/v1/tasks",
            Some(&c.token),
            Some(body.as_bytes()),
        );
        assert_eq!(r.status, 400, "depth {depth}: {}", r.text());
        let e = r.error();
        assert_eq!(e["code"], "too_deep", "{e}");
        assert!(e["message"].as_str().unwrap().contains("64 levels"), "{e}");
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "depth {depth}: {:?}",
            t.elapsed()
        );
    }
    // At the limit the body is parsed as usual (and refused for its content).
    let body = format!("{{\"command\":{}\"x\"{}}}", "[".repeat(63), "]".repeat(63));
    let r = http(
        &c.addr,
        "POST",
        "/v1/tasks",
        Some(&c.token),
        Some(body.as_bytes()),
    );
    assert_eq!(r.status, 400);
    assert_eq!(r.error()["code"], "invalid_request", "{}", r.text());
    assert_eq!(r.error()["field"], "command[0]", "{}", r.text());
}

#[test]
fn a_million_edge_job_and_a_cyclic_job_get_a_quick_400_naming_the_field() {
    let c = Cluster::start("abuse-dag");
    // 20 tasks of 50,000 `after` entries each: 1,000,000 edges, over the default limit
    // of 500,000 per job (each task alone is within the 100,000 per task).
    let after: Vec<&str> = vec!["t0"; 50_000];
    let tasks: Vec<Value> = (0..20)
        .map(|i| json!({"key": format!("t{}", i + 1), "command": ["true"], "after": after}))
        .chain(std::iter::once(json!({"key": "t0", "command": ["true"]})))
        .collect();
    let t = Instant::now();
    let r = c.post("/v1/jobs", &json!({"tasks": tasks}));
    let took = t.elapsed();
    assert_eq!(r.status, 400, "{}", r.text());
    let e = r.error();
    assert_eq!(e["field"], "tasks[10].after", "{e}");
    assert!(
        e["message"].as_str().unwrap().contains("more than 500000"),
        "{e}"
    );
    assert!(took < Duration::from_secs(10), "{took:?}");

    let t = Instant::now();
    let r = c.post(
        "/v1/jobs",
        &json!({"tasks": [
            {"key": "a", "command": ["true"], "after": ["c"]},
            {"key": "b", "command": ["true"], "after": ["a"]},
            {"key": "c", "command": ["true"], "after": ["b"]},
        ]}),
    );
    assert_eq!(r.status, 400, "{}", r.text());
    let e = r.error();
    assert_eq!(e["field"], "tasks[0].after", "{e}");
    assert!(e["message"].as_str().unwrap().contains("cycle"), "{e}");
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    assert_eq!(
        c.get_ok("/v1/tasks")["tasks"].as_array().map(Vec::len),
        Some(0)
    );
}
