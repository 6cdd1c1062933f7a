//! What the agent asks a driver to run.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;
use tokio::sync::mpsc;

/// One attempt of one task.
#[derive(Clone, Debug, Default)]
pub struct LaunchSpec {
    pub task: u64,
    pub attempt: u32,
    /// Program and arguments, run as given (no shell) unless `shell` is set.
    pub command: Vec<String>,
    /// Run `/bin/sh -c "<command joined by spaces>"` instead.
    pub shell: bool,
    /// Set on top of the driver's minimal environment.
    pub env: BTreeMap<String, String>,
    /// Must exist. `None`: the attempt directory, created fresh (emptied if it exists).
    pub workdir: Option<PathBuf>,
    pub time_limit: Option<Duration>,
    pub memory_limit_bytes: Option<u64>,
    /// Thousandths of a cpu: the process driver's CFS quota (with a cpu cgroup and
    /// `DriverConfig::cpu_quota`), the docker driver's `nano_cpus`. 0: no limit.
    pub cpu_milli: u32,
    /// Written to the task's stdin, which is then closed. `None`: stdin is /dev/null.
    pub stdin: Option<Vec<u8>>,
    /// Receives output as it arrives. Chunks are offered with `try_send`: when the
    /// channel is full a chunk is skipped (the file keeps everything; `offset` shows
    /// the gap), so a slow consumer never stalls the task.
    pub output: Option<mpsc::Sender<OutputChunk>>,
    /// Driver-specific settings of the task (`image` for a container driver), passed
    /// to driver plugins as their `extra` field; the process driver ignores them.
    pub driver_options: BTreeMap<String, String>,
    /// The driver the task asked for (`None`: `process`). A driver set routes on it;
    /// a single driver ignores it.
    pub driver: Option<String>,
    /// The container image, for the docker driver.
    pub image: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    pub fn as_str(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}

/// A piece of live output. `offset` is where `data` starts in the stream's file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutputChunk {
    pub stream: Stream,
    pub offset: u64,
    pub data: Vec<u8>,
}
