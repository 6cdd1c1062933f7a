//! The archive of a checkpoint directory: a small format of our own (the server keeps
//! it opaque, only the agent reads it), deterministic so that an unchanged directory
//! gives the same bytes and is not sent again.
//!
//! ```text
//! "DRVCKPT1"
//! per entry, in sorted path order:
//!   kind u8 (0 directory, 1 file) | path length u32 BE | path (UTF-8, '/'-separated,
//!   relative, no '.' or '..' parts) | mode u32 BE (permission bits) |
//!   for a file: length u64 BE | bytes
//! ```
//!
//! Symbolic links and other special files are left out: a restored link could point
//! anywhere on the next worker.

use std::fs;
use std::io;
use std::os::unix::fs::{PermissionsExt, chown};
use std::path::{Component, Path};

const MAGIC: &[u8; 8] = b"DRVCKPT1";

#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error("the checkpoint directory holds more than {max} bytes")]
    TooLarge { max: u64 },
    #[error("not a checkpoint archive, or a damaged one")]
    Malformed,
    #[error("a checkpoint entry with an unsafe path: {0:?}")]
    UnsafePath(String),
    #[error("checkpoint directory {path}: {source}")]
    Io {
        path: std::path::PathBuf,
        source: io::Error,
    },
}

fn io_at(path: &Path) -> impl FnOnce(io::Error) -> ArchiveError + '_ {
    move |source| ArchiveError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Packs `dir` (which may be missing: an empty archive), refusing more than `max`
/// bytes of file content.
///
/// The agent reads as root what the task (another user) may be changing under it: a
/// file swapped for a link to `/etc/shadow`, or a directory for a link to `/root`,
/// between a check and a read. So nothing is read through a path the task can change:
/// each directory is opened without following links and its entries are reached
/// through `/proc/self/fd/N/<name>`, each opened without following links (and without
/// blocking on a FIFO), and checked to be a regular file once open.
pub fn pack(dir: &Path, max: u64) -> Result<Vec<u8>, ArchiveError> {
    let mut out = MAGIC.to_vec();
    let mut total = 0u64;
    match open_nofollow(dir, libc::O_DIRECTORY) {
        Ok(d) => walk(dir, &d, "", &mut out, &mut total, max)?,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(source) => {
            return Err(ArchiveError::Io {
                path: dir.to_path_buf(),
                source,
            });
        }
    }
    Ok(out)
}

/// Opens `path` read-only without following a link in its last component.
fn open_nofollow(path: &Path, extra: i32) -> io::Result<fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC | extra)
        .open(path)
}

fn walk(
    shown: &Path,
    dir: &fs::File,
    prefix: &str,
    out: &mut Vec<u8>,
    total: &mut u64,
    max: u64,
) -> Result<(), ArchiveError> {
    use std::os::fd::AsRawFd;
    let base = std::path::PathBuf::from(format!("/proc/self/fd/{}", dir.as_raw_fd()));
    let mut names: Vec<String> = fs::read_dir(&base)
        .map_err(io_at(shown))?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .collect();
    names.sort_unstable();
    for name in names {
        let path = base.join(&name);
        let rel = if prefix.is_empty() {
            name.clone()
        } else {
            format!("{prefix}/{name}")
        };
        let at = shown.join(&rel);
        // Not followed: a link is left out, not archived as what it points to.
        let meta = match fs::symlink_metadata(&path) {
            Ok(m) => m,
            // Deleted by the task while we walk: it is simply not in this version.
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(source) => return Err(ArchiveError::Io { path: at, source }),
        };
        if !meta.is_dir() && !meta.is_file() {
            continue;
        }
        let extra = if meta.is_dir() { libc::O_DIRECTORY } else { 0 };
        let file = match open_nofollow(&path, extra) {
            Ok(f) => f,
            // Gone, or swapped for a link (ELOOP) or another kind since: left out.
            Err(e)
                if matches!(e.kind(), io::ErrorKind::NotFound)
                    || matches!(e.raw_os_error(), Some(libc::ELOOP | libc::ENOTDIR)) =>
            {
                continue;
            }
            Err(source) => return Err(ArchiveError::Io { path: at, source }),
        };
        let meta = file.metadata().map_err(io_at(&at))?;
        let mode = meta.permissions().mode() & 0o777;
        if meta.is_dir() {
            entry_header(out, 0, &rel, mode);
            walk(shown, &file, &rel, out, total, max)?;
        } else if meta.is_file() {
            let mut bytes = Vec::new();
            // Read through the open file, bounded: it may grow while we read.
            let left = max.saturating_sub(*total).saturating_add(1);
            io::Read::read_to_end(&mut io::Read::take(&file, left), &mut bytes)
                .map_err(io_at(&at))?;
            *total += bytes.len() as u64;
            if *total > max {
                return Err(ArchiveError::TooLarge { max });
            }
            entry_header(out, 1, &rel, mode);
            out.extend_from_slice(&(bytes.len() as u64).to_be_bytes());
            out.extend_from_slice(&bytes);
        }
    }
    Ok(())
}

fn entry_header(out: &mut Vec<u8>, kind: u8, rel: &str, mode: u32) {
    out.push(kind);
    out.extend_from_slice(&(rel.len() as u32).to_be_bytes());
    out.extend_from_slice(rel.as_bytes());
    out.extend_from_slice(&mode.to_be_bytes());
}

/// Unpacks an archive into `dir` (which exists), giving what it creates to `owner`
/// (uid, gid) when tasks run as another user.
pub fn unpack(bytes: &[u8], dir: &Path, owner: Option<(u32, u32)>) -> Result<(), ArchiveError> {
    let rest = bytes.strip_prefix(MAGIC).ok_or(ArchiveError::Malformed)?;
    let mut r = Reader(rest);
    while !r.0.is_empty() {
        let kind = r.take(1)?[0];
        let len = u32::from_be_bytes(r.array()?) as usize;
        let rel = std::str::from_utf8(r.take(len)?).map_err(|_| ArchiveError::Malformed)?;
        let mode = u32::from_be_bytes(r.array()?) & 0o777;
        let safe = !rel.is_empty()
            && Path::new(rel)
                .components()
                .all(|c| matches!(c, Component::Normal(_)));
        if !safe {
            return Err(ArchiveError::UnsafePath(rel.to_string()));
        }
        let path = dir.join(rel);
        match kind {
            0 => match fs::create_dir(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(source) => return Err(ArchiveError::Io { path, source }),
            },
            1 => {
                let size = u64::from_be_bytes(r.array()?) as usize;
                let data = r.take(size)?;
                fs::write(&path, data).map_err(io_at(&path))?;
            }
            _ => return Err(ArchiveError::Malformed),
        }
        fs::set_permissions(&path, fs::Permissions::from_mode(mode)).map_err(io_at(&path))?;
        if let Some((uid, gid)) = owner {
            chown(&path, Some(uid), Some(gid)).map_err(io_at(&path))?;
        }
    }
    Ok(())
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], ArchiveError> {
        if self.0.len() < n {
            return Err(ArchiveError::Malformed);
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], ArchiveError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_directory_packs_and_unpacks_to_the_same_and_paths_stay_inside() {
        let base = std::env::temp_dir().join(format!("drover-ckpt-archive-{}", std::process::id()));
        let _ = fs::remove_dir_all(&base);
        let (from, to) = (base.join("from"), base.join("to"));
        fs::create_dir_all(from.join("sub")).unwrap();
        fs::create_dir_all(&to).unwrap();
        fs::write(from.join("count"), b"41\n").unwrap();
        fs::write(from.join("sub/log"), b"1\n2\n").unwrap();
        std::os::unix::fs::symlink("/etc/passwd", from.join("link")).unwrap();
        std::os::unix::fs::symlink("/etc", from.join("dirlink")).unwrap();
        let packed = pack(&from, 1 << 20).unwrap();
        assert_eq!(packed, pack(&from, 1 << 20).unwrap(), "deterministic");
        unpack(&packed, &to, None).unwrap();
        assert_eq!(fs::read(to.join("count")).unwrap(), b"41\n");
        assert_eq!(fs::read(to.join("sub/log")).unwrap(), b"1\n2\n");
        assert!(!to.join("link").exists() && !to.join("dirlink").exists());
        assert!(matches!(pack(&from, 3), Err(ArchiveError::TooLarge { .. })));
        // An entry naming a path outside the directory is refused.
        let mut evil = MAGIC.to_vec();
        entry_header(&mut evil, 1, "../x", 0o644);
        evil.extend_from_slice(&0u64.to_be_bytes());
        assert!(matches!(
            unpack(&evil, &to, None),
            Err(ArchiveError::UnsafePath(_))
        ));
        assert!(matches!(
            unpack(b"garbage", &to, None),
            Err(ArchiveError::Malformed)
        ));
        let _ = fs::remove_dir_all(&base);
    }
}
