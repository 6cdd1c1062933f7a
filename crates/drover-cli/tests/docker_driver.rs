//! The docker driver end to end, with real `drover` processes and the real daemon: a
//! task naming `driver: docker` waits, saying why, while no worker has the driver;
//! a worker started with `--driver docker` declares it, receives the task and runs it
//! in a container of its image (built here from host binaries by
//! `scripts/docker-test-image.sh`), and removes the container afterwards. A process
//! task still runs on either worker.
//!
//! Docker is required; `DROVER_SKIP_DOCKER=1` skips this test (saying so).

mod common;

use common::*;
use drover_types::{Outcome, TaskState};
use serde_json::json;
use std::process::Command;
use std::time::Duration;

fn test_image() -> Option<String> {
    if std::env::var("DROVER_SKIP_DOCKER").as_deref() == Ok("1") {
        eprintln!("SKIPPED: docker driver test (DROVER_SKIP_DOCKER=1)");
        return None;
    }
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../scripts/docker-test-image.sh"
    );
    let out = Command::new(script)
        .output()
        .expect("running scripts/docker-test-image.sh (is docker installed?)");
    assert!(
        out.status.success(),
        "building the docker test image failed (set DROVER_SKIP_DOCKER=1 to skip docker tests on a machine without docker): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Containers (any state) labelled as started by the agent `agent`.
fn containers_of(agent: &str) -> Vec<String> {
    let out = Command::new("docker")
        .args(["ps", "-a", "--format", "{{.Names}}", "--filter"])
        .arg(format!("label=io.drover.agent={agent}"))
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn a_docker_task_waits_for_a_worker_with_the_driver_then_runs_in_its_image() {
    let Some(image) = test_image() else { return };
    let mut c = Cluster::start("docker-driver");
    let plain = c.add_worker("plain", &["--cpus", "2", "--memory", "2G"]);
    let script = "echo in-container; id -u; pwd; test -x /bin/sh && ls /bin | wc -l";
    let out = c.cli_ok(&["submit", "--image", &image, "--shell", "--", script]);
    let id: u64 = out.stdout.trim().parse().unwrap();
    let spec = c.task(id).spec;
    assert_eq!(
        spec.driver.as_deref(),
        Some("docker"),
        "--image implies --driver docker"
    );
    assert_eq!(spec.image.as_deref(), Some(image.as_str()));
    let reason = c.poll("the pending reason", SLOW, || {
        c.task(id).reason.filter(|r| r.contains("driver"))
    });
    assert_eq!(reason, "no worker has driver docker");
    assert_eq!(c.task(id).state, TaskState::Ready);
    // A process task is not held up, and runs on the plain worker.
    let local = c.submit(json!({"command": ["true"]}));
    assert_eq!(c.wait_final(local, SLOW).state, TaskState::Succeeded);
    // Refused at the edge: docker without an image, an image for another driver.
    let bad = c.post(
        "/v1/jobs",
        &json!({"tasks": [{"command": ["true"], "driver": "docker"}]}),
    );
    assert_eq!(bad.status, 400, "{}", bad.text());
    assert_eq!(bad.error()["field"], "tasks[0].image", "{}", bad.text());
    let bad = c.post(
        "/v1/jobs",
        &json!({"tasks": [{"command": ["true"], "image": "x"}]}),
    );
    assert_eq!(bad.status, 400, "{}", bad.text());
    assert_eq!(bad.error()["field"], "tasks[0].image", "{}", bad.text());

    let boxed = c.add_worker(
        "box",
        &["--cpus", "2", "--memory", "2G", "--driver", "docker"],
    );
    let t = c.wait_final(id, Duration::from_secs(120));
    assert_eq!(
        t.state,
        TaskState::Succeeded,
        "{t:?}\n{}",
        c.worker_log("box")
    );
    assert_eq!(t.worker.as_deref(), Some(boxed.as_str()));
    assert_eq!(t.outcome, Some(Outcome::Exited { code: 0 }));
    let logs = c.cli_ok(&["logs", &id.to_string()]).stdout;
    let lines: Vec<&str> = logs.lines().collect();
    assert_eq!(lines.first(), Some(&"in-container"), "{logs}");
    assert_eq!(lines.get(1), Some(&"65534"), "runs as nobody: {logs}");
    assert!(
        lines
            .get(2)
            .is_some_and(|d| d.ends_with(&format!("{id}.1"))),
        "in its mounted attempt directory: {logs}"
    );
    assert!(
        lines
            .get(3)
            .and_then(|n| n.parse::<u32>().ok())
            .is_some_and(|n| n < 40),
        "the image's /bin, not the host's: {logs}"
    );
    let config = drover_worker::WorkerConfig::new("", "", boxed.as_str(), c.root.join("wdata-box"));
    let agent = drover_worker::identity(&config).1;
    assert!(!agent.is_empty());
    assert!(
        containers_of(&agent).is_empty(),
        "{:?}",
        containers_of(&agent)
    );

    // Each worker lists its drivers.
    let table = c.cli_ok(&["workers"]).stdout;
    let row = |name: &str| {
        table
            .lines()
            .find(|l| l.contains(name))
            .unwrap_or_default()
            .to_string()
    };
    assert!(row(&boxed).contains("docker,process"), "{table}");
    assert!(
        row(&plain).contains("process") && !row(&plain).contains("docker"),
        "{table}"
    );
    let api = c.workers_info();
    let drivers_of = |name: &str| {
        api.iter()
            .find(|w| w.name == name)
            .map(|w| w.drivers.clone())
            .unwrap_or_default()
    };
    assert_eq!(drivers_of(&boxed), vec!["docker", "process"]);
    assert_eq!(drivers_of(&plain), vec!["process"]);
}
