//! Task checkpoints on the server: the stored versions ([`store`]) and the assembly of
//! a worker's upload from its chunks ([`upload`]).
//!
//! A checkpoint is an archive of an attempt's checkpoint directory, opaque here. A
//! worker sends it in chunks on its connection; the session assembles it (bounded by
//! `--max-checkpoint`), checks its digest, stores it (temporary file, fsync, rename:
//! a version is visible only whole) and then logs `CheckpointSaved`, so every server
//! and `drover status` know the latest version, and the next start of the task names
//! it. The leader sends the stored bytes before such a start.
//!
//! In a group, every version is copied to the other servers and logged only once a
//! majority holds it ([`peer_copies`]), so it survives the loss of the server that took
//! it; a server that does not hold a version on its disk (a new leader after a
//! failover) fetches it from a peer. With an object store configured
//! (`--object-store`), every version is also put there
//! (`checkpoints/<task>/<attempt>.<version>`) before it is logged, and read from there
//! before the peers are asked.

pub mod peer_copies;
pub mod store;
pub mod upload;

pub use store::{CheckpointError, CheckpointStore};
pub use upload::Uploads;

use crate::blob::{BlobKey, BlobStore};
use crate::node::Node;
use drover_proto::checkpoint::{CheckpointChunk, CheckpointRef, digest_hex};
use drover_proto::worker::{ServerMessage, StartTask};
use drover_types::TaskId;

/// The messages that carry the checkpoint `start` resumes from, to send just before
/// it: none when it resumes from nothing, or when this server cannot read that
/// checkpoint (the worker then starts the attempt without it, and says so).
/// Where it is read from: this server's disk, else the object store (if configured),
/// else a peer (in a group).
pub async fn restore_messages(node: &Node, start: &StartTask) -> Vec<ServerMessage> {
    let Some(resume) = start.resume.clone() else {
        return Vec::new();
    };
    let (local, task) = (node.checkpoints.clone(), start.task);
    let wanted = resume.clone();
    let mut loaded = tokio::task::spawn_blocking(move || local.load(task, &wanted)).await;
    if let (Ok(Err(CheckpointError::Missing { .. })), Some(_)) = (&loaded, &node.archive) {
        loaded = Ok(load_archived(&node.blobs, task, &resume).await);
    }
    if matches!(loaded, Ok(Err(CheckpointError::Missing { .. }))) && node.is_clustered() {
        loaded = Ok(peer_copies::fetch_from_peers(node, task, &resume).await);
    }
    let loaded = loaded.map(|r| {
        r.map(|bytes| CheckpointChunk::split(task, resume.attempt, resume.version, &bytes))
    });
    match loaded {
        Ok(Ok(chunks)) => chunks.into_iter().map(ServerMessage::Checkpoint).collect(),
        Ok(Err(e)) => {
            tracing::warn!(%task, "cannot send the checkpoint a start resumes from: {e}");
            Vec::new()
        }
        Err(e) => {
            tracing::error!(%task, "reading a checkpoint failed: {e}");
            Vec::new()
        }
    }
}

/// Where a checkpoint version is kept in the object store.
pub fn archive_key(task: TaskId, c: &CheckpointRef) -> Option<BlobKey> {
    BlobKey::new(format!(
        "checkpoints/{}/{}.{}",
        task.0, c.attempt.0, c.version
    ))
    .ok()
}

/// Puts a stored version into the object store too (before it is logged).
pub async fn archive(store: &BlobStore, task: TaskId, c: &CheckpointRef, bytes: bytes::Bytes) {
    let Some(key) = archive_key(task, c) else {
        return;
    };
    if let Err(e) = store.put(&key, bytes).await {
        tracing::warn!(%task, which = %c, "could not put a checkpoint into the object store: {e}");
    }
}

/// A version read back from the object store, checked against its digest.
async fn load_archived(
    store: &BlobStore,
    task: TaskId,
    c: &CheckpointRef,
) -> Result<Vec<u8>, CheckpointError> {
    let missing = || CheckpointError::Missing {
        task,
        which: c.to_string(),
    };
    let key = archive_key(task, c).ok_or_else(missing)?;
    let max = usize::try_from(c.size).unwrap_or(usize::MAX);
    match store.read(&key, 0, max).await {
        Ok(Some((bytes, _))) if digest_hex(&bytes) == c.digest => {
            tracing::info!(%task, which = %c, "checkpoint read from the object store");
            Ok(bytes)
        }
        Ok(Some(_)) => Err(CheckpointError::DigestMismatch {
            task,
            which: c.to_string(),
        }),
        Ok(None) => Err(missing()),
        Err(e) => {
            tracing::warn!(%task, which = %c, "reading a checkpoint from the object store: {e}");
            Err(missing())
        }
    }
}
