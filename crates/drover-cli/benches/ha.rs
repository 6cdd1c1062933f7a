//! Replication benchmarks through real processes on loopback: groups of `drover server`
//! processes (no worker in the first three cases: the submitted tasks stay queued, so
//! only the write path is measured). Prints one line per case:
//!
//! - `ha_submit`: single-task submissions from `clients` concurrent clients for a fixed
//!   time, 1 server vs 3 (each write fsynced on a majority and applied before its
//!   answer): tasks/s, median of 3 rounds.
//! - `ha_job`: jobs of 1,000 tasks submitted one after another, 1 server vs 3: tasks/s,
//!   median of 3 rounds.
//! - `ha_failover`: kill -9 of the leader of 3, repeatedly (the killed server restarted
//!   and caught up before the next kill): time from the kill to the first write
//!   accepted through a surviving server; median, p99, max.
//!
//! - `ha_failover_loaded`: the same kills under the load: real `drover worker`
//!   processes with 200 one-CPU slots in all, 200 long tasks running and 10,000 queued,
//!   and clients submitting without pause (the SDK: an idempotency key, retried on a
//!   lost answer or a 503). Per kill: to a survivor saying it leads (`/v1/health`), to
//!   the first write accepted, to every worker connected to the new leader, and to the
//!   killed server restarted and caught up. Then the client errors, the submissions'
//!   latency, the terms each kill cost (more than one: a split vote or a refused
//!   candidate), the elections between kills (none is caused by a kill: spurious), and
//!   the tasks whose started attempt did not end in success (a running task killed or
//!   restarted).
//! - `ha_restart_tail`: one server holding N tasks submitted as jobs of 1,000 since its
//!   last snapshot (all in the log tail), `kill -9`ed and started again: time from the
//!   start of the process to an answer about the newest task.
//!
//! `cargo bench -p drover-cli --bench ha` (full), `-- --quick` (smoke: short rounds, 3
//! kills, a small load). `DROVER_BENCH_KILLS` sets the number of kills (default 20);
//! names of cases as arguments run only those (`-- ha_failover_loaded`).
//! `DROVER_BENCH_LOG` sets the servers' log filter (default `warn`; the logs are kept in
//! the group's directory, printed at the end, when `DROVER_BENCH_KEEP` is set).

mod common;

use common::rss_mib;
use drover_client::{Client, ListQuery};
use drover_types::{ArraySpec, JobSpec, Resources, TaskSpec, TaskState};
use std::collections::BTreeMap;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

const DROVER: &str = env!("CARGO_BIN_EXE_drover");
const TOKEN: &str = "bench-cluster-token";
const PEER_TOKEN: &str = "bench-peer-token";

/// A group of servers (and workers), each its own process; all killed on drop.
struct Group {
    dir: PathBuf,
    addrs: Vec<String>,
    procs: Vec<Option<Child>>,
    workers: Vec<Child>,
    /// The servers' `DROVER_LOG`.
    log_filter: String,
}

impl Group {
    fn start(n: usize, tag: &str) -> Group {
        let dir =
            std::env::temp_dir().join(format!("drover-bench-ha-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        let listeners: Vec<TcpListener> = (0..n)
            .map(|_| TcpListener::bind("127.0.0.1:0").expect("a free port"))
            .collect();
        let mut addrs: Vec<String> = listeners
            .iter()
            .map(|l| l.local_addr().unwrap().to_string())
            .collect();
        drop(listeners);
        addrs.sort();
        let mut g = Group {
            dir,
            addrs,
            procs: (0..n).map(|_| None).collect(),
            workers: Vec::new(),
            log_filter: std::env::var("DROVER_BENCH_LOG").unwrap_or_else(|_| "warn".into()),
        };
        for i in 0..n {
            g.spawn(i);
        }
        g
    }

    fn spawn(&mut self, i: usize) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join(format!("server-{i}.log")))
            .expect("a server log");
        let mut c = Command::new(DROVER);
        c.arg("--data-dir")
            .arg(self.dir.join(format!("s{i}")))
            .args(["--token", TOKEN, "server", "--listen", &self.addrs[i]])
            // Plain HTTP: a group needs certificates of one CA, and the figures here
            // (replication, failover) are compared with runs from before TLS.
            .arg("--insecure-http")
            .env("DROVER_LOG", &self.log_filter)
            .stdout(Stdio::null())
            .stderr(Stdio::from(log));
        if self.addrs.len() > 1 {
            c.args(["--peers", &self.addrs.join(","), "--peer-token", PEER_TOKEN]);
        }
        self.procs[i] = Some(c.spawn().expect("start a server"));
    }

    /// A `drover worker` given every server, with `cpus` one-CPU slots. No cgroups: the
    /// bench measures the servers, and leaves nothing behind in /sys/fs/cgroup.
    fn add_worker(&mut self, name: &str, cpus: u32) {
        let log = std::fs::File::create(self.dir.join(format!("worker-{name}.log")))
            .expect("a worker log");
        let urls: Vec<String> = (0..self.addrs.len()).map(|i| self.url(i)).collect();
        let child = Command::new(DROVER)
            .arg("--data-dir")
            .arg(self.dir.join(format!("w-{name}")))
            .args(["--server", &urls.join(","), "--token", TOKEN])
            .args([
                "worker",
                "--name",
                name,
                "--no-cgroups",
                "--kill-grace",
                "1s",
            ])
            .args(["--cpus", &cpus.to_string()])
            .env("DROVER_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .expect("start a worker");
        self.workers.push(child);
    }

    fn kill(&mut self, i: usize) {
        if let Some(mut c) = self.procs[i].take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn url(&self, i: usize) -> String {
        format!("http://{}", self.addrs[i])
    }

    fn client(&self) -> Client {
        let urls: Vec<String> = (0..self.addrs.len()).map(|i| self.url(i)).collect();
        Client::new(urls.join(","), Some(TOKEN.into()))
    }

    fn client_of(&self, i: usize) -> Client {
        Client::new(self.url(i), Some(TOKEN.into()))
    }

    /// The running servers that say they lead.
    async fn leaders(&self) -> Vec<usize> {
        let mut leaders = Vec::new();
        for i in 0..self.addrs.len() {
            if self.procs[i].is_some()
                && let Ok(h) = self.client_of(i).health().await
                && h.leader
            {
                leaders.push(i);
            }
        }
        leaders
    }

    /// The running server that says it leads, once exactly one does.
    async fn leader(&self) -> usize {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let [one] = self.leaders().await.as_slice() {
                return *one;
            }
            assert!(Instant::now() < deadline, "no single leader");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The current term as server `i` sees it.
    async fn term_on(&self, i: usize) -> Option<u64> {
        let list = self.client_of(i).stale(true).servers().await.ok()?;
        list.first().map(|s| s.term)
    }

    /// Waits until the leader sees server `i` reachable and close behind it.
    async fn caught_up(&self, i: usize) {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let leader = self.leader().await;
            if let Ok(list) = self.client_of(leader).servers().await {
                let me = list
                    .iter()
                    .find(|s| s.id == leader as u64 + 1)
                    .and_then(|s| s.last_applied);
                let it = list.iter().find(|s| s.id == i as u64 + 1);
                if let (Some(me), Some(it)) = (me, it)
                    && it.reachable
                    && it.last_applied.is_some_and(|a| a + 50 >= me)
                {
                    return;
                }
            }
            assert!(Instant::now() < deadline, "server {i} never caught up");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until server `leader` lists `n` workers, all connected and active.
    async fn workers_connected(&self, leader: usize, n: usize) {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            if let Ok(list) = self.client_of(leader).workers().await
                && list
                    .iter()
                    .filter(|w| w.connected && w.state == drover_types::WorkerState::Active)
                    .count()
                    >= n
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the workers never all connected to server {leader}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        // Workers first, politely: they stop their tasks before they exit.
        for w in &self.workers {
            let _ = Command::new("kill")
                .args(["-TERM", &w.id().to_string()])
                .status();
        }
        let deadline = Instant::now() + Duration::from_secs(15);
        for w in &mut self.workers {
            while Instant::now() < deadline && matches!(w.try_wait(), Ok(None)) {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = w.kill();
            let _ = w.wait();
        }
        for i in 0..self.procs.len() {
            self.kill(i);
        }
        if std::env::var_os("DROVER_BENCH_KEEP").is_some() {
            eprintln!("kept {}", self.dir.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn percentile(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

/// `p50=… p99=… max=…` of durations in seconds.
fn spread(mut v: Vec<f64>) -> String {
    if v.is_empty() {
        return "p50=- p99=- max=-".into();
    }
    let p50 = median(v.clone());
    let p99 = percentile(&mut v, 0.99);
    let max = v.iter().cloned().fold(0.0, f64::max);
    format!("p50={p50:.2} p99={p99:.2} max={max:.2}")
}

/// Tasks/s of single submissions from `clients` concurrent clients for `secs`.
async fn submit_rate(client: &Client, clients: usize, secs: f64) -> f64 {
    let until = Instant::now() + Duration::from_secs_f64(secs);
    let start = Instant::now();
    let mut handles = Vec::new();
    for _ in 0..clients {
        let c = client.clone();
        handles.push(tokio::spawn(async move {
            let mut n = 0u64;
            while Instant::now() < until {
                c.submit_task(&TaskSpec::command(["/bin/true"]))
                    .await
                    .expect("submit");
                n += 1;
            }
            n
        }));
    }
    let mut total = 0;
    for h in handles {
        total += h.await.expect("a client");
    }
    total as f64 / start.elapsed().as_secs_f64()
}

/// Tasks/s of `jobs` jobs of 1,000 tasks submitted one after another.
async fn job_rate(client: &Client, jobs: usize) -> f64 {
    let job = JobSpec {
        name: "bench".into(),
        tasks: vec![TaskSpec {
            array: Some(ArraySpec { start: 0, end: 999 }),
            ..TaskSpec::command(["/bin/true"])
        }],
        ..Default::default()
    };
    let start = Instant::now();
    for _ in 0..jobs {
        client.submit_job(&job).await.expect("submit a job");
    }
    (jobs * 1000) as f64 / start.elapsed().as_secs_f64()
}

/// Whether the case named `name` runs: every case when no name is given.
fn wanted(name: &str) -> bool {
    let names: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    names.is_empty() || names.iter().any(|n| n == name)
}

#[tokio::main]
async fn main() {
    let quick = std::env::args().any(|a| a == "--quick")
        || std::env::var_os("DROVER_BENCH_QUICK").is_some();
    let secs = if quick { 1.0 } else { 5.0 };
    let jobs = if quick { 2 } else { 10 };
    let clients = 16;
    let kills: usize = if quick {
        3
    } else {
        std::env::var("DROVER_BENCH_KILLS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(20)
    };

    if wanted("ha_submit") || wanted("ha_job") {
        throughput(secs, jobs, clients).await;
    }
    if wanted("ha_failover") {
        failover_idle(kills).await;
    }
    if wanted("ha_failover_loaded") {
        failover_loaded(kills, quick).await;
    }
    if wanted("ha_restart_tail") {
        restart_tail(quick).await;
    }
}

async fn throughput(secs: f64, jobs: usize, clients: usize) {
    for n in [1usize, 3] {
        let g = Group::start(n, &format!("tp{n}"));
        g.leader().await;
        let client = g.client();
        let mut rates = Vec::new();
        for _ in 0..3 {
            rates.push(submit_rate(&client, clients, secs).await);
        }
        println!(
            "bench=ha_submit servers={n} clients={clients} round_s={secs} tasks_per_s={:.0} (median of 3: {:?})",
            median(rates.clone()),
            rates.iter().map(|r| r.round()).collect::<Vec<_>>()
        );
        let mut rates = Vec::new();
        for _ in 0..3 {
            rates.push(job_rate(&client, jobs).await);
        }
        println!(
            "bench=ha_job servers={n} jobs={jobs} tasks_per_job=1000 tasks_per_s={:.0} (median of 3: {:?})",
            median(rates.clone()),
            rates.iter().map(|r| r.round()).collect::<Vec<_>>()
        );
    }
}

async fn failover_idle(kills: usize) {
    let mut g = Group::start(3, "failover");
    let mut leader = g.leader().await;
    let probe = TaskSpec::command(["/bin/true"]);
    let mut took = Vec::new();
    for _ in 0..kills {
        let killed_at = Instant::now();
        g.kill(leader);
        'accepted: loop {
            for i in (0..3).filter(|i| *i != leader) {
                let c = g.client_of(i);
                if c.submit_task(&probe).await.is_ok() {
                    break 'accepted;
                }
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        took.push(killed_at.elapsed().as_secs_f64());
        let next = g.leader().await;
        assert_ne!(next, leader, "the killed server leads");
        g.spawn(leader);
        g.caught_up(leader).await;
        leader = next;
    }
    let p50 = median(took.clone());
    let p99 = percentile(&mut took, 0.99);
    let max = took.iter().cloned().fold(0.0, f64::max);
    println!(
        "bench=ha_failover servers=3 kills={kills} kill_to_write_s_p50={p50:.2} p99={p99:.2} max={max:.2}"
    );
}

/// What the continuous submitters saw.
#[derive(Default)]
struct Submitted {
    latencies: Vec<f64>,
    errors: Vec<String>,
}

/// `n` clients, each submitting one task after another (pausing `pause` after each
/// answer) through every server's URL with the SDK, until `stop`.
fn start_submitters(
    g: &Group,
    n: usize,
    pause: Duration,
    stop: Arc<AtomicBool>,
) -> Vec<tokio::task::JoinHandle<Submitted>> {
    (0..n)
        .map(|_| {
            let (client, stop) = (g.client(), stop.clone());
            tokio::spawn(async move {
                let probe = TaskSpec {
                    resources: Resources::cpus(1000),
                    ..TaskSpec::command(["/bin/true"])
                };
                let mut seen = Submitted::default();
                while !stop.load(Ordering::Relaxed) {
                    let asked = Instant::now();
                    match client.submit_task(&probe).await {
                        Ok(_) => seen.latencies.push(asked.elapsed().as_secs_f64()),
                        Err(e) => seen.errors.push(e.to_string()),
                    }
                    tokio::time::sleep(pause).await;
                }
                seen
            })
        })
        .collect()
}

/// Every task the group holds, page by page, as server `i` lists them.
async fn all_tasks(g: &Group, i: usize) -> Vec<drover_proto::api::TaskSummary> {
    let client = g.client_of(i);
    let mut out = Vec::new();
    let mut cursor = None;
    loop {
        let page = client
            .list(&ListQuery {
                limit: Some(1000),
                cursor: cursor.take(),
                ..Default::default()
            })
            .await
            .expect("a page of tasks");
        out.extend(page.tasks);
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => return out,
        }
    }
}

async fn running_count(g: &Group, i: usize) -> usize {
    g.client_of(i)
        .list(&ListQuery {
            state: Some("running".into()),
            limit: Some(1000),
            ..Default::default()
        })
        .await
        .map(|l| l.tasks.len())
        .unwrap_or(0)
}

async fn failover_loaded(kills: usize, quick: bool) {
    // 200 one-CPU slots over four workers, 10,000 more tasks than slots; a submission
    // every ~80 ms from each of four clients (~50/s in all, continuously).
    let (n_workers, cpus, queued, submitters) = if quick {
        (2, 10, 500, 2)
    } else {
        (4, 50, 10_000, 4)
    };
    let slots = (n_workers * cpus) as u64;
    let mut g = Group::start(3, "loaded");
    let mut leader = g.leader().await;
    for w in 0..n_workers {
        g.add_worker(&format!("w{w}"), cpus);
    }
    g.workers_connected(leader, n_workers as usize).await;
    // Long tasks, ending at different times (40 to 80 s): each spans several kills,
    // and slots free up and are filled again all along.
    let load = TaskSpec {
        shell: true,
        resources: Resources::cpus(1000),
        array: Some(ArraySpec {
            start: 1,
            end: (slots + queued) as u32,
        }),
        ..TaskSpec::command(["sleep $((40 + DROVER_TASK_INDEX % 40))"])
    };
    g.client().submit_task(&load).await.expect("the load");
    let deadline = Instant::now() + Duration::from_secs(120);
    while (running_count(&g, leader).await as u64) < slots {
        assert!(Instant::now() < deadline, "the slots never filled");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let stop = Arc::new(AtomicBool::new(false));
    let handles = start_submitters(&g, submitters, Duration::from_millis(80), stop.clone());
    tokio::time::sleep(Duration::from_secs(2)).await;

    let probe = TaskSpec {
        resources: Resources::cpus(1000),
        ..TaskSpec::command(["/bin/true"])
    };
    let (mut to_leader, mut to_write, mut to_workers, mut to_caught_up) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut terms_per_kill = Vec::new();
    let mut between = 0u64;
    let mut last_term = g.term_on(leader).await.expect("a term");
    for k in 0..kills {
        let term_before = g.term_on(leader).await.expect("a term");
        between += term_before - last_term;
        let survivors: Vec<usize> = (0..3).filter(|i| *i != leader).collect();
        let killed_at = Instant::now();
        g.kill(leader);
        let elected = async {
            loop {
                for &i in &survivors {
                    if g.client_of(i).health().await.is_ok_and(|h| h.leader) {
                        return (i, killed_at.elapsed().as_secs_f64());
                    }
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        };
        let written = async {
            loop {
                for &i in &survivors {
                    if g.client_of(i).submit_task(&probe).await.is_ok() {
                        return killed_at.elapsed().as_secs_f64();
                    }
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        };
        let ((next, elected_s), write_s) = tokio::join!(elected, written);
        g.workers_connected(next, n_workers as usize).await;
        let workers_s = killed_at.elapsed().as_secs_f64();
        let term_after = g.term_on(next).await.expect("a term");
        terms_per_kill.push(term_after - term_before);
        let restarted = Instant::now();
        g.spawn(leader);
        g.caught_up(leader).await;
        let caught_up_s = restarted.elapsed().as_secs_f64();
        eprintln!(
            "kill {k}: server {leader} killed; server {next} leads after {elected_s:.2} s (term {term_before} -> {term_after}), a write after {write_s:.2} s, workers back after {workers_s:.2} s; the killed one restarted and caught up in {caught_up_s:.2} s"
        );
        to_leader.push(elected_s);
        to_write.push(write_s);
        to_workers.push(workers_s);
        to_caught_up.push(caught_up_s);
        // A moment of ordinary running between kills, where an election would be
        // spurious (counted at the next kill).
        tokio::time::sleep(Duration::from_secs(1)).await;
        leader = g.leader().await;
        last_term = term_after;
    }
    let final_term = g.term_on(leader).await.expect("a term");
    between += final_term - last_term;
    stop.store(true, Ordering::Relaxed);
    let mut seen = Submitted::default();
    for h in handles {
        let s = h.await.expect("a submitter");
        seen.latencies.extend(s.latencies);
        seen.errors.extend(s.errors);
    }

    // Attempts that started and did not succeed: running tasks killed or restarted.
    // Attempts that never started and were given back to the queue spent nothing.
    let tasks = all_tasks(&g, leader).await;
    let running_at_end = tasks
        .iter()
        .filter(|t| t.state == TaskState::Running)
        .count();
    let mut broken = Vec::new();
    let mut given_back = 0;
    let client = g.client_of(leader);
    for t in tasks
        .iter()
        .filter(|t| t.attempt.0 > 1 || (t.state.is_final() && t.state != TaskState::Succeeded))
    {
        let info = client.task(&t.id.0.to_string()).await.expect("a task");
        for a in &info.attempts {
            let ended_badly = a.failure.is_some()
                || a.outcome
                    .as_ref()
                    .is_some_and(|o| *o != drover_types::Outcome::Exited { code: 0 });
            if a.started_at.is_some() && ended_badly {
                broken.push(format!(
                    "task {} attempt {}: {:?}",
                    t.id.0, a.attempt.0, a.failure
                ));
            } else if a.started_at.is_none() && a.failure.is_some() {
                given_back += 1;
            }
        }
    }
    let mut by_cause: BTreeMap<String, usize> = BTreeMap::new();
    for b in &broken {
        let cause = b.split_once(": ").map(|(_, c)| c).unwrap_or(b);
        *by_cause.entry(cause.to_string()).or_default() += 1;
    }

    let label = format!(
        "bench=ha_failover_loaded servers=3 kills={kills} workers={n_workers} slots={slots} queued={queued}"
    );
    println!("{label} kill_to_leader_s {}", spread(to_leader));
    println!("{label} kill_to_write_s {}", spread(to_write));
    println!("{label} kill_to_workers_back_s {}", spread(to_workers));
    println!("{label} restart_to_caught_up_s {}", spread(to_caught_up));
    println!("{label} terms_per_kill={terms_per_kill:?} elections_without_a_kill={between}");
    println!(
        "{label} submitters={submitters} submissions={} client_errors={} latency_s {}",
        seen.latencies.len(),
        seen.errors.len(),
        spread(seen.latencies)
    );
    println!(
        "{label} running_at_end={running_at_end} started_attempts_killed_or_restarted={} (by cause: {by_cause:?}) unstarted_attempts_given_back={given_back}",
        broken.len()
    );
    for e in seen.errors.iter().take(5) {
        eprintln!("client error: {e}");
    }
    for b in broken.iter().take(5) {
        eprintln!("killed or restarted: {b}");
    }
}

/// Distinct tasks in jobs of `per_job`, `n` in all; the id of the last.
async fn submit_jobs(client: &Client, n: u64, per_job: u64) -> u64 {
    let mut last = 0;
    let mut i = 0;
    while i < n {
        let count = per_job.min(n - i);
        let tasks = (i..i + count)
            .map(|k| TaskSpec::command(["/bin/echo".to_string(), format!("item-{k}")]))
            .collect();
        let job = JobSpec {
            name: format!("tail-{}", i / per_job),
            tasks,
            ..Default::default()
        };
        let r = client.submit_job(&job).await.expect("submit a job");
        last = r.first.0 + count - 1;
        i += count;
    }
    last
}

async fn restart_tail(quick: bool) {
    let (n, per_job) = if quick {
        (10_000, 1_000)
    } else {
        (1_000_000, 1_000)
    };
    let mut g = Group::start(1, "tail");
    g.leader().await;
    let client = g.client();
    let started = Instant::now();
    let last = submit_jobs(&client, n, per_job).await;
    let submit_s = started.elapsed().as_secs_f64();
    let snapshot = g.dir.join("s0/server/snapshot.bin");
    let snapshotted = snapshot.exists();
    g.kill(0);
    let restarted = Instant::now();
    g.spawn(0);
    let deadline = restarted + Duration::from_secs(300);
    loop {
        if client.task(&last.to_string()).await.is_ok() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the restarted server never served"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let serving_s = restarted.elapsed().as_secs_f64();
    let pid = g.procs[0].as_ref().map(|c| c.id()).unwrap_or(0);
    println!(
        "bench=ha_restart_tail tasks={n} jobs_of={per_job} submitted_in_s={submit_s:.1} snapshot_before_kill={snapshotted} kill9_restart_to_serving_s={serving_s:.2} rss_mib={:.0}",
        rss_mib(pid)
    );
}
