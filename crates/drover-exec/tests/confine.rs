//! Confinement with real processes, as root (this host's test runs are): tasks run as
//! `nobody` in a directory of their own, cannot read root's files, and a fork bomb
//! ends at its pids limit while a neighbour finishes.

mod common;

use common::*;
use drover_exec::{CgroupMode, ProcessDriver, TaskUser};
use drover_types::Outcome;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::time::{Duration, Instant};

fn as_root() {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let uid_line = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
    let euid = uid_line.split_ascii_whitespace().nth(2).unwrap();
    assert_eq!(euid, "0", "these tests check the user switch and need root");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tasks_run_as_the_task_user_in_a_directory_it_owns() {
    as_root();
    let root = Scratch::new("user");
    let secret = root.0.join("agent-secret");
    std::fs::write(&secret, "s3cret").unwrap();
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
    let nobody = TaskUser::lookup("nobody").unwrap();
    let mut cfg = config(&root, "user", CgroupMode::Off);
    cfg.task_user = Some(nobody.clone());
    let d = ProcessDriver::new(cfg).unwrap();
    let script = format!(
        "id -u; id -g; id -G; echo x > mine && cat mine; cat {} && echo LEAKED; cd .. && ls && echo LISTED; exit 0",
        secret.display()
    );
    let a = d.launch(sh(1, &script)).unwrap();
    let dir = a.dir().to_path_buf();
    let meta = std::fs::metadata(&dir).unwrap();
    assert_eq!((meta.uid(), meta.gid()), (nobody.uid, nobody.gid));
    assert_eq!(meta.mode() & 0o777, 0o700);
    let f = a.wait().await;
    assert_eq!(f.outcome, Outcome::Exited { code: 0 });
    let out = String::from_utf8(f.result).unwrap();
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], nobody.uid.to_string(), "{out}");
    assert_eq!(lines[1], nobody.gid.to_string(), "{out}");
    assert_eq!(
        lines[2],
        nobody.gid.to_string(),
        "no supplementary groups: {out}"
    );
    assert_eq!(lines[3], "x", "{out}");
    assert!(!out.contains("LEAKED"), "{out}");
    assert!(
        !out.contains("LISTED"),
        "attempts/ must not be listable: {out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fork_bomb_ends_at_its_pids_limit_and_a_neighbour_finishes() {
    as_root();
    let root = Scratch::new("bomb");
    let mut cfg = config(&root, "bomb", CgroupMode::Auto);
    cfg.task_user = Some(TaskUser::lookup("nobody").unwrap());
    cfg.pids_limit = Some(64);
    let d = ProcessDriver::new(cfg).unwrap();
    assert!(
        d.cgroup_controllers().contains(&"pids"),
        "this host has a writable pids hierarchy: {}",
        d.mode_description()
    );
    let started = Instant::now();
    let bomb = d.launch(sh(1, "b() { b | b & }; b; sleep 60")).unwrap();
    let neighbour = d.launch(sh(2, "sleep 1; echo fine")).unwrap();
    let f = tokio::time::timeout(Duration::from_secs(30), bomb.wait())
        .await
        .expect("the bomb is ended by its limit, not its sleep");
    assert_eq!(f.outcome, Outcome::TooManyProcesses { limit: 64 });
    assert!(started.elapsed() < Duration::from_secs(20));
    let n = neighbour.wait().await;
    assert_eq!(n.outcome, Outcome::Exited { code: 0 });
    assert_eq!(n.result, b"fine\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_starts_in_its_directory_even_below_a_closed_one() {
    as_root();
    // Like a data directory under /root (0700): the task user cannot pass through,
    // yet its task starts in its directory, because the agent enters it before the
    // user switch.
    let root = Scratch::new("closed");
    std::fs::set_permissions(&root.0, std::fs::Permissions::from_mode(0o700)).unwrap();
    let mut cfg = config(&root, "closed", CgroupMode::Off);
    cfg.work_root = root.0.join("work");
    cfg.task_user = Some(TaskUser::lookup("nobody").unwrap());
    let d = ProcessDriver::new(cfg).unwrap();
    let f = d
        .launch(sh(
            1,
            "touch here && ls && (ls \"$DROVER_WORKDIR\" || echo no-path)",
        ))
        .unwrap()
        .wait()
        .await;
    assert_eq!(f.outcome, Outcome::Exited { code: 0 });
    assert_eq!(String::from_utf8(f.result).unwrap(), "here\nno-path\n");
}
