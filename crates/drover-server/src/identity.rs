//! Who this server is in its group, kept in `<data_dir>/member.json`.
//!
//! A node id must never change under a server's log: its vote and the others' view of
//! the membership are keyed by it. With `--peers` the id comes from the peer list, so
//! the file is a check (a reordered or edited list would silently swap identities);
//! a server that joined later got its id from the leader and has nothing else to
//! recover it from.

use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::{Path, PathBuf};

/// Where this server stands in the group.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MemberState {
    /// One of the group (or a server alone), as far as this server knows.
    Member,
    /// Taken out of the group by a membership change: it must take no part again.
    Removed,
}

/// The content of `member.json`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerIdentity {
    pub node_id: u64,
    pub state: MemberState,
    /// The id came from a leader (the server joined a running group), not from
    /// `--peers` or `--node-id`: a restart finds its group with no flag.
    #[serde(default)]
    pub joined: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("cannot read or write {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not a member or join file: {source}")]
    Corrupt {
        path: PathBuf,
        source: serde_json::Error,
    },
}

impl ServerIdentity {
    pub fn path(data_dir: &Path) -> PathBuf {
        data_dir.join("member.json")
    }

    /// The identity stored in a data directory, if any.
    pub fn load(data_dir: &Path) -> Result<Option<ServerIdentity>, IdentityError> {
        read_json(&ServerIdentity::path(data_dir))
    }

    /// Writes it durably (temporary file, fsync, rename): a crash leaves the old
    /// file or the new one, never half of one.
    pub fn store(&self, data_dir: &Path) -> Result<(), IdentityError> {
        let body = serde_json::to_vec_pretty(self).unwrap_or_default();
        write_durably(&ServerIdentity::path(data_dir), &body)
    }
}

/// Reads a small JSON file of the data directory; `None` if there is none.
pub(crate) fn read_json<T: serde::de::DeserializeOwned>(
    path: &Path,
) -> Result<Option<T>, IdentityError> {
    let text = match std::fs::read(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(IdentityError::Io {
                path: path.to_path_buf(),
                source,
            });
        }
    };
    serde_json::from_slice(&text)
        .map(Some)
        .map_err(|source| IdentityError::Corrupt {
            path: path.to_path_buf(),
            source,
        })
}

/// Replaces the file at `path` durably (temporary file, fsync, rename, directory
/// fsync): a crash leaves the old content or the new, never half of it.
pub(crate) fn write_durably(path: &Path, body: &[u8]) -> Result<(), IdentityError> {
    let io = |source| IdentityError::Io {
        path: path.to_path_buf(),
        source,
    };
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::File::create(&tmp).map_err(io)?;
    f.write_all(body).map_err(io)?;
    f.sync_all().map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)?;
    if let Some(dir) = path.parent()
        && let Ok(dir) = std::fs::File::open(dir)
    {
        let _ = dir.sync_all();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("drover-identity-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn an_identity_survives_a_store_and_a_load() {
        let dir = temp_dir("roundtrip");
        assert_eq!(ServerIdentity::load(&dir).unwrap(), None);
        let id = ServerIdentity {
            node_id: 4,
            state: MemberState::Member,
            joined: true,
        };
        id.store(&dir).unwrap();
        assert_eq!(ServerIdentity::load(&dir).unwrap(), Some(id.clone()));
        let removed = ServerIdentity {
            state: MemberState::Removed,
            ..id
        };
        removed.store(&dir).unwrap();
        assert_eq!(ServerIdentity::load(&dir).unwrap(), Some(removed));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_damaged_member_file_is_an_error_not_a_fresh_start() {
        let dir = temp_dir("corrupt");
        std::fs::write(ServerIdentity::path(&dir), b"{\"node_id\": ").unwrap();
        assert!(matches!(
            ServerIdentity::load(&dir),
            Err(IdentityError::Corrupt { .. })
        ));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
