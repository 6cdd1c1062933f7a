//! A value that must reach a task but never be shown back.

use serde::{Deserialize, Serialize};
use std::fmt;

/// What the API, the CLI and the web UI show in place of a secret value.
pub const REDACTED: &str = "(secret)";

/// A secret environment value (`TaskSpec::secret_env`). It travels in full where the
/// task needs it (the replicated log, the worker protocol), but its `Debug` prints
/// [`REDACTED`], so a `{:?}` of a spec in a log line cannot leak it, and
/// [`TaskSpec::redacted`](crate::TaskSpec::redacted) replaces it before any read.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SecretString(String);

impl SecretString {
    pub fn new(value: impl Into<String>) -> SecretString {
        SecretString(value.into())
    }

    /// The value itself, for the one place that needs it: the task's environment.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_the_value_and_serde_keeps_it() {
        let s = SecretString::new("hunter2");
        assert_eq!(format!("{s:?}"), REDACTED);
        assert_eq!(serde_json::to_string(&s).unwrap(), "\"hunter2\"");
        let back: SecretString = serde_json::from_str("\"hunter2\"").unwrap();
        assert_eq!(back.expose(), "hunter2");
    }
}
