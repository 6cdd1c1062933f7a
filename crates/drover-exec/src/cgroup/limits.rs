//! What the kernel enforces on one attempt through its cgroups.

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
