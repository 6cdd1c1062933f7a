//! The seam between the agent and the ways of running a task.

use crate::attempt::RunningAttempt;
use crate::error::ExecError;
use crate::spec::LaunchSpec;

/// A task found running from a previous incarnation of this agent, and ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OrphanReport {
    pub task: u64,
    pub attempt: u32,
    /// The processes that were killed.
    pub pids: Vec<u32>,
}

/// Runs task attempts. Object safe, so the agent can hold an `Arc<dyn Driver>` and
/// containers or plugins can come later.
pub trait Driver: Send + Sync {
    /// A short name for logs ("process").
    fn name(&self) -> &'static str;

    /// Starts an attempt. Must be called within a tokio runtime; does no blocking
    /// work beyond creating the attempt directory and spawning. A task that cannot
    /// start is still `Ok`: its [`RunningAttempt::wait`] reports `SpawnFailed`.
    fn launch(&self, spec: LaunchSpec) -> Result<RunningAttempt, ExecError>;

    /// Finds and kills processes left by a previous incarnation of this agent.
    fn reap_orphans(&self) -> Vec<OrphanReport>;

    /// Deletes an attempt's directory (logs included), for the agent's retention policy.
    fn remove_attempt_dir(&self, task: u64, attempt: u32) -> Result<(), ExecError>;

    /// The task drivers (`TaskSpec::driver`) this one runs, which the worker declares
    /// when it joins. A single driver stands in for `process`, the one every worker
    /// has; a set of drivers (the worker's `DriverSet`) lists its members.
    fn drivers(&self) -> Vec<String> {
        vec![drover_types::PROCESS_DRIVER.to_string()]
    }

    /// The limits this driver has the kernel enforce on every attempt, and how; the
    /// worker declares it when it joins (`drover workers`). Default: did not say.
    fn isolation(&self) -> drover_types::Isolation {
        drover_types::Isolation::default()
    }
}
