//! Errors of the driver itself, as opposed to a task that failed (an [`Outcome`]).
//!
//! [`Outcome`]: drover_types::Outcome

use std::path::PathBuf;

/// Something went wrong on the host, not in the task: the agent should treat the
/// worker as unhealthy rather than blame the task. A task that cannot start (no such
/// program, missing working directory) is *not* an `ExecError`; it finishes with
/// [`Outcome::SpawnFailed`](drover_types::Outcome::SpawnFailed).
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    #[error("invalid driver configuration: {0}")]
    Config(String),
    #[error("{action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("launch must be called from within a tokio runtime")]
    NoRuntime,
    #[error("driver plugin {path}: {source}")]
    Plugin {
        path: PathBuf,
        #[source]
        source: crate::plugin::PluginError,
    },
    /// A task named a driver this worker does not have (placement should prevent it).
    #[error("this worker has no driver {name}")]
    NoSuchDriver { name: String },
    /// The Docker daemon could not be reached or refused a request the driver itself
    /// needs (not a task's own container failing to start: that is `SpawnFailed`).
    /// A running attempt's new limits could not be written (dynamic resources).
    #[error("cannot change the attempt's limits: {0}")]
    SetLimits(#[source] std::io::Error),
    #[error("docker: {action}: {source}")]
    Docker {
        action: &'static str,
        #[source]
        source: bollard::errors::Error,
    },
}

impl ExecError {
    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
        source: std::io::Error,
    ) -> Self {
        ExecError::Io {
            action,
            path: path.into(),
            source,
        }
    }
}
