//! The state machine behind openraft's storage trait, and its snapshots.
//!
//! The state lives in memory (reads from the API take a read lock). Durability comes
//! from the log: at start the state is restored from the latest snapshot file, and
//! openraft re-applies the committed entries after it. A snapshot file is written to a
//! temporary name, fsynced, then renamed over the old one, so a crash mid-write leaves
//! the previous snapshot intact.

use super::{StorageError, TypeConfig};
use crate::events::{DEFAULT_RETAINED, EventHub};
use crate::retention::RetiredSink;
use drover_proto::events::EventId;
use drover_sched::SchedulerConfig;
use drover_state::{CommandResult, Dispatch, StateMachine, StateSnapshot};
use openraft::storage::RaftStateMachine;
use openraft::{
    BasicNode, Entry, EntryPayload, LogId, RaftSnapshotBuilder, Snapshot, SnapshotMeta,
    StorageIOError, StoredMembership,
};
use serde::{Deserialize, Serialize};
use std::io::{Cursor, Write};
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
    /// Where retired task ranges go (the output reaper), once set.
    retired: Option<RetiredSink>,
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
        let floor = EventId::end_of(applied.last.map(|l| l.index).unwrap_or(0));
        Ok(StateStore {
            shared: Arc::new(SharedState {
                machine: RwLock::new(machine),
                applied: Mutex::new(applied),
                events: EventHub::new(DEFAULT_RETAINED, floor),
            }),
            snapshot_path,
            dispatch,
            retired: None,
        })
    }

    /// Hands the ranges of tasks retired by each applied entry to `sink`.
    pub fn send_retired_to(mut self, sink: RetiredSink) -> StateStore {
        self.retired = Some(sink);
        self
    }

    pub fn shared(&self) -> Arc<SharedState> {
        self.shared.clone()
    }

    fn write_snapshot_file(&self, bytes: &[u8]) -> Result<(), StorageError> {
        let tmp = self.snapshot_path.with_extension("json.tmp");
        let mut f = std::fs::File::create(&tmp).map_err(snap_write_err)?;
        f.write_all(bytes).map_err(snap_write_err)?;
        f.sync_all().map_err(snap_write_err)?;
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
        let bytes = serde_json::to_vec(&file).map_err(snap_write_err)?;
        self.write_snapshot_file(&bytes)?;
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
        let mut replies = Vec::new();
        let mut dispatches = Vec::new();
        let mut events = Vec::new();
        let mut retired = Vec::new();
        {
            let (mut machine, mut applied) = self.shared.write();
            for entry in entries {
                applied.last = Some(entry.log_id);
                match entry.payload {
                    EntryPayload::Blank => replies.push(Vec::new()),
                    EntryPayload::Normal(ref log_entry) => {
                        let mut out = machine.apply_indexed(entry.log_id.index, log_entry);
                        dispatches.append(&mut out.dispatches);
                        events.append(&mut out.events);
                        retired.append(&mut out.retired);
                        replies.push(out.results);
                    }
                    EntryPayload::Membership(ref m) => {
                        applied.membership = StoredMembership::new(Some(entry.log_id), m.clone());
                        replies.push(Vec::new());
                    }
                }
            }
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
        self.write_snapshot_file(&bytes)?;
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
