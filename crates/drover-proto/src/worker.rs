//! The worker protocol.
//!
//! A worker opens a WebSocket to `/v1/worker/connect` with the cluster token as a bearer
//! credential, sends [`WorkerMessage::Hello`], and gets [`ServerMessage::Welcome`] or
//! [`ServerMessage::Reject`]. From then on, the server pushes work and the worker pushes
//! reports: nothing polls. Output travels in binary frames ([`OutputFrame`]) so that
//! bulk bytes skip JSON.

pub use drover_types::AttemptUsage;
use drover_types::{Attempt, Outcome, TaskId, TaskSpec, WorkerId, WorkerSpec, WorkerUsage};
use serde::{Deserialize, Serialize};

/// Bumped on any incompatible change. A server accepts workers that speak the same
/// version and rejects others with a message saying which versions it speaks.
pub const PROTOCOL_VERSION: u32 = 1;

/// The path of the worker endpoint.
pub const WORKER_CONNECT_PATH: &str = "/v1/worker/connect";

/// Worker → server.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum WorkerMessage {
    /// First message on every connection.
    Hello {
        protocol_version: u32,
        spec: WorkerSpec,
        /// Attempts the worker is running or about to start.
        running: Vec<(TaskId, Attempt)>,
        /// Attempts that ended while the worker could not report them.
        finished: Vec<AttemptReport>,
    },
    Heartbeat {
        usage: WorkerUsage,
        /// Usage so far of each attempt running on the worker.
        #[serde(default)]
        tasks: Vec<RunningUsage>,
    },
    Started {
        task: TaskId,
        attempt: Attempt,
    },
    Finished(AttemptReport),
}

/// How an attempt ended, with what it used and what it printed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttemptReport {
    pub task: TaskId,
    pub attempt: Attempt,
    pub outcome: Outcome,
    pub usage: AttemptUsage,
    /// The task's result: the start of its stdout (lossy UTF-8), up to the result limit.
    pub result: String,
    pub stdout_bytes: u64,
    pub stderr_bytes: u64,
    pub output_truncated: bool,
}

/// A running attempt's usage so far, sent with heartbeats.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunningUsage {
    pub task: TaskId,
    pub attempt: Attempt,
    pub usage: AttemptUsage,
}

/// Server → worker.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerMessage {
    Welcome {
        protocol_version: u32,
        worker: WorkerId,
        /// How often the worker should send heartbeats.
        heartbeat_interval_ms: u64,
        /// After this long without reaching the server, the worker stops its tasks
        /// itself: by then the server has declared it lost and may re-place them.
        lost_after_ms: u64,
    },
    Reject {
        reason: String,
    },
    Start(StartTask),
    Kill {
        task: TaskId,
        attempt: Attempt,
        grace_ms: u64,
        reason: String,
    },
    /// The server has recorded the end of this attempt; the worker may forget it.
    FinishedAck {
        task: TaskId,
        attempt: Attempt,
    },
}

/// Everything a worker needs to run one attempt.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StartTask {
    pub task: TaskId,
    pub attempt: Attempt,
    pub spec: TaskSpec,
    pub array_index: Option<u32>,
    pub array_count: Option<u32>,
    /// Results of the task's dependencies, in dependency order; fed to its stdin.
    pub inputs: Vec<String>,
}

/// Which output stream a chunk belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OutputStream {
    Stdout,
    Stderr,
}

impl OutputStream {
    pub fn as_str(self) -> &'static str {
        match self {
            OutputStream::Stdout => "stdout",
            OutputStream::Stderr => "stderr",
        }
    }
}

/// A chunk of a task's output, sent as one binary WebSocket frame:
/// `task u64 BE | attempt u32 BE | stream u8 (0 out, 1 err) | offset u64 BE | bytes`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutputFrame {
    pub task: TaskId,
    pub attempt: Attempt,
    pub stream: OutputStream,
    pub offset: u64,
    pub data: Vec<u8>,
}

const HEADER: usize = 8 + 4 + 1 + 8;

#[derive(Debug, thiserror::Error)]
#[error("malformed output frame: {0}")]
pub struct FrameError(&'static str);

impl OutputFrame {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER + self.data.len());
        out.extend_from_slice(&self.task.0.to_be_bytes());
        out.extend_from_slice(&self.attempt.0.to_be_bytes());
        out.push(match self.stream {
            OutputStream::Stdout => 0,
            OutputStream::Stderr => 1,
        });
        out.extend_from_slice(&self.offset.to_be_bytes());
        out.extend_from_slice(&self.data);
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<OutputFrame, FrameError> {
        if bytes.len() < HEADER {
            return Err(FrameError("shorter than its header"));
        }
        let u64_at = |i: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&bytes[i..i + 8]);
            u64::from_be_bytes(b)
        };
        let mut a = [0u8; 4];
        a.copy_from_slice(&bytes[8..12]);
        let stream = match bytes[12] {
            0 => OutputStream::Stdout,
            1 => OutputStream::Stderr,
            _ => return Err(FrameError("unknown stream")),
        };
        Ok(OutputFrame {
            task: TaskId(u64_at(0)),
            attempt: Attempt(u32::from_be_bytes(a)),
            stream,
            offset: u64_at(13),
            data: bytes[HEADER..].to_vec(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_frames_round_trip() {
        let f = OutputFrame {
            task: TaskId(42),
            attempt: Attempt(3),
            stream: OutputStream::Stderr,
            offset: 1 << 40,
            data: b"hello\n".to_vec(),
        };
        assert_eq!(OutputFrame::decode(&f.encode()).unwrap(), f);
        assert!(OutputFrame::decode(&[0; 5]).is_err());
    }

    #[test]
    fn messages_are_tagged_json() {
        let m = WorkerMessage::Started {
            task: TaskId(1),
            attempt: Attempt(1),
        };
        let s = serde_json::to_string(&m).unwrap();
        assert_eq!(s, r#"{"type":"started","task":1,"attempt":1}"#);
    }
}
