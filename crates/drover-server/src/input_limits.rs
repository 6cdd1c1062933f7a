//! Limits on what this server takes from workers and from slow clients, enforced here
//! and not left to the other side: a worker is a remote program (a modified or broken
//! one can send anything its connection allows), and a client may be an attacker.
//!
//! `drover_types::Limits` bounds the *content* of a submission and travels with the
//! scheduler; these bound the *transport*: how big a task's result and output may get
//! once they reach this server, how big one worker message may be, and how long a
//! client may take to send a request.

use drover_proto::worker::{AttemptReport, OutputFrame};
use std::time::Duration;

/// Written into an output stream where the server stopped storing it.
pub const OUTPUT_TRUNCATED_MARKER: &str = "\n[drover: output truncated here by the server";

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InputLimits {
    /// Bytes of one attempt's result (the start of its stdout kept in the replicated
    /// log and fed to its dependents). Larger results are cut to this (at a character
    /// boundary) and the report marked `output_truncated`: every server keeps every
    /// result, so one task must not be able to grow the log by 64 MiB.
    pub max_result_bytes: usize,
    /// Bytes of one output stream (stdout or stderr) of one attempt stored by the
    /// server. Past it the stream ends with a marker and the rest is dropped; the task
    /// runs on, and nothing fails.
    pub max_output_bytes: u64,
    /// Bytes of one WebSocket message from a worker; a larger one ends the connection
    /// (the worker reconnects). Above the largest honest message: a hello listing the
    /// results of every attempt that ended while the worker was away.
    pub max_worker_message_bytes: usize,
    /// How long a client may take to send a request's headers (HTTP/1.1): a client
    /// trickling them a byte at a time (slowloris) is cut off. hyper starts it when it
    /// waits for a head, so a keep-alive connection idle this long is closed too; a
    /// short one would make clients' pooled connections race the close.
    pub header_read_timeout: Duration,
    /// How long a client may take to send a request's body, from when the request
    /// reached the router; a 408 after it.
    pub body_read_timeout: Duration,
    /// Bytes of one checkpoint (the archive of a task's checkpoint directory) this
    /// server stores; a larger upload is dropped, counted and logged, and the task goes
    /// on from its previous checkpoint.
    pub max_checkpoint_bytes: u64,
}

impl Default for InputLimits {
    fn default() -> Self {
        InputLimits {
            max_result_bytes: 1 << 20,
            max_output_bytes: 64 << 20,
            max_worker_message_bytes: 64 << 20,
            header_read_timeout: Duration::from_secs(30),
            body_read_timeout: Duration::from_secs(60),
            max_checkpoint_bytes: 256 << 20,
        }
    }
}

/// What [`InputLimits::cap_output`] did with a frame.
#[derive(Debug, PartialEq, Eq)]
pub enum OutputCap {
    /// Wholly below the cap: stored as sent.
    Kept(OutputFrame),
    /// Crosses the cap: cut there, with the marker after it.
    Truncated(OutputFrame),
    /// Wholly past the cap: not stored.
    Dropped,
}

impl InputLimits {
    /// Cuts an oversized result to [`InputLimits::max_result_bytes`]; true if it was.
    pub fn cap_result(&self, report: &mut AttemptReport) -> bool {
        if report.result.len() <= self.max_result_bytes {
            return false;
        }
        let mut end = self.max_result_bytes;
        while !report.result.is_char_boundary(end) {
            end -= 1;
        }
        report.result.truncate(end);
        report.output_truncated = true;
        true
    }

    /// Applies [`InputLimits::max_output_bytes`] to one frame. Decided from the
    /// frame's offset alone, so that a frame sent again (a worker resends what was not
    /// acknowledged when it reconnects) gets the same answer: exactly one frame of a
    /// stream holds byte `max_output_bytes`, and it alone carries the marker.
    pub fn cap_output(&self, mut frame: OutputFrame) -> OutputCap {
        let cap = self.max_output_bytes;
        let end = frame.offset.saturating_add(frame.data.len() as u64);
        if end <= cap {
            return OutputCap::Kept(frame);
        }
        if frame.offset > cap {
            return OutputCap::Dropped;
        }
        // `offset <= cap < end`: the cut is inside this frame (or just at its start).
        frame.data.truncate((cap - frame.offset) as usize);
        frame.data.extend_from_slice(
            format!("{OUTPUT_TRUNCATED_MARKER} ({cap} bytes kept)]\n").as_bytes(),
        );
        OutputCap::Truncated(frame)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use drover_proto::worker::{AttemptUsage, OutputStream};
    use drover_types::{Attempt, Outcome, TaskId};

    fn frame(offset: u64, len: usize) -> OutputFrame {
        OutputFrame {
            task: TaskId(1),
            attempt: Attempt(1),
            stream: OutputStream::Stdout,
            offset,
            data: vec![b'x'; len],
        }
    }

    fn limits(max_output_bytes: u64) -> InputLimits {
        InputLimits {
            max_output_bytes,
            max_result_bytes: 4,
            ..InputLimits::default()
        }
    }

    #[test]
    fn exactly_one_frame_carries_the_marker_and_the_rest_is_dropped() {
        let l = limits(10);
        assert!(matches!(l.cap_output(frame(0, 10)), OutputCap::Kept(_)));
        // A frame starting at the cap is the one that crosses it.
        let OutputCap::Truncated(f) = l.cap_output(frame(10, 5)) else {
            panic!("not truncated")
        };
        assert!(f.data.starts_with(OUTPUT_TRUNCATED_MARKER.as_bytes()));
        assert_eq!(l.cap_output(frame(11, 5)), OutputCap::Dropped);
        // One crossing it in the middle keeps the bytes below it.
        let OutputCap::Truncated(f) = l.cap_output(frame(6, 8)) else {
            panic!("not truncated")
        };
        assert_eq!(&f.data[..4], b"xxxx");
        assert!(f.data[4..].starts_with(OUTPUT_TRUNCATED_MARKER.as_bytes()));
        // Offsets near u64::MAX do not wrap around.
        assert_eq!(l.cap_output(frame(u64::MAX, 5)), OutputCap::Dropped);
    }

    #[test]
    fn a_result_is_cut_at_a_character_boundary_and_marked() {
        let mut report = AttemptReport {
            task: TaskId(1),
            attempt: Attempt(1),
            outcome: Outcome::Exited { code: 0 },
            usage: AttemptUsage::default(),
            result: "abcé€".into(),
            stdout_bytes: 0,
            stderr_bytes: 0,
            output_truncated: false,
            digest: String::new(),
        };
        let l = limits(10);
        assert!(l.cap_result(&mut report));
        // 'é' takes bytes 3 and 4: the cut falls before it.
        assert_eq!(report.result, "abc");
        assert!(report.output_truncated);
        assert!(!l.cap_result(&mut report));
    }
}
