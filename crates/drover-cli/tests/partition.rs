//! A worker on a second "machine" (a network namespace) cut off from the server by
//! dropped packets: it must stop its own task before the server starts the task's next
//! attempt elsewhere, in every direction of the cut, and come back within seconds of
//! the network healing. A connection that stalls without an error is replaced by a
//! new one before anything is given up.
//!
//! Timings: the server declares a worker lost after 10 s of silence and heartbeats
//! every second; the workers' kill grace is 1 s, so a worker fences itself 8.5 s after
//! its last acknowledged heartbeat (10 - 1 - 0.5) and its task is gone by 9.5 s.

mod common;

use common::netns::NetNs;
use common::process_watch::Watcher;
use common::*;
use drover_types::{FailureCause, TaskState};
use serde_json::json;
use std::time::{Duration, Instant};

const LOST_AFTER: &str = "10s";
/// The bar: active again within 15 s of the network healing.
const REJOIN_BOUND: Duration = Duration::from_secs(15);

#[derive(Clone, Copy, Debug)]
enum Cut {
    /// Every packet, both ways.
    Both,
    /// Only the worker's packets to the server: the worker still hears the server.
    WorkerToServer,
    /// Only the server's packets to the worker: the server still hears the worker.
    ServerToWorker,
    /// No network fault: the agent itself is frozen (SIGSTOP), so its own fence cannot
    /// fire; its reaper, a separate process, must stop the task in its place.
    FrozenAgent,
}

fn a_cut_off_worker_stops_its_task_before_the_next_attempt_starts(cut: Cut) {
    let ns = NetNs::create();
    let listen = format!("{}:0", ns.host_ip);
    let mut c = Cluster::start_with(
        &format!("cut-{cut:?}").to_lowercase(),
        &["--listen", &listen, "--worker-timeout", LOST_AFTER],
    );
    let cut_off = c.add_worker_in("p", &ns.name, &["--cpus", "1", "--memory", "1G"]);
    let agent = agent_id(&cut_off, &c.root.join("wdata-p"));
    let starts = c.file("starts");
    std::fs::create_dir_all(&starts).unwrap();
    // Tasks run as `nobody` when the tests run as root, and write here.
    std::fs::set_permissions(&starts, std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
    let id = c.submit(json!({
        "command": [format!(
            "date +%s%N > {s}/start-$DROVER_ATTEMPT; if [ \"$DROVER_ATTEMPT\" = 1 ]; then sleep 300; else sleep 1; fi; echo ran-$DROVER_ATTEMPT",
            s = sh_quote(&starts)
        )],
        "shell": true,
        "retry": {"max_attempts": 3, "backoff": {"initial_ms": 100, "multiplier_percent": 100, "max_ms": 100}},
    }));
    c.wait_state(id, "running", SLOW);
    c.poll("attempt 1's processes", SLOW, || {
        (!attempt_processes(&agent, id, 1).is_empty()).then_some(())
    });
    let beside = c.add_worker("h", &["--cpus", "1", "--memory", "1G"]);
    let watcher = Watcher::start(&agent, id, 1);

    let cut_at = Instant::now();
    match cut {
        Cut::Both => ns.cut(),
        Cut::WorkerToServer => ns.cut_outgoing(),
        Cut::ServerToWorker => ns.cut_incoming(),
        Cut::FrozenAgent => signal(c.worker_pid("p"), "-STOP"),
    }
    let t = c.wait_final(id, Duration::from_secs(60));
    let replaced_after = cut_at.elapsed();
    // Let the watcher see attempt 1 gone if it somehow is not yet.
    std::thread::sleep(Duration::from_millis(200));
    let (last_alive, first_gone) = watcher.finish();

    assert_eq!(t.state, TaskState::Succeeded, "{t:#?}\n{}", c.logs());
    assert_eq!(t.attempts.len(), 2, "{t:#?}");
    assert_eq!(t.attempts[0].worker_name, cut_off);
    assert!(
        matches!(t.attempts[0].failure, Some(FailureCause::WorkerLost { .. })),
        "{t:#?}"
    );
    assert_eq!(t.attempts[1].worker_name, beside);
    assert_eq!(t.result.as_deref(), Some("ran-2\n"));
    let start2: u128 = read(&starts.join("start-2"))
        .trim()
        .parse()
        .expect("attempt 2 wrote its start time");
    let last_alive = last_alive.expect("attempt 1 was seen running");
    let first_gone = first_gone.unwrap_or_else(|| {
        panic!(
            "attempt 1 is still running {replaced_after:?} after the cut: {:?}\n{}",
            attempt_processes(&agent, id, 1),
            c.logs()
        )
    });
    // The measured overlap: none. Attempt 1 was already observed gone (not merely
    // last seen alive) when attempt 2 began.
    assert!(
        first_gone < start2,
        "attempt 1 was last seen alive {} ms after attempt 2 started ({} ms of overlap)\n{}",
        (last_alive as i128 - start2 as i128) / 1_000_000,
        (first_gone as i128 - start2 as i128).max(0) / 1_000_000,
        c.logs()
    );
    eprintln!(
        "{cut:?}: attempt 1 gone {} ms before attempt 2 started; the task ended {:.1} s after the cut; overlap 0 ms",
        (start2 - first_gone) / 1_000_000,
        replaced_after.as_secs_f64()
    );
    let (who, says) = match cut {
        Cut::FrozenAgent => (
            "its reaper",
            "did not stop this attempt by its fence deadline",
        ),
        _ => ("the cut-off worker", "stopping every task"),
    };
    assert!(
        c.worker_log("p").contains(says),
        "{who} stopped the task:\n{}",
        c.worker_log("p")
    );

    let healed_at = Instant::now();
    match cut {
        Cut::FrozenAgent => signal(c.worker_pid("p"), "-CONT"),
        _ => ns.heal(),
    }
    c.poll(
        "the cut-off worker to be active again",
        REJOIN_BOUND,
        || {
            c.workers_info()
                .iter()
                .any(|w| w.name == cut_off && w.connected && w.state.to_string() == "active")
                .then_some(())
        },
    );
    eprintln!(
        "{cut:?}: the worker was active again {:.1} s after the network healed",
        healed_at.elapsed().as_secs_f64()
    );
    // Its late report of attempt 1 (as fenced, when the agent's own fence stopped it)
    // was rejected: nothing changed.
    let outcome = match cut {
        // Killed by the reaper while the agent was frozen: a SIGKILL it did not ask for.
        Cut::FrozenAgent => "",
        _ => "stopped by its worker, cut off from the server",
    };
    c.poll("the server to ignore the late report", SLOW, || {
        read(&c.root.join("server.log"))
            .lines()
            .any(|l| {
                l.contains("ignored a late report of an attempt given up on") && l.contains(outcome)
            })
            .then_some(())
    });
    let after = c.task(id);
    assert_eq!(after.state, TaskState::Succeeded);
    assert_eq!(after.attempts.len(), 2, "{after:#?}");
    assert!(
        matches!(
            after.attempts[0].failure,
            Some(FailureCause::WorkerLost { .. })
        ),
        "{after:#?}"
    );
    assert_eq!(after.result.as_deref(), Some("ran-2\n"));
    assert!(!read(&starts.join("start-3")).contains(char::is_numeric));
}

#[test]
fn a_worker_cut_off_both_ways_stops_its_task_before_it_runs_elsewhere() {
    a_cut_off_worker_stops_its_task_before_the_next_attempt_starts(Cut::Both);
}

#[test]
fn a_worker_whose_packets_to_the_server_are_dropped_stops_its_task_before_it_runs_elsewhere() {
    a_cut_off_worker_stops_its_task_before_the_next_attempt_starts(Cut::WorkerToServer);
}

#[test]
fn a_worker_that_no_longer_hears_the_server_stops_its_task_before_it_runs_elsewhere() {
    a_cut_off_worker_stops_its_task_before_the_next_attempt_starts(Cut::ServerToWorker);
}

#[test]
fn a_frozen_agents_task_is_stopped_by_its_reaper_before_it_runs_elsewhere() {
    a_cut_off_worker_stops_its_task_before_the_next_attempt_starts(Cut::FrozenAgent);
}

/// One connection blackholed (no FIN, no RST, no error) while the network itself works:
/// the worker notices its heartbeats go unacknowledged, opens a new connection and
/// rejoins long before the fence, and its task runs on undisturbed.
#[test]
fn a_stalled_connection_is_replaced_within_seconds_and_the_task_runs_on() {
    let ns = NetNs::create();
    let listen = format!("{}:0", ns.host_ip);
    let mut c = Cluster::start_with(
        "stall",
        &["--listen", &listen, "--worker-timeout", LOST_AFTER],
    );
    let w = c.add_worker_in("p", &ns.name, &["--cpus", "1", "--memory", "1G"]);
    let port: u16 = c.addr.rsplit(':').next().unwrap().parse().unwrap();
    let id = c.submit(json!({"command": ["sh", "-c", "sleep 14; echo survived"]}));
    c.wait_state(id, "running", SLOW);
    let before = ns.connections_to(port);
    assert_eq!(before.len(), 1, "one connection to the server: {before:?}");
    let stalled_at = Instant::now();
    ns.stall_connection(before[0]);
    c.poll(
        "a new connection from the worker",
        Duration::from_secs(8),
        || {
            let now = ns.connections_to(port);
            now.iter().any(|p| *p != before[0]).then_some(())
        },
    );
    let replaced = stalled_at.elapsed();
    c.wait_worker_connected(&w);
    eprintln!(
        "stalled connection replaced after {:.1} s (the fence would fire at 8.5 s)",
        replaced.as_secs_f64()
    );
    assert!(
        replaced < Duration::from_millis(8_500),
        "replaced only after {replaced:?}"
    );
    let t = c.wait_final(id, SLOW);
    assert_eq!(t.state, TaskState::Succeeded, "{t:#?}\n{}", c.logs());
    assert_eq!(t.attempts.len(), 1, "never given up on: {t:#?}");
    assert_eq!(t.result.as_deref(), Some("survived\n"));
    assert!(!c.worker_log("p").contains("stopping every task"));
}
