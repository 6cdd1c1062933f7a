//! Task output of ended attempts, archived in the blob store (`--object-store`).
//!
//! The key of a stream is a pure function of what it is, `output/<task>/<attempt>.<stream>`
//! under the store's prefix, so no log command records an upload: every server knows
//! where an ended attempt's output would be, and the object's size says how much of it
//! is there. The leader uploads; any server reads.
//!
//! - **When.** Every server follows its event stream (derived from the committed log,
//!   the same on every replica) and notes each attempt that left its worker (a task
//!   event from `assigned`/`running` to anything else). The leader uploads each such
//!   attempt's streams once its own copy is whole (made so from the peers first, see
//!   `crate::output_repair`); by then the output is final, since the end of an attempt
//!   is proposed only after its output was acknowledged.
//! - **Idempotent.** Before a put the leader asks the store for the object's size and
//!   skips a stream already there whole, so a new leader can redo the attempts that
//!   ended recently (it keeps the last [`RECENT`] of them) without uploading twice, and
//!   a restarted server redoes the ones of the log tail it re-applied.
//! - **Reads** of an ended attempt (`GET /v1/tasks/{id}/output`, `drover logs`) use
//!   the object when it holds more than this server's own copy (none: a server that
//!   joined later, or local files removed), else the local copy. Running attempts
//!   keep today's path (local copy only).
//! - **Results** stay in the log as before (bounded): a task's result is the start of
//!   its stdout, so the full result is the `stdout` object.

use crate::blob::{BlobError, BlobKey, BlobStore};
use crate::node::Node;
use drover_proto::events::{EventBody, EventId};
use drover_proto::worker::OutputStream;
use drover_types::{Attempt, TaskId};
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

/// Ended attempts remembered for a new leader to check.
const RECENT: usize = 4096;
/// Events read at a time.
const BATCH: usize = 1024;
/// Leadership is looked at this often even when no event comes.
const WAKE_EVERY: Duration = Duration::from_secs(1);
/// A failed upload is tried again this many times (once per [`WAKE_EVERY`] at least).
const TRIES: u32 = 10;
/// Failed uploads waiting for another try; past this the oldest are given up.
const MAX_PENDING: usize = 10_000;

/// The blob store that holds ended attempts' output.
#[derive(Debug)]
pub struct OutputArchive {
    blobs: BlobStore,
}

/// An attempt whose streams are due for upload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Due {
    task: TaskId,
    attempt: Attempt,
    tries: u32,
    /// Whether to make this server's copy whole from the peers first: for attempts that
    /// ended under another leader (this one received every frame of the others).
    repair: bool,
}

impl OutputArchive {
    pub fn new(blobs: BlobStore) -> OutputArchive {
        OutputArchive { blobs }
    }

    pub fn blobs(&self) -> &BlobStore {
        &self.blobs
    }

    /// `output/<task>/<attempt>.<stream>`: the same name as the local file under
    /// `<data>/output`.
    pub fn key(task: TaskId, attempt: Attempt, stream: OutputStream) -> BlobKey {
        BlobKey::new(format!(
            "output/{}/{}.{}",
            task.0,
            attempt.0,
            stream.as_str()
        ))
        .expect("numbers and a stream name make a valid key")
    }

    /// Reads an ended attempt's stream from the archive, unless this server's own copy
    /// holds as much (`local_len`). `None`: use the local copy.
    pub async fn read_if_longer(
        &self,
        task: TaskId,
        attempt: Attempt,
        stream: OutputStream,
        local_len: u64,
        offset: u64,
        max: usize,
    ) -> Result<Option<(Vec<u8>, u64)>, BlobError> {
        let key = Self::key(task, attempt, stream);
        match self.blobs.size(&key).await? {
            Some(size) if size > local_len => self.blobs.read(&key, offset, max).await,
            _ => Ok(None),
        }
    }
}

/// Follows the event stream on every server; the leader uploads the output of each
/// attempt that ended (see the module's documentation).
pub async fn archive_loop(node: Arc<Node>, archive: Arc<OutputArchive>) {
    let hub = node.state.events();
    let mut changed = hub.subscribe();
    // From the oldest event this server still has: after a restart, the attempts that
    // ended in the re-applied log tail are checked again (cheap when already uploaded).
    let mut position = EventId::default();
    let mut recent: VecDeque<(TaskId, Attempt)> = VecDeque::new();
    let mut pending: VecDeque<Due> = VecDeque::new();
    let mut was_leader = false;
    let mut batch = Vec::with_capacity(BATCH);
    loop {
        changed.borrow_and_update();
        batch.clear();
        if let Err(behind) = hub.read_after(position, BATCH, &mut batch) {
            if position != EventId::default() {
                tracing::warn!(
                    after = %position,
                    dropped_through = %behind.dropped_through,
                    "the output archive fell behind the event stream; attempts that ended meanwhile are uploaded only if they are among the recent ones a new leader checks"
                );
            }
            position = behind.dropped_through;
            continue;
        }
        let full = batch.len() == BATCH;
        let mut ended = Vec::new();
        for event in &batch {
            position = event.id;
            if let EventBody::Task {
                task,
                from,
                state,
                attempt,
                ..
            } = &event.body
                && from.is_on_worker()
                && !state.is_on_worker()
                && attempt.0 > 0
            {
                ended.push((*task, *attempt));
            }
        }
        let leader = node.is_leader();
        if leader && !was_leader {
            // Taking over: the previous leader may have stopped before uploading.
            for &(task, attempt) in &recent {
                pending.push_back(Due {
                    task,
                    attempt,
                    tries: 0,
                    repair: true,
                });
            }
        }
        was_leader = leader;
        for (task, attempt) in ended {
            if recent.len() >= RECENT {
                recent.pop_front();
            }
            recent.push_back((task, attempt));
            if leader {
                pending.push_back(Due {
                    task,
                    attempt,
                    tries: 0,
                    repair: false,
                });
            }
        }
        if !leader {
            pending.clear();
        }
        while pending.len() > MAX_PENDING {
            if let Some(d) = pending.pop_front() {
                tracing::warn!(task = %d.task, attempt = %d.attempt, "too many uploads waiting; this attempt's output stays on the servers' disks only");
            }
        }
        let mut failed = VecDeque::new();
        while let Some(due) = pending.pop_front() {
            if !node.is_leader() {
                pending.clear();
                break;
            }
            if let Err(e) = upload_attempt(&node, &archive, due).await {
                if due.tries + 1 < TRIES {
                    tracing::info!(task = %due.task, attempt = %due.attempt, "could not archive the output (will try again): {e}");
                    failed.push_back(Due {
                        tries: due.tries + 1,
                        ..due
                    });
                } else {
                    tracing::warn!(task = %due.task, attempt = %due.attempt, "gave up archiving the output after {TRIES} tries; it stays on the servers' disks: {e}");
                }
            }
        }
        pending = failed;
        if full {
            continue;
        }
        tokio::select! {
            r = changed.changed() => {
                if r.is_err() {
                    return;
                }
            }
            _ = tokio::time::sleep(WAKE_EVERY) => {}
        }
    }
}

/// Uploads both streams of an ended attempt, each unless the store holds it whole.
async fn upload_attempt(node: &Node, archive: &OutputArchive, due: Due) -> Result<(), BlobError> {
    let Due { task, attempt, .. } = due;
    for stream in [OutputStream::Stdout, OutputStream::Stderr] {
        // A leader that took over may lack frames the old one had: fetch them first.
        if due.repair
            && let Err(e) =
                crate::output_repair::complete_from_peers(node, task, attempt, stream).await
        {
            tracing::info!(%task, %attempt, "could not complete the output from the peers before archiving: {e}");
        }
        let output = node.output.clone();
        let bytes =
            tokio::task::spawn_blocking(move || output.read(task, attempt, stream, 0, usize::MAX))
                .await?;
        let (bytes, _) = match bytes {
            Ok(b) => b,
            Err(source) => {
                return Err(BlobError::Directory {
                    path: node.output.path(task, attempt, stream),
                    source,
                });
            }
        };
        if bytes.is_empty() {
            // Nothing written (or nothing here): no object; a reader finds none and
            // serves what it has.
            continue;
        }
        let key = OutputArchive::key(task, attempt, stream);
        if archive.blobs.size(&key).await? == Some(bytes.len() as u64) {
            continue;
        }
        let len = bytes.len();
        archive.blobs.put(&key, bytes.into()).await?;
        tracing::debug!(%task, %attempt, stream = stream.as_str(), bytes = len, "output archived");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::blob::DirectoryBlobs;
    use bytes::Bytes;

    #[tokio::test]
    async fn the_archive_is_read_only_when_it_holds_more_than_the_local_copy() {
        let dir = std::env::temp_dir().join(format!(
            "drover-archive-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        ));
        let archive = OutputArchive::new(BlobStore::Directory(DirectoryBlobs::new(dir.clone())));
        archive.blobs().check(Duration::from_secs(5)).await.unwrap();
        let (task, attempt, out) = (TaskId(7), Attempt(2), OutputStream::Stdout);
        let key = OutputArchive::key(task, attempt, out);
        assert_eq!(key.as_str(), "output/7/2.stdout");
        archive
            .blobs()
            .put(&key, Bytes::from_static(b"0123456789"))
            .await
            .unwrap();

        // No local copy: the archive's, from the offset, with its full size.
        let got = archive
            .read_if_longer(task, attempt, out, 0, 4, 3)
            .await
            .unwrap();
        assert_eq!(got, Some((b"456".to_vec(), 10)));
        // A short local copy (a follower that missed frames): still the archive's.
        assert!(
            archive
                .read_if_longer(task, attempt, out, 6, 0, 100)
                .await
                .unwrap()
                .is_some()
        );
        // A whole local copy: served locally.
        assert_eq!(
            archive
                .read_if_longer(task, attempt, out, 10, 0, 100)
                .await
                .unwrap(),
            None
        );
        // Nothing archived (stderr never written): the local copy, whatever it is.
        assert_eq!(
            archive
                .read_if_longer(task, attempt, OutputStream::Stderr, 0, 0, 100)
                .await
                .unwrap(),
            None
        );
        let listed = archive
            .blobs()
            .list(&BlobKey::new("output/7").unwrap())
            .await
            .unwrap();
        assert_eq!(listed.len(), 1);
        let _ = std::fs::remove_dir_all(dir);
    }
}
