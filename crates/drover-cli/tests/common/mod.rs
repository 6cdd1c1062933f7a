//! The black-box harness: real `drover` processes on loopback, each cluster in its own
//! temporary directory, everything SIGKILLed (task processes included) when the
//! cluster is dropped. Every wait has a deadline; a failure prints the tail of the
//! server's and the workers' logs.
//!
//! Servers are started as a user would start them, so they speak TLS: a [`Cluster`]'s
//! server makes its own CA on first start (the CLI here finds it in the data directory,
//! workers are given it with `--ca`), a [`servers::ServerSet`] gets a CA and a server
//! certificate per server before its first start, as a real group must. HTTP is spoken
//! by hand (HTTP/1.1, `Connection: close`) over TLS with that CA ([`tls::connect`]),
//! so the tests can also send what no well-behaved client would: no token, a wrong
//! one, malformed JSON, bad UTF-8, a body larger than the server accepts.

#![allow(dead_code)]

pub mod event_lines;
pub mod history;
pub mod netns;
pub mod process_watch;
pub mod servers;
pub mod tls;
pub mod worker_join;

use drover_proto::api::{TaskInfo, WorkerInfo};
use serde_json::Value;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

pub const DROVER: &str = env!("CARGO_BIN_EXE_drover");

/// A generous ceiling for anything that should take a second or two: the machine may
/// be loaded (debug build, two cores, other test binaries).
pub const SLOW: Duration = Duration::from_secs(30);

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A name no other test (in this process or another) uses: `<prefix>-<pid>-<n>`.
pub fn unique(prefix: &str) -> String {
    let n = COUNTER.fetch_add(1, Ordering::SeqCst);
    format!("{prefix}-{}-{n}", std::process::id())
}

/// Polls `f` every 50 ms until it returns `Some`, or panics after `timeout` with
/// `what` and `context()` (typically the logs).
pub fn poll<T>(
    what: &str,
    timeout: Duration,
    mut f: impl FnMut() -> Option<T>,
    context: impl Fn() -> String,
) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        if Instant::now() >= deadline {
            panic!(
                "timed out after {timeout:?} waiting for {what}\n{}",
                context()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

// ---------------------------------------------------------------------------------
// HTTP by hand.

#[derive(Debug, Clone)]
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "HTTP {} body is not JSON ({e}): {:?}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The `error` object of an error body, checked to have the documented shape.
    pub fn error(&self) -> Value {
        let v = self.json();
        let e = v
            .get("error")
            .unwrap_or_else(|| panic!("no `error` in the HTTP {} body {v}", self.status))
            .clone();
        assert!(e["code"].is_string(), "error.code missing in {v}");
        assert!(e["message"].is_string(), "error.message missing in {v}");
        e
    }
}

/// One HTTP/1.1 request on a fresh connection: over TLS to a server of the harness
/// (see [`tls::trust`]). `token`: `Some` sends `Authorization: Bearer <token>`.
pub fn http(
    addr: &str,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&[u8]>,
) -> Resp {
    http_with(addr, method, path, token, &[], body)
        .unwrap_or_else(|e| panic!("{method} {path} on {addr}: {e}"))
}

pub fn http_with(
    addr: &str,
    method: &str,
    path: &str,
    token: Option<&str>,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
) -> std::io::Result<Resp> {
    let mut conn = tls::connect(addr)?;
    conn.write_all(&request_bytes(addr, method, path, token, headers, body))?;
    conn.flush()?;
    parse_response(&tls::read_to_close(&mut conn)?)
}

/// The bytes of one HTTP/1.1 request with `Connection: close`.
pub fn request_bytes(
    addr: &str,
    method: &str,
    path: &str,
    token: Option<&str>,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
) -> Vec<u8> {
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    if let Some(t) = token {
        req.push_str(&format!("Authorization: Bearer {t}\r\n"));
    }
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    match body {
        Some(b) => {
            if !headers
                .iter()
                .any(|(k, _)| k.eq_ignore_ascii_case("content-type"))
            {
                req.push_str("Content-Type: application/json\r\n");
            }
            req.push_str(&format!("Content-Length: {}\r\n\r\n", b.len()));
        }
        None if method == "POST" || method == "PUT" => req.push_str("Content-Length: 0\r\n\r\n"),
        None => req.push_str("\r\n"),
    }
    let mut bytes = req.into_bytes();
    bytes.extend_from_slice(body.unwrap_or_default());
    bytes
}

pub fn read_response(s: &mut TcpStream) -> std::io::Result<Resp> {
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    parse_response(&raw)
}

pub fn parse_response(raw: &[u8]) -> std::io::Result<Resp> {
    let bad = |m: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, m.to_string());
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| {
            bad(&format!(
                "no end of headers in {:?}",
                String::from_utf8_lossy(raw)
            ))
        })?;
    let head = String::from_utf8_lossy(&raw[..end]).into_owned();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status: u16 = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad(&format!("bad status line {status_line:?}")))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| {
            l.split_once(':')
                .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        })
        .collect();
    let mut body = raw[end + 4..].to_vec();
    let chunked = headers.iter().any(|(k, v)| {
        k.eq_ignore_ascii_case("transfer-encoding") && v.to_ascii_lowercase().contains("chunked")
    });
    if chunked {
        let mut out = Vec::new();
        let mut rest = &body[..];
        while let Some(nl) = rest.windows(2).position(|w| w == b"\r\n") {
            let size_text = String::from_utf8_lossy(&rest[..nl]).into_owned();
            let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
                .map_err(|_| bad(&format!("bad chunk size {size_text:?}")))?;
            rest = &rest[nl + 2..];
            if size == 0 || rest.len() < size {
                out.extend_from_slice(&rest[..size.min(rest.len())]);
                break;
            }
            out.extend_from_slice(&rest[..size]);
            rest = rest.get(size + 2..).unwrap_or(&[]);
        }
        body = out;
    }
    Ok(Resp {
        status,
        headers,
        body,
    })
}

// ---------------------------------------------------------------------------------
// Processes.

/// Every process but this one: its pid and its `/proc` directory.
fn other_processes() -> Vec<(u32, PathBuf)> {
    let me = std::process::id();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|entry| {
            let pid = entry.file_name().to_str()?.parse::<u32>().ok()?;
            (pid != me).then(|| (pid, entry.path()))
        })
        .collect()
}

/// The pids of live processes whose command line contains `needle` (zombies have
/// none), with their command lines.
pub fn processes_with_cmdline(needle: &str) -> Vec<(u32, String)> {
    other_processes()
        .into_iter()
        .filter_map(|(pid, dir)| {
            let raw = std::fs::read(dir.join("cmdline")).ok()?;
            let cmd = String::from_utf8_lossy(&raw).replace('\0', " ");
            cmd.contains(needle).then(|| (pid, cmd.trim().to_string()))
        })
        .collect()
}

/// The live processes of one attempt run by the worker agent `agent`, found by the
/// marker the driver puts in the environment of every task process (descendants
/// inherit it, so this is the attempt's whole tree). A zombie has an empty
/// environment: it is gone but for its exit status.
pub fn attempt_processes(agent: &str, task: u64, attempt: u32) -> Vec<u32> {
    let prefix = format!("DROVER_EXEC_MARKER={agent}/");
    let suffix = format!("/{task}/{attempt}");
    other_processes()
        .into_iter()
        .filter_map(|(pid, dir)| {
            let env = std::fs::read(dir.join("environ")).ok()?;
            env.split(|b| *b == 0)
                .any(|var| {
                    let var = String::from_utf8_lossy(var);
                    var.starts_with(&prefix) && var.ends_with(&suffix)
                })
                .then_some(pid)
        })
        .collect()
}

/// Live processes whose working directory or command line is inside `root`: what tasks
/// of a cluster rooted there left running.
pub fn processes_under(root: &Path) -> Vec<u32> {
    let root_text = root.to_string_lossy().into_owned();
    other_processes()
        .into_iter()
        .filter_map(|(pid, dir)| {
            let in_cwd = std::fs::read_link(dir.join("cwd")).is_ok_and(|p| p.starts_with(root));
            let in_cmd = std::fs::read(dir.join("cmdline"))
                .is_ok_and(|raw| String::from_utf8_lossy(&raw).contains(&root_text));
            (in_cwd || in_cmd).then_some(pid)
        })
        .collect()
}

/// Sends a signal (`-STOP`, `-CONT`, `-TERM`…) by pid, without `unsafe`: through kill(1).
pub fn signal(pid: u32, sig: &str) {
    let st = Command::new("kill")
        .args([sig, &pid.to_string()])
        .stdin(Stdio::null())
        .status()
        .unwrap();
    assert!(st.success(), "kill {sig} {pid}");
}

/// SIGKILL by pid, without `unsafe`: through kill(1).
pub fn sigkill(pid: u32) {
    let _ = Command::new("kill")
        .args(["-9", &pid.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

pub fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read(path)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// What a finished CLI command printed.
#[derive(Debug)]
pub struct CliOutput {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl CliOutput {
    pub fn code(&self) -> Option<i32> {
        self.status.code()
    }
}

impl std::fmt::Display for CliOutput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use std::os::unix::process::ExitStatusExt;
        // A process ended by a signal has no exit code: name the signal instead.
        match (self.status.code(), self.status.signal()) {
            (Some(code), _) => write!(f, "exit {code}")?,
            (None, Some(sig)) => write!(f, "killed by signal {sig}")?,
            (None, None) => write!(f, "exit unknown")?,
        }
        write!(
            f,
            "\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.stdout, self.stderr
        )
    }
}

/// A `drover` command with a clean environment (no DROVER_* from the caller's: not
/// the server, token and data directory, nor a configuration file or setting).
pub fn drover_command() -> Command {
    drover_command_in(None)
}

/// [`drover_command`], run inside a network namespace when one is named (entering only
/// its network: the mount namespace, and so the cgroup file system, stay the host's,
/// as on a real second machine).
pub fn drover_command_in(netns: Option<&str>) -> Command {
    let mut c = match netns {
        Some(ns) => {
            let mut c = Command::new("nsenter");
            c.arg(format!("--net=/run/netns/{ns}"))
                .arg("--")
                .arg(DROVER);
            c
        }
        None => Command::new(DROVER),
    };
    for (var, _) in std::env::vars_os() {
        if var.to_string_lossy().starts_with("DROVER_") {
            c.env_remove(var);
        }
    }
    c.env("NO_COLOR", "1");
    c.stdin(Stdio::null());
    c
}

/// Runs a command to its end, killing it and panicking after `timeout`.
pub fn run_with_timeout(
    mut cmd: Command,
    timeout: Duration,
    context: impl Fn() -> String,
) -> CliOutput {
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let out_t = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = out.read_to_end(&mut s);
        s
    });
    let err_t = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = err.read_to_end(&mut s);
        s
    });
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            let stdout = String::from_utf8_lossy(&out_t.join().unwrap_or_default()).into_owned();
            let stderr = String::from_utf8_lossy(&err_t.join().unwrap_or_default()).into_owned();
            panic!(
                "{cmd:?} did not finish within {timeout:?}\n--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}\n{}",
                context()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    CliOutput {
        status,
        stdout: String::from_utf8_lossy(&out_t.join().unwrap_or_default()).into_owned(),
        stderr: String::from_utf8_lossy(&err_t.join().unwrap_or_default()).into_owned(),
    }
}

// ---------------------------------------------------------------------------------
// A directory removed on drop.

#[derive(Debug)]
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(prefix: &str) -> TempDir {
        let p = std::env::temp_dir().join("drover-bbt").join(unique(prefix));
        std::fs::create_dir_all(&p)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", p.display()));
        // Like /tmp (sticky, writable by all): tasks run as `nobody` when the tests
        // run as root, and write the files tests give them here.
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o1777))
            .unwrap_or_else(|e| panic!("cannot open {} to tasks: {e}", p.display()));
        TempDir(p)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

// ---------------------------------------------------------------------------------
// A server started by `drover --data-dir DATA server`, found as the CLI finds it.

/// Where a server started with `--data-dir data` keeps the CA it made.
pub fn local_ca_path(data: &Path) -> PathBuf {
    data.join("server").join("tls").join("ca.crt")
}

/// Tells the harness how to reach the server whose endpoint file (in `data`) says
/// `url`: over TLS with the CA in its data directory, or plain HTTP for an `http://`
/// URL. Its `IP:PORT`; `None` while the CA file is not there yet.
pub fn register_endpoint(data: &Path, url: &str) -> Option<String> {
    match url.trim().strip_prefix("https://") {
        Some(addr) => {
            let pem = std::fs::read_to_string(local_ca_path(data)).ok()?;
            let config = drover_client::tls::client_config(&pem, None).ok()?;
            tls::trust(addr, std::sync::Arc::new(config));
            Some(addr.to_string())
        }
        None => {
            let addr = url.trim().strip_prefix("http://")?;
            tls::forget(addr);
            Some(addr.to_string())
        }
    }
}

/// Waits until the server started (by the test) with `--data-dir data` is up: its
/// endpoint file is written and `/v1/health` answers 200 over the scheme it names.
/// Its `IP:PORT`, registered with the harness ([`register_endpoint`]).
pub fn wait_local_server(data: &Path, what: &str) -> String {
    let endpoint = data.join("server").join("endpoint");
    poll(
        what,
        SLOW,
        || {
            let url = std::fs::read_to_string(&endpoint).ok()?;
            let addr = register_endpoint(data, &url)?;
            let r = http_with(&addr, "GET", "/v1/health", None, &[], None).ok()?;
            (r.status == 200).then_some(addr)
        },
        String::new,
    )
}

// ---------------------------------------------------------------------------------
// A cluster: one server and its workers.

/// What a worker the harness starts presents to the server.
enum WorkerCredential<'a> {
    /// The cluster token (`--token`): most tests.
    ClusterToken,
    /// A join token (`DROVER_JOIN_TOKEN`), no cluster token.
    JoinToken(&'a str),
    /// Nothing: the credential stored in its data directory at its first join.
    Stored,
}

struct WorkerProc {
    /// The short name the test uses.
    short: String,
    /// The unique name the worker registers with (its processes are reaped by name,
    /// so two tests must never share one).
    name: String,
    child: Option<Child>,
    log: PathBuf,
    args: Vec<String>,
    /// The `--data-dir` it was started with (its own directory is `workers/<name>`
    /// inside), from which its agent id, and so its cgroups, follow.
    data_dir: PathBuf,
    /// The network namespace it runs in, if not the host's.
    netns: Option<String>,
}

impl WorkerProc {
    fn agent_id(&self) -> String {
        agent_id(&self.name, &self.data_dir)
    }
}

/// The id a worker's processes and cgroups are marked with, as the product derives it,
/// for a worker `name` started with `--data-dir data_dir`.
pub fn agent_id(name: &str, data_dir: &Path) -> String {
    let config =
        drover_worker::WorkerConfig::new("", "", name, data_dir.join("workers").join(name));
    drover_worker::identity(&config).1
}

pub struct Cluster {
    /// Root of everything this cluster writes; removed on drop.
    pub root: PathBuf,
    /// The server's data directory (`drover --data-dir`).
    pub data: PathBuf,
    /// `https://127.0.0.1:PORT` (`http://` with `--insecure-http`)
    pub url: String,
    /// `127.0.0.1:PORT`
    pub addr: String,
    pub token: String,
    server_args: Vec<String>,
    /// Extra environment variables of the server process.
    pub server_env: Vec<(String, String)>,
    /// Extra environment variables of worker processes started from now on.
    pub worker_env: Vec<(String, String)>,
    server: Option<Child>,
    server_log: PathBuf,
    workers: Vec<WorkerProc>,
    _dir: TempDir,
}

impl Cluster {
    /// A server on an ephemeral loopback port, declaring silent workers lost after 3 s
    /// (heartbeats every 250 ms: a worker with the harness's 1 s kill grace fences
    /// itself after 1.5 s without an acknowledged heartbeat).
    pub fn start(test: &str) -> Cluster {
        Cluster::start_with(
            test,
            &["--worker-timeout", "3s", "--heartbeat-interval", "250ms"],
        )
    }

    /// A server with these extra `drover server` arguments (`--listen 127.0.0.1:0` is
    /// added unless given).
    pub fn start_with(test: &str, server_args: &[&str]) -> Cluster {
        Cluster::start_prepared(test, server_args, |_| ())
    }

    /// Like [`Cluster::start_with`], calling `prepare` before the server starts (to
    /// mount a small file system at `data/server`, or set `server_env`, say).
    pub fn start_prepared(
        test: &str,
        server_args: &[&str],
        prepare: impl FnOnce(&mut Cluster),
    ) -> Cluster {
        let dir = TempDir::new(test);
        let root = dir.path().to_path_buf();
        let data = root.join("data");
        let mut args: Vec<String> = server_args.iter().map(|s| s.to_string()).collect();
        if !args.iter().any(|a| a == "--listen") {
            args.extend(["--listen".into(), "127.0.0.1:0".into()]);
        }
        let mut c = Cluster {
            server_log: root.join("server.log"),
            root,
            data,
            url: String::new(),
            addr: String::new(),
            token: String::new(),
            server_args: args,
            server_env: Vec::new(),
            worker_env: Vec::new(),
            server: None,
            workers: Vec::new(),
            _dir: dir,
        };
        prepare(&mut c);
        c.spawn_server();
        c
    }

    fn spawn_server(&mut self) {
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.server_log)
            .expect("server log");
        let mut cmd = drover_command();
        cmd.arg("--data-dir")
            .arg(&self.data)
            .arg("server")
            .args(&self.server_args)
            .env("DROVER_LOG", "info,openraft=warn")
            .envs(self.server_env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::null())
            .stderr(Stdio::from(log));
        let mut child = cmd.spawn().expect("start drover server");
        let endpoint_file = self.data.join("server").join("endpoint");
        let deadline = Instant::now() + SLOW;
        let url = loop {
            if let Ok(Some(st)) = child.try_wait() {
                panic!("the server exited early with {st}");
            }
            let up = (|| {
                let url = std::fs::read_to_string(&endpoint_file)
                    .ok()?
                    .trim()
                    .to_string();
                let addr = register_endpoint(&self.data, &url)?;
                let addr = addr.as_str();
                let r = http_with(addr, "GET", "/v1/health", None, &[], None).ok()?;
                (r.status == 200 && r.json()["leader"] == Value::Bool(true)).then_some(url)
            })();
            if let Some(url) = up {
                break url;
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("the server was not up (endpoint file + /v1/health leader) within {SLOW:?}");
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        self.server = Some(child);
        self.addr = url
            .split_once("://")
            .map(|(_, a)| a)
            .unwrap_or(&url)
            .to_string();
        self.url = url;
        self.token = std::fs::read_to_string(self.data.join("server").join("token"))
            .expect("token file")
            .trim()
            .to_string();
    }

    /// Where the server keeps the cluster's CA certificate (it makes it on first start).
    pub fn ca_path(&self) -> PathBuf {
        local_ca_path(&self.data)
    }

    /// The cluster's CA certificate file, while the server speaks TLS; what `--ca`
    /// takes for a worker or CLI elsewhere than the server's data directory.
    pub fn ca_file(&self) -> Option<PathBuf> {
        self.url.starts_with("https://").then(|| self.ca_path())
    }

    /// The TLS configuration of a client of this cluster (trusting its CA only), while
    /// the server speaks TLS: for reqwest or SDK clients.
    pub fn client_tls(&self) -> Option<rustls::ClientConfig> {
        let pem = std::fs::read_to_string(self.ca_file()?).expect("the cluster's ca.crt");
        Some(drover_client::tls::client_config(&pem, None).expect("a TLS client configuration"))
    }

    /// The server's pid.
    pub fn server_pid(&self) -> u32 {
        self.server.as_ref().expect("server running").id()
    }

    /// `kill -9` the server.
    pub fn kill_server(&mut self) {
        if let Some(mut c) = self.server.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Waits for the server process to exit by itself (after a signal the test sent).
    pub fn wait_server_exit(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            let child = self.server.as_mut().expect("server running");
            if let Ok(Some(st)) = child.try_wait() {
                self.server = None;
                return st;
            }
            assert!(
                Instant::now() < deadline,
                "the server did not exit within {timeout:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Starts the server again on the same data directory and the same port.
    pub fn restart_server(&mut self) {
        assert!(
            self.server.is_none(),
            "kill the server before restarting it"
        );
        let port = self.addr.rsplit(':').next().unwrap().to_string();
        let mut args = Vec::new();
        let mut it = self.server_args.iter();
        while let Some(a) = it.next() {
            if a == "--listen" {
                it.next();
                continue;
            }
            args.push(a.clone());
        }
        args.extend(["--listen".into(), format!("127.0.0.1:{port}")]);
        self.server_args = args;
        let _ = std::fs::remove_file(self.data.join("server").join("endpoint"));
        let old = self.url.clone();
        self.spawn_server();
        assert_eq!(
            self.url, old,
            "the restarted server should be on the same address"
        );
    }

    /// Starts a worker and waits until the server lists it as connected and active.
    /// `short` must be unique within the cluster; `args` go after `worker --name N`
    /// (`--kill-grace 1s` is added unless given). Returns the registered name.
    pub fn add_worker(&mut self, short: &str, args: &[&str]) -> String {
        self.add_worker_named(short, &unique(short), args)
    }

    /// Like [`Cluster::add_worker`] with the registered name chosen by the caller.
    pub fn add_worker_named(&mut self, short: &str, name: &str, args: &[&str]) -> String {
        self.add_worker_to(short, name, None, args)
    }

    /// Like [`Cluster::add_worker`], the worker running inside network namespace `ns`.
    pub fn add_worker_in(&mut self, short: &str, ns: &str, args: &[&str]) -> String {
        self.add_worker_to(short, &unique(short), Some(ns), args)
    }

    fn add_worker_to(
        &mut self,
        short: &str,
        name: &str,
        netns: Option<&str>,
        args: &[&str],
    ) -> String {
        let name = name.to_string();
        let mut args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        if !args.iter().any(|a| a == "--kill-grace") {
            args.extend(["--kill-grace".into(), "1s".into()]);
        }
        let mut w = WorkerProc {
            short: short.to_string(),
            name: name.clone(),
            child: None,
            log: self.root.join(format!("worker-{short}.log")),
            args,
            data_dir: self.root.join(format!("wdata-{short}")),
            netns: netns.map(str::to_string),
        };
        self.spawn_worker(&mut w);
        self.workers.push(w);
        self.wait_worker_connected(&name);
        name
    }

    fn spawn_worker(&self, w: &mut WorkerProc) {
        self.spawn_worker_as(w, WorkerCredential::ClusterToken);
    }

    /// Starts the worker `w` presenting `credential`; the rest of its command line
    /// (server, CA, name, arguments, environment) is the same whatever it presents.
    fn spawn_worker_as(&self, w: &mut WorkerProc, credential: WorkerCredential<'_>) {
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&w.log)
            .expect("worker log");
        let mut cmd = drover_command_in(w.netns.as_deref());
        cmd.arg("--data-dir")
            .arg(&w.data_dir)
            .args(["--server", &self.url]);
        match credential {
            WorkerCredential::ClusterToken => {
                cmd.args(["--token", &self.token]);
            }
            WorkerCredential::JoinToken(t) => {
                cmd.env_remove("DROVER_TOKEN").env("DROVER_JOIN_TOKEN", t);
            }
            WorkerCredential::Stored => {
                cmd.env_remove("DROVER_TOKEN");
            }
        }
        if let Some(ca) = self.ca_file() {
            cmd.arg("--ca").arg(ca);
        }
        cmd.args(["worker", "--name", &w.name])
            .args(&w.args)
            .env("DROVER_LOG", "info")
            .envs(self.worker_env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::null())
            .stderr(Stdio::from(log));
        w.child = Some(cmd.spawn().expect("start drover worker"));
    }

    pub fn worker_name(&self, short: &str) -> String {
        self.worker(short).name.clone()
    }

    fn worker(&self, short: &str) -> &WorkerProc {
        self.workers
            .iter()
            .find(|w| w.short == short)
            .unwrap_or_else(|| panic!("no worker {short}"))
    }

    pub fn worker_pid(&self, short: &str) -> u32 {
        self.worker(short)
            .child
            .as_ref()
            .expect("worker running")
            .id()
    }

    /// `kill -9` a worker agent (not its tasks).
    pub fn kill_worker(&mut self, short: &str) {
        let w = self
            .workers
            .iter_mut()
            .find(|w| w.short == short)
            .unwrap_or_else(|| panic!("no worker {short}"));
        if let Some(mut c) = w.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts a killed worker again: same name, same data directory, same arguments;
    /// waits until it is connected.
    pub fn restart_worker(&mut self, short: &str) {
        self.restart_worker_as(short, WorkerCredential::ClusterToken);
    }

    /// [`restart_worker`](Self::restart_worker), presenting `credential`.
    fn restart_worker_as(&mut self, short: &str, credential: WorkerCredential<'_>) {
        let i = self
            .workers
            .iter()
            .position(|w| w.short == short)
            .unwrap_or_else(|| panic!("no worker {short}"));
        let mut w = self.workers.remove(i);
        assert!(
            w.child.is_none(),
            "kill worker {short} before restarting it"
        );
        self.spawn_worker_as(&mut w, credential);
        let name = w.name.clone();
        self.workers.insert(i, w);
        self.wait_worker_connected(&name);
    }

    pub fn wait_worker_connected(&self, name: &str) {
        poll(
            &format!("worker {name} to be connected and active"),
            SLOW,
            || {
                let list = self.workers_info();
                list.iter()
                    .any(|w| w.name == name && w.connected && w.state.to_string() == "active")
                    .then_some(())
            },
            String::new,
        );
    }

    /// Whether a worker's process has exited (and with what).
    pub fn worker_exit(&mut self, short: &str) -> Option<ExitStatus> {
        let w = self.workers.iter_mut().find(|w| w.short == short)?;
        w.child.as_mut()?.try_wait().ok().flatten()
    }

    /// Starts a worker without waiting for it to join (for workers expected to fail).
    pub fn spawn_worker_raw(&mut self, short: &str, global: &[&str], args: &[&str]) {
        let name = unique(short);
        let log_path = self.root.join(format!("worker-{short}.log"));
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .expect("worker log");
        // A `--data-dir` among `global` comes last and wins.
        let data_dir = global
            .iter()
            .position(|a| *a == "--data-dir")
            .and_then(|i| global.get(i + 1))
            .map(PathBuf::from)
            .unwrap_or_else(|| self.root.join(format!("wdata-{short}")));
        let mut cmd = drover_command();
        cmd.arg("--data-dir")
            .arg(self.root.join(format!("wdata-{short}")));
        if let Some(ca) = self.ca_file().filter(|_| !global.contains(&"--ca")) {
            cmd.arg("--ca").arg(ca);
        }
        cmd.args(global)
            .args(["worker", "--name", &name])
            .args(args)
            .env("DROVER_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::from(log));
        self.workers.push(WorkerProc {
            short: short.to_string(),
            name,
            child: Some(cmd.spawn().expect("start drover worker")),
            log: log_path,
            args: args.iter().map(|s| s.to_string()).collect(),
            data_dir,
            netns: None,
        });
    }

    pub fn worker_log(&self, short: &str) -> String {
        std::fs::read_to_string(&self.worker(short).log).unwrap_or_default()
    }

    /// The tails of the server's and every worker's log.
    pub fn logs(&self) -> String {
        let mut s = format!(
            "--- server log ({}) ---\n{}\n",
            self.server_log.display(),
            tail(&self.server_log, 40)
        );
        for w in &self.workers {
            s.push_str(&format!(
                "--- worker {} log ---\n{}\n",
                w.name,
                tail(&w.log, 15)
            ));
        }
        s
    }

    // ---- HTTP with the token.

    pub fn get(&self, path: &str) -> Resp {
        http(&self.addr, "GET", path, Some(&self.token), None)
    }

    pub fn post(&self, path: &str, body: &Value) -> Resp {
        let b = serde_json::to_vec(body).unwrap();
        http(&self.addr, "POST", path, Some(&self.token), Some(&b))
    }

    pub fn put(&self, path: &str, body: &Value) -> Resp {
        let b = serde_json::to_vec(body).unwrap();
        http(&self.addr, "PUT", path, Some(&self.token), Some(&b))
    }

    /// GET that must succeed; its JSON.
    pub fn get_ok(&self, path: &str) -> Value {
        let r = self.get(path);
        assert!(
            r.status == 200,
            "GET {path}: HTTP {} {}",
            r.status,
            r.text()
        );
        r.json()
    }

    /// Submits one task (TaskSpec JSON); returns its id.
    pub fn submit(&self, spec: Value) -> u64 {
        let r = self.post("/v1/tasks", &spec);
        assert_eq!(r.status, 201, "submitting {spec}: {}", r.text());
        let v = r.json();
        assert_eq!(v["count"], 1, "{v}");
        v["first"].as_u64().unwrap()
    }

    /// Submits a job (JobSpec JSON); returns (job id, first task id, count).
    pub fn submit_job(&self, job: Value) -> (u64, u64, u64) {
        let r = self.post("/v1/jobs", &job);
        assert_eq!(r.status, 201, "submitting {job}: {}", r.text());
        let v = r.json();
        (
            v["job"].as_u64().unwrap(),
            v["first"].as_u64().unwrap(),
            v["count"].as_u64().unwrap(),
        )
    }

    pub fn task(&self, id: u64) -> TaskInfo {
        let v = self.get_ok(&format!("/v1/tasks/{id}"));
        serde_json::from_value(v.clone()).unwrap_or_else(|e| panic!("task {id}: {e}: {v}"))
    }

    pub fn workers_info(&self) -> Vec<WorkerInfo> {
        let v = self.get_ok("/v1/workers");
        serde_json::from_value(v.clone()).unwrap_or_else(|e| panic!("workers: {e}: {v}"))
    }

    /// Waits until task `id` is in a final state.
    pub fn wait_final(&self, id: u64, timeout: Duration) -> TaskInfo {
        poll(
            &format!("task {id} to end"),
            timeout,
            || {
                let t = self.task(id);
                t.state.is_final().then_some(t)
            },
            || format!("task {id} is {:?}", self.task(id).state),
        )
    }

    /// Waits until task `id` is in state `state` (by name).
    pub fn wait_state(&self, id: u64, state: &str, timeout: Duration) -> TaskInfo {
        poll(
            &format!("task {id} to be {state}"),
            timeout,
            || {
                let t = self.task(id);
                if t.state.as_str() != state && t.state.is_final() {
                    panic!(
                        "task {id} ended {} while waiting for {state}: {t:#?}",
                        t.state
                    );
                }
                (t.state.as_str() == state).then_some(t)
            },
            || format!("task {id} is {:?}", self.task(id).state),
        )
    }

    /// Polls `f`; on timeout the panic message names `what` (the logs are printed
    /// when the cluster is dropped).
    pub fn poll<T>(&self, what: &str, timeout: Duration, f: impl FnMut() -> Option<T>) -> T {
        poll(what, timeout, f, String::new)
    }

    // ---- The CLI.

    /// A `drover --data-dir <data> ARGS` command (finds the server by itself).
    pub fn cli_command(&self, args: &[&str]) -> Command {
        let mut c = drover_command();
        c.arg("--data-dir").arg(&self.data).args(args);
        c
    }

    /// Runs the CLI to its end (at most 60 s).
    pub fn cli(&self, args: &[&str]) -> CliOutput {
        run_with_timeout(self.cli_command(args), Duration::from_secs(60), String::new)
    }

    /// Runs the CLI and requires exit 0.
    pub fn cli_ok(&self, args: &[&str]) -> CliOutput {
        let out = self.cli(args);
        assert!(out.status.success(), "drover {args:?} failed:\n{out}");
        out
    }

    /// A file in this cluster's directory, for tasks to write to.
    pub fn file(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "==== logs of the failed test's cluster ====\n{}",
                self.logs()
            );
        }
        for w in &mut self.workers {
            if let Some(mut c) = w.child.take() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
        if let Some(mut c) = self.server.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        tls::forget(&self.addr);
        // Task processes outlive a SIGKILLed agent: end whatever runs in our tree,
        // thawing first what a dying agent may have left frozen, and remove the
        // agents' cgroups.
        let agents: Vec<String> = self.workers.iter().map(WorkerProc::agent_id).collect();
        for agent in &agents {
            clean_agent_cgroups(agent, false);
        }
        for _ in 0..3 {
            let left = processes_under(&self.root);
            if left.is_empty() {
                break;
            }
            for pid in left {
                sigkill(pid);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        for agent in &agents {
            clean_agent_cgroups(agent, true);
        }
    }
}

/// The `drover/<agent>` cgroup directories of a worker agent, in every controller
/// (they sit under the agent's own cgroup, a few levels down).
fn agent_cgroup_dirs(agent: &str) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let Ok(controllers) = std::fs::read_dir("/sys/fs/cgroup") else {
        return found;
    };
    let mut queue: Vec<(PathBuf, u32)> = controllers.flatten().map(|e| (e.path(), 0)).collect();
    while let Some((dir, depth)) = queue.pop() {
        let candidate = dir.join("drover").join(agent);
        if candidate.is_dir() {
            found.push(candidate);
        }
        if depth >= 3 {
            continue;
        }
        let Ok(children) = std::fs::read_dir(&dir) else {
            continue;
        };
        for child in children.flatten() {
            let path = child.path();
            if path.is_dir() && child.file_name() != "drover" {
                queue.push((path, depth + 1));
            }
        }
    }
    found
}

/// Thaws and kills whatever is left in an agent's attempt cgroups; with `remove`, also
/// removes them (best effort: a cgroup with live processes stays).
pub fn clean_agent_cgroups(agent: &str, remove: bool) {
    for dir in agent_cgroup_dirs(agent) {
        let Ok(children) = std::fs::read_dir(&dir) else {
            continue;
        };
        for child in children.flatten() {
            let cg = child.path();
            if !cg.is_dir() {
                continue;
            }
            let freezer = cg.join("freezer.state");
            if freezer.exists() {
                let _ = std::fs::write(&freezer, "THAWED");
            }
            for pid in read(&cg.join("cgroup.procs"))
                .lines()
                .filter_map(|l| l.trim().parse::<u32>().ok())
            {
                sigkill(pid);
            }
            if remove {
                for _ in 0..20 {
                    if std::fs::remove_dir(&cg).is_ok() || !cg.exists() {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
        }
        if remove {
            let _ = std::fs::remove_dir(&dir);
        }
    }
}

/// Reads a file, or "" when it does not exist.
pub fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// Creates (or truncates) a file.
pub fn touch(path: &Path) {
    File::create(path).unwrap_or_else(|e| panic!("cannot create {}: {e}", path.display()));
}

/// Quotes a path for /bin/sh.
pub fn sh_quote(p: &Path) -> String {
    format!("'{}'", p.to_string_lossy().replace('\'', r"'\''"))
}
