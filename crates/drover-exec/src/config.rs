//! How a driver is set up.

use crate::confine::TaskUser;
use std::path::PathBuf;
use std::time::Duration;

/// Whether to use cgroups for attempts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum CgroupMode {
    /// Use cgroup v1 controllers (memory, cpuacct, cpu, pids, else freezer) where they are mounted
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

/// Processes and threads one attempt may have at once (cgroup `pids.max`): far above
/// any sane task, low enough that a fork bomb stops long before the host's limit.
pub const DEFAULT_PIDS_LIMIT: u64 = 4096;

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
    /// Who tasks run as; `None`: the agent's own user. Needs the agent to be root.
    /// See [`TaskUser::for_agent`] for the worker's policy.
    pub task_user: Option<TaskUser>,
    /// Host directories (and everything below them) a task may name as its working
    /// directory; any other absolute `workdir` is refused.
    pub allowed_paths: Vec<PathBuf>,
    /// Per-attempt process limit ([`DEFAULT_PIDS_LIMIT`]), enforced where the pids
    /// cgroup controller is available; over it, the attempt is ended as
    /// `TooManyProcesses`. `None`: no limit of its own.
    pub pids_limit: Option<u64>,
    /// Cap each attempt at the cpus it asked for (`LaunchSpec::cpu_milli`) with a CFS
    /// quota, where the cpu cgroup controller is available. Off: cpus only count for
    /// placement, and a task may use every idle core.
    pub cpu_quota: bool,
    /// A process this driver never signals or freezes, besides its own: the worker
    /// agent's, when the driver is the agent's reaper. The agent's spawner threads wait
    /// inside idle attempt cgroups (`cgroup/spawner.rs`), so those cgroups list the
    /// agent's pid, and a reaper killing "everything inside" would kill the agent.
    pub spare_pid: Option<u32>,
}

impl DriverConfig {
    /// The agent id names processes' markers, cgroups and containers: letters,
    /// digits, `-`, `_`, `.`, 1 to 64 bytes, not starting with `.`.
    pub(crate) fn check_agent_id(&self) -> Result<(), crate::error::ExecError> {
        let id = &self.agent_id;
        if id.is_empty()
            || id.len() > 64
            || !id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
            || id.starts_with('.')
        {
            return Err(crate::error::ExecError::Config(format!(
                "agent_id {id:?} must be 1-64 letters, digits, '-', '_' or '.', not starting with '.'"
            )));
        }
        Ok(())
    }

    /// Defaults: 64 MiB per stream, 1 MiB result, 5 s grace, cgroups `Auto`,
    /// [`DEFAULT_ENV_PASSTHROUGH`], 100 ms polling, tasks as the agent's user, no
    /// allowed host paths, [`DEFAULT_PIDS_LIMIT`], cpu quotas on.
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
            task_user: None,
            allowed_paths: Vec::new(),
            pids_limit: Some(DEFAULT_PIDS_LIMIT),
            cpu_quota: true,
            spare_pid: None,
        }
    }
}
