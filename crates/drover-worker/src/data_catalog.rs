//! The data keys this worker holds: the files of its data directory.
//!
//! Every regular file under the data directory (`<data_dir>/data` by default,
//! `--data-keys-dir`) is a data key named by its path relative to that directory,
//! `/`-separated (`part1`, `day/2024-01-01.csv`). Tasks find the directory in
//! `DROVER_DATA_DIR` and leave files there for later tasks; the server places a task
//! whose `inputs` name a key on a worker holding it (locality scoring).
//!
//! Scanning reads and hashes files, so it never runs on an async thread: one dedicated
//! thread scans at start, every [`RESCAN_EVERY`], and when asked (after each attempt
//! ends), and publishes the list through a `watch` channel. Asks are coalesced (a
//! bounded channel of one): a burst of task ends costs one scan. A file whose size and
//! modification time did not change is not hashed again. Symbolic links, other
//! non-regular files, names that are not UTF-8 or contain a control character, and
//! hidden entries (starting with `.`, so a task can write `.part1.tmp` and rename it
//! into place when whole) are skipped; at most [`MAX_FILES`] keys are listed.

use drover_proto::worker::DataKey;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc::{self, RecvTimeoutError, SyncSender, TrySendError};
use std::time::{Duration, SystemTime};
use tokio::sync::watch;

/// Rescans at least this often, so files put there by other means are found too.
pub const RESCAN_EVERY: Duration = Duration::from_secs(10);
/// Most files listed (the server logs at most as many keys per worker).
pub const MAX_FILES: usize = 10_000;
/// Deepest directory nesting followed.
const MAX_DEPTH: usize = 16;

/// Handle on the scanning thread. Dropping it stops the thread after its current scan.
#[derive(Debug)]
pub struct DataCatalog {
    dir: PathBuf,
    ask: SyncSender<()>,
    keys: watch::Receiver<Arc<Vec<DataKey>>>,
}

/// What was last hashed for a path.
struct Hashed {
    bytes: u64,
    modified: Option<SystemTime>,
    sha256: String,
}

impl DataCatalog {
    /// Starts the scanning thread on `dir` (created by the caller). The first list is
    /// published once the first scan is done.
    pub fn start(dir: PathBuf) -> std::io::Result<DataCatalog> {
        let (ask, asked) = mpsc::sync_channel::<()>(1);
        let (tx, keys) = watch::channel(Arc::new(Vec::new()));
        let root = dir.clone();
        std::thread::Builder::new()
            .name("drover-data-scan".into())
            .spawn(move || {
                let mut cache: HashMap<PathBuf, Hashed> = HashMap::new();
                loop {
                    let found = scan(&root, &mut cache);
                    tx.send_if_modified(|current| {
                        if **current == found {
                            return false;
                        }
                        *current = Arc::new(found);
                        true
                    });
                    match asked.recv_timeout(RESCAN_EVERY) {
                        Ok(()) | Err(RecvTimeoutError::Timeout) => {}
                        Err(RecvTimeoutError::Disconnected) => return,
                    }
                }
            })?;
        Ok(DataCatalog { dir, ask, keys })
    }

    /// The directory tasks write their data into.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Asks for a scan soon (coalesced with one already asked for).
    pub fn rescan(&self) {
        match self.ask.try_send(()) {
            Ok(()) | Err(TrySendError::Full(())) | Err(TrySendError::Disconnected(())) => {}
        }
    }

    /// The keys found by the latest scan, sorted by key.
    pub fn current(&self) -> Arc<Vec<DataKey>> {
        self.keys.borrow().clone()
    }
}

/// Lists the data files under `root`, sorted by key, hashing new or changed ones.
fn scan(root: &Path, cache: &mut HashMap<PathBuf, Hashed>) -> Vec<DataKey> {
    let mut found = Vec::new();
    let mut stack: Vec<(PathBuf, String, usize)> = vec![(root.to_path_buf(), String::new(), 0)];
    let mut seen: std::collections::HashSet<PathBuf> = Default::default();
    while let Some((dir, prefix, depth)) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            if found.len() >= MAX_FILES {
                break;
            }
            let Ok(name) = entry.file_name().into_string() else {
                continue;
            };
            if name.starts_with('.') || name.chars().any(char::is_control) {
                continue;
            }
            // Not followed: a symbolic link could lead anywhere on the host.
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            let key = format!("{prefix}{name}");
            let path = entry.path();
            if kind.is_dir() {
                if depth + 1 < MAX_DEPTH {
                    stack.push((path, format!("{key}/"), depth + 1));
                }
                continue;
            }
            if !kind.is_file() {
                continue;
            }
            let Ok(meta) = entry.metadata() else {
                continue;
            };
            let (bytes, modified) = (meta.len(), meta.modified().ok());
            let sha256 = match cache.get(&path) {
                Some(h) if h.bytes == bytes && h.modified == modified => h.sha256.clone(),
                _ => match sha256_of(&path) {
                    Ok(d) => d,
                    Err(e) => {
                        tracing::debug!(path = %path.display(), "data file not hashed: {e}");
                        continue;
                    }
                },
            };
            cache.insert(
                path.clone(),
                Hashed {
                    bytes,
                    modified,
                    sha256: sha256.clone(),
                },
            );
            seen.insert(path);
            found.push(DataKey { key, sha256, bytes });
        }
    }
    // Forget files that are gone, so the cache stays the size of the directory.
    cache.retain(|p, _| seen.contains(p));
    found.sort_by(|a, b| a.key.cmp(&b.key));
    found
}

fn sha256_of(path: &Path) -> std::io::Result<String> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 64 << 10];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    let digest = hasher.finalize();
    let mut hex = String::with_capacity(64);
    for b in digest.iter() {
        hex.push_str(&format!("{b:02x}"));
    }
    Ok(hex)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_are_keys_by_relative_path_with_digests() {
        let root = std::env::temp_dir().join(format!("drover-data-scan-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(root.join("day")).unwrap();
        std::fs::write(root.join("part1"), b"abc").unwrap();
        std::fs::write(root.join("day/x.csv"), b"").unwrap();
        std::fs::write(root.join(".part2.tmp"), b"half").unwrap();
        std::os::unix::fs::symlink("/etc/passwd", root.join("link")).unwrap();
        let mut cache = HashMap::new();
        let found = scan(&root, &mut cache);
        let keys: Vec<&str> = found.iter().map(|k| k.key.as_str()).collect();
        assert_eq!(keys, ["day/x.csv", "part1"]);
        assert_eq!(
            found[1].sha256,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(found[1].bytes, 3);
        std::fs::remove_file(root.join("part1")).unwrap();
        let found = scan(&root, &mut cache);
        assert_eq!(found.len(), 1);
        assert_eq!(cache.len(), 1);
        std::fs::remove_dir_all(&root).unwrap();
    }
}
