//! The checkpoint files of one server: `<data>/checkpoints/<task>/<attempt>.<version>`,
//! the last [`KEPT_VERSIONS`] of each task. All of it is blocking file work: callers
//! run it on a blocking thread.

use drover_proto::checkpoint::{CheckpointRef, digest_hex};
use drover_types::TaskId;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Versions kept per task: the latest, and the one before it in case the latest turns
/// out unreadable.
pub const KEPT_VERSIONS: usize = 2;

#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("checkpoint of task {task} ({which}) does not match its digest")]
    DigestMismatch { task: TaskId, which: String },
    #[error("checkpoint of task {task} ({which}) is not stored on this server")]
    Missing { task: TaskId, which: String },
    #[error("cannot store or read checkpoint files in {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

#[derive(Debug)]
pub struct CheckpointStore {
    root: PathBuf,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> CheckpointError + '_ {
    move |source| CheckpointError::Io {
        path: path.to_path_buf(),
        source,
    }
}

impl CheckpointStore {
    pub fn new(root: PathBuf) -> CheckpointStore {
        CheckpointStore { root }
    }

    fn task_dir(&self, task: TaskId) -> PathBuf {
        self.root.join(task.0.to_string())
    }

    fn file(&self, task: TaskId, c: &CheckpointRef) -> PathBuf {
        self.task_dir(task)
            .join(format!("{}.{}", c.attempt.0, c.version))
    }

    /// Stores one version, whole or not at all: written to a temporary file, fsynced,
    /// renamed into place, the directory fsynced; then older versions beyond
    /// [`KEPT_VERSIONS`] are deleted.
    pub fn save(
        &self,
        task: TaskId,
        c: &CheckpointRef,
        bytes: &[u8],
    ) -> Result<(), CheckpointError> {
        if digest_hex(bytes) != c.digest || bytes.len() as u64 != c.size {
            return Err(CheckpointError::DigestMismatch {
                task,
                which: c.to_string(),
            });
        }
        let dir = self.task_dir(task);
        fs::create_dir_all(&dir).map_err(io(&dir))?;
        let path = self.file(task, c);
        let tmp = dir.join(format!("{}.{}.tmp", c.attempt.0, c.version));
        {
            let mut f = fs::File::create(&tmp).map_err(io(&tmp))?;
            f.write_all(bytes).map_err(io(&tmp))?;
            f.sync_all().map_err(io(&tmp))?;
        }
        fs::rename(&tmp, &path).map_err(io(&path))?;
        fs::File::open(&dir)
            .and_then(|d| d.sync_all())
            .map_err(io(&dir))?;
        self.prune(task)
    }

    /// Reads a version back, checked against its digest.
    pub fn load(&self, task: TaskId, c: &CheckpointRef) -> Result<Vec<u8>, CheckpointError> {
        let path = self.file(task, c);
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(CheckpointError::Missing {
                    task,
                    which: c.to_string(),
                });
            }
            Err(source) => return Err(CheckpointError::Io { path, source }),
        };
        if digest_hex(&bytes) != c.digest {
            return Err(CheckpointError::DigestMismatch {
                task,
                which: c.to_string(),
            });
        }
        Ok(bytes)
    }

    /// The stored versions of a task, oldest first, as (attempt, version).
    pub fn versions(&self, task: TaskId) -> Result<Vec<(u32, u32)>, CheckpointError> {
        let dir = self.task_dir(task);
        let entries = match fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(source) => return Err(CheckpointError::Io { path: dir, source }),
        };
        let mut found: Vec<(u32, u32)> = entries
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let name = e.file_name().into_string().ok()?;
                let (a, v) = name.split_once('.')?;
                Some((a.parse().ok()?, v.parse().ok()?))
            })
            .collect();
        found.sort_unstable();
        Ok(found)
    }

    fn prune(&self, task: TaskId) -> Result<(), CheckpointError> {
        let versions = self.versions(task)?;
        let extra = versions.len().saturating_sub(KEPT_VERSIONS);
        for (a, v) in &versions[..extra] {
            let path = self.task_dir(task).join(format!("{a}.{v}"));
            fs::remove_file(&path).map_err(io(&path))?;
        }
        Ok(())
    }

    /// Deletes every version of a retired task.
    pub fn remove_task(&self, task: TaskId) -> Result<(), CheckpointError> {
        let dir = self.task_dir(task);
        match fs::remove_dir_all(&dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(CheckpointError::Io { path: dir, source }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use drover_types::Attempt;

    fn reference(attempt: u32, version: u32, bytes: &[u8]) -> CheckpointRef {
        CheckpointRef {
            attempt: Attempt(attempt),
            version,
            size: bytes.len() as u64,
            digest: digest_hex(bytes),
            saved_at: Default::default(),
        }
    }

    #[test]
    fn keeps_the_last_two_versions_and_refuses_damaged_bytes() {
        let dir = std::env::temp_dir().join(format!("drover-ckpt-store-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let store = CheckpointStore::new(dir.clone());
        let t = TaskId(7);
        for (a, v) in [(1, 1), (1, 2), (2, 1)] {
            let bytes = format!("state {a}.{v}").into_bytes();
            store.save(t, &reference(a, v, &bytes), &bytes).unwrap();
        }
        assert_eq!(store.versions(t).unwrap(), vec![(1, 2), (2, 1)]);
        let latest = reference(2, 1, b"state 2.1");
        assert_eq!(store.load(t, &latest).unwrap(), b"state 2.1");
        assert!(matches!(
            store.load(t, &reference(1, 1, b"state 1.1")),
            Err(CheckpointError::Missing { .. })
        ));
        let bad = reference(3, 1, b"what was meant");
        assert!(matches!(
            store.save(t, &bad, b"what arrived"),
            Err(CheckpointError::DigestMismatch { .. })
        ));
        // Nothing of a refused version is visible.
        assert_eq!(store.versions(t).unwrap(), vec![(1, 2), (2, 1)]);
        store.remove_task(t).unwrap();
        assert!(store.versions(t).unwrap().is_empty());
        let _ = fs::remove_dir_all(&dir);
    }
}
