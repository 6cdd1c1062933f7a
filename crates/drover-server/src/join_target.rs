//! The group a server asked to join, kept in `<data_dir>/join.json` from the moment
//! it asks until the group has made it a voter.
//!
//! Joining takes several steps (ask, be offered an id, start raft, catch up as a
//! learner, become a voter), and the server may die between any two. Without this
//! file a restart without `--join ADDR` would not know whom to ask: before it was
//! offered an id it would start as a server alone (a group of its own), and after it
//! would wait for ever for a leader that gave up on it (the leader's change ends with
//! the asking connection, or when the catch-up times out). With it, a restart resumes
//! the join by itself; asking again is harmless, since the leader's add is idempotent
//! (a voter stays as it is, a learner is promoted, and an id already taken is kept).

use crate::identity::{IdentityError, read_json, write_durably};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JoinTarget {
    /// The member asked (`--join ADDRESS`): any member passes the request to the leader.
    pub address: String,
}

impl JoinTarget {
    pub fn path(data_dir: &Path) -> PathBuf {
        data_dir.join("join.json")
    }

    /// The join under way, if any.
    pub fn load(data_dir: &Path) -> Result<Option<JoinTarget>, IdentityError> {
        read_json(&JoinTarget::path(data_dir))
    }

    /// Remembers the join durably, before the first request goes out.
    pub fn store(&self, data_dir: &Path) -> Result<(), IdentityError> {
        let body = serde_json::to_vec_pretty(self).unwrap_or_default();
        write_durably(&JoinTarget::path(data_dir), &body)
    }

    /// The join is done (or can never succeed): a restart asks no more.
    pub fn clear(data_dir: &Path) -> Result<(), IdentityError> {
        let path = JoinTarget::path(data_dir);
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(IdentityError::Io { path, source }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_join_target_is_remembered_until_cleared() {
        let dir = std::env::temp_dir().join(format!("drover-join-target-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        assert_eq!(JoinTarget::load(&dir).unwrap(), None);
        let target = JoinTarget {
            address: "10.0.0.1:7070".into(),
        };
        target.store(&dir).unwrap();
        assert_eq!(JoinTarget::load(&dir).unwrap(), Some(target));
        JoinTarget::clear(&dir).unwrap();
        assert_eq!(JoinTarget::load(&dir).unwrap(), None);
        JoinTarget::clear(&dir).unwrap();
        let _ = std::fs::remove_dir_all(&dir);
    }
}
