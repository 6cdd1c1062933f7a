//! The task socket: how a running task talks to its agent (dynamic resources).
//!
//! The agent listens on one Unix socket (its path in the task's environment as
//! [`SOCKET_ENV`]; mode 0600, owned by the user tasks run as, so other users cannot
//! connect) and gives each attempt a random token ([`TOKEN_ENV`]) that names it: a
//! request carries the token, and a token names one attempt only while it runs. One
//! request per connection: a JSON line [`TaskRequest`] in, a JSON line [`TaskReply`]
//! out. `drover-task` is the client.

use crate::api::ResizeAnswer;
use serde::{Deserialize, Serialize};

/// The environment variable holding the agent's task socket path.
pub const SOCKET_ENV: &str = "DROVER_AGENT_SOCKET";
/// The environment variable holding the attempt's token.
pub const TOKEN_ENV: &str = "DROVER_TASK_TOKEN";
/// The longest request line the agent reads.
pub const MAX_REQUEST_BYTES: usize = 4096;

/// A task's request to its agent.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum TaskRequest {
    /// Change the attempt's reservation: `cpus` as cores (`4`, `0.5`, `250m`),
    /// `memory` as bytes (`8G`, `512MiB`); a dimension left out is unchanged.
    Resize {
        token: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        cpus: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        memory: Option<String>,
    },
}

/// The agent's reply.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "reply", rename_all = "snake_case")]
pub enum TaskReply {
    /// The cluster's decision (granted: the new limits are in force).
    Resize(ResizeAnswer),
    /// The request could not be decided: a bad token or amount, no server.
    Error { message: String },
}
