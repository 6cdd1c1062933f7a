//! Retention on the server: the leader proposes retirements (`Command::Retire`), and
//! every server deletes the output files of the tasks its state machine retired.
//!
//! What is retired is decided by applying the command (`drover-sched`, `retire.rs`),
//! deterministically, so every replica removes the same jobs; only the decision *when*
//! to propose is the leader's. Output files are outside the log (invariant 2), so each
//! server removes its own: the state store hands the retired ranges to a bounded
//! channel after each apply, and a dedicated thread deletes them (file I/O never runs
//! on the async threads). A batch that does not fit the channel, a restart, or a
//! snapshot installed from the leader (its retirements were never applied here) is
//! caught by a sweep of the output directory: at start, every `SWEEP_EVERY`, and
//! after a batch was dropped.

use crate::node::Node;
use crate::raft::SharedState;
use drover_sched::TaskRange;
use drover_state::{Command, CommandResult};
use drover_types::TaskId;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::time::Duration;

/// How often the leader asks itself whether a retirement is due.
const CHECK_EVERY: Duration = Duration::from_secs(1);
/// After a retirement that removed nothing (the oldest complete jobs are pinned by
/// dependants still to run), wait this long before proposing another.
const PINNED_BACKOFF: Duration = Duration::from_secs(10);
/// Batches of retired ranges waiting for the deleting thread.
const CHANNEL_BATCHES: usize = 256;
/// A full sweep of the output directory this often, whatever happened.
const SWEEP_EVERY: Duration = Duration::from_secs(600);

/// How long finished work is kept, and how much of it at most.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Retention {
    /// A complete job is retired this long after its last task ended.
    pub keep_for: Duration,
    /// At most this many finished tasks are held; beyond it the oldest complete jobs
    /// go first.
    pub keep_max: u64,
}

impl Default for Retention {
    /// A week, and a million finished tasks: enough to look back at last week's runs,
    /// small enough that the state stays a few hundred megabytes at most.
    fn default() -> Retention {
        Retention {
            keep_for: Duration::from_secs(7 * 86_400),
            keep_max: 1_000_000,
        }
    }
}

impl Retention {
    /// "finished tasks are kept for 7d, at most 1000000 of them": for messages.
    pub fn describe(&self) -> String {
        format!(
            "finished tasks are kept for {}, at most {} of them",
            short_duration(self.keep_for),
            self.keep_max
        )
    }
}

/// `7d`, `36h`, `90m`, `2s`, `1500ms`: the largest unit that divides it, as people
/// write retention periods.
fn short_duration(d: Duration) -> String {
    let ms = d.as_millis();
    for (unit, name) in [
        (86_400_000, "d"),
        (3_600_000, "h"),
        (60_000, "m"),
        (1_000, "s"),
    ] {
        if ms >= unit && ms.is_multiple_of(unit) {
            return format!("{}{name}", ms / unit);
        }
    }
    format!("{ms}ms")
}

/// The sending half the state store holds: retired ranges to delete.
#[derive(Clone, Debug)]
pub struct RetiredSink {
    tx: SyncSender<Vec<TaskRange>>,
    /// Set when a batch did not fit: the deleting thread then sweeps.
    missed: Arc<AtomicBool>,
}

impl RetiredSink {
    /// Never blocks apply: a batch that does not fit is left to the next sweep.
    pub fn send(&self, ranges: Vec<TaskRange>) {
        match self.tx.try_send(ranges) {
            Ok(()) | Err(TrySendError::Disconnected(_)) => {}
            Err(TrySendError::Full(_)) => self.missed.store(true, Ordering::Relaxed),
        }
    }
}

/// The receiving half, before its thread starts (it needs the state to sweep).
pub struct OutputReaper {
    rx: Receiver<Vec<TaskRange>>,
    missed: Arc<AtomicBool>,
    root: PathBuf,
}

impl OutputReaper {
    /// A sink for the state store and the reaper that empties it, deleting under `root`
    /// (the output store's directory).
    pub fn new(root: PathBuf) -> (RetiredSink, OutputReaper) {
        let (tx, rx) = std::sync::mpsc::sync_channel(CHANNEL_BATCHES);
        let missed = Arc::new(AtomicBool::new(false));
        (
            RetiredSink {
                tx,
                missed: missed.clone(),
            },
            OutputReaper { rx, missed, root },
        )
    }

    /// Runs on a thread of its own until the sink is dropped.
    pub fn spawn(self, state: Arc<SharedState>) -> std::io::Result<std::thread::JoinHandle<()>> {
        std::thread::Builder::new()
            .name("output-reaper".into())
            .spawn(move || self.run(&state))
    }

    fn run(self, state: &SharedState) {
        self.sweep(state);
        loop {
            match self.rx.recv_timeout(SWEEP_EVERY) {
                Ok(ranges) => {
                    for r in ranges {
                        for n in r.first.0..r.first.0 + r.count as u64 {
                            self.remove(TaskId(n));
                        }
                    }
                }
                Err(RecvTimeoutError::Timeout) => self.sweep(state),
                Err(RecvTimeoutError::Disconnected) => return,
            }
            if self.missed.swap(false, Ordering::Relaxed) {
                self.sweep(state);
            }
        }
    }

    /// Where the server keeps checkpoints, beside the output (`checkpoint/`): a
    /// retired task's go with its output.
    fn checkpoints_root(&self) -> Option<PathBuf> {
        self.root.parent().map(|p| p.join("checkpoints"))
    }

    fn remove(&self, task: TaskId) {
        let dir = self.root.join(task.0.to_string());
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => tracing::warn!(%task, error = %e, "could not delete a retired task's output"),
        }
        if let Some(root) = self.checkpoints_root() {
            let store = crate::checkpoint::CheckpointStore::new(root);
            if let Err(e) = store.remove_task(task) {
                tracing::warn!(%task, error = %e, "could not delete a retired task's checkpoints");
            }
        }
    }

    /// Deletes the output (and checkpoints) of every task the state says was retired.
    fn sweep(&self, state: &SharedState) {
        let mut ids: Vec<TaskId> = [Some(self.root.clone()), self.checkpoints_root()]
            .into_iter()
            .flatten()
            .filter_map(|root| std::fs::read_dir(root).ok())
            .flatten()
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok().map(TaskId))
            .collect();
        ids.sort_unstable();
        ids.dedup();
        let retired: Vec<TaskId> = {
            let m = state.read();
            ids.into_iter()
                .filter(|&t| m.scheduler().task_retired(t))
                .collect()
        };
        for t in retired {
            self.remove(t);
        }
    }
}

/// On the leader: proposes a retirement whenever one is due.
pub async fn retention_loop(node: Arc<Node>) {
    let keep = node.config.retention;
    let keep_ms = u64::try_from(keep.keep_for.as_millis()).unwrap_or(u64::MAX);
    let mut interval = tokio::time::interval(CHECK_EVERY);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        if !node.is_leader() {
            continue;
        }
        let now = node.proposer.now();
        let due = node
            .state
            .read()
            .scheduler()
            .retirement_due(now, keep_ms, keep.keep_max);
        if !due {
            continue;
        }
        let command = Command::Retire {
            keep_ms,
            keep_max: keep.keep_max,
        };
        match node.proposer.propose(command).await {
            Ok(CommandResult::Retired { jobs, tasks }) if jobs > 0 => {
                tracing::debug!(jobs, tasks, "retired finished jobs");
            }
            Ok(_) => tokio::time::sleep(PINNED_BACKOFF).await,
            Err(e) => tracing::debug!(error = %e, "retirement not proposed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn periods_are_said_as_people_write_them() {
        let s = |ms| short_duration(Duration::from_millis(ms));
        assert_eq!(s(7 * 86_400_000), "7d");
        assert_eq!(s(36 * 3_600_000), "36h");
        assert_eq!(s(90 * 60_000), "90m");
        assert_eq!(s(2_000), "2s");
        assert_eq!(s(1_500), "1500ms");
        assert_eq!(
            Retention::default().describe(),
            "finished tasks are kept for 7d, at most 1000000 of them"
        );
    }
}
