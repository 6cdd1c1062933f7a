//! The cluster token: the bootstrap admin credential of a cluster, and the peer token
//! (the servers' credential among themselves), both kept in files of mode 0600.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The shared secret of a cluster.
#[derive(Clone)]
pub struct ClusterToken(Arc<str>);

impl std::fmt::Debug for ClusterToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClusterToken(…)")
    }
}

impl ClusterToken {
    pub fn new(token: &str) -> ClusterToken {
        ClusterToken(Arc::from(token.trim()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The token file of a data directory.
    pub fn path(data_dir: &Path) -> PathBuf {
        data_dir.join("token")
    }

    /// The peer token file of a data directory (servers' credential among themselves).
    pub fn peer_path(data_dir: &Path) -> PathBuf {
        data_dir.join("peer_token")
    }

    /// Reads a token file if it exists and is not empty.
    pub fn load(path: &Path) -> std::io::Result<Option<ClusterToken>> {
        match std::fs::read_to_string(path) {
            Ok(text) if !text.trim().is_empty() => Ok(Some(ClusterToken::new(&text))),
            Ok(_) => Ok(None),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Writes a token given on the command line to a token file (mode 0600), so a
    /// restart without the flag uses the same one.
    pub fn store(&self, path: &Path) -> std::io::Result<()> {
        if ClusterToken::load(path)?.is_some_and(|t| t.matches(self.as_str())) {
            return Ok(());
        }
        write_secret(path, self.as_str())
    }

    /// Reads the token from the data directory, creating it (mode 0600) on first start.
    pub fn load_or_create(data_dir: &Path) -> std::io::Result<ClusterToken> {
        ClusterToken::load_or_create_at(&ClusterToken::path(data_dir))
    }

    /// Reads the token file at `path`, creating it (mode 0600) if it is missing.
    pub fn load_or_create_at(path: &Path) -> std::io::Result<ClusterToken> {
        let path = path.to_path_buf();
        match std::fs::read_to_string(&path) {
            Ok(text) if !text.trim().is_empty() => {
                let mode = std::fs::metadata(&path)?.permissions().mode();
                if mode & 0o077 != 0 {
                    tracing::warn!(path = %path.display(), "the token file is readable by others; fixing its mode to 0600");
                    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
                }
                Ok(ClusterToken::new(&text))
            }
            Ok(_) => ClusterToken::create(&path),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => ClusterToken::create(&path),
            Err(e) => Err(e),
        }
    }

    fn create(path: &Path) -> std::io::Result<ClusterToken> {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes).map_err(|e| std::io::Error::other(e.to_string()))?;
        let token: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        write_secret(path, &token)?;
        Ok(ClusterToken::new(&token))
    }

    /// Compares in time independent of where the strings differ.
    pub fn matches(&self, presented: &str) -> bool {
        let a = self.0.as_bytes();
        let b = presented.as_bytes();
        if a.len() != b.len() {
            return false;
        }
        a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
    }
}

fn write_secret(path: &Path, token: &str) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(token.as_bytes())?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_is_created_once_with_mode_0600() {
        let dir = std::env::temp_dir().join(format!("drover-token-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let t1 = ClusterToken::load_or_create(&dir).unwrap();
        let t2 = ClusterToken::load_or_create(&dir).unwrap();
        assert_eq!(t1.as_str(), t2.as_str());
        assert_eq!(t1.as_str().len(), 64);
        let mode = std::fs::metadata(ClusterToken::path(&dir))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(t1.matches(t1.as_str()));
        assert!(!t1.matches("nope"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
