//! A replicated group of servers: three `drover server` processes on loopback, each
//! its own process (so one can be killed), with workers given every server's URL.
//! Beside [`super::Cluster`] (one server); the same clean-up on drop.
//!
//! Over TLS, as a real group must be set up: the set has one CA (`<root>/ca`), and
//! each server gets a certificate of it for its address in its TLS directory before its
//! first start (a server of a group refuses to start without one); workers and the CLI
//! are given the CA with `--ca`. `--insecure-http` among the server arguments
//! ([`ServerSet::add_server_args`]) makes it plain HTTP throughout.

use super::*;
use drover_server::tls::{CertRole, CertificateAuthority};
use std::net::TcpListener;
use std::sync::Arc;

pub struct ServerSet {
    pub root: PathBuf,
    pub token: String,
    pub peer_token: String,
    /// `127.0.0.1:PORT` of each server, in node-id order (sorted).
    pub addrs: Vec<String>,
    /// The network namespace of each server, if not the host's.
    pub netns: Vec<Option<String>>,
    servers: Vec<Option<Child>>,
    /// How each server is started.
    modes: Vec<StartMode>,
    /// The peer list of the group as formed (the first three).
    peers: Vec<String>,
    server_args: Vec<String>,
    /// (name, process, log, data directory) of each worker, in the order added.
    workers: Vec<(String, Child, PathBuf, PathBuf)>,
    _dir: TempDir,
}

/// How a server of the set is started.
#[derive(Clone, Debug)]
pub enum StartMode {
    /// One of the group formed from `--peers` (the first three).
    Peers,
    /// `--join ADDRESS`; empty: `--join` alone (waits for `drover servers add`).
    Join(String),
    /// Neither flag: a server that joined once finds its group by itself.
    Remembered,
}

/// Loopback ports free at the moment (the OS does not hand them out again at once).
pub fn free_ports(n: usize) -> Vec<u16> {
    free_ports_on("127.0.0.1", n)
}

/// Ports free at the moment on the local address `ip`.
pub fn free_ports_on(ip: &str, n: usize) -> Vec<u16> {
    let listeners: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind((ip, 0)).expect("bind"))
        .collect();
    listeners
        .iter()
        .map(|l| l.local_addr().unwrap().port())
        .collect()
}

impl ServerSet {
    /// Three servers (not started yet): heartbeats every second and workers lost after
    /// 30 s, so a worker's self-fence (28.5 s) is far beyond an election.
    pub fn new(test: &str) -> ServerSet {
        let addrs: Vec<String> = free_ports(3)
            .into_iter()
            .map(|p| format!("127.0.0.1:{p}"))
            .collect();
        ServerSet::with_addrs(test, addrs, vec![None, None, None])
    }

    /// Three servers on the host, listening on the local address `ip` (such as the
    /// host's end of a [`super::netns::NetNs`] link, which a worker inside the
    /// namespace reaches and a cut inside it drops) rather than on loopback.
    pub fn on_ip(test: &str, ip: &str) -> ServerSet {
        let addrs: Vec<String> = free_ports_on(ip, 3)
            .into_iter()
            .map(|p| format!("{ip}:{p}"))
            .collect();
        ServerSet::with_addrs(test, addrs, vec![None, None, None])
    }

    /// Three servers at these addresses, each in the network namespace named beside
    /// its address (or the host's).
    pub fn with_addrs(test: &str, addrs: Vec<String>, netns: Vec<Option<String>>) -> ServerSet {
        let dir = TempDir::new(test);
        let mut pairs: Vec<(String, Option<String>)> = addrs.into_iter().zip(netns).collect();
        pairs.sort();
        let (addrs, netns): (Vec<String>, Vec<Option<String>>) = pairs.into_iter().unzip();
        let set = ServerSet {
            netns,
            root: dir.path().to_path_buf(),
            token: unique("token"),
            peer_token: unique("peer"),
            peers: addrs.clone(),
            addrs,
            servers: (0..3).map(|_| None).collect(),
            modes: vec![StartMode::Peers; 3],
            server_args: vec![
                "--worker-timeout".into(),
                "30s".into(),
                "--heartbeat-interval".into(),
                "1s".into(),
            ],
            workers: Vec::new(),
            _dir: dir,
        };
        let ca = CertificateAuthority::create().expect("a CA");
        ca.write(&set.ca_dir()).expect("write the CA");
        let client = Arc::new(
            drover_client::tls::client_config(ca.cert_pem(), None).expect("a TLS client config"),
        );
        for addr in &set.addrs {
            tls::trust(addr, client.clone());
        }
        set
    }

    /// More `drover server` flags for every server started from now on.
    pub fn add_server_args(&mut self, args: &[&str]) {
        self.server_args.extend(args.iter().map(|a| a.to_string()));
        if !self.tls() {
            for addr in &self.addrs {
                tls::forget(addr);
            }
        }
    }

    /// Whether the servers speak TLS (unless started with `--insecure-http`).
    pub fn tls(&self) -> bool {
        !self.server_args.iter().any(|a| a == "--insecure-http")
    }

    /// The directory of the set's CA (`ca.crt`, `ca.key`).
    pub fn ca_dir(&self) -> PathBuf {
        self.root.join("ca")
    }

    /// The CA certificate every worker and client of the set is given (`--ca`).
    pub fn ca_file(&self) -> PathBuf {
        CertificateAuthority::cert_path(&self.ca_dir())
    }

    /// `--ca FILE` while the servers speak TLS, else nothing: for commands built by hand.
    pub fn ca_args(&self) -> Vec<String> {
        if self.tls() {
            vec!["--ca".into(), self.ca_file().to_string_lossy().into_owned()]
        } else {
            Vec::new()
        }
    }

    /// The TLS configuration of a client of the set (trusting its CA only), while the
    /// servers speak TLS: for reqwest or SDK clients.
    pub fn client_tls(&self) -> Option<rustls::ClientConfig> {
        self.tls().then(|| {
            let pem = std::fs::read_to_string(self.ca_file()).expect("the set's ca.crt");
            drover_client::tls::client_config(&pem, None).expect("a TLS client configuration")
        })
    }

    /// An SDK client of every server of the set (with the cluster token and the CA).
    pub fn client(&self) -> drover_client::Client {
        let c = drover_client::Client::new(self.urls(), Some(self.token.clone()));
        match self.client_tls() {
            Some(t) => c.with_tls(t).expect("an SDK client over TLS"),
            None => c,
        }
    }

    /// Writes server `i`'s certificate (for its address) and the CA certificate into
    /// its TLS directory, unless they are there: what an admin does with `drover tls
    /// cert create server` before a server's first start.
    fn issue_certificate(&self, i: usize) {
        let dir = self.data_dir(i).join("server").join("tls");
        if dir.join("server.crt").is_file() {
            return;
        }
        let ca = CertificateAuthority::load(&self.ca_dir()).expect("the set's CA");
        let ip = self.addrs[i].rsplit_once(':').expect("IP:PORT").0;
        let mut hosts = drover_server::tls::local_hosts(None);
        hosts.push(ip.trim_matches(['[', ']']).to_string());
        ca.issue(CertRole::Server, &format!("server-{i}"), &hosts)
            .expect("a server certificate")
            .write(&dir, CertRole::Server)
            .expect("write the server certificate");
        std::fs::write(CertificateAuthority::cert_path(&dir), ca.cert_pem()).expect("ca.crt");
    }

    /// Server `i`'s `--data-dir` (the server keeps its files in `server/` under it).
    pub fn data_dir(&self, i: usize) -> PathBuf {
        self.root.join(format!("s{i}"))
    }

    /// Every server's URL, comma-separated (what `--server` takes).
    pub fn urls(&self) -> String {
        (0..self.addrs.len())
            .map(|i| self.url(i))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Server `i`'s URL: `https://IP:PORT` (`http://` with `--insecure-http`).
    pub fn url(&self, i: usize) -> String {
        let scheme = if self.tls() { "https" } else { "http" };
        format!("{scheme}://{}", self.addrs[i])
    }

    pub fn log(&self, i: usize) -> PathBuf {
        self.root.join(format!("server-{i}.log"))
    }

    /// Starts server `i` (0-based, in address order).
    pub fn start(&mut self, i: usize) {
        assert!(self.servers[i].is_none(), "server {i} runs already");
        if self.tls() {
            self.issue_certificate(i);
        }
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log(i))
            .expect("server log");
        let mut cmd = drover_command_in(self.netns[i].as_deref());
        cmd.arg("--data-dir")
            .arg(self.data_dir(i))
            .args(["--token", &self.token])
            .arg("server")
            .args(["--listen", &self.addrs[i]]);
        match &self.modes[i] {
            StartMode::Peers => cmd.args(["--peers", &self.peers.join(",")]),
            StartMode::Join(a) if a.is_empty() => cmd.arg("--join"),
            StartMode::Join(a) => cmd.args(["--join", a]),
            StartMode::Remembered => &mut cmd,
        };
        cmd.args(["--peer-token", &self.peer_token])
            .args(&self.server_args)
            .env("DROVER_LOG", "info,openraft=warn")
            .stdout(Stdio::null())
            .stderr(Stdio::from(log));
        self.servers[i] = Some(cmd.spawn().expect("start drover server"));
    }

    /// A further server on a fresh loopback port, started with `--join JOIN` (an empty
    /// `join`: `--join` alone, waiting for `drover servers add`). Returns its index.
    pub fn start_joining(&mut self, join: &str) -> usize {
        let port = free_ports(1)[0];
        self.addrs.push(format!("127.0.0.1:{port}"));
        if let Some(config) = self.addrs.first().and_then(|a| tls::trusted(a)) {
            tls::trust(&format!("127.0.0.1:{port}"), config);
        }
        self.netns.push(None);
        self.servers.push(None);
        self.modes.push(StartMode::Join(join.to_string()));
        let i = self.addrs.len() - 1;
        self.start(i);
        i
    }

    /// How server `i` starts next time.
    pub fn set_mode(&mut self, i: usize, mode: StartMode) {
        self.modes[i] = mode;
    }

    /// `kill -9` server `i`.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut c) = self.servers[i].take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Freezes server `i` (SIGSTOP): it keeps its sockets open and answers nothing.
    pub fn freeze(&self, i: usize) {
        let pid = self.servers[i].as_ref().expect("server runs").id();
        signal(pid, "-STOP");
    }

    pub fn is_running(&self, i: usize) -> bool {
        self.servers[i].is_some()
    }

    /// `/v1/health` of server `i`, if it answers.
    pub fn health(&self, i: usize) -> Option<Value> {
        // A server cut off by a partition drops the SYN: do not wait minutes for it.
        let sock: std::net::SocketAddr = self.addrs[i].parse().ok()?;
        TcpStream::connect_timeout(&sock, Duration::from_millis(500)).ok()?;
        let r = http_with(&self.addrs[i], "GET", "/v1/health", None, &[], None).ok()?;
        (r.status == 200).then(|| r.json())
    }

    /// The running servers that say they lead.
    pub fn leaders(&self) -> Vec<usize> {
        (0..self.addrs.len())
            .filter(|i| self.is_running(*i))
            .filter(|i| {
                self.health(*i)
                    .is_some_and(|h| h["leader"] == Value::Bool(true))
            })
            .collect()
    }

    /// Waits until exactly one running server leads; returns it.
    pub fn wait_leader(&self, timeout: Duration) -> usize {
        poll(
            "exactly one leader",
            timeout,
            || match self.leaders().as_slice() {
                [one] => Some(*one),
                _ => None,
            },
            || self.logs(),
        )
    }

    /// Starts a worker given every server's URL; waits until the leader lists it as
    /// connected. Returns its registered name.
    pub fn add_worker(&mut self, short: &str, args: &[&str]) -> String {
        self.add_worker_in(short, None, args)
    }

    /// [`ServerSet::add_worker`], the worker running in network namespace `netns` (or
    /// the host's): a second machine that a partition can cut off from every server.
    pub fn add_worker_in(&mut self, short: &str, netns: Option<&str>, args: &[&str]) -> String {
        let name = unique(short);
        let log = self.root.join(format!("worker-{short}.log"));
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .expect("worker log");
        let data_dir = self.root.join(format!("wdata-{short}"));
        let mut cmd = drover_command_in(netns);
        cmd.arg("--data-dir")
            .arg(&data_dir)
            .args(["--server", &self.urls(), "--token", &self.token])
            .args(self.ca_args())
            .args(["worker", "--name", &name, "--kill-grace", "1s"])
            .args(args)
            .env("DROVER_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::from(file));
        let child = cmd.spawn().expect("start drover worker");
        self.workers.push((name.clone(), child, log, data_dir));
        self.wait_worker_connected(&name, SLOW);
        name
    }

    /// `kill -9` worker `name`'s agent (its reaper then kills its tasks).
    pub fn kill_worker(&mut self, name: &str) {
        let w = self
            .workers
            .iter_mut()
            .find(|w| w.0 == name)
            .unwrap_or_else(|| panic!("no worker {name}"));
        let _ = w.1.kill();
        let _ = w.1.wait();
    }

    fn worker_entry(&self, name: &str) -> &(String, Child, PathBuf, PathBuf) {
        self.workers
            .iter()
            .find(|w| w.0 == name)
            .unwrap_or_else(|| panic!("no worker {name}"))
    }

    /// The id worker `name`'s task processes and cgroups are marked with.
    pub fn worker_agent(&self, name: &str) -> String {
        let (name, _, _, dir) = self.worker_entry(name);
        agent_id(name, dir)
    }

    /// The whole log of worker `name`.
    pub fn worker_log(&self, name: &str) -> String {
        read(&self.worker_entry(name).2)
    }

    /// Every server's whole log, one after the other.
    pub fn server_logs(&self) -> String {
        (0..self.addrs.len()).map(|i| read(&self.log(i))).collect()
    }

    /// The workers as the current leader lists them (empty while there is none).
    pub fn workers_info(&self) -> Vec<WorkerInfo> {
        let Some(leader) = self.leaders().first().copied() else {
            return Vec::new();
        };
        http_with(
            &self.addrs[leader],
            "GET",
            "/v1/workers",
            Some(&self.token),
            &[],
            None,
        )
        .ok()
        .and_then(|r| serde_json::from_slice(&r.body).ok())
        .unwrap_or_default()
    }

    /// Submits one task (TaskSpec JSON) through the first running server that takes
    /// it (a follower passes it to the leader); returns its id. Tried again with the
    /// same idempotency key, so a refusal that was applied after all does not double it.
    pub fn submit(&self, spec: &Value) -> u64 {
        let body = spec.to_string();
        let key = unique("submit");
        poll(
            "a server to take a submission",
            SLOW,
            || {
                (0..self.addrs.len())
                    .filter(|i| self.is_running(*i))
                    .find_map(|i| {
                        let r = http_with(
                            &self.addrs[i],
                            "POST",
                            "/v1/tasks",
                            Some(&self.token),
                            &[("Idempotency-Key", &key)],
                            Some(body.as_bytes()),
                        )
                        .ok()?;
                        (r.status == 201).then(|| r.json()["first"].as_u64())?
                    })
            },
            || self.logs(),
        )
    }

    /// Waits until the current leader lists worker `name` as connected and active.
    pub fn wait_worker_connected(&self, name: &str, timeout: Duration) {
        poll(
            &format!("worker {name} connected to the leader"),
            timeout,
            || {
                self.workers_info()
                    .iter()
                    .any(|w| {
                        w.name == name
                            && w.connected
                            && w.state == drover_types::WorkerState::Active
                    })
                    .then_some(())
            },
            || self.logs(),
        );
    }

    /// The registered names of the workers, in the order added.
    pub fn workers_names(&self) -> Vec<String> {
        self.workers.iter().map(|w| w.0.clone()).collect()
    }

    /// A `drover --server <all> --token T ARGS` command.
    pub fn cli_command(&self, args: &[&str]) -> Command {
        let mut c = drover_command();
        c.arg("--data-dir")
            .arg(self.root.join("cli"))
            .args(["--server", &self.urls(), "--token", &self.token])
            .args(self.ca_args())
            .args(args);
        c
    }

    pub fn cli(&self, args: &[&str]) -> CliOutput {
        run_with_timeout(self.cli_command(args), Duration::from_secs(60), || {
            self.logs()
        })
    }

    pub fn cli_ok(&self, args: &[&str]) -> CliOutput {
        let out = self.cli(args);
        assert!(
            out.status.success(),
            "drover {args:?} failed:\n{out}\n{}",
            self.logs()
        );
        out
    }

    /// GET on server `i` with the cluster token.
    pub fn get(&self, i: usize, path: &str) -> Resp {
        http(&self.addrs[i], "GET", path, Some(&self.token), None)
    }

    /// Task `id` as server `i` sees it; `None` if it does not know it or does not answer.
    pub fn task_on(&self, i: usize, id: u64) -> Option<TaskInfo> {
        let path = format!("/v1/tasks/{id}");
        let r = http_with(&self.addrs[i], "GET", &path, Some(&self.token), &[], None).ok()?;
        (r.status == 200).then(|| serde_json::from_slice(&r.body).expect("task JSON"))
    }

    /// The tails of every server's and worker's log.
    pub fn logs(&self) -> String {
        let mut s = String::new();
        for i in 0..self.addrs.len() {
            s.push_str(&format!(
                "--- server {i} ({}) log ---\n{}\n",
                self.addrs[i],
                tail(&self.log(i), 30)
            ));
        }
        for (name, _, log, _) in &self.workers {
            s.push_str(&format!("--- worker {name} log ---\n{}\n", tail(log, 15)));
        }
        s
    }
}

impl Drop for ServerSet {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "==== logs of the failed test's servers ====\n{}",
                self.logs()
            );
        }
        for (_, c, _, _) in &mut self.workers {
            let _ = c.kill();
            let _ = c.wait();
        }
        let agents: Vec<String> = self
            .workers
            .iter()
            .map(|(name, _, _, dir)| agent_id(name, dir))
            .collect();
        for agent in &agents {
            clean_agent_cgroups(agent, false);
        }
        for i in 0..self.addrs.len() {
            self.kill(i);
            tls::forget(&self.addrs[i]);
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
