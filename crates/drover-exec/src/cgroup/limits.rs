//! What the kernel enforces on one attempt through its cgroups.

use drover_types::Resources;

/// The limits written into an attempt's cgroups. `None`: no limit of that kind.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct AttemptLimits {
    /// `memory.limit_in_bytes` (and memsw).
    pub memory_bytes: Option<u64>,
    /// CFS bandwidth: `cpu.cfs_quota_us` = this × period / 1000.
    pub cpu_milli: Option<u32>,
    /// `pids.max`.
    pub pids: Option<u64>,
}

impl AttemptLimits {
    /// A task's memory and cpus (0 meaning "none asked", so no limit) with the
    /// worker's process cap.
    pub(crate) fn of(resources: &Resources, pids: Option<u64>) -> AttemptLimits {
        AttemptLimits {
            memory_bytes: (resources.memory_bytes > 0).then_some(resources.memory_bytes),
            cpu_milli: (resources.cpu_milli > 0).then_some(resources.cpu_milli),
            pids,
        }
    }
}
