//! Empty attempt directories kept for the next attempts instead of removed.
//!
//! Why: on ext4 a `mkdir` right after many `rmdir`s in the same place scans the inode
//! bitmap for an inode not deleted recently (`find_inode_bit`, `recently_deleted`):
//! `perf` of a worker running 4,000 × `/bin/true` put creating and removing attempt
//! directories at a fifth of the agent's CPU. A rename costs neither an inode nor a
//! scan.
//!
//! Only an empty directory comes back, without extended attributes (an ACL a task set
//! must not reach the next task), and only from an attempt whose processes are all
//! gone: the driver keeps a pool only when tasks run in cgroups (nothing of an attempt
//! outlives its end there) and as a task user (the launch resets owner and mode).
//! The pool lives in `attempts/.pool`, closed to tasks (0700), emptied at start.

use crate::sys;
use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// Directories kept at most: enough for a burst of short tasks on a big worker.
const POOL_MAX: usize = 256;

/// Empty directories under `attempts/.pool`, ready to be renamed into place.
#[derive(Debug)]
pub(crate) struct AttemptDirPool {
    dir: PathBuf,
    free: Mutex<Vec<PathBuf>>,
    next: AtomicU64,
}

impl AttemptDirPool {
    /// Makes `<attempts>/.pool` anew (a previous run's leftovers removed).
    pub(crate) fn new(attempts: &Path) -> io::Result<AttemptDirPool> {
        let dir = attempts.join(".pool");
        match fs::remove_dir_all(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        fs::create_dir(&dir)?;
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o700))?;
        Ok(AttemptDirPool {
            dir,
            free: Mutex::new(Vec::new()),
            next: AtomicU64::new(0),
        })
    }

    /// Moves a kept directory to `target`, which must not exist. False when none is
    /// kept or the move failed (the caller makes a new one).
    pub(crate) fn take_into(&self, target: &Path) -> bool {
        let Some(kept) = self.free.lock().unwrap_or_else(|e| e.into_inner()).pop() else {
            return false;
        };
        match sys::rename_no_replace(&kept, target) {
            Ok(()) => true,
            Err(e) => {
                if e.kind() == io::ErrorKind::AlreadyExists {
                    self.keep(kept);
                } else {
                    let _ = fs::remove_dir(&kept);
                }
                false
            }
        }
    }

    /// Keeps `dir` for a later attempt when it is a plain empty directory with no
    /// extended attributes and the pool has room. False: the caller removes it.
    pub(crate) fn give_back(&self, dir: &Path) -> bool {
        if self.free.lock().unwrap_or_else(|e| e.into_inner()).len() >= POOL_MAX {
            return false;
        }
        let plain = fs::symlink_metadata(dir).is_ok_and(|m| m.file_type().is_dir());
        if !plain || !is_empty(dir) || sys::has_xattrs(dir) {
            return false;
        }
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let kept = self.dir.join(n.to_string());
        if fs::rename(dir, &kept).is_err() {
            return false;
        }
        self.keep(kept);
        true
    }

    fn keep(&self, kept: PathBuf) {
        self.free
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(kept);
    }
}

fn is_empty(dir: &Path) -> bool {
    fs::read_dir(dir).is_ok_and(|mut entries| entries.next().is_none())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!(
            "drover-dirpool-{name}-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        ));
        fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn an_empty_directory_is_reused_and_anything_else_is_not() {
        let attempts = scratch("reuse");
        let pool = AttemptDirPool::new(&attempts).unwrap();
        assert!(!pool.take_into(&attempts.join("1.1")), "nothing kept yet");

        // Empty: kept, and renamed into the next attempt's place (same inode).
        let a = attempts.join("1.1");
        fs::create_dir(&a).unwrap();
        let ino = std::os::unix::fs::MetadataExt::ino(&fs::metadata(&a).unwrap());
        assert!(pool.give_back(&a));
        assert!(!a.exists());
        let b = attempts.join("2.1");
        assert!(pool.take_into(&b));
        assert_eq!(
            std::os::unix::fs::MetadataExt::ino(&fs::metadata(&b).unwrap()),
            ino
        );

        // Not empty, or a symlink: not kept (the caller removes them).
        fs::write(b.join("left-behind"), b"x").unwrap();
        assert!(!pool.give_back(&b));
        let link = attempts.join("3.1");
        std::os::unix::fs::symlink(&b, &link).unwrap();
        assert!(!pool.give_back(&link));

        // A target that exists is never replaced: the kept one stays kept.
        let c = attempts.join("4.1");
        fs::create_dir(&c).unwrap();
        assert!(pool.give_back(&c));
        let occupied = attempts.join("5.1");
        fs::create_dir(&occupied).unwrap();
        assert!(!pool.take_into(&occupied));
        assert!(pool.take_into(&attempts.join("6.1")), "still kept");

        // A new pool (a restarted worker) starts empty and clears leftovers.
        let d = attempts.join("7.1");
        fs::create_dir(&d).unwrap();
        assert!(pool.give_back(&d));
        let again = AttemptDirPool::new(&attempts).unwrap();
        assert!(!again.take_into(&attempts.join("8.1")));
        assert_eq!(fs::read_dir(attempts.join(".pool")).unwrap().count(), 0);
        let _ = fs::remove_dir_all(attempts);
    }

    #[test]
    fn a_directory_with_an_extended_attribute_is_not_kept() {
        let attempts = scratch("xattr");
        let pool = AttemptDirPool::new(&attempts).unwrap();
        let a = attempts.join("1.1");
        fs::create_dir(&a).unwrap();
        if let Err(e) = sys::set_xattr(&a, "user.drover-test", b"1") {
            // A file system without user xattrs: the check cannot be exercised here.
            eprintln!("SKIPPED: {} takes no user xattrs: {e}", a.display());
            let _ = fs::remove_dir_all(attempts);
            return;
        }
        assert!(sys::has_xattrs(&a));
        assert!(!pool.give_back(&a));
        let _ = fs::remove_dir_all(attempts);
    }
}
