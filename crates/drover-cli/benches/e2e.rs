//! End-to-end benchmarks through real processes: one `drover server`, one
//! `drover worker` with 2 CPU slots, on loopback. Prints one line per case:
//!
//! - `e2e_true`: N `/bin/true` tasks (one job), from submission to the last end, beside
//!   `seq N | xargs -P 2 -n 1 /bin/true` in the same run (the machine's physical limit
//!   for spawning processes two at a time). `ratio` = xargs time / drover time (1.0 is
//!   as fast as xargs). Also the server's and the worker's CPU time per task.
//! - `submit_latency`: single-task submissions one after another (each fsynced and
//!   applied before it is acknowledged): p50 and p99.
//! - `submit_job`: one job of 100,000 tasks: time to acknowledge, and the server's RSS
//!   with them queued (the worker is drained first so they stay queued).
//! - `server_rss_finished`: 100,000 `/bin/true` tasks run to completion (on a second
//!   worker with 8 one-CPU slots, to finish sooner), then the server's RSS.
//!
//! - `list_page`: a page of 100 tasks while the server holds them all: from the start,
//!   from a cursor in the middle, and with a filter that matches almost nothing.
//!
//! - `e2e_sleep`: N tasks of `sleep 0.05` on the same worker: the makespan against the
//!   ideal (N × 0.05 s / 2 slots). `ratio` = drover time / ideal (1.0 is ideal).
//!
//! `cargo bench -p drover-cli --bench e2e` (full), `-- --quick` (1/100 scale, smoke).
//!
//! `-- --throughput` runs only `e2e_true` and `e2e_sleep`, three rounds each, with the
//! default policy, and prints medians. With `DROVER_BENCH_BASELINE=/path/to/drover`
//! (an older build) it runs that binary's cluster beside this one's, interleaved round
//! by round, each beside its own `xargs` run: before and after from one run.

mod common;

use common::{Proc, cpu_ms, status_kib, wait_for_file};
use drover_client::{Client, ListQuery};
use drover_types::{ArraySpec, JobSpec, TaskSpec};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const DROVER: &str = env!("CARGO_BIN_EXE_drover");

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn percentile(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v[i]
}

fn xargs_seconds(n: u64) -> f64 {
    let start = Instant::now();
    let status = Command::new("sh")
        .arg("-c")
        .arg(format!("seq {n} | xargs -P 2 -n 1 /bin/true"))
        .status()
        .expect("sh");
    assert!(status.success());
    start.elapsed().as_secs_f64()
}

/// One server and one worker with 2 one-CPU slots, from `binary`, in a fresh data dir.
struct Cluster {
    client: Client,
    spid: u32,
    wpid: u32,
    _worker: Proc,
    _server: Proc,
    dir: PathBuf,
}

impl Cluster {
    async fn start(binary: &str, label: &str) -> Cluster {
        let dir = std::env::temp_dir().join(format!("drover-bench-{}-{label}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        let server = Proc(
            Command::new(binary)
                .args(["--data-dir"])
                .arg(&dir)
                .args(["server", "--listen", "127.0.0.1:0"])
                .env("DROVER_LOG", "warn")
                .stderr(Stdio::null())
                .spawn()
                .expect("start the server"),
        );
        let url = wait_for_file(&dir.join("server/endpoint"), Duration::from_secs(30));
        let token = wait_for_file(&dir.join("server/token"), Duration::from_secs(30));
        let worker = Proc(
            Command::new(binary)
                .args(["--data-dir"])
                .arg(&dir)
                .args(["worker", "--name", "bench", "--cpus", "2", "--memory", "4G"])
                .env("DROVER_LOG", "warn")
                .stderr(Stdio::null())
                .spawn()
                .expect("start the worker"),
        );
        // Over TLS (the server's default) with the CA it made, as the CLI here would.
        let client = common::local_client(&dir, url, token);
        let deadline = Instant::now() + Duration::from_secs(30);
        while client.workers().await.map(|w| w.is_empty()).unwrap_or(true) {
            assert!(Instant::now() < deadline, "the worker never joined");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Cluster {
            client,
            spid: server.0.id(),
            wpid: worker.0.id(),
            _worker: worker,
            _server: server,
            dir,
        }
    }

    /// Runs `n` copies of `command` as one array job; seconds from submission to the
    /// last end, and the server's and worker's CPU milliseconds meanwhile.
    async fn run_array(&self, n: u64, command: &[&str]) -> (f64, u64, u64) {
        let (s0, w0) = (cpu_ms(self.spid), cpu_ms(self.wpid));
        let task = TaskSpec {
            array: Some(ArraySpec {
                start: 0,
                end: (n - 1) as u32,
            }),
            ..TaskSpec::command(command.iter().copied())
        };
        let start = Instant::now();
        let resp = self.client.submit_task(&task).await.expect("submit");
        wait_job(&self.client, resp.job.0).await;
        let secs = start.elapsed().as_secs_f64();
        (secs, cpu_ms(self.spid) - s0, cpu_ms(self.wpid) - w0)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `--throughput`: e2e_true and e2e_sleep, default policy, three rounds, medians; the
/// baseline binary's cluster (if given) interleaved with this build's.
async fn throughput(quick: bool) {
    let n_true: u64 = if quick { 200 } else { 10_000 };
    let n_sleep: u64 = if quick { 40 } else { 2_000 };
    let rounds = 3;
    let mut builds: Vec<(&str, String)> = Vec::new();
    if let Ok(b) = std::env::var("DROVER_BENCH_BASELINE") {
        builds.push(("before", b));
    }
    builds.push(("after", DROVER.to_string()));
    let mut clusters = Vec::new();
    for (label, binary) in &builds {
        clusters.push((*label, Cluster::start(binary, label).await));
    }
    // Per build: drover, xargs, server CPU, worker CPU (true); drover (sleep).
    let mut figures: Vec<[Vec<f64>; 5]> = (0..clusters.len()).map(|_| Default::default()).collect();
    for round in 1..=rounds {
        for (i, (label, c)) in clusters.iter().enumerate() {
            let xargs_before = xargs_seconds(n_true);
            let (drover_s, s_cpu, w_cpu) = c.run_array(n_true, &["/bin/true"]).await;
            let xargs_s = (xargs_before + xargs_seconds(n_true)) / 2.0;
            println!(
                "bench=e2e_true build={label} round={round} tasks={n_true} drover_s={drover_s:.2} xargs_s={xargs_s:.2} ratio={:.2} server_cpu_us_per_task={:.0} worker_cpu_us_per_task={:.0}",
                xargs_s / drover_s,
                s_cpu as f64 * 1000.0 / n_true as f64,
                w_cpu as f64 * 1000.0 / n_true as f64,
            );
            let f = &mut figures[i];
            f[0].push(drover_s);
            f[1].push(xargs_s);
            f[2].push(s_cpu as f64 * 1000.0 / n_true as f64);
            f[3].push(w_cpu as f64 * 1000.0 / n_true as f64);
        }
        for (i, (label, c)) in clusters.iter().enumerate() {
            let ideal = n_sleep as f64 * 0.05 / 2.0;
            let (drover_s, _, _) = c.run_array(n_sleep, &["sleep", "0.05"]).await;
            println!(
                "bench=e2e_sleep build={label} round={round} tasks={n_sleep} drover_s={drover_s:.2} ideal_s={ideal:.2} ratio={:.3}",
                drover_s / ideal
            );
            figures[i][4].push(drover_s);
        }
    }
    for (i, (label, _)) in clusters.iter().enumerate() {
        let f = &mut figures[i];
        let (d, x) = (median(&mut f[0]), median(&mut f[1]));
        let ratios: Vec<f64> = f[0].iter().zip(&f[1]).map(|(d, x)| x / d).collect();
        println!(
            "bench=e2e_true_median build={label} tasks={n_true} drover_s={d:.2} xargs_s={x:.2} ratio={:.2} server_cpu_us_per_task={:.0} worker_cpu_us_per_task={:.0}",
            median(&mut ratios.clone()),
            median(&mut f[2]),
            median(&mut f[3]),
        );
        let ideal = n_sleep as f64 * 0.05 / 2.0;
        let s = median(&mut f[4]);
        println!(
            "bench=e2e_sleep_median build={label} tasks={n_sleep} drover_s={s:.2} ideal_s={ideal:.2} ratio={:.3}",
            s / ideal
        );
    }
}

async fn wait_job(client: &Client, job: u64) {
    loop {
        let info = client.job(job).await.expect("job");
        if info.finished {
            assert!(info.succeeded, "benchmark tasks failed: {info:?}");
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::main]
async fn main() {
    let quick = std::env::args().any(|a| a == "--quick")
        || std::env::var_os("DROVER_BENCH_QUICK").is_some();
    if std::env::args().any(|a| a == "--throughput") {
        throughput(quick).await;
        return;
    }
    let n_true: u64 = if quick { 200 } else { 10_000 };
    let n_latency: usize = if quick { 20 } else { 300 };
    let n_job: u32 = if quick { 1_000 } else { 100_000 };
    let n_finished: u32 = if quick { 1_000 } else { 100_000 };

    let cluster = Cluster::start(DROVER, "main").await;
    let (client, spid, dir) = (&cluster.client, cluster.spid, &cluster.dir);

    // e2e_true, with xargs on each side to even out drift of a shared machine; once as
    // configured by default, once with prefetching on (see PolicyConfig).
    for prefetch in [0u32, 2] {
        let mut policy = client.policy().await.expect("policy");
        policy.prefetch_per_worker = prefetch;
        client.set_policy(&policy).await.expect("set policy");
        let xargs_before = xargs_seconds(n_true);
        let (drover_s, s_cpu, w_cpu) = cluster.run_array(n_true, &["/bin/true"]).await;
        let xargs_after = xargs_seconds(n_true);
        let xargs_s = (xargs_before + xargs_after) / 2.0;
        println!(
            "bench=e2e_true tasks={n_true} worker_slots=2 prefetch={prefetch} drover_s={drover_s:.2} xargs_s={xargs_s:.2} ratio={:.2} tasks_per_s={:.0} server_cpu_us_per_task={:.0} worker_cpu_us_per_task={:.0}",
            xargs_s / drover_s,
            n_true as f64 / drover_s,
            s_cpu as f64 * 1000.0 / n_true as f64,
            w_cpu as f64 * 1000.0 / n_true as f64,
        );
    }
    let mut policy = client.policy().await.expect("policy");
    policy.prefetch_per_worker = 0;
    client.set_policy(&policy).await.expect("set policy");

    // submit_latency: one task at a time.
    let mut lat = Vec::with_capacity(n_latency);
    for _ in 0..n_latency {
        let t = Instant::now();
        client
            .submit_task(&TaskSpec::command(["/bin/true"]))
            .await
            .expect("submit");
        lat.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    let p50 = median(&mut lat.clone());
    let p99 = percentile(&mut lat, 0.99);
    println!("bench=submit_latency n={n_latency} p50_ms={p50:.2} p99_ms={p99:.2}");

    // submit_job: a big job of distinct tasks, kept queued on a drained worker.
    let workers = client.workers().await.expect("workers");
    let id = workers[0].id.0;
    client
        .raw(
            reqwest::Method::POST,
            &format!("/v1/workers/{id}/drain"),
            None,
        )
        .await
        .expect("drain");
    let job = JobSpec {
        name: "big".into(),
        owner: String::new(),
        tasks: (0..n_job)
            .map(|i| TaskSpec {
                name: format!("t{i}"),
                ..TaskSpec::command(["/bin/true"])
            })
            .collect(),
    };
    let rss_before = status_kib(spid, "VmRSS:");
    let t = Instant::now();
    let resp = client.submit_job(&job).await.expect("submit job");
    let submit_s = t.elapsed().as_secs_f64();
    assert_eq!(resp.count, n_job as u64);
    let rss_after = status_kib(spid, "VmRSS:");
    println!(
        "bench=submit_job tasks={n_job} submit_s={submit_s:.2} tasks_per_s={:.0} server_rss_mib={:.1} rss_growth_mib={:.1}",
        n_job as f64 / submit_s,
        rss_after as f64 / 1024.0,
        rss_after.saturating_sub(rss_before) as f64 / 1024.0
    );
    // server_rss_finished: cancel the queued job, then run n_finished tasks to the end
    // on a wide worker.
    client.cancel_job(resp.job.0).await.expect("cancel");
    let wide = Proc(
        Command::new(DROVER)
            .args(["--data-dir"])
            .arg(dir)
            .args(["worker", "--name", "wide", "--cpus", "8", "--memory", "4G"])
            .env("DROVER_LOG", "warn")
            .stderr(Stdio::null())
            .spawn()
            .expect("start the wide worker"),
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while client.workers().await.map(|w| w.len() < 2).unwrap_or(true) {
        assert!(Instant::now() < deadline, "the wide worker never joined");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let t = Instant::now();
    let task = TaskSpec {
        array: Some(ArraySpec {
            start: 0,
            end: n_finished - 1,
        }),
        ..TaskSpec::command(["/bin/true"])
    };
    let resp = client.submit_task(&task).await.expect("submit");
    wait_job(client, resp.job.0).await;
    let run_s = t.elapsed().as_secs_f64();
    // Every task the server holds by now, the earlier cases' included.
    let held: u64 = client
        .cluster()
        .await
        .expect("cluster")
        .tasks
        .values()
        .sum();
    println!(
        "bench=server_rss_finished tasks={n_finished} tasks_held={held} run_s={run_s:.1} server_rss_mib={:.1} server_peak_rss_mib={:.1}",
        status_kib(spid, "VmRSS:") as f64 / 1024.0,
        status_kib(spid, "VmHWM:") as f64 / 1024.0
    );
    // list_page: one page of 100, from the start, from a cursor in the middle, and
    // with a state filter that matches little (bounded scan), with every task held.
    let mid = (held / 2).to_string();
    let cases: [(&str, ListQuery); 3] = [
        (
            "first",
            ListQuery {
                limit: Some(100),
                ..ListQuery::default()
            },
        ),
        (
            "cursor_mid",
            ListQuery {
                limit: Some(100),
                cursor: Some(mid),
                ..ListQuery::default()
            },
        ),
        (
            "state_filter",
            ListQuery {
                limit: Some(100),
                state: Some("running".into()),
                ..ListQuery::default()
            },
        ),
    ];
    for (name, query) in cases {
        let mut times = Vec::new();
        for _ in 0..20 {
            let t = Instant::now();
            client.list(&query).await.expect("list");
            times.push(t.elapsed().as_secs_f64() * 1000.0);
        }
        println!(
            "bench=list_page case={name} tasks_held={held} p50_ms={:.2} max_ms={:.2}",
            median(&mut times.clone()),
            percentile(&mut times, 1.0)
        );
    }
    drop(wide);
    drop(cluster); // stops both and removes the data directory
}
