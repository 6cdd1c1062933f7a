//! The scale harness: many simulated workers against one real `drover server`.
//!
//! Each simulated worker is the real worker agent (`drover_worker::run_with_driver`)
//! with a `SimulatedDriver`: it joins, heartbeats, fences, reconnects and reports over
//! its own WebSocket like a `drover worker` process, but an attempt only waits out its
//! duration instead of spawning a process. N of them run as tokio tasks in this
//! process; the server is a separate `drover server` process (started here, or given
//! with `--server`), so its CPU and memory are its own.
//!
//! Two cases, each printing one `bench=` line of figures:
//!
//! - `scale_drain`: `--tasks` tasks (array jobs of `--batch`, submitted back to back or
//!   at `--rate` per second) through `--workers` workers of `--slots` one-CPU slots,
//!   each attempt lasting `--duration-ms`. Reports the end-to-end time (first
//!   submission to the last end acknowledged by the server), the submit rate, starts
//!   per second (placements), submit→start p50/p99 (from just before the submission
//!   was sent to the moment the agent launched the attempt, both on this process's
//!   monotonic clock), API latency p50/p99 of a prober that reads a task and a page of
//!   the list every 20 ms during the run, and the server's CPU and RSS. One row per
//!   second goes to a CSV file (its path is printed) for plots, and the latency
//!   distributions (quantiles) to `<csv>.dist.csv` beside it.
//! - `scale_queued`: on a fresh server without workers, one job of `--tasks` distinct
//!   tasks through `POST /v1/jobs`: time to acknowledge, server RSS with them queued;
//!   then the server is stopped (SIGTERM) and started again: time until it serves
//!   again with every task back, and its RSS then. `--baseline PATH` runs another
//!   `drover` binary (an older build) through the same case, alternating with this
//!   build's, `--runs N` times each, and prints the medians side by side; `--settle S`
//!   is how long after the acknowledgement the "idle" RSS is read (5 s; 1 with `--quick`).
//!
//! `cargo bench -p drover-cli --bench scale` (1,000 workers, 1,000,000 tasks),
//! `-- --quick` (10 workers, 10,000 tasks: the CI smoke run). Options:
//! `--workers N --slots N --tasks N --batch N --duration-ms MS --rate N --prefetch N
//! --servers N --timeout S --csv PATH --only drain|queued --server URL --token T
//! --server-pid PID --baseline PATH --runs N --settle S`. `--servers 3` runs the drain case through a replicated group of
//! three (the leader's CPU and RSS are sampled; `all_servers_cpu_s` sums the three).
//! With `--server` (a running server, or several comma-separated), only the drain case
//! runs; `--server-pid` names the process whose CPU and RSS are sampled.

mod common;

use common::{cpu_ms, status_kib, wait_for_file};
use drover_client::{Client, ListQuery};
use drover_exec::{SimulatedDriver, SimulationObserver};
use drover_proto::api::SubmitResponse;
use drover_types::{ArraySpec, Resources, TaskSpec, TaskState};
use drover_worker::WorkerConfig;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::watch;

const DROVER: &str = env!("CARGO_BIN_EXE_drover");

/// The options, with their defaults for the full run.
#[derive(Clone, Debug)]
struct Options {
    workers: usize,
    slots: u32,
    tasks: u64,
    batch: u64,
    duration_ms: u64,
    /// Tasks per second to submit at; 0: as fast as the server acknowledges.
    rate: u64,
    timeout: Duration,
    csv: Option<PathBuf>,
    only: Option<String>,
    server: Option<String>,
    token: Option<String>,
    server_pid: Option<u32>,
    /// Servers in the group the harness starts (1, or 3 for a replicated group).
    servers: usize,
    /// The policy's `prefetch_per_worker` for the drain case.
    prefetch: Option<u32>,
    /// The queued case also runs this `drover` binary (an older build), alternating
    /// with this build's, and prints both side by side.
    baseline: Option<PathBuf>,
    /// Runs of the queued case per binary (medians reported).
    runs: usize,
    /// Seconds the queued case waits after the acknowledgement before reading the
    /// server's RSS as "idle".
    settle_s: u64,
}

impl Options {
    fn parse() -> Options {
        let quick = std::env::args().any(|a| a == "--quick")
            || std::env::var_os("DROVER_BENCH_QUICK").is_some();
        let mut o = Options {
            workers: if quick { 10 } else { 1_000 },
            slots: 1,
            tasks: if quick { 10_000 } else { 1_000_000 },
            batch: if quick { 1_000 } else { 10_000 },
            duration_ms: 10,
            rate: 0,
            timeout: Duration::from_secs(if quick { 120 } else { 900 }),
            csv: None,
            only: None,
            server: None,
            token: None,
            server_pid: None,
            servers: 1,
            prefetch: None,
            baseline: None,
            runs: 1,
            settle_s: if quick { 1 } else { 5 },
        };
        let args: Vec<String> = std::env::args().skip(1).collect();
        let mut i = 0;
        while i < args.len() {
            let flag = args[i].as_str();
            // cargo bench passes `--bench`; flags without a value are skipped.
            if matches!(flag, "--bench" | "--quick") {
                i += 1;
                continue;
            }
            let value = args
                .get(i + 1)
                .unwrap_or_else(|| panic!("{flag} needs a value"))
                .clone();
            let num = || -> u64 {
                value
                    .replace('_', "")
                    .parse()
                    .unwrap_or_else(|_| panic!("{flag}: not a number: {value}"))
            };
            match flag {
                "--workers" => o.workers = num() as usize,
                "--slots" => o.slots = num() as u32,
                "--tasks" => o.tasks = num(),
                "--batch" => o.batch = num().max(1),
                "--duration-ms" => o.duration_ms = num(),
                "--rate" => o.rate = num(),
                "--timeout" => o.timeout = Duration::from_secs(num()),
                "--csv" => o.csv = Some(PathBuf::from(&value)),
                "--only" => o.only = Some(value.clone()),
                "--server" => o.server = Some(value.clone()),
                "--token" => o.token = Some(value.clone()),
                "--server-pid" => o.server_pid = Some(num() as u32),
                "--servers" => o.servers = num().max(1) as usize,
                "--prefetch" => o.prefetch = Some(num() as u32),
                "--baseline" => o.baseline = Some(PathBuf::from(&value)),
                "--runs" => o.runs = num().max(1) as usize,
                "--settle" => o.settle_s = num(),
                other => panic!("unknown option {other}"),
            }
            i += 2;
        }
        o
    }

    fn runs(&self, case: &str) -> bool {
        self.only.as_deref().is_none_or(|o| o == case)
    }
}

/// A `drover server` started by this harness; killed when dropped.
struct ServerProc {
    child: Child,
    url: String,
    token: String,
}

impl ServerProc {
    /// Starts `binary` (this build's `drover`, or a baseline build) as a server.
    fn start(binary: &Path, dir: &Path) -> ServerProc {
        std::fs::create_dir_all(dir).expect("data dir");
        let endpoint = dir.join("server/endpoint");
        let _ = std::fs::remove_file(&endpoint);
        let child = Command::new(binary)
            .arg("--data-dir")
            .arg(dir)
            // Plain HTTP: the figures are of scheduling at scale, and the in-process
            // agents connect without a CA (the TLS cost is measured in ARCHITECTURE.md).
            .args(["server", "--listen", "127.0.0.1:0", "--insecure-http"])
            .env("DROVER_LOG", "warn")
            .stderr(Stdio::null())
            .spawn()
            .expect("start the server");
        let url = wait_for_file(&endpoint, Duration::from_secs(120));
        let token = wait_for_file(&dir.join("server/token"), Duration::from_secs(120));
        ServerProc { child, url, token }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGTERM, then waits for the exit.
    fn stop(mut self) {
        // The `kill` command: libc::kill would need `unsafe`, denied in this workspace.
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}

impl Drop for ServerProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const GROUP_TOKEN: &str = "scale-bench-token";
const PEER_TOKEN: &str = "scale-bench-peer-token";

/// The servers of the drain case: one, or a replicated group on fixed loopback ports.
struct ServerGroup {
    procs: Vec<Child>,
    urls: Vec<String>,
}

impl ServerGroup {
    fn start(dir: &Path, n: usize) -> ServerGroup {
        let listeners: Vec<std::net::TcpListener> = (0..n)
            .map(|_| std::net::TcpListener::bind("127.0.0.1:0").expect("a free port"))
            .collect();
        let addrs: Vec<String> = listeners
            .iter()
            .map(|l| l.local_addr().expect("address").to_string())
            .collect();
        drop(listeners);
        let procs = (0..n)
            .map(|i| {
                let mut c = Command::new(DROVER);
                c.arg("--data-dir")
                    .arg(dir.join(format!("s{i}")))
                    .args(["--token", GROUP_TOKEN, "server", "--listen", &addrs[i]])
                    .arg("--insecure-http")
                    .env("DROVER_LOG", "warn")
                    .stdout(Stdio::null())
                    .stderr(Stdio::null());
                if n > 1 {
                    c.args(["--peers", &addrs.join(","), "--peer-token", PEER_TOKEN]);
                }
                c.spawn().expect("start a server")
            })
            .collect();
        ServerGroup {
            procs,
            urls: addrs.iter().map(|a| format!("http://{a}")).collect(),
        }
    }

    /// The process of the server that says it leads, once one does.
    async fn leader_pid(&self) -> u32 {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            for (url, p) in self.urls.iter().zip(&self.procs) {
                if let Ok(h) = Client::new(url.clone(), Some(GROUP_TOKEN.into()))
                    .health()
                    .await
                    && h.leader
                {
                    return p.id();
                }
            }
            assert!(Instant::now() < deadline, "no leader");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for ServerGroup {
    fn drop(&mut self) {
        for p in &mut self.procs {
            let _ = p.kill();
            let _ = p.wait();
        }
    }
}

/// Resident set size of a process, in MiB.
fn rss_mib(pid: u32, field: &str) -> f64 {
    status_kib(pid, field) as f64 / 1024.0
}

/// User + system CPU time of a process, in seconds.
fn cpu_s(pid: u32) -> f64 {
    cpu_ms(pid) as f64 / 1000.0
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn sorted(mut v: Vec<f64>) -> Vec<f64> {
    v.sort_by(|a, b| a.total_cmp(b));
    v
}

/// What the simulated workers report, shared by all of them.
#[derive(Default)]
struct Recorder {
    /// Every launch: (task id, when).
    launches: Mutex<Vec<(u64, Instant)>>,
    started: AtomicU64,
    /// Tasks whose end was acknowledged: what the run waits for.
    acknowledged: AtomicU64,
    ends: Mutex<Ends>,
}

/// The acknowledged ends, sorted out. An acknowledgement is of an *attempt*'s end, and
/// not every one is a task's: a prefetched attempt the server retracts before it
/// starts (to run the task on a worker that is free sooner) ends as killed and is
/// acknowledged too. Counting every acknowledgement once counted 2,087 ends for 2,000
/// tasks and could stop the run before the last tasks ended.
#[derive(Default)]
struct Ends {
    /// Launched attempts, and whether their end was acknowledged yet.
    launched: std::collections::HashMap<(u64, u32), bool>,
    /// Tasks one of whose launched attempts ended (acknowledged).
    tasks: std::collections::HashSet<u64>,
    /// Acknowledged ends of attempts never launched (retracted prefetches).
    not_launched: u64,
    /// A launched attempt acknowledged again, or a second launched attempt of a task.
    repeated: u64,
}

impl SimulationObserver for Recorder {
    fn launched(&self, task: u64, attempt: u32, at: Instant) {
        self.launches
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((task, at));
        self.ends
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .launched
            .insert((task, attempt), false);
        self.started.fetch_add(1, Ordering::Relaxed);
    }

    fn end_acknowledged(&self, task: u64, attempt: u32, _at: Instant) {
        let mut ends = self.ends.lock().unwrap_or_else(|p| p.into_inner());
        match ends.launched.get_mut(&(task, attempt)) {
            None => ends.not_launched += 1,
            Some(true) => ends.repeated += 1,
            Some(acked) => {
                *acked = true;
                if ends.tasks.insert(task) {
                    self.acknowledged.fetch_add(1, Ordering::Relaxed);
                } else {
                    ends.repeated += 1;
                }
            }
        }
    }
}

/// One submitted array job: its task ids and when it was sent.
#[derive(Clone, Copy)]
struct Batch {
    first: u64,
    count: u64,
    sent: Instant,
}

/// One row of the time series.
#[derive(Default, Clone)]
struct Second {
    t: u64,
    submitted: u64,
    started: u64,
    acknowledged: u64,
    server_cpu_pct: f64,
    server_rss_mib: f64,
    harness_cpu_pct: f64,
    api_p50_ms: f64,
    api_p99_ms: f64,
    api_requests: usize,
    start_p50_ms: f64,
    start_p99_ms: f64,
}

/// One array job of `count` tasks of `sleep <duration>`: what a real worker would run
/// too, and what the simulated driver times.
async fn submit_batch(
    client: &Client,
    first_index: u64,
    count: u64,
    duration_ms: u64,
) -> SubmitResponse {
    let seconds = format!("{}", duration_ms as f64 / 1000.0);
    let task = TaskSpec {
        name: format!("scale-{first_index}"),
        array: Some(ArraySpec {
            start: 0,
            end: (count - 1) as u32,
        }),
        ..TaskSpec::command(["sleep", seconds.as_str()])
    };
    client.submit_task(&task).await.expect("submit a batch")
}

/// Starts `n` simulated workers; returns their shutdown switch and join handles.
fn start_workers(
    o: &Options,
    url: &str,
    token: &str,
    dir: &Path,
    recorder: Arc<Recorder>,
) -> (watch::Sender<bool>, Vec<tokio::task::JoinHandle<()>>) {
    let (stop_tx, stop_rx) = watch::channel(false);
    let driver: Arc<dyn drover_exec::Driver> = Arc::new(SimulatedDriver::new(
        Duration::from_millis(o.duration_ms),
        Some(recorder as Arc<dyn SimulationObserver>),
    ));
    let mut handles = Vec::with_capacity(o.workers);
    for i in 0..o.workers {
        let mut config =
            WorkerConfig::new(url, token, format!("sim-{i:04}"), dir.join(format!("w{i}")));
        config.cgroups = false;
        config.kill_grace = Duration::from_millis(200);
        let capacity = Resources {
            cpu_milli: o.slots * 1000,
            memory_bytes: 64 << 30,
            disk_bytes: 1 << 40,
            gpus: 0,
            custom: Default::default(),
        };
        let driver = driver.clone();
        let mut stop = stop_rx.clone();
        handles.push(tokio::spawn(async move {
            let shutdown = async move {
                let _ = stop.wait_for(|s| *s).await;
            };
            if let Err(e) =
                drover_worker::run_with_driver(config, driver, capacity, shutdown, None).await
            {
                eprintln!("simulated worker {i} stopped: {e}");
            }
        }));
    }
    (stop_tx, handles)
}

async fn drain_case(o: &Options, dir: &Path) {
    let group = o
        .server
        .is_none()
        .then(|| ServerGroup::start(&dir.join("servers"), o.servers));
    let all_pids: Vec<u32> = group
        .as_ref()
        .map(|g| g.procs.iter().map(|p| p.id()).collect())
        .unwrap_or_default();
    let all_cpu = || all_pids.iter().map(|p| cpu_s(*p)).sum::<f64>();
    let (url, token, spid) = match &group {
        Some(g) => (
            g.urls.join(","),
            GROUP_TOKEN.to_string(),
            Some(g.leader_pid().await),
        ),
        None => (
            o.server.clone().unwrap_or_default(),
            o.token.clone().expect("--server needs --token"),
            o.server_pid,
        ),
    };
    let client = Client::new(url.clone(), Some(token.clone()));
    if let Some(prefetch) = o.prefetch {
        let mut policy = client.policy().await.expect("policy");
        policy.prefetch_per_worker = prefetch;
        client.set_policy(&policy).await.expect("set the policy");
    }
    let recorder = Arc::new(Recorder::default());
    let joined_at = Instant::now();
    let (stop, handles) = start_workers(o, &url, &token, &dir.join("workers"), recorder.clone());
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let active = client
            .cluster()
            .await
            .map(|c| c.workers_active as usize)
            .unwrap_or(0);
        if active >= o.workers {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "only {active} of {} workers joined",
            o.workers
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let join_s = joined_at.elapsed().as_secs_f64();
    let rss_idle = spid.map_or(0.0, |p| rss_mib(p, "VmRSS:"));

    let batches: Arc<Mutex<Vec<Batch>>> = Arc::default();
    let submitted = Arc::new(AtomicU64::new(0));
    let api_lat: Arc<Mutex<Vec<f64>>> = Arc::default();
    let (done_tx, done_rx) = watch::channel(false);
    let t0 = Instant::now();
    let cpu0 = spid.map_or(0.0, cpu_s);
    let all_cpu0 = all_cpu();

    // The submitter: batches back to back, or paced to `rate`.
    let submitter = {
        let (client, batches, submitted, o) = (
            client.clone(),
            batches.clone(),
            submitted.clone(),
            o.clone(),
        );
        tokio::spawn(async move {
            let mut index = 0u64;
            while index < o.tasks {
                let count = o.batch.min(o.tasks - index);
                if o.rate > 0 {
                    let due = t0 + Duration::from_secs_f64(index as f64 / o.rate as f64);
                    tokio::time::sleep_until(due.into()).await;
                }
                let sent = Instant::now();
                let resp = submit_batch(&client, index, count, o.duration_ms).await;
                batches.lock().unwrap().push(Batch {
                    first: resp.first.0,
                    count: resp.count,
                    sent,
                });
                index += count;
                submitted.store(index, Ordering::Relaxed);
            }
            t0.elapsed()
        })
    };

    // The prober: reads one submitted task, then a page of the list, every 20 ms.
    let prober = {
        let (client, batches, api_lat) = (client.clone(), batches.clone(), api_lat.clone());
        let mut done = done_rx.clone();
        tokio::spawn(async move {
            let mut n = 0u64;
            let mut tick = tokio::time::interval(Duration::from_millis(20));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = done.wait_for(|d| *d) => break,
                    _ = tick.tick() => {}
                }
                n += 1;
                let target = {
                    let b = batches.lock().unwrap();
                    b.last().map(|b| b.first + (n * 7919) % b.count)
                };
                let t = Instant::now();
                let ok = if n.is_multiple_of(2) {
                    match target {
                        Some(id) => client.task(&id.to_string()).await.is_ok(),
                        None => continue,
                    }
                } else {
                    client
                        .list(&ListQuery {
                            limit: Some(100),
                            ..ListQuery::default()
                        })
                        .await
                        .is_ok()
                };
                if ok {
                    api_lat
                        .lock()
                        .unwrap()
                        .push(t.elapsed().as_secs_f64() * 1000.0);
                }
            }
        })
    };

    // The sampler: one row per second until every end is acknowledged.
    let mut series: Vec<Second> = Vec::new();
    let me = std::process::id();
    let (mut last_cpu, mut last_me, mut last_at) = (cpu0, cpu_s(me), Instant::now());
    let mut api_seen = 0usize;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.tick().await;
    let finished = loop {
        tick.tick().await;
        let now = Instant::now();
        let dt = now.duration_since(last_at).as_secs_f64();
        let (cpu, mine) = (spid.map_or(0.0, cpu_s), cpu_s(me));
        let lat = {
            let l = api_lat.lock().unwrap();
            let new = l[api_seen..].to_vec();
            api_seen = l.len();
            sorted(new)
        };
        let row = Second {
            t: series.len() as u64 + 1,
            submitted: submitted.load(Ordering::Relaxed),
            started: recorder.started.load(Ordering::Relaxed),
            acknowledged: recorder.acknowledged.load(Ordering::Relaxed),
            server_cpu_pct: (cpu - last_cpu) / dt * 100.0,
            server_rss_mib: spid.map_or(0.0, |p| rss_mib(p, "VmRSS:")),
            harness_cpu_pct: (mine - last_me) / dt * 100.0,
            api_p50_ms: percentile(&lat, 0.5),
            api_p99_ms: percentile(&lat, 0.99),
            api_requests: lat.len(),
            ..Second::default()
        };
        (last_cpu, last_me, last_at) = (cpu, mine, now);
        let acked = row.acknowledged;
        eprintln!(
            "t={}s submitted={} started={} acknowledged={} server_cpu={:.0}% server_rss={:.0}MiB api_p99={:.1}ms",
            row.t,
            row.submitted,
            row.started,
            row.acknowledged,
            row.server_cpu_pct,
            row.server_rss_mib,
            row.api_p99_ms
        );
        series.push(row);
        if acked >= o.tasks {
            break true;
        }
        if t0.elapsed() > o.timeout {
            break false;
        }
    };
    let e2e_s = t0.elapsed().as_secs_f64();
    let server_cpu_s = spid.map_or(0.0, cpu_s) - cpu0;
    let all_servers_cpu_s = all_cpu() - all_cpu0;
    let _ = done_tx.send(true);
    let _ = prober.await;
    let submit_s = if submitter.is_finished() {
        submitter.await.map(|d| d.as_secs_f64()).unwrap_or(f64::NAN)
    } else {
        submitter.abort();
        f64::NAN
    };
    let _ = stop.send(true);
    for h in handles {
        let _ = h.await;
    }

    // submit→start per launch: from its batch's send to the agent's launch.
    let batches = batches.lock().unwrap().clone();
    let launches = std::mem::take(&mut *recorder.launches.lock().unwrap());
    let mut per_second: Vec<Vec<f64>> = vec![Vec::new(); series.len() + 1];
    let mut all = Vec::with_capacity(launches.len());
    for (task, at) in &launches {
        let i = batches.partition_point(|b| b.first <= *task);
        let Some(b) = i.checked_sub(1).map(|i| batches[i]) else {
            continue;
        };
        if *task >= b.first + b.count {
            continue;
        }
        let ms = at.saturating_duration_since(b.sent).as_secs_f64() * 1000.0;
        all.push(ms);
        let s = (at.saturating_duration_since(t0).as_secs() as usize).min(series.len());
        per_second[s].push(ms);
    }
    for (row, lat) in series.iter_mut().zip(per_second) {
        let lat = sorted(lat);
        row.start_p50_ms = percentile(&lat, 0.5);
        row.start_p99_ms = percentile(&lat, 0.99);
    }
    let all = sorted(all);
    let api = sorted(api_lat.lock().unwrap().clone());
    let peak_starts = series
        .iter()
        .scan(0, |prev, r| {
            Some(r.started - std::mem::replace(prev, r.started))
        })
        .max()
        .unwrap_or(0);
    let peak_cpu = series.iter().map(|r| r.server_cpu_pct).fold(0.0, f64::max);
    let peak_rss = spid.map_or(0.0, |p| rss_mib(p, "VmHWM:"));
    let rss_end = spid.map_or(0.0, |p| rss_mib(p, "VmRSS:"));
    let csv = o
        .csv
        .clone()
        .unwrap_or_else(|| std::env::temp_dir().join(format!("drover-scale-{}.csv", me)));
    write_csv(&csv, &series);
    let dist = csv.with_extension("dist.csv");
    write_distribution(&dist, &all, &api);
    let acked = recorder.acknowledged.load(Ordering::Relaxed);
    let (not_launched, repeated) = {
        let e = recorder.ends.lock().unwrap_or_else(|p| p.into_inner());
        (e.not_launched, e.repeated)
    };
    println!(
        "bench=scale_drain servers={} prefetch={} workers={} slots={} tasks={} batch={} duration_ms={} rate={} finished={} acknowledged={acked} ends_not_launched={not_launched} ends_repeated={repeated} join_s={join_s:.1} e2e_s={e2e_s:.1} submit_s={submit_s:.1} submit_tasks_per_s={:.0} starts_per_s={:.0} peak_starts_per_s={peak_starts} submit_to_start_p50_ms={:.1} submit_to_start_p99_ms={:.1} api_p50_ms={:.2} api_p99_ms={:.2} api_requests={} server_cpu_s={server_cpu_s:.1} all_servers_cpu_s={all_servers_cpu_s:.1} server_cpu_us_per_task={:.0} server_peak_cpu_pct={peak_cpu:.0} server_rss_idle_mib={rss_idle:.0} server_rss_end_mib={rss_end:.0} server_peak_rss_mib={peak_rss:.0}",
        if o.server.is_some() { 0 } else { o.servers },
        o.prefetch.unwrap_or(0),
        o.workers,
        o.slots,
        o.tasks,
        o.batch,
        o.duration_ms,
        o.rate,
        finished,
        o.tasks as f64 / submit_s,
        acked as f64 / e2e_s,
        percentile(&all, 0.5),
        percentile(&all, 0.99),
        percentile(&api, 0.5),
        percentile(&api, 0.99),
        api.len(),
        server_cpu_s * 1e6 / acked.max(1) as f64,
    );
    println!("series={}", csv.display());
    println!("distribution={}", dist.display());
    drop(group);
    assert!(
        finished,
        "only {acked} of {} ends acknowledged within {:?}",
        o.tasks, o.timeout
    );
    // One end per task, no more: anything else is a counting (or a server) bug.
    assert_eq!(
        acked, o.tasks,
        "{acked} task ends acknowledged for {} tasks",
        o.tasks
    );
}

fn write_csv(path: &Path, series: &[Second]) {
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).expect("csv file"));
    writeln!(
        f,
        "t_s,submitted,started,acknowledged,server_cpu_pct,server_rss_mib,harness_cpu_pct,api_requests,api_p50_ms,api_p99_ms,submit_to_start_p50_ms,submit_to_start_p99_ms"
    )
    .expect("csv");
    for r in series {
        writeln!(
            f,
            "{},{},{},{},{:.1},{:.1},{:.1},{},{:.2},{:.2},{:.1},{:.1}",
            r.t,
            r.submitted,
            r.started,
            r.acknowledged,
            r.server_cpu_pct,
            r.server_rss_mib,
            r.harness_cpu_pct,
            r.api_requests,
            r.api_p50_ms,
            r.api_p99_ms,
            r.start_p50_ms,
            r.start_p99_ms
        )
        .expect("csv");
    }
}

/// The latency distributions of the whole run, for plots: one row per quantile (every
/// percent, then the tail in finer steps), submit→start and API status in ms.
fn write_distribution(path: &Path, start: &[f64], api: &[f64]) {
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).expect("distribution file"));
    writeln!(f, "quantile,submit_to_start_ms,api_ms").expect("distribution");
    let tail = [
        0.991, 0.992, 0.993, 0.994, 0.995, 0.996, 0.997, 0.998, 0.999, 0.9999,
    ];
    let quantiles = (0..100).map(|q| q as f64 / 100.0).chain(tail).chain([1.0]);
    for q in quantiles {
        writeln!(
            f,
            "{q},{:.3},{:.3}",
            percentile(start, q),
            percentile(api, q)
        )
        .expect("distribution");
    }
}

/// What one run of the queued case measured.
#[derive(Clone, Copy, Debug)]
struct QueuedFigures {
    ack_s: f64,
    /// Server RSS right after the acknowledgement, and `--settle` seconds later.
    rss_acked_mib: f64,
    rss_idle_mib: f64,
    peak_rss_mib: f64,
    restart_s: f64,
    rss_restarted_mib: f64,
    peak_restarted_mib: f64,
}

/// The job every run of the queued case submits: what a person writes, each task's
/// name and command, every other field at its default (serializing `TaskSpec` whole
/// would spell out every default: 2× the bytes).
fn queued_body(tasks: u64) -> Vec<u8> {
    let tasks: Vec<serde_json::Value> = (0..tasks)
        .map(|i| serde_json::json!({"name": format!("t{i}"), "command": ["sleep", "1"]}))
        .collect();
    serde_json::to_vec(&serde_json::json!({"name": "queued", "tasks": tasks})).expect("encode")
}

/// One run: `binary` as a fresh server, the job submitted, RSS read, the server stopped
/// (SIGTERM) and started again on the same data directory until it serves every task.
async fn queued_case(
    o: &Options,
    binary: &Path,
    label: &str,
    data: &Path,
    body: &[u8],
) -> QueuedFigures {
    let server = ServerProc::start(binary, data);
    let rss_before = rss_mib(server.pid(), "VmRSS:");
    // Sent with an idempotency key, and again with the same key while the server
    // answers 503 (as `Client::submit_job` does): `ack_s` is until the job is
    // acknowledged, `first_answer_s` until the first answer, whatever it said.
    let key = drover_client::new_idempotency_key();
    let http = reqwest::Client::new();
    let mut next_body = body.to_vec();
    let t = Instant::now();
    let mut first_answer_s = None;
    let mut refusals = Vec::new();
    let reply = loop {
        let answer = http
            .post(format!("{}/v1/jobs", server.url))
            .bearer_auth(&server.token)
            .header(drover_client::IDEMPOTENCY_HEADER, &key)
            .header("content-type", "application/json")
            .body(std::mem::take(&mut next_body))
            .send()
            .await
            .expect("submit the job");
        first_answer_s.get_or_insert(t.elapsed().as_secs_f64());
        let status = answer.status();
        let bytes = answer.bytes().await.expect("the answer");
        if status.is_success() {
            break bytes;
        }
        assert!(
            status == reqwest::StatusCode::SERVICE_UNAVAILABLE && t.elapsed() < o.timeout,
            "{status}: {}",
            String::from_utf8_lossy(&bytes)
        );
        let text = String::from_utf8_lossy(&bytes);
        let code = text
            .split("\"code\":\"")
            .nth(1)
            .and_then(|r| r.split('"').next())
            .unwrap_or("?")
            .to_string();
        eprintln!(
            "503 {code} after {:.1} s; sending again with the same key",
            t.elapsed().as_secs_f64()
        );
        refusals.push(code);
        next_body = body.to_vec();
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let ack_s = t.elapsed().as_secs_f64();
    let resp: SubmitResponse = serde_json::from_slice(&reply).expect("a submit response");
    assert_eq!(resp.count, o.tasks);
    let rss_acked = rss_mib(server.pid(), "VmRSS:");
    // Idle: what stays once the submission's transient copies are gone.
    tokio::time::sleep(Duration::from_secs(o.settle_s)).await;
    let rss_idle = rss_mib(server.pid(), "VmRSS:");
    let peak_queued = rss_mib(server.pid(), "VmHWM:");
    let disk_mib = dir_size(data) as f64 / (1 << 20) as f64;

    server.stop();
    let t = Instant::now();
    // The same data directory (on a new port: the endpoint file tells it).
    let again = ServerProc::start(binary, data);
    let client = Client::new(again.url.clone(), Some(again.token.clone()));
    let deadline = Instant::now() + Duration::from_secs(300);
    let held = loop {
        if let Ok(c) = client.cluster().await
            && c.tasks.get(&TaskState::Ready).copied().unwrap_or(0) >= o.tasks
        {
            // More than submitted would mean a resent submission was taken twice.
            break c.tasks.values().sum::<u64>();
        }
        assert!(
            Instant::now() < deadline,
            "the restarted server never served"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let restart_s = t.elapsed().as_secs_f64();
    let rss_restarted = rss_mib(again.pid(), "VmRSS:");
    let peak_restarted = rss_mib(again.pid(), "VmHWM:");
    assert_eq!(held, o.tasks, "tasks held after the restart");
    println!(
        "bench=scale_queued build={label} tasks={} body_mib={:.0} ack_s={ack_s:.2} first_answer_s={:.2} refusals={} tasks_per_s={:.0} server_rss_before_mib={rss_before:.0} server_rss_queued_mib={rss_acked:.0} server_rss_idle_mib={rss_idle:.0} server_peak_rss_mib={peak_queued:.0} bytes_per_queued_task={:.0} data_dir_mib={disk_mib:.0} restart_to_serving_s={restart_s:.2} restarted_rss_mib={rss_restarted:.0} restarted_peak_rss_mib={peak_restarted:.0} tasks_held={held}",
        o.tasks,
        body.len() as f64 / (1 << 20) as f64,
        first_answer_s.unwrap_or(f64::NAN),
        if refusals.is_empty() {
            "none".to_string()
        } else {
            refusals.join(",")
        },
        o.tasks as f64 / ack_s,
        (rss_idle - rss_before) * 1024.0 * 1024.0 / o.tasks as f64,
    );
    again.stop();
    QueuedFigures {
        ack_s,
        rss_acked_mib: rss_acked,
        rss_idle_mib: rss_idle,
        peak_rss_mib: peak_queued,
        restart_s,
        rss_restarted_mib: rss_restarted,
        peak_restarted_mib: peak_restarted,
    }
}

/// Reads one figure of a run.
type Figure = fn(&QueuedFigures) -> f64;

/// The queued case for this build (and `--baseline`, alternating run by run, so both
/// see the same machine), then a table of medians side by side.
async fn queued_runs(o: &Options, dir: &Path) {
    let body = queued_body(o.tasks);
    let mut builds: Vec<(&str, PathBuf, Vec<QueuedFigures>)> = Vec::new();
    if let Some(b) = &o.baseline {
        builds.push(("baseline", b.clone(), Vec::new()));
    }
    builds.push(("this", PathBuf::from(DROVER), Vec::new()));
    for run in 0..o.runs {
        for (label, binary, figures) in builds.iter_mut() {
            let data = dir.join(format!("server-queued-{label}-{run}"));
            figures.push(queued_case(o, binary, label, &data, &body).await);
            let _ = std::fs::remove_dir_all(&data);
        }
    }
    let median = |v: &[QueuedFigures], f: Figure| {
        let s = sorted(v.iter().map(f).collect());
        s[s.len() / 2]
    };
    let rows: [(&str, Figure, &str); 7] = [
        ("acknowledged (s)", |f| f.ack_s, "<= 5"),
        ("RSS just after (MiB)", |f| f.rss_acked_mib, ""),
        ("RSS idle, queued (MiB)", |f| f.rss_idle_mib, "<= 1024"),
        ("peak RSS (MiB)", |f| f.peak_rss_mib, ""),
        ("restart to serving (s)", |f| f.restart_s, "<= 5"),
        (
            "RSS after restart (MiB)",
            |f| f.rss_restarted_mib,
            "<= 1024",
        ),
        ("peak RSS of restart (MiB)", |f| f.peak_restarted_mib, ""),
    ];
    println!(
        "queued: {} tasks, medians of {} run(s) per build",
        o.tasks, o.runs
    );
    let header: Vec<String> = builds.iter().map(|(l, _, _)| format!("{l:>10}")).collect();
    println!("{:<28}{} {:>8}", "figure", header.join(""), "goal");
    for (name, f, goal) in rows {
        let cells: Vec<String> = builds
            .iter()
            .map(|(_, _, v)| format!("{:>10.2}", median(v, f)))
            .collect();
        println!("{name:<28}{} {goal:>8}", cells.join(""));
    }
}

fn dir_size(path: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(path) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_size(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

#[tokio::main]
async fn main() {
    // reqwest (`rustls-no-provider`) panics at its first client without a default
    // provider; the queued case builds one before any `drover_client::Client`.
    drover_client::tls::install_provider();
    let o = Options::parse();
    let dir = std::env::temp_dir().join(format!("drover-scale-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    if o.runs("drain") {
        drain_case(&o, &dir).await;
    }
    if o.server.is_none() && o.runs("queued") {
        queued_runs(&o, &dir).await;
    }
    let _ = std::fs::remove_dir_all(&dir);
}
