//! What can go wrong between the worker and a driver plugin.

use std::time::Duration;

/// A plugin that cannot be used, or a conversation with it that failed. Carried in
/// [`ExecError::Plugin`](crate::ExecError::Plugin) with the plugin's path.
#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    #[error("cannot start the plugin: {0}")]
    Spawn(#[source] std::io::Error),
    #[error("{path} is {why}: whoever can change it would run code as the worker")]
    Insecure {
        path: std::path::PathBuf,
        why: &'static str,
    },
    #[error("the plugin speaks protocol {spoken}; this worker speaks protocol {expected}")]
    ProtocolVersion { spoken: u32, expected: u32 },
    #[error(
        "the plugin calls itself {name:?}: a driver name is 1-32 lowercase letters, digits, '-' or '_'"
    )]
    BadName { name: String },
    #[error("the plugin now calls itself {now:?}, it was {was:?} when discovered")]
    Renamed { was: String, now: String },
    #[error("two plugins call themselves {name:?}: {first} and {second}")]
    DuplicateName {
        name: String,
        first: std::path::PathBuf,
        second: std::path::PathBuf,
    },
    #[error("the plugin lacks the {capability:?} capability, needed because {needed_for}")]
    MissingCapability {
        capability: &'static str,
        needed_for: &'static str,
    },
    #[error("the plugin did not answer {op} within {timeout:?}")]
    Timeout { op: &'static str, timeout: Duration },
    #[error("the plugin is gone: {reason}")]
    Gone { reason: String },
    #[error("the plugin sent a line that is not protocol JSON ({source}): {line}")]
    Malformed {
        line: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("the plugin sent a line longer than {limit} bytes")]
    LineTooLong { limit: usize },
    #[error("the plugin refused {op}: {code}: {message}")]
    Refused {
        op: &'static str,
        code: String,
        message: String,
    },
    #[error("reading the plugin directory {dir}: {source}")]
    Directory {
        dir: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
}
