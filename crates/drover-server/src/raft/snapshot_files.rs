//! The snapshot files in the data directory. Every method here does blocking file I/O:
//! callers on the async runtime go through `spawn_blocking`.
//!
//! - `snapshot.bin`: the current snapshot, in `drover_state`'s binary format (header,
//!   the metadata as JSON ([`FileMeta`]: openraft's, and the highest node id the group
//!   has handed out), the state in postcard, checksum), replaced whole by a rename, so
//!   a crash mid-write leaves the previous one intact.
//! - `snapshot.<n>.tmp`: one being written (by a build, or received from the leader);
//!   it becomes current only once complete, fsynced and (when received) verified.
//!   Leftovers of a crash are removed at start.
//! - `snapshot.json`: the format before this one (the whole state as one JSON
//!   document); still read at start when there is no `snapshot.bin`, and converted to
//!   one at once (the JSON file is then removed).

use drover_state::{SnapshotCodecError, SnapshotReader, StateSnapshot, write_snapshot};
use openraft::{BasicNode, SnapshotMeta};
use serde::Deserialize;
use std::fs::File;
use std::io::{BufReader, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

pub type Meta = SnapshotMeta<u64, BasicNode>;

/// The metadata a snapshot file carries: openraft's, and the highest node id any
/// membership up to the snapshot had. Node ids are never handed out twice (see
/// `membership.rs`), and the memberships before a snapshot are compacted away with the
/// log, so the snapshot keeps their highest id. Files written before this field
/// existed read as 0 (the ids of their last membership count too).
///
/// As JSON: openraft's metadata object with one more field, `highest_node_id` (not
/// through `#[serde(flatten)]`, which cannot read the membership's integer map keys).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileMeta {
    pub raft: Meta,
    pub highest_node_id: u64,
}

const HIGHEST_NODE_ID: &str = "highest_node_id";

impl FileMeta {
    pub fn to_json(&self) -> Result<Vec<u8>, serde_json::Error> {
        let mut value = serde_json::to_value(&self.raft)?;
        if let Some(object) = value.as_object_mut() {
            object.insert(HIGHEST_NODE_ID.into(), self.highest_node_id.into());
        }
        serde_json::to_vec(&value)
    }

    pub fn from_json(bytes: &[u8]) -> Result<FileMeta, serde_json::Error> {
        let mut value: serde_json::Value = serde_json::from_slice(bytes)?;
        let highest = match value.as_object_mut() {
            Some(object) => object.remove(HIGHEST_NODE_ID),
            None => None,
        };
        let highest_node_id = match highest {
            Some(h) => serde_json::from_value(h)?,
            None => 0,
        };
        Ok(FileMeta {
            raft: serde_json::from_value(value)?,
            highest_node_id,
        })
    }

    /// The highest node id this metadata knows of: the recorded one, or one of the
    /// last membership's.
    pub fn highest_node_id(&self) -> u64 {
        self.raft
            .last_membership
            .membership()
            .nodes()
            .map(|(id, _)| *id)
            .chain([self.highest_node_id])
            .max()
            .unwrap_or(0)
    }
}

const CURRENT: &str = "snapshot.bin";
const LEGACY: &str = "snapshot.json";

/// What went wrong with a snapshot file.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotFileError {
    #[error("snapshot file {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("snapshot file {path}: {source}")]
    Codec {
        path: PathBuf,
        source: SnapshotCodecError,
    },
    #[error("snapshot file {path}: unreadable metadata or legacy JSON: {source}")]
    Json {
        path: PathBuf,
        source: serde_json::Error,
    },
}

/// The snapshot files of one data directory.
#[derive(Debug)]
pub struct SnapshotFiles {
    dir: PathBuf,
    /// The metadata of `snapshot.bin`; held while replacing it, so that an older
    /// snapshot (a build that raced an install) never replaces a newer one.
    current: Mutex<Option<Meta>>,
    next_tmp: AtomicU64,
}

/// The pre-binary snapshot file.
#[derive(Deserialize)]
struct LegacyFile {
    meta: Meta,
    state: StateSnapshot,
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> SnapshotFileError + '_ {
    move |source| SnapshotFileError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn codec_err(path: &Path) -> impl FnOnce(SnapshotCodecError) -> SnapshotFileError + '_ {
    move |source| SnapshotFileError::Codec {
        path: path.to_path_buf(),
        source,
    }
}

fn index_of(meta: &Meta) -> Option<u64> {
    meta.last_log_id.map(|l| l.index)
}

impl SnapshotFiles {
    /// Removes what a crash may have left half-written.
    pub fn new(dir: &Path) -> SnapshotFiles {
        if let Ok(entries) = std::fs::read_dir(dir) {
            for e in entries.flatten() {
                let name = e.file_name();
                let name = name.to_string_lossy();
                if name.starts_with("snapshot.") && name.ends_with(".tmp") {
                    let _ = std::fs::remove_file(e.path());
                }
            }
        }
        SnapshotFiles {
            dir: dir.to_path_buf(),
            current: Mutex::new(None),
            next_tmp: AtomicU64::new(1),
        }
    }

    fn current_path(&self) -> PathBuf {
        self.dir.join(CURRENT)
    }

    /// A fresh name for a snapshot being written or received.
    pub fn temp_path(&self) -> PathBuf {
        let n = self.next_tmp.fetch_add(1, Ordering::Relaxed);
        self.dir.join(format!("snapshot.{n}.tmp"))
    }

    /// Reads the current snapshot at start, if there is one.
    pub fn load(&self) -> Result<Option<(FileMeta, StateSnapshot)>, SnapshotFileError> {
        let path = self.current_path();
        match File::open(&path) {
            Ok(f) => {
                let (meta, reader) = open_reader(&path, f)?;
                let state = reader.state().map_err(codec_err(&path))?;
                *self.lock() = Some(meta.raft.clone());
                Ok(Some((meta, state)))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => self.load_legacy(),
            Err(e) => Err(io_err(&path)(e)),
        }
    }

    fn load_legacy(&self) -> Result<Option<(FileMeta, StateSnapshot)>, SnapshotFileError> {
        let path = self.dir.join(LEGACY);
        let f = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_err(&path)(e)),
        };
        let file: LegacyFile = serde_json::from_reader(BufReader::new(f)).map_err(|source| {
            SnapshotFileError::Json {
                path: path.clone(),
                source,
            }
        })?;
        // Converted at once: openraft is then told of a current snapshot it can send,
        // and the JSON file goes.
        let meta = FileMeta {
            raft: file.meta,
            highest_node_id: 0,
        };
        let (tmp, _) = self.write_temp(&meta, &file.state)?;
        self.publish(&tmp, &meta.raft)?;
        Ok(Some((meta, file.state)))
    }

    /// Writes a snapshot to a new temporary file, fsynced; [`SnapshotFiles::publish`]
    /// makes it current. Returns its path and size.
    pub fn write_temp(
        &self,
        meta: &FileMeta,
        state: &StateSnapshot,
    ) -> Result<(PathBuf, u64), SnapshotFileError> {
        let path = self.temp_path();
        let meta_json = meta.to_json().map_err(|source| SnapshotFileError::Json {
            path: path.clone(),
            source,
        })?;
        let written = File::create(&path)
            .map_err(io_err(&path))
            .and_then(|f| write_snapshot(&meta_json, state, f).map_err(codec_err(&path)))
            .and_then(|mut f| {
                f.sync_all().map_err(io_err(&path))?;
                f.stream_position().map_err(io_err(&path))
            });
        match written {
            Ok(size) => Ok((path, size)),
            Err(e) => {
                // A partial file would keep a full disk full.
                let _ = std::fs::remove_file(&path);
                Err(e)
            }
        }
    }

    /// Checks a received snapshot file from its first byte to its checksum and decodes
    /// its state, streaming.
    pub fn read_received(
        &self,
        path: &Path,
    ) -> Result<(FileMeta, StateSnapshot), SnapshotFileError> {
        let f = File::open(path).map_err(io_err(path))?;
        let (meta, reader) = open_reader(path, f)?;
        let state = reader.state().map_err(codec_err(path))?;
        Ok((meta, state))
    }

    /// Makes the complete, fsynced file at `tmp` the current snapshot, unless the
    /// current one is newer (then `tmp` is removed). Returns whether it was made current.
    pub fn publish(&self, tmp: &Path, meta: &Meta) -> Result<bool, SnapshotFileError> {
        let mut current = self.lock();
        if let Some(cur) = current.as_ref()
            && index_of(cur) > index_of(meta)
        {
            let _ = std::fs::remove_file(tmp);
            return Ok(false);
        }
        let path = self.current_path();
        std::fs::rename(tmp, &path).map_err(io_err(&path))?;
        // The rename is durable only once the directory is.
        File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(io_err(&self.dir))?;
        *current = Some(meta.clone());
        let _ = std::fs::remove_file(self.dir.join(LEGACY));
        Ok(true)
    }

    /// The current snapshot's metadata and the file, positioned at its start (what
    /// openraft sends to a follower, chunk by chunk).
    pub fn open_current(&self) -> Result<Option<(Meta, File)>, SnapshotFileError> {
        let path = self.current_path();
        let f = match File::open(&path) {
            Ok(f) => f,
            // No binary snapshot yet (perhaps a legacy one): openraft builds one when
            // it needs one to send.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_err(&path)(e)),
        };
        let (meta, reader) = open_reader(&path, f.try_clone().map_err(io_err(&path))?)?;
        drop(reader);
        let mut f = f;
        f.seek(SeekFrom::Start(0)).map_err(io_err(&path))?;
        Ok(Some((meta.raft, f)))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Meta>> {
        self.current.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Opens a snapshot file: checks its header and reads its metadata.
fn open_reader(
    path: &Path,
    f: File,
) -> Result<(FileMeta, SnapshotReader<File>), SnapshotFileError> {
    let reader = SnapshotReader::open(f).map_err(codec_err(path))?;
    let meta = FileMeta::from_json(reader.meta()).map_err(|source| SnapshotFileError::Json {
        path: path.to_path_buf(),
        source,
    })?;
    Ok((meta, reader))
}

#[cfg(test)]
mod tests {
    use super::*;
    use drover_sched::SchedulerConfig;
    use drover_state::{Command, LogEntry, StateMachine};
    use drover_types::{Millis, TaskSpec};
    use openraft::{CommittedLeaderId, LogId, StoredMembership};

    fn state() -> StateSnapshot {
        let mut m = StateMachine::new(SchedulerConfig::default());
        m.apply(&LogEntry {
            now: Millis(1_000),
            commands: vec![Command::Submit {
                job: drover_types::JobSpec {
                    name: "j".into(),
                    owner: String::new(),
                    tasks: vec![TaskSpec::command(["true"]), TaskSpec::command(["false"])],
                },
                idempotency: None,
                submitter: None,
                staged: None,
            }],
        });
        m.snapshot()
    }

    fn meta(index: u64) -> Meta {
        Meta {
            last_log_id: Some(LogId::new(CommittedLeaderId::new(1, 1), index)),
            last_membership: StoredMembership::default(),
            snapshot_id: format!("1-{index}"),
        }
    }

    fn file_meta(index: u64, highest_node_id: u64) -> FileMeta {
        FileMeta {
            raft: meta(index),
            highest_node_id,
        }
    }

    fn dir(name: &str) -> PathBuf {
        let d =
            std::env::temp_dir().join(format!("drover-snapfiles-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn a_legacy_json_snapshot_is_read_and_converted() {
        let d = dir("legacy");
        let original = state();
        let legacy = serde_json::json!({"meta": meta(7), "state": original});
        std::fs::write(d.join(LEGACY), serde_json::to_vec(&legacy).unwrap()).unwrap();
        let files = SnapshotFiles::new(&d);
        let (m, s) = files.load().unwrap().expect("the legacy snapshot");
        assert_eq!(m.raft, meta(7));
        let json = |s: &StateSnapshot| serde_json::to_string(s).unwrap();
        assert_eq!(json(&s), json(&original));
        assert!(!d.join(LEGACY).exists(), "the JSON file is gone");
        // The binary one replaced it, and reads back the same.
        let (m2, s2) = SnapshotFiles::new(&d)
            .load()
            .unwrap()
            .expect("snapshot.bin");
        assert_eq!(m2.raft, meta(7));
        assert_eq!(json(&s2), json(&original));
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn an_older_snapshot_never_replaces_a_newer_one_and_leftovers_go() {
        let d = dir("order");
        let files = SnapshotFiles::new(&d);
        let (newer, _) = files.write_temp(&file_meta(20, 0), &state()).unwrap();
        let (older, _) = files.write_temp(&file_meta(10, 0), &state()).unwrap();
        assert!(files.publish(&newer, &meta(20)).unwrap());
        assert!(!files.publish(&older, &meta(10)).unwrap());
        assert!(!older.exists(), "the refused file is removed");
        let (m, f) = files.open_current().unwrap().expect("current");
        assert_eq!(m, meta(20));
        drop(f);
        // A crash mid-write leaves a temporary file: the next start removes it.
        let stray = d.join("snapshot.99.tmp");
        std::fs::write(&stray, b"half").unwrap();
        let _ = SnapshotFiles::new(&d);
        assert!(!stray.exists());
        // A damaged current snapshot is an error, not an empty state.
        let path = d.join(CURRENT);
        let mut bytes = std::fs::read(&path).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff;
        std::fs::write(&path, bytes).unwrap();
        assert!(matches!(
            SnapshotFiles::new(&d).load(),
            Err(SnapshotFileError::Codec { .. })
        ));
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn the_highest_node_id_is_kept_and_a_file_without_one_reads_as_its_membership() {
        let d = dir("highest");
        let files = SnapshotFiles::new(&d);
        let (tmp, _) = files.write_temp(&file_meta(5, 9), &state()).unwrap();
        assert!(files.publish(&tmp, &meta(5)).unwrap());
        let (m, _) = SnapshotFiles::new(&d).load().unwrap().expect("current");
        assert_eq!(m.highest_node_id(), 9);
        let (m, _) = files.read_received(&d.join(CURRENT)).unwrap();
        assert_eq!(m.highest_node_id, 9);
        // Metadata as written before the field existed: openraft's alone.
        let members = std::collections::BTreeMap::from([
            (1, BasicNode::new("a:1")),
            (3, BasicNode::new("a:3")),
        ]);
        let old = Meta {
            last_membership: StoredMembership::new(
                None,
                openraft::Membership::new(vec![std::collections::BTreeSet::from([1, 3])], members),
            ),
            ..meta(6)
        };
        let json = serde_json::to_vec(&old).unwrap();
        let read = FileMeta::from_json(&json).unwrap();
        assert_eq!(read.raft, old);
        assert_eq!(read.highest_node_id(), 3);
        // And with it, the membership's ids (integer map keys) read back as well.
        let new = FileMeta {
            raft: old,
            highest_node_id: 7,
        };
        assert_eq!(FileMeta::from_json(&new.to_json().unwrap()).unwrap(), new);
        let _ = std::fs::remove_dir_all(&d);
    }
}
