//! What this host offers ([`HostInfo`]) and how busy it is ([`HostSampler`]).

mod info;
mod sampler;

pub use info::HostInfo;
pub use sampler::HostSampler;

use std::fs;
use std::path::{Path, PathBuf};

/// A `kB` field of /proc/meminfo, in bytes.
pub(super) fn meminfo_field(text: &str, name: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with(name))?;
    let kb: u64 = line[name.len()..]
        .split_ascii_whitespace()
        .next()?
        .parse()
        .ok()?;
    Some(kb * 1024)
}

/// The agent's own cgroup, v1 `<controller>` or v2, as a directory, if mounted at
/// the usual place.
fn own_cgroup_dir(controller: &str) -> Option<PathBuf> {
    let text = fs::read_to_string("/proc/self/cgroup").ok()?;
    for line in text.lines() {
        let mut parts = line.splitn(3, ':');
        let (_, ctrls, path) = (parts.next()?, parts.next()?, parts.next()?);
        let dir = if ctrls.split(',').any(|c| c == controller) {
            Path::new("/sys/fs/cgroup").join(controller)
        } else if ctrls.is_empty() && controller == "unified" {
            PathBuf::from("/sys/fs/cgroup")
        } else {
            continue;
        };
        let full = dir.join(path.trim_start_matches('/'));
        return Some(if full.is_dir() { full } else { dir });
    }
    None
}

pub(super) fn cgroup_cpu_quota_milli() -> Option<u64> {
    // v1: cpu.cfs_quota_us / cpu.cfs_period_us (-1 = no quota).
    if let Some(dir) = own_cgroup_dir("cpu") {
        let quota: i64 = fs::read_to_string(dir.join("cpu.cfs_quota_us"))
            .ok()?
            .trim()
            .parse()
            .ok()?;
        let period: i64 = fs::read_to_string(dir.join("cpu.cfs_period_us"))
            .ok()?
            .trim()
            .parse()
            .ok()?;
        return (quota > 0 && period > 0).then(|| (quota as u64) * 1000 / period as u64);
    }
    // v2: cpu.max = "<quota|max> <period>".
    let dir = own_cgroup_dir("unified")?;
    let text = fs::read_to_string(dir.join("cpu.max")).ok()?;
    let mut it = text.split_ascii_whitespace();
    let quota: u64 = it.next()?.parse().ok()?;
    let period: u64 = it.next()?.parse().ok()?;
    (period > 0).then(|| quota * 1000 / period)
}

pub(super) fn cgroup_memory_limit() -> Option<u64> {
    if let Some(dir) = own_cgroup_dir("memory") {
        return fs::read_to_string(dir.join("memory.limit_in_bytes"))
            .ok()?
            .trim()
            .parse()
            .ok();
    }
    let dir = own_cgroup_dir("unified")?;
    fs::read_to_string(dir.join("memory.max"))
        .ok()?
        .trim()
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_this_host() {
        let info = HostInfo::detect(Path::new("/tmp")).unwrap();
        assert!(info.capacity.cpu_milli >= 1000 || info.capacity.cpu_milli > 0);
        assert!(info.capacity.memory_bytes > 64 << 20);
        assert!(info.capacity.disk_bytes > 0);
        assert!(!info.hostname.is_empty());
    }

    #[test]
    fn samples_usage() {
        let mut s = HostSampler::new("/tmp");
        // Burn a little CPU so the delta is non-zero.
        let t = std::time::Instant::now();
        let mut x = 0u64;
        while t.elapsed() < std::time::Duration::from_millis(50) {
            x = x.wrapping_add(1);
        }
        std::hint::black_box(x);
        let u = s.sample();
        assert!(u.cpu_milli > 0, "{u:?}");
        assert!(u.memory_bytes > 0);
        assert!(u.disk_free_bytes > 0);
    }

    #[test]
    fn parses_meminfo() {
        let t = "MemTotal:       16318480 kB\nMemFree:  1 kB\n";
        assert_eq!(meminfo_field(t, "MemTotal:"), Some(16318480 * 1024));
        assert_eq!(meminfo_field(t, "MemAvailable:"), None);
    }
}
