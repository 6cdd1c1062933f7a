//! Creating the log's redb file so that a crash cannot leave half of one.
//!
//! `redb::Database::create` writes a new file in place: a server killed (-9, power
//! loss) in the middle of its very first start (a joining server killed right after
//! it was offered an id, say) leaves a file without redb's header, and every later
//! start fails with "Not a redb database: magic number mismatch" until someone deletes
//! it by hand. So a new database is made under a temporary name, synced, and renamed
//! into place; a leftover temporary file (a crash before the rename) is removed first.
//! An existing log file is never touched here.

use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum LogFileError {
    #[error("cannot create the log file {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot create the log file {path}: {source}")]
    Redb {
        path: PathBuf,
        source: Box<redb::DatabaseError>,
    },
}

/// Where a new log file is made before it is renamed to `path`.
fn temporary(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".new");
    path.with_file_name(name)
}

/// Makes sure a complete redb database exists at `path` (creating an empty one if
/// there is none). Blocking file work: call it off the async threads.
pub fn ensure_created(path: &Path) -> Result<(), LogFileError> {
    let tmp = temporary(path);
    let io = |p: &Path| {
        let p = p.to_path_buf();
        move |source| LogFileError::Io { path: p, source }
    };
    match std::fs::remove_file(&tmp) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io(&tmp)(e)),
    }
    if path.exists() {
        return Ok(());
    }
    let db = redb::Database::create(&tmp).map_err(|source| LogFileError::Redb {
        path: tmp.clone(),
        source: Box::new(source),
    })?;
    drop(db);
    std::fs::File::open(&tmp)
        .and_then(|f| f.sync_all())
        .map_err(io(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io(path))?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io(dir))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("drover-logfile-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn a_half_created_log_file_left_by_a_crash_does_not_stop_the_next_start() {
        let d = dir("half");
        let path = d.join("raft.redb");
        // What a crash mid-creation leaves: the temporary file, not a header's worth.
        std::fs::write(temporary(&path), b"\0\0\0\0half").unwrap();
        ensure_created(&path).unwrap();
        assert!(!temporary(&path).exists());
        redb::Database::create(&path).expect("a whole redb database");
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn an_existing_log_file_is_left_as_it_is() {
        let d = dir("existing");
        let path = d.join("raft.redb");
        std::fs::write(&path, b"not ours to judge").unwrap();
        ensure_created(&path).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"not ours to judge");
        let _ = std::fs::remove_dir_all(&d);
    }
}
