//! Blobs as files under a local directory: the store every server has without
//! configuration, and what `--object-store file:///path` opens.

use super::{BlobError, BlobKey, BlobMeta};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// Blobs as `<root>/<key>` files. A blob is written to a temporary file beside its final
/// name and renamed into place, so a reader sees a whole blob or none. Every method does
/// blocking file work: the async wrapper ([`super::BlobStore`]) runs them on the
/// blocking pool.
#[derive(Clone, Debug)]
pub struct DirectoryBlobs {
    root: PathBuf,
}

/// Temporary files start with this (no key segment can start with `.`); listings skip
/// them.
const TEMP_PREFIX: &str = ".tmp-";

impl DirectoryBlobs {
    pub fn new(root: PathBuf) -> DirectoryBlobs {
        DirectoryBlobs { root }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn path(&self, key: &BlobKey) -> PathBuf {
        self.root.join(key.as_str())
    }

    fn err(&self, path: &Path) -> impl FnOnce(std::io::Error) -> BlobError + use<> {
        let path = path.to_path_buf();
        move |source| BlobError::Directory { path, source }
    }

    /// Makes the directory if needed and checks that it can be written.
    pub fn check(&self) -> Result<(), BlobError> {
        std::fs::create_dir_all(&self.root).map_err(self.err(&self.root))?;
        let probe = self
            .root
            .join(format!("{TEMP_PREFIX}probe-{}", std::process::id()));
        std::fs::write(&probe, b"").map_err(self.err(&probe))?;
        let _ = std::fs::remove_file(&probe);
        Ok(())
    }

    pub fn put(&self, key: &BlobKey, data: &[u8]) -> Result<(), BlobError> {
        let path = self.path(key);
        let dir = path.parent().unwrap_or(&self.root).to_path_buf();
        std::fs::create_dir_all(&dir).map_err(self.err(&dir))?;
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let tmp = dir.join(format!("{TEMP_PREFIX}{name}-{}", std::process::id()));
        let write = || -> std::io::Result<()> {
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(data)?;
            f.sync_all()?;
            std::fs::rename(&tmp, &path)
        };
        write().map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            BlobError::Directory {
                path: path.clone(),
                source: e,
            }
        })
    }

    /// Up to `max` bytes from `offset`, and the blob's size; `None` if there is no blob.
    pub fn read(
        &self,
        key: &BlobKey,
        offset: u64,
        max: usize,
    ) -> Result<Option<(Vec<u8>, u64)>, BlobError> {
        let path = self.path(key);
        let mut f = match std::fs::File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(self.err(&path)(e)),
        };
        let mut read = || -> std::io::Result<(Vec<u8>, u64)> {
            let size = f.metadata()?.len();
            if offset >= size {
                return Ok((Vec::new(), size));
            }
            f.seek(SeekFrom::Start(offset))?;
            let mut buf = Vec::with_capacity(((size - offset) as usize).min(max));
            (&mut f).take(max as u64).read_to_end(&mut buf)?;
            Ok((buf, size))
        };
        read().map(Some).map_err(self.err(&path))
    }

    /// The blob's size, or `None` if there is none.
    pub fn size(&self, key: &BlobKey) -> Result<Option<u64>, BlobError> {
        let path = self.path(key);
        match std::fs::metadata(&path) {
            Ok(m) if m.is_file() => Ok(Some(m.len())),
            Ok(_) => Ok(None),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(self.err(&path)(e)),
        }
    }

    /// Every blob whose key starts with the segments of `prefix`, sorted by key.
    pub fn list(&self, prefix: &BlobKey) -> Result<Vec<BlobMeta>, BlobError> {
        let mut out = Vec::new();
        let start = self.path(prefix);
        let mut stack = vec![(start, prefix.as_str().to_string())];
        while let Some((path, key)) = stack.pop() {
            let meta = match std::fs::metadata(&path) {
                Ok(m) => m,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(self.err(&path)(e)),
            };
            if meta.is_file() {
                out.push(BlobMeta {
                    key: BlobKey::new(key)?,
                    size: meta.len(),
                });
                continue;
            }
            for entry in std::fs::read_dir(&path).map_err(self.err(&path))? {
                let entry = entry.map_err(self.err(&path))?;
                let name = entry.file_name().to_string_lossy().into_owned();
                if name.starts_with(TEMP_PREFIX) || BlobKey::new(name.clone()).is_err() {
                    continue;
                }
                stack.push((entry.path(), format!("{key}/{name}")));
            }
        }
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }

    /// Removes a blob; one that is not there is not an error.
    pub fn delete(&self, key: &BlobKey) -> Result<(), BlobError> {
        let path = self.path(key);
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(self.err(&path)(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(name: &str) -> DirectoryBlobs {
        let dir = std::env::temp_dir().join(format!(
            "drover-blobs-{name}-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        ));
        DirectoryBlobs::new(dir)
    }

    fn key(k: &str) -> BlobKey {
        BlobKey::new(k).unwrap()
    }

    #[test]
    fn put_read_list_delete() {
        let s = store("roundtrip");
        s.check().unwrap();
        s.put(&key("output/1/1.stdout"), b"hello world").unwrap();
        s.put(&key("output/1/1.stderr"), b"oops").unwrap();
        s.put(&key("output/12/1.stdout"), b"other task").unwrap();

        let (bytes, size) = s.read(&key("output/1/1.stdout"), 6, 100).unwrap().unwrap();
        assert_eq!((bytes.as_slice(), size), (&b"world"[..], 11));
        let (bytes, _) = s.read(&key("output/1/1.stdout"), 0, 5).unwrap().unwrap();
        assert_eq!(bytes, b"hello");
        let (bytes, size) = s.read(&key("output/1/1.stdout"), 50, 5).unwrap().unwrap();
        assert_eq!(
            (bytes.len(), size),
            (0, 11),
            "past the end: nothing, and the size"
        );
        assert!(s.read(&key("output/2/1.stdout"), 0, 5).unwrap().is_none());
        assert_eq!(s.size(&key("output/1/1.stderr")).unwrap(), Some(4));
        assert_eq!(
            s.size(&key("output/1")).unwrap(),
            None,
            "a prefix is no blob"
        );

        // `output/1` lists task 1 only, not task 12 (segments, not characters).
        let listed: Vec<_> = s
            .list(&key("output/1"))
            .unwrap()
            .into_iter()
            .map(|m| (m.key.to_string(), m.size))
            .collect();
        assert_eq!(
            listed,
            [
                ("output/1/1.stderr".to_string(), 4),
                ("output/1/1.stdout".to_string(), 11)
            ]
        );
        assert_eq!(s.list(&key("output")).unwrap().len(), 3);
        assert!(s.list(&key("nothing")).unwrap().is_empty());

        // A second put replaces the blob whole; no temporary file is left behind.
        s.put(&key("output/1/1.stdout"), b"again").unwrap();
        let (bytes, size) = s.read(&key("output/1/1.stdout"), 0, 100).unwrap().unwrap();
        assert_eq!((bytes.as_slice(), size), (&b"again"[..], 5));
        let names: Vec<_> = std::fs::read_dir(s.root().join("output/1"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert!(
            names.iter().all(|n| !n.starts_with(TEMP_PREFIX)),
            "{names:?}"
        );

        s.delete(&key("output/1/1.stdout")).unwrap();
        s.delete(&key("output/1/1.stdout")).unwrap(); // already gone: fine
        assert!(s.read(&key("output/1/1.stdout"), 0, 5).unwrap().is_none());
        let _ = std::fs::remove_dir_all(s.root());
    }

    #[test]
    fn an_unwritable_directory_fails_the_check() {
        // A regular file where the directory should be.
        let s = store("blocked");
        std::fs::write(s.root(), b"not a directory").unwrap();
        let err = s.check().unwrap_err();
        assert!(matches!(err, BlobError::Directory { .. }), "{err}");
        let _ = std::fs::remove_file(s.root());
    }
}
