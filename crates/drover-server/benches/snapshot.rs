//! Snapshots at scale, through real servers in this process (real sockets, real disk).
//! Prints one line per figure; medians of 3 where a figure is cheap to repeat.
//!
//! - `state`: N tasks held (queued, no workers), submitted as jobs of distinct tasks.
//! - `snapshot_build`: size (bytes, bytes per task), the pause of apply (the state is
//!   read-locked only to copy it) and the time to encode + write + fsync + rename off
//!   the lock, as the server itself measures them (`SharedState::snapshot_stats`).
//! - `format_binary` / `format_json`: the same state encoded to a file and decoded back,
//!   in the binary format and in the JSON document snapshots used to be.
//! - `restart`: a clean stop (which snapshots first) then a start, until the server
//!   answers a read of the newest task: restart-to-serving.
//! - `follower_catch_up`: a group of three where two took the N tasks and compacted
//!   their log; the third joins empty and is timed until it has applied everything.
//! - `log_file`: many small entries with a snapshot every 1,000 (100 kept): the size of
//!   `raft.redb` as the log goes on, to see it stop growing.
//!
//! `cargo bench -p drover-server --bench snapshot` (1,000,000 tasks), `-- --quick`
//! (10,000: the smoke run).

use drover_client::Client;
use drover_server::{RunningServer, ServerConfig};
use drover_state::{SnapshotReader, StateMachine, StateSnapshot, write_snapshot};
use drover_types::{JobSpec, TaskSpec};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const TOKEN: &str = "bench-cluster-token";
const PEER_TOKEN: &str = "bench-peer-token";

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> String {
    format!("{:.1}ms", d.as_secs_f64() * 1000.0)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn config(dir: &Path, port: u16) -> ServerConfig {
    let mut c = ServerConfig::new(dir.to_path_buf());
    c.listen = format!("127.0.0.1:{port}").parse().expect("address");
    c.token = Some(TOKEN.into());
    c.peer_token = Some(PEER_TOKEN.into());
    // Plain HTTP: the figures are of snapshots, restarts and catching up, and a group
    // would need certificates of one CA; TLS has its own figures (ARCHITECTURE.md).
    c.tls = drover_server::TlsMode::Insecure;
    c
}

/// Submits `n` distinct tasks in jobs of `per_job`; returns the id of the last.
async fn submit(client: &Client, n: u64, per_job: u64) -> u64 {
    let mut last = 0;
    let mut i = 0;
    while i < n {
        let count = per_job.min(n - i);
        let tasks = (i..i + count)
            .map(|k| TaskSpec::command(["/bin/echo".to_string(), format!("item-{k}")]))
            .collect();
        let job = JobSpec {
            name: format!("batch-{}", i / per_job),
            owner: String::new(),
            tasks,
        };
        let r = client.submit_job(&job).await.expect("submit a job");
        last = r.first.0 + count - 1;
        i += count;
    }
    last
}

/// Asks `server` for a snapshot now and waits until it covers everything applied.
async fn snapshot_now(server: &RunningServer) {
    let raft = &server.node.raft;
    let applied = server.node.state.last_applied().expect("something applied");
    raft.trigger().snapshot().await.expect("trigger a snapshot");
    raft.wait(Some(Duration::from_secs(600)))
        .metrics(
            |m| m.snapshot.map(|s| s.index) >= Some(applied.index),
            "a snapshot of everything applied",
        )
        .await
        .expect("the snapshot");
}

fn file_size(path: &Path) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let (n, per_job) = if quick {
        (10_000, 1_000)
    } else {
        (1_000_000, 10_000)
    };
    let root = std::env::temp_dir().join(format!("drover-bench-snapshot-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    rt.block_on(async {
        one_server(&root, n, per_job).await;
        follower_catch_up(&root, n, per_job).await;
        log_file(&root, if quick { 3_000 } else { 20_000 }).await;
    });
    let _ = std::fs::remove_dir_all(&root);
}

async fn one_server(root: &Path, n: u64, per_job: u64) {
    let dir = root.join("one");
    let port = free_port();
    let mut server = drover_server::start(config(&dir, port))
        .await
        .expect("a server");
    let client = Client::new(server.url(), Some(TOKEN.into()));
    let t = Instant::now();
    let mut last = submit(&client, n, per_job).await;
    println!(
        "state: {n} tasks held, submitted in jobs of {per_job} in {}",
        ms(t.elapsed())
    );

    // Builds, as the server does them (each after one more write, so each is new).
    let mut copies = Vec::new();
    let mut writes = Vec::new();
    let mut bytes = 0;
    for _ in 0..3 {
        last = submit(&client, 1, 1).await;
        snapshot_now(&server).await;
        let s = server.node.state.snapshot_stats().expect("stats");
        copies.push(s.copy);
        writes.push(s.write);
        bytes = s.bytes;
    }
    println!(
        "snapshot_build: {bytes} bytes ({:.1} bytes/task); apply paused (state copied under the lock) {} median; encode+write+fsync+rename off the lock {} median (of 3)",
        bytes as f64 / n as f64,
        ms(median(copies)),
        ms(median(writes)),
    );

    // The same state both ways.
    let state = server.node.state.read().snapshot();
    formats(root, &state, n);
    drop(state);

    // Restart to serving, three times.
    let mut stops = Vec::new();
    let mut starts = Vec::new();
    for _ in 0..3 {
        let t = Instant::now();
        server.shutdown().await;
        stops.push(t.elapsed());
        let t = Instant::now();
        server = drover_server::start(config(&dir, port))
            .await
            .expect("restart");
        let client = Client::new(server.url(), Some(TOKEN.into()));
        client
            .task(&last.to_string())
            .await
            .expect("the newest task after the restart");
        starts.push(t.elapsed());
    }
    println!(
        "restart: {n} tasks, clean stop (snapshots first) {} median, start to serving {} median (of 3)",
        ms(median(stops)),
        ms(median(starts))
    );
    server.shutdown().await;
}

fn formats(root: &Path, state: &StateSnapshot, n: u64) {
    let bin = root.join("format.bin");
    let json = root.join("format.json");
    let (mut enc_b, mut dec_b, mut rest_b, mut enc_j, mut dec_j) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for _ in 0..3 {
        let t = Instant::now();
        let f = std::fs::File::create(&bin).expect("create");
        let f = write_snapshot(b"{}", state, f).expect("encode");
        f.sync_all().expect("sync");
        enc_b.push(t.elapsed());
        let t = Instant::now();
        let decoded = SnapshotReader::open(std::fs::File::open(&bin).expect("open"))
            .expect("header")
            .state()
            .expect("decode");
        dec_b.push(t.elapsed());
        let t = Instant::now();
        let machine = StateMachine::restore(decoded);
        rest_b.push(t.elapsed());
        drop(machine);

        let t = Instant::now();
        let mut f = std::io::BufWriter::new(std::fs::File::create(&json).expect("create"));
        serde_json::to_writer(&mut f, state).expect("encode JSON");
        let f = f.into_inner().expect("flush");
        f.sync_all().expect("sync");
        enc_j.push(t.elapsed());
        let t = Instant::now();
        let decoded: StateSnapshot = serde_json::from_reader(std::io::BufReader::new(
            std::fs::File::open(&json).expect("open"),
        ))
        .expect("decode JSON");
        dec_j.push(t.elapsed());
        drop(decoded);
    }
    let (b, j) = (file_size(&bin), file_size(&json));
    println!(
        "format_binary: {b} bytes ({:.1} bytes/task), encode+fsync {}, decode (streaming, checksum) {}, rebuild the machine {} (medians of 3)",
        b as f64 / n as f64,
        ms(median(enc_b)),
        ms(median(dec_b)),
        ms(median(rest_b)),
    );
    println!(
        "format_json (the old snapshot): {j} bytes ({:.1} bytes/task), encode+fsync {}, decode {} (medians of 3); binary is {:.1}x smaller",
        j as f64 / n as f64,
        ms(median(enc_j)),
        ms(median(dec_j)),
        j as f64 / b.max(1) as f64
    );
    let _ = std::fs::remove_file(&bin);
    let _ = std::fs::remove_file(&json);
}

async fn follower_catch_up(root: &Path, n: u64, per_job: u64) {
    let mut peers: Vec<(String, PathBuf)> = (0..3)
        .map(|i| {
            (
                format!("127.0.0.1:{}", free_port()),
                root.join(format!("group-{i}")),
            )
        })
        .collect();
    peers.sort();
    let addrs: Vec<String> = peers.iter().map(|p| p.0.clone()).collect();
    let cfg = |i: usize| {
        let port: u16 = addrs[i].rsplit(':').next().unwrap().parse().unwrap();
        let mut c = config(&peers[i].1, port);
        c.peers = addrs.clone();
        // Nothing kept behind a snapshot: the joining server cannot be sent the log.
        c.keep_after_snapshot = 0;
        c
    };
    let a = drover_server::start(cfg(0)).await.expect("server 1");
    let b = drover_server::start(cfg(1)).await.expect("server 2");
    let client = Client::new(format!("{},{}", a.url(), b.url()), Some(TOKEN.into()));
    let deadline = Instant::now() + Duration::from_secs(30);
    while !(a.node.is_leader() || b.node.is_leader()) {
        assert!(Instant::now() < deadline, "no leader among two of three");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    submit(&client, n, per_job).await;
    let leader = if a.node.is_leader() { &a } else { &b };
    snapshot_now(leader).await;
    let target = leader.node.state.last_applied().expect("applied");
    // openraft purges after the snapshot, in the background.
    let purged = leader
        .node
        .raft
        .wait(Some(Duration::from_secs(60)))
        .metrics(|m| m.purged.is_some(), "the log purged behind the snapshot")
        .await
        .expect("a purge")
        .purged;
    let t = Instant::now();
    let c = drover_server::start(cfg(2)).await.expect("server 3");
    c.node
        .raft
        .wait(Some(Duration::from_secs(600)))
        .metrics(
            |m| m.last_applied.map(|l| l.index) >= Some(target.index),
            "the joining server has applied everything",
        )
        .await
        .expect("caught up");
    let took = t.elapsed();
    let via_snapshot = c.node.raft.metrics().borrow().snapshot.is_some();
    println!(
        "follower_catch_up: {n} tasks, log purged up to {:?}, a third server from empty to applied index {} in {} (via a snapshot: {via_snapshot})",
        purged.map(|p| p.index),
        target.index,
        ms(took)
    );
    c.shutdown().await;
    a.shutdown().await;
    b.shutdown().await;
}

async fn log_file(root: &Path, entries: u64) {
    let dir = root.join("log");
    let mut c = config(&dir, free_port());
    c.snapshot_every = 1_000;
    c.keep_after_snapshot = 100;
    let server = drover_server::start(c).await.expect("a server");
    let client = Client::new(server.url(), Some(TOKEN.into()));
    let db = dir.join("raft.redb");
    let mut sizes = Vec::new();
    let quarter = entries / 4;
    for q in 1..=4 {
        // One task per request, one after another: one entry each.
        for _ in 0..quarter {
            client
                .submit_task(&TaskSpec::command(["/bin/true"]))
                .await
                .expect("submit");
        }
        let applied = server
            .node
            .state
            .last_applied()
            .map(|l| l.index)
            .unwrap_or(0);
        sizes.push(format!("q{q} (index {applied}): {} bytes", file_size(&db)));
    }
    let purged = server.node.raft.metrics().borrow().purged;
    println!(
        "log_file: raft.redb size after each quarter of {entries} single-task entries (snapshot every 1000, 100 kept; purged up to {:?}): {}",
        purged.map(|p| p.index),
        sizes.join(", ")
    );
    server.shutdown().await;
}
