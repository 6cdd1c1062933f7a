//! How a driver is set up.

use std::path::PathBuf;
use std::time::Duration;

/// Whether to use cgroups for attempts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum CgroupMode {
    /// Use cgroup v1 controllers (memory, cpuacct, freezer) where they are mounted
    /// and writable; fall back to process-group and /proc based control otherwise.
    #[default]
    Auto,
    /// Never touch cgroups.
    Off,
}

/// Environment variables copied from the agent into every task by default. Everything
/// else of the agent's environment (tokens, proxies, its own config) stays out.
pub const DEFAULT_ENV_PASSTHROUGH: &[&str] = &[
    "PATH", "HOME", "USER", "LOGNAME", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "TMPDIR",
];

/// `PATH` for tasks when the agent has none.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

#[derive(Clone, Debug)]
pub struct DriverConfig {
    /// Per-attempt working directories (`attempts/<task>.<attempt>/`) and logs
    /// (`logs/<task>.<attempt>.stdout|stderr`) live under it.
    pub work_root: PathBuf,
    /// Bytes kept per output stream (file and live chunks); the rest is drained and dropped.
    pub output_limit_bytes: u64,
    /// How many leading bytes of stdout [`Finished::result`](crate::Finished::result) keeps.
    pub result_limit_bytes: u64,
    /// Time between SIGTERM and SIGKILL at a time limit.
    pub kill_grace: Duration,
    pub cgroups: CgroupMode,
    /// Marks this agent's processes and cgroups, so a restarted agent finds its
    /// predecessor's leftovers. Letters, digits, `-`, `_`, `.`; at most 64 bytes.
    pub agent_id: String,
    /// Names of agent environment variables passed through to tasks.
    pub env_passthrough: Vec<String>,
    /// How often the tree is sampled when a figure or a limit needs polling (no
    /// memory cgroup). The first sample is taken one interval after the start, so
    /// short tasks cost nothing.
    pub poll_interval: Duration,
}

impl DriverConfig {
    /// Defaults: 64 MiB per stream, 1 MiB result, 5 s grace, cgroups `Auto`,
    /// [`DEFAULT_ENV_PASSTHROUGH`], 100 ms polling.
    pub fn new(work_root: impl Into<PathBuf>, agent_id: impl Into<String>) -> Self {
        DriverConfig {
            work_root: work_root.into(),
            output_limit_bytes: 64 << 20,
            result_limit_bytes: 1 << 20,
            kill_grace: Duration::from_secs(5),
            cgroups: CgroupMode::Auto,
            agent_id: agent_id.into(),
            env_passthrough: DEFAULT_ENV_PASSTHROUGH
                .iter()
                .map(|s| s.to_string())
                .collect(),
            poll_interval: Duration::from_millis(100),
        }
    }
}
