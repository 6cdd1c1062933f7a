//! Host-wide usage for heartbeats.

use super::meminfo_field;
use crate::sys;
use drover_types::WorkerUsage;
use std::fs;
use std::path::PathBuf;

/// Samples host-wide usage for heartbeats. CPU use is the busy share of all CPUs
/// between two samples (from /proc/stat), so the first sample after `new` covers the
/// time since `new`.
#[derive(Debug)]
pub struct HostSampler {
    work_root: PathBuf,
    prev: Option<CpuTimes>,
}

#[derive(Clone, Copy, Debug)]
struct CpuTimes {
    busy: u64,
    total: u64,
    cpus: u64,
}

impl HostSampler {
    pub fn new(work_root: impl Into<PathBuf>) -> Self {
        HostSampler {
            work_root: work_root.into(),
            prev: read_cpu_times(),
        }
    }

    /// Figures that cannot be read come back as zero.
    pub fn sample(&mut self) -> WorkerUsage {
        let now = read_cpu_times();
        let cpu_milli = match (self.prev, now) {
            (Some(a), Some(b)) if b.total > a.total => {
                let busy = b.busy.saturating_sub(a.busy) as u128;
                let total = (b.total - a.total) as u128;
                (busy * b.cpus as u128 * 1000 / total) as u64
            }
            _ => 0,
        };
        if now.is_some() {
            self.prev = now;
        }
        let meminfo = fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let memory_bytes = match (
            meminfo_field(&meminfo, "MemTotal:"),
            meminfo_field(&meminfo, "MemAvailable:"),
        ) {
            (Some(t), Some(a)) => t.saturating_sub(a),
            _ => 0,
        };
        WorkerUsage {
            cpu_milli: u32::try_from(cpu_milli).unwrap_or(u32::MAX),
            memory_bytes,
            disk_free_bytes: sys::statvfs(&self.work_root).map_or(0, |s| s.available_bytes),
        }
    }
}

/// The aggregate `cpu` line of /proc/stat: busy = all but idle and iowait.
fn read_cpu_times() -> Option<CpuTimes> {
    let text = fs::read_to_string("/proc/stat").ok()?;
    let mut lines = text.lines();
    let first = lines.next()?;
    let vals: Vec<u64> = first
        .strip_prefix("cpu ")?
        .split_ascii_whitespace()
        .filter_map(|v| v.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal (guest times are included in user).
    let total: u64 = vals.iter().take(8).sum();
    let idle = vals.get(3).copied().unwrap_or(0) + vals.get(4).copied().unwrap_or(0);
    let cpus = text
        .lines()
        .filter(|l| l.starts_with("cpu") && l.as_bytes().get(3).is_some_and(u8::is_ascii_digit))
        .count() as u64;
    Some(CpuTimes {
        busy: total.saturating_sub(idle),
        total,
        cpus: cpus.max(1),
    })
}
