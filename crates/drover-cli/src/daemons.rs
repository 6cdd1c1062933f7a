//! The long-running commands: `up`, `server`, `worker`.

use crate::Global;
use crate::jobfile::{parse_duration_ms, parse_pairs};
use anyhow::{Context, Result, anyhow, bail};
use clap::Args;
use drover_client::discovery;
use drover_server::ServerConfig;
use drover_types::{parse_bytes, parse_cpus};
use drover_worker::WorkerConfig;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::process::{Child, Stdio};
use std::time::Duration;

#[derive(Debug, Args)]
pub struct ServerArgs {
    /// Address to listen on (loopback by default: other machines need it said)
    #[arg(long, default_value = "127.0.0.1:7070")]
    listen: SocketAddr,
    /// A worker silent for this long is declared lost and its tasks re-placed (each
    /// worker stops its own tasks before that: it must exceed a worker's kill grace
    /// + 0.5s + 3 heartbeat intervals, or the worker is refused)
    #[arg(long, default_value = "30s")]
    worker_timeout: String,
    /// How often workers heartbeat (each is acknowledged) and the server pings them
    #[arg(long, default_value = "1s")]
    heartbeat_interval: String,
    /// This server's id in the replicated group
    #[arg(long, default_value_t = 1)]
    node_id: u64,
    /// Largest request body accepted, e.g. 256M (a job of 1,000,000 small tasks is ~100M of JSON)
    #[arg(long, default_value = "256M")]
    max_body: String,
}

#[derive(Debug, Args)]
pub struct WorkerArgs {
    /// Worker name [default: the host name]
    #[arg(long)]
    name: Option<String>,
    /// CPUs to offer, e.g. 4 or 0.5 [default: all of this host's]
    #[arg(long)]
    cpus: Option<String>,
    /// Memory to offer, e.g. 16G [default: all of this host's]
    #[arg(long)]
    memory: Option<String>,
    /// Disk to offer, e.g. 100G [default: the size of the data directory's file system]
    #[arg(long)]
    disk: Option<String>,
    #[arg(long, default_value_t = 0)]
    gpus: u32,
    /// A custom resource, NAME=COUNT (repeatable)
    #[arg(long = "resource", value_name = "NAME=COUNT")]
    resources: Vec<String>,
    /// A label, KEY=VALUE (repeatable)
    #[arg(long = "label", value_name = "KEY=VALUE")]
    labels: Vec<String>,
    /// Data keys this worker holds, for locality (repeatable)
    #[arg(long = "data-key")]
    data_keys: Vec<String>,
    /// Grace between SIGTERM and SIGKILL when a task is stopped
    #[arg(long, default_value = "5s")]
    kill_grace: String,
    /// Do not use cgroups even where they are writable
    #[arg(long)]
    no_cgroups: bool,
}

#[derive(Debug, Args)]
pub struct ReaperArgs {
    /// The worker's data directory
    #[arg(long)]
    worker_dir: PathBuf,
    #[arg(long)]
    name: String,
    #[arg(long)]
    no_cgroups: bool,
}

#[derive(Debug, Args)]
pub struct UpArgs {
    /// How many local workers to start (the host's CPUs are split between them)
    #[arg(long, default_value_t = 1)]
    workers: u32,
    #[command(flatten)]
    server: ServerArgs,
}

fn server_config(g: &Global, a: &ServerArgs) -> Result<ServerConfig> {
    let mut c = ServerConfig::new(discovery::server_dir(&g.data_dir()));
    c.listen = a.listen;
    c.node_id = a.node_id;
    c.worker_lost_after =
        Duration::from_millis(parse_duration_ms(&a.worker_timeout).context("--worker-timeout")?);
    c.heartbeat_interval = Duration::from_millis(
        parse_duration_ms(&a.heartbeat_interval).context("--heartbeat-interval")?,
    );
    c.validate_timing()
        .context("--worker-timeout and --heartbeat-interval")?;
    c.token = g.token.clone();
    c.max_body_bytes = usize::try_from(parse_bytes(&a.max_body).context("--max-body")?)
        .context("--max-body is too large")?;
    Ok(c)
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "worker".into())
}

fn worker_config(
    server: String,
    token: String,
    data_dir: PathBuf,
    a: &WorkerArgs,
) -> Result<WorkerConfig> {
    let name = a.name.clone().unwrap_or_else(hostname);
    let mut c = WorkerConfig::new(server, token, name, data_dir);
    c.cpu_milli = a
        .cpus
        .as_deref()
        .map(parse_cpus)
        .transpose()
        .context("--cpus")?;
    c.memory_bytes = a
        .memory
        .as_deref()
        .map(parse_bytes)
        .transpose()
        .context("--memory")?;
    c.disk_bytes = a
        .disk
        .as_deref()
        .map(parse_bytes)
        .transpose()
        .context("--disk")?;
    c.gpus = a.gpus;
    c.custom = parse_pairs(&a.resources, "--resource")?
        .into_iter()
        .map(|(k, v)| {
            Ok((
                k,
                v.parse::<u64>()
                    .map_err(|_| anyhow!("--resource {v:?} is not a count"))?,
            ))
        })
        .collect::<Result<_>>()?;
    c.labels = parse_pairs(&a.labels, "--label")?;
    c.data_keys = a.data_keys.clone();
    c.kill_grace = Duration::from_millis(parse_duration_ms(&a.kill_grace).context("--kill-grace")?);
    c.cgroups = !a.no_cgroups;
    Ok(c)
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
    let config = server_config(g, &a)?;
    let data_dir = config.data_dir.clone();
    let running = drover_server::start(config).await?;
    eprintln!("drover server listening on {}", running.url());
    eprintln!("data directory: {}", data_dir.display());
    eprintln!(
        "cluster token:  {}",
        drover_server::ClusterToken::path(&data_dir).display()
    );
    stop_signal().await;
    eprintln!("stopping");
    running.shutdown().await;
    Ok(ExitCode::SUCCESS)
}

pub async fn worker(g: &Global, a: WorkerArgs) -> Result<ExitCode> {
    let data = g.data_dir();
    let server = match &g.server {
        Some(s) => s.clone(),
        None => discovery::local_endpoint(&data)
            .ok_or_else(|| anyhow!("pass --server URL (or set DROVER_SERVER)"))?,
    };
    let token = g
        .token
        .clone()
        .or_else(|| discovery::local_token(&data))
        .ok_or_else(|| anyhow!("pass --token (or set DROVER_TOKEN): the cluster token is in the server's data directory, file 'token'"))?;
    let name = a.name.clone().unwrap_or_else(hostname);
    let config = worker_config(server, token, data.join("workers").join(&name), &a)?;
    let reaper = start_reaper(&config)?;
    let result = drover_worker::run(config, stop_signal()).await;
    stop_reaper(reaper);
    result?;
    Ok(ExitCode::SUCCESS)
}

pub async fn up(g: &Global, a: UpArgs) -> Result<ExitCode> {
    if a.workers == 0 {
        bail!("--workers must be at least 1");
    }
    let config = server_config(g, &a.server)?;
    let data_dir = config.data_dir.clone();
    let running = drover_server::start(config).await?;
    let url = running.url();
    let token = running.node.token.as_str().to_string();
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get()) as u32 * 1000;
    // Split the host's CPUs, but give each worker at least one core, so that a default
    // one-core task fits anywhere (a demo on a small host over-subscribes a little).
    let share = (cpus / a.workers).max(1000);
    let (stop_tx, _) = tokio::sync::broadcast::channel::<()>(1);
    let mut workers = Vec::new();
    for i in 1..=a.workers {
        let name = format!("local-{i}");
        let mut config = WorkerConfig::new(
            url.clone(),
            token.clone(),
            name.clone(),
            g.data_dir().join("workers").join(&name),
        );
        if a.workers > 1 {
            config.cpu_milli = Some(share);
        }
        let reaper = start_reaper(&config)?;
        let mut stop = stop_tx.subscribe();
        workers.push(tokio::spawn(async move {
            if let Err(e) = drover_worker::run(config, async move {
                let _ = stop.recv().await;
            })
            .await
            {
                eprintln!("worker {name}: {e}");
            }
            stop_reaper(reaper);
        }));
    }
    println!(
        "Drover is up: server {url} with {} local worker(s).",
        a.workers
    );
    println!("  data:  {}", data_dir.display());
    println!(
        "  token: {}",
        drover_server::ClusterToken::path(&data_dir).display()
    );
    println!();
    println!("In another terminal (the CLI finds this server by itself):");
    println!("  drover run -- echo hello");
    println!("  drover submit --name sleepy -- sleep 30");
    println!("  drover list");
    println!("  drover run -f examples/sum_of_squares.yaml");
    println!();
    println!("Ctrl-C stops everything.");
    stop_signal().await;
    eprintln!("stopping workers and server");
    let _ = stop_tx.send(());
    for w in workers {
        let _ = w.await;
    }
    running.shutdown().await;
    Ok(ExitCode::SUCCESS)
}
