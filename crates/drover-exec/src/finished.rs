//! What a finished attempt reports.

use drover_types::Outcome;
use std::path::PathBuf;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finished {
    pub outcome: Outcome,
    pub usage: AttemptUsage,
    pub stdout: OutputSummary,
    pub stderr: OutputSummary,
    /// The first `result_limit_bytes` of stdout, for split/combine style tasks.
    pub result: Vec<u8>,
}

/// Resource usage of an attempt: the domain type, shared with the wire protocol.
pub use drover_types::AttemptUsage;

/// One captured output stream.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OutputSummary {
    /// The file holding the stream (at most `output_limit_bytes` of it, plus the
    /// truncation marker line when cut).
    pub path: PathBuf,
    /// Bytes the task wrote to the stream, including any that were dropped.
    pub bytes: u64,
    pub truncated: bool,
}
