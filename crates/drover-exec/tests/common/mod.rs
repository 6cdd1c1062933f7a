//! Helpers shared by the integration tests.
#![allow(dead_code)]
#![allow(unsafe_code)]

use drover_exec::{CgroupMode, DriverConfig, LaunchSpec, ProcessDriver};
use std::path::PathBuf;
use std::time::Duration;

/// A scratch work root, removed on drop.
pub struct Scratch(pub PathBuf);

impl Scratch {
    pub fn new(tag: &str) -> Scratch {
        let p = std::env::temp_dir().join(format!("drover-exec-test-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        Scratch(p)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub fn config(root: &Scratch, agent: &str, mode: CgroupMode) -> DriverConfig {
    let mut cfg = DriverConfig::new(&root.0, format!("test-{}-{agent}", std::process::id()));
    cfg.cgroups = mode;
    cfg.kill_grace = Duration::from_millis(500);
    cfg
}

pub fn driver(root: &Scratch, agent: &str, mode: CgroupMode) -> ProcessDriver {
    ProcessDriver::new(config(root, agent, mode)).unwrap()
}

pub fn spec(task: u64, command: &[&str]) -> LaunchSpec {
    LaunchSpec {
        task,
        attempt: 1,
        command: command.iter().map(|s| s.to_string()).collect(),
        ..LaunchSpec::default()
    }
}

pub fn sh(task: u64, script: &str) -> LaunchSpec {
    spec(task, &["/bin/sh", "-c", script])
}

/// Alive means: kill(pid, 0) succeeds and it is not a zombie waiting for its parent
/// (orphans are reparented to pid 1, which may reap them late).
pub fn alive(pid: i32) -> bool {
    // SAFETY: signal 0 only checks existence.
    let exists = unsafe { libc::kill(pid, 0) } == 0;
    if !exists {
        return false;
    }
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            let state = stat
                .rsplit_once(')')
                .map(|(_, r)| r.trim_start().chars().next());
            state != Some(Some('Z'))
        }
        Err(_) => false,
    }
}

/// Waits up to `within` for all pids to be gone.
pub fn all_gone(pids: &[i32], within: Duration) -> bool {
    let t = std::time::Instant::now();
    loop {
        if pids.iter().all(|p| !alive(*p)) {
            return true;
        }
        if t.elapsed() > within {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Reads pids a script wrote, one per line, waiting for `n` of them.
pub async fn read_pids(path: &std::path::Path, n: usize) -> Vec<i32> {
    for _ in 0..300 {
        if let Ok(t) = std::fs::read_to_string(path) {
            let pids: Vec<i32> = t.lines().filter_map(|l| l.trim().parse().ok()).collect();
            if pids.len() >= n {
                return pids;
            }
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("script did not write {n} pids to {}", path.display());
}

pub fn modes() -> [CgroupMode; 2] {
    [CgroupMode::Auto, CgroupMode::Off]
}
