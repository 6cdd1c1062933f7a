//! Draining one output pipe into a bounded file (and live chunks).

use crate::spec::{OutputChunk, Stream};
use std::fs::File;
use std::io::Write;
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
    /// Created at the first byte: a silent stream costs no file system work (file
    /// creation can cost as much as the spawn itself on a busy disk).
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
        let mut sink = self.into_sink();
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            let n = tokio::select! {
                biased;
                r = rx.read(&mut buf) => match r {
                    Ok(0) => break,
                    Ok(n) => n,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(e) => {
                        tracing::warn!(stream = sink.drain.stream.as_str(), "reading task output: {e}");
                        break;
                    }
                },
                _ = stop.wait_for(|s| *s) => break,
            };
            sink.push(&buf[..n]);
        }
        sink.finish()
    }

    /// The bounded file and live chunks of this stream, fed by whoever reads the
    /// task's output (a pipe here, a container's attach stream in the docker driver).
    pub(crate) fn into_sink(self) -> OutputSink {
        OutputSink {
            drain: self,
            cap: Capture::default(),
            file: None,
            file_ok: true,
        }
    }
}

/// One stream's capture in progress: everything pushed is counted, the first `limit`
/// bytes go to the file and the live channel, then the truncation marker once.
pub(crate) struct OutputSink {
    drain: Drain,
    cap: Capture,
    file: Option<File>,
    file_ok: bool,
}

impl OutputSink {
    /// Writes to the file are plain blocking writes: they land in the page cache and
    /// take microseconds, cheaper than a trip through the blocking pool.
    pub(crate) fn push(&mut self, data: &[u8]) {
        let n = data.len();
        if n == 0 {
            return;
        }
        let cap = &mut self.cap;
        let start = cap.bytes;
        cap.bytes += n as u64;
        if cap.kept.len() < self.drain.keep {
            let take = (self.drain.keep - cap.kept.len()).min(n);
            cap.kept.extend_from_slice(&data[..take]);
        }
        if self.file.is_none() && self.file_ok {
            match File::create(&self.drain.path) {
                Ok(f) => self.file = Some(f),
                Err(e) => {
                    tracing::warn!(path = %self.drain.path.display(), "creating output file: {e}");
                    self.file_ok = false;
                }
            }
        }
        let limit = self.drain.limit;
        if start < limit {
            let room = usize::try_from(limit - start).unwrap_or(usize::MAX).min(n);
            let part = &data[..room];
            if let Some(f) = &mut self.file
                && let Err(e) = f.write_all(part)
            {
                tracing::warn!(
                    stream = self.drain.stream.as_str(),
                    "writing task output: {e}"
                );
                self.file = None;
                self.file_ok = false;
            }
            self.drain.offer(start, part.to_vec());
        }
        if self.cap.bytes > limit && !self.cap.truncated {
            self.cap.truncated = true;
            let marker = truncation_marker(limit);
            if let Some(f) = &mut self.file {
                let _ = f.write_all(marker.as_bytes());
            }
            self.drain.offer(limit, marker.into_bytes());
        }
    }

    pub(crate) fn finish(self) -> Capture {
        self.cap
    }
}

impl Drain {
    /// A copy to feed from elsewhere (the live channel is shared).
    pub(crate) fn clone_for_sink(&self) -> Drain {
        Drain {
            stream: self.stream,
            path: self.path.clone(),
            limit: self.limit,
            keep: self.keep,
            live: self.live.clone(),
        }
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
