//! Wall-clock steps (RELIABILITY R7) on the server and on the worker, for real per
//! process: both run under libfaketime (LD_PRELOAD) with the monotonic clock left
//! alone, and the test rewrites their offset files mid-run to +1 h, then −1 h. Time
//! limits must fire neither early nor late, a running task must not be killed, no
//! worker may be declared lost, timers keep working. Needs libfaketime (Debian package
//! `faketime`; scripts/test.sh installs it).

mod common;

use common::*;
use serde_json::json;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const LIBFAKETIME: &[&str] = &[
    "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1",
    "/usr/lib/aarch64-linux-gnu/faketime/libfaketime.so.1",
    "/usr/lib/faketime/libfaketime.so.1",
];

fn libfaketime() -> PathBuf {
    LIBFAKETIME
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .unwrap_or_else(|| {
            panic!("libfaketime not found in {LIBFAKETIME:?}: install the Debian package `faketime` (scripts/test.sh does)")
        })
}

/// The environment that puts a process under libfaketime with its offset read, on
/// every call, from `offset_file`, the monotonic clock untouched.
fn faked(lib: &Path, offset_file: &Path) -> Vec<(String, String)> {
    vec![
        ("LD_PRELOAD".into(), lib.display().to_string()),
        ("FAKETIME_DONT_FAKE_MONOTONIC".into(), "1".into()),
        ("FAKETIME_NO_CACHE".into(), "1".into()),
        (
            "FAKETIME_TIMESTAMP_FILE".into(),
            offset_file.display().to_string(),
        ),
    ]
}

fn set_offset(files: &[&Path], offset: &str) {
    for f in files {
        // Written to a temporary name and renamed: a reader never sees it half-written.
        let tmp = f.with_extension("tmp");
        std::fs::write(&tmp, format!("{offset}\n")).unwrap();
        std::fs::rename(&tmp, f).unwrap();
    }
}

/// The timestamps (seconds since the epoch, from the RFC 3339 prefix tracing writes)
/// of the lines of a log that contain `needle`.
fn logged_at(log: &str, needle: &str) -> Vec<i64> {
    log.lines()
        .filter(|l| l.contains(needle))
        .filter_map(|l| {
            let ts = l.split_whitespace().next()?;
            // 2026-12-07T04:10:38.002538Z
            let (date, time) = ts.trim_end_matches('Z').split_once('T')?;
            let d: Vec<i64> = date.split('-').filter_map(|x| x.parse().ok()).collect();
            let t: Vec<f64> = time.split(':').filter_map(|x| x.parse().ok()).collect();
            if d.len() != 3 || t.len() != 3 {
                return None;
            }
            Some(
                days_from_civil(d[0], d[1], d[2]) * 86_400
                    + (t[0] * 3600.0 + t[1] * 60.0 + t[2]) as i64,
            )
        })
        .collect()
}

/// Days since 1970-01-01 of a proleptic Gregorian date.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn real_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// Polls `id` every 50 ms until its state is `state`; returns when that was seen.
fn seen_in_state(c: &Cluster, id: u64, state: &str) -> Instant {
    c.poll(&format!("task {id} {state}"), SLOW, || {
        (c.task(id).state.as_str() == state).then(Instant::now)
    })
}

fn workers_ok(c: &Cluster) -> Result<(), String> {
    for w in c.workers_info() {
        if !w.connected || w.state != drover_types::WorkerState::Active {
            return Err(format!(
                "{} connected={} state={:?}",
                w.name, w.connected, w.state
            ));
        }
    }
    Ok(())
}

#[test]
fn wall_clock_steps_on_the_server_and_the_worker_kill_nothing_early_and_lose_no_worker() {
    let lib = libfaketime();
    let mut files = Vec::new();
    let c_files = |root: &Path| (root.join("offset-server"), root.join("offset-worker"));
    let mut c = Cluster::start_prepared(
        "clock-jump",
        &["--worker-timeout", "3s", "--heartbeat-interval", "250ms"],
        |c| {
            let (s, w) = c_files(&c.root);
            set_offset(&[&s, &w], "+0");
            c.server_env = faked(&lib, &s);
            c.worker_env = faked(&lib, &w);
            files.push(s);
            files.push(w);
        },
    );
    let (server_file, worker_file) = (files[0].clone(), files[1].clone());
    let both = [server_file.as_path(), worker_file.as_path()];
    c.add_worker("w", &["--cpus", "4"]);

    let long = c.submit(json!({"command": ["sleep", "10"], "resources": {"cpu_milli": 1000}}));
    let limited = c.submit(json!({
        "command": ["sleep", "60"],
        "max_runtime_ms": 5000,
        "resources": {"cpu_milli": 1000}
    }));
    seen_in_state(&c, long, "running");
    let limited_running = seen_in_state(&c, limited, "running");

    // +1 h on both, 1.5 s into the time limit.
    std::thread::sleep(Duration::from_millis(1500));
    set_offset(&both, "+1h");
    let stepped_forward = Instant::now();
    // A worker joining now is logged by the server and by itself with the faked time:
    // proof that the step takes effect in a server and a worker process (started
    // with the same environment as "w"), not just in the files.
    c.add_worker("probe", &["--cpus", "1"]);

    // Through the rest of the limit: the worker stays connected and active, and the
    // running task's shown duration follows the log's clock, not the stepped one.
    while stepped_forward.elapsed() < Duration::from_secs(2) {
        workers_ok(&c).unwrap_or_else(|e| panic!("after +1h: {e}\n{}", c.logs()));
        let t = c.task(long);
        assert_eq!(t.state.as_str(), "running", "{t:#?}");
        assert!(
            t.duration_ms.unwrap_or(0) < 30_000,
            "a running task's duration jumped with the wall clock: {t:#?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    // The limit fires on time: not early (the +1 h step did not bring it forward),
    // not late.
    let ended = c.poll(&format!("task {limited} to end"), SLOW, || {
        let t = c.task(limited);
        t.state.is_final().then(|| (t, Instant::now()))
    });
    let (t, seen_end) = ended;
    let ran = seen_end.duration_since(limited_running);
    eprintln!("the 5 s time limit ended the task {ran:?} after it was seen running");
    assert_eq!(t.state.as_str(), "timed_out", "{t:#?}");
    assert_eq!(t.attempts.len(), 1, "{t:#?}");
    // Seen running up to 50 ms after it started, seen ended up to 50 ms after; the
    // kill takes up to the 1 s grace (sleep dies at SIGTERM at once).
    assert!(ran >= Duration::from_millis(4_800), "killed early: {ran:?}");
    assert!(ran <= Duration::from_millis(8_000), "killed late: {ran:?}");

    // −1 h on both (a step of two hours back).
    set_offset(&both, "-1h");
    let stepped_back = Instant::now();
    c.add_worker("probe2", &["--cpus", "1"]);
    // A timer set after the step still fires on time.
    let limited2 = c.submit(json!({
        "command": ["sleep", "60"],
        "max_runtime_ms": 2000,
        "resources": {"cpu_milli": 1000}
    }));
    let running2 = seen_in_state(&c, limited2, "running");
    let (t2, end2) = c.poll(&format!("task {limited2} to end"), SLOW, || {
        workers_ok(&c).unwrap_or_else(|e| panic!("after -1h: {e}\n{}", c.logs()));
        let t = c.task(limited2);
        t.state.is_final().then(|| (t, Instant::now()))
    });
    let ran2 = end2.duration_since(running2);
    eprintln!(
        "the 2 s time limit (set after the backward step) ended the task {ran2:?} after it was seen running"
    );
    assert_eq!(t2.state.as_str(), "timed_out", "{t2:#?}");
    assert!(
        ran2 >= Duration::from_millis(1_800),
        "killed early: {ran2:?}"
    );
    assert!(
        ran2 <= Duration::from_millis(5_000),
        "killed late: {ran2:?}"
    );

    // The sleep 10 that ran through both steps was never killed, ran once, succeeded.
    let t = c.wait_final(long, SLOW);
    assert_eq!(t.state.as_str(), "succeeded", "{t:#?}");
    assert_eq!(t.attempts.len(), 1, "{t:#?}");
    assert_eq!(t.exit_code, Some(0));
    workers_ok(&c).unwrap_or_else(|e| panic!("at the end: {e}\n{}", c.logs()));
    assert!(
        stepped_back.elapsed() < Duration::from_secs(30),
        "the test took too long to say anything about a 3 s worker timeout"
    );

    // The steps took effect in the processes: their logs carry the faked times.
    let server_log = read(&c.root.join("server.log"));
    let joined = logged_at(&server_log, "worker joined");
    let probe = logged_at(&c.worker_log("probe"), "joined the cluster");
    let probe2 = logged_at(&c.worker_log("probe2"), "joined the cluster");
    let now = real_now();
    let offsets = |v: &[i64]| v.iter().map(|t| t - now).collect::<Vec<_>>();
    eprintln!(
        "logged 'worker joined' at real time {:?} s (server), 'joined the cluster' at {:?} s (worker after +1h), {:?} s (worker after -1h)",
        offsets(&joined),
        offsets(&probe),
        offsets(&probe2)
    );
    assert!(
        joined.iter().any(|t| *t > now + 3000) && joined.iter().any(|t| *t < now - 3000),
        "the server's wall clock was not stepped +1h and -1h: libfaketime did not take effect"
    );
    assert!(
        probe.iter().any(|t| *t > now + 3000) && probe2.iter().any(|t| *t < now - 3000),
        "the workers' wall clock was not stepped +1h and -1h: libfaketime did not take effect"
    );
}
