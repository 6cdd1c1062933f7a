//! Size limits on what a user may submit, so that one request cannot exhaust the
//! server. Configurable; these defaults suit a shared cluster.

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Limits {
    pub max_tasks_per_job: u64,
    pub max_array_len: u64,
    pub max_command_args: usize,
    /// Bytes of any one string: an argument, a name, a key, a label, an env value.
    pub max_string_bytes: usize,
    /// Bytes of a task's whole environment (keys and values).
    pub max_env_bytes: usize,
    pub max_env_vars: usize,
    pub max_labels: usize,
    pub max_deps_per_task: usize,
    pub max_inputs: usize,
    pub max_custom_resources: usize,
    /// Shortest and longest allowed time limit, in milliseconds.
    pub min_runtime_ms: u64,
    pub max_runtime_ms: u64,
    pub max_attempts: u32,
    pub max_backoff_ms: u64,
    /// Dependency edges (`after` entries) of a whole job, summed over its tasks: what
    /// the cycle check and the scheduler's dependency tables cost is in the edges, and
    /// `max_deps_per_task` alone would let a job of many tasks carry billions.
    pub max_edges_per_job: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_tasks_per_job: 1_000_000,
            max_array_len: 1_000_000,
            max_command_args: 4096,
            max_string_bytes: 64 * 1024,
            max_env_bytes: 256 * 1024,
            max_env_vars: 1024,
            max_labels: 64,
            max_deps_per_task: 100_000,
            max_inputs: 1024,
            max_custom_resources: 32,
            min_runtime_ms: 100,
            max_runtime_ms: 30 * 24 * 3600 * 1000,
            max_attempts: 100,
            max_backoff_ms: 24 * 3600 * 1000,
            max_edges_per_job: 500_000,
        }
    }
}
