//! TLS on the server's listener: a bare `drover server` serves HTTPS with a CA of its
//! own making (the CLI and a worker on the same machine need nothing copied), a server of
//! a group without certificates refuses to start, certificates from `drover tls`, what
//! is refused (plain HTTP, another CA's server or client certificate), mutual TLS on the
//! servers' routes (a worker's certificate cannot speak raft), workers and the CLI over
//! TLS, and `--insecure-http`.

mod common;

use common::tls::{client_config, https_with};
use common::*;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::Arc;
use std::time::Duration;

/// A CA made by `drover tls ca create`, and certificates signed by it.
struct Authority {
    dir: PathBuf,
}

impl Authority {
    fn create(root: &Path, name: &str) -> Authority {
        let dir = root.join(name);
        let out = run_with_timeout(
            {
                let mut c = drover_command();
                c.args(["tls", "ca", "create", "--out"]).arg(&dir);
                c
            },
            SLOW,
            String::new,
        );
        assert!(out.status.success(), "{out}");
        Authority { dir }
    }

    fn ca(&self) -> PathBuf {
        self.dir.join("ca.crt")
    }

    /// `drover tls cert create ROLE` into `out`; returns (cert, key).
    fn issue(&self, role: &str, out: &Path, extra: &[&str]) -> (PathBuf, PathBuf) {
        let mut c = drover_command();
        c.args(["tls", "cert", "create", role, "--ca-dir"])
            .arg(&self.dir)
            .arg("--out")
            .arg(out)
            .args(extra);
        let out_run = run_with_timeout(c, SLOW, String::new);
        assert!(out_run.status.success(), "{out_run}");
        (
            out.join(format!("{role}.crt")),
            out.join(format!("{role}.key")),
        )
    }
}

/// A `drover server` with a TLS directory, SIGKILLed on drop.
struct TlsServer {
    child: Child,
    data: PathBuf,
    addr: String,
    url: String,
    token: String,
    log: PathBuf,
}

impl TlsServer {
    fn start(root: &Path, tls_dir: &Path, ca: &Path) -> TlsServer {
        let data = root.join("data");
        let log = root.join("server.log");
        let mut cmd = drover_command();
        cmd.arg("--data-dir")
            .arg(&data)
            .args(["server", "--listen", "127.0.0.1:0", "--tls-dir"])
            .arg(tls_dir)
            .env("DROVER_LOG", "info,openraft=warn")
            .stdout(Stdio::null())
            .stderr(Stdio::from(std::fs::File::create(&log).unwrap()));
        let mut child = cmd.spawn().expect("start drover server");
        let config = client_config(ca, None);
        let endpoint = data.join("server").join("endpoint");
        let url = poll(
            "the TLS server's endpoint and health",
            SLOW,
            || {
                if let Ok(Some(st)) = child.try_wait() {
                    panic!("the server exited early with {st}:\n{}", tail(&log, 30));
                }
                let url = std::fs::read_to_string(&endpoint).ok()?.trim().to_string();
                let addr = url.strip_prefix("https://")?;
                let r = https_with(addr, &config, "GET", "/v1/health", None, &[], None).ok()?;
                (r.status == 200 && r.json()["leader"] == true).then_some(url)
            },
            || tail(&log, 30),
        );
        let token = read(&data.join("server").join("token")).trim().to_string();
        TlsServer {
            child,
            addr: url.trim_start_matches("https://").to_string(),
            url,
            data,
            token,
            log,
        }
    }

    fn peer_token(&self) -> String {
        read(&self.data.join("server").join("peer_token"))
            .trim()
            .to_string()
    }
}

impl Drop for TlsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn a_server_with_certificates_speaks_only_tls_and_refuses_other_cas() {
    let dir = TempDir::new("tls-refuse");
    let root = dir.path();
    let ca = Authority::create(root, "ca");
    let other = Authority::create(root, "other-ca");
    // The CA's key and the server's key are private; certificates are not.
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&ca.dir.join("ca.key")), 0o600);
    assert_eq!(mode(&ca.ca()), 0o644);
    let srv = root.join("server-tls");
    let (_, key) = ca.issue("server", &srv, &["--host", "127.0.0.1", "--name", "s1"]);
    assert_eq!(mode(&key), 0o600);
    assert!(
        srv.join("ca.crt").is_file(),
        "the CA certificate is copied beside"
    );
    let server = TlsServer::start(root, &srv, &ca.ca());
    assert!(server.url.starts_with("https://"), "{}", server.url);

    // Plain HTTP (this server is not registered with the harness: `http_with` speaks
    // plain HTTP to it) is refused, token or not.
    assert_https_required(&server.addr, Some(&server.token));

    // The cluster's CA: answered; a client that trusts another CA refuses the server.
    let trusted = client_config(&ca.ca(), None);
    let r = https_with(
        &server.addr,
        &trusted,
        "GET",
        "/v1/workers",
        Some(&server.token),
        &[],
        None,
    )
    .expect("HTTPS with the cluster's CA");
    assert_eq!(r.status, 200, "{}", r.text());
    // The web UI's session cookie is `Secure` over TLS.
    let form = format!("token={}", server.token);
    let login = https_with(
        &server.addr,
        &trusted,
        "POST",
        "/ui/login",
        None,
        &[
            ("X-Drover-CSRF", "1"),
            ("Content-Type", "application/x-www-form-urlencoded"),
        ],
        Some(form.as_bytes()),
    )
    .expect("the UI's login over TLS");
    let cookie = login.header("set-cookie").unwrap_or_default();
    assert!(
        cookie.starts_with("drover_session=") && cookie.contains("; Secure"),
        "HTTP {}: {cookie:?} {}",
        login.status,
        login.text()
    );
    let stranger = client_config(&other.ca(), None);
    let refused = https_with(
        &server.addr,
        &stranger,
        "GET",
        "/v1/health",
        None,
        &[],
        None,
    );
    assert!(
        refused.is_err(),
        "a client trusting another CA accepted the server: {refused:?}"
    );

    // A client certificate from another CA fails the handshake.
    let (ocert, okey) = other.issue("client", &root.join("other-client"), &[]);
    let foreign = client_config(&ca.ca(), Some((&ocert, &okey)));
    let r = https_with(
        &server.addr,
        &foreign,
        "GET",
        "/v1/workers",
        Some(&server.token),
        &[],
        None,
    );
    assert!(
        r.is_err(),
        "a client certificate from another CA was accepted: {r:?}"
    );

    // The CLI: with the cluster's CA it works; with another CA it fails and says why.
    let cli = |ca_file: &Path| {
        let mut c = drover_command();
        c.args(["--server", &server.url, "--token", &server.token, "--ca"])
            .arg(ca_file)
            .args(["--json", "cluster"]);
        run_with_timeout(c, SLOW, || tail(&server.log, 20))
    };
    let ok = cli(&ca.ca());
    assert!(ok.status.success(), "{ok}");
    let bad = cli(&other.ca());
    assert!(!bad.status.success(), "{bad}");
    assert!(
        bad.stderr.to_lowercase().contains("certificate")
            || bad.stderr.to_lowercase().contains("tls")
            || bad.stderr.contains("cannot reach"),
        "{bad}"
    );
}

#[test]
fn only_a_server_certificate_of_the_cluster_reaches_the_raft_routes() {
    let dir = TempDir::new("tls-mtls");
    let root = dir.path();
    let ca = Authority::create(root, "ca");
    let srv = root.join("server-tls");
    ca.issue("server", &srv, &["--host", "127.0.0.1"]);
    let server = TlsServer::start(root, &srv, &ca.ca());
    let peer = server.peer_token();
    let (wcert, wkey) = ca.issue("worker", &root.join("worker-tls"), &["--name", "w1"]);
    let (ccert, ckey) = ca.issue("client", &root.join("client-tls"), &["--name", "c1"]);
    let (scert, skey) = ca.issue(
        "server",
        &root.join("server2-tls"),
        &["--host", "127.0.0.1"],
    );
    let vote = |config: &Arc<rustls::ClientConfig>| {
        https_with(
            &server.addr,
            config,
            "POST",
            "/v1/raft/vote",
            Some(&peer),
            &[],
            Some(b"{}"),
        )
        .expect("an HTTPS answer")
    };
    // The peer token alone is not enough over TLS: no certificate, a worker's, a
    // client's, all 403.
    for (what, config) in [
        ("no certificate", client_config(&ca.ca(), None)),
        (
            "a worker certificate",
            client_config(&ca.ca(), Some((&wcert, &wkey))),
        ),
        (
            "a client certificate",
            client_config(&ca.ca(), Some((&ccert, &ckey))),
        ),
    ] {
        let r = vote(&config);
        assert_eq!(r.status, 403, "{what}: {}", r.text());
        assert!(
            r.error()["message"]
                .as_str()
                .unwrap()
                .contains("mutual TLS")
        );
    }
    // A server certificate of the cluster passes the TLS check: the vote route then
    // reads the (malformed) body, whatever it answers, it is not the 403 above.
    let r = vote(&client_config(&ca.ca(), Some((&scert, &skey))));
    assert!(
        r.status != 403 && r.status != 401,
        "a server certificate was refused: {} {}",
        r.status,
        r.text()
    );
    // A worker certificate works where workers belong: the API with the token.
    let r = https_with(
        &server.addr,
        &client_config(&ca.ca(), Some((&wcert, &wkey))),
        "GET",
        "/v1/workers",
        Some(&server.token),
        &[],
        None,
    )
    .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
}

#[test]
fn a_worker_runs_tasks_over_tls_with_the_cluster_ca_and_its_own_certificate() {
    let dir = TempDir::new("tls-worker");
    let root = dir.path();
    let ca = Authority::create(root, "ca");
    let srv = root.join("server-tls");
    ca.issue("server", &srv, &["--host", "127.0.0.1"]);
    let server = TlsServer::start(root, &srv, &ca.ca());
    let (wcert, wkey) = ca.issue("worker", &root.join("worker-tls"), &["--name", "w1"]);
    let wlog = root.join("worker.log");
    let mut worker = drover_command();
    worker
        .arg("--data-dir")
        .arg(root.join("wdata"))
        .args(["--server", &server.url, "--token", &server.token, "--ca"])
        .arg(ca.ca())
        .args([
            "worker",
            "--name",
            &unique("tls-w"),
            "--cpus",
            "1",
            "--no-cgroups",
        ])
        .arg("--tls-cert")
        .arg(&wcert)
        .arg("--tls-key")
        .arg(&wkey)
        .env("DROVER_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::from(std::fs::File::create(&wlog).unwrap()));
    let mut worker = worker.spawn().expect("start the worker");
    let mut run = drover_command();
    run.args(["--server", &server.url, "--token", &server.token, "--ca"])
        .arg(ca.ca())
        .args(["run", "--", "echo", "over tls"]);
    let out = run_with_timeout(run, SLOW, || {
        format!("{}\n{}", tail(&server.log, 20), tail(&wlog, 20))
    });
    let _ = worker.kill();
    let _ = worker.wait();
    assert!(out.status.success(), "{out}\n{}", tail(&wlog, 20));
    assert_eq!(out.stdout.trim(), "over tls");
}

#[test]
fn drover_up_makes_its_own_ca_and_the_cli_trusts_it_with_nothing_copied() {
    let dir = TempDir::new("tls-up");
    let data = dir.path().join("data");
    let mut up = drover_command();
    up.arg("--data-dir")
        .arg(&data)
        .args([
            "--json",
            "up",
            "--listen",
            "127.0.0.1:0",
            "--workers",
            "1",
            "--cpus",
            "1",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let mut up = up.spawn().expect("start drover up");
    let stdout = up.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        let mut line = String::new();
        let _ = std::io::BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    let line = rx.recv_timeout(SLOW).unwrap_or_default();
    let cli = |args: &[&str]| {
        let mut c = drover_command();
        c.arg("--data-dir").arg(&data).args(args);
        run_with_timeout(c, SLOW, String::new)
    };
    let out = cli(&["run", "--", "echo", "hello"]);
    sigterm(&mut up);
    let banner: serde_json::Value =
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("{line:?}: {e}"));
    assert!(
        banner["url"].as_str().unwrap().starts_with("https://"),
        "{banner}"
    );
    assert!(out.status.success(), "{out}");
    assert_eq!(out.stdout.trim(), "hello");
    let tls = data.join("server").join("tls");
    for f in ["ca.crt", "ca.key", "server.crt", "server.key"] {
        assert!(tls.join(f).is_file(), "{f} missing in {}", tls.display());
    }
}

#[test]
fn insecure_http_serves_plain_http_with_a_warning() {
    let mut c = Cluster::start_with(
        "tls-insecure",
        &[
            "--worker-timeout",
            "3s",
            "--heartbeat-interval",
            "250ms",
            "--insecure-http",
        ],
    );
    assert!(c.url.starts_with("http://"), "{}", c.url);
    assert_eq!(c.get("/v1/workers").status, 200);
    let logs = c.logs();
    assert!(
        logs.contains("WARN") && logs.contains("--insecure-http"),
        "no warning:\n{logs}"
    );
    assert!(
        !c.data.join("server").join("tls").exists(),
        "no CA made for a plain-HTTP server"
    );
    // A worker and the CLI work over plain HTTP too.
    c.add_worker("w", &["--cpus", "1", "--memory", "1G"]);
    let out = c.cli_ok(&["run", "--", "echo", "plain"]);
    assert_eq!(out.stdout.trim(), "plain");
    c.kill_server();
}

fn sigterm(child: &mut Child) {
    signal(child.id(), "-TERM");
    let deadline = std::time::Instant::now() + SLOW;
    while matches!(child.try_wait(), Ok(None)) {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.wait();
}

/// A plain-HTTP request to a TLS listener gets a short plain-HTTP 400 saying to use
/// HTTPS, and nothing of the API: no data, whatever the token.
fn assert_https_required(addr: &str, token: Option<&str>) {
    for (method, path) in [
        ("GET", "/v1/health"),
        ("GET", "/v1/tasks"),
        ("POST", "/v1/tasks"),
    ] {
        let body = (method == "POST").then_some(&br#"{"command":["true"]}"#[..]);
        let mut conn = std::net::TcpStream::connect(addr).unwrap();
        conn.set_read_timeout(Some(SLOW)).unwrap();
        use std::io::Write;
        conn.write_all(&request_bytes(addr, method, path, token, &[], body))
            .unwrap();
        let r = read_response(&mut conn)
            .unwrap_or_else(|e| panic!("no plain-HTTP answer to {method} {path}: {e}"));
        assert_eq!(r.status, 400, "{method} {path}: {}", r.text());
        let e = r.error();
        assert_eq!(e["code"], "https_required", "{e}");
        assert!(
            e["message"].as_str().unwrap().contains("https://"),
            "the message names the fix: {e}"
        );
        assert!(
            r.header("location").is_none(),
            "no redirect: {:?}",
            r.headers
        );
    }
}

/// A bare `drover server` (no flags about TLS, nothing in its data directory) makes a CA
/// and a certificate on first start and serves HTTPS only; the CLI and a worker started
/// with the same `--data-dir` find the endpoint, the token and the CA by themselves;
/// a restart keeps the same CA.
#[test]
fn a_bare_server_serves_https_with_its_own_ca_and_local_clients_need_nothing_copied() {
    let mut c = Cluster::start("tls-bare");
    assert!(c.url.starts_with("https://127.0.0.1:"), "{}", c.url);
    let tls = c.data.join("server").join("tls");
    let mode = |f: &str| std::fs::metadata(tls.join(f)).unwrap().permissions().mode() & 0o777;
    for (f, want) in [
        ("ca.crt", 0o644),
        ("ca.key", 0o600),
        ("server.crt", 0o644),
        ("server.key", 0o600),
    ] {
        assert_eq!(mode(f), want, "{f}");
    }
    let log = read(&c.root.join("server.log"));
    assert!(
        log.contains("creating a CA") && !log.contains("plain HTTP"),
        "{log}"
    );
    // Its certificate is the CA's: a client trusting that CA alone is answered.
    let trusted = client_config(&tls.join("ca.crt"), None);
    let r = https_with(&c.addr, &trusted, "GET", "/v1/health", None, &[], None).unwrap();
    assert_eq!(r.status, 200);
    assert_https_required(&c.addr, Some(&c.token));

    // A worker and the CLI with the same --data-dir and nothing else.
    let wlog = c.root.join("local-worker.log");
    let name = unique("local");
    let mut worker = drover_command();
    worker
        .arg("--data-dir")
        .arg(&c.data)
        .args(["worker", "--name", &name, "--cpus", "1", "--memory", "1G"])
        .args(["--kill-grace", "1s", "--no-cgroups"])
        .env("DROVER_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::from(std::fs::File::create(&wlog).unwrap()));
    let mut worker = worker.spawn().expect("start the worker");
    c.wait_worker_connected(&name);
    let out = c.cli(&["run", "--", "echo", "hello over https"]);
    let _ = worker.kill();
    let _ = worker.wait();
    assert!(out.status.success(), "{out}\n{}", tail(&wlog, 20));
    assert_eq!(out.stdout.trim(), "hello over https");

    // An http:// URL fails at once, saying why.
    let out = c.cli(&["--server", &format!("http://{}", c.addr), "list"]);
    assert!(!out.status.success(), "{out}");
    assert!(out.stderr.contains("HTTPS"), "{out}");

    // A restart keeps its CA and certificate: clients keep trusting it.
    let ca_before = read(&tls.join("ca.crt"));
    let cert_before = read(&tls.join("server.crt"));
    c.kill_server();
    c.restart_server();
    assert_eq!(read(&tls.join("ca.crt")), ca_before);
    assert_eq!(read(&tls.join("server.crt")), cert_before);
    let r = https_with(&c.addr, &trusted, "GET", "/v1/health", None, &[], None).unwrap();
    assert_eq!(r.status, 200);
}

/// A server that forms or joins a group and has no certificates does not make its own
/// CA (the others would not trust it) and does not fall back to plain HTTP: it exits
/// non-zero, naming the `drover tls` commands that make them. `--tls-dir` naming an
/// empty directory is refused the same way. With `--insecure-http` it starts.
#[test]
fn a_group_member_without_certificates_refuses_to_start_and_says_how_to_make_them() {
    let dir = TempDir::new("tls-group-refuse");
    let root = dir.path();
    let addrs: Vec<String> = servers::free_ports(3)
        .into_iter()
        .map(|p| format!("127.0.0.1:{p}"))
        .collect();
    let server = |data: &str, args: &[&str]| {
        let mut c = drover_command();
        c.arg("--data-dir")
            .arg(root.join(data))
            .args(["--token", "group-token", "server", "--listen", &addrs[0]])
            .args(["--peer-token", "group-peer-token"])
            .args(args);
        c
    };
    let peers = addrs.join(",");
    for (data, args) in [
        ("peers", vec!["--peers", peers.as_str()]),
        ("join", vec!["--join", addrs[1].as_str()]),
        ("join-wait", vec!["--join"]),
    ] {
        let out = run_with_timeout(server(data, &args), SLOW, String::new);
        assert!(!out.status.success(), "{args:?} started:\n{out}");
        for needle in [
            "drover tls ca create",
            "drover tls cert create server",
            "--insecure-http",
        ] {
            assert!(
                out.stderr.contains(needle),
                "{args:?}: no {needle:?}:\n{out}"
            );
        }
        let tls = root.join(data).join("server").join("tls");
        assert!(
            !tls.join("ca.key").exists() && !tls.join("server.crt").exists(),
            "{args:?}: a group member made a CA of its own"
        );
    }

    // --tls-dir names where the certificates are: missing, they are not made.
    let empty = root.join("empty-tls");
    std::fs::create_dir_all(&empty).unwrap();
    let mut alone = drover_command();
    alone
        .arg("--data-dir")
        .arg(root.join("tls-dir"))
        .args(["server", "--listen", "127.0.0.1:0", "--tls-dir"])
        .arg(&empty);
    let out = run_with_timeout(alone, SLOW, String::new);
    assert!(!out.status.success(), "{out}");
    assert!(
        out.stderr.contains("drover tls cert create server"),
        "{out}"
    );
    assert!(
        std::fs::read_dir(&empty).unwrap().next().is_none(),
        "nothing made in {}",
        empty.display()
    );

    // With --insecure-http the same member starts (and waits for its group), warning.
    let log = root.join("insecure.log");
    let mut member = server("insecure", &["--peers", &peers, "--insecure-http"])
        .env("DROVER_LOG", "info,openraft=warn")
        .stdout(Stdio::null())
        .stderr(Stdio::from(std::fs::File::create(&log).unwrap()))
        .spawn()
        .unwrap();
    let endpoint = root.join("insecure").join("server").join("endpoint");
    let url = poll(
        "the insecure member to be up",
        SLOW,
        || {
            if let Ok(Some(st)) = member.try_wait() {
                panic!("it exited with {st}:\n{}", tail(&log, 20));
            }
            std::fs::read_to_string(&endpoint).ok()
        },
        || tail(&log, 20),
    );
    let _ = member.kill();
    let _ = member.wait();
    assert!(url.starts_with("http://"), "{url}");
    assert!(read(&log).contains("--insecure-http"), "{}", read(&log));
}
