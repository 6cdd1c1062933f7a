//! Task output on the server's disk: one append-only file per attempt and stream,
//! `<data_dir>/output/<task>/<attempt>.<stream>`. Bulk bytes stay out of the
//! replicated log; the log only records sizes and the (bounded) result.

use drover_proto::worker::{OutputFrame, OutputStream};
use drover_types::{Attempt, TaskId};
use std::collections::HashMap;
use std::fs::OpenOptions;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::PathBuf;
use std::sync::Mutex;

#[derive(Debug)]
pub struct OutputStore {
    root: PathBuf,
    /// Per stream, the worker's offset that the next chunk should start at. Once a gap
    /// marker is written the file's length no longer equals the worker's offsets, so
    /// duplicates are recognised by this instead (falling back to the file's length for
    /// streams not seen since this server started).
    expected: Mutex<HashMap<(TaskId, Attempt, OutputStream), u64>>,
    /// Streams of ended attempts found complete against every peer
    /// (`crate::output_repair`): not asked about again.
    complete: Mutex<std::collections::HashSet<(TaskId, Attempt, OutputStream)>>,
    /// Bumped after every append that wrote something: followers wait on it instead
    /// of polling the files.
    appended: tokio::sync::watch::Sender<u64>,
}

/// Streams whose expected offsets are remembered; past this the memory is cleared.
const MAX_TRACKED: usize = 100_000;

impl OutputStore {
    pub fn new(root: PathBuf) -> OutputStore {
        OutputStore {
            root,
            expected: Mutex::new(HashMap::new()),
            complete: Mutex::new(std::collections::HashSet::new()),
            appended: tokio::sync::watch::channel(0).0,
        }
    }

    /// A receiver that changes whenever output is appended (to any stream).
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.appended.subscribe()
    }

    pub fn path(&self, task: TaskId, attempt: Attempt, stream: OutputStream) -> PathBuf {
        self.root
            .join(task.0.to_string())
            .join(format!("{}.{}", attempt.0, stream.as_str()))
    }

    /// Appends a chunk at its offset. A chunk the file already holds (a worker resending
    /// after a reconnect) is skipped; the part past the end is appended.
    pub fn append(&self, frame: &OutputFrame) -> std::io::Result<()> {
        self.append_at(frame, true).map(|_| ())
    }

    /// Like [`OutputStore::append`] but for a copy from another server: a chunk past a
    /// hole in this copy is not taken (no gap marker: the bytes exist elsewhere), and
    /// `Ok(false)` says so; the hole is filled from a peer when the output is read
    /// (`crate::output_repair`).
    pub fn append_copy(&self, frame: &OutputFrame) -> std::io::Result<bool> {
        self.append_at(frame, false)
    }

    fn append_at(&self, frame: &OutputFrame, mark_gaps: bool) -> std::io::Result<bool> {
        let path = self.path(frame.task, frame.attempt, frame.stream);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let key = (frame.task, frame.attempt, frame.stream);
        let mut expected = self.expected.lock().unwrap_or_else(|p| p.into_inner());
        let mut f = OpenOptions::new().create(true).append(true).open(&path)?;
        let next = match expected.get(&key) {
            Some(n) => *n,
            None => f.metadata()?.len(),
        };
        let end = frame.offset + frame.data.len() as u64;
        if end <= next {
            return Ok(true);
        }
        if frame.offset > next && !mark_gaps {
            return Ok(false);
        }
        if frame.offset > next {
            // Bytes between what we hold and this chunk never arrived (dropped by a
            // full buffer on the worker): say so where they are missing.
            let marker = format!(
                "\n[drover: {} bytes of output missing here]\n",
                frame.offset - next
            );
            f.write_all(marker.as_bytes())?;
            f.write_all(&frame.data)?;
        } else {
            f.write_all(&frame.data[(next - frame.offset) as usize..])?;
        }
        if expected.len() >= MAX_TRACKED {
            expected.clear();
        }
        expected.insert(key, end);
        drop(expected);
        self.appended.send_modify(|n| *n = n.wrapping_add(1));
        Ok(true)
    }

    /// Whether this stream of an ended attempt was found complete against every peer.
    pub fn is_complete(&self, task: TaskId, attempt: Attempt, stream: OutputStream) -> bool {
        self.complete
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(&(task, attempt, stream))
    }

    pub fn mark_complete(&self, task: TaskId, attempt: Attempt, stream: OutputStream) {
        let mut complete = self.complete.lock().unwrap_or_else(|p| p.into_inner());
        if complete.len() >= MAX_TRACKED {
            complete.clear();
        }
        complete.insert((task, attempt, stream));
    }

    /// How far into the worker's output this server holds a stream: the offset the
    /// next chunk would start at (the file's length unless a gap was marked since this
    /// server started).
    pub fn covered(
        &self,
        task: TaskId,
        attempt: Attempt,
        stream: OutputStream,
    ) -> std::io::Result<u64> {
        let key = (task, attempt, stream);
        if let Some(n) = self
            .expected
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key)
        {
            return Ok(*n);
        }
        match std::fs::metadata(self.path(task, attempt, stream)) {
            Ok(m) => Ok(m.len()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(0),
            Err(e) => Err(e),
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(offset: u64, data: &[u8]) -> OutputFrame {
        OutputFrame {
            task: TaskId(1),
            attempt: Attempt(1),
            stream: OutputStream::Stdout,
            offset,
            data: data.to_vec(),
        }
    }

    #[test]
    fn duplicates_are_skipped_and_gaps_are_marked() {
        let dir = std::env::temp_dir().join(format!("drover-output-{}", std::process::id()));
        let store = OutputStore::new(dir.clone());
        store.append(&frame(0, b"hello ")).unwrap();
        store.append(&frame(0, b"hello ")).unwrap(); // resent after a reconnect
        store.append(&frame(3, b"lo world")).unwrap(); // overlaps
        store.append(&frame(20, b"late")).unwrap(); // bytes 11..20 never came
        store.append(&frame(24, b"!")).unwrap(); // right after the gap's chunk
        let (bytes, _) = store
            .read(TaskId(1), Attempt(1), OutputStream::Stdout, 0, 1 << 20)
            .unwrap();
        assert_eq!(
            String::from_utf8(bytes).unwrap(),
            "hello world\n[drover: 9 bytes of output missing here]\nlate!"
        );
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_copy_past_a_hole_is_not_taken() {
        let dir = std::env::temp_dir().join(format!("drover-output-copy-{}", std::process::id()));
        let store = OutputStore::new(dir.clone());
        assert!(store.append_copy(&frame(0, b"abc")).unwrap());
        assert!(!store.append_copy(&frame(5, b"fgh")).unwrap());
        assert!(store.append_copy(&frame(3, b"de")).unwrap());
        let (bytes, _) = store
            .read(TaskId(1), Attempt(1), OutputStream::Stdout, 0, 1 << 20)
            .unwrap();
        assert_eq!(bytes, b"abcde");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
