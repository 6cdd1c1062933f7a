//! Task checkpoints on the server: the stored versions ([`store`]) and the assembly of
//! a worker's upload from its chunks ([`upload`]).
//!
//! A checkpoint is an archive of an attempt's checkpoint directory, opaque here. A
//! worker sends it in chunks on its connection; the session assembles it (bounded by
//! `--max-checkpoint`), checks its digest, stores it (temporary file, fsync, rename:
//! a version is visible only whole) and then logs `CheckpointSaved`, so every server
//! and `drover status` know the latest version, and the next start of the task names
//! it. The leader sends the stored bytes before such a start. Kept behind this module
//! so that another backend (an object store) can take its place.

pub mod store;
pub mod upload;

pub use store::{CheckpointError, CheckpointStore};
pub use upload::Uploads;

use drover_proto::checkpoint::CheckpointChunk;
use drover_proto::worker::{ServerMessage, StartTask};
use std::sync::Arc;

/// The messages that carry the checkpoint `start` resumes from, to send just before
/// it: none when it resumes from nothing, or when this server cannot read that
/// checkpoint (the worker then starts the attempt without it, and says so).
pub async fn restore_messages(
    store: &Arc<CheckpointStore>,
    start: &StartTask,
) -> Vec<ServerMessage> {
    let Some(resume) = start.resume.clone() else {
        return Vec::new();
    };
    let (store, task) = (store.clone(), start.task);
    let loaded = tokio::task::spawn_blocking(move || {
        store
            .load(task, &resume)
            .map(|bytes| CheckpointChunk::split(task, resume.attempt, resume.version, &bytes))
    })
    .await;
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
