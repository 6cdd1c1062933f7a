//! Dependencies: order, results passed on stdin, and failure propagation.

mod common;

use common::*;
use drover_types::TaskState;
use serde_json::{Value, json};

/// A task that logs its start (with what it read on stdin) and its end to `log`,
/// and prints its name (its result).
fn node(log: &str, name: &str, after: &[&str]) -> Value {
    let script = format!(
        "echo \"start {name} stdin=$(tr '\\n' ',')\" >> {log}; sleep 0.2; echo \"end {name}\" >> {log}; echo {name}"
    );
    json!({"key": name, "command": [script], "shell": true, "after": after})
}

#[test]
fn a_dag_runs_in_dependency_order_and_children_read_parents_results_on_stdin() {
    let mut c = Cluster::start("dag-order");
    c.add_worker("w", &["--cpus", "4", "--memory", "4G"]);
    let log_path = c.file("order.log");
    let log = sh_quote(&log_path);
    //      a
    //     / \
    //    b   c
    //     \ /
    //      d
    let (job, first, count) = c.submit_job(json!({
        "name": "diamond",
        "tasks": [
            node(&log, "d", &["b", "c"]),
            node(&log, "b", &["a"]),
            node(&log, "c", &["a"]),
            node(&log, "a", &[]),
        ],
    }));
    assert_eq!(count, 4);
    c.poll("the diamond job to finish", SLOW, || {
        let j = c.get_ok(&format!("/v1/jobs/{job}"));
        (j["finished"] == true).then_some(())
    });
    for id in first..first + count {
        let t = c.task(id);
        assert_eq!(t.state, TaskState::Succeeded, "{t:#?}");
    }
    let text = read(&log_path);
    let lines: Vec<&str> = text.lines().collect();
    let pos = |prefix: &str| {
        lines
            .iter()
            .position(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("no line {prefix:?} in\n{text}"))
    };
    for (parent, child) in [("a", "b"), ("a", "c"), ("b", "d"), ("c", "d")] {
        assert!(
            pos(&format!("end {parent}")) < pos(&format!("start {child} ")),
            "{child} started before {parent} ended:\n{text}"
        );
    }
    assert_eq!(lines.len(), 8, "each task ran exactly once:\n{text}");
    // Results on stdin, one per line, in dependency order.
    assert!(lines.contains(&"start a stdin="), "{text}");
    assert!(lines.contains(&"start b stdin=a,"), "{text}");
    assert!(lines.contains(&"start c stdin=a,"), "{text}");
    assert!(lines.contains(&"start d stdin=b,c,"), "{text}");
    // Keys name tasks everywhere.
    let d = c.get_ok("/v1/tasks/d");
    assert_eq!(d["result"], "d\n");
    assert_eq!(d["deps"].as_array().map(Vec::len), Some(2), "{d}");
}

#[test]
fn a_dependency_on_an_earlier_jobs_task_waits_for_it() {
    let mut c = Cluster::start("dag-cross");
    c.add_worker("w", &["--cpus", "2", "--memory", "4G"]);
    let gate = c.file("gate");
    let parent = c.submit(json!({
        "key": "slow-parent",
        "command": [format!("while [ ! -f {g} ]; do sleep 0.05; done; echo from-parent", g = sh_quote(&gate))],
        "shell": true,
    }));
    let child = c.submit(json!({"command": ["cat"], "after": [parent]}));
    let by_key = c.submit(json!({"command": ["cat"], "after": ["slow-parent"]}));
    c.wait_state(parent, "running", SLOW);
    std::thread::sleep(std::time::Duration::from_millis(300));
    for id in [child, by_key] {
        let t = c.task(id);
        assert_eq!(
            t.state,
            TaskState::Waiting,
            "a child must wait for its running parent: {t:#?}"
        );
        assert!(t.reason.is_some(), "a waiting task says why: {t:#?}");
    }
    touch(&gate);
    for id in [child, by_key] {
        let t = c.wait_final(id, SLOW);
        assert_eq!(t.state, TaskState::Succeeded, "{t:#?}");
        assert_eq!(
            t.result.as_deref(),
            Some("from-parent\n"),
            "the parent's result arrives on stdin"
        );
    }
}

#[test]
fn a_failed_parent_fails_its_descendants_which_never_run() {
    let mut c = Cluster::start("dag-fail");
    c.add_worker("w", &["--cpus", "2", "--memory", "4G"]);
    let trace = |name: &str| c.file(&format!("trace-{name}"));
    let touch_cmd = |name: &str| json!([format!("touch {}", sh_quote(&trace(name)))]);
    let (job, first, count) = c.submit_job(json!({
        "tasks": [
            {"key": "p", "command": ["sh", "-c", "exit 1"]},
            {"key": "q", "command": touch_cmd("q"), "shell": true, "after": ["p"]},
            {"key": "r", "command": touch_cmd("r"), "shell": true, "after": ["q"]},
            {"key": "s", "command": touch_cmd("s"), "shell": true},
            {"key": "t", "command": touch_cmd("t"), "shell": true, "after": ["s", "p"]},
        ],
    }));
    assert_eq!(count, 5);
    let j = c.poll("the job to finish", SLOW, || {
        let j = c.get_ok(&format!("/v1/jobs/{job}"));
        (j["finished"] == true).then_some(j)
    });
    assert_eq!(j["succeeded"], false, "{j}");
    let state = |key: &str| c.task_by_key(key);
    assert_eq!(state("p").state, TaskState::Failed);
    assert_eq!(state("s").state, TaskState::Succeeded);
    for key in ["q", "r", "t"] {
        let t = state(key);
        assert_eq!(t.state, TaskState::DependencyFailed, "{key}: {t:#?}");
        assert!(
            t.attempts.is_empty(),
            "{key} must never have been placed: {t:#?}"
        );
        assert!(
            t.started_at.is_none(),
            "{key} must never have started: {t:#?}"
        );
        assert!(
            !trace(key).exists(),
            "{key} ran although a dependency failed"
        );
        assert!(t.reason.is_some(), "{key} says why it did not run");
    }
    assert!(trace("s").exists(), "the independent task ran");
    let _ = first;

    // `drover job` and `drover wait --job` agree.
    let text = c.cli_ok(&["job", &job.to_string()]).stdout;
    assert!(
        text.contains("dependency_failed") || text.contains("dependency failed"),
        "{text}"
    );
    let waited = c.cli(&["wait", "--job", &job.to_string()]);
    assert_ne!(
        waited.code(),
        Some(0),
        "waiting for a failed job must not exit 0: {waited}"
    );
}

#[test]
fn run_of_a_job_file_with_a_failing_parent_exits_non_zero() {
    let mut c = Cluster::start("dag-run-fail");
    c.add_worker("w", &["--cpus", "2", "--memory", "4G"]);
    let job_file = c.file("job.yaml");
    std::fs::write(
        &job_file,
        "name: broken\ntasks:\n  - key: first\n    command: [sh, -c, 'exit 4']\n  - key: second\n    after: [first]\n    command: [echo, never]\n",
    )
    .unwrap();
    let out = c.cli(&["run", "-f", job_file.to_str().unwrap()]);
    assert_eq!(out.code(), Some(4), "the failed task's exit code: {out}");
    assert!(!out.stdout.contains("never"), "{out}");
}

trait ByKey {
    fn task_by_key(&self, key: &str) -> drover_proto::api::TaskInfo;
}

impl ByKey for Cluster {
    fn task_by_key(&self, key: &str) -> drover_proto::api::TaskInfo {
        let v = self.get_ok(&format!("/v1/tasks/{key}"));
        serde_json::from_value(v).unwrap()
    }
}

#[test]
fn a_child_of_an_already_finished_parent_runs_or_fails_at_once() {
    let mut c = Cluster::start("dag-late-child");
    c.add_worker("w", &["--cpus", "2", "--memory", "4G"]);
    let good = c.submit(json!({"command": ["echo", "parent-result"], "key": "good"}));
    let bad = c.submit(json!({"command": ["false"], "key": "bad"}));
    assert_eq!(c.wait_final(good, SLOW).state, TaskState::Succeeded);
    assert_eq!(c.wait_final(bad, SLOW).state, TaskState::Failed);
    let after_good = c.submit(json!({"command": ["cat"], "after": ["good"]}));
    let after_bad = c.submit(json!({"command": ["true"], "after": [bad]}));
    let t = c.wait_final(after_good, SLOW);
    assert_eq!(t.state, TaskState::Succeeded, "{t:#?}");
    assert_eq!(t.result.as_deref(), Some("parent-result\n"));
    let t = c.wait_final(after_bad, SLOW);
    assert_eq!(t.state, TaskState::DependencyFailed, "{t:#?}");
    assert!(t.attempts.is_empty());
}

#[test]
fn cancelling_a_parent_fails_its_waiting_children() {
    let mut c = Cluster::start("dag-cancel-parent");
    c.add_worker("w", &["--cpus", "2", "--memory", "4G"]);
    let parent = c.submit(json!({"command": ["sleep", "30"]}));
    let child = c.submit(json!({"command": ["true"], "after": [parent]}));
    let grandchild = c.submit(json!({"command": ["true"], "after": [child]}));
    c.wait_state(parent, "running", SLOW);
    c.cli_ok(&["cancel", &parent.to_string()]);
    assert_eq!(c.wait_final(parent, SLOW).state, TaskState::Cancelled);
    for id in [child, grandchild] {
        let t = c.wait_final(id, SLOW);
        assert_eq!(t.state, TaskState::DependencyFailed, "{t:#?}");
    }
}

#[test]
fn a_task_without_dependencies_reads_an_empty_stdin() {
    let mut c = Cluster::start("stdin-empty");
    c.add_worker("w", &["--cpus", "2", "--memory", "4G"]);
    let started = std::time::Instant::now();
    let out = c.cli(&["run", "--timeout", "10s", "--", "cat"]);
    assert_eq!(
        out.code(),
        Some(0),
        "`cat` with no dependencies must see end-of-file at once: {out}"
    );
    assert_eq!(out.stdout, "");
    assert!(started.elapsed() < std::time::Duration::from_secs(8));
}
