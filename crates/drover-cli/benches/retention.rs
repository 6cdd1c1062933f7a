//! Steady state of a real server under retention: one `drover server --retain-for 1s`
//! and one `drover worker` with 8 one-CPU slots on loopback run N `/bin/true` tasks, as
//! jobs of 1,000 (two in flight). Every N/10 tasks it prints the tasks the server still
//! holds, its resident memory and the size of its data directory (log, snapshots,
//! output), then the medians over the run. Without retention these grow with N; with
//! it they should level off.
//!
//! `cargo bench -p drover-cli --bench retention` (100,000 tasks), `-- --quick` (5,000).

mod common;

use common::{Proc, rss_mib, wait_for_file};
use drover_client::Client;
use drover_types::{ArraySpec, TaskSpec};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const DROVER: &str = env!("CARGO_BIN_EXE_drover");
const JOB: u64 = 1_000;

/// Bytes of every file under `dir`.
fn dir_bytes(dir: &Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            match e.metadata() {
                Ok(m) if m.is_dir() => stack.push(e.path()),
                Ok(m) => total += m.len(),
                Err(_) => {}
            }
        }
    }
    total
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// Whether the job is over: finished, or already retired.
async fn job_done(client: &Client, job: u64) -> bool {
    match client.job(job).await {
        Ok(info) => {
            if info.finished && !info.succeeded {
                // Say why before giving up: the first failed task's attempts.
                let failed = client
                    .list(&drover_client::ListQuery {
                        state: Some("failed".into()),
                        job: Some(job),
                        ..Default::default()
                    })
                    .await
                    .map(|l| l.tasks.first().map(|t| t.id));
                if let Ok(Some(t)) = failed
                    && let Ok(t) = client.task(&t.0.to_string()).await
                {
                    eprintln!("task {} failed: {:?}", t.id, t.attempts);
                }
                panic!("benchmark tasks failed: {info:?}");
            }
            info.finished
        }
        Err(e) if e.is_retired() => true,
        Err(e) => panic!("job {job}: {e}"),
    }
}

#[tokio::main]
async fn main() {
    let quick = std::env::args().any(|a| a == "--quick")
        || std::env::var_os("DROVER_BENCH_QUICK").is_some();
    let total: u64 = if quick { 5_000 } else { 100_000 };
    // Jobs end 1,000 tasks at a time: no finer reports than that.
    let report_every = (total / 10).max(JOB);

    let dir: PathBuf =
        std::env::temp_dir().join(format!("drover-bench-retain-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    let server = Proc(
        Command::new(DROVER)
            .args(["--data-dir"])
            .arg(&dir)
            .args(["server", "--listen", "127.0.0.1:0", "--retain-for", "1s"])
            .env("DROVER_LOG", "warn")
            .stderr(Stdio::null())
            .spawn()
            .expect("start the server"),
    );
    let url = wait_for_file(&dir.join("server/endpoint"), Duration::from_secs(30));
    let token = wait_for_file(&dir.join("server/token"), Duration::from_secs(30));
    let _worker = Proc(
        Command::new(DROVER)
            .args(["--data-dir"])
            .arg(&dir)
            .args(["worker", "--name", "bench", "--cpus", "8", "--memory", "4G"])
            .env("DROVER_LOG", "warn")
            .stderr(Stdio::null())
            .spawn()
            .expect("start the worker"),
    );
    let client = common::local_client(&dir, url, token);
    let deadline = Instant::now() + Duration::from_secs(30);
    while client.workers().await.map(|w| w.is_empty()).unwrap_or(true) {
        assert!(Instant::now() < deadline, "the worker never joined");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let spid = server.0.id();
    let server_dir = dir.join("server");
    let task = TaskSpec {
        array: Some(ArraySpec {
            start: 0,
            end: (JOB - 1) as u32,
        }),
        ..TaskSpec::command(["/bin/true"])
    };
    println!("bench=retention tasks={total} retain_for=1s");
    let start = Instant::now();
    let mut in_flight: Vec<u64> = Vec::new();
    let (mut submitted, mut done) = (0u64, 0u64);
    let mut next_report = report_every;
    let (mut rss, mut disk, mut held_v) = (Vec::new(), Vec::new(), Vec::new());
    while done < total {
        while submitted < total && in_flight.len() < 2 {
            let resp = client.submit_task(&task).await.expect("submit");
            in_flight.push(resp.job.0);
            submitted += JOB;
        }
        let mut still = Vec::new();
        for job in in_flight.drain(..) {
            if job_done(&client, job).await {
                done += JOB;
            } else {
                still.push(job);
            }
        }
        in_flight = still;
        if done >= next_report {
            while next_report <= done {
                next_report += report_every;
            }
            let held: u64 = client
                .cluster()
                .await
                .expect("cluster")
                .tasks
                .values()
                .sum();
            let (r, d) = (
                rss_mib(spid),
                dir_bytes(&server_dir) as f64 / (1 << 20) as f64,
            );
            println!(
                "bench=retention done={done} elapsed_s={:.0} tasks_held={held} server_rss_mib={r:.1} server_dir_mib={d:.1}",
                start.elapsed().as_secs_f64()
            );
            rss.push(r);
            disk.push(d);
            held_v.push(held as f64);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    println!(
        "bench=retention_summary tasks={total} run_s={:.1} median_tasks_held={:.0} median_server_rss_mib={:.1} median_server_dir_mib={:.1}",
        start.elapsed().as_secs_f64(),
        median(&mut held_v),
        median(&mut rss),
        median(&mut disk),
    );
}
