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

/// Resource usage of an attempt. Which figures are exact and which are sampled depends
/// on the mode; see the crate README.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AttemptUsage {
    pub wall_ms: u64,
    /// User + system CPU time of the tree.
    pub cpu_time_ms: u64,
    pub peak_memory_bytes: u64,
    /// Bytes read from / written to storage (not page-cache hits).
    pub read_bytes: u64,
    pub write_bytes: u64,
}

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
