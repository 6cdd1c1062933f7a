//! Where one output stream of an attempt goes, chunk by chunk, whatever produced it:
//! a pipe of a child process ([`Drain`](crate::output::Drain)) or a driver plugin's
//! output notifications (`plugin::attempt`).

use crate::output::{Capture, truncation_marker};
use crate::spec::{OutputChunk, Stream};
use std::fs::File;
use std::io::Write;
use std::path::PathBuf;
use tokio::sync::mpsc;

/// Writes a stream into its bounded file, keeps its first bytes for the result, and
/// offers live chunks. The file is created at the first byte: a silent stream costs
/// no file system work (file creation can cost as much as a spawn on a busy disk).
/// Writes are plain blocking writes: they land in the page cache and take
/// microseconds, cheaper than a trip through the blocking pool.
pub(crate) struct OutputSink {
    stream: Stream,
    path: PathBuf,
    limit: u64,
    keep: usize,
    live: Option<mpsc::Sender<OutputChunk>>,
    file: Option<File>,
    file_ok: bool,
    cap: Capture,
}

impl OutputSink {
    pub(crate) fn new(
        stream: Stream,
        path: PathBuf,
        limit: u64,
        keep: usize,
        live: Option<mpsc::Sender<OutputChunk>>,
    ) -> Self {
        OutputSink {
            stream,
            path,
            limit,
            keep,
            live,
            file: None,
            file_ok: true,
            cap: Capture::default(),
        }
    }

    /// Bytes of the stream seen so far (dropped ones included): the offset the next
    /// chunk starts at.
    pub(crate) fn bytes(&self) -> u64 {
        self.cap.bytes
    }

    /// Appends the next bytes of the stream. Past the limit they are counted and
    /// dropped, and the truncation marker is written once.
    pub(crate) fn write(&mut self, data: &[u8]) {
        let n = data.len();
        if n == 0 {
            return;
        }
        let start = self.cap.bytes;
        self.cap.bytes += n as u64;
        if self.cap.kept.len() < self.keep {
            let take = (self.keep - self.cap.kept.len()).min(n);
            self.cap.kept.extend_from_slice(&data[..take]);
        }
        if self.file.is_none() && self.file_ok {
            match File::create(&self.path) {
                Ok(f) => self.file = Some(f),
                Err(e) => {
                    tracing::warn!(path = %self.path.display(), "creating output file: {e}");
                    self.file_ok = false;
                }
            }
        }
        if start < self.limit {
            let room = usize::try_from(self.limit - start)
                .unwrap_or(usize::MAX)
                .min(n);
            let part = &data[..room];
            if let Some(f) = &mut self.file
                && let Err(e) = f.write_all(part)
            {
                tracing::warn!(stream = self.stream.as_str(), "writing task output: {e}");
                self.file = None;
                self.file_ok = false;
            }
            self.offer(start, part.to_vec());
        }
        if self.cap.bytes > self.limit && !self.cap.truncated {
            self.cap.truncated = true;
            let marker = truncation_marker(self.limit);
            if let Some(f) = &mut self.file {
                let _ = f.write_all(marker.as_bytes());
            }
            self.offer(self.limit, marker.into_bytes());
        }
    }

    /// What was captured.
    pub(crate) fn finish(self) -> Capture {
        self.cap
    }

    fn offer(&mut self, offset: u64, data: Vec<u8>) {
        if let Some(tx) = &self.live {
            match tx.try_send(OutputChunk {
                stream: self.stream,
                offset,
                data,
            }) {
                Ok(()) | Err(mpsc::error::TrySendError::Full(_)) => {}
                Err(mpsc::error::TrySendError::Closed(_)) => self.live = None,
            }
        }
    }
}
