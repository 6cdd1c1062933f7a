//! Switching the scheduling policy at run time, and what each policy does.

mod common;

use common::*;
use drover_types::{FailureCause, TaskState};
use serde_json::{Value, json};
use std::time::Duration;

/// A blocker holding the single CPU of a 1-CPU worker until `gate` exists.
fn blocker(c: &Cluster, gate: &std::path::Path) -> u64 {
    let id = c.submit(json!({
        "name": "blocker",
        "command": [format!("while [ ! -f {} ]; do sleep 0.05; done", sh_quote(gate))],
        "shell": true,
    }));
    c.wait_state(id, "running", SLOW);
    id
}

fn appender(order: &std::path::Path, name: &str) -> Value {
    json!([format!("echo {name} >> {}", sh_quote(order))])
}

#[test]
fn fcfs_runs_queued_tasks_in_submission_order_whatever_their_priority() {
    let mut c = Cluster::start("fcfs");
    c.add_worker("w", &["--cpus", "1", "--memory", "4G"]);
    let out = c.cli_ok(&["policy", "fcfs"]);
    assert!(out.stdout.contains("fcfs"), "{out}");
    assert_eq!(c.get_ok("/v1/policy")["queue"]["kind"], "fcfs");
    let gate = c.file("gate");
    let order = c.file("order");
    let b = blocker(&c, &gate);
    let mut ids = Vec::new();
    for (name, prio) in [("first", 0), ("second", 100), ("third", -5), ("fourth", 50)] {
        ids.push(
            c.submit(json!({"command": appender(&order, name), "shell": true, "priority": prio})),
        );
    }
    touch(&gate);
    c.wait_final(b, SLOW);
    for id in &ids {
        assert_eq!(c.wait_final(*id, SLOW).state, TaskState::Succeeded);
    }
    assert_eq!(read(&order), "first\nsecond\nthird\nfourth\n");
}

#[test]
fn shortest_job_first_runs_the_shortest_expected_task_first() {
    let mut c = Cluster::start("sjf");
    c.add_worker("w", &["--cpus", "1", "--memory", "4G"]);
    c.cli_ok(&["policy", "sjf"]);
    assert_eq!(
        c.get_ok("/v1/policy")["queue"]["kind"],
        "shortest_job_first"
    );
    let gate = c.file("gate");
    let order = c.file("order");
    let b = blocker(&c, &gate);
    let mut ids = Vec::new();
    for (name, expected) in [
        ("long", Some(60_000)),
        ("none", None),
        ("short", Some(1_000)),
        ("medium", Some(10_000)),
    ] {
        let mut spec = json!({"command": appender(&order, name), "shell": true});
        if let Some(ms) = expected {
            spec["expected_runtime_ms"] = json!(ms);
        }
        ids.push(c.submit(spec));
    }
    touch(&gate);
    c.wait_final(b, SLOW);
    for id in &ids {
        assert_eq!(c.wait_final(*id, SLOW).state, TaskState::Succeeded);
    }
    assert_eq!(
        read(&order),
        "short\nmedium\nlong\nnone\n",
        "tasks without a hint go last"
    );
}

#[test]
fn spread_placement_puts_tasks_on_different_workers_and_binpack_fills_one() {
    let mut c = Cluster::start("placement");
    let a = c.add_worker("a", &["--cpus", "4", "--memory", "8G"]);
    let b = c.add_worker("b", &["--cpus", "4", "--memory", "8G"]);
    let gate = c.file("gate");
    let hold = json!([format!(
        "while [ ! -f {} ]; do sleep 0.05; done",
        sh_quote(&gate)
    )]);

    // Binpack (the default): the second task joins the first on the same worker.
    assert_eq!(c.get_ok("/v1/policy")["placement"], "bin_pack");
    let t1 = c.submit(json!({"command": hold, "shell": true}));
    let w1 = c.wait_state(t1, "running", SLOW).worker.unwrap();
    let t2 = c.submit(json!({"command": hold, "shell": true}));
    let w2 = c.wait_state(t2, "running", SLOW).worker.unwrap();
    assert_eq!(w1, w2, "binpack fills the busiest worker that fits");
    touch(&gate);
    c.wait_final(t1, SLOW);
    c.wait_final(t2, SLOW);
    std::fs::remove_file(&gate).unwrap();

    c.cli_ok(&["policy", "--placement", "spread"]);
    assert_eq!(c.get_ok("/v1/policy")["placement"], "spread");
    let t3 = c.submit(json!({"command": hold, "shell": true}));
    let w3 = c.wait_state(t3, "running", SLOW).worker.unwrap();
    let t4 = c.submit(json!({"command": hold, "shell": true}));
    let w4 = c.wait_state(t4, "running", SLOW).worker.unwrap();
    assert_ne!(
        w3, w4,
        "spread puts the second task on the idle worker ({a}, {b})"
    );
    touch(&gate);
    c.wait_final(t3, SLOW);
    c.wait_final(t4, SLOW);
}

#[test]
fn with_preemption_on_a_high_priority_task_evicts_a_low_priority_one() {
    let mut c = Cluster::start("preempt");
    c.add_worker("w", &["--cpus", "1", "--memory", "4G"]);
    let mut policy = c.get_ok("/v1/policy");
    policy["preemption"] = json!(true);
    policy["preemption_grace_ms"] = json!(500);
    let r = c.put("/v1/policy", &policy);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["preemption"], true);
    let runs = c.file("runs");
    let low = c.submit(json!({
        "name": "low",
        "command": [format!("echo low-$DROVER_ATTEMPT >> {}; sleep 3", sh_quote(&runs))],
        "shell": true,
        "priority": 0,
        "retry": {"max_attempts": 3, "backoff": {"initial_ms": 100, "multiplier_percent": 100, "max_ms": 100}},
    }));
    c.wait_state(low, "running", SLOW);
    c.poll("the low task to have started", SLOW, || {
        read(&runs).contains("low-1").then_some(())
    });
    let high = c.submit(json!({
        "name": "high",
        "command": [format!("echo high >> {}", sh_quote(&runs))],
        "shell": true,
        "priority": 100,
    }));
    let h = c.wait_final(high, Duration::from_secs(15));
    assert_eq!(h.state, TaskState::Succeeded, "{h:#?}");
    let l = c.wait_final(low, SLOW);
    assert_eq!(
        l.state,
        TaskState::Succeeded,
        "the evicted task runs again: {l:#?}"
    );
    assert!(l.attempts.len() >= 2, "{l:#?}");
    assert_eq!(
        l.attempts[0].failure,
        Some(FailureCause::Preempted),
        "{l:#?}"
    );
    let text = read(&runs);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        &lines[..3],
        ["low-1", "high", "low-2"],
        "high ran between the low attempts:\n{text}"
    );
}

#[test]
fn a_task_that_may_run_only_once_is_never_preempted() {
    let mut c = Cluster::start("no-preempt-once");
    c.add_worker("w", &["--cpus", "1", "--memory", "4G"]);
    let mut policy = c.get_ok("/v1/policy");
    policy["preemption"] = json!(true);
    policy["preemption_grace_ms"] = json!(500);
    assert_eq!(c.put("/v1/policy", &policy).status, 200);
    let gate = c.file("gate");
    let once = blocker(&c, &gate); // max_attempts 1
    let high = c.submit(json!({"command": ["true"], "priority": 100}));
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        c.task(once).state,
        TaskState::Running,
        "an at-most-once task is never evicted"
    );
    // Waiting: in the server's queue, or prefetched to the busy worker (the default).
    assert!(
        matches!(c.task(high).state, TaskState::Ready | TaskState::Assigned),
        "{:?}",
        c.task(high).state
    );
    touch(&gate);
    assert_eq!(c.wait_final(once, SLOW).state, TaskState::Succeeded);
    assert_eq!(c.wait_final(high, SLOW).state, TaskState::Succeeded);
}

#[test]
fn the_policy_survives_a_server_restart_and_bad_policies_are_refused() {
    let mut c = Cluster::start("policy-restart");
    c.cli_ok(&["policy", "fcfs", "--placement", "round-robin"]);
    c.kill_server();
    c.restart_server();
    let p = c.get_ok("/v1/policy");
    assert_eq!(p["queue"]["kind"], "fcfs", "{p}");
    assert_eq!(p["placement"], "round_robin", "{p}");
    let text = c.cli_ok(&["policy"]).stdout;
    assert!(
        text.contains("fcfs") && text.contains("round-robin"),
        "{text}"
    );

    let out = c.cli(&["policy", "lottery"]);
    assert_ne!(out.code(), Some(0), "{out}");
    assert!(out.stderr.contains("lottery"), "{out}");
    let out = c.cli(&["policy", "--placement", "random"]);
    assert_ne!(out.code(), Some(0), "{out}");
    let r = c.put("/v1/policy", &json!({"queue": {"kind": "nope"}}));
    assert_eq!(r.status, 400, "{}", r.text());
    assert_eq!(r.error()["code"], "invalid_request");
    let r = c.put(
        "/v1/policy",
        &json!({"queue": {"kind": "fcfs"}, "placement": "binpack", "preemption_grace_ms": "soon"}),
    );
    assert_eq!(r.status, 400, "{}", r.text());
    assert_eq!(
        c.get_ok("/v1/policy")["queue"]["kind"],
        "fcfs",
        "a refused policy changes nothing"
    );
}

/// Runs alice's six tasks then bob's two under fair share on a worker with `slots`
/// CPUs (held by blockers until all eight are queued); returns the order they ran in.
fn fair_share_order(test: &str, slots: u32) -> Vec<String> {
    let mut c = Cluster::start(test);
    c.add_worker("w", &["--cpus", &slots.to_string(), "--memory", "4G"]);
    // Without prefetch: tasks prefetched to a worker are overtaken only by tasks of
    // the same owner (the order between owners moves with their usage), so alice's
    // two prefetched tasks would run before bob's first (not solved yet).
    c.cli_ok(&["policy", "fair", "--prefetch", "0"]);
    assert_eq!(c.get_ok("/v1/policy")["queue"]["kind"], "fair_share");
    let gate = c.file("gate");
    let order = c.file("order");
    let blockers: Vec<u64> = (0..slots).map(|_| blocker(&c, &gate)).collect();
    let mut ids = Vec::new();
    for (owner, n) in [("alice", 6), ("bob", 2)] {
        for i in 0..n {
            let name = format!("{owner}-{i}");
            let cmd = json!([format!("echo {name} >> {}; sleep 0.2", sh_quote(&order))]);
            ids.push(c.submit(json!({"command": cmd, "shell": true, "owner": owner})));
        }
    }
    touch(&gate);
    for id in blockers.iter().chain(&ids) {
        assert_eq!(c.wait_final(*id, SLOW).state, TaskState::Succeeded);
    }
    read(&order).lines().map(str::to_string).collect()
}

#[test]
fn fair_share_gives_a_second_owner_a_slot_before_the_first_owner_takes_them_all() {
    let ran = fair_share_order("fair-2", 2);
    let pos = |n: &str| ran.iter().position(|l| l == n).unwrap();
    assert!(
        pos("bob-0") <= 1,
        "with two slots, bob gets one of the first two: {ran:?}"
    );
    assert!(pos("bob-1") <= 3, "{ran:?}");
}

#[test]
fn fair_share_interleaves_owners_on_a_single_slot() {
    let ran = fair_share_order("fair-1", 1);
    let pos = |n: &str| ran.iter().position(|l| l == n).unwrap();
    assert!(
        pos("bob-0") <= 2,
        "bob waits for at most one or two of alice's tasks: {ran:?}"
    );
    assert!(
        pos("bob-1") <= 4,
        "bob's tasks are interleaved with alice's: {ran:?}"
    );
}

#[test]
fn with_aging_a_long_waiting_low_priority_task_overtakes_a_newer_higher_one() {
    let mut c = Cluster::start("aging");
    c.add_worker("w", &["--cpus", "1", "--memory", "4G"]);
    let mut policy = c.get_ok("/v1/policy");
    policy["queue"] = json!({"kind": "priority", "aging_ms": 200});
    assert_eq!(c.put("/v1/policy", &policy).status, 200);
    let gate = c.file("gate");
    let order = c.file("order");
    let b = blocker(&c, &gate);
    let old_low =
        c.submit(json!({"command": appender(&order, "old-low"), "shell": true, "priority": 0}));
    std::thread::sleep(Duration::from_millis(2500)); // ~12 levels of aging
    let new_high =
        c.submit(json!({"command": appender(&order, "new-high"), "shell": true, "priority": 5}));
    touch(&gate);
    c.wait_final(b, SLOW);
    c.wait_final(old_low, SLOW);
    c.wait_final(new_high, SLOW);
    assert_eq!(read(&order), "old-low\nnew-high\n");
}

#[test]
fn round_robin_placement_takes_turns_between_workers() {
    // Workers of unequal size, so that no other policy takes turns: spread would put
    // all four on the big one (it stays the least loaded), bin-pack the first two on
    // the small one.
    let mut c = Cluster::start("round-robin");
    c.add_worker("a", &["--cpus", "8", "--memory", "8G"]);
    c.add_worker("b", &["--cpus", "2", "--memory", "8G"]);
    c.cli_ok(&["policy", "--placement", "round-robin"]);
    let gate = c.file("gate");
    let hold = json!([format!(
        "while [ ! -f {} ]; do sleep 0.05; done",
        sh_quote(&gate)
    )]);
    let mut on = Vec::new();
    for _ in 0..4 {
        let id = c.submit(json!({"command": hold, "shell": true}));
        on.push(c.wait_state(id, "running", SLOW).worker.unwrap());
    }
    touch(&gate);
    assert_ne!(on[0], on[1], "{on:?}");
    assert_eq!(on[0], on[2], "{on:?}");
    assert_eq!(on[1], on[3], "{on:?}");
}

#[test]
fn switching_the_queue_policy_reorders_tasks_already_queued() {
    let mut c = Cluster::start("switch-policy");
    c.add_worker("w", &["--cpus", "1", "--memory", "4G"]);
    let gate = c.file("gate");
    let order = c.file("order");
    let b = blocker(&c, &gate);
    let mut ids = Vec::new();
    for (name, prio) in [("first-low", 0), ("second-high", 10), ("third-mid", 5)] {
        ids.push(
            c.submit(json!({"command": appender(&order, name), "shell": true, "priority": prio})),
        );
    }
    c.cli_ok(&["policy", "fcfs"]);
    touch(&gate);
    c.wait_final(b, SLOW);
    for id in &ids {
        c.wait_final(*id, SLOW);
    }
    assert_eq!(
        read(&order),
        "first-low\nsecond-high\nthird-mid\n",
        "fcfs applies to tasks queued before the switch"
    );
}

#[test]
fn a_later_task_of_higher_priority_overtakes_tasks_prefetched_by_default() {
    let mut c = Cluster::start("prefetch-overtake");
    c.add_worker("w", &["--cpus", "1", "--memory", "4G"]);
    assert_eq!(c.get_ok("/v1/policy")["prefetch_per_worker"], 2);
    let gate = c.file("gate");
    let order = c.file("order");
    let b = blocker(&c, &gate);
    let low: Vec<u64> = (0..2)
        .map(|i| c.submit(json!({"command": appender(&order, &format!("low-{i}")), "shell": true})))
        .collect();
    // Both wait on the busy worker itself (prefetched), not in the server's queue.
    for id in &low {
        c.wait_state(*id, "assigned", SLOW);
    }
    let high = c.submit(json!({"command": appender(&order, "high"), "shell": true, "priority": 5}));
    // The worker's queue was full: the high one gets a place only once the low ones
    // behind it were taken back.
    c.wait_state(high, "assigned", SLOW);
    touch(&gate);
    c.wait_final(b, SLOW);
    for id in low.iter().chain([&high]) {
        assert_eq!(c.wait_final(*id, SLOW).state, TaskState::Succeeded);
    }
    assert_eq!(read(&order), "high\nlow-0\nlow-1\n");
}
