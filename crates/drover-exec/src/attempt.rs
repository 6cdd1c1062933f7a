//! The agent's handle on one running attempt, the same for every driver.

use crate::finished::{AttemptUsage, Finished, OutputSummary};
use crate::kill::KillHandle;
use drover_types::Outcome;
use std::path::PathBuf;
use std::sync::Arc;
use tokio::sync::oneshot;

/// Live usage of an attempt, implemented by each driver.
pub trait UsageProbe: Send + Sync {
    fn usage(&self) -> AttemptUsage;
}

/// A launched attempt. Its limits are enforced by a monitor task that runs on the
/// tokio runtime whether or not anyone awaits [`RunningAttempt::wait`]; dropping the
/// handle does not stop the attempt (use the [`KillHandle`] for that).
pub struct RunningAttempt {
    pub(crate) task: u64,
    pub(crate) attempt: u32,
    pub(crate) pid: Option<u32>,
    pub(crate) dir: PathBuf,
    pub(crate) kill: KillHandle,
    pub(crate) probe: Option<Arc<dyn UsageProbe>>,
    /// Changes its limits while it runs, when its driver can.
    pub(crate) limits: Option<Arc<dyn crate::LimitSetter>>,
    pub(crate) done: oneshot::Receiver<Finished>,
    /// Output paths, so a lost monitor can still report something sensible.
    pub(crate) stdout_path: PathBuf,
    pub(crate) stderr_path: PathBuf,
}

impl std::fmt::Debug for RunningAttempt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunningAttempt")
            .field("task", &self.task)
            .field("attempt", &self.attempt)
            .field("pid", &self.pid)
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

impl RunningAttempt {
    pub fn task(&self) -> u64 {
        self.task
    }

    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// The main process (also its process group id). `None` if it never started.
    pub fn pid(&self) -> Option<u32> {
        self.pid
    }

    /// The attempt directory: the working directory unless the spec named one (then
    /// this directory is not created).
    pub fn dir(&self) -> &std::path::Path {
        &self.dir
    }

    pub fn kill_handle(&self) -> KillHandle {
        self.kill.clone()
    }

    /// A handle that samples this attempt's usage while it runs, for heartbeats; it
    /// outlives [`RunningAttempt::wait`]'s consumption of `self`.
    pub fn usage_probe(&self) -> Option<Arc<dyn UsageProbe>> {
        self.probe.clone()
    }

    /// A handle that changes this attempt's limits while it runs (a granted resize);
    /// `None` when its driver cannot.
    pub fn limit_setter(&self) -> Option<Arc<dyn crate::LimitSetter>> {
        self.limits.clone()
    }

    /// A live sample of the attempt's usage so far.
    pub fn usage(&self) -> AttemptUsage {
        self.probe.as_ref().map(|p| p.usage()).unwrap_or_default()
    }

    /// Waits for the attempt to end and returns how it went.
    pub async fn wait(self) -> Finished {
        match self.done.await {
            Ok(finished) => finished,
            Err(_) => {
                // The monitor task vanished (runtime shutting down or a bug). The
                // processes were not observed to end, so report it as killed.
                tracing::error!(
                    task = self.task,
                    attempt = self.attempt,
                    "attempt monitor stopped without a result"
                );
                Finished {
                    outcome: Outcome::Killed,
                    usage: AttemptUsage::default(),
                    stdout: OutputSummary {
                        path: self.stdout_path,
                        ..OutputSummary::default()
                    },
                    stderr: OutputSummary {
                        path: self.stderr_path,
                        ..OutputSummary::default()
                    },
                    result: Vec::new(),
                }
            }
        }
    }
}
