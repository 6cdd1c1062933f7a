//! The host as a worker declares it when it joins.

use super::{cgroup_cpu_quota_milli, cgroup_memory_limit, meminfo_field};
use crate::error::ExecError;
use crate::sys;
use drover_types::Resources;
use std::fs;
use std::path::Path;

/// The host as a worker declares it when it joins.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostInfo {
    pub hostname: String,
    /// CPU (millicores), memory and scratch disk; no GPUs or custom resources.
    pub capacity: Resources,
}

impl HostInfo {
    /// CPU: the CPUs this process may use (affinity, and a cgroup CPU quota when one
    /// is set and smaller). Memory: MemTotal, or the agent's memory cgroup limit when
    /// smaller. Disk: the size of the file system holding `work_root`.
    pub fn detect(work_root: &Path) -> Result<HostInfo, ExecError> {
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get()) as u64;
        let mut cpu_milli = cpus * 1000;
        if let Some(q) = cgroup_cpu_quota_milli() {
            cpu_milli = cpu_milli.min(q.max(1));
        }
        let meminfo = fs::read_to_string("/proc/meminfo")
            .map_err(|e| ExecError::io("reading", "/proc/meminfo", e))?;
        let mut memory_bytes = meminfo_field(&meminfo, "MemTotal:").unwrap_or(0);
        if let Some(limit) = cgroup_memory_limit()
            && limit < memory_bytes
        {
            memory_bytes = limit;
        }
        let space = sys::statvfs(work_root).map_err(|e| ExecError::io("statvfs", work_root, e))?;
        let hostname = fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|s| s.trim().to_string())
            .unwrap_or_else(|_| "localhost".to_string());
        Ok(HostInfo {
            hostname,
            capacity: Resources {
                cpu_milli: u32::try_from(cpu_milli).unwrap_or(u32::MAX),
                memory_bytes,
                disk_bytes: space.total_bytes,
                ..Resources::default()
            },
        })
    }
}
