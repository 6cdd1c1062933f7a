//! TLS on the server's listener: certificates from `drover tls`, what is refused (plain
//! HTTP, another CA's server or client certificate), mutual TLS on the servers' routes
//! (a worker's certificate cannot speak raft), workers and the CLI over TLS, and
//! `--insecure-http`.

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

    // Plain HTTP gets no HTTP answer on the TLS listener.
    let plain = http_with(&server.addr, "GET", "/v1/health", None, &[], None);
    assert!(plain.is_err(), "plain HTTP was answered: {plain:?}");

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
    assert!(logs.contains("--insecure-http"), "no warning:\n{logs}");
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
