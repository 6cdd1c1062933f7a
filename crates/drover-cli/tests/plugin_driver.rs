//! Driver plugins end to end: a worker started with `--plugin-dir` runs the example
//! plugin (examples/plugins/drover-driver-pyexec, Python, JSON lines over stdio),
//! declares its driver, and a task naming that driver runs through it, as the task
//! user, with its output and exit code reported like a process task's. A task naming
//! the driver waits, saying why, while no worker has it.

mod common;

use common::*;
use drover_types::{Outcome, TaskState};
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::time::Duration;

/// A plugin directory holding a copy of the example plugin (the worker refuses a
/// plugin file or directory others could write to).
fn plugin_dir(c: &Cluster) -> PathBuf {
    let dir = c.root.join("plugins");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let src = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../examples/plugins/drover-driver-pyexec/drover-driver-pyexec"
    );
    let dst = dir.join("drover-driver-pyexec");
    std::fs::copy(src, &dst).unwrap();
    std::fs::set_permissions(&dst, std::fs::Permissions::from_mode(0o755)).unwrap();
    dir
}

#[test]
fn a_task_naming_a_plugin_driver_runs_through_the_plugin_on_a_worker_that_has_it() {
    let mut c = Cluster::start("plugin-driver");
    let plain = c.add_worker("plain", &["--cpus", "2", "--memory", "2G"]);
    let out = c.cli_ok(&[
        "submit",
        "--driver",
        "pyexec",
        "--",
        "sh",
        "-c",
        "echo via-plugin; id -u; exit 3",
    ]);
    let id: u64 = out.stdout.trim().parse().unwrap();
    let reason = c.poll("the pending reason", SLOW, || {
        c.task(id).reason.filter(|r| r.contains("driver"))
    });
    assert_eq!(reason, "no worker has driver pyexec");

    let dir = plugin_dir(&c);
    let with = c.add_worker(
        "with",
        &[
            "--cpus",
            "2",
            "--memory",
            "2G",
            "--plugin-dir",
            dir.to_str().unwrap(),
        ],
    );
    let t = c.wait_final(id, Duration::from_secs(60));
    assert_eq!(
        t.state,
        TaskState::Failed,
        "{t:?}\n{}",
        c.worker_log("with")
    );
    assert_eq!(t.outcome, Some(Outcome::Exited { code: 3 }), "{t:?}");
    assert_eq!(t.worker.as_deref(), Some(with.as_str()));
    let logs = c.cli_ok(&["logs", &id.to_string()]).stdout;
    let lines: Vec<&str> = logs.lines().collect();
    assert_eq!(lines.first(), Some(&"via-plugin"), "{logs}");
    // As nobody when the worker is root (here, and in CI), else as the worker's user.
    let expected_uid = if own_uid() == 0 { 65534 } else { own_uid() }.to_string();
    assert_eq!(
        lines.get(1),
        Some(&expected_uid.as_str()),
        "the task user: {logs}"
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
    assert!(row(&with).contains("pyexec"), "{table}");
    assert!(!row(&plain).contains("pyexec"), "{table}");
}

fn own_uid() -> u32 {
    std::os::unix::fs::MetadataExt::uid(&std::fs::metadata("/proc/self").unwrap())
}
