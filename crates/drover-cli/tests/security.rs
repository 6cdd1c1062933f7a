//! The cluster token guards everything but health; the server keeps to loopback.

mod common;

use common::*;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

/// The addresses of the TCP sockets a process listens on, from /proc: its socket
/// inodes (/proc/PID/fd) matched against the kernel's tables (/proc/net/tcp, tcp6).
fn listening_sockets(pid: u32) -> Vec<(IpAddr, u16)> {
    let inodes: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .flatten()
        .filter_map(|e| {
            let link = std::fs::read_link(e.path()).ok()?;
            let text = link.to_string_lossy().into_owned();
            Some(
                text.strip_prefix("socket:[")?
                    .strip_suffix(']')?
                    .to_string(),
            )
        })
        .collect();
    let mut found = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let text = std::fs::read_to_string(table).unwrap_or_default();
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            // sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
            if f.len() < 10 || f[3] != "0A" || !inodes.iter().any(|i| i == f[9]) {
                continue;
            }
            let (addr, port) = f[1].split_once(':').unwrap();
            let port = u16::from_str_radix(port, 16).unwrap();
            // The kernel prints each 32-bit word of the address in host byte order.
            let words: Vec<u32> = (0..addr.len() / 8)
                .map(|i| u32::from_str_radix(&addr[i * 8..i * 8 + 8], 16).unwrap())
                .collect();
            let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_ne_bytes()).collect();
            let ip = match bytes.len() {
                4 => IpAddr::V4(Ipv4Addr::new(bytes[0], bytes[1], bytes[2], bytes[3])),
                _ => IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(&bytes[..]).unwrap())),
            };
            found.push((ip, port));
        }
    }
    found
}

const ROUTES: &[(&str, &str)] = &[
    ("GET", "/v1/cluster"),
    ("GET", "/v1/policy"),
    ("PUT", "/v1/policy"),
    ("GET", "/v1/workers"),
    ("GET", "/v1/autoscale"),
    ("POST", "/v1/workers/1/drain"),
    ("POST", "/v1/workers/1/resume"),
    ("GET", "/v1/tasks"),
    ("POST", "/v1/tasks"),
    ("GET", "/v1/tasks/1"),
    ("POST", "/v1/tasks/1/cancel"),
    ("GET", "/v1/tasks/1/output"),
    ("GET", "/v1/tasks/1/output?follow=true"),
    ("POST", "/v1/jobs"),
    ("GET", "/v1/jobs/1"),
    ("POST", "/v1/jobs/1/cancel"),
    ("GET", "/v1/worker/connect"),
    ("GET", "/v1/no-such-route"),
    ("DELETE", "/v1/tasks/1"),
    // Beside the public docs UI, but not in it.
    ("GET", "/v1/docsx"),
];

/// Public: the API's description and its browsable UI (the same for every cluster).
const PUBLIC: &[&str] = &["/v1/openapi.json", "/v1/docs/", "/v1/docs/index.html"];

#[test]
fn every_route_but_health_answers_401_with_a_json_body_without_the_right_token() {
    let c = Cluster::start("auth");
    let id = c.submit(serde_json::json!({"command": ["true"]}));
    assert_eq!(id, 1);
    let body = br#"{"command":["touch","/tmp/should-never-exist"]}"#;
    let wrong = "0".repeat(c.token.len());
    let near = format!("{}x", &c.token[..c.token.len() - 1]);
    let credentials: Vec<(&str, Vec<(&str, String)>)> = vec![
        ("no token", vec![]),
        (
            "a wrong token",
            vec![("Authorization", format!("Bearer {wrong}"))],
        ),
        (
            "a token off by its last character",
            vec![("Authorization", format!("Bearer {near}"))],
        ),
        (
            "a prefix of the token",
            vec![("Authorization", format!("Bearer {}", &c.token[..10]))],
        ),
        (
            "an empty token",
            vec![("Authorization", "Bearer ".to_string())],
        ),
        (
            "the token as Basic credentials",
            vec![("Authorization", format!("Basic {}", c.token))],
        ),
        (
            "the token in another header",
            vec![("X-Drover-Token", c.token.clone())],
        ),
    ];
    for (method, path) in ROUTES {
        for (what, headers) in &credentials {
            let hs: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
            let b = (*method == "POST" || *method == "PUT").then_some(&body[..]);
            let r = http_with(&c.addr, method, path, None, &hs, b).unwrap();
            assert_eq!(r.status, 401, "{method} {path} with {what}: {}", r.text());
            let e = r.error();
            assert_eq!(e["code"], "unauthorized", "{method} {path} with {what}");
        }
    }
    // Nothing was changed by any of it.
    let list = c.get_ok("/v1/tasks");
    assert_eq!(list["tasks"].as_array().map(Vec::len), Some(1), "{list}");
    assert_eq!(
        c.task(1).state.as_str(),
        "ready",
        "the cancel without a token did nothing"
    );
    // Health is public, and says nothing else.
    let r = http(&c.addr, "GET", "/v1/health", None, None);
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["status"], "ok");
    // So are the API's description and the docs UI, which hold nothing of the cluster.
    for path in PUBLIC {
        let r = http(&c.addr, "GET", path, None, None);
        assert_eq!(r.status, 200, "{path}: {}", r.text());
        let text = r.text();
        assert!(!text.contains(&c.token), "{path} shows the token");
        assert!(!text.contains("should-never-exist"), "{path}");
    }
    // A way out of the docs UI's path reaches nothing.
    for path in [
        "/v1/docs/../tasks",
        "/v1/docs/%2e%2e/tasks",
        "/v1/docs/../cluster",
    ] {
        let r = http(&c.addr, "GET", path, None, None);
        assert_eq!(r.status, 404, "{path}: {}", r.text());
        assert!(!r.text().contains("\"tasks\""), "{path}: {}", r.text());
    }
    let r = http(&c.addr, "GET", "/v1/docs", None, None);
    assert!(
        r.status == 303 && r.header("location") == Some("/v1/docs/"),
        "/v1/docs redirects to the UI: HTTP {} {:?}",
        r.status,
        r.header("location")
    );
    // The right token works.
    assert_eq!(c.get("/v1/cluster").status, 200);
}

#[test]
fn a_worker_with_a_wrong_token_is_refused_and_gives_up() {
    let mut c = Cluster::start("worker-auth");
    let wrong = "f".repeat(64);
    let url = c.url.clone();
    c.spawn_worker_raw(
        "intruder",
        &["--server", &url, "--token", &wrong],
        &["--cpus", "1", "--memory", "1G"],
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(st) = c.worker_exit("intruder") {
            break st;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "a worker with a wrong token is still running after 20 s:\n{}",
            c.worker_log("intruder")
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(
        !status.success(),
        "a refused worker exits non-zero, got {status}"
    );
    let log = c.worker_log("intruder");
    assert!(
        log.contains("token"),
        "it says the token was refused:\n{log}"
    );
    assert!(
        c.workers_info().is_empty(),
        "the refused worker is not registered"
    );
    let cluster = c.get_ok("/v1/cluster");
    assert_eq!(cluster["workers_active"], 0, "{cluster}");
    // The raw endpoint says 401 to a WebSocket upgrade with a wrong token.
    let r = http_with(
        &c.addr,
        "GET",
        "/v1/worker/connect",
        Some(&wrong),
        &[
            ("Upgrade", "websocket"),
            ("Connection", "Upgrade"),
            ("Sec-WebSocket-Version", "13"),
            ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
        ],
        None,
    )
    .unwrap();
    assert_eq!(r.status, 401, "{}", r.text());
}

#[test]
fn the_token_file_is_private_and_the_server_listens_on_loopback_by_default() {
    let c = Cluster::start("token-file");
    let token_path = c.data.join("server").join("token");
    let mode = std::fs::metadata(&token_path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "token file mode {:o}", mode & 0o777);
    assert!(c.token.len() >= 32, "a token long enough to be unguessable");
    assert!(
        c.token.chars().all(|ch| ch.is_ascii_hexdigit()),
        "{:?}",
        c.token
    );
    assert!(c.url.starts_with("https://127.0.0.1:"), "{}", c.url);

    // Without an address the server binds loopback only: given a port alone (a free
    // one, so that this test runs beside others), it listens on the default host, and
    // its listening sockets, as the kernel lists them, are all on loopback.
    let d = TempDir::new("default-bind");
    let mut cmd = drover_command();
    cmd.arg("--data-dir")
        .arg(d.path())
        .args(["server", "--listen", "0"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    let mut child = cmd.spawn().unwrap();
    let addr = wait_local_server(d.path(), "the default-bind server to be up");
    let listening = listening_sockets(child.id());
    let _ = child.kill();
    let _ = child.wait();
    let port: u16 = addr.rsplit(':').next().unwrap().parse().unwrap();
    assert!(
        listening.iter().any(|(_, p)| *p == port),
        "the server listens on port {port}: {listening:?}"
    );
    for (ip, p) in &listening {
        assert!(ip.is_loopback(), "listening on {ip}:{p}, not loopback");
    }
    // With nothing said at all, the address is loopback too.
    let mut cmd = drover_command();
    cmd.arg("--data-dir")
        .arg(d.path())
        .args(["server", "--print-config"]);
    let out = run_with_timeout(cmd, Duration::from_secs(30), String::new);
    assert!(out.stdout.contains("listen = \"127.0.0.1:7070\""), "{out}");

    // A second server on another data directory gets another token.
    let other = Cluster::start("token-file-2");
    assert_ne!(other.token, c.token, "every cluster gets its own token");
    // And the first cluster's token means nothing to the second.
    let r = http(&other.addr, "GET", "/v1/cluster", Some(&c.token), None);
    assert_eq!(r.status, 401);
}

#[test]
fn the_token_survives_a_restart_and_an_explicit_token_is_honoured() {
    let mut c = Cluster::start("token-restart");
    let before = c.token.clone();
    c.kill_server();
    c.restart_server();
    assert_eq!(c.token, before, "the token is kept across restarts");
    assert_eq!(c.get("/v1/cluster").status, 200);

    let explicit = "my-cluster-secret-0123456789abcdef";
    let mut cmd = drover_command();
    let d = TempDir::new("explicit-token");
    cmd.arg("--data-dir")
        .arg(d.path())
        .args(["--token", explicit, "server", "--listen", "127.0.0.1:0"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    let mut child = cmd.spawn().unwrap();
    let addr = wait_local_server(d.path(), "the explicit-token server to be up");
    let ok = http(&addr, "GET", "/v1/cluster", Some(explicit), None).status;
    let file_token = read(&d.path().join("server").join("token"));
    let with_file = http(&addr, "GET", "/v1/cluster", Some(file_token.trim()), None).status;
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(
        ok, 200,
        "the --token given to the server is the cluster token"
    );
    if !file_token.trim().is_empty() && file_token.trim() != explicit {
        assert_eq!(
            with_file, 401,
            "the token file's other token must not work too"
        );
    }
}

#[test]
fn the_bearer_scheme_is_case_insensitive() {
    let c = Cluster::start("bearer-case");
    for scheme in ["bearer", "BEARER", "Bearer"] {
        let auth = format!("{scheme} {}", c.token);
        let r = http_with(
            &c.addr,
            "GET",
            "/v1/cluster",
            None,
            &[("Authorization", &auth)],
            None,
        )
        .unwrap();
        assert_eq!(r.status, 200, "scheme {scheme:?}: {}", r.text());
    }
}
