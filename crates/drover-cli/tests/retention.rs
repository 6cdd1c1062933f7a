//! Retention seen from the outside: a real server with a short retention and a real
//! worker. Finished tasks are retired after it (`drover status` and the API say so,
//! not "not found"), their output files leave the server's data directory, their
//! attempt directories leave the worker's, and a finished parent whose child is still
//! to run is kept.

mod common;

use common::*;
use serde_json::json;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Every `attempts` directory under `root` (the worker's data directory holds one).
fn attempts_dirs(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                if p.file_name().is_some_and(|n| n == "attempts") {
                    out.push(p.clone());
                }
                stack.push(p);
            }
        }
    }
    out
}

/// The attempt directories (`<task>.<attempt>`) the worker holds for `task`.
fn attempt_dirs_of(worker_data: &Path, task: u64) -> Vec<PathBuf> {
    attempts_dirs(worker_data)
        .into_iter()
        .flat_map(|a| std::fs::read_dir(a).into_iter().flatten().flatten())
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.split('.').next() == Some(&task.to_string()))
        })
        .collect()
}

#[test]
fn finished_tasks_are_retired_with_their_output_and_attempt_dirs() {
    let mut c = Cluster::start_with(
        "retain",
        &[
            "--worker-timeout",
            "3s",
            "--heartbeat-interval",
            "250ms",
            "--retain-for",
            "2s",
        ],
    );
    c.add_worker("w", &["--cpus", "2", "--memory", "2G"]);
    let worker_data = c.root.join("wdata-w");
    let output_root = c.data.join("server").join("output");

    // A task that writes output into its attempt directory and to stdout.
    let id = c.submit(json!({"command": ["sh", "-c", "echo kept-for-a-while; echo x > here"]}));
    let t = c.wait_final(id, SLOW);
    assert_eq!(t.state.as_str(), "succeeded");
    let out_dir = output_root.join(id.to_string());
    assert!(
        out_dir.is_dir(),
        "the server keeps the output of task {id} at first"
    );

    // A DAG whose child waits for a task that will not finish soon: the finished
    // parent must outlive the retention while the child is pending.
    let gate = c.file("gate");
    let (dag_job, first, count) = c.submit_job(json!({
        "name": "dag",
        "tasks": [
            {"key": "parent", "command": ["true"]},
            {"key": "slow", "command": ["sh", "-c", format!("while [ ! -e {} ]; do sleep 0.1; done", gate.display())]},
            {"key": "child", "command": ["true"], "after": ["parent", "slow"]}
        ]
    }));
    assert_eq!(count, 3);
    let parent = first;
    c.wait_final(parent, SLOW);
    // While it runs, the slow task has its attempt directory where this test looks.
    c.wait_state(first + 1, "running", SLOW);
    assert!(
        !attempt_dirs_of(&worker_data, first + 1).is_empty(),
        "no attempt directory for the running task {} under {}",
        first + 1,
        worker_data.display()
    );

    // Retired within the retention plus the leader's check: 410 with code `retired`.
    c.poll("task to be retired", SLOW, || {
        let r = c.get(&format!("/v1/tasks/{id}"));
        (r.status == 410).then_some(r)
    });
    let r = c.get(&format!("/v1/tasks/{id}"));
    let e = r.error();
    assert_eq!(e["code"], "retired", "{e}");
    let msg = e["message"].as_str().unwrap();
    assert!(msg.contains(&format!("task {id} was retired")), "{msg}");
    assert!(msg.contains("kept for 2s"), "{msg}");

    // The CLI says so in a sentence, not "not found".
    let st = c.cli(&["status", &id.to_string()]);
    assert_eq!(st.code(), Some(1), "{st}");
    assert!(
        st.stdout.contains(&format!(
            "task {id} was retired (finished tasks are kept for 2s"
        )),
        "{st}"
    );
    // Its output is gone from the server's disk, its attempt directory from the worker's.
    c.poll("output files to go", SLOW, || {
        (!out_dir.exists()).then_some(())
    });
    c.poll("attempt directory to go", SLOW, || {
        attempt_dirs_of(&worker_data, id).is_empty().then_some(())
    });
    // An id never issued is still "not found".
    assert_eq!(c.get("/v1/tasks/999999").status, 404);

    // Well past the retention, the DAG's finished parent is held: its job is not
    // complete and its child still waits.
    std::thread::sleep(Duration::from_secs(3));
    let p = c.task(parent);
    assert_eq!(p.state.as_str(), "succeeded");
    assert_eq!(c.get(&format!("/v1/jobs/{dag_job}")).status, 200);
    let child = c.task(first + 2);
    assert_eq!(child.state.as_str(), "waiting");

    // Let the job finish: then it all goes, job included, and the key is free.
    std::fs::write(&gate, b"").unwrap();
    c.wait_final(first + 2, SLOW);
    c.poll("the DAG job to be retired", SLOW, || {
        (c.get(&format!("/v1/jobs/{dag_job}")).status == 410).then_some(())
    });
    for t in first..first + count {
        assert_eq!(c.get(&format!("/v1/tasks/{t}")).status, 410, "task {t}");
    }
    let e = c.get(&format!("/v1/jobs/{dag_job}")).error();
    assert_eq!(e["code"], "retired", "{e}");
    let r = c.get("/v1/tasks/dag%2Fparent");
    assert_eq!(
        r.status,
        404,
        "the job name and key are free again: {}",
        r.text()
    );
    // Resubmitting with the same name and keys works and gets new ids.
    let (again, first2, _) = c.submit_job(json!({
        "name": "dag",
        "tasks": [{"key": "parent", "command": ["true"]}]
    }));
    assert!(again > dag_job && first2 > first + 2);
}

#[test]
fn retention_settings_are_validated_with_their_names() {
    let dir = TempDir::new("retain-bad");
    for (args, want) in [
        (&["--retain-for", "0s"][..], "--retain-for"),
        (&["--retain-for", "soon"][..], "--retain-for"),
        (&["--retain-max", "0"][..], "--retain-max"),
        (&["--retain-max", "lots"][..], "--retain-max"),
    ] {
        let mut cmd = drover_command();
        cmd.arg("--data-dir")
            .arg(dir.path())
            .arg("server")
            .args(["--listen", "127.0.0.1:0"])
            .args(args);
        let out = run_with_timeout(cmd, Duration::from_secs(20), String::new);
        assert_ne!(out.code(), Some(0), "{args:?} was accepted:\n{out}");
        assert!(out.stderr.contains(want), "{args:?}:\n{out}");
    }
    // The same keys in the config file.
    let file = dir.path().join("drover.toml");
    std::fs::write(&file, "[server]\nretain_for = \"100ms\"\n").unwrap();
    let mut cmd = drover_command();
    cmd.arg("--data-dir")
        .arg(dir.path())
        .args(["server", "--config"])
        .arg(&file)
        .args(["--listen", "127.0.0.1:0"]);
    let out = run_with_timeout(cmd, Duration::from_secs(20), String::new);
    assert_ne!(out.code(), Some(0), "{out}");
    assert!(out.stderr.contains("retain_for"), "{out}");
}
