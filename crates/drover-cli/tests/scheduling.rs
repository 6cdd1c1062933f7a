//! Who runs first and where: priority on a saturated worker, resources on workers of
//! different sizes, no over-commit.

mod common;

use common::*;
use drover_types::TaskState;
use serde_json::json;
use std::collections::BTreeMap;
use std::time::Duration;

#[test]
fn on_a_saturated_worker_the_highest_priority_task_starts_first() {
    let mut c = Cluster::start("priority");
    c.add_worker("w", &["--cpus", "1", "--memory", "4G"]);
    let gate = c.file("gate");
    let order = c.file("order");
    let append = |name: &str| json!([format!("echo {name} >> {}", sh_quote(&order))]);
    let blocker = c.submit(json!({
        "name": "blocker",
        "command": [format!("while [ ! -f {} ]; do sleep 0.05; done; echo blocker >> {}", sh_quote(&gate), sh_quote(&order))],
        "shell": true,
    }));
    c.wait_state(blocker, "running", SLOW);
    // Submitted while the only CPU is taken: low first, high last.
    let mut ids = BTreeMap::new();
    for (name, prio) in [
        ("low-a", 1),
        ("low-b", 1),
        ("mid", 5),
        ("neg", -3),
        ("high", 10),
    ] {
        ids.insert(
            name,
            c.submit(
                json!({"name": name, "command": append(name), "shell": true, "priority": prio}),
            ),
        );
    }
    std::thread::sleep(Duration::from_millis(300));
    for (name, id) in &ids {
        // Queued in the cluster, or prefetched to the worker (default: two), but not
        // started: the order below is the queue's, prefetched tasks overtaken included.
        let t = c.task(*id);
        assert!(
            matches!(t.state, TaskState::Ready | TaskState::Assigned) && t.started_at.is_none(),
            "{name} must queue behind the blocker: {t:#?}"
        );
    }
    touch(&gate);
    for id in ids.values() {
        let t = c.wait_final(*id, SLOW);
        assert_eq!(t.state, TaskState::Succeeded, "{t:#?}");
    }
    let ran: Vec<String> = read(&order).lines().map(str::to_string).collect();
    assert_eq!(
        ran,
        ["blocker", "high", "mid", "low-a", "low-b", "neg"],
        "higher priority first; equal priorities in submission order"
    );
    // started_at agrees with the order.
    let started = |n: &str| c.task(ids[n]).started_at.unwrap();
    assert!(started("high") <= started("mid") && started("mid") <= started("low-a"));
}

#[test]
fn a_task_too_big_for_the_small_worker_lands_only_on_the_big_one() {
    let mut c = Cluster::start("fit");
    let small = c.add_worker("small", &["--cpus", "1", "--memory", "1G"]);
    let big = c.add_worker("big", &["--cpus", "4", "--memory", "8G"]);
    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push(c.submit(json!({"command": ["sleep", "0.3"], "resources": {"cpu_milli": 3000}})));
        ids.push(c.submit(json!({"command": ["sleep", "0.3"], "resources": {"cpu_milli": 1000, "memory_bytes": 4u64 << 30}})));
    }
    for id in ids {
        let t = c.wait_final(id, SLOW);
        assert_eq!(t.state, TaskState::Succeeded, "{t:#?}");
        for a in &t.attempts {
            assert_eq!(
                a.worker_name, big,
                "task {id} needs the big worker, ran on {} (small is {small})",
                a.worker_name
            );
        }
    }
}

#[test]
fn a_task_bigger_than_every_worker_stays_pending_and_says_why() {
    let mut c = Cluster::start("nofit");
    c.add_worker("small", &["--cpus", "1", "--memory", "1G"]);
    let id = c.submit(json!({"command": ["true"], "resources": {"cpu_milli": 5000}}));
    let ok = c.submit(json!({"command": ["true"]}));
    // A task that fits is not held up by the one that cannot.
    assert_eq!(c.wait_final(ok, SLOW).state, TaskState::Succeeded);
    let t = c.task(id);
    assert_eq!(t.state, TaskState::Ready, "{t:#?}");
    let reason = t.reason.unwrap_or_default();
    assert!(!reason.is_empty(), "a pending task says why it waits");
}

#[test]
fn many_small_tasks_never_over_commit_either_worker() {
    let mut c = Cluster::start("overcommit");
    c.add_worker("small", &["--cpus", "1", "--memory", "1G"]);
    c.add_worker("big", &["--cpus", "4", "--memory", "8G"]);
    let events = c.file("events");
    let script = format!(
        "echo \"start $(date +%s%N) $DROVER_WORKDIR\" >> {e}; sleep 1; echo \"end $(date +%s%N) $DROVER_WORKDIR\" >> {e}",
        e = sh_quote(&events)
    );
    let mut ids = Vec::new();
    for _ in 0..15 {
        ids.push(c.submit(json!({
            "command": [script],
            "shell": true,
            "resources": {"cpu_milli": 1000, "memory_bytes": 300u64 << 20},
        })));
    }
    // Watch the server's books while they run.
    let mut max_running: BTreeMap<String, usize> = BTreeMap::new();
    c.poll("all 15 tasks to end", Duration::from_secs(60), || {
        for w in c.workers_info() {
            assert!(
                w.allocated.cpu_milli <= w.capacity.cpu_milli
                    && w.allocated.memory_bytes <= w.capacity.memory_bytes,
                "worker {} over-committed: allocated {:?} of {:?}",
                w.name,
                w.allocated,
                w.capacity
            );
            assert!(
                w.running.len() as u32 * 1000 <= w.capacity.cpu_milli,
                "worker {} runs {} one-CPU tasks on {} millicores",
                w.name,
                w.running.len(),
                w.capacity.cpu_milli
            );
            let m = max_running.entry(w.name.clone()).or_default();
            *m = (*m).max(w.running.len());
        }
        ids.iter()
            .all(|id| c.task(*id).state.is_final())
            .then_some(())
    });
    for id in &ids {
        assert_eq!(c.task(*id).state, TaskState::Succeeded);
    }
    // What really ran at the same time, from the tasks' own records.
    let text = read(&events);
    let mut per_worker: BTreeMap<&str, Vec<(u128, i32)>> = BTreeMap::new();
    for line in text.lines() {
        let mut parts = line.split_whitespace();
        let (Some(kind), Some(ts), Some(dir)) = (parts.next(), parts.next(), parts.next()) else {
            continue;
        };
        let worker = if dir.contains("wdata-small") {
            "small"
        } else if dir.contains("wdata-big") {
            "big"
        } else {
            "?"
        };
        let delta = if kind == "start" { 1 } else { -1 };
        per_worker
            .entry(worker)
            .or_default()
            .push((ts.parse().unwrap(), delta));
    }
    assert!(!per_worker.contains_key("?"), "{text}");
    let mut peak = BTreeMap::new();
    for (w, mut ev) in per_worker {
        ev.sort_by_key(|(t, d)| (*t, *d)); // ends before starts at the same instant
        let (mut now, mut max) = (0, 0);
        for (_, d) in ev {
            now += d;
            max = max.max(now);
        }
        peak.insert(w, max);
    }
    assert!(
        peak.get("small").copied().unwrap_or(0) <= 1,
        "small ran more than 1 at once: {peak:?}\n{text}"
    );
    assert!(
        peak.get("big").copied().unwrap_or(0) <= 4,
        "big ran more than 4 at once: {peak:?}\n{text}"
    );
    assert!(
        peak.get("big").copied().unwrap_or(0) >= 2,
        "the big worker should run several at once: {peak:?}"
    );
    assert_eq!(text.lines().count(), 30, "each task ran once:\n{text}");
}

#[test]
fn constraints_place_a_task_only_on_workers_with_matching_labels() {
    let mut c = Cluster::start("constraints");
    let a = c.add_worker("a", &["--cpus", "2", "--memory", "4G", "--label", "zone=a"]);
    let b = c.add_worker(
        "b",
        &[
            "--cpus", "2", "--memory", "4G", "--label", "zone=b", "--label", "ssd=yes",
        ],
    );
    let out = c.cli_ok(&["submit", "--constraint", "zone=b", "--", "true"]);
    let on_b: u64 = out.stdout.trim().parse().unwrap();
    let on_a = c.submit(
        json!({"command": ["true"], "constraints": [{"key": "zone", "op": "eq", "values": ["a"]}]}),
    );
    let no_ssd =
        c.submit(json!({"command": ["true"], "constraints": [{"key": "ssd", "op": "not_exists"}]}));
    let nowhere = c.submit(json!({"command": ["true"], "constraints": [{"key": "zone", "op": "eq", "values": ["mars"]}]}));
    assert_eq!(c.wait_final(on_b, SLOW).worker.as_deref(), Some(b.as_str()));
    assert_eq!(c.wait_final(on_a, SLOW).worker.as_deref(), Some(a.as_str()));
    assert_eq!(
        c.wait_final(no_ssd, SLOW).worker.as_deref(),
        Some(a.as_str())
    );
    std::thread::sleep(Duration::from_millis(300));
    let t = c.task(nowhere);
    assert_eq!(t.state, TaskState::Ready, "{t:#?}");
    assert!(t.reason.is_some_and(|r| !r.is_empty()));
}

#[test]
fn a_custom_resource_is_never_handed_out_twice() {
    let mut c = Cluster::start("custom-resource");
    c.add_worker(
        "w",
        &["--cpus", "4", "--memory", "4G", "--resource", "license=1"],
    );
    let events = c.file("events");
    let script = format!(
        "echo \"start $(date +%s%N)\" >> {e}; sleep 0.5; echo \"end $(date +%s%N)\" >> {e}",
        e = sh_quote(&events)
    );
    let ids: Vec<u64> = (0..3)
        .map(|_| {
            c.submit(json!({
                "command": [script],
                "shell": true,
                "resources": {"cpu_milli": 1000, "custom": {"license": 1}},
            }))
        })
        .collect();
    let free = c.submit(json!({"command": ["true"]}));
    assert_eq!(
        c.wait_final(free, SLOW).state,
        TaskState::Succeeded,
        "tasks without the resource are not held up"
    );
    for id in &ids {
        assert_eq!(c.wait_final(*id, SLOW).state, TaskState::Succeeded);
    }
    let text = read(&events);
    let mut ev: Vec<(u128, i32)> = text
        .lines()
        .map(|l| {
            let (k, ts) = l.split_once(' ').unwrap();
            (ts.parse().unwrap(), if k == "start" { 1 } else { -1 })
        })
        .collect();
    ev.sort_by_key(|(t, d)| (*t, *d));
    let (mut now, mut max) = (0, 0);
    for (_, d) in ev {
        now += d;
        max = max.max(now);
    }
    assert_eq!(
        max, 1,
        "the single license was used by {max} tasks at once:\n{text}"
    );
    let needs_two = c.submit(
        json!({"command": ["true"], "resources": {"cpu_milli": 100, "custom": {"license": 2}}}),
    );
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        c.task(needs_two).state,
        TaskState::Ready,
        "more licenses than any worker has"
    );
}
