//! Client ACL tokens with roles, against real servers: every route tried with no,
//! malformed, wrong, unknown, expired and revoked credentials (401 every time) and
//! with every role below the one it needs (403 every time); namespaces and "cancel
//! own"; revocation closing an open event stream within a second; tokens shared by the
//! servers of a group; per-token rate and concurrency limits (429 with Retry-After);
//! the web UI's session of a token.

mod common;

use common::servers::ServerSet;
use common::*;
use serde_json::{Value, json};
use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::sync::mpsc::{Receiver, channel};
use std::time::{Duration, Instant};

/// Every route of the API with the least role that opens it (`None`: public; the
/// worker endpoint takes only the cluster token). Kept equal to the server's OpenAPI
/// document by the first test, so a new route fails it until it is listed here.
const ROUTES: &[(&str, &str, Option<&str>)] = &[
    ("GET", "/v1/health", None),
    ("GET", "/v1/openapi.json", None),
    ("GET", "/v1/cluster", Some("read")),
    ("GET", "/v1/policy", Some("read")),
    ("PUT", "/v1/policy", Some("operator")),
    ("GET", "/v1/workers", Some("read")),
    ("GET", "/v1/autoscale", Some("read")),
    ("POST", "/v1/workers/{worker}/drain", Some("operator")),
    ("POST", "/v1/workers/{worker}/resume", Some("operator")),
    ("GET", "/v1/servers", Some("read")),
    ("POST", "/v1/servers", Some("admin")),
    ("DELETE", "/v1/servers/{server}", Some("admin")),
    ("GET", "/v1/tasks", Some("read")),
    ("POST", "/v1/tasks", Some("submit")),
    ("GET", "/v1/tasks/{task}", Some("read")),
    ("POST", "/v1/tasks/{task}/cancel", Some("submit")),
    ("POST", "/v1/tasks/{task}/resize", Some("submit")),
    ("GET", "/v1/tasks/{task}/output", Some("read")),
    ("GET", "/v1/events", Some("read")),
    ("POST", "/v1/jobs", Some("submit")),
    ("GET", "/v1/jobs/{job}", Some("read")),
    ("POST", "/v1/jobs/{job}/cancel", Some("submit")),
    ("GET", "/v1/cache", Some("read")),
    ("DELETE", "/v1/cache", Some("operator")),
    ("DELETE", "/v1/cache/{key}", Some("operator")),
    ("GET", "/v1/tokens", Some("admin")),
    ("POST", "/v1/tokens", Some("admin")),
    ("DELETE", "/v1/tokens/{id}", Some("admin")),
    ("POST", "/v1/worker-tokens", Some("admin")),
    ("GET", "/v1/worker-credentials", Some("admin")),
    ("DELETE", "/v1/worker-credentials/{worker}", Some("admin")),
    ("GET", "/v1/worker/connect", Some("worker")),
    // The DistTask-compatible routes (api/disttask.rs).
    ("POST", "/submit_task", Some("submit")),
    ("GET", "/get_results", Some("read")),
    ("GET", "/status", Some("read")),
];

const ROLES: [&str; 4] = ["read", "submit", "operator", "admin"];

fn rank(role: &str) -> usize {
    ROLES.iter().position(|r| *r == role).expect("a role")
}

/// A route's pattern with real values: ids that exist (task and job 1, worker 1) or,
/// where an existing one would be changed for good (a cancellation, a server, a
/// token), ones that do not.
fn concrete(path: &str) -> String {
    if path.ends_with("/cancel") || path.ends_with("/resize") {
        return path.replace("{task}", "999").replace("{job}", "999");
    }
    path.replace("{worker}", "1")
        .replace("{server}", "9")
        .replace("{task}", "1")
        .replace("{job}", "1")
        .replace("{id}", "999")
        .replace("{key}", &"0".repeat(64))
}

/// A body each write route accepts or refuses as invalid (never a harmful change).
fn body_for(method: &str, path: &str) -> Option<Vec<u8>> {
    let v = match (method, path) {
        ("POST", "/v1/tasks") => json!({"command": ["true"]}),
        ("POST", "/v1/jobs") => json!({"tasks": [{"command": ["true"]}]}),
        ("PUT", "/v1/policy") => json!({}),
        ("POST", "/v1/servers") => json!({"address": ""}),
        ("POST", "/v1/tokens") => json!({"role": "nobody"}),
        ("POST", p) if p.ends_with("/resize") => json!({"cpus": "1"}),
        ("POST", _) | ("PUT", _) => return Some(Vec::new()),
        _ => return None,
    };
    Some(serde_json::to_vec(&v).unwrap())
}

/// `drover token create` through the CLI (with the cluster token the data directory
/// holds); its JSON answer.
fn create_token(c: &Cluster, args: &[&str]) -> Value {
    let mut all = vec!["--json", "token", "create"];
    all.extend_from_slice(args);
    let out = c.cli_ok(&all);
    serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", out.stdout))
}

fn secret(created: &Value) -> String {
    created["secret"].as_str().expect("a secret").to_string()
}

fn send(addr: &str, method: &str, path: &str, token: Option<&str>) -> Resp {
    let body = body_for(method, path.split('?').next().unwrap_or(path));
    http(addr, method, path, token, body.as_deref())
}

#[test]
fn every_route_answers_401_to_bad_credentials_and_403_to_a_role_below_its_own() {
    let t0 = Instant::now();
    let mut c = Cluster::start("acl-routes");
    c.add_worker("w", &["--cpus", "1", "--memory", "1G"]);
    // Task and job 1 exist (submitted with the cluster token; kept running).
    let first = c.submit(json!({"command": ["sleep", "600"]}));
    assert_eq!(first, 1);

    // The route list is the server's: nothing is missing from the table above.
    let doc = c.get_ok("/v1/openapi.json");
    let mut served: Vec<(String, String)> = Vec::new();
    for (path, ops) in doc["paths"].as_object().expect("paths") {
        for method in ops.as_object().expect("operations").keys() {
            served.push((method.to_uppercase(), path.clone()));
        }
    }
    served.sort();
    let mut listed: Vec<(String, String)> = ROUTES
        .iter()
        .map(|(m, p, _)| (m.to_string(), p.to_string()))
        .collect();
    listed.sort();
    assert_eq!(
        served, listed,
        "the API's routes and this test's table differ"
    );

    let tokens: Vec<(&str, String)> = ROLES
        .iter()
        .map(|r| {
            let created = create_token(&c, &["--role", r, "--name", r]);
            assert_eq!(created["token"]["role"], *r);
            (*r, secret(&created))
        })
        .collect();
    let expired = secret(&create_token(&c, &["--role", "admin", "--ttl", "1ms"]));
    let revoked_token = create_token(&c, &["--role", "admin"]);
    let revoked = secret(&revoked_token);
    let id = revoked_token["token"]["id"].as_u64().unwrap().to_string();
    c.cli_ok(&["token", "revoke", &id]);
    let admin = &tokens[3].1;
    // The same id as a real token, another secret; an id no token has.
    let (prefix, _) = admin.rsplit_once('_').unwrap();
    let wrong = format!("{prefix}_{}", "0".repeat(64));
    let unknown = format!("drv_12345_{}", "a".repeat(64));
    let malformed = [
        admin[..admin.len() - 1].to_string(),
        format!("drv_x_{}", "a".repeat(64)),
        "drv_".to_string(),
    ];
    let mut bad: Vec<(&str, String)> = vec![
        ("a wrong secret", wrong),
        ("an unknown id", unknown),
        ("an expired token", expired),
        ("a revoked token", revoked),
    ];
    for m in &malformed {
        bad.push(("a malformed token", m.clone()));
    }

    let mut tried = 0;
    for (method, pattern, needs) in ROUTES {
        let path = concrete(pattern);
        let Some(needs) = needs else {
            assert_eq!(send(&c.addr, method, &path, None).status, 200, "{path}");
            continue;
        };
        // No credential at all, and each bad one: 401 with the JSON error body.
        let r = send(&c.addr, method, &path, None);
        assert_eq!(
            r.status,
            401,
            "{method} {path} without a token: {}",
            r.text()
        );
        assert_eq!(r.error()["code"], "unauthorized");
        for (what, token) in &bad {
            let r = send(&c.addr, method, &path, Some(token));
            assert_eq!(r.status, 401, "{method} {path} with {what}: {}", r.text());
            assert_eq!(r.error()["code"], "unauthorized", "{method} {path} {what}");
            tried += 1;
        }
        if *needs == "worker" {
            // Workers connect with the cluster token only: no client token opens it.
            for (role, token) in &tokens {
                let r = send(&c.addr, method, &path, Some(token));
                assert_eq!(r.status, 401, "{path} with a {role} token: {}", r.text());
            }
            continue;
        }
        // Each role below the route's: 403; its own and above: past the check.
        for (role, token) in &tokens {
            if *pattern == "/v1/events" && rank(role) >= rank(needs) {
                // An event stream let through stays open: the stream tests below.
                continue;
            }
            let r = send(&c.addr, method, &path, Some(token));
            if rank(role) < rank(needs) {
                assert_eq!(r.status, 403, "{method} {path} as {role}: {}", r.text());
                assert_eq!(r.error()["code"], "forbidden");
            } else {
                assert!(
                    r.status != 401 && r.status != 403,
                    "{method} {path} as {role}: HTTP {} {}",
                    r.status,
                    r.text()
                );
            }
            tried += 1;
        }
    }
    // The streams in their streaming form too (a followed log, resumed events).
    for path in [
        "/v1/tasks/1/output?follow=true",
        "/v1/events?since=1-0&type=task",
    ] {
        for (what, token) in &bad {
            let r = http(&c.addr, "GET", path, Some(token), None);
            assert_eq!(r.status, 401, "{path} with {what}: {}", r.text());
        }
    }
    // The servers' own routes take the peer token and a server certificate only: no
    // client token opens them (over TLS the missing certificate answers first: 403).
    for (role, token) in &tokens {
        let r = http(&c.addr, "POST", "/v1/raft/append", Some(token), Some(b"{}"));
        assert_eq!(r.status, 403, "raft as {role}: {}", r.text());
        assert_eq!(r.error()["code"], "forbidden", "raft as {role}");
    }
    // Nothing any refused request asked for happened: task 1 runs on.
    assert_eq!(c.task(1).state.as_str(), "running");
    // The list shows what was made and revoked, never a secret.
    let list = c.cli_ok(&["token", "list"]).stdout;
    assert!(
        list.contains("operator") && list.contains("expired"),
        "{list}"
    );
    for (_, t) in &tokens {
        let (_, random) = t.rsplit_once('_').unwrap();
        assert!(!list.contains(random), "a secret in the list:\n{list}");
    }
    let json_list: Value =
        serde_json::from_str(&c.cli_ok(&["--json", "token", "list"]).stdout).expect("JSON");
    let revoked_row = json_list["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["id"].as_u64().is_some_and(|n| n.to_string() == id))
        .expect("the revoked token is listed");
    assert!(revoked_row["revoked_at"].is_u64(), "{revoked_row}");
    eprintln!("{tried} refused requests checked in {:?}", t0.elapsed());
}

#[test]
fn namespaces_confine_a_token_and_a_submit_token_cancels_only_its_own() {
    let mut c = Cluster::start("acl-namespace");
    c.add_worker("w", &["--cpus", "4", "--memory", "2G"]);
    let other = c.submit(json!({"command": ["sleep", "600"]}));
    let team = secret(&create_token(
        &c,
        &["--role", "submit", "--namespace", "team-a", "--name", "ci"],
    ));
    let bob = secret(&create_token(&c, &["--role", "submit"]));
    let operator = secret(&create_token(&c, &["--role", "operator"]));
    let post = |token: &str, path: &str, body: Value| {
        let b = serde_json::to_vec(&body).unwrap();
        http(&c.addr, "POST", path, Some(token), Some(&b))
    };

    // Submits with its namespace as owner, forced; another owner is refused.
    let r = post(&team, "/v1/tasks", json!({"command": ["sleep", "600"]}));
    assert_eq!(r.status, 201, "{}", r.text());
    let mine = r.json()["first"].as_u64().unwrap();
    assert_eq!(c.task(mine).spec.owner, "team-a");
    let r = post(
        &team,
        "/v1/tasks",
        json!({"command": ["true"], "owner": "team-b"}),
    );
    assert_eq!(r.status, 403, "{}", r.text());
    assert_eq!(r.error()["field"], "owner");
    let r = post(
        &team,
        "/v1/jobs",
        json!({"tasks": [{"command": ["true"]}, {"command": ["true"], "owner": "x"}]}),
    );
    assert_eq!(r.status, 403, "{}", r.text());
    assert_eq!(r.error()["field"], "tasks[1].owner");

    // Reads only its namespace: the list skips others, a read of another is 403.
    let r = http(&c.addr, "GET", "/v1/tasks", Some(&team), None);
    let ids: Vec<u64> = r.json()["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_u64().unwrap())
        .collect();
    assert_eq!(ids, vec![mine]);
    let r = http(
        &c.addr,
        "GET",
        &format!("/v1/tasks/{other}"),
        Some(&team),
        None,
    );
    assert_eq!(r.status, 403, "{}", r.text());
    let r = http(
        &c.addr,
        "GET",
        &format!("/v1/jobs/{other}"),
        Some(&team),
        None,
    );
    assert_eq!(r.status, 403, "{}", r.text());
    let output = format!("/v1/tasks/{other}/output");
    assert_eq!(http(&c.addr, "GET", &output, Some(&team), None).status, 403);
    // Cluster-wide views are closed to it.
    for path in ["/v1/workers", "/v1/cluster", "/v1/policy"] {
        let r = http(&c.addr, "GET", path, Some(&team), None);
        assert_eq!(r.status, 403, "{path}: {}", r.text());
    }

    // Its event stream carries only its namespace's task and job events.
    let events = WatchedEvents::spawn(c.cli_command(&["--token", &team, "--json", "events"]));
    let deadline = Instant::now() + SLOW;
    let mut seen = Vec::new();
    let mut outsiders = Vec::new();
    let last = 'open: loop {
        assert!(
            Instant::now() < deadline,
            "no event reached the scoped stream"
        );
        // Until the stream is open: one task of another owner, then one of its own.
        outsiders.push(c.submit(json!({"command": ["true"]})));
        let r = post(&team, "/v1/tasks", json!({"command": ["true"]}));
        let own = r.json()["first"].as_u64().unwrap();
        let round = Instant::now() + Duration::from_secs(1);
        while Instant::now() < round {
            if let Ok(v) = events.lines.recv_timeout(Duration::from_millis(50)) {
                let done = v["task"] == own;
                seen.push(v);
                if done {
                    break 'open own;
                }
            }
        }
    };
    drop(events);
    assert!(!seen.is_empty());
    for v in &seen {
        assert!(v["type"] == "task" || v["type"] == "job", "{v}");
        let task = v["task"].as_u64();
        assert!(
            task.is_none_or(|t| !outsiders.contains(&t)),
            "another owner's task in the scoped stream: {v}"
        );
        if v["type"] == "task" {
            assert_eq!(
                c.task(v["task"].as_u64().unwrap()).spec.owner,
                "team-a",
                "{v}"
            );
        }
    }
    assert!(seen.iter().any(|v| v["task"] == last));

    // "Cancel own": another submit token may not cancel it, nor it another's task.
    let cancel =
        |token: &str, task: u64| post(token, &format!("/v1/tasks/{task}/cancel"), json!({}));
    let r = cancel(&bob, mine);
    assert_eq!(r.status, 403, "{}", r.text());
    let r = cancel(&team, other);
    assert_eq!(r.status, 403, "{}", r.text());
    let r = cancel(&team, mine);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(c.task(mine).state.as_str(), "cancelled");
    // A job: the same rule; an operator cancels anything.
    let r = post(
        &bob,
        "/v1/jobs",
        json!({"tasks": [{"command": ["sleep", "600"]}]}),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    let (job, task) = (
        r.json()["job"].as_u64().unwrap(),
        r.json()["first"].as_u64().unwrap(),
    );
    assert_eq!(
        post(&team, &format!("/v1/jobs/{job}/cancel"), json!({})).status,
        403
    );
    let r = post(&bob, &format!("/v1/jobs/{job}/cancel"), json!({}));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(c.task(task).state.as_str(), "cancelled");
    assert_eq!(cancel(&operator, other).status, 200);
    assert_eq!(c.task(other).state.as_str(), "cancelled");
}

/// `drover --json events` with a client token, its stdout lines and the moment its
/// stream was lost (it says so on stderr before trying to reconnect).
struct WatchedEvents {
    child: Child,
    lines: Receiver<Value>,
    lost: Receiver<Instant>,
    stderr: std::sync::Arc<std::sync::Mutex<String>>,
    stderr_reader: Option<std::thread::JoinHandle<()>>,
}

impl WatchedEvents {
    fn spawn(mut command: std::process::Command) -> WatchedEvents {
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("drover events");
        let (tx, lines) = channel();
        let out = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                let _ = tx.send(serde_json::from_str(&line).expect("a JSON line"));
            }
        });
        let (lost_tx, lost) = channel();
        let stderr = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let err = child.stderr.take().unwrap();
        let text = stderr.clone();
        let stderr_reader = std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                if line.contains("reconnecting after") {
                    let _ = lost_tx.send(Instant::now());
                }
                text.lock().unwrap().push_str(&line);
                text.lock().unwrap().push('\n');
            }
        });
        WatchedEvents {
            child,
            lines,
            lost,
            stderr,
            stderr_reader: Some(stderr_reader),
        }
    }

    /// Waits until the stream is open and reading: submits a task (with the cluster
    /// token) and waits a moment for its event, again until one comes through (the
    /// command may connect after the first submission).
    fn wait_open(&self, c: &Cluster) {
        let deadline = Instant::now() + SLOW;
        while Instant::now() < deadline {
            let id = c.submit(json!({"command": ["true"]}));
            let round = Instant::now() + Duration::from_secs(1);
            while Instant::now() < round {
                if let Ok(v) = self.lines.recv_timeout(Duration::from_millis(50))
                    && v["task"] == id
                {
                    return;
                }
            }
        }
        panic!(
            "the event stream never opened; stderr:\n{}",
            self.stderr.lock().unwrap()
        );
    }

    /// Waits for the process to exit; its status, and all it wrote on stderr.
    fn exit(&mut self, timeout: Duration) -> (std::process::ExitStatus, String) {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                // Its stderr is closed now: the reader ends once it has read it all.
                if let Some(reader) = self.stderr_reader.take() {
                    reader.join().unwrap();
                }
                return (s, self.stderr.lock().unwrap().clone());
            }
            assert!(
                Instant::now() < deadline,
                "drover events still runs; stderr:\n{}",
                self.stderr.lock().unwrap()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for WatchedEvents {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn revoking_a_token_closes_its_open_event_stream_within_a_second() {
    let c = Cluster::start("acl-revoke-stream");
    let created = create_token(&c, &["--role", "read"]);
    let token = secret(&created);
    let id = created["token"]["id"].as_u64().unwrap();
    let mut events = WatchedEvents::spawn(c.cli_command(&["--token", &token, "--json", "events"]));
    // The stream is open: it carries an event of a task submitted now.
    events.wait_open(&c);

    let revoked_at = Instant::now();
    let r = http(
        &c.addr,
        "DELETE",
        &format!("/v1/tokens/{id}"),
        Some(&c.token),
        None,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let lost = events
        .lost
        .recv_timeout(Duration::from_secs(5))
        .unwrap_or_else(|_| {
            panic!(
                "the stream stayed open; stderr:\n{}",
                events.stderr.lock().unwrap()
            )
        });
    let took = lost.duration_since(revoked_at);
    eprintln!("the stream closed {took:?} after the revocation was sent");
    assert!(took < Duration::from_secs(1), "{took:?}");
    // Reconnecting is refused (401), and the CLI stops trying at once.
    let (status, stderr) = events.exit(Duration::from_secs(10));
    assert!(!status.success());
    assert!(stderr.contains("revoked"), "{stderr}");
}

#[test]
fn an_expiring_token_closes_its_stream_when_it_expires() {
    let c = Cluster::start("acl-expire-stream");
    let token = secret(&create_token(&c, &["--role", "read", "--ttl", "5s"]));
    let opened = Instant::now();
    let mut events = WatchedEvents::spawn(c.cli_command(&["--token", &token, "--json", "events"]));
    events.wait_open(&c);
    let lost = events
        .lost
        .recv_timeout(Duration::from_secs(10))
        .expect("the stream closed");
    let open_for = lost.duration_since(opened);
    // Expired 5 s after it was made (before `opened`), closed within a second of it.
    assert!(open_for < Duration::from_secs(6), "{open_for:?}");
    let (status, stderr) = events.exit(Duration::from_secs(10));
    assert!(!status.success());
    assert!(stderr.contains("expired"), "{stderr}");
}

#[test]
fn a_token_made_on_one_server_works_on_every_server_and_its_revocation_too() {
    let mut set = ServerSet::new("acl-group");
    for i in 0..3 {
        set.start(i);
    }
    let leader = set.wait_leader(SLOW);
    let follower = (leader + 1) % 3;
    let other = (leader + 2) % 3;
    // Created through a follower (forwarded to the leader, replicated to all).
    let body = serde_json::to_vec(&json!({"role": "submit", "name": "group"})).unwrap();
    let r = http(
        &set.addrs[follower],
        "POST",
        "/v1/tokens",
        Some(&set.token),
        Some(&body),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    let created = r.json();
    let token = secret(&created);
    let id = created["token"]["id"].as_u64().unwrap();
    for i in 0..3 {
        poll(
            &format!("the token to work on server {i}"),
            Duration::from_secs(5),
            || {
                (http(&set.addrs[i], "GET", "/v1/tasks", Some(&token), None).status == 200)
                    .then_some(())
            },
            || set.logs(),
        );
    }
    // It submits through another follower too (the write is forwarded with it).
    let task = br#"{"command":["true"]}"#;
    let r = http(
        &set.addrs[other],
        "POST",
        "/v1/tasks",
        Some(&token),
        Some(task),
    );
    assert_eq!(r.status, 201, "{}", r.text());

    // Revoked through the other follower: within a second no server takes it.
    let r = http(
        &set.addrs[other],
        "DELETE",
        &format!("/v1/tokens/{id}"),
        Some(&set.token),
        None,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let revoked = Instant::now();
    let mut refused_by = [None; 3];
    while refused_by.iter().any(Option::is_none) && revoked.elapsed() < Duration::from_secs(5) {
        for (i, slot) in refused_by.iter_mut().enumerate() {
            if slot.is_none()
                && http(&set.addrs[i], "GET", "/v1/tasks", Some(&token), None).status == 401
            {
                *slot = Some(revoked.elapsed());
            }
        }
    }
    eprintln!("refused by each server after {refused_by:?}");
    for (i, t) in refused_by.iter().enumerate() {
        let t = t.unwrap_or_else(|| panic!("server {i} still takes the revoked token"));
        assert!(t < Duration::from_secs(1), "server {i}: {t:?}");
    }
}

#[test]
fn over_its_limits_a_token_gets_429_with_retry_after_and_the_cluster_token_does_not() {
    let c = Cluster::start_with(
        "acl-limits",
        &[
            "--worker-timeout",
            "3s",
            "--heartbeat-interval",
            "250ms",
            "--token-rate",
            "1",
            "--token-burst",
            "3",
            "--token-concurrency",
            "1",
        ],
    );
    let token = secret(&create_token(&c, &["--role", "read"]));
    let statuses: Vec<Resp> = (0..10)
        .map(|_| http(&c.addr, "GET", "/v1/tasks", Some(&token), None))
        .collect();
    let limited: Vec<&Resp> = statuses.iter().filter(|r| r.status == 429).collect();
    assert!(
        statuses[..3].iter().all(|r| r.status == 200),
        "the burst passes: {:?}",
        statuses.iter().map(|r| r.status).collect::<Vec<_>>()
    );
    assert!(!limited.is_empty(), "nothing was limited");
    for r in &limited {
        assert_eq!(r.error()["code"], "too_many_requests");
        let after: u64 = r
            .header("retry-after")
            .expect("Retry-After")
            .parse()
            .expect("seconds");
        assert!((1..=2).contains(&after), "Retry-After: {after}");
    }
    // The cluster token is not limited.
    for _ in 0..20 {
        assert_eq!(c.get("/v1/tasks").status, 200);
    }
    // After the wait it asked for, the token is served again.
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(
        http(&c.addr, "GET", "/v1/tasks", Some(&token), None).status,
        200
    );

    // Concurrency 1: while its event stream is open, another request waits its turn.
    std::thread::sleep(Duration::from_secs(2));
    let events = WatchedEvents::spawn(c.cli_command(&["--token", &token, "--json", "events"]));
    events.wait_open(&c);
    let r = http(&c.addr, "GET", "/v1/tasks", Some(&token), None);
    assert_eq!(r.status, 429, "{}", r.text());
    assert!(r.text().contains("in flight"), "{}", r.text());
    drop(events);
    poll(
        "the closed stream to free its place",
        Duration::from_secs(15),
        || (http(&c.addr, "GET", "/v1/tasks", Some(&token), None).status == 200).then_some(()),
        String::new,
    );
}

#[test]
fn a_ui_session_of_a_token_has_its_role_and_ends_with_the_token() {
    let c = Cluster::start("acl-ui");
    let created = create_token(&c, &["--role", "read"]);
    let token = secret(&created);
    let id = created["token"]["id"].as_u64().unwrap();
    let form = ("Content-Type", "application/x-www-form-urlencoded");
    let csrf = ("X-Drover-CSRF", "1");
    let body = format!("token={token}");
    let r = http_with(
        &c.addr,
        "POST",
        "/ui/login",
        None,
        &[form, csrf],
        Some(body.as_bytes()),
    )
    .unwrap();
    assert_eq!(r.status, 204, "{}", r.text());
    let set = r.header("set-cookie").expect("a cookie").to_string();
    let pair = set.split(';').next().unwrap().to_string();
    assert!(!pair.contains(&token), "the cookie is not the token");
    let cookie = ("Cookie", pair.as_str());
    let get = |path: &str| http_with(&c.addr, "GET", path, None, &[cookie], None).unwrap();
    assert_eq!(get("/v1/tasks").status, 200);
    // Its role: a read token's session cannot submit.
    let task = br#"{"command":["true"]}"#;
    let r = http_with(
        &c.addr,
        "POST",
        "/v1/tasks",
        None,
        &[cookie, csrf],
        Some(task),
    )
    .unwrap();
    assert_eq!(r.status, 403, "{}", r.text());
    // A revoked token's session ends with it; a revoked token cannot log in.
    c.cli_ok(&["token", "revoke", &id.to_string()]);
    let r = get("/v1/tasks");
    assert_eq!(r.status, 401, "{}", r.text());
    let r = http_with(
        &c.addr,
        "POST",
        "/ui/login",
        None,
        &[form, csrf],
        Some(body.as_bytes()),
    )
    .unwrap();
    assert_eq!(r.status, 401, "{}", r.text());
}

#[test]
fn token_commands_refuse_bad_input_clearly() {
    let c = Cluster::start("acl-cli");
    let out = c.cli(&["token", "create", "--role", "root"]);
    assert_eq!(out.code(), Some(2), "{out}");
    assert!(out.stderr.contains("not a role"), "{out}");
    let out = c.cli(&["token", "create", "--role", "read", "--ttl", "soon"]);
    assert_eq!(out.code(), Some(2), "{out}");
    let out = c.cli(&["token", "revoke", "77"]);
    assert_eq!(out.code(), Some(1), "{out}");
    assert!(out.stderr.contains("no token 77"), "{out}");
    // The plain form prints the secret alone on stdout.
    let out = c.cli_ok(&["token", "create", "--role", "read", "--namespace", "ns"]);
    let secret = out.stdout.trim();
    assert!(
        secret.starts_with("drv_1_") && secret.len() == 6 + 64,
        "{out}"
    );
    assert!(out.stderr.contains("namespace ns"), "{out}");
    // A read token cannot make tokens (403), and the CLI says so.
    let out = c.cli(&["--token", secret, "token", "list"]);
    assert_eq!(out.code(), Some(1), "{out}");
    assert!(out.stderr.contains("admin"), "{out}");
}

/// Tokens are in the replicated state: after `kill -9` and a restart from a snapshot
/// (taken every 2 entries here) plus the log after it, a token works, a revoked one
/// stays revoked, and "cancel own" still knows who submitted what.
#[test]
fn tokens_and_who_submitted_what_survive_a_kill_and_a_restart_from_a_snapshot() {
    let mut c = Cluster::start_with(
        "acl-restart",
        &[
            "--worker-timeout",
            "3s",
            "--heartbeat-interval",
            "250ms",
            "--snapshot-every",
            "2",
        ],
    );
    let kept = secret(&create_token(&c, &["--role", "submit"]));
    let gone = create_token(&c, &["--role", "admin"]);
    let gone_id = gone["token"]["id"].as_u64().unwrap().to_string();
    c.cli_ok(&["token", "revoke", &gone_id]);
    let task = br#"{"command":["sleep","600"]}"#;
    let r = http(&c.addr, "POST", "/v1/tasks", Some(&kept), Some(task));
    assert_eq!(r.status, 201, "{}", r.text());
    let mine = r.json()["first"].as_u64().unwrap();
    let theirs = c.submit(json!({"command": ["sleep", "600"]}));
    // More entries, so that a snapshot holds the tokens and the log goes on past it.
    for _ in 0..4 {
        c.submit(json!({"command": ["true"]}));
    }
    assert!(
        std::fs::read_dir(c.data.join("server"))
            .unwrap()
            .flatten()
            .any(|e| e.file_name().to_string_lossy().starts_with("snapshot")),
        "no snapshot was taken"
    );
    c.kill_server();
    c.restart_server();
    let r = http(&c.addr, "GET", "/v1/tasks", Some(&kept), None);
    assert_eq!(r.status, 200, "{}", r.text());
    let r = http(&c.addr, "GET", "/v1/tasks", Some(&secret(&gone)), None);
    assert_eq!(r.status, 401, "{}", r.text());
    let cancel = |t: u64| {
        http(
            &c.addr,
            "POST",
            &format!("/v1/tasks/{t}/cancel"),
            Some(&kept),
            None,
        )
    };
    assert_eq!(cancel(theirs).status, 403);
    let r = cancel(mine);
    assert_eq!(r.status, 200, "{}", r.text());
    // A new token after the restart gets a new id: ids are never given twice.
    let next = create_token(&c, &["--role", "read"]);
    assert_eq!(next["token"]["id"], 3, "{next}");
}

/// A client token left in DROVER_TOKEN must not become a server's cluster token (it
/// could never be matched): the server refuses to start and says why.
#[test]
fn a_server_refuses_a_client_token_as_its_cluster_token() {
    let dir = TempDir::new("acl-server-token");
    let mut cmd = drover_command();
    cmd.arg("--data-dir")
        .arg(dir.path())
        .args(["server", "--listen", "127.0.0.1:0"])
        .env("DROVER_TOKEN", format!("drv_1_{}", "a".repeat(64)));
    let out = run_with_timeout(cmd, SLOW, String::new);
    assert!(!out.status.success(), "{out}");
    assert!(out.stderr.contains("client token"), "{out}");
}
