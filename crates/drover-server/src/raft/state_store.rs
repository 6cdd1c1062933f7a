//! The state machine behind openraft's storage trait, and its snapshots.
//!
//! The state lives in memory (reads from the API take a read lock). Durability comes
//! from the log: at start the state is restored from the latest snapshot file, and
//! openraft re-applies the committed entries after it. A snapshot file is written to a
//! temporary name, fsynced, then renamed over the old one, so a crash mid-write leaves
//! the previous snapshot intact.

use super::{StorageError, StorageHealth, TypeConfig};
use crate::events::{DEFAULT_RETAINED, EventHub};
use crate::metrics::ServerMetrics;
use drover_proto::events::{ClusterEvent, EventBody, EventId};
use drover_sched::SchedulerConfig;
use drover_state::{CommandResult, Dispatch, StateMachine, StateSnapshot};
use openraft::storage::RaftStateMachine;
use openraft::{
    BasicNode, Entry, EntryPayload, LogId, RaftSnapshotBuilder, Snapshot, SnapshotMeta,
    StorageIOError, StoredMembership,
};
use serde::{Deserialize, Serialize};
use std::io::{Cursor, Write};
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};
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
}

#[derive(Clone, Debug, Default)]
struct Applied {
    last: Option<LogId<u64>>,
    membership: StoredMembership<u64, BasicNode>,
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

    pub fn last_applied(&self) -> Option<LogId<u64>> {
        self.applied.lock().unwrap_or_else(|p| p.into_inner()).last
    }
}

#[derive(Serialize, Deserialize)]
struct SnapshotFile {
    meta: SnapshotMeta<u64, BasicNode>,
    state: StateSnapshot,
}

#[derive(Clone, Debug)]
pub struct StateStore {
    shared: Arc<SharedState>,
    snapshot_path: PathBuf,
    dispatch: UnboundedSender<Vec<Dispatch>>,
    /// Where a snapshot that cannot be written (a full disk) is reported while it is
    /// tried again (see `storage_health.rs`).
    storage: Arc<StorageHealth>,
}

/// Reads the snapshot file, if there is one: its parsed form and its raw bytes.
fn read_snapshot_file(path: &Path) -> Result<Option<(SnapshotFile, Vec<u8>)>, StorageError> {
    match std::fs::read(path) {
        Ok(bytes) => {
            let file: SnapshotFile = serde_json::from_slice(&bytes).map_err(snap_read_err)?;
            Ok(Some((file, bytes)))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(snap_read_err(e)),
    }
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
    /// Every applied entry's dispatches are sent to `dispatch`.
    pub fn open(
        dir: &Path,
        config: SchedulerConfig,
        dispatch: UnboundedSender<Vec<Dispatch>>,
    ) -> Result<StateStore, StorageError> {
        let snapshot_path = dir.join("snapshot.json");
        let (machine, applied) = match read_snapshot_file(&snapshot_path)? {
            Some((file, _)) => {
                let applied = Applied {
                    last: file.meta.last_log_id,
                    membership: file.meta.last_membership.clone(),
                };
                (StateMachine::restore(file.state), applied)
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
            }),
            snapshot_path,
            dispatch,
            storage: Arc::default(),
        })
    }

    /// Reports snapshot write failures to `storage` (shared with the log store).
    pub fn with_storage_health(mut self, storage: Arc<StorageHealth>) -> StateStore {
        self.storage = storage;
        self
    }

    /// Writes the snapshot file on a blocking thread, trying again while that fails:
    /// openraft stops for good on a snapshot error, while the previous snapshot and the
    /// log still hold everything, so a full disk is waited out (and reported) instead.
    async fn write_snapshot_retrying(&self, bytes: Arc<Vec<u8>>) -> Result<(), StorageError> {
        let mut pause = std::time::Duration::from_millis(50);
        loop {
            let (store, b) = (self.clone(), bytes.clone());
            let e = match tokio::task::spawn_blocking(move || store.write_snapshot_file(&b)).await {
                Ok(Ok(())) => {
                    if let Some(f) = self.storage.succeeded() {
                        tracing::warn!(
                            after_ms = f.since.elapsed().as_millis() as u64,
                            "writes to the data directory succeed again"
                        );
                    }
                    return Ok(());
                }
                Ok(Err(e)) => e,
                Err(join) => return Err(snap_write_err(join)),
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
            pause = (pause * 2).min(std::time::Duration::from_millis(500));
        }
    }

    pub fn shared(&self) -> Arc<SharedState> {
        self.shared.clone()
    }

    fn write_snapshot_file(&self, bytes: &[u8]) -> Result<(), StorageError> {
        let tmp = self.snapshot_path.with_extension("json.tmp");
        let written = (|| {
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(bytes)?;
            f.sync_all()
        })();
        if let Err(e) = written {
            // A partial file would keep a full disk full.
            let _ = std::fs::remove_file(&tmp);
            return Err(snap_write_err(e));
        }
        std::fs::rename(&tmp, &self.snapshot_path).map_err(snap_write_err)?;
        if let Some(dir) = self.snapshot_path.parent()
            && let Ok(d) = std::fs::File::open(dir)
        {
            let _ = d.sync_all();
        }
        Ok(())
    }
}

impl RaftSnapshotBuilder<TypeConfig> for StateStore {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError> {
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
        let snapshot_id = match applied.last {
            Some(l) => format!("{}-{}", l.leader_id, l.index),
            None => "empty".to_string(),
        };
        let meta = SnapshotMeta {
            last_log_id: applied.last,
            last_membership: applied.membership,
            snapshot_id,
        };
        let file = SnapshotFile {
            meta: meta.clone(),
            state,
        };
        let bytes = Arc::new(serde_json::to_vec(&file).map_err(snap_write_err)?);
        self.write_snapshot_retrying(bytes.clone()).await?;
        let bytes = Arc::try_unwrap(bytes).unwrap_or_else(|shared| (*shared).clone());
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(bytes)),
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
                    EntryPayload::Normal(ref log_entry) => {
                        // A panic here (a bug in the core) would leave the state
                        // half-applied. Caught inside the lock (so it is not poisoned
                        // and nobody reads on regardless): the state is marked failed,
                        // the API refuses to serve it, and openraft is told to stop.
                        let index = entry.log_id.index;
                        let applied_one = std::panic::catch_unwind(AssertUnwindSafe(|| {
                            test_hook::maybe_panic(log_entry);
                            machine.apply_indexed(index, log_entry)
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
                        replies.push(out.results);
                    }
                    EntryPayload::Membership(ref m) => {
                        applied.membership = StoredMembership::new(Some(entry.log_id), m.clone());
                        replies.push(Vec::new());
                    }
                }
            }
            self.shared.metrics.observe_applied(&machine, &events);
        }
        // After the state is readable: a reader that saw an event finds its change.
        self.shared.events.publish(events);
        if !dispatches.is_empty() {
            // The receiver lives as long as the server; if it is gone we are shutting down.
            let _ = self.dispatch.send(dispatches);
        }
        Ok(replies)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<u64, BasicNode>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError> {
        let bytes = snapshot.into_inner();
        let file: SnapshotFile = serde_json::from_slice(&bytes).map_err(sm_read_err)?;
        let bytes = Arc::new(bytes);
        self.write_snapshot_retrying(bytes.clone()).await?;
        {
            let (mut machine, mut applied) = self.shared.write();
            *machine = StateMachine::restore(file.state);
            applied.last = meta.last_log_id;
            applied.membership = meta.last_membership.clone();
        }
        let index = meta.last_log_id.map(|l| l.index).unwrap_or(0);
        self.shared.events.restart_at(EventId::end_of(index));
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StorageError> {
        Ok(
            read_snapshot_file(&self.snapshot_path)?.map(|(file, bytes)| Snapshot {
                meta: file.meta,
                snapshot: Box::new(Cursor::new(bytes)),
            }),
        )
    }
}
