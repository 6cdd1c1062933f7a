//! The state machine behind openraft's storage trait, and its snapshots.
//!
//! The state lives in memory (reads from the API take a read lock). Durability comes
//! from the log: at start the state is restored from the latest snapshot file, and
//! openraft re-applies the committed entries after it. Snapshots are files
//! (`snapshot_files.rs`), and openraft's `SnapshotData` is the open file: it is built,
//! sent, received and restored streaming, never held whole in memory.

use super::snapshot_files::{FileMeta, SnapshotFiles};
use super::{StorageError, StorageHealth, TypeConfig};
use crate::events::{DEFAULT_RETAINED, EventHub};
use crate::metrics::ServerMetrics;
use crate::retention::RetiredSink;
use drover_proto::events::{ClusterEvent, EventBody, EventId};
use drover_sched::SchedulerConfig;
use drover_state::{CommandResult, Dispatch, StateMachine};
use openraft::storage::RaftStateMachine;
use openraft::{
    BasicNode, Entry, EntryPayload, LogId, RaftSnapshotBuilder, Snapshot, SnapshotMeta,
    StorageIOError, StoredMembership,
};
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant};
use tokio::sync::mpsc::UnboundedSender;

/// The state shared between openraft (which applies entries) and the API (which reads).
#[derive(Debug)]
pub struct SharedState {
    machine: RwLock<StateMachine>,
    applied: Mutex<Applied>,
    /// Recent events of the applied entries (not durable: see `crate::events`).
    events: EventHub,
    /// Prometheus metrics; those counted as entries are applied are fed here.
    metrics: ServerMetrics,
    /// Set when applying an entry panicked: the state may be half-applied, so it is
    /// neither served nor changed any more (see [`StateStore::apply`]).
    failed: Mutex<Option<String>>,
    snapshot_stats: Mutex<Option<SnapshotStats>>,
}

#[derive(Clone, Debug, Default)]
struct Applied {
    last: Option<LogId<u64>>,
    membership: StoredMembership<u64, BasicNode>,
    /// The highest node id of every membership applied so far (kept in snapshots):
    /// the next server to join gets a higher one, so an id is never handed out twice.
    highest_node_id: u64,
}

impl Applied {
    fn set_membership(&mut self, membership: StoredMembership<u64, BasicNode>) {
        let highest = membership.membership().nodes().map(|(id, _)| *id).max();
        self.highest_node_id = self.highest_node_id.max(highest.unwrap_or(0));
        self.membership = membership;
    }
}

impl SharedState {
    /// A read view of the state machine. Hold it briefly: applying waits for it.
    pub fn read(&self) -> RwLockReadGuard<'_, StateMachine> {
        self.machine.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Both halves for writing, always taken in this order (machine, then applied).
    fn write(&self) -> (RwLockWriteGuard<'_, StateMachine>, MutexGuard<'_, Applied>) {
        (
            self.machine.write().unwrap_or_else(|p| p.into_inner()),
            self.applied.lock().unwrap_or_else(|p| p.into_inner()),
        )
    }

    pub fn events(&self) -> &EventHub {
        &self.events
    }

    pub fn metrics(&self) -> &ServerMetrics {
        &self.metrics
    }

    /// Why the state stopped, if applying an entry failed.
    pub fn failure(&self) -> Option<String> {
        self.failed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn fail(&self, reason: String) {
        self.failed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get_or_insert(reason);
    }

    /// How the latest snapshot this server built went, if it built one.
    pub fn snapshot_stats(&self) -> Option<SnapshotStats> {
        *self
            .snapshot_stats
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    pub fn last_applied(&self) -> Option<LogId<u64>> {
        self.applied.lock().unwrap_or_else(|p| p.into_inner()).last
    }

    /// The highest node id any membership applied here has had, removed members'
    /// included (replicated: every server derives it from the same entries).
    pub fn highest_node_id(&self) -> u64 {
        self.applied
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .highest_node_id
    }
}

/// How the latest snapshot build went (also logged): what it cost apply, and what it
/// cost in all.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SnapshotStats {
    /// The log index the snapshot covers.
    pub index: u64,
    /// How long the state was read-locked to copy it: apply waited this long at most.
    pub copy: Duration,
    /// From the copy to the file being current (encode, write, fsync, rename): off
    /// the lock, on a blocking thread.
    pub write: Duration,
    pub bytes: u64,
}

#[derive(Clone, Debug)]
pub struct StateStore {
    shared: Arc<SharedState>,
    files: Arc<SnapshotFiles>,
    /// The file a snapshot from the leader is being received into.
    receiving: Arc<Mutex<Option<PathBuf>>>,
    dispatch: UnboundedSender<Vec<Dispatch>>,
    /// Where a snapshot that cannot be written (a full disk) is reported while it is
    /// tried again (see `storage_health.rs`).
    storage: Arc<StorageHealth>,
    /// Where retired task ranges go (the output reaper), once set.
    retired: Option<RetiredSink>,
}

fn apply_failed(reason: String) -> StorageError {
    StorageIOError::write_state_machine(&std::io::Error::other(reason)).into()
}

/// A test-only way to make applying an entry panic (`DROVER_TEST_PANIC_ON_JOB=<name>`:
/// a submission of a job with that name panics). Compiled only into debug builds, so a
/// release server ignores the variable.
mod test_hook {
    use drover_state::LogEntry;

    #[cfg(debug_assertions)]
    pub fn maybe_panic(entry: &LogEntry) {
        use drover_state::Command;
        static NAME: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
        let Some(name) = NAME.get_or_init(|| std::env::var("DROVER_TEST_PANIC_ON_JOB").ok()) else {
            return;
        };
        for c in &entry.commands {
            if let Command::Submit { job, .. } = c
                && &job.name == name
            {
                panic!("test hook: DROVER_TEST_PANIC_ON_JOB={name}");
            }
        }
    }

    #[cfg(not(debug_assertions))]
    pub fn maybe_panic(_entry: &LogEntry) {}
}

fn sm_read_err(e: impl std::error::Error + 'static) -> StorageError {
    StorageIOError::read_state_machine(&e).into()
}

fn snap_write_err(e: impl std::error::Error + 'static) -> StorageError {
    StorageIOError::write_snapshot(None, &e).into()
}

fn snap_read_err(e: impl std::error::Error + 'static) -> StorageError {
    StorageIOError::read_snapshot(None, &e).into()
}

impl StateStore {
    /// Opens the state store in `dir`, restoring the latest snapshot if there is one.
    /// Every applied entry's dispatches are sent to `dispatch`. Blocking (it reads and
    /// decodes the snapshot): call it off the async runtime.
    pub fn open(
        dir: &Path,
        config: SchedulerConfig,
        dispatch: UnboundedSender<Vec<Dispatch>>,
    ) -> Result<StateStore, StorageError> {
        let files = SnapshotFiles::new(dir);
        let started = Instant::now();
        let (machine, applied) = match files.load().map_err(snap_read_err)? {
            Some((meta, state)) => {
                let decoded = started.elapsed();
                let applied = Applied {
                    last: meta.raft.last_log_id,
                    membership: meta.raft.last_membership.clone(),
                    highest_node_id: meta.highest_node_id(),
                };
                let machine = StateMachine::restore(state);
                // The decode's transient allocations sit among the state's.
                crate::heap_trim::release_free_memory();
                tracing::info!(
                    index = applied.last.map(|l| l.index).unwrap_or(0),
                    decode_ms = decoded.as_millis() as u64,
                    restore_ms = (started.elapsed() - decoded).as_millis() as u64,
                    "restored the state from its snapshot"
                );
                (machine, applied)
            }
            None => (StateMachine::new(config), Applied::default()),
        };
        // The events of the entries in the snapshot are gone; the entries after it are
        // re-applied and give theirs again, with the same ids.
        // With no snapshot nothing was dropped: a reader from `0-0` misses nothing.
        let floor = applied
            .last
            .map(|l| EventId::end_of(l.index))
            .unwrap_or_default();
        Ok(StateStore {
            shared: Arc::new(SharedState {
                machine: RwLock::new(machine),
                applied: Mutex::new(applied),
                events: EventHub::new(DEFAULT_RETAINED, floor),
                metrics: ServerMetrics::new(),
                failed: Mutex::new(None),
                snapshot_stats: Mutex::new(None),
            }),
            files: Arc::new(files),
            receiving: Arc::new(Mutex::new(None)),
            dispatch,
            storage: Arc::default(),
            retired: None,
        })
    }

    /// Reports snapshot write failures to `storage` (shared with the log store).
    pub fn with_storage_health(mut self, storage: Arc<StorageHealth>) -> StateStore {
        self.storage = storage;
        self
    }

    /// Hands the ranges of tasks retired by each applied entry to `sink`.
    pub fn send_retired_to(mut self, sink: RetiredSink) -> StateStore {
        self.retired = Some(sink);
        self
    }

    /// Runs `write` (blocking file work) on a blocking thread, trying again while it
    /// fails: openraft stops for good on a snapshot error, while the previous snapshot
    /// and the log still hold everything, so a full disk is waited out (and reported
    /// through `storage_health.rs`, refusing new writes meanwhile) instead.
    async fn write_retrying<T: Send + 'static>(
        &self,
        write: impl Fn() -> Result<T, StorageError> + Send + Sync + 'static,
    ) -> Result<T, StorageError> {
        let write = Arc::new(write);
        let mut pause = Duration::from_millis(50);
        loop {
            let attempt = write.clone();
            let e = match blocking(move || attempt()).await {
                Ok(v) => {
                    if let Some(f) = self.storage.succeeded() {
                        tracing::warn!(
                            after_ms = f.since.elapsed().as_millis() as u64,
                            "writes to the data directory succeed again"
                        );
                    }
                    return Ok(v);
                }
                Err(e) => e,
            };
            if self.storage.is_stopping() {
                return Err(e);
            }
            let mut cause: &dyn std::error::Error = &e;
            while let Some(next) = cause.source() {
                cause = next;
            }
            let reason = cause.to_string();
            if self.storage.failed(reason.clone()) {
                tracing::error!(%reason, "writing a snapshot failed; retrying until it succeeds, refusing new writes meanwhile");
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(500));
        }
    }

    pub fn shared(&self) -> Arc<SharedState> {
        self.shared.clone()
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StorageError> + Send + 'static,
) -> Result<T, StorageError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| snap_write_err(std::io::Error::other(e)))?
}

impl RaftSnapshotBuilder<TypeConfig> for StateStore {
    /// Copies the state under the read lock (the only time apply waits), then encodes
    /// and writes the copy on a blocking thread, streaming into a temporary file that
    /// becomes current by a rename.
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError> {
        let started = Instant::now();
        let (state, applied) = {
            let machine = self.shared.read();
            let applied = self
                .shared
                .applied
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone();
            (machine.snapshot(), applied)
        };
        let copy = started.elapsed();
        let snapshot_id = match applied.last {
            Some(l) => format!("{}-{}", l.leader_id, l.index),
            None => "empty".to_string(),
        };
        let meta = SnapshotMeta {
            last_log_id: applied.last,
            last_membership: applied.membership,
            snapshot_id,
        };
        let files = self.files.clone();
        let for_write = FileMeta {
            raft: meta.clone(),
            highest_node_id: applied.highest_node_id,
        };
        let state = Arc::new(state);
        let (file, bytes) = self
            .write_retrying(move || {
                let (tmp, bytes) = files
                    .write_temp(&for_write, &state)
                    .map_err(snap_write_err)?;
                // Opened before it is published: if a newer snapshot was installed
                // meanwhile, this one is dropped from the directory but can still be sent.
                let file = std::fs::File::open(&tmp).map_err(snap_write_err)?;
                files
                    .publish(&tmp, &for_write.raft)
                    .map_err(snap_write_err)?;
                Ok((file, bytes))
            })
            .await?;
        let stats = SnapshotStats {
            index: meta.last_log_id.map(|l| l.index).unwrap_or(0),
            copy,
            write: started.elapsed() - copy,
            bytes,
        };
        tracing::info!(
            index = stats.index,
            copy_ms = copy.as_millis() as u64,
            write_ms = stats.write.as_millis() as u64,
            bytes,
            "built a snapshot"
        );
        // The copy and the encoding's transient allocations were freed among the
        // state's, after the trim that followed the submission: with 1,000,000 tasks
        // queued the server settled at 921-929 MiB without this trim, 865-880 with it
        // (4 runs each).
        if bytes >= crate::heap_trim::AFTER_SNAPSHOT_BYTES {
            crate::heap_trim::release_in_background();
        }
        *self
            .shared
            .snapshot_stats
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some(stats);
        Ok(Snapshot {
            meta,
            snapshot: Box::new(tokio::fs::File::from_std(file)),
        })
    }
}

impl RaftStateMachine<TypeConfig> for StateStore {
    type SnapshotBuilder = StateStore;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogId<u64>>, StoredMembership<u64, BasicNode>), StorageError> {
        let a = self
            .shared
            .applied
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        Ok((a.last, a.membership))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Vec<CommandResult>>, StorageError>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + Send,
        I::IntoIter: Send,
    {
        if let Some(reason) = self.shared.failure() {
            return Err(apply_failed(reason));
        }
        let mut replies = Vec::new();
        let mut dispatches = Vec::new();
        let mut events = Vec::new();
        let mut retired = Vec::new();
        {
            let (mut machine, mut applied) = self.shared.write();
            for entry in entries {
                applied.last = Some(entry.log_id);
                match entry.payload {
                    EntryPayload::Blank => {
                        // Every new leader commits an empty entry first: tell it, at
                        // the time the state has reached (the entry carries none).
                        let leader = entry.log_id.leader_id;
                        events.push(ClusterEvent {
                            id: EventId::new(entry.log_id.index, 0),
                            at: machine.scheduler().now(),
                            body: EventBody::Leader {
                                term: leader.term,
                                leader: leader.node_id,
                            },
                        });
                        replies.push(Vec::new());
                    }
                    EntryPayload::Normal(log_entry) => {
                        // A panic here (a bug in the core) would leave the state
                        // half-applied. Caught inside the lock (so it is not poisoned
                        // and nobody reads on regardless): the state is marked failed,
                        // the API refuses to serve it, and openraft is told to stop.
                        let index = entry.log_id.index;
                        let applied_one = std::panic::catch_unwind(AssertUnwindSafe(|| {
                            test_hook::maybe_panic(&log_entry);
                            // Owned: a submission's specs move into the core.
                            machine.apply_entry(index, log_entry)
                        }));
                        let mut out = match applied_one {
                            Ok(out) => out,
                            Err(panic) => {
                                let what = panic
                                    .downcast_ref::<&str>()
                                    .map(|s| s.to_string())
                                    .or_else(|| panic.downcast_ref::<String>().cloned())
                                    .unwrap_or_else(|| "a panic".into());
                                let reason = format!(
                                    "applying log entry {index} panicked ({what}); the state may be half-applied, so this server stopped serving it: restart it to rebuild the state from its snapshot and log"
                                );
                                tracing::error!("{reason}");
                                self.shared.fail(reason.clone());
                                return Err(apply_failed(reason));
                            }
                        };
                        dispatches.append(&mut out.dispatches);
                        events.append(&mut out.events);
                        retired.append(&mut out.retired);
                        replies.push(out.results);
                    }
                    EntryPayload::Membership(ref m) => {
                        applied
                            .set_membership(StoredMembership::new(Some(entry.log_id), m.clone()));
                        replies.push(Vec::new());
                    }
                }
            }
            self.shared.metrics.observe_applied(&machine, &events);
        }
        // A large submission leaves its parse debris freed among the specs kept (on
        // the leader the API's parse tree, on a follower the log's): give it back.
        let large = replies.iter().flatten().any(|r| {
            matches!(r, CommandResult::Submitted { tasks, .. }
                if u64::from(tasks.count) >= crate::heap_trim::AFTER_TASKS)
        });
        if large {
            crate::heap_trim::release_in_background();
        }
        // After the state is readable: a reader that saw an event finds its change.
        self.shared.events.publish(events);
        if !retired.is_empty()
            && let Some(sink) = &self.retired
        {
            sink.send(retired);
        }
        if !dispatches.is_empty() {
            // The receiver lives as long as the server; if it is gone we are shutting down.
            let _ = self.dispatch.send(dispatches);
        }
        Ok(replies)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<tokio::fs::File>, StorageError> {
        let path = self.files.temp_path();
        let file = tokio::fs::File::create(&path)
            .await
            .map_err(snap_write_err)?;
        // A transfer that was abandoned for a newer one leaves its file behind.
        let previous = self
            .receiving
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .replace(path);
        if let Some(old) = previous {
            let _ = tokio::fs::remove_file(old).await;
        }
        Ok(Box::new(file))
    }

    /// The received file is checked (header, length, checksum) and decoded while it
    /// streams from disk, made current, and only then replaces the state.
    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<u64, BasicNode>,
        snapshot: Box<tokio::fs::File>,
    ) -> Result<(), StorageError> {
        let path = self
            .receiving
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
            .ok_or_else(|| {
                snap_read_err(std::io::Error::other("no snapshot was being received"))
            })?;
        snapshot.sync_all().await.map_err(snap_write_err)?;
        drop(snapshot);
        let files = self.files.clone();
        let for_publish = meta.clone();
        let started = Instant::now();
        let (machine, highest_node_id) = blocking(move || {
            let (file_meta, state) = files.read_received(&path).map_err(sm_read_err)?;
            let machine = StateMachine::restore(state);
            files.publish(&path, &for_publish).map_err(snap_write_err)?;
            Ok((machine, file_meta.highest_node_id()))
        })
        .await?;
        {
            let (mut current, mut applied) = self.shared.write();
            *current = machine;
            applied.last = meta.last_log_id;
            // Never lower: an id this server saw is not handed out again either.
            applied.highest_node_id = applied.highest_node_id.max(highest_node_id);
            applied.set_membership(meta.last_membership.clone());
        }
        let index = meta.last_log_id.map(|l| l.index).unwrap_or(0);
        tracing::info!(
            index,
            restore_ms = started.elapsed().as_millis() as u64,
            "installed a snapshot from the leader"
        );
        self.shared.events.restart_at(EventId::end_of(index));
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StorageError> {
        let files = self.files.clone();
        let current = blocking(move || files.open_current().map_err(snap_read_err)).await?;
        Ok(current.map(|(meta, file)| Snapshot {
            meta,
            snapshot: Box::new(tokio::fs::File::from_std(file)),
        }))
    }
}
