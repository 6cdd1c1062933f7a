//! R5 with three servers (shared/RELIABILITY.md): a worker on a second "machine" (a
//! network namespace) is cut off from every server of a group of three for two full
//! minutes, then healed. It must stop its own tasks before the group starts their next
//! attempts elsewhere (a second worker, on the host, takes them), never leave two live
//! attempts of one task, have its late results rejected, and be back within 15 s of
//! the healing, running new work. Once with the group undisturbed, once with the
//! leader killed (-9) in the middle of the cut.
//!
//! Real parts: three `drover server` processes on the host, listening on the host's
//! end of the namespace's link (so the worker inside reaches them and a cut inside the
//! namespace drops every packet to all three), two `drover worker` processes, task
//! processes watched through `/proc`, and the history checker (`common/history.rs`).
//!
//! Timings (`ServerSet`'s): heartbeats every second, workers lost after 30 s, a kill
//! grace of 1 s: the cut-off worker fences itself 28.5 s after its last acknowledged
//! heartbeat, its tasks are gone by 29.5 s, and the group may re-place them at 30 s
//! (later after an election: a new leader gives every worker a fresh 30 s + lease).

mod common;

use common::history::{History, LeaderWatch, RUN_LOG_LINE};
use common::netns::NetNs;
use common::process_watch::{Watcher, now_ns};
use common::servers::ServerSet;
use common::*;
use drover_proto::api::TaskInfo;
use drover_types::{FailureCause, TaskState};
use serde_json::{Value, json};
use std::path::Path;
use std::time::{Duration, Instant};

/// Held by each test for its whole run: three servers and two workers each, on a small
/// machine; side by side they would starve each other's servers into elections.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner())
}

/// How long the worker stays cut off: R5's two minutes.
const CUT_FOR: Duration = Duration::from_secs(120);
/// The bar: active again within 15 s of the network healing.
const REJOIN_BOUND: Duration = Duration::from_secs(15);
/// The task that ends by itself during the cut does so this long after it began.
const ENDS_INTO_CUT_S: u32 = 3;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum DuringCut {
    /// The group stays as it is.
    Nothing,
    /// The leader is killed (-9) a few seconds into the cut, before the worker's lost
    /// timeout, and restarted once the tasks run elsewhere.
    LeaderKilled,
}

/// Task `id` as the first running server that answers sees it.
fn task(set: &ServerSet, id: u64) -> Option<TaskInfo> {
    (0..set.addrs.len())
        .filter(|i| set.is_running(*i))
        .find_map(|i| set.task_on(i, id))
}

fn wait_task(
    set: &ServerSet,
    id: u64,
    what: &str,
    timeout: Duration,
    ok: impl Fn(&TaskInfo) -> bool,
) -> TaskInfo {
    poll(
        &format!("task {id} {what}"),
        timeout,
        || task(set, id).filter(&ok),
        || format!("{:#?}\n{}", task(set, id), set.logs()),
    )
}

/// The start time (ns since the epoch) attempt `attempt` of task `id` wrote.
fn started_ns(starts: &Path, id: u64, attempt: u32) -> u128 {
    read(&starts.join(format!("{id}-{attempt}")))
        .trim()
        .parse()
        .unwrap_or_else(|e| panic!("task {id} attempt {attempt} wrote no start time: {e}"))
}

fn a_worker_cut_off_from_three_servers_for_two_minutes(during: DuringCut) {
    let _one = one_at_a_time();
    let ns = NetNs::create();
    let mut set = ServerSet::on_ip(
        &format!("r5-{during:?}").to_lowercase(),
        &ns.host_ip.clone(),
    );
    for i in 0..3 {
        set.start(i);
    }
    set.wait_leader(SLOW);
    let history = History::new();
    let watch = LeaderWatch::start(&set, history.clone());

    // The worker to cut off, alone in the group at first: the tasks go to it.
    let cut_off = set.add_worker_in(
        "p",
        Some(&ns.name),
        &["--cpus", "3", "--memory", "2G", "--label", "machine=cut"],
    );
    let agent = set.worker_agent(&cut_off);
    let attempts = set
        .root
        .join(format!("wdata-p/workers/{cut_off}/work/attempts"));
    let runs = set.root.join("runs");
    let starts = set.root.join("starts");
    std::fs::create_dir_all(&starts).unwrap();
    // Tasks run as `nobody` when the tests run as root, and write here.
    std::fs::set_permissions(&starts, std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
    let go = set.root.join("go");
    // Attempt 1 of each task runs `first`; any later attempt runs for two seconds.
    // Every run logs itself (history checker) and writes its start time.
    let spec = |first: &str, constraints: Value| {
        json!({
            "command": [format!(
                "{RUN_LOG_LINE}; date +%s%N > {s}/$DROVER_TASK_ID-$DROVER_ATTEMPT; if [ \"$DROVER_ATTEMPT\" = 1 ]; then {first}; else sleep 2; fi; echo ran-$DROVER_ATTEMPT",
                s = sh_quote(&starts)
            )],
            "shell": true,
            "env": {"RUNS": runs.to_string_lossy()},
            "constraints": constraints,
            "retry": {"max_attempts": 3, "backoff": {"initial_ms": 100, "multiplier_percent": 100, "max_ms": 100}},
        })
    };
    let long: Vec<u64> = (0..2)
        .map(|_| set.submit(&spec("sleep 600", json!([]))))
        .collect();
    // Runs until the cut has begun, then ends by itself (exit 0) while cut off.
    let ender = set.submit(&spec(
        &format!(
            "while [ ! -e {go} ]; do sleep 0.1; done; sleep {ENDS_INTO_CUT_S}",
            go = sh_quote(&go)
        ),
        json!([]),
    ));
    let tasks: Vec<u64> = long.iter().copied().chain([ender]).collect();
    for id in &tasks {
        history.acked(*id);
        let t = wait_task(&set, *id, "running", SLOW, |t| {
            t.state == TaskState::Running
        });
        assert_eq!(t.worker.as_deref(), Some(cut_off.as_str()), "{t:#?}");
        poll(
            &format!("task {id} attempt 1's processes"),
            SLOW,
            || (!attempt_processes(&agent, *id, 1).is_empty()).then_some(()),
            || set.logs(),
        );
        assert!(attempts.join(format!("{id}.1")).is_dir(), "{attempts:?}");
    }
    // The worker that takes the tasks over.
    let beside = set.add_worker("h", &["--cpus", "3", "--memory", "2G"]);
    let watchers: Vec<(u64, Watcher)> = tasks
        .iter()
        .map(|id| (*id, Watcher::start(&agent, *id, 1)))
        .collect();

    let cut_at = Instant::now();
    let cut_ns = now_ns();
    ns.cut();
    touch(&go);
    eprintln!(
        "{during:?}: cut the worker off from {}",
        set.addrs.join(", ")
    );

    let mut killed = None;
    if during == DuringCut::LeaderKilled {
        std::thread::sleep(Duration::from_secs(8));
        let leader = set.wait_leader(SLOW);
        set.kill(leader);
        let killed_at = Instant::now();
        let next = set.wait_leader(SLOW);
        eprintln!(
            "{during:?}: killed the leader (server {leader}) {:.1} s into the cut; server {next} led {:.1} s later",
            cut_at.elapsed().as_secs_f64() - killed_at.elapsed().as_secs_f64(),
            killed_at.elapsed().as_secs_f64()
        );
        killed = Some(leader);
    }

    // Every task's next attempt runs on the other worker, and ends well.
    let mut replaced = Vec::new();
    for id in &tasks {
        let t = wait_task(&set, *id, "to end", Duration::from_secs(90), |t| {
            t.state.is_final()
        });
        replaced.push((*id, cut_at.elapsed()));
        assert_eq!(t.state, TaskState::Succeeded, "{t:#?}\n{}", set.logs());
        assert_eq!(t.attempts.len(), 2, "{t:#?}");
        assert_eq!(t.attempts[0].worker_name, cut_off, "{t:#?}");
        assert!(
            matches!(t.attempts[0].failure, Some(FailureCause::WorkerLost { .. })),
            "attempt 1 was given up with its worker: {t:#?}"
        );
        assert_eq!(t.attempts[1].worker_name, beside, "{t:#?}");
        assert_eq!(t.result.as_deref(), Some("ran-2\n"), "{t:#?}");
    }
    if let Some(i) = killed {
        set.start(i);
        poll(
            "the killed server back",
            SLOW,
            || set.health(i),
            || set.logs(),
        );
    }
    // The cut-off worker is out of the group's reckoning meanwhile.
    let listed = set.workers_info();
    let p = listed.iter().find(|w| w.name == cut_off);
    assert!(
        p.is_some_and(|w| !w.connected),
        "the cut-off worker is listed as connected: {listed:#?}"
    );

    // Process by process: each first attempt was seen gone before the next began.
    for (id, watcher) in watchers {
        let (last_alive, first_gone) = watcher.finish();
        let start2 = started_ns(&starts, id, 2);
        let last_alive = last_alive.unwrap_or_else(|| panic!("task {id} was seen running"));
        let first_gone = first_gone.unwrap_or_else(|| {
            panic!(
                "task {id}'s first attempt still runs: {:?}\n{}",
                attempt_processes(&agent, id, 1),
                set.logs()
            )
        });
        assert!(
            first_gone < start2,
            "task {id}: attempt 1 was last seen alive {} ms after attempt 2 started\n{}",
            (last_alive as i128 - start2 as i128) / 1_000_000,
            set.logs()
        );
        let gone_into_cut = (first_gone - cut_ns) as f64 / 1e9;
        eprintln!(
            "{during:?}: task {id}: attempt 1 gone {gone_into_cut:.1} s into the cut, {} ms before attempt 2 started; overlap 0 ms",
            (start2 - first_gone) / 1_000_000,
        );
        if id == ender {
            // It ended by itself, well before any fence.
            assert!(
                gone_into_cut < f64::from(ENDS_INTO_CUT_S) + 10.0,
                "the ender ended {gone_into_cut:.1} s into the cut"
            );
        }
    }
    for (id, after) in &replaced {
        eprintln!(
            "{during:?}: task {id} ended on the other worker {:.1} s into the cut",
            after.as_secs_f64()
        );
    }
    let log = set.worker_log(&cut_off);
    assert!(
        log.contains("stopping every task"),
        "the cut-off worker fenced itself:\n{log}"
    );

    // The rest of the two minutes.
    let left = CUT_FOR.saturating_sub(cut_at.elapsed());
    assert!(
        !left.is_zero(),
        "the checks above took longer than the cut itself"
    );
    std::thread::sleep(left);
    for id in &tasks {
        assert!(
            attempt_processes(&agent, *id, 1).is_empty(),
            "task {id}'s first attempt runs again"
        );
    }

    let healed_at = Instant::now();
    ns.heal();
    eprintln!(
        "{during:?}: healed after {:.1} s",
        cut_at.elapsed().as_secs_f64()
    );
    poll(
        "the cut-off worker active again",
        REJOIN_BOUND,
        || {
            set.workers_info()
                .iter()
                .any(|w| {
                    w.name == cut_off && w.connected && w.state == drover_types::WorkerState::Active
                })
                .then_some(())
        },
        || set.logs(),
    );
    eprintln!(
        "{during:?}: the worker was active again {:.1} s after the network healed",
        healed_at.elapsed().as_secs_f64()
    );

    // Its late reports were rejected: the fenced attempts', and the result of the one
    // that ended by itself while cut off.
    let late = |id: u64, outcome: &str| {
        let task = format!("task={id} ");
        set.server_logs()
            .lines()
            .any(|l| {
                l.contains("ignored a late report of an attempt given up on")
                    && l.contains(&task)
                    && l.contains("attempt=1 ")
                    && l.contains(outcome)
            })
            .then_some(())
    };
    for id in &long {
        poll(
            &format!("the late report of task {id}'s fenced attempt rejected"),
            SLOW,
            || late(*id, "stopped by its worker, cut off from the server"),
            || set.logs(),
        );
    }
    poll(
        "the late result of the task that ended during the cut rejected",
        SLOW,
        || late(ender, "exited with code 0"),
        || set.logs(),
    );
    for id in &tasks {
        let t = task(&set, *id).expect("the task");
        assert_eq!(t.state, TaskState::Succeeded, "{t:#?}");
        assert_eq!(t.attempts.len(), 2, "{t:#?}");
        assert!(
            matches!(t.attempts[0].failure, Some(FailureCause::WorkerLost { .. })),
            "{t:#?}"
        );
        assert_eq!(
            t.result.as_deref(),
            Some("ran-2\n"),
            "the second attempt's result stands: {t:#?}"
        );
        assert!(
            !starts.join(format!("{id}-3")).exists(),
            "no third attempt ran"
        );
        // What a reader of the task's output gets is the second attempt's, the late
        // frames of the first notwithstanding.
        let leader = set.wait_leader(SLOW);
        let out = set.get(leader, &format!("/v1/tasks/{id}/output"));
        assert_eq!(out.status, 200, "{}", out.text());
        assert_eq!(out.text(), "ran-2\n", "task {id}'s output");
    }
    // A rejected report is still acknowledged: the worker forgets it (it would resend
    // it at every reconnect otherwise) and removes the attempt's directory.
    poll(
        "the cut-off worker to drop its first attempts' directories",
        SLOW,
        || {
            tasks
                .iter()
                .all(|id| !attempts.join(format!("{id}.1")).exists())
                .then_some(())
        },
        || format!("{:?}", std::fs::read_dir(&attempts).map(|d| d.count())),
    );

    // It runs new work (these may only run on it).
    let on_it = json!([{"key": "machine", "op": "eq", "values": ["cut"]}]);
    let fresh: Vec<u64> = (0..2)
        .map(|_| set.submit(&spec("true", on_it.clone())))
        .collect();
    for id in &fresh {
        history.acked(*id);
        let t = wait_task(&set, *id, "to end", SLOW, |t| t.state.is_final());
        assert_eq!(t.state, TaskState::Succeeded, "{t:#?}");
        assert_eq!(t.attempts.len(), 1, "{t:#?}");
        assert_eq!(t.attempts[0].worker_name, cut_off, "{t:#?}");
    }

    drop(watch);
    let leader = set.wait_leader(SLOW);
    let violations = history.check(&set, leader, Some(&runs));
    assert!(
        violations.is_empty(),
        "history violations: {violations:#?}\n{}",
        set.logs()
    );
    let ran = read(&runs).lines().count();
    eprintln!(
        "{during:?}: history checked: {} tasks, {ran} runs, terms {:?}",
        history.acked_count(),
        history.terms()
    );
}

#[test]
fn a_worker_cut_off_from_three_servers_for_two_minutes_stops_its_tasks_before_they_run_elsewhere() {
    a_worker_cut_off_from_three_servers_for_two_minutes(DuringCut::Nothing);
}

#[test]
fn a_worker_cut_off_while_the_leader_is_killed_stops_its_tasks_before_they_run_elsewhere() {
    a_worker_cut_off_from_three_servers_for_two_minutes(DuringCut::LeaderKilled);
}
