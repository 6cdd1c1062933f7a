//! Things going wrong: time limits, stubborn process trees, cancellation, a worker or
//! the server killed with SIGKILL.

mod common;

use common::*;
use drover_types::{FailureCause, TaskState};
use serde_json::json;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// A `sleep` argument no other process on the machine has: 1000 s plus a fraction
/// unique to this test, so that the long sleepers themselves carry the marker.
/// Fixed width, so that no marker is a prefix of another.
fn marker_duration() -> String {
    let n: u64 = unique("m").rsplit('-').next().unwrap().parse().unwrap();
    format!("1000.{:07}{:02}", std::process::id() % 10_000_000, n % 100)
}

#[test]
fn a_time_limit_kills_a_whole_process_tree_that_ignores_sigterm_and_double_forks() {
    let mut c = Cluster::start("timeout-tree");
    c.add_worker(
        "w",
        &["--cpus", "2", "--memory", "4G", "--kill-grace", "1s"],
    );
    let m = marker_duration();
    let script =
        format!("trap '' TERM; (setsid sh -c \"trap '' TERM; sleep {m}; :\" &) ; sleep {m}; :");
    let out = c.cli_ok(&["submit", "--timeout", "1s", "--shell", "--", &script]);
    let id: u64 = out
        .stdout
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("submit prints the id: {out}"));
    // The escaped grandchild exists (else the test proves nothing).
    c.poll("both sleepers to be running", SLOW, || {
        let sleepers = processes_with_cmdline(&format!("sleep {m}"));
        (sleepers.len() >= 2).then_some(())
    });
    let t = c.wait_final(id, SLOW);
    assert_eq!(t.state, TaskState::TimedOut, "{t:#?}");
    assert!(t.reason.is_some());
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let left = processes_with_cmdline(&m);
        if left.is_empty() {
            break;
        }
        if Instant::now() > deadline {
            panic!(
                "processes of the timed-out task survive 10 s after it ended:\n{}\n{}",
                left.iter()
                    .map(|(p, c)| format!("{p}: {c}"))
                    .collect::<Vec<_>>()
                    .join("\n"),
                c.logs()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let runtime = t.duration_ms.unwrap_or(0);
    assert!(
        runtime < 8_000,
        "a 1 s limit with a 1 s grace took {runtime} ms"
    );
}

#[test]
fn cancelling_a_running_task_kills_its_process() {
    let mut c = Cluster::start("cancel");
    c.add_worker("w", &["--cpus", "2", "--memory", "4G"]);
    let m = marker_duration();
    let id = c.submit(json!({"command": ["sleep", m]}));
    c.wait_state(id, "running", SLOW);
    c.poll("the sleeper to run", SLOW, || {
        (!processes_with_cmdline(&m).is_empty()).then_some(())
    });
    let out = c.cli_ok(&["cancel", &id.to_string()]);
    assert!(out.stdout.contains("cancelled 1"), "{out}");
    let t = c.wait_final(id, SLOW);
    assert_eq!(t.state, TaskState::Cancelled);
    c.poll(
        "the cancelled task's process to be gone",
        Duration::from_secs(10),
        || processes_with_cmdline(&m).is_empty().then_some(()),
    );
    // Cancelling a finished task changes nothing.
    let again = c.cli(&["cancel", &id.to_string()]);
    assert_eq!(c.task(id).state, TaskState::Cancelled, "{again}");
}

#[test]
fn a_task_on_a_killed_worker_runs_again_on_another_worker() {
    let mut c = Cluster::start("worker-lost");
    let a = c.add_worker("a", &["--cpus", "1", "--memory", "4G"]);
    let b = c.add_worker("b", &["--cpus", "1", "--memory", "4G"]);
    let runs = c.file("runs");
    let out = c.cli_ok(&[
        "submit",
        "--retries",
        "2",
        "--shell",
        "--",
        &format!(
            "echo \"$DROVER_ATTEMPT $DROVER_WORKDIR\" >> {}; sleep 2; echo done",
            sh_quote(&runs)
        ),
    ]);
    let id: u64 = out.stdout.trim().parse().unwrap();
    let t = c.wait_state(id, "running", SLOW);
    let victim_name = t.worker.clone().expect("a running task names its worker");
    let (victim, survivor) = if victim_name == a {
        ("a", b.clone())
    } else {
        ("b", a.clone())
    };
    c.poll("the first attempt to have started", SLOW, || {
        (!read(&runs).is_empty()).then_some(())
    });
    c.kill_worker(victim);
    let t = c.wait_final(id, SLOW);
    assert_eq!(t.state, TaskState::Succeeded, "{t:#?}");
    assert_eq!(t.attempts.len(), 2, "{t:#?}");
    assert_eq!(t.attempts[0].worker_name, victim_name);
    assert!(
        matches!(t.attempts[0].failure, Some(FailureCause::WorkerLost { .. })),
        "the first attempt failed because its worker was lost: {t:#?}"
    );
    assert_eq!(t.attempts[1].worker_name, survivor);
    assert_eq!(t.result.as_deref(), Some("done\n"));
    let lines: Vec<String> = read(&runs).lines().map(str::to_string).collect();
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(
        lines[1].starts_with("2 ") && lines[1].contains("wdata-"),
        "{lines:?}"
    );
    let status = c.cli_ok(&["status", &id.to_string()]).stdout;
    assert!(status.contains("was lost"), "{status}");
    // The server marks the worker lost.
    let lost = c
        .workers_info()
        .into_iter()
        .find(|w| w.name == victim_name)
        .unwrap();
    assert_eq!(lost.state.to_string(), "lost");
}

#[test]
fn a_task_that_may_not_be_retried_fails_when_its_worker_is_lost() {
    let mut c = Cluster::start("worker-lost-once");
    c.add_worker("a", &["--cpus", "1", "--memory", "4G"]);
    let id = c.submit(json!({"command": ["sleep", "30"]}));
    c.wait_state(id, "running", SLOW);
    c.add_worker("b", &["--cpus", "1", "--memory", "4G"]);
    c.kill_worker("a");
    let t = c.wait_final(id, SLOW);
    assert_eq!(
        t.state,
        TaskState::Failed,
        "at most once: never re-run elsewhere: {t:#?}"
    );
    assert_eq!(t.attempts.len(), 1, "{t:#?}");
    assert!(
        matches!(t.attempts[0].failure, Some(FailureCause::WorkerLost { .. })),
        "{t:#?}"
    );
}

#[test]
fn after_kill_9_of_the_server_every_task_survives_and_running_tasks_are_not_rerun() {
    // A long worker timeout: the worker must not fence its tasks while the server is
    // down for the restart.
    let mut c = Cluster::start_with("server-kill", &["--worker-timeout", "10s"]);
    c.add_worker("w", &["--cpus", "2", "--memory", "4G"]);
    let runs = c.file("runs");
    let retry = json!({"max_attempts": 3, "backoff": {"initial_ms": 100, "multiplier_percent": 200, "max_ms": 400}});
    let task = |name: &str, secs: &str, after: Vec<u64>| {
        json!({
            "name": name,
            "command": [format!("echo {name} >> {}; sleep {secs}; echo {name}-done", sh_quote(&runs))],
            "shell": true,
            "retry": retry,
            "after": after,
        })
    };
    let mut ids: BTreeMap<&str, u64> = BTreeMap::new();
    ids.insert("long1", c.submit(task("long1", "3", vec![])));
    ids.insert("long2", c.submit(task("long2", "3", vec![])));
    c.wait_state(ids["long1"], "running", SLOW);
    c.wait_state(ids["long2"], "running", SLOW);
    for q in ["queued1", "queued2", "queued3"] {
        ids.insert(q, c.submit(task(q, "0.2", vec![])));
    }
    let long1 = ids["long1"];
    ids.insert("child", c.submit(task("child", "0.2", vec![long1])));
    let before: BTreeMap<&str, TaskState> =
        ids.iter().map(|(n, id)| (*n, c.task(*id).state)).collect();
    // Queued: ready, or prefetched to the full worker (assigned, not started).
    assert!(
        matches!(before["queued1"], TaskState::Ready | TaskState::Assigned),
        "{before:?}"
    );
    assert!(
        !std::fs::read_to_string(&runs)
            .unwrap_or_default()
            .contains("queued"),
        "nothing queued may start while both slots are busy"
    );
    assert_eq!(before["child"], TaskState::Waiting, "{before:?}");

    c.kill_server();
    c.restart_server();

    // Everything acknowledged is still there, in the same state or further along.
    for (name, id) in &ids {
        let t = c.task(*id);
        assert!(
            !matches!(
                t.state,
                TaskState::Failed
                    | TaskState::Cancelled
                    | TaskState::DependencyFailed
                    | TaskState::TimedOut
            ),
            "{name} was {:?} before the crash and is {:?} after it: {t:#?}",
            before[name],
            t.state
        );
        if before[name] == TaskState::Running {
            assert!(
                matches!(t.state, TaskState::Running | TaskState::Succeeded),
                "{name} was running before the crash and is {:?} after it",
                t.state
            );
        }
    }
    let listed = c.get_ok("/v1/tasks");
    assert_eq!(
        listed["tasks"].as_array().map(Vec::len),
        Some(ids.len()),
        "{listed}"
    );

    // The worker comes back by itself and everything finishes.
    for (name, id) in &ids {
        let t = c.wait_final(*id, Duration::from_secs(45));
        assert_eq!(t.state, TaskState::Succeeded, "{name}: {t:#?}");
        assert_eq!(t.attempt.0, 1, "{name} ran more than once: {t:#?}");
    }
    let text = read(&runs);
    for name in ids.keys() {
        let n = text.lines().filter(|l| l == name).count();
        assert_eq!(n, 1, "{name} ran {n} times:\n{text}");
    }
    let long = c.task(ids["long1"]);
    assert_eq!(long.result.as_deref(), Some("long1-done\n"));
    // The books balance: nothing is left allocated on the worker.
    let w = c.poll("the worker to be idle", SLOW, || {
        let w = c.workers_info().remove(0);
        (w.connected && w.running.is_empty()).then_some(w)
    });
    assert_eq!(w.allocated.cpu_milli, 0, "{w:?}");
    let cluster = c.get_ok("/v1/cluster");
    assert_eq!(cluster["tasks"]["succeeded"], ids.len() as u64, "{cluster}");
}

#[test]
fn a_task_acknowledged_just_before_kill_9_is_there_after_restart() {
    let mut c = Cluster::start("server-kill-ack");
    // No worker: nothing moves, so every state must come back exactly.
    let mut ids = Vec::new();
    for i in 0..20 {
        ids.push(c.submit(json!({"command": ["echo", i.to_string()], "key": format!("k{i}")})));
    }
    let (job, first, count) = c.submit_job(json!({"tasks": [
        {"key": "j-a", "command": ["true"]},
        {"key": "j-b", "command": ["true"], "after": ["j-a"]},
    ]}));
    c.kill_server();
    c.restart_server();
    for (i, id) in ids.iter().enumerate() {
        let t = c.task(*id);
        assert_eq!(t.state, TaskState::Ready);
        assert_eq!(t.key.as_deref(), Some(format!("k{i}").as_str()));
        assert_eq!(t.spec.command, vec!["echo".to_string(), i.to_string()]);
    }
    let j = c.get_ok(&format!("/v1/jobs/{job}"));
    assert_eq!(j["count"], count, "{j}");
    assert_eq!(c.task(first + 1).state, TaskState::Waiting);
    // New submissions continue the numbering, never reusing an id.
    let next = c.submit(json!({"command": ["true"]}));
    assert_eq!(next, first + count, "ids are never reused after a restart");
}

#[test]
fn a_task_that_ends_while_the_server_is_down_is_recorded_when_the_worker_reconnects() {
    let mut c = Cluster::start_with("server-down-end", &["--worker-timeout", "10s"]);
    c.add_worker("w", &["--cpus", "2", "--memory", "4G"]);
    let started = c.file("started");
    let id = c.submit(json!({
        "command": [format!("touch {}; sleep 1; echo finished-offline; exit 6", sh_quote(&started))],
        "shell": true,
        "retry": {"max_attempts": 3, "backoff": {"initial_ms": 100, "multiplier_percent": 100, "max_ms": 100}},
    }));
    c.wait_state(id, "running", SLOW);
    c.poll("the task to have started", SLOW, || {
        started.exists().then_some(())
    });
    c.kill_server();
    std::thread::sleep(Duration::from_millis(2000)); // the task ends meanwhile
    c.restart_server();
    let t = c.poll("the offline end to be reported", SLOW, || {
        let t = c.task(id);
        (!t.attempts.is_empty() && t.attempts[0].ended_at.is_some()).then_some(t)
    });
    assert_eq!(
        t.attempts[0].failure,
        Some(FailureCause::Outcome {
            outcome: drover_types::Outcome::Exited { code: 6 }
        }),
        "the real outcome of attempt 1, not a lost worker: {t:#?}"
    );
}

#[test]
fn output_printed_while_the_server_is_down_is_not_lost() {
    let mut c = Cluster::start_with("server-down-output", &["--worker-timeout", "10s"]);
    c.add_worker("w", &["--cpus", "2", "--memory", "4G"]);
    let go = c.file("go");
    let id = c.submit(json!({
        "command": [format!(
            "echo before; while [ ! -f {g} ]; do sleep 0.05; done; echo during; sleep 3; echo after",
            g = sh_quote(&go)
        )],
        "shell": true,
    }));
    c.poll("the first line to reach the server", SLOW, || {
        (c.get(&format!("/v1/tasks/{id}/output")).text() == "before\n").then_some(())
    });
    c.kill_server();
    touch(&go); // "during" is printed while the server is down
    std::thread::sleep(Duration::from_millis(1000));
    c.restart_server();
    let t = c.wait_final(id, SLOW);
    assert_eq!(t.state, TaskState::Succeeded, "{t:#?}");
    assert_eq!(
        t.result.as_deref(),
        Some("before\nduring\nafter\n"),
        "the worker's own record"
    );
    let out = c.cli_ok(&["logs", &id.to_string()]);
    assert_eq!(
        out.stdout, "before\nduring\nafter\n",
        "the server's copy of the output"
    );
}

#[test]
fn a_worker_killed_with_sigkill_leaves_no_orphan_and_its_task_is_retried_when_it_restarts() {
    let mut c = Cluster::start_with("worker-restart", &["--worker-timeout", "10s"]);
    c.add_worker("w", &["--cpus", "1", "--memory", "4G"]);
    let m = marker_duration();
    let runs = c.file("runs");
    let id = c.submit(json!({
        "command": [format!("echo $DROVER_ATTEMPT >> {}; if [ $DROVER_ATTEMPT -eq 1 ]; then sleep {m}; fi; echo ok", sh_quote(&runs))],
        "shell": true,
        "retry": {"max_attempts": 3, "backoff": {"initial_ms": 100, "multiplier_percent": 100, "max_ms": 100}},
    }));
    c.wait_state(id, "running", SLOW);
    c.poll("the first attempt's sleeper", SLOW, || {
        (!processes_with_cmdline(&m).is_empty()).then_some(())
    });
    c.kill_worker("w");
    // The worker's reaper (a separate process holding a pipe from the agent) kills the
    // dead agent's tasks at once: nothing runs unknown to the server while the agent
    // is down. (A restarted agent also reaps what it finds; drover-exec tests that.)
    c.poll(
        "the dead agent's task to be killed by its reaper",
        SLOW,
        || processes_with_cmdline(&m).is_empty().then_some(()),
    );
    c.restart_worker("w");
    let t = c.wait_final(id, SLOW);
    assert_eq!(t.state, TaskState::Succeeded, "{t:#?}");
    assert_eq!(t.attempts.len(), 2, "{t:#?}");
    assert_eq!(read(&runs), "1\n2\n");
}

#[test]
fn a_worker_stopped_with_sigterm_kills_its_tasks_which_run_again_elsewhere() {
    let mut c = Cluster::start("worker-sigterm");
    c.add_worker("a", &["--cpus", "1", "--memory", "4G"]);
    let m = marker_duration();
    let id = c.submit(json!({
        "command": [format!("if [ $DROVER_ATTEMPT -eq 1 ]; then sleep {m}; fi; echo second")],
        "shell": true,
        "retry": {"max_attempts": 2, "backoff": {"initial_ms": 100, "multiplier_percent": 100, "max_ms": 100}},
    }));
    c.wait_state(id, "running", SLOW);
    c.poll("the sleeper", SLOW, || {
        (!processes_with_cmdline(&m).is_empty()).then_some(())
    });
    c.add_worker("b", &["--cpus", "1", "--memory", "4G"]);
    let pid = c.worker_pid("a");
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status();
    let deadline = Instant::now() + SLOW;
    while c.worker_exit("a").is_none() {
        assert!(
            Instant::now() < deadline,
            "the worker did not stop on SIGTERM\n{}",
            c.worker_log("a")
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    c.poll(
        "the stopped worker's task process to be gone",
        Duration::from_secs(10),
        || processes_with_cmdline(&m).is_empty().then_some(()),
    );
    let t = c.wait_final(id, SLOW);
    assert_eq!(t.state, TaskState::Succeeded, "{t:#?}");
    assert_eq!(t.result.as_deref(), Some("second\n"));
}

#[test]
fn a_drained_worker_takes_no_new_tasks_but_finishes_its_running_ones() {
    let mut c = Cluster::start("drain");
    let a = c.add_worker("a", &["--cpus", "2", "--memory", "4G"]);
    let gate = c.file("gate");
    let running = c.submit(json!({
        "command": [format!("while [ ! -f {} ]; do sleep 0.05; done; echo finished", sh_quote(&gate))],
        "shell": true,
    }));
    c.wait_state(running, "running", SLOW);
    let wid = c
        .workers_info()
        .into_iter()
        .find(|w| w.name == a)
        .unwrap()
        .id;
    let r = c.post(&format!("/v1/workers/{}/drain", wid.0), &json!({}));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(c.workers_info()[0].state.to_string(), "draining");
    let queued = c.submit(json!({"command": ["true"]}));
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        c.task(queued).state,
        TaskState::Ready,
        "a draining worker takes nothing new"
    );
    touch(&gate);
    assert_eq!(
        c.wait_final(running, SLOW).state,
        TaskState::Succeeded,
        "its running task finishes"
    );
    let r = c.post(&format!("/v1/workers/{}/resume", wid.0), &json!({}));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(c.wait_final(queued, SLOW).state, TaskState::Succeeded);
    let r = c.post("/v1/workers/999/drain", &json!({}));
    assert_eq!(r.status, 404, "{}", r.text());
}

#[test]
fn a_frozen_worker_is_declared_lost_and_when_it_thaws_its_stale_attempt_is_killed() {
    let mut c = Cluster::start("frozen-worker");
    let a = c.add_worker("a", &["--cpus", "1", "--memory", "4G"]);
    let m = marker_duration();
    let runs = c.file("runs");
    let id = c.submit(json!({
        "command": [format!(
            "echo \"start $DROVER_ATTEMPT\" >> {r}; if [ $DROVER_ATTEMPT -eq 1 ]; then sleep {m}; fi; echo \"end $DROVER_ATTEMPT\" >> {r}; echo attempt-$DROVER_ATTEMPT",
            r = sh_quote(&runs)
        )],
        "shell": true,
        "retry": {"max_attempts": 3, "backoff": {"initial_ms": 100, "multiplier_percent": 100, "max_ms": 100}},
    }));
    c.wait_state(id, "running", SLOW);
    c.poll("attempt 1's sleeper", SLOW, || {
        (!processes_with_cmdline(&m).is_empty()).then_some(())
    });
    let b = c.add_worker("b", &["--cpus", "1", "--memory", "4G"]);
    // A partition, as the server sees it: the agent says nothing (its task runs on).
    let pid = c.worker_pid("a");
    signal(pid, "-STOP");
    let t = c.wait_final(id, SLOW);
    signal(pid, "-CONT");
    assert_eq!(t.state, TaskState::Succeeded, "{t:#?}");
    assert_eq!(t.attempts[0].worker_name, a);
    assert!(
        matches!(t.attempts[0].failure, Some(FailureCause::WorkerLost { .. })),
        "{t:#?}"
    );
    assert_eq!(t.attempts.last().unwrap().worker_name, b);
    assert_eq!(
        t.result.as_deref(),
        Some(format!("attempt-{}\n", t.attempts.len()).as_str())
    );
    // Thawed, the agent is heard from again: it is back in service, and learns that
    // its attempt is stale and ends it.
    c.poll(
        "the thawed worker to be active again",
        Duration::from_secs(20),
        || {
            c.workers_info()
                .iter()
                .any(|w| w.name == a && w.connected && w.state.to_string() == "active")
                .then_some(())
        },
    );
    c.poll(
        "the thawed worker's stale attempt to be killed",
        Duration::from_secs(20),
        || processes_with_cmdline(&m).is_empty().then_some(()),
    );
    let after = c.task(id);
    assert_eq!(
        after.state,
        TaskState::Succeeded,
        "a stale attempt's end changes nothing: {after:#?}"
    );
    assert_eq!(after.result, t.result);
    assert!(
        !read(&runs).contains("end 1"),
        "attempt 1 never finished:\n{}",
        read(&runs)
    );
}

#[test]
fn a_worker_that_never_comes_back_after_a_server_restart_is_declared_lost() {
    let mut c = Cluster::start("restart-lost-worker");
    let a = c.add_worker("a", &["--cpus", "1", "--memory", "4G"]);
    let id = c.submit(json!({
        "command": ["if [ $DROVER_ATTEMPT -eq 1 ]; then sleep 600; fi; echo again"],
        "shell": true,
        "retry": {"max_attempts": 2, "backoff": {"initial_ms": 100, "multiplier_percent": 100, "max_ms": 100}},
    }));
    c.wait_state(id, "running", SLOW);
    // A second worker the server knows before the crash; it reconnects by itself.
    let b = c.add_worker("b", &["--cpus", "1", "--memory", "4G"]);
    c.kill_worker("a");
    c.kill_server();
    c.restart_server();
    let t = c.wait_final(id, SLOW);
    assert_eq!(t.state, TaskState::Succeeded, "{t:#?}");
    assert_eq!(t.attempts[0].worker_name, a);
    assert!(
        matches!(t.attempts[0].failure, Some(FailureCause::WorkerLost { .. })),
        "{t:#?}"
    );
    assert_eq!(t.attempts[1].worker_name, b);
}

#[test]
fn a_backoff_timer_survives_a_server_restart() {
    let mut c = Cluster::start_with("restart-backoff", &["--worker-timeout", "10s"]);
    c.add_worker("w", &["--cpus", "1", "--memory", "4G"]);
    let id = c.submit(json!({
        "command": ["sh", "-c", "[ $DROVER_ATTEMPT -ge 2 ] && echo second"],
        "retry": {"max_attempts": 2, "backoff": {"initial_ms": 2000, "multiplier_percent": 100, "max_ms": 2000}},
    }));
    c.wait_state(id, "backoff", SLOW);
    c.kill_server();
    c.restart_server();
    let t = c.task(id);
    assert!(
        matches!(
            t.state,
            TaskState::Backoff
                | TaskState::Ready
                | TaskState::Assigned
                | TaskState::Running
                | TaskState::Succeeded
        ),
        "{t:#?}"
    );
    let t = c.wait_final(id, SLOW);
    assert_eq!(t.state, TaskState::Succeeded, "{t:#?}");
    assert_eq!(t.result.as_deref(), Some("second\n"));
}

#[test]
fn a_task_cancelled_while_its_worker_is_reconnecting_is_killed_when_it_returns() {
    let mut c = Cluster::start_with("cancel-offline", &["--worker-timeout", "10s"]);
    c.add_worker("w", &["--cpus", "1", "--memory", "4G"]);
    let m = marker_duration();
    let id = c.submit(json!({"command": ["sleep", m]}));
    c.wait_state(id, "running", SLOW);
    c.poll("the sleeper", SLOW, || {
        (!processes_with_cmdline(&m).is_empty()).then_some(())
    });
    c.kill_server();
    // Long enough for the worker's reconnection backoff to grow past a second.
    std::thread::sleep(Duration::from_millis(1800));
    c.restart_server();
    let r = c.post(&format!("/v1/tasks/{id}/cancel"), &json!({}));
    assert_eq!(r.status, 200, "{}", r.text());
    let still_connected = c.workers_info()[0].connected;
    assert_eq!(c.task(id).state, TaskState::Cancelled);
    c.poll(
        &format!("the cancelled task's process to be killed (worker was connected at cancel: {still_connected})"),
        Duration::from_secs(15),
        || processes_with_cmdline(&m).is_empty().then_some(()),
    );
    let w = c.poll("the worker's books to be clear", SLOW, || {
        let w = c.workers_info().remove(0);
        (w.connected && w.running.is_empty()).then_some(w)
    });
    assert_eq!(w.allocated.cpu_milli, 0);
}

#[test]
fn workers_of_two_clusters_on_one_host_never_kill_each_others_tasks() {
    // E.g. two users each running `drover up` (workers "local-1") on a shared host.
    let shared = unique("same-name");
    let mut first = Cluster::start("host-share-1");
    first.add_worker_named("w", &shared, &["--cpus", "1", "--memory", "1G"]);
    let m = marker_duration();
    let id = first.submit(json!({"command": ["sleep", m]}));
    first.wait_state(id, "running", SLOW);
    first.poll("the first cluster's task process", SLOW, || {
        (!processes_with_cmdline(&m).is_empty()).then_some(())
    });
    let mut second = Cluster::start("host-share-2");
    second.add_worker_named("w", &shared, &["--cpus", "1", "--memory", "1G"]);
    std::thread::sleep(Duration::from_millis(1000));
    assert!(
        !processes_with_cmdline(&m).is_empty(),
        "starting a worker for another cluster killed this cluster's task\n{}",
        second.worker_log("w")
    );
    let t = first.task(id);
    assert_eq!(t.state, TaskState::Running, "{t:#?}");
}

#[test]
fn a_server_stopped_with_sigterm_exits_cleanly_and_restarts_with_its_state() {
    let mut c = Cluster::start("server-sigterm");
    let ids: Vec<u64> = (0..5)
        .map(|i| c.submit(json!({"command": ["echo", i.to_string()]})))
        .collect();
    let pid = c.server_pid();
    signal(pid, "-TERM");
    let st = c.wait_server_exit(Duration::from_secs(15));
    assert!(st.success(), "a SIGTERMed server exits 0, got {st}");
    c.restart_server();
    for id in ids {
        assert_eq!(c.task(id).state, TaskState::Ready);
    }
}

#[test]
fn a_lost_worker_that_comes_back_is_active_again_and_takes_work() {
    let mut c = Cluster::start("lost-returns");
    let name = c.add_worker("w", &["--cpus", "1", "--memory", "4G"]);
    c.kill_worker("w");
    c.poll("the killed worker to be declared lost", SLOW, || {
        c.workers_info()
            .iter()
            .any(|w| w.name == name && w.state.to_string() == "lost")
            .then_some(())
    });
    c.restart_worker("w");
    let id = c.submit(json!({"command": ["echo", "back"]}));
    let t = c.wait_final(id, SLOW);
    assert_eq!(t.state, TaskState::Succeeded, "{t:#?}");
    assert_eq!(t.worker.as_deref(), Some(name.as_str()));
    let cluster = c.get_ok("/v1/cluster");
    assert_eq!(cluster["workers_active"], 1, "{cluster}");
    assert_eq!(cluster["workers_lost"], 0, "{cluster}");
}

#[test]
fn no_acknowledged_submission_is_lost_when_the_server_is_killed_repeatedly_under_load() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};

    let mut c = Cluster::start("server-kill-load");
    c.add_worker("w", &["--cpus", "2"]);
    let stop = Arc::new(AtomicBool::new(false));
    let acked: Arc<Mutex<Vec<(String, u64)>>> = Arc::default();
    let mut submitters = Vec::new();
    for s in 0..4 {
        let (addr, token) = (c.addr.clone(), c.token.clone());
        let (stop, acked) = (stop.clone(), acked.clone());
        submitters.push(std::thread::spawn(move || {
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                let key = format!("s{s}-{n}");
                let body = json!({"command": ["true"], "key": key}).to_string();
                // Refused, reset or unanswered while the server is down: not acknowledged,
                // so nothing is promised; try the next one.
                match http_with(
                    &addr,
                    "POST",
                    "/v1/tasks",
                    Some(&token),
                    &[],
                    Some(body.as_bytes()),
                ) {
                    Ok(r) if r.status == 201 => {
                        let id = r.json()["first"].as_u64().expect("an id");
                        acked.lock().unwrap().push((key, id));
                    }
                    _ => std::thread::sleep(Duration::from_millis(20)),
                }
                n += 1;
            }
        }));
    }
    for _ in 0..3 {
        std::thread::sleep(Duration::from_millis(500));
        c.kill_server();
        std::thread::sleep(Duration::from_millis(100));
        c.restart_server();
    }
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::Relaxed);
    for t in submitters {
        t.join().unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    eprintln!("{} submissions acknowledged across 3 kills", acked.len());
    assert!(
        acked.len() >= 40,
        "the submitters got only {} answers",
        acked.len()
    );
    let mut ids = std::collections::BTreeSet::new();
    for (key, id) in &acked {
        let t = c.task(*id);
        assert_eq!(
            t.key.as_deref(),
            Some(key.as_str()),
            "acknowledged task {id} ({key}) is not what came back"
        );
        assert!(ids.insert(*id), "id {id} given twice");
    }
    // And every one of them runs to the end on the worker.
    for (_, id) in acked.iter().rev().take(5) {
        c.wait_final(*id, Duration::from_secs(30));
    }
}

#[test]
fn with_prefetch_every_task_runs_exactly_once_through_a_new_worker_and_a_server_kill() {
    let mut c = Cluster::start_with("prefetch-faults", &["--worker-timeout", "10s"]);
    c.add_worker("a", &["--cpus", "2"]);
    let r = c.put(
        "/v1/policy",
        &json!({"queue": {"kind": "fcfs"}, "placement": "bin_pack", "prefetch_per_worker": 2}),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let runs = c.file("runs");
    let (job, first, count) = c.submit_job(json!({"tasks": [{
        "command": [format!("echo $DROVER_TASK_INDEX >> {}; sleep 0.02", sh_quote(&runs))],
        "shell": true,
        "retry": {"max_attempts": 3, "backoff": {"initial_ms": 100, "multiplier_percent": 200, "max_ms": 400}},
        "array": {"start": 0, "end": 299},
    }]}));
    assert_eq!(count, 300);
    // Some run, then a worker with room joins (prefetched tasks are taken back for it),
    // then the server is killed and restarted mid-run.
    c.poll("a third of the tasks done", SLOW, || {
        let j = c.get_ok(&format!("/v1/jobs/{job}"));
        (j["states"]["succeeded"].as_u64().unwrap_or(0) >= 100).then_some(())
    });
    c.add_worker("b", &["--cpus", "2"]);
    std::thread::sleep(Duration::from_millis(300));
    c.kill_server();
    c.restart_server();
    let j = c.poll("every task final", Duration::from_secs(90), || {
        let j = c.get_ok(&format!("/v1/jobs/{job}"));
        (j["finished"] == true).then_some(j)
    });
    assert_eq!(j["succeeded"], true, "{j}");
    let text = std::fs::read_to_string(&runs).unwrap();
    let mut seen = BTreeMap::new();
    for line in text.lines() {
        *seen
            .entry(line.trim().parse::<u32>().unwrap())
            .or_insert(0u32) += 1;
    }
    assert_eq!(seen.len(), 300, "every task ran");
    let twice: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    // A task runs again only if it was killed mid-run (its attempts say so).
    for (index, _) in twice {
        let t = c.task(first + *index as u64);
        assert!(
            t.attempts.iter().any(|a| a.failure.is_some()),
            "task {index} ran twice without a failed attempt: {t:#?}"
        );
    }
    // Both workers did work.
    let workers: std::collections::BTreeSet<String> =
        (0..300).filter_map(|i| c.task(first + i).worker).collect();
    assert_eq!(workers.len(), 2, "{workers:?}");
}
