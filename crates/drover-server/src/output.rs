//! Task output on the server's disk: one append-only file per attempt and stream,
//! `<data_dir>/output/<task>/<attempt>.<stream>`. Bulk bytes stay out of the
//! replicated log; the log only records sizes and the (bounded) result.

use drover_proto::worker::{OutputFrame, OutputStream};
use drover_types::{Attempt, TaskId};
use std::fs::OpenOptions;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::PathBuf;

#[derive(Clone, Debug)]
pub struct OutputStore {
    root: PathBuf,
}

impl OutputStore {
    pub fn new(root: PathBuf) -> OutputStore {
        OutputStore { root }
    }

    pub fn path(&self, task: TaskId, attempt: Attempt, stream: OutputStream) -> PathBuf {
        self.root
            .join(task.0.to_string())
            .join(format!("{}.{}", attempt.0, stream.as_str()))
    }

    /// Appends a chunk at its offset. A chunk the file already holds (a worker resending
    /// after a reconnect) is skipped; the part past the end is appended.
    pub fn append(&self, frame: &OutputFrame) -> std::io::Result<()> {
        let path = self.path(frame.task, frame.attempt, frame.stream);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let mut f = OpenOptions::new().create(true).append(true).open(&path)?;
        let len = f.metadata()?.len();
        let end = frame.offset + frame.data.len() as u64;
        if end <= len {
            return Ok(());
        }
        let skip = len.saturating_sub(frame.offset) as usize;
        f.write_all(&frame.data[skip..])
    }

    /// Reads up to `max` bytes from `offset`; also returns the file's current length.
    pub fn read(
        &self,
        task: TaskId,
        attempt: Attempt,
        stream: OutputStream,
        offset: u64,
        max: usize,
    ) -> std::io::Result<(Vec<u8>, u64)> {
        let path = self.path(task, attempt, stream);
        let mut f = match std::fs::File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((Vec::new(), 0)),
            Err(e) => return Err(e),
        };
        let len = f.metadata()?.len();
        if offset >= len {
            return Ok((Vec::new(), len));
        }
        f.seek(SeekFrom::Start(offset))?;
        let mut buf = Vec::with_capacity(((len - offset) as usize).min(max));
        f.take(max as u64).read_to_end(&mut buf)?;
        Ok((buf, len))
    }
}
