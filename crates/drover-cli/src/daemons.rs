//! The long-running commands: `up`, `server`, `worker`.
//!
//! Their settings are layered: defaults < configuration file < environment < flags
//! (see [`crate::config`]).

use crate::Global;
use crate::config::{
    Layers, Printer, parse_bool, parse_count, parse_cpu_amount, parse_duration, parse_listen,
    parse_size, show_count, show_cpus, show_duration, show_size,
};
use crate::jobfile::parse_pairs;
use anyhow::{Context, Result, anyhow, bail};
use clap::Args;
use drover_client::discovery;
use drover_server::auth::TokenLimits;
use drover_server::tls::{CertRole, CertificateAuthority, TlsPaths};
use drover_server::{ServerConfig, TlsMode};
use drover_worker::WorkerConfig;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::process::{Child, Stdio};
use std::sync::Arc;
use std::time::Duration;

/// The configuration file, shared by `server`, `worker` and `up`.
#[derive(Debug, Args)]
pub struct ConfigArgs {
    /// Configuration file (TOML: [server], [worker], [up]; see the README)
    /// [default: config.toml in the data directory, when it exists]
    #[arg(long, value_name = "FILE", env = "DROVER_CONFIG")]
    config: Option<PathBuf>,
    /// Print the effective configuration (defaults < file < environment < flags) as TOML,
    /// and exit
    #[arg(long)]
    print_config: bool,
}

impl ConfigArgs {
    fn layers(&self, g: &Global) -> Result<Layers> {
        Layers::load(self.config.as_deref(), &g.data_dir())
    }
}

#[derive(Debug, Args)]
pub struct ServerArgs {
    /// Address to listen on: HOST:PORT, or a port alone for loopback on that port. Loopback
    /// by default: other machines need it said (e.g. 0.0.0.0:7070) [default: 127.0.0.1:7070]
    #[arg(long, value_name = "ADDR")]
    listen: Option<String>,
    /// A worker silent for this long is declared lost and its tasks re-placed. Each worker
    /// stops its own tasks before that, so it must exceed a worker's kill grace + 0.5s + 3
    /// heartbeat intervals, or the worker is refused [default: 30s]
    #[arg(long, value_name = "DURATION")]
    worker_timeout: Option<String>,
    /// How often workers heartbeat (each beat is acknowledged) and the server pings them
    /// [default: 1s]
    #[arg(long, value_name = "DURATION")]
    heartbeat_interval: Option<String>,
    /// This server's id in the replicated group [default: 1; with --peers, its place in
    /// the sorted list, whatever this says]
    #[arg(long, value_name = "N")]
    node_id: Option<String>,
    /// Every server of a replicated group, this one included, comma-separated
    /// (HOST:PORT each, as each listens); 3 or 5 servers. Not given: a server alone
    #[arg(long, value_name = "ADDR,ADDR,ADDR", value_delimiter = ',')]
    peers: Vec<String>,
    /// The servers' credential among themselves, the same on every server of the group
    /// and different from the cluster token [default: the peer_token file of the data
    /// directory]
    #[arg(long, env = "DROVER_PEER_TOKEN", hide_env_values = true)]
    peer_token: Option<String>,
    /// Join a running group instead of forming one: ADDR is any member (HOST:PORT); the
    /// leader gives this server its node id and makes it a voter once it has caught up.
    /// Without ADDR, wait until an admin runs `drover servers add` for this server. Needs
    /// the group's --token and --peer-token. Remembered: a restart rejoins by itself
    #[arg(long, value_name = "ADDR", num_args = 0..=1, default_missing_value = "", conflicts_with = "peers")]
    join: Option<String>,
    /// Serve plain HTTP instead of TLS: tokens, task specs and output then cross the
    /// network unencrypted (a warning is printed). Only for a trusted network or a proxy
    /// that terminates TLS
    #[arg(long)]
    insecure_http: bool,
    /// Directory of the server's TLS files: ca.crt, server.crt, server.key (see `drover
    /// tls`). Without it, tls/ in the server's data directory, where a server alone makes
    /// a CA and its certificate on first start; a server of a group (--peers, --join)
    /// refuses to start without them [default: tls/ in the server's data directory]
    #[arg(long, value_name = "DIR", conflicts_with = "insecure_http")]
    tls_dir: Option<PathBuf>,
    /// Largest request body accepted, e.g. 256M (a job of 1,000,000 small tasks is ~100M of
    /// JSON) [default: 256M]
    #[arg(long, value_name = "SIZE")]
    max_body: Option<String>,
    /// How many recent events the server keeps for `drover events --since` and
    /// reconnecting clients [default: 100000]
    #[arg(long, value_name = "N")]
    events_retained: Option<String>,
    /// Take a snapshot of the state after this many log entries since the last one; the
    /// log behind it is then purged, and a restart re-applies at most this many entries
    /// [default: 20000]
    #[arg(long, value_name = "N")]
    snapshot_every: Option<String>,
    /// Log entries kept behind a snapshot, for followers slightly behind (one further
    /// behind is sent the snapshot) [default: 1000]
    #[arg(long, value_name = "N")]
    keep_after_snapshot: Option<String>,
    /// Finished jobs (every task final) are retired this long after their last task
    /// ended: their tasks, results, output and keys are removed. At least 1s
    /// [default: 7d]
    #[arg(long, value_name = "DURATION")]
    retain_for: Option<String>,
    /// At most this many finished tasks are kept; beyond it the jobs that finished first
    /// are retired first. At least 1 [default: 1000000]
    #[arg(long, value_name = "N")]
    retain_max: Option<String>,
    /// Requests per second each client token may send (the cluster token is not
    /// limited); over it, 429 with Retry-After. 0: no limit [default: 200]
    #[arg(long, value_name = "N")]
    token_rate: Option<String>,
    /// Requests a client token may send at once before --token-rate applies
    /// [default: 400]
    #[arg(long, value_name = "N")]
    token_burst: Option<String>,
    /// Requests (open event streams included) each client token may have in flight;
    /// 0: no limit [default: 64]
    #[arg(long, value_name = "N")]
    token_concurrency: Option<String>,
    #[command(flatten)]
    input_limits: crate::input_limits::InputLimitArgs,
    #[command(flatten)]
    object_store: crate::object_store_args::ObjectStoreArgs,
    #[command(flatten)]
    config: ConfigArgs,
    #[command(flatten)]
    autoscale: crate::autoscale::AutoscaleArgs,
}

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct WorkerArgs {
    #[command(subcommand)]
    pub action: Option<crate::worker_identity::WorkerAction>,
    /// A join token (`drover worker token create`), used on the first connection only:
    /// the server gives this worker its own credential, kept in its data directory and
    /// used from then on
    #[arg(
        long,
        env = "DROVER_JOIN_TOKEN",
        value_name = "TOKEN",
        hide_env_values = true
    )]
    join_token: Option<String>,
    /// Worker name, unique in the cluster: a worker restarted under the same name is the
    /// same worker [default: the host name]
    #[arg(long)]
    name: Option<String>,
    /// CPUs to offer, e.g. 4 or 0.5 [default: all of this host's]
    #[arg(long)]
    cpus: Option<String>,
    /// Memory to offer, e.g. 16G [default: all of this host's]
    #[arg(long)]
    memory: Option<String>,
    /// Scratch disk to offer, e.g. 100G [default: the size of the data directory's file system]
    #[arg(long)]
    disk: Option<String>,
    /// GPUs to offer, as indices 0..N-1 [default: those found by nvidia-smi, else
    /// /dev/nvidia*, else none]
    #[arg(long, value_name = "N", conflicts_with = "gpu_ids")]
    gpus: Option<String>,
    /// The GPU indices to offer, e.g. 0,1,2,3: each task asking for GPUs gets its own
    /// (CUDA_VISIBLE_DEVICES and the like name them) [default: as for --gpus]
    #[arg(long, value_name = "LIST")]
    gpu_ids: Option<String>,
    /// A custom resource, NAME=COUNT (repeatable)
    #[arg(long = "resource", value_name = "NAME=COUNT")]
    resources: Vec<String>,
    /// A label, KEY=VALUE (repeatable)
    #[arg(long = "label", value_name = "KEY=VALUE")]
    labels: Vec<String>,
    /// Data keys this worker holds, for locality (repeatable), besides the files of
    /// its data-keys directory
    #[arg(long = "data-key")]
    data_keys: Vec<String>,
    /// The directory whose files are this worker's data keys (key = path relative to
    /// it); tasks get it as DROVER_DATA_DIR [default: <data-dir>/data]
    #[arg(long, value_name = "PATH")]
    data_keys_dir: Option<PathBuf>,
    /// An execution driver to enable besides `process` (always on): `docker`
    /// (repeatable). Tasks naming a driver only go to workers that have it
    #[arg(long = "driver", value_name = "NAME")]
    drivers: Vec<String>,
    /// A directory of driver plugins (executables speaking docs/driver-plugins.md):
    /// each one found is started and enabled under the driver name it gives
    #[arg(long, value_name = "DIR")]
    plugin_dir: Option<PathBuf>,
    /// Grace between SIGTERM and SIGKILL when a task is stopped [default: 5s]
    #[arg(long, value_name = "DURATION")]
    kill_grace: Option<String>,
    /// Do not use cgroups even where they are writable
    #[arg(long)]
    no_cgroups: bool,
    /// Largest checkpoint directory (bytes of files) this worker sends for a task; a
    /// larger one is not sent and the task resumes from its previous one [default: 256M]
    #[arg(long, value_name = "SIZE")]
    max_checkpoint: Option<String>,
    /// This worker's TLS certificate (`drover tls cert create worker`), presented to
    /// the server; needs --tls-key and the cluster's CA (--ca)
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The key of --tls-cert
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Serve this worker's Prometheus metrics at http://ADDR/metrics (e.g. 127.0.0.1:9101)
    #[arg(long, value_name = "ADDR")]
    metrics: Option<String>,
    #[command(flatten)]
    confine: ConfineArgs,
    #[command(flatten)]
    config: ConfigArgs,
}

/// How a worker confines its tasks (`drover worker` and `drover up`).
#[derive(Debug, Args)]
pub struct ConfineArgs {
    /// Run tasks as this user: NAME, UID, NAME:GROUP or UID:GID (switching needs the
    /// worker to run as root; `root` runs them as root, with a warning) [default: nobody
    /// when the worker runs as root, else the worker's own user]
    #[arg(long, value_name = "USER")]
    task_user: Option<String>,
    /// A host directory tasks may name as their working directory, with everything
    /// below it (repeatable); any other absolute `workdir` is refused [default: none]
    #[arg(long = "allow-path", value_name = "DIR")]
    allow_paths: Vec<PathBuf>,
    /// Processes and threads one task may run at once (cgroup pids; `max` for no
    /// limit of its own); over it the task ends as too_many_processes [default: 4096]
    #[arg(long, value_name = "N")]
    task_pids_max: Option<String>,
    /// Do not cap tasks at their cpus (cgroup cpu quota): cpus then only count for
    /// placement, and a task may use every idle core
    #[arg(long)]
    no_cpu_quota: bool,
}

#[derive(Debug, Args)]
pub struct ReaperArgs {
    /// The worker's data directory
    #[arg(long)]
    worker_dir: PathBuf,
    /// The worker's name
    #[arg(long)]
    name: String,
    /// The worker runs without cgroups
    #[arg(long)]
    no_cgroups: bool,
}

#[derive(Debug, Args)]
pub struct UpArgs {
    /// How many local workers to start; the CPUs and memory are split exactly between them
    /// [default: 1]
    #[arg(long, value_name = "N")]
    workers: Option<String>,
    /// CPUs for the local workers in all, e.g. 2 or 1.5 [default: all of this host's]
    #[arg(long)]
    cpus: Option<String>,
    /// Memory for the local workers in all, e.g. 4G [default: all of this host's]
    #[arg(long)]
    memory: Option<String>,
    /// How many servers: 1 (in this process) or 3 or 5, each its own `drover server`
    /// process on consecutive loopback ports from --listen's, a replicated group (so
    /// one can be killed) [default: 1]
    #[arg(long, value_name = "N", default_value_t = 1)]
    servers: u32,
    #[command(flatten)]
    confine: ConfineArgs,
    #[command(flatten)]
    server: ServerArgs,
}

/// The servers `drover up` runs: one in this process, or a group of child processes.
enum UpServers {
    InProcess(drover_server::RunningServer),
    Group(Vec<Child>),
}

impl UpServers {
    async fn shutdown(self) {
        match self {
            UpServers::InProcess(running) => running.shutdown().await,
            UpServers::Group(children) => {
                // SIGTERM: each server stops cleanly (SIGKILL after 10 s).
                for c in &children {
                    let _ = std::process::Command::new("kill")
                        .args(["-TERM", &c.id().to_string()])
                        .status();
                }
                let deadline = std::time::Instant::now() + Duration::from_secs(10);
                for mut c in children {
                    while matches!(c.try_wait(), Ok(None)) {
                        if std::time::Instant::now() > deadline {
                            let _ = c.kill();
                        }
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
            }
        }
    }
}

/// Starts `n` `drover server` processes on consecutive loopback ports forming one
/// group, sharing the token of `<data>/server` (created if need be) and a peer token
/// beside it; waits for a leader. Returns the servers' URLs, comma-separated (also
/// written to `<data>/server/endpoint`, so the CLI here finds the group by itself).
async fn start_group(
    g: &Global,
    settings: &ServerSettings,
    n: u32,
    tls: bool,
) -> Result<(String, String, Vec<Child>)> {
    if n != 3 && n != 5 {
        bail!("--servers takes 1, 3 or 5 (a group needs a majority to survive one loss)");
    }
    let dir = discovery::server_dir(&g.data_dir());
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let token = match &g.token {
        Some(t) => t.clone(),
        None => drover_server::ClusterToken::load_or_create(&dir)?
            .as_str()
            .to_string(),
    };
    let peer_token = drover_server::ClusterToken::load_or_create_at(
        &drover_server::ClusterToken::peer_path(&dir),
    )?
    .as_str()
    .to_string();
    let host = settings.listen.ip();
    let ports: Vec<u16> = if settings.listen.port() == 0 {
        let ls: Vec<std::net::TcpListener> = (0..n)
            .map(|_| std::net::TcpListener::bind((host, 0)))
            .collect::<std::io::Result<_>>()?;
        ls.iter()
            .map(|l| l.local_addr().map(|a| a.port()))
            .collect::<std::io::Result<_>>()?
    } else {
        (0..n as u16).map(|i| settings.listen.port() + i).collect()
    };
    let addrs: Vec<String> = ports
        .iter()
        .map(|p| SocketAddr::new(host, *p).to_string())
        .collect();
    // One CA in `<data>/server/tls` (where the CLI looks for it), and a server
    // certificate for each server in its own data directory, made once.
    let group_tls = if tls {
        let paths = TlsPaths::in_data_dir(&dir);
        if !CertificateAuthority::key_path(&paths.dir).is_file() {
            CertificateAuthority::create()?.write(&paths.dir)?;
        }
        let ca = CertificateAuthority::load(&paths.dir)?;
        for i in 0..n {
            let own =
                TlsPaths::in_data_dir(&discovery::server_dir(&dir.join(format!("s{}", i + 1))));
            if !own.exist() {
                ca.issue(
                    CertRole::Server,
                    &format!("drover-server-{}", i + 1),
                    &drover_server::tls::local_hosts(Some(host)),
                )?
                .write(&own.dir, CertRole::Server)?;
                std::fs::write(own.ca(), ca.cert_pem())?;
            }
        }
        Some(drover_client::tls::client_config(ca.cert_pem(), None)?)
    } else {
        None
    };
    let exe = std::env::current_exe().context("cannot find the drover executable")?;
    let mut children = Vec::new();
    for (i, addr) in addrs.iter().enumerate() {
        let log = std::fs::File::create(dir.join(format!("server-{}.log", i + 1)))?;
        let mut cmd = std::process::Command::new(&exe);
        cmd.arg("--data-dir")
            .arg(dir.join(format!("s{}", i + 1)))
            .arg("server")
            .args(["--listen", addr, "--peers", &addrs.join(",")])
            .arg("--worker-timeout")
            .arg(format!("{}ms", settings.worker_timeout.as_millis()))
            .arg("--heartbeat-interval")
            .arg(format!("{}ms", settings.heartbeat_interval.as_millis()))
            .arg("--snapshot-every")
            .arg(settings.snapshot_every.to_string())
            .arg("--keep-after-snapshot")
            .arg(settings.keep_after_snapshot.to_string())
            .args((!tls).then_some("--insecure-http"))
            .env("DROVER_TOKEN", &token)
            .env("DROVER_PEER_TOKEN", &peer_token)
            .env_remove("DROVER_SERVER")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(log));
        children.push(cmd.spawn().context("cannot start a drover server")?);
    }
    let scheme = if tls { "https" } else { "http" };
    let urls: Vec<String> = addrs.iter().map(|a| format!("{scheme}://{a}")).collect();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let mut leader = false;
        for u in &urls {
            let mut c = drover_client::Client::new(u.clone(), None);
            if let Some(t) = &group_tls {
                c = c.with_tls(t.clone())?;
            }
            if c.health().await.is_ok_and(|h| h.leader) {
                leader = true;
            }
        }
        if leader {
            break;
        }
        if std::time::Instant::now() > deadline {
            for c in &mut children {
                let _ = c.kill();
                let _ = c.wait();
            }
            bail!(
                "the {n} servers elected no leader within 30s; see their logs in {}",
                dir.display()
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let list = urls.join(",");
    std::fs::write(dir.join("endpoint"), format!("{list}\n"))?;
    Ok((list, token, children))
}

/// The server's settings once layered.
#[derive(Debug)]
struct ServerSettings {
    listen: SocketAddr,
    worker_timeout: Duration,
    heartbeat_interval: Duration,
    node_id: u64,
    max_body: u64,
    peers: Vec<String>,
    peer_token: Option<String>,
    join: Option<String>,
    events_retained: u64,
    snapshot_every: u64,
    keep_after_snapshot: u64,
    retain_for: Duration,
    retain_max: u64,
    token_limits: TokenLimits,
    input_limits: drover_server::input_limits::InputLimits,
    object_store: Option<drover_server::blob::ObjectStoreConfig>,
}

fn server_settings(l: &Layers, a: &ServerArgs) -> Result<ServerSettings> {
    let listen = l.value(
        a.listen.as_deref(),
        "--listen",
        "server",
        "listen",
        // A port alone: the default host, loopback.
        Some("7070"),
        parse_listen,
    )?;
    let worker_timeout = l.value(
        a.worker_timeout.as_deref(),
        "--worker-timeout",
        "server",
        "worker_timeout",
        Some("30s"),
        parse_duration,
    )?;
    let heartbeat_interval = l.value(
        a.heartbeat_interval.as_deref(),
        "--heartbeat-interval",
        "server",
        "heartbeat_interval",
        Some("1s"),
        parse_duration,
    )?;
    let node_id = l.value(
        a.node_id.as_deref(),
        "--node-id",
        "server",
        "node_id",
        Some("1"),
        parse_count,
    )?;
    let max_body = l.value(
        a.max_body.as_deref(),
        "--max-body",
        "server",
        "max_body",
        Some("256M"),
        |t| {
            let n = parse_size(t)?;
            usize::try_from(n).context("too large")?;
            Ok(n)
        },
    )?;
    let peers = if a.peers.is_empty() {
        l.file_list("server", "peers").unwrap_or_default()
    } else {
        a.peers.clone()
    };
    let peers = peers
        .iter()
        .map(|p| {
            parse_listen(p.trim())
                .map(|a| a.to_string())
                .with_context(|| format!("server.peers / --peers: {p:?}"))
        })
        .collect::<Result<Vec<_>>>()?;
    let events_retained = l.value(
        a.events_retained.as_deref(),
        "--events-retained",
        "server",
        "events_retained",
        Some("100000"),
        |t| {
            let n = parse_count(t)?;
            anyhow::ensure!(n >= 1, "must be at least 1");
            Ok(n)
        },
    )?;
    let snapshot_every = l.value(
        a.snapshot_every.as_deref(),
        "--snapshot-every",
        "server",
        "snapshot_every",
        Some("20000"),
        |t| {
            let n = parse_count(t)?;
            anyhow::ensure!(n >= 1, "must be at least 1");
            Ok(n)
        },
    )?;
    let retain_for = l.value(
        a.retain_for.as_deref(),
        "--retain-for",
        "server",
        "retain_for",
        Some("7d"),
        |t| {
            let d = parse_duration(t)?;
            // A client that waited for a task must still find it to read its result.
            anyhow::ensure!(d >= Duration::from_secs(1), "must be at least 1s");
            Ok(d)
        },
    )?;
    let retain_max = l.value(
        a.retain_max.as_deref(),
        "--retain-max",
        "server",
        "retain_max",
        Some("1000000"),
        |t| {
            let n = parse_count(t)?;
            anyhow::ensure!(n >= 1, "must be at least 1");
            Ok(n)
        },
    )?;
    let keep_after_snapshot = l.value(
        a.keep_after_snapshot.as_deref(),
        "--keep-after-snapshot",
        "server",
        "keep_after_snapshot",
        Some("1000"),
        parse_count,
    )?;
    let limit = |flag: Option<&str>, name: &str, key: &str, default: &str| {
        l.value(flag, name, "server", key, Some(default), |t| {
            let n: u64 = parse_count(t)?;
            u32::try_from(n).context("too large")
        })
        .map(|v| v.expect("has a default"))
    };
    let token_limits = TokenLimits {
        rate_per_sec: limit(a.token_rate.as_deref(), "--token-rate", "token_rate", "200")?,
        burst: limit(
            a.token_burst.as_deref(),
            "--token-burst",
            "token_burst",
            "400",
        )?,
        concurrency: limit(
            a.token_concurrency.as_deref(),
            "--token-concurrency",
            "token_concurrency",
            "64",
        )?,
    };
    let settings = ServerSettings {
        token_limits,
        input_limits: crate::input_limits::settings(l, &a.input_limits)?,
        object_store: crate::object_store_args::settings(l, &a.object_store)?,
        retain_for: retain_for.expect("has a default"),
        retain_max: retain_max.expect("has a default"),
        peers,
        peer_token: a.peer_token.clone(),
        join: match a.join.as_deref().map(str::trim) {
            None => None,
            Some("") => Some(String::new()),
            Some(addr) => Some(
                parse_listen(addr.trim_start_matches("http://").trim_end_matches('/'))
                    .map(|a| a.to_string())
                    .with_context(|| format!("--join: {addr:?}"))?,
            ),
        },
        listen: listen.expect("has a default"),
        worker_timeout: worker_timeout.expect("has a default"),
        heartbeat_interval: heartbeat_interval.expect("has a default"),
        node_id: node_id.expect("has a default"),
        max_body: max_body.expect("has a default"),
        events_retained: events_retained.expect("has a default"),
        snapshot_every: snapshot_every.expect("has a default"),
        keep_after_snapshot: keep_after_snapshot.expect("has a default"),
    };
    // The worker timeout must leave room for the self-fence (ARCHITECTURE.md,
    // "Liveness and the self-fence"): refuse it here, naming both settings.
    let mut timing = ServerConfig::new(PathBuf::new());
    timing.worker_lost_after = settings.worker_timeout;
    timing.heartbeat_interval = settings.heartbeat_interval;
    timing
        .validate_timing()
        .context("--worker-timeout (server.worker_timeout) and --heartbeat-interval (server.heartbeat_interval)")?;
    Ok(settings)
}

fn print_server(p: &mut Printer, s: &ServerSettings) {
    let t = p.section("server");
    t.insert("listen".into(), toml::Value::String(s.listen.to_string()));
    t.insert("worker_timeout".into(), show_duration(s.worker_timeout));
    t.insert(
        "heartbeat_interval".into(),
        show_duration(s.heartbeat_interval),
    );
    t.insert("node_id".into(), show_count(s.node_id));
    t.insert("max_body".into(), show_size(s.max_body));
    if !s.peers.is_empty() {
        let a = s
            .peers
            .iter()
            .map(|p| toml::Value::String(p.clone()))
            .collect();
        t.insert("peers".into(), toml::Value::Array(a));
    }
    t.insert("events_retained".into(), show_count(s.events_retained));
    t.insert("snapshot_every".into(), show_count(s.snapshot_every));
    t.insert(
        "keep_after_snapshot".into(),
        show_count(s.keep_after_snapshot),
    );
    t.insert("retain_for".into(), show_duration(s.retain_for));
    t.insert("retain_max".into(), show_count(s.retain_max));
    let l = s.token_limits;
    t.insert("token_rate".into(), show_count(l.rate_per_sec.into()));
    t.insert("token_burst".into(), show_count(l.burst.into()));
    t.insert("token_concurrency".into(), show_count(l.concurrency.into()));
    crate::input_limits::print(p, &s.input_limits);
    crate::object_store_args::print(p, s.object_store.as_ref());
}

fn server_config(g: &Global, s: &ServerSettings, a: &ServerArgs) -> ServerConfig {
    let mut c = ServerConfig::new(discovery::server_dir(&g.data_dir()));
    if a.insecure_http {
        c.tls = TlsMode::Insecure;
    } else if let Some(dir) = &a.tls_dir {
        c.tls = TlsMode::Required(TlsPaths { dir: dir.clone() });
    }
    c.listen = s.listen;
    c.node_id = s.node_id;
    c.worker_lost_after = s.worker_timeout;
    c.heartbeat_interval = s.heartbeat_interval;
    c.token = g.token.clone();
    c.max_body_bytes = usize::try_from(s.max_body).unwrap_or(usize::MAX);
    c.peers = s.peers.clone();
    c.peer_token = s.peer_token.clone();
    c.join = s.join.clone();
    c.events_retained = usize::try_from(s.events_retained).unwrap_or(usize::MAX);
    c.snapshot_every = s.snapshot_every;
    c.keep_after_snapshot = s.keep_after_snapshot;
    c.retention = drover_server::retention::Retention {
        keep_for: s.retain_for,
        keep_max: s.retain_max,
    };
    c.token_limits = s.token_limits;
    c.input_limits = s.input_limits.clone();
    c.object_store = s.object_store.clone();
    c
}

pub(crate) fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "worker".into())
}

/// A worker's settings once layered (the server's URL and the token aside).
#[derive(Debug)]
struct WorkerSettings {
    name: String,
    /// From the file (`--server` and `DROVER_SERVER` are global flags, above it).
    server: Option<String>,
    cpu_milli: Option<u32>,
    memory_bytes: Option<u64>,
    disk_bytes: Option<u64>,
    /// `None`: found on the host when the worker starts.
    gpu_ids: Option<Vec<u32>>,
    resources: BTreeMap<String, u64>,
    labels: BTreeMap<String, String>,
    data_keys: Vec<String>,
    /// The data-keys directory, if not `<data_dir>/data`.
    data_keys_dir: Option<PathBuf>,
    /// Drivers besides `process`.
    drivers: Vec<String>,
    /// Where driver plugins are found, if anywhere.
    plugin_dir: Option<PathBuf>,
    kill_grace: Duration,
    cgroups: bool,
    metrics: Option<std::net::SocketAddr>,
    confine: ConfineSettings,
    max_checkpoint_bytes: u64,
}

/// A worker's task confinement once layered.
#[derive(Debug, Default)]
struct ConfineSettings {
    task_user: Option<String>,
    allow_paths: Vec<PathBuf>,
    /// `None`: no limit of its own (`max`).
    pids_max: Option<u64>,
    cpu_quota: bool,
}

fn confine_settings(l: &Layers, a: &ConfineArgs) -> Result<ConfineSettings> {
    let text = |t: &str| Ok(t.to_string());
    let allow_paths = if a.allow_paths.is_empty() {
        l.file_list("worker", "allow_paths")
            .unwrap_or_default()
            .into_iter()
            .map(PathBuf::from)
            .collect()
    } else {
        a.allow_paths.clone()
    };
    for p in &allow_paths {
        if !p.is_absolute() {
            bail!("--allow-path {}: give an absolute path", p.display());
        }
        if !p.is_dir() {
            bail!("--allow-path {}: no such directory", p.display());
        }
    }
    let default_pids = drover_exec::DEFAULT_PIDS_LIMIT.to_string();
    let pids_max = l
        .value(
            a.task_pids_max.as_deref(),
            "--task-pids-max",
            "worker",
            "task_pids_max",
            Some(&default_pids),
            |t: &str| {
                if t == "max" {
                    return Ok(None);
                }
                let n: u64 = parse_count(t)?;
                if n == 0 {
                    bail!("at least 1 (or max)");
                }
                Ok(Some(n))
            },
        )?
        .unwrap_or(Some(drover_exec::DEFAULT_PIDS_LIMIT));
    Ok(ConfineSettings {
        task_user: l.value(
            a.task_user.as_deref(),
            "--task-user",
            "worker",
            "task_user",
            None,
            text,
        )?,
        allow_paths,
        pids_max,
        cpu_quota: l
            .value(
                a.no_cpu_quota.then_some("false"),
                "--no-cpu-quota",
                "worker",
                "task_cpu_quota",
                Some("true"),
                parse_bool,
            )?
            .unwrap_or(true),
    })
}

impl ConfineSettings {
    fn apply(&self, c: &mut WorkerConfig) {
        c.task_user = self.task_user.clone();
        c.allowed_paths = self.allow_paths.clone();
        c.pids_limit = self.pids_max;
        c.cpu_quota = self.cpu_quota;
    }
}

fn worker_settings(l: &Layers, a: &WorkerArgs) -> Result<WorkerSettings> {
    let text = |t: &str| Ok(t.to_string());
    let name = l
        .value(a.name.as_deref(), "--name", "worker", "name", None, text)?
        .unwrap_or_else(hostname);
    if name.trim().is_empty() {
        bail!("a worker's name cannot be empty");
    }
    let resources = if a.resources.is_empty() {
        l.file_map("worker", "resources").unwrap_or_default()
    } else {
        parse_pairs(&a.resources, "--resource")?
    }
    .into_iter()
    .map(|(k, v)| {
        let n = parse_count::<u64>(&v).with_context(|| format!("resource {k}"))?;
        Ok((k, n))
    })
    .collect::<Result<_>>()?;
    let labels = if a.labels.is_empty() {
        l.file_map("worker", "labels").unwrap_or_default()
    } else {
        parse_pairs(&a.labels, "--label")?
    };
    let data_keys = if a.data_keys.is_empty() {
        l.file_list("worker", "data_keys").unwrap_or_default()
    } else {
        a.data_keys.clone()
    };
    let drivers = if a.drivers.is_empty() {
        l.file_list("worker", "drivers").unwrap_or_default()
    } else {
        a.drivers.clone()
    };
    for d in &drivers {
        if d != drover_types::PROCESS_DRIVER && d != drover_types::DOCKER_DRIVER {
            anyhow::bail!(
                "--driver {d:?}: this worker knows the drivers process and docker (others come from --plugin-dir)"
            );
        }
    }
    let plugin_dir = l.value(
        a.plugin_dir.as_ref().and_then(|p| p.to_str()),
        "--plugin-dir",
        "worker",
        "plugin_dir",
        None,
        |t: &str| {
            let p = PathBuf::from(t);
            if !p.is_dir() {
                bail!("no such directory");
            }
            Ok(p)
        },
    )?;
    Ok(WorkerSettings {
        name,
        server: l.value(None, "--server", "worker", "server", None, text)?,
        cpu_milli: l.value(
            a.cpus.as_deref(),
            "--cpus",
            "worker",
            "cpus",
            None,
            parse_cpu_amount,
        )?,
        memory_bytes: l.value(
            a.memory.as_deref(),
            "--memory",
            "worker",
            "memory",
            None,
            parse_size,
        )?,
        disk_bytes: l.value(
            a.disk.as_deref(),
            "--disk",
            "worker",
            "disk",
            None,
            parse_size,
        )?,
        gpu_ids: gpu_ids(l, a)?,
        resources,
        labels,
        data_keys,
        data_keys_dir: a.data_keys_dir.clone(),
        drivers,
        plugin_dir,
        kill_grace: l
            .value(
                a.kill_grace.as_deref(),
                "--kill-grace",
                "worker",
                "kill_grace",
                Some("5s"),
                parse_duration,
            )?
            .unwrap_or(Duration::from_secs(5)),
        max_checkpoint_bytes: l
            .value(
                a.max_checkpoint.as_deref(),
                "--max-checkpoint",
                "worker",
                "max_checkpoint",
                Some("256M"),
                parse_size,
            )?
            .unwrap_or(256 << 20),
        cgroups: l
            .value(
                a.no_cgroups.then_some("false"),
                "--no-cgroups",
                "worker",
                "cgroups",
                Some("true"),
                parse_bool,
            )?
            .unwrap_or(true),
        metrics: l.value(
            a.metrics.as_deref(),
            "--metrics",
            "worker",
            "metrics",
            None,
            |t: &str| {
                t.parse::<std::net::SocketAddr>().map_err(|e| {
                    anyhow::anyhow!("{t:?} is not an address like 127.0.0.1:9101: {e}")
                })
            },
        )?,
        confine: confine_settings(l, &a.confine)?,
    })
}

/// `--gpu-ids` (or `gpu_ids` in the file), else `--gpus N` as 0..N-1, else `None`:
/// found on the host.
fn gpu_ids(l: &Layers, a: &WorkerArgs) -> Result<Option<Vec<u32>>> {
    let listed = l.value(
        a.gpu_ids.as_deref(),
        "--gpu-ids",
        "worker",
        "gpu_ids",
        None,
        |t: &str| drover_worker::gpus::parse_gpu_ids(t).map_err(anyhow::Error::msg),
    )?;
    let count: Option<u32> = l.value(
        a.gpus.as_deref(),
        "--gpus",
        "worker",
        "gpus",
        None,
        parse_count,
    )?;
    match (listed, count) {
        (Some(ids), Some(n)) if ids.len() != n as usize => bail!(
            "--gpus {n} and --gpu-ids with {} indices disagree: give one of them",
            ids.len()
        ),
        (Some(ids), _) => Ok(Some(ids)),
        (None, Some(n)) => Ok(Some((0..n).collect())),
        (None, None) => Ok(None),
    }
}

fn print_worker(p: &mut Printer, s: &WorkerSettings, server: Option<&str>) {
    let t = p.section("worker");
    let text = |v: &str| toml::Value::String(v.to_string());
    t.insert("name".into(), text(&s.name));
    if let Some(url) = server {
        t.insert("server".into(), text(url));
    }
    if let Some(c) = s.cpu_milli {
        t.insert("cpus".into(), show_cpus(c));
    }
    if let Some(m) = s.memory_bytes {
        t.insert("memory".into(), show_size(m));
    }
    if let Some(d) = s.disk_bytes {
        t.insert("disk".into(), show_size(d));
    }
    if let Some(ids) = &s.gpu_ids {
        let list: Vec<String> = ids.iter().map(|i| i.to_string()).collect();
        t.insert("gpu_ids".into(), text(&list.join(",")));
    }
    if !s.resources.is_empty() {
        let m = s
            .resources
            .iter()
            .map(|(k, v)| (k.clone(), show_count(*v)))
            .collect();
        t.insert("resources".into(), toml::Value::Table(m));
    }
    if !s.labels.is_empty() {
        let m = s.labels.iter().map(|(k, v)| (k.clone(), text(v))).collect();
        t.insert("labels".into(), toml::Value::Table(m));
    }
    if !s.data_keys.is_empty() {
        let a = s.data_keys.iter().map(|k| text(k)).collect();
        t.insert("data_keys".into(), toml::Value::Array(a));
    }
    if !s.drivers.is_empty() {
        let a = s.drivers.iter().map(|k| text(k)).collect();
        t.insert("drivers".into(), toml::Value::Array(a));
    }
    if let Some(p) = &s.plugin_dir {
        t.insert("plugin_dir".into(), text(&p.display().to_string()));
    }
    t.insert("kill_grace".into(), show_duration(s.kill_grace));
    t.insert("max_checkpoint".into(), show_size(s.max_checkpoint_bytes));
    t.insert("cgroups".into(), toml::Value::Boolean(s.cgroups));
    if let Some(m) = s.metrics {
        t.insert("metrics".into(), text(&m.to_string()));
    }
    if let Some(u) = &s.confine.task_user {
        t.insert("task_user".into(), text(u));
    }
    if !s.confine.allow_paths.is_empty() {
        let a = s
            .confine
            .allow_paths
            .iter()
            .map(|p| text(&p.display().to_string()))
            .collect();
        t.insert("allow_paths".into(), toml::Value::Array(a));
    }
    // No limit (`max`) has no file form: left out.
    if let Some(n) = s.confine.pids_max {
        t.insert("task_pids_max".into(), show_count(n));
    }
    t.insert(
        "task_cpu_quota".into(),
        toml::Value::Boolean(s.confine.cpu_quota),
    );
}

/// A join token for a local worker of `drover up`, unless it holds a credential the
/// cluster knows. A credential the cluster does not know (the server's data was wiped)
/// is removed: the worker joins afresh.
async fn local_join_token(
    admin: &drover_client::Client,
    enrolled: &drover_proto::worker_identity::WorkerIdentities,
    name: &str,
    dir: &Path,
) -> Result<Option<String>> {
    let file = dir.join("credential");
    let known = enrolled.credentials.iter().any(|c| c.worker_name == name);
    if known && tokio::fs::try_exists(&file).await.unwrap_or(false) {
        return Ok(None);
    }
    if known {
        // Its credential file is gone: the old credential cannot be used any more.
        admin.revoke_worker_credential(name).await?;
    }
    let _ = tokio::fs::remove_file(&file).await;
    let created = admin
        .create_join_token(Some(10 * 60 * 1000), Some(1))
        .await
        .with_context(|| format!("cannot create a join token for the local worker {name}"))?;
    Ok(Some(created.token))
}

fn worker_config(
    server: String,
    token: String,
    data_dir: PathBuf,
    s: &WorkerSettings,
) -> WorkerConfig {
    let mut c = WorkerConfig::new(server, token, s.name.clone(), data_dir);
    c.cpu_milli = s.cpu_milli;
    c.memory_bytes = s.memory_bytes;
    c.disk_bytes = s.disk_bytes;
    c.gpu_ids = s.gpu_ids.clone();
    c.custom = s.resources.clone();
    c.labels = s.labels.clone();
    c.data_keys = s.data_keys.clone();
    c.data_keys_dir = s.data_keys_dir.clone();
    c.drivers = s.drivers.clone();
    c.plugin_dir = s.plugin_dir.clone();
    c.kill_grace = s.kill_grace;
    c.max_checkpoint_bytes = s.max_checkpoint_bytes;
    c.cgroups = s.cgroups;
    c.metrics_listen = s.metrics;
    s.confine.apply(&mut c);
    c
}

/// `drover up`'s own settings.
#[derive(Debug)]
struct UpSettings {
    workers: u32,
    cpu_milli: Option<u32>,
    memory_bytes: Option<u64>,
}

fn up_settings(l: &Layers, a: &UpArgs) -> Result<UpSettings> {
    let workers = l
        .value(
            a.workers.as_deref(),
            "--workers",
            "up",
            "workers",
            Some("1"),
            |t| {
                let n: u32 = parse_count(t)?;
                if n == 0 {
                    bail!("at least 1 worker");
                }
                Ok(n)
            },
        )?
        .unwrap_or(1);
    Ok(UpSettings {
        workers,
        cpu_milli: l.value(
            a.cpus.as_deref(),
            "--cpus",
            "up",
            "cpus",
            None,
            parse_cpu_amount,
        )?,
        memory_bytes: l.value(
            a.memory.as_deref(),
            "--memory",
            "up",
            "memory",
            None,
            parse_size,
        )?,
    })
}

fn print_up(p: &mut Printer, s: &UpSettings) {
    let t = p.section("up");
    t.insert("workers".into(), show_count(u64::from(s.workers)));
    if let Some(c) = s.cpu_milli {
        t.insert("cpus".into(), show_cpus(c));
    }
    if let Some(m) = s.memory_bytes {
        t.insert("memory".into(), show_size(m));
    }
}

/// `total` split into `n` shares that differ by at most one and add up to `total`.
fn split_exactly(total: u64, n: u32) -> Vec<u64> {
    let n64 = u64::from(n);
    (0..n64)
        .map(|i| total / n64 + u64::from(i < total % n64))
        .collect()
}

/// Each local worker's CPUs and memory: the totals (given, or the host's) split exactly.
/// `None`s leave a single worker to detect the host itself.
fn local_shares(up: &UpSettings, data_dir: &Path) -> Result<Vec<(Option<u32>, Option<u64>)>> {
    if up.workers == 1 && up.cpu_milli.is_none() && up.memory_bytes.is_none() {
        return Ok(vec![(None, None)]);
    }
    let host = drover_exec::HostInfo::detect(data_dir)
        .context("cannot measure this host to split it between the local workers")?;
    let cpus = up
        .cpu_milli
        .map_or(u64::from(host.capacity.cpu_milli), u64::from);
    let memory = up.memory_bytes.unwrap_or(host.capacity.memory_bytes);
    let cpu_shares = split_exactly(cpus, up.workers);
    let mem_shares = split_exactly(memory, up.workers);
    if cpu_shares.contains(&0) {
        bail!(
            "{} cpu split between {} workers leaves some with none: start fewer workers",
            cpus as f64 / 1000.0,
            up.workers
        );
    }
    Ok(cpu_shares
        .into_iter()
        .zip(mem_shares)
        .map(|(c, m)| (Some(u32::try_from(c).unwrap_or(u32::MAX)), Some(m)))
        .collect())
}

/// Creates `dir` if need be and sets its mode. The server's directory (token, TLS
/// keys, log) is 0700 so that tasks, running as another user, cannot look inside,
/// whatever the umask made of it.
fn make_dir_with_mode(dir: &Path, mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode))
        .with_context(|| format!("cannot set the mode of {}", dir.display()))
}

async fn ctrl_c() {
    let _ = tokio::signal::ctrl_c().await;
}

/// Resolves on SIGINT or SIGTERM.
async fn stop_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        Err(_) => ctrl_c().await,
    }
}

/// Starts a worker's reaper: a `drover worker-reaper` process in its own process group
/// (so a terminal's Ctrl-C does not reach it), whose stdin is a pipe held by this
/// process. However this process ends, even by SIGKILL, the pipe closes and the reaper
/// kills the task processes the worker left behind.
fn start_reaper(config: &WorkerConfig) -> Result<Child> {
    use std::os::unix::process::CommandExt;
    let exe = std::env::current_exe()
        .context("cannot find the drover executable to start the worker's reaper")?;
    let mut cmd = std::process::Command::new(exe);
    cmd.arg("worker-reaper")
        .arg("--worker-dir")
        .arg(&config.data_dir)
        .arg("--name")
        .arg(&config.name);
    if !config.cgroups {
        cmd.arg("--no-cgroups");
    }
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::null())
        .process_group(0);
    cmd.spawn().context("cannot start the worker's reaper")
}

/// Closes the lifeline after a clean stop (the agent already stopped its tasks) and
/// lets the reaper finish.
fn stop_reaper(mut reaper: Child) {
    drop(reaper.stdin.take());
    let _ = reaper.wait();
}

pub fn reaper(a: ReaperArgs) -> Result<ExitCode> {
    let mut config = WorkerConfig::new(String::new(), String::new(), a.name, a.worker_dir);
    config.cgroups = !a.no_cgroups;
    for orphan in drover_worker::reap_when_agent_exits(&config, std::io::stdin()) {
        tracing::warn!(
            worker = %config.name,
            task = orphan.task,
            attempt = orphan.attempt,
            "the worker exited without stopping this attempt; killed it"
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn server(g: &Global, a: ServerArgs) -> Result<ExitCode> {
    let layers = a.config.layers(g)?;
    let settings = server_settings(&layers, &a)?;
    if a.config.print_config {
        let mut p = Printer::default();
        print_server(&mut p, &settings);
        p.print(&layers, g.json)?;
        return Ok(ExitCode::SUCCESS);
    }
    let mut config = server_config(g, &settings, &a);
    config.autoscale = a.autoscale.config()?;
    let data_dir = config.data_dir.clone();
    make_dir_with_mode(&data_dir, 0o700)?;
    let running = drover_server::start(config).await?;
    let token_file = drover_server::ClusterToken::path(&data_dir);
    if g.json {
        println!(
            "{}",
            serde_json::json!({
                "url": running.url(),
                "data_dir": data_dir,
                "token_file": token_file,
                "config_file": layers.path,
            })
        );
    } else {
        eprintln!("drover server listening on {}", running.url());
        eprintln!("data directory: {}", data_dir.display());
        eprintln!("cluster token:  {}", token_file.display());
        if let Some(p) = &layers.path {
            eprintln!("configuration:  {}", p.display());
        }
    }
    stop_signal().await;
    eprintln!("stopping");
    running.shutdown().await;
    Ok(ExitCode::SUCCESS)
}

pub async fn worker(g: &Global, a: WorkerArgs) -> Result<ExitCode> {
    let data = g.data_dir();
    let layers = a.config.layers(g)?;
    let settings = worker_settings(&layers, &a)?;
    let server = g
        .server
        .clone()
        .or_else(|| settings.server.clone())
        .or_else(|| discovery::local_endpoint(&data));
    if a.config.print_config {
        let mut p = Printer::default();
        print_worker(&mut p, &settings, server.as_deref());
        p.print(&layers, g.json)?;
        return Ok(ExitCode::SUCCESS);
    }
    let server = server.ok_or_else(|| {
        anyhow!(
            "pass --server URL (or set DROVER_SERVER, or worker.server in the configuration file)"
        )
    })?;
    let worker_dir = data.join("workers").join(&settings.name);
    // A worker that joined before presents its own credential; else its join token;
    // else the cluster token (kept for compatibility).
    let has_credential = tokio::fs::try_exists(worker_dir.join("credential"))
        .await
        .unwrap_or(false);
    let token = if has_credential || a.join_token.is_some() {
        g.token.clone().unwrap_or_default()
    } else {
        g.token
            .clone()
            .or_else(|| discovery::local_token(&data))
            .ok_or_else(|| anyhow!("pass --join-token (or set DROVER_JOIN_TOKEN; create one with `drover worker token create`), or the cluster token with --token (or DROVER_TOKEN)"))?
    };
    let mut config = worker_config(server, token, worker_dir, &settings);
    config.join_token = a.join_token.clone();
    let identity = a.tls_cert.as_deref().zip(a.tls_key.as_deref());
    config.tls = crate::tls::client_config(g, identity)?;
    if g.json {
        println!(
            "{}",
            serde_json::json!({
                "name": config.name,
                "server": config.server,
                "data_dir": config.data_dir,
                "config_file": layers.path,
            })
        );
    }
    let mut reaper = start_reaper(&config)?;
    let lifeline = reaper.stdin.take().map(drover_worker::Lifeline::start);
    let result = drover_worker::run(config, stop_signal(), lifeline).await;
    stop_reaper(reaper);
    result?;
    Ok(ExitCode::SUCCESS)
}

pub async fn up(g: &Global, a: UpArgs) -> Result<ExitCode> {
    let layers = a.server.config.layers(g)?;
    let settings = server_settings(&layers, &a.server)?;
    let up = up_settings(&layers, &a)?;
    let confine = confine_settings(&layers, &a.confine)?;
    if a.server.config.print_config {
        let mut p = Printer::default();
        print_server(&mut p, &settings);
        print_up(&mut p, &up);
        p.print(&layers, g.json)?;
        return Ok(ExitCode::SUCCESS);
    }
    let mut config = server_config(g, &settings, &a.server);
    config.autoscale = a.server.autoscale.config()?;
    let data_dir = config.data_dir.clone();
    // The top directory stays passable (tasks reach their attempt directories under
    // workers/ by path) but not listable; the server's own is closed.
    make_dir_with_mode(&g.data_dir(), 0o711)?;
    make_dir_with_mode(&data_dir, 0o700)?;
    // `drover up` is TLS with certificates of its own making, which the CLI here
    // trusts by finding the CA in the data directory (as it finds the token).
    let tls_paths = TlsPaths::in_data_dir(&data_dir);
    if config.tls != TlsMode::Insecure {
        config.tls = TlsMode::CreateLocal(tls_paths.clone());
    }
    let worker_tls = |insecure: bool| -> Result<Option<Arc<rustls::ClientConfig>>> {
        if insecure {
            return Ok(None);
        }
        let ca = std::fs::read_to_string(tls_paths.ca())
            .with_context(|| format!("cannot read {}", tls_paths.ca().display()))?;
        Ok(Some(Arc::new(drover_client::tls::client_config(
            &ca, None,
        )?)))
    };
    let (url, token, running) = if a.servers > 1 {
        let (url, token, children) =
            start_group(g, &settings, a.servers, !a.server.insecure_http).await?;
        (url, token, UpServers::Group(children))
    } else {
        let running = drover_server::start(config).await?;
        let url = running.url();
        let token = running.node.token.as_str().to_string();
        (url, token, UpServers::InProcess(running))
    };
    let shares = match local_shares(&up, &data_dir) {
        Ok(s) => s,
        Err(e) => {
            running.shutdown().await;
            return Err(e);
        }
    };
    let smallest = shares.iter().filter_map(|(c, _)| *c).min();
    let worker_tls = match worker_tls(a.server.insecure_http) {
        Ok(t) => t,
        Err(e) => {
            running.shutdown().await;
            return Err(e);
        }
    };
    // The local workers join with join tokens, like any other: they never hold the
    // cluster token (nor do the tasks they run).
    let admin = {
        let client = drover_client::Client::new(url.clone(), Some(token.clone()));
        match &worker_tls {
            Some(tls) => client.with_tls((**tls).clone())?,
            None => client,
        }
    };
    let enrolled = match admin.worker_identities().await {
        Ok(ids) => ids,
        Err(e) => {
            running.shutdown().await;
            return Err(e).context("cannot list the workers' credentials");
        }
    };
    let (stop_tx, _) = tokio::sync::broadcast::channel::<()>(1);
    let mut workers = Vec::new();
    let mut listed = Vec::new();
    for (i, (cpu_milli, memory_bytes)) in (1..=up.workers).zip(shares) {
        let name = format!("local-{i}");
        let dir = g.data_dir().join("workers").join(&name);
        let join_token = match local_join_token(&admin, &enrolled, &name, &dir).await {
            Ok(t) => t,
            Err(e) => {
                running.shutdown().await;
                return Err(e);
            }
        };
        let mut config = WorkerConfig::new(url.clone(), String::new(), name.clone(), dir);
        config.join_token = join_token;
        config.cpu_milli = cpu_milli;
        config.memory_bytes = memory_bytes;
        // One local worker offers the GPUs it finds; several would each find them all
        // and hand the same devices out twice, so they offer none (not split yet).
        if up.workers > 1 {
            config.gpu_ids = Some(Vec::new());
        }
        config.tls = worker_tls.clone();
        confine.apply(&mut config);
        listed.push(serde_json::json!({
            "name": name,
            "cpu_milli": cpu_milli,
            "memory_bytes": memory_bytes,
        }));
        let mut reaper = start_reaper(&config)?;
        let lifeline = reaper.stdin.take().map(drover_worker::Lifeline::start);
        let mut stop = stop_tx.subscribe();
        workers.push(tokio::spawn(async move {
            if let Err(e) = drover_worker::run(
                config,
                async move {
                    let _ = stop.recv().await;
                },
                lifeline,
            )
            .await
            {
                eprintln!("worker {name}: {e}");
            }
            let _ = tokio::task::spawn_blocking(move || stop_reaper(reaper)).await;
        }));
    }
    let token_file = drover_server::ClusterToken::path(&data_dir);
    // A task asks for one CPU unless told otherwise.
    let small = smallest.filter(|c| *c < 1000).map(|c| {
        format!(
            "each local worker has {} cpu, less than the 1 cpu a task asks for by default: \
             submit with --cpus {} or less, or start fewer workers",
            c as f64 / 1000.0,
            c as f64 / 1000.0
        )
    });
    if g.json {
        println!(
            "{}",
            serde_json::json!({
                "url": url,
                "data_dir": data_dir,
                "token_file": token_file,
                "config_file": layers.path,
                "workers": listed,
                "warning": small,
            })
        );
    } else {
        if a.servers > 1 {
            println!(
                "Drover is up: {} servers with {} local worker{}:",
                a.servers,
                up.workers,
                if up.workers == 1 { "" } else { "s" }
            );
            for u in url.split(',') {
                println!("  server {u}");
            }
        } else {
            println!(
                "Drover is up: server {url} with {} local worker{}.",
                up.workers,
                if up.workers == 1 { "" } else { "s" }
            );
        }
        println!("  data:  {}", data_dir.display());
        println!("  token: {}", token_file.display());
        if let Some(note) = &small {
            println!("  note:  {note}");
        }
        println!();
        println!("In another terminal (the CLI finds this server by itself):");
        println!("  drover run -- echo hello");
        println!("  drover submit --name sleepy -- sleep 30");
        println!("  drover list");
        println!("  drover run -f examples/sum_of_squares.yaml");
        println!();
        println!("Ctrl-C stops everything.");
    }
    stop_signal().await;
    eprintln!("stopping workers and server");
    let _ = stop_tx.send(());
    for w in workers {
        let _ = w.await;
    }
    running.shutdown().await;
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::split_exactly;

    #[test]
    fn shares_add_up_exactly() {
        assert_eq!(split_exactly(2000, 3), vec![667, 667, 666]);
        assert_eq!(split_exactly(1000, 4), vec![250, 250, 250, 250]);
        assert_eq!(split_exactly(2, 3), vec![1, 1, 0]);
        for (total, n) in [(7919u64, 7u32), (1 << 34, 3), (5, 1)] {
            let s = split_exactly(total, n);
            assert_eq!(s.iter().sum::<u64>(), total);
            assert!(s.iter().max().unwrap() - s.iter().min().unwrap() <= 1);
        }
    }
}
