//! Isolation with real processes on this host's cgroup v1 hierarchies (as root): a task
//! is held to its cpus by a CFS quota, and the driver reports what it enforces.

mod common;

use common::*;
use drover_exec::{CgroupMode, ProcessDriver};
use drover_types::{EnforcedLimit, Outcome};
use std::time::Duration;

/// Two busy loops under `cpus = 0.5`, stopped by a 2 s time limit.
fn busy_pair(task: u64, cpu_milli: u32) -> drover_exec::LaunchSpec {
    let mut s = sh(
        task,
        "cat /proc/self/cgroup; for i in 1 2; do (while :; do :; done) & done; wait",
    );
    s.cpu_milli = cpu_milli;
    s.time_limit = Some(Duration::from_secs(2));
    s
}

/// The attempt's directory in the cpu hierarchy, from the `/proc/self/cgroup` it printed.
fn cpu_cgroup(printed: &str) -> std::path::PathBuf {
    let line = printed
        .lines()
        .find(|l| {
            l.split(':')
                .nth(1)
                .is_some_and(|c| c.split(',').any(|x| x == "cpu"))
        })
        .unwrap_or_else(|| panic!("no cpu line in {printed}"));
    let path = line.splitn(3, ':').nth(2).unwrap();
    assert!(path.contains("/drover/"), "outside its cgroup: {printed}");
    let mount = if std::path::Path::new("/sys/fs/cgroup/cpu/tasks").exists() {
        "/sys/fs/cgroup/cpu"
    } else {
        "/sys/fs/cgroup/cpu,cpuacct"
    };
    std::path::Path::new(mount).join(path.trim_start_matches('/'))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_is_held_to_its_cpus_by_a_cfs_quota() {
    let root = Scratch::new("cpuquota");
    let d = driver(&root, "cpuquota", CgroupMode::Auto);
    assert!(
        d.cgroup_controllers().contains(&"cpu"),
        "this host has a writable cpu hierarchy: {}",
        d.mode_description()
    );
    let a = d.launch(busy_pair(1, 500)).unwrap();
    // Read while it runs: the pooled cgroup is reset for the next attempt.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let printed = std::fs::read_to_string(root.0.join("logs/1.1.stdout")).unwrap();
    let dir = cpu_cgroup(&printed);
    let quota = std::fs::read_to_string(dir.join("cpu.cfs_quota_us")).unwrap();
    let period = std::fs::read_to_string(dir.join("cpu.cfs_period_us")).unwrap();
    assert_eq!((quota.trim(), period.trim()), ("50000", "100000"));
    // Throttling shows only when the loops get more than half a core, which a busy
    // shared host may not give them: printed, not asserted.
    let stat = std::fs::read_to_string(dir.join("cpu.stat")).unwrap();
    eprintln!("cpu.stat after 1.5 s: {}", stat.replace('\n', " "));
    let f = a.wait().await;
    assert_eq!(f.outcome, Outcome::TimedOut);
    let share = f.usage.cpu_time_ms as f64 / f.usage.wall_ms.max(1) as f64;
    eprintln!(
        "cpus 0.5, two busy loops: {} ms cpu over {} ms = {share:.2} of a core",
        f.usage.cpu_time_ms, f.usage.wall_ms
    );
    assert!(share < 0.7, "held near 0.5 of a core, used {share:.2}");
    assert!(f.usage.cpu_time_ms > 100, "it did run: {:?}", f.usage);

    // The same cgroup, reused by a task asking for no cpus: no quota left behind.
    let b = d.launch(sh(2, "cat /proc/self/cgroup; sleep 0.3")).unwrap();
    tokio::time::sleep(Duration::from_millis(150)).await;
    let printed = std::fs::read_to_string(root.0.join("logs/2.1.stdout")).unwrap();
    let quota = std::fs::read_to_string(cpu_cgroup(&printed).join("cpu.cfs_quota_us")).unwrap();
    assert_eq!(quota.trim(), "-1");
    assert!(b.wait().await.outcome.is_success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_quotas_the_cpu_hierarchy_is_left_alone() {
    let root = Scratch::new("noquota");
    let mut cfg = config(&root, "noquota", CgroupMode::Auto);
    cfg.cpu_quota = false;
    let d = ProcessDriver::new(cfg).unwrap();
    assert_eq!(
        d.isolation().enforced,
        vec![EnforcedLimit::Memory, EnforcedLimit::Pids]
    );
    assert!(!d.cgroup_controllers().contains(&"cpu"));
    let mut s = sh(1, "cat /proc/self/cgroup");
    s.cpu_milli = 500;
    let f = d.launch(s).unwrap().wait().await;
    assert!(f.outcome.is_success());
    let printed = String::from_utf8(f.result).unwrap();
    let cpu_line = printed
        .lines()
        .find(|l| {
            l.split(':')
                .nth(1)
                .is_some_and(|c| c.split(',').any(|x| x == "cpu"))
        })
        .unwrap();
    // Unless cpu shares a hierarchy with a controller in use (`cpu,cpuacct`).
    if !cpu_line.contains("cpuacct") {
        assert!(
            !cpu_line.contains("/drover/"),
            "no cpu cgroup of its own: {printed}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_driver_reports_what_it_enforces_and_why_not() {
    let root = Scratch::new("report");
    let on = driver(&root, "report-on", CgroupMode::Auto);
    let i = on.isolation();
    assert_eq!(
        i.enforced,
        vec![
            EnforcedLimit::Memory,
            EnforcedLimit::Cpu,
            EnforcedLimit::Pids
        ],
        "{}",
        i.mechanism
    );
    assert!(i.mechanism.starts_with("cgroup v1"), "{}", i.mechanism);
    assert_eq!(i.summary(), "memory,cpu,pids");

    let off = driver(&root, "report-off", CgroupMode::Off);
    let i = off.isolation();
    assert!(i.enforced.is_empty());
    assert!(
        i.mechanism
            .starts_with("none: no writable cgroup hierarchy"),
        "{}",
        i.mechanism
    );
    assert_eq!(i.summary(), "none");
    // And it still runs tasks, limits polled instead.
    let mut s = sh(1, "echo ran");
    s.cpu_milli = 500;
    s.memory_limit_bytes = Some(64 << 20);
    let f = off.launch(s).unwrap().wait().await;
    assert_eq!(f.outcome, Outcome::Exited { code: 0 });
    assert_eq!(f.result, b"ran\n");
}
