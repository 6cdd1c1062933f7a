//! Replication benchmarks through real processes on loopback: groups of `drover server`
//! processes (no worker: the submitted tasks stay queued, so only the write path is
//! measured). Prints one line per case:
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
//! `cargo bench -p drover-cli --bench ha` (full), `-- --quick` (smoke: short rounds, 3
//! kills). `DROVER_BENCH_KILLS` sets the number of kills (default 20).

use drover_client::Client;
use drover_types::{ArraySpec, JobSpec, TaskSpec};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const DROVER: &str = env!("CARGO_BIN_EXE_drover");
const TOKEN: &str = "bench-cluster-token";
const PEER_TOKEN: &str = "bench-peer-token";

/// A group of servers, each its own process; all killed on drop.
struct Group {
    dir: PathBuf,
    addrs: Vec<String>,
    procs: Vec<Option<Child>>,
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
        };
        for i in 0..n {
            g.spawn(i);
        }
        g
    }

    fn spawn(&mut self, i: usize) {
        let mut c = Command::new(DROVER);
        c.arg("--data-dir")
            .arg(self.dir.join(format!("s{i}")))
            .args(["--token", TOKEN, "server", "--listen", &self.addrs[i]])
            .env("DROVER_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if self.addrs.len() > 1 {
            c.args(["--peers", &self.addrs.join(","), "--peer-token", PEER_TOKEN]);
        }
        self.procs[i] = Some(c.spawn().expect("start a server"));
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

    /// The running server that says it leads, once exactly one does.
    async fn leader(&self) -> usize {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let mut leaders = Vec::new();
            for i in 0..self.addrs.len() {
                if self.procs[i].is_some()
                    && let Ok(h) = self.client_of(i).health().await
                    && h.leader
                {
                    leaders.push(i);
                }
            }
            if let [one] = leaders.as_slice() {
                return *one;
            }
            assert!(Instant::now() < deadline, "no single leader");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits until the leader sees server `i` reachable and close behind it.
    async fn caught_up(&self, i: usize) {
        let deadline = Instant::now() + Duration::from_secs(60);
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
}

impl Drop for Group {
    fn drop(&mut self) {
        for i in 0..self.procs.len() {
            self.kill(i);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
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
