//! The checkpoints of one running attempt: its checkpoint directory is archived on the
//! task's interval and once more when the attempt ends (after the SIGTERM of a stop,
//! when the task had its grace to write), and each archive that differs from the last
//! one sent goes to the server in chunks, ahead of the attempt's end.

use crate::checkpoint_archive::{self, ArchiveError};
use crate::runner::RunnerEvent;
use drover_proto::checkpoint::{CheckpointChunk, digest_hex};
use drover_types::{Attempt, TaskId};
use std::path::PathBuf;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// Where an attempt's checkpoints come from and go.
#[derive(Clone, Debug)]
pub struct CheckpointSetup {
    /// The attempt's checkpoint directory (`DROVER_CHECKPOINT_DIR`).
    pub dir: PathBuf,
    pub interval: Duration,
    /// Most bytes of files archived; a larger directory is not sent (and said so).
    pub max_bytes: u64,
    /// `attempt N version V` when the directory was restored from a checkpoint
    /// (`DROVER_RESUMED_FROM`).
    pub resumed_from: Option<String>,
    /// The digest of the directory as it starts (empty, or as restored): the same
    /// directory is not sent again.
    pub initial_digest: Option<String>,
}

/// Stops the checkpointing of an attempt after one last save.
pub struct Checkpointer {
    stop: oneshot::Sender<oneshot::Sender<()>>,
}

impl Checkpointer {
    pub fn start(
        task: TaskId,
        attempt: Attempt,
        setup: CheckpointSetup,
        events: mpsc::UnboundedSender<RunnerEvent>,
    ) -> Checkpointer {
        let (stop, mut stopped) = oneshot::channel::<oneshot::Sender<()>>();
        tokio::spawn(async move {
            let mut saver = Saver {
                task,
                attempt,
                setup,
                events,
                version: 0,
                last_digest: None,
            };
            saver.last_digest = saver.setup.initial_digest.clone();
            let mut tick = tokio::time::interval(saver.setup.interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await; // the first tick is immediate: nothing written yet
            loop {
                tokio::select! {
                    _ = tick.tick() => saver.save().await,
                    done = &mut stopped => {
                        // Dropped (the attempt succeeded): its checkpoint is of no more
                        // use. Asked to finish: one last save first.
                        if let Ok(done) = done {
                            saver.save().await;
                            let _ = done.send(());
                        }
                        return;
                    }
                }
            }
        });
        Checkpointer { stop }
    }

    /// Takes the last checkpoint and returns once its chunks are queued (before the
    /// attempt's end, which must follow them).
    pub async fn finish(self) {
        let (done, wait) = oneshot::channel();
        if self.stop.send(done).is_ok() {
            let _ = wait.await;
        }
    }
}

struct Saver {
    task: TaskId,
    attempt: Attempt,
    setup: CheckpointSetup,
    events: mpsc::UnboundedSender<RunnerEvent>,
    version: u32,
    last_digest: Option<String>,
}

impl Saver {
    async fn save(&mut self) {
        let (dir, max) = (self.setup.dir.clone(), self.setup.max_bytes);
        let packed = tokio::task::spawn_blocking(move || checkpoint_archive::pack(&dir, max)).await;
        let archive = match packed {
            Ok(Ok(a)) => a,
            Ok(Err(e @ ArchiveError::TooLarge { .. })) => {
                tracing::warn!(task = %self.task, attempt = %self.attempt, "checkpoint not sent: {e} (--max-checkpoint)");
                return;
            }
            Ok(Err(e)) => {
                tracing::warn!(task = %self.task, attempt = %self.attempt, "checkpoint not taken: {e}");
                return;
            }
            Err(e) => {
                tracing::error!(task = %self.task, "archiving a checkpoint failed: {e}");
                return;
            }
        };
        let digest = digest_hex(&archive);
        if self.last_digest.as_deref() == Some(digest.as_str()) {
            return;
        }
        self.version += 1;
        tracing::debug!(task = %self.task, attempt = %self.attempt, version = self.version, bytes = archive.len(), "sending a checkpoint");
        for chunk in CheckpointChunk::split(self.task, self.attempt, self.version, &archive) {
            if self.events.send(RunnerEvent::Checkpoint(chunk)).is_err() {
                return;
            }
        }
        self.last_digest = Some(digest);
    }
}
