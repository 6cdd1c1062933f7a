//! How the worker runs its driver plugins.

use crate::config::{DEFAULT_ENV_PASSTHROUGH, DriverConfig};
use crate::confine::TaskUser;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Clone, Debug)]
pub struct PluginConfig {
    /// Attempt directories (`attempts/<task>.<attempt>/`) and logs
    /// (`logs/<task>.<attempt>.stdout|stderr`) live under it, as for the process
    /// driver (the same root can serve both: an attempt runs on one driver).
    pub work_root: PathBuf,
    /// Bytes kept per output stream; the rest is counted and dropped.
    pub output_limit_bytes: u64,
    /// Leading bytes of stdout kept as the attempt's result.
    pub result_limit_bytes: u64,
    /// Between `stop` with `TERM` and `stop` with `KILL` at a time limit.
    pub kill_grace: Duration,
    /// How long the plugin has to answer a request (and to end an attempt after
    /// `stop` with `KILL`) before the worker gives up on it.
    pub request_timeout: Duration,
    /// How often a running attempt's usage is asked for (plugins that list the
    /// `usage` capability).
    pub usage_interval: Duration,
    /// Agent environment variables passed to tasks, and to the plugin process itself.
    pub env_passthrough: Vec<String>,
    /// Who tasks run as (sent in `start`); the plugin must honour it.
    pub task_user: Option<TaskUser>,
    /// Host directories a task may name as its working directory.
    pub allowed_paths: Vec<PathBuf>,
}

impl PluginConfig {
    /// 64 MiB per stream, 1 MiB result, 5 s grace, 10 s request timeout, usage every
    /// second, [`DEFAULT_ENV_PASSTHROUGH`].
    pub fn new(work_root: impl Into<PathBuf>) -> Self {
        PluginConfig {
            work_root: work_root.into(),
            output_limit_bytes: 64 << 20,
            result_limit_bytes: 1 << 20,
            kill_grace: Duration::from_secs(5),
            request_timeout: Duration::from_secs(10),
            usage_interval: Duration::from_secs(1),
            env_passthrough: DEFAULT_ENV_PASSTHROUGH
                .iter()
                .map(|s| s.to_string())
                .collect(),
            task_user: None,
            allowed_paths: Vec::new(),
        }
    }

    /// The same directories, limits and confinement as a process driver's.
    pub fn like(process: &DriverConfig) -> Self {
        PluginConfig {
            work_root: process.work_root.clone(),
            output_limit_bytes: process.output_limit_bytes,
            result_limit_bytes: process.result_limit_bytes,
            kill_grace: process.kill_grace,
            env_passthrough: process.env_passthrough.clone(),
            task_user: process.task_user.clone(),
            allowed_paths: process.allowed_paths.clone(),
            ..PluginConfig::new(&process.work_root)
        }
    }
}
