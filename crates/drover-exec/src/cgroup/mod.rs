//! Per-attempt cgroups (v1): where the attempt's processes are counted, limited
//! and killed as one.
//!
//! Layout: `<mount>/<agent's own cgroup>/drover/<agent_id>/<incarnation>.c<n>` in
//! each of the memory, cpuacct and pids hierarchies (freezer when there is no pids)
//! that are mounted and writable. Nesting under the agent's own cgroup keeps tasks
//! inside whatever limits the agent itself runs under (a systemd slice, a container).
//!
//! Why pids *replaces* freezer rather than joining it: in v1 each controller is its
//! own hierarchy here, and a spawn writes the spawning thread into every hierarchy
//! (and back), each write costing milliseconds (RCU). The freezer's one job was a
//! kill without a fork race; `pids.max = 0` does that job too (nothing inside can
//! fork, so the set only shrinks while it is SIGKILLed), so the pids limit costs no
//! extra write per spawn.
//!
//! The `cpu` controller (CFS bandwidth: `cpu.cfs_quota_us` over `cpu.cfs_period_us`)
//! caps an attempt at the cpus it asked for. Where `cpu` is co-mounted with
//! `cpuacct` (`cpu,cpuacct`, the usual systemd layout) both name one directory and
//! a spawn writes into it once; where each has its own hierarchy, as on hosts that
//! mount every controller apart, it is one more hierarchy per spawn (two `tasks`
//! writes: in and back; measured in the crate's README). Every attempt enters it,
//! a task asking for no cpus too (quota -1): its limit can then be set later
//! (a resize: `LimitSetter for Shared` in `monitor.rs`) without moving live processes.
//!
//! Each such write waits for an RCU grace period when nothing moved just before
//! (6–14 ms measured here while the CPUs idle), so spawns do not make them on the
//! attempt's path: spawner threads move into an idle attempt cgroup ahead of time
//! (`spawner.rs`).

mod attempt;
mod limits;
mod root;
mod spawner;

pub(crate) use attempt::AttemptCgroup;
pub(crate) use limits::AttemptLimits;
pub(crate) use root::CgroupRoot;

use std::fs;
use std::path::PathBuf;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Controller {
    Memory,
    Cpuacct,
    Cpu,
    Pids,
    Freezer,
}

impl Controller {
    /// In order of preference; `Freezer` only where `Pids` is unusable.
    pub(super) const ALL: [Controller; 5] = [
        Controller::Memory,
        Controller::Cpuacct,
        Controller::Cpu,
        Controller::Pids,
        Controller::Freezer,
    ];

    pub(crate) fn name(self) -> &'static str {
        match self {
            Controller::Memory => "memory",
            Controller::Cpuacct => "cpuacct",
            Controller::Cpu => "cpu",
            Controller::Pids => "pids",
            Controller::Freezer => "freezer",
        }
    }
}

/// From /proc/self/mountinfo: (root within the hierarchy, mount point) of the v1
/// hierarchy that has `controller`.
pub(super) fn find_mount(mountinfo: &str, controller: &str) -> Option<(String, PathBuf)> {
    for line in mountinfo.lines() {
        let Some((pre, post)) = line.split_once(" - ") else {
            continue;
        };
        let mut post = post.split_ascii_whitespace();
        if post.next() != Some("cgroup") {
            continue;
        }
        let _source = post.next();
        let opts = post.next().unwrap_or("");
        if !opts.split(',').any(|o| o == controller) {
            continue;
        }
        let pre: Vec<&str> = pre.split_ascii_whitespace().collect();
        if pre.len() < 5 {
            continue;
        }
        return Some((pre[3].to_string(), PathBuf::from(pre[4])));
    }
    None
}

/// From /proc/self/cgroup: this process's path in the hierarchy with `controller`.
pub(super) fn own_cgroup(text: &str, controller: &str) -> Option<String> {
    text.lines().find_map(|line| {
        let mut parts = line.splitn(3, ':');
        let _id = parts.next()?;
        let ctrls = parts.next()?;
        let path = parts.next()?;
        ctrls
            .split(',')
            .any(|c| c == controller)
            .then(|| path.to_string())
    })
}

pub(super) fn read_u64(path: PathBuf) -> Option<u64> {
    fs::read_to_string(path).ok()?.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_mountinfo_and_own_cgroup() {
        let mi = "30 25 0:26 / /sys/fs/cgroup/memory rw,relatime shared:11 - cgroup cgroup rw,memory\n\
                  31 25 0:27 /docker/abc /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct\n\
                  32 25 0:28 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw\n";
        assert_eq!(
            find_mount(mi, "memory"),
            Some(("/".to_string(), PathBuf::from("/sys/fs/cgroup/memory")))
        );
        assert_eq!(
            find_mount(mi, "cpuacct"),
            Some((
                "/docker/abc".to_string(),
                PathBuf::from("/sys/fs/cgroup/cpu,cpuacct")
            ))
        );
        assert_eq!(find_mount(mi, "freezer"), None);
        let own = "4:memory:/process_api/x\n2:cpu,cpuacct:/\n0::/\n";
        assert_eq!(own_cgroup(own, "memory").as_deref(), Some("/process_api/x"));
        assert_eq!(own_cgroup(own, "cpuacct").as_deref(), Some("/"));
        assert_eq!(own_cgroup(own, "freezer"), None);
    }
}
