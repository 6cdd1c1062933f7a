//! The worker protocol.
//!
//! A worker opens a WebSocket to `/v1/worker/connect` with the cluster token as a bearer
//! credential, sends [`WorkerMessage::Hello`], and gets [`ServerMessage::Welcome`] or
//! [`ServerMessage::Reject`]. From then on, the server pushes work and the worker pushes
//! reports: nothing polls. Output travels in binary frames ([`OutputFrame`]) so that
//! bulk bytes skip JSON.
//!
//! ## Liveness and the self-fence
//! The server declares a worker lost when it has heard nothing from it for
//! `lost_after`, and may then start its tasks elsewhere. So that no attempt runs twice
//! at once, the worker stops its own tasks first. It can only trust what proves that
//! the server hears it: every [`WorkerMessage::Heartbeat`] carries a sequence number
//! that the server echoes in [`ServerMessage::HeartbeatAck`]. When an ack arrives, the
//! server had heard the worker at or after the moment that heartbeat was *sent* (the
//! welcome proves the same for the hello), so the server's lost timer cannot end
//! before `sent + lost_after`. The worker fences at `sent + fence_after` (see
//! [`fence_after`]), and its tasks are gone `kill_grace + FENCE_SETTLE` later, still
//! before the server may re-place them. Messages the server merely sends (pings,
//! starts) prove nothing: they flow just as well when the worker's own packets are
//! being dropped.

pub use drover_types::AttemptUsage;
use drover_types::{Attempt, Outcome, TaskId, TaskSpec, WorkerId, WorkerSpec, WorkerUsage};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// Bumped on any incompatible change. A server accepts workers that speak the same
/// version and rejects others with a message saying which versions it speaks.
/// Version 2: heartbeats are acknowledged (the self-fence counts from acks) and the
/// hello declares the worker's kill grace.
/// Version 3: starts are signed (the welcome names the key), reports and output frames
/// carry digests, and the welcome may carry a worker credential (see `integrity`).
pub const PROTOCOL_VERSION: u32 = 3;

/// Time allowed, after a kill grace ends, for the SIGKILLed process tree to be gone,
/// plus slack for timers: part of the margin between the self-fence and the server's
/// lost timeout.
pub const FENCE_SETTLE: Duration = Duration::from_millis(500);

/// The self-fence may not fire sooner than this many heartbeat intervals after the last
/// proof of contact: a fence on ordinary jitter would kill healthy work.
pub const MIN_HEARTBEATS_BEFORE_FENCE: u32 = 3;

/// Timing settings that leave a worker no time to stop its tasks before the server
/// re-places them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "a worker timeout of {lost_after:?} leaves no room for a kill grace of {kill_grace:?}: the worker must stop its tasks (kill grace + {settle:?}) and still wait at least {min_wait:?} ({heartbeats} heartbeats of {heartbeat:?}) for the server before that; lower the worker's --kill-grace, or raise the server's --worker-timeout or lower its --heartbeat-interval",
    settle = FENCE_SETTLE,
    heartbeats = MIN_HEARTBEATS_BEFORE_FENCE,
)]
pub struct FenceTimingError {
    pub lost_after: Duration,
    pub heartbeat: Duration,
    pub kill_grace: Duration,
    pub min_wait: Duration,
}

/// How long after its last proof of contact a worker stops its tasks:
/// `lost_after - kill_grace - FENCE_SETTLE`, refused when that is shorter than
/// [`MIN_HEARTBEATS_BEFORE_FENCE`] heartbeat intervals.
pub fn fence_after(
    lost_after: Duration,
    heartbeat: Duration,
    kill_grace: Duration,
) -> Result<Duration, FenceTimingError> {
    let min_wait = heartbeat * MIN_HEARTBEATS_BEFORE_FENCE;
    let error = FenceTimingError {
        lost_after,
        heartbeat,
        kill_grace,
        min_wait,
    };
    let fence = lost_after
        .checked_sub(kill_grace)
        .and_then(|d| d.checked_sub(FENCE_SETTLE))
        .ok_or(error)?;
    if fence < min_wait {
        Err(error)
    } else {
        Ok(fence)
    }
}

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
        /// Between SIGTERM and SIGKILL when this worker stops a task: the server checks
        /// that its lost timeout leaves room for the self-fence (see [`fence_after`]).
        kill_grace_ms: u64,
        /// Attempts the worker is running or about to start.
        running: Vec<(TaskId, Attempt)>,
        /// Attempts that ended while the worker could not report them.
        finished: Vec<AttemptReport>,
    },
    Heartbeat {
        /// Echoed in [`ServerMessage::HeartbeatAck`]; increases along a connection.
        seq: u64,
        usage: WorkerUsage,
        /// Usage so far of each attempt running on the worker.
        #[serde(default)]
        tasks: Vec<RunningUsage>,
        /// What this worker's tasks use now, all together (CPU rate over the last
        /// interval, memory): what load-aware placement orders workers by, once the
        /// leader logs it (`WorkerUpdate`). Not the host's figure (`usage`): workers
        /// sharing a host would each be charged the others' tasks.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        load: Option<WorkerUsage>,
        /// The data keys the worker holds, when they changed since the last list sent
        /// on this connection (the hello's `spec.data_keys` has them at connect).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        data: Option<Vec<DataKey>>,
    },
    Started {
        task: TaskId,
        attempt: Attempt,
        /// The GPU indices the worker gave the attempt (none: it asked for none, or a
        /// worker from before GPU indices).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        gpus: Vec<u32>,
    },
    Finished(AttemptReport),
    /// A piece of a checkpoint of a running (or just stopped) attempt.
    Checkpoint(crate::checkpoint::CheckpointChunk),
    /// Dynamic resources: a running attempt asks (through its agent's task socket) for
    /// a new reservation; answered by [`ServerMessage::ResizeAnswer`] with the same
    /// `request`.
    Resize {
        request: u64,
        task: TaskId,
        attempt: Attempt,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        cpu_milli: Option<u32>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        memory_bytes: Option<u64>,
    },
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
    /// SHA-256 (hex) of the task, attempt and result ([`crate::integrity::report_digest`]),
    /// checked by the server. Empty in reports made before it was sent.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub digest: String,
}

/// One data key a worker holds: a file under its data directory (the key is the path
/// relative to it, `/`-separated), or a key declared with `--data-key` (no digest).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataKey {
    pub key: String,
    /// SHA-256 of the file's content (64 hex digits); empty for a declared key.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub sha256: String,
    #[serde(default)]
    pub bytes: u64,
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
        /// The server declares the worker lost after this long without hearing it.
        lost_after_ms: u64,
        /// The worker stops every task once this long has passed since the sending of
        /// the latest heartbeat (or hello) the server acknowledged.
        fence_after_ms: u64,
        /// The cluster's ed25519 task key (64 hex digits): every start is signed with
        /// it, and the worker runs nothing whose signature does not verify.
        task_key: String,
        /// A worker that joined with a join token: its own credential, to store and
        /// present from then on instead of the token (which was single-use).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        credential: Option<String>,
    },
    Reject {
        reason: String,
        /// Trying again cannot help (another protocol version, timings that break the
        /// fence): the worker should exit with the reason.
        #[serde(default)]
        permanent: bool,
        /// The leader's URL, when the refusing server knows it (it is not the leader):
        /// a worker that was not given that server tries it next. Groups change
        /// (`drover servers add`), so a worker's list may not hold the leader.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        leader: Option<String>,
    },
    /// The server heard the heartbeat with this sequence number.
    HeartbeatAck {
        seq: u64,
    },
    Start(StartTask),
    Kill {
        task: TaskId,
        attempt: Attempt,
        grace_ms: u64,
        reason: String,
        /// Only if the attempt has not started: a retraction of a prefetched task
        /// (to run it elsewhere sooner) that the worker may have beaten by starting it.
        /// A started attempt then runs on; its `Started` tells the server so.
        #[serde(default)]
        unless_started: bool,
    },
    /// The server has recorded the end of this attempt; the worker may forget it.
    FinishedAck {
        task: TaskId,
        attempt: Attempt,
    },
    /// A piece of the checkpoint a start is about to resume from (sent before it).
    Checkpoint(crate::checkpoint::CheckpointChunk),
    /// The answer to [`WorkerMessage::Resize`]. (A granted one also comes as
    /// [`ServerMessage::SetLimits`]; applying the limits twice is harmless.)
    ResizeAnswer {
        request: u64,
        answer: crate::api::ResizeAnswer,
    },
    /// A granted resize (asked by the task, or through the API): set the attempt's
    /// limits to its new reservation. A worker from before dynamic resources ignores
    /// it as a malformed message, so the protocol version is unchanged.
    SetLimits {
        task: TaskId,
        attempt: Attempt,
        resources: drover_types::Resources,
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
    /// For a chunk of a split: its slice of the range, inclusive
    /// (`DROVER_RANGE_START`, `DROVER_RANGE_END`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slice: Option<(u64, u64)>,
    /// Results of the task's dependencies, in dependency order; fed to its stdin.
    pub inputs: Vec<String>,
    /// The leader's ed25519 signature (hex) of the start's digest
    /// ([`crate::integrity::start_digest`]); empty until the leader sends it.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub signature: String,
    /// The task's latest checkpoint, to restore into the attempt's checkpoint
    /// directory before it starts; the server sends its bytes just before the start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resume: Option<crate::checkpoint::CheckpointRef>,
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
/// `task u64 BE | attempt u32 BE | stream u8 (0 out, 1 err) | offset u64 BE |
/// digest [32] | bytes`, where the digest is the SHA-256 of everything before it and the
/// bytes (so a chunk cannot be damaged or moved to another attempt or offset unseen).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutputFrame {
    pub task: TaskId,
    pub attempt: Attempt,
    pub stream: OutputStream,
    pub offset: u64,
    pub data: Vec<u8>,
}

const FIELDS: usize = 8 + 4 + 1 + 8;
const HEADER: usize = FIELDS + 32;

/// Why bytes are not an output frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("malformed output frame: shorter than its header")]
    Short,
    #[error("malformed output frame: unknown stream")]
    UnknownStream,
    /// Well formed, but its digest does not match: damaged on the way.
    #[error("output frame whose digest does not match its bytes")]
    DigestMismatch,
}

fn frame_digest(fields: &[u8], data: &[u8]) -> [u8; 32] {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    h.update(fields);
    h.update(data);
    h.finalize().into()
}

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
        let digest = frame_digest(&out, &self.data);
        out.extend_from_slice(&digest);
        out.extend_from_slice(&self.data);
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<OutputFrame, FrameError> {
        if bytes.len() < HEADER {
            return Err(FrameError::Short);
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
            _ => return Err(FrameError::UnknownStream),
        };
        if bytes[FIELDS..HEADER] != frame_digest(&bytes[..FIELDS], &bytes[HEADER..]) {
            return Err(FrameError::DigestMismatch);
        }
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
    fn fence_leaves_room_for_the_kill_grace_and_refuses_what_does_not_fit() {
        let s = Duration::from_secs;
        // The defaults: 30 s lost timeout, 1 s heartbeats, 5 s kill grace.
        assert_eq!(
            fence_after(s(30), s(1), s(5)),
            Ok(Duration::from_millis(24_500))
        );
        // Fence + grace + settle never reaches the lost timeout.
        for (lost, hb, grace) in [(30, 1, 5), (10, 1, 1), (3, 0, 1), (60, 2, 30)] {
            let hb = Duration::from_millis(hb * 250);
            let f = fence_after(s(lost), hb, s(grace)).unwrap();
            assert!(f + s(grace) + FENCE_SETTLE <= s(lost));
            assert!(f >= hb * MIN_HEARTBEATS_BEFORE_FENCE);
        }
        // A grace as long as the timeout, or one leaving less than three heartbeats.
        assert!(fence_after(s(30), s(1), s(30)).is_err());
        assert!(fence_after(s(30), s(1), s(27)).is_err());
        assert!(fence_after(s(2), s(1), s(1)).is_err());
        let e = fence_after(s(2), s(1), s(1)).unwrap_err().to_string();
        assert!(
            e.contains("--kill-grace") && e.contains("--worker-timeout"),
            "{e}"
        );
    }

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
        assert_eq!(OutputFrame::decode(&[0; 5]), Err(FrameError::Short));
        // A changed byte, offset or attempt fails the digest.
        for at in [HEADER + 1, 20, 11] {
            let mut bytes = f.encode();
            bytes[at] ^= 1;
            assert_eq!(OutputFrame::decode(&bytes), Err(FrameError::DigestMismatch));
        }
    }

    #[test]
    fn messages_are_tagged_json() {
        let m = WorkerMessage::Started {
            task: TaskId(1),
            attempt: Attempt(1),
            gpus: Vec::new(),
        };
        let s = serde_json::to_string(&m).unwrap();
        assert_eq!(s, r#"{"type":"started","task":1,"attempt":1}"#);
    }
}
