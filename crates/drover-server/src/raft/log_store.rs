//! The raft log in redb.
//!
//! One table maps log index → serialized entry; another holds the vote, the committed
//! pointer and the last purged id. redb commits with `Durability::Immediate` (fsync), so
//! when `append` reports an entry flushed, it survives `kill -9` and power loss.
//! Every database call runs on a blocking thread, and a failed one is tried again until
//! it succeeds (see [`LogStore::run`] and `storage_health.rs`).
//!
//! One fsync per append, none per commit: openraft saves the committed pointer after
//! every commit, inline in its core loop, and fsyncing it there doubled the fsyncs on
//! a task's path. It needs no fsync: it only lets a restarted server apply entries
//! before it hears from a leader (a leader re-commits them anyway, and what was
//! acknowledged is in the fsynced log). So it is kept in memory and written inside the
//! next append's transaction. And the newest entries are kept in memory
//! ([`RecentEntries`]): openraft reads every entry back to apply it right after
//! appending it, which was a redb read and a JSON parse on its core loop.

use super::{StorageError, StorageHealth, TypeConfig};
use openraft::storage::{LogFlushed, RaftLogStorage};
use openraft::{Entry, LogId, LogState, RaftLogReader, StorageIOError, Vote};
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const LOG: TableDefinition<u64, &[u8]> = TableDefinition::new("raft_log");
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("raft_meta");

const VOTE: &str = "vote";
const COMMITTED: &str = "committed";
const LAST_PURGED: &str = "last_purged";

/// The log store. Cloning shares the same database (the log reader is a clone).
#[derive(Clone, Debug)]
pub struct LogStore {
    inner: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    path: PathBuf,
    /// `None` after a failed write: redb refuses every transaction after an I/O error
    /// until the database is opened again, which the next try does.
    db: Mutex<Option<Arc<Database>>>,
    health: Arc<StorageHealth>,
    recent: Mutex<RecentEntries>,
    /// The committed pointer openraft saved last, and whether the database has it yet
    /// (written by the next append's transaction).
    committed: Mutex<(Option<LogId<u64>>, bool)>,
}

/// Most bytes (as serialized) of entries kept in memory.
const RECENT_MAX_BYTES: usize = 64 << 20;
/// An entry at least this large (as serialized) is handed out, not copied, by the
/// first read: a job of 1,000,000 tasks is one entry of hundreds of MiB once parsed,
/// and a copy kept here while the state machine builds its own would double the
/// server's memory for as long as the entry stays among the newest. The first read is
/// the apply on a single server (the apply then moves the specs into the core); a
/// later read (a follower catching up) parses it back from redb.
const HANDED_OUT_BYTES: usize = 1 << 20;

/// The newest entries of the log, a contiguous run ending at the last one appended
/// (empty after a start). A read wholly inside it is served from memory, unless it
/// covers a large entry already handed out (`None`), which sends it to redb.
#[derive(Debug, Default)]
struct RecentEntries {
    entries: std::collections::BTreeMap<u64, (Option<Entry<TypeConfig>>, usize)>,
    bytes: usize,
}

impl RecentEntries {
    /// Adds entries just made durable, after any it holds from their first index on
    /// (openraft overwrites a conflicting tail), dropping the oldest past the bound.
    fn push(&mut self, appended: Vec<(Entry<TypeConfig>, usize)>) {
        let Some(first) = appended.first().map(|(e, _)| e.log_id.index) else {
            return;
        };
        self.truncate(first);
        if self
            .entries
            .last_key_value()
            .is_some_and(|(last, _)| *last + 1 != first)
        {
            // Not contiguous with what is held (cannot happen through openraft): start over.
            self.entries.clear();
            self.bytes = 0;
        }
        for (entry, size) in appended {
            self.bytes += size;
            self.entries.insert(entry.log_id.index, (Some(entry), size));
        }
        while self.bytes > RECENT_MAX_BYTES && self.entries.len() > 1 {
            if let Some((_, (_, size))) = self.entries.pop_first() {
                self.bytes -= size;
            }
        }
    }

    /// Forgets the entries from `index` on.
    fn truncate(&mut self, index: u64) {
        for (_, (_, size)) in self.entries.split_off(&index) {
            self.bytes -= size;
        }
    }

    /// Forgets the entries up to `index`, inclusive.
    fn purge(&mut self, index: u64) {
        let kept = self.entries.split_off(&(index + 1));
        self.entries = kept;
        self.bytes = self.entries.values().map(|(_, s)| *s).sum();
    }

    /// The entries from `start` to `end` if every one of them is held; large ones
    /// ([`HANDED_OUT_BYTES`]) are moved out, not copied (a placeholder stays, so the
    /// run remains contiguous and the next read of it goes to redb).
    fn get(&mut self, start: u64, end: Bound<u64>) -> Option<Vec<Entry<TypeConfig>>> {
        let (&first, _) = self.entries.first_key_value()?;
        if start < first {
            return None;
        }
        let range = (Bound::Included(start), end);
        if self.entries.range(range).any(|(_, (e, _))| e.is_none()) {
            return None;
        }
        let mut out = Vec::new();
        for (_, (held, size)) in self.entries.range_mut(range) {
            if *size >= HANDED_OUT_BYTES {
                out.extend(held.take());
            } else {
                out.extend(held.clone());
            }
        }
        Some(out)
    }
}

/// A stored entry's id, read without its payload.
#[derive(serde::Deserialize)]
struct EntryId {
    log_id: LogId<u64>,
}

/// First pause between two tries of a failed write, doubled up to [`RETRY_MAX`].
const RETRY_FIRST: Duration = Duration::from_millis(50);
const RETRY_MAX: Duration = Duration::from_millis(500);
/// Tries of a failed read (about 2 s in all) before openraft is told.
const READ_TRIES: u32 = 6;

fn read_err(e: impl std::error::Error + 'static) -> StorageError {
    StorageIOError::read_logs(&e).into()
}

fn write_err(e: impl std::error::Error + 'static) -> StorageError {
    StorageIOError::write_logs(&e).into()
}

/// redb's page cache for the log. Its default (1 GiB) keeps every page a commit
/// writes, so the log's bytes piled up in the server's memory until the cache was full:
/// a job of 1,000,000 tasks is one entry of about 150 MiB, all of it resident after
/// the append. The log is read back only at a start (entries after the snapshot) and
/// by a follower catching up past the in-memory tail ([`RecentEntries`]), where the
/// kernel's page cache serves it; a small cache also bounds the write buffer (half of
/// it), which redb spills to the file early in a larger transaction.
const LOG_CACHE_BYTES: usize = 32 << 20;

fn create_database(path: &Path) -> Result<Database, StorageError> {
    redb::Builder::new()
        .set_cache_size(LOG_CACHE_BYTES)
        .create(path)
        .map_err(write_err)
}

impl LogStore {
    /// Opens (or creates) the log database at `path` and makes sure its tables exist.
    pub fn open(path: &Path, health: Arc<StorageHealth>) -> Result<LogStore, StorageError> {
        let db = create_database(path)?;
        let txn = db.begin_write().map_err(write_err)?;
        txn.open_table(LOG).map_err(write_err)?;
        txn.open_table(META).map_err(write_err)?;
        txn.commit().map_err(write_err)?;
        Ok(LogStore {
            inner: Arc::new(Shared {
                path: path.to_path_buf(),
                db: Mutex::new(Some(Arc::new(db))),
                health,
                recent: Mutex::new(RecentEntries::default()),
                committed: Mutex::new((None, true)),
            }),
        })
    }

    /// The open database, opening it again if a failed write closed it. Blocking: call
    /// on a blocking thread. The lock is not held while opening.
    fn db(&self) -> Result<Arc<Database>, StorageError> {
        if let Some(db) = &*self.inner.db.lock().unwrap_or_else(|p| p.into_inner()) {
            return Ok(db.clone());
        }
        let db = Arc::new(create_database(&self.inner.path)?);
        let mut slot = self.inner.db.lock().unwrap_or_else(|p| p.into_inner());
        Ok(slot.get_or_insert(db).clone())
    }

    fn close(&self) {
        self.inner
            .db
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
    }

    /// Runs `op` on a blocking thread until it succeeds. openraft stops for good on any
    /// storage error, so a failing write (a full disk) is never reported to it: it is
    /// tried again, the database reopened in between, while [`StorageHealth`] tells the
    /// API and the proposer (which refuses new writes). A write gives up only when the
    /// server is shutting down. A failed read is tried [`READ_TRIES`] times, without
    /// touching the health (reads succeed on a full disk); one that keeps failing (a
    /// damaged file) is reported, so that a server cannot start on it rather than wait.
    async fn run<T, F>(&self, write: bool, op: F) -> Result<T, StorageError>
    where
        T: Send + 'static,
        F: Fn(&Database) -> Result<T, StorageError> + Send + Sync + 'static,
    {
        let op = Arc::new(op);
        let mut pause = RETRY_FIRST;
        let mut tries = 0;
        loop {
            let (store, op) = (self.clone(), op.clone());
            // The outer error: the database could not be opened again (yet: another
            // call still holds the old handle, or redb is repairing it). Transient, so
            // it does not count as a failed read.
            let outcome = tokio::task::spawn_blocking(move || store.db().map(|db| op(&db))).await;
            let (e, opened) = match outcome {
                Ok(Ok(Ok(v))) => {
                    if write && let Some(f) = self.inner.health.succeeded() {
                        tracing::warn!(
                            after_ms = f.since.elapsed().as_millis() as u64,
                            "writes to the data directory succeed again"
                        );
                    }
                    return Ok(v);
                }
                Ok(Ok(Err(e))) => (e, true),
                Ok(Err(e)) => (e, false),
                Err(join) => return Err(write_err(join)),
            };
            if opened {
                tries += 1;
            }
            if self.inner.health.is_stopping() || (!write && tries >= READ_TRIES) {
                return Err(e);
            }
            let reason = root_cause(&e);
            if write {
                if self.inner.health.failed(reason.clone()) {
                    tracing::error!(%reason, "a write to the raft log failed; retrying until it succeeds, refusing new writes meanwhile");
                }
            } else {
                tracing::warn!(%reason, "a read of the raft log failed; retrying");
            }
            self.close();
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(RETRY_MAX);
        }
    }

    async fn get_meta<T: DeserializeOwned + Send + 'static>(
        &self,
        key: &'static str,
    ) -> Result<Option<T>, StorageError> {
        self.run(false, move |db| {
            let txn = db.begin_read().map_err(read_err)?;
            let table = txn.open_table(META).map_err(read_err)?;
            match table.get(key).map_err(read_err)? {
                Some(v) => Ok(Some(serde_json::from_slice(v.value()).map_err(read_err)?)),
                None => Ok(None),
            }
        })
        .await
    }

    async fn put_meta<T: Serialize>(
        &self,
        key: &'static str,
        value: &T,
    ) -> Result<(), StorageError> {
        let bytes = serde_json::to_vec(value).map_err(write_err)?;
        self.run(true, move |db| {
            let txn = db.begin_write().map_err(write_err)?;
            {
                let mut table = txn.open_table(META).map_err(write_err)?;
                table.insert(key, bytes.as_slice()).map_err(write_err)?;
            }
            txn.commit().map_err(write_err)
        })
        .await
    }
}

/// The innermost cause of a storage error, e.g. "No space left on device (os error 28)".
fn root_cause(e: &StorageError) -> String {
    let mut cur: &dyn std::error::Error = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + Send>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry<TypeConfig>>, StorageError> {
        let start = match range.start_bound() {
            Bound::Included(i) => *i,
            Bound::Excluded(i) => i + 1,
            Bound::Unbounded => 0,
        };
        let end = match range.end_bound() {
            Bound::Included(i) => Bound::Included(*i),
            Bound::Excluded(i) => Bound::Excluded(*i),
            Bound::Unbounded => Bound::Unbounded,
        };
        if let Some(entries) = self
            .inner
            .recent
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(start, end)
        {
            return Ok(entries);
        }
        self.run(false, move |db| {
            let txn = db.begin_read().map_err(read_err)?;
            let table = txn.open_table(LOG).map_err(read_err)?;
            let mut out = Vec::new();
            for item in table
                .range((Bound::Included(start), end))
                .map_err(read_err)?
            {
                let (_, v) = item.map_err(read_err)?;
                out.push(serde_json::from_slice(v.value()).map_err(read_err)?);
            }
            Ok(out)
        })
        .await
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let last_purged: Option<LogId<u64>> = self.get_meta(LAST_PURGED).await?;
        let last = self
            .run(false, |db| {
                let txn = db.begin_read().map_err(read_err)?;
                let table = txn.open_table(LOG).map_err(read_err)?;
                match table.last().map_err(read_err)? {
                    Some((_, v)) => {
                        // Only its id: the last entry may be a job of 1,000,000 tasks,
                        // whose payload serde then skips without building it.
                        let entry: EntryId = serde_json::from_slice(v.value()).map_err(read_err)?;
                        Ok(Some(entry.log_id))
                    }
                    None => Ok(None),
                }
            })
            .await?
            .or(last_purged);
        Ok(LogState {
            last_purged_log_id: last_purged,
            last_log_id: last,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<u64>) -> Result<(), StorageError> {
        self.put_meta(VOTE, vote).await
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<u64>>, StorageError> {
        self.get_meta(VOTE).await
    }

    /// Kept in memory; the next append writes it (see the module's comment).
    async fn save_committed(&mut self, committed: Option<LogId<u64>>) -> Result<(), StorageError> {
        *self
            .inner
            .committed
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = (committed, false);
        Ok(())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId<u64>>, StorageError> {
        let (held, _) = *self
            .inner
            .committed
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if held.is_some() {
            return Ok(held);
        }
        Ok(self
            .get_meta::<Option<LogId<u64>>>(COMMITTED)
            .await?
            .flatten())
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + Send,
        I::IntoIter: Send,
    {
        // One transaction, one fsync, for the whole batch openraft hands us.
        let mut rows = Vec::new();
        let mut kept = Vec::new();
        for entry in entries {
            let index = entry.log_id.index;
            let bytes = serde_json::to_vec(&entry).map_err(write_err)?;
            kept.push((entry, bytes.len()));
            rows.push((index, bytes));
        }
        // The committed pointer saved since the last append rides along.
        let committed = {
            let c = self
                .inner
                .committed
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            match *c {
                (value, false) => Some(serde_json::to_vec(&value).map_err(write_err)?),
                (_, true) => None,
            }
        };
        let written = committed.is_some();
        let result = self
            .run(true, move |db| {
                let txn = db.begin_write().map_err(write_err)?;
                {
                    let mut table = txn.open_table(LOG).map_err(write_err)?;
                    for (index, bytes) in &rows {
                        table.insert(*index, bytes.as_slice()).map_err(write_err)?;
                    }
                    if let Some(committed) = &committed {
                        let mut meta = txn.open_table(META).map_err(write_err)?;
                        meta.insert(COMMITTED, committed.as_slice())
                            .map_err(write_err)?;
                    }
                }
                txn.commit().map_err(write_err)
            })
            .await;
        if result.is_ok() {
            if written {
                self.inner
                    .committed
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .1 = true;
            }
            self.inner
                .recent
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(kept);
        }
        match result {
            Ok(()) => {
                callback.log_io_completed(Ok(()));
                Ok(())
            }
            Err(e) => {
                callback.log_io_completed(Err(std::io::Error::other(e.to_string())));
                Err(e)
            }
        }
    }

    async fn truncate(&mut self, log_id: LogId<u64>) -> Result<(), StorageError> {
        self.inner
            .recent
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .truncate(log_id.index);
        self.run(true, move |db| {
            let txn = db.begin_write().map_err(write_err)?;
            {
                let mut table = txn.open_table(LOG).map_err(write_err)?;
                table
                    .retain_in(log_id.index.., |_, _| false)
                    .map_err(write_err)?;
            }
            txn.commit().map_err(write_err)
        })
        .await
    }

    async fn purge(&mut self, log_id: LogId<u64>) -> Result<(), StorageError> {
        self.inner
            .recent
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .purge(log_id.index);
        let bytes = serde_json::to_vec(&log_id).map_err(write_err)?;
        self.run(true, move |db| {
            let txn = db.begin_write().map_err(write_err)?;
            {
                let mut meta = txn.open_table(META).map_err(write_err)?;
                meta.insert(LAST_PURGED, bytes.as_slice())
                    .map_err(write_err)?;
                let mut table = txn.open_table(LOG).map_err(write_err)?;
                table
                    .retain_in(..=log_id.index, |_, _| false)
                    .map_err(write_err)?;
            }
            txn.commit().map_err(write_err)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use drover_state::LogEntry;
    use drover_types::Millis;
    use openraft::{CommittedLeaderId, EntryPayload};

    fn entry(index: u64) -> Entry<TypeConfig> {
        Entry {
            log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
            payload: EntryPayload::Normal(LogEntry {
                now: Millis(index),
                commands: Vec::new(),
            }),
        }
    }

    fn indexes(got: Option<Vec<Entry<TypeConfig>>>) -> Option<Vec<u64>> {
        got.map(|v| v.iter().map(|e| e.log_id.index).collect())
    }

    #[test]
    fn a_large_entry_is_handed_out_once_and_then_read_from_the_database() {
        let mut recent = RecentEntries::default();
        recent.push(vec![
            (entry(1), 10),
            (entry(2), HANDED_OUT_BYTES),
            (entry(3), 10),
        ]);
        // Small entries are copied: read as often as asked.
        assert_eq!(indexes(recent.get(1, Bound::Included(1))), Some(vec![1]));
        assert_eq!(indexes(recent.get(1, Bound::Included(1))), Some(vec![1]));
        // The large one moves out with the first read that covers it...
        assert_eq!(
            indexes(recent.get(1, Bound::Unbounded)),
            Some(vec![1, 2, 3])
        );
        // ...after which any read covering it is left to redb, and others still served.
        assert_eq!(indexes(recent.get(2, Bound::Included(2))), None);
        assert_eq!(indexes(recent.get(1, Bound::Unbounded)), None);
        assert_eq!(indexes(recent.get(3, Bound::Unbounded)), Some(vec![3]));
        // Before the run held: redb.
        assert_eq!(indexes(recent.get(0, Bound::Unbounded)), None);
    }
}
