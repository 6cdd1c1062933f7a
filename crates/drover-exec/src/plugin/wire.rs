//! The messages of the driver plugin protocol, version [`PROTOCOL_VERSION`]: one JSON
//! object per line on the plugin's stdin (requests) and stdout (responses and
//! notifications). docs/driver-plugins.md is the reference; this file is its code.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The protocol version this worker speaks. A plugin that describes itself with
/// another one is refused.
pub const PROTOCOL_VERSION: u32 = 1;

/// Longest line accepted from a plugin. Output chunks are at most 64 KiB of raw
/// bytes (about 87 KiB in base64), so a longer line is a broken plugin, not output.
pub(crate) const MAX_LINE_BYTES: usize = 1 << 20;

/// A request from the worker: `{"id": 7, "op": "...", ...}`.
#[derive(Debug, Serialize)]
pub(crate) struct Request<'a> {
    pub id: u64,
    #[serde(flatten)]
    pub op: Op<'a>,
}

/// The operations. Attempts are named by `task` and `attempt`, unique per worker.
#[derive(Debug, Serialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub(crate) enum Op<'a> {
    /// Who are you? Carries the version the worker speaks.
    Describe {
        protocol: u32,
    },
    Start(Box<StartRequest<'a>>),
    Stop {
        task: u64,
        attempt: u32,
        signal: StopSignal,
        grace_ms: u64,
    },
    Status {
        task: u64,
        attempt: u32,
    },
    Usage {
        task: u64,
        attempt: u32,
    },
    /// Send this stream again from `offset` (as output notifications).
    Logs {
        task: u64,
        attempt: u32,
        stream: WireStream,
        offset: u64,
    },
}

/// What `start` asks a plugin to run.
#[derive(Debug, Serialize)]
pub(crate) struct StartRequest<'a> {
    pub task: u64,
    pub attempt: u32,
    /// Program and arguments, run without a shell unless `shell` is set (then the
    /// plugin runs `/bin/sh -c` with the arguments joined by spaces).
    pub argv: &'a [String],
    pub shell: bool,
    /// The task's complete environment (nothing of the plugin's own is added).
    pub env: &'a BTreeMap<String, String>,
    /// An existing directory on the worker's host, prepared by the worker.
    pub workdir: String,
    pub limits: Limits,
    /// Base64 of what to write to the task's stdin before closing it; absent: no input.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stdin: Option<String>,
    /// Who to run the task as, when the worker runs as root and confines its tasks.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<WireUser>,
    /// Driver-specific fields (`image` for a container driver), passed through.
    pub extra: &'a BTreeMap<String, String>,
}

#[derive(Debug, Default, Serialize)]
pub(crate) struct Limits {
    /// Informational: the worker enforces it (stop, then kill).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub time_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory_bytes: Option<u64>,
    pub cpu_milli: u32,
}

#[derive(Debug, Serialize)]
pub(crate) struct WireUser {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub(crate) enum StopSignal {
    #[serde(rename = "TERM")]
    Term,
    #[serde(rename = "KILL")]
    Kill,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum WireStream {
    Stdout,
    Stderr,
}

/// A response: `{"id": 7, "ok": true, "result": {...}}` or
/// `{"id": 7, "ok": false, "error": {"code": "...", "message": "..."}}`.
#[derive(Debug, Deserialize)]
pub(crate) struct Response {
    pub id: u64,
    pub ok: bool,
    #[serde(default)]
    pub result: serde_json::Value,
    #[serde(default)]
    pub error: Option<WireError>,
}

#[derive(Clone, Debug, Deserialize)]
pub(crate) struct WireError {
    pub code: String,
    #[serde(default)]
    pub message: String,
}

/// `describe`'s result.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
pub struct Description {
    /// The driver name tasks choose (`driver: <name>`).
    pub name: String,
    /// The plugin's own version, for logs.
    pub version: String,
    pub protocol: u32,
    /// What it supports beyond the required operations, e.g. `usage`, `logs`,
    /// `memory_limit`, `image`.
    #[serde(default)]
    pub capabilities: Vec<String>,
}

/// `start`'s result: where the task runs on this host, if it is a local process
/// group (the worker kills that group if the plugin dies).
#[derive(Debug, Default, Deserialize)]
pub(crate) struct Started {
    #[serde(default)]
    pub pgid: Option<u32>,
}

/// `status`'s result.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
pub struct AttemptStatus {
    /// `running` or `exited`.
    pub state: String,
    #[serde(default)]
    pub pid: Option<u32>,
}

/// Usage as plugins report it (`usage`'s result and `exit`'s `usage`); every field optional.
#[derive(Clone, Copy, Debug, Default, Deserialize)]
pub(crate) struct WireUsage {
    #[serde(default)]
    pub cpu_time_ms: u64,
    #[serde(default)]
    pub peak_memory_bytes: u64,
    #[serde(default)]
    pub read_bytes: u64,
    #[serde(default)]
    pub write_bytes: u64,
}

/// A line without an id.
#[derive(Debug, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub(crate) enum Notification {
    Output {
        task: u64,
        attempt: u32,
        stream: WireStream,
        offset: u64,
        /// Base64.
        data: String,
    },
    Exit {
        task: u64,
        attempt: u32,
        outcome: WireOutcome,
        #[serde(default)]
        usage: WireUsage,
    },
}

impl Notification {
    pub(crate) fn attempt_key(&self) -> (u64, u32) {
        match self {
            Notification::Output { task, attempt, .. }
            | Notification::Exit { task, attempt, .. } => (*task, *attempt),
        }
    }
}

/// How an attempt ended, as the plugin saw it.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub(crate) enum WireOutcome {
    Exited {
        code: i32,
    },
    Signaled {
        signal: i32,
    },
    OutOfMemory,
    /// Never ran (no such program, image missing...).
    SpawnFailed {
        message: String,
    },
}
