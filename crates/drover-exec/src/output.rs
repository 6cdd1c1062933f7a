//! Draining one output pipe into a bounded file (and live chunks).

use crate::output_sink::OutputSink;
use crate::spec::{OutputChunk, Stream};
use std::path::PathBuf;
use tokio::io::AsyncReadExt;
use tokio::net::unix::pipe;
use tokio::sync::{mpsc, watch};

/// What was captured from one stream.
#[derive(Debug, Default)]
pub(crate) struct Capture {
    /// Everything the task wrote, including dropped bytes.
    pub bytes: u64,
    pub truncated: bool,
    /// The first `keep` bytes (for the result).
    pub kept: Vec<u8>,
}

pub(crate) struct Drain {
    pub stream: Stream,
    /// Created at the first byte (see [`OutputSink`]).
    pub path: PathBuf,
    pub limit: u64,
    pub keep: usize,
    pub live: Option<mpsc::Sender<OutputChunk>>,
}

pub fn truncation_marker(limit: u64) -> String {
    format!("\n[drover: output truncated after {limit} bytes]\n")
}

impl Drain {
    /// Reads until end of file or until `stop` turns true. Keeps reading (and
    /// dropping) past the limit so the task never blocks on a full pipe.
    pub(crate) async fn run(
        self,
        mut rx: pipe::Receiver,
        mut stop: watch::Receiver<bool>,
    ) -> Capture {
        let mut sink = OutputSink::new(self.stream, self.path, self.limit, self.keep, self.live);
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            let n = tokio::select! {
                biased;
                r = rx.read(&mut buf) => match r {
                    Ok(0) => break,
                    Ok(n) => n,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(e) => {
                        tracing::warn!(stream = self.stream.as_str(), "reading task output: {e}");
                        break;
                    }
                },
                _ = stop.wait_for(|s| *s) => break,
            };
            sink.write(&buf[..n]);
        }
        sink.finish()
    }
}

impl Drain {
    /// A copy to feed from elsewhere (the live channel is shared): the docker driver
    /// reads a container's attach stream rather than a pipe.
    pub(crate) fn clone_for_sink(&self) -> Drain {
        Drain {
            stream: self.stream,
            path: self.path.clone(),
            limit: self.limit,
            keep: self.keep,
            live: self.live.clone(),
        }
    }

    /// The bounded file and live chunks of this stream, fed chunk by chunk.
    pub(crate) fn into_sink(self) -> OutputSink {
        OutputSink::new(self.stream, self.path, self.limit, self.keep, self.live)
    }
}
