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
    /// Writes to the file are plain blocking writes: they land in the page cache and
    /// take microseconds, cheaper than a trip through the blocking pool.
    pub(crate) async fn run(
        mut self,
        mut rx: pipe::Receiver,
        mut stop: watch::Receiver<bool>,
    ) -> Capture {
        let mut cap = Capture::default();
        let mut buf = vec![0u8; 32 * 1024];
        let mut file: Option<File> = None;
        let mut file_ok = true;
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
            let data = &buf[..n];
            let start = cap.bytes;
            cap.bytes += n as u64;
            if cap.kept.len() < self.keep {
                let take = (self.keep - cap.kept.len()).min(n);
                cap.kept.extend_from_slice(&data[..take]);
            }
            if file.is_none() && file_ok {
                match File::create(&self.path) {
                    Ok(f) => file = Some(f),
                    Err(e) => {
                        tracing::warn!(path = %self.path.display(), "creating output file: {e}");
                        file_ok = false;
                    }
                }
            }
            if start < self.limit {
                let room = usize::try_from(self.limit - start)
                    .unwrap_or(usize::MAX)
                    .min(n);
                let part = &data[..room];
                if let Some(f) = &mut file
                    && let Err(e) = f.write_all(part)
                {
                    tracing::warn!(stream = self.stream.as_str(), "writing task output: {e}");
                    file = None;
                    file_ok = false;
                }
                self.offer(start, part.to_vec());
            }
            if cap.bytes > self.limit && !cap.truncated {
                cap.truncated = true;
                let marker = truncation_marker(self.limit);
                if let Some(f) = &mut file {
                    let _ = f.write_all(marker.as_bytes());
                }
                self.offer(self.limit, marker.into_bytes());
            }
        }
        cap
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
