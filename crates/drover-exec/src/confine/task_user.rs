//! The unprivileged user tasks run as.

use std::fs;
use std::path::PathBuf;

/// A user and group that tasks run as (no supplementary groups).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TaskUser {
    /// As given or as found in `/etc/passwd`, for logs; the numbers are what counts.
    pub name: String,
    pub uid: u32,
    pub gid: u32,
}

#[derive(Debug, thiserror::Error)]
pub enum TaskUserError {
    #[error("task user {name:?}: no such user in /etc/passwd")]
    UnknownUser { name: String },
    #[error("task user's group {name:?}: no such group in /etc/group")]
    UnknownGroup { name: String },
    #[error("task user {uid}: not in /etc/passwd, so its group is unknown: give it as {uid}:GID")]
    NoGroup { uid: u32 },
    #[error("task user {spec:?}: expected NAME, UID, NAME:GROUP or UID:GID")]
    Malformed { spec: String },
    #[error(
        "tasks cannot run as {requested:?} (uid {uid}): switching users needs the agent to run as root (it runs as uid {agent_uid})"
    )]
    NeedsRoot {
        requested: String,
        uid: u32,
        agent_uid: u32,
    },
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// The default: the system's `nobody` (and its primary group, `nogroup` on Debian
/// and Ubuntu). It exists everywhere and owns nothing; see ARCHITECTURE.md,
/// "Confinement of tasks", for why not a dedicated user created on the fly.
pub const DEFAULT_TASK_USER: &str = "nobody";

impl TaskUser {
    /// Resolves `NAME`, `UID`, `NAME:GROUP` or `UID:GID` through `/etc/passwd` and
    /// `/etc/group` (read directly: no NSS modules, so LDAP users need numbers).
    pub fn lookup(spec: &str) -> Result<TaskUser, TaskUserError> {
        let malformed = || TaskUserError::Malformed {
            spec: spec.to_string(),
        };
        let (user, group) = match spec.split_once(':') {
            Some((u, g)) => (u, Some(g)),
            None => (spec, None),
        };
        if user.is_empty() || group.is_some_and(str::is_empty) {
            return Err(malformed());
        }
        let passwd = read_db("/etc/passwd")?;
        let entry = find_entry(&passwd, user, 2);
        let (name, uid, primary) = match (entry, user.parse::<u32>()) {
            (Some(fields), _) => (
                fields[0].to_string(),
                fields[2].parse::<u32>().map_err(|_| malformed())?,
                fields[3].parse::<u32>().ok(),
            ),
            (None, Ok(uid)) => (uid.to_string(), uid, None),
            (None, Err(_)) => {
                return Err(TaskUserError::UnknownUser {
                    name: user.to_string(),
                });
            }
        };
        let gid = match group {
            Some(g) => match g.parse::<u32>() {
                Ok(gid) => gid,
                Err(_) => {
                    let groups = read_db("/etc/group")?;
                    find_entry(&groups, g, 2)
                        .and_then(|f| f[2].parse::<u32>().ok())
                        .ok_or_else(|| TaskUserError::UnknownGroup {
                            name: g.to_string(),
                        })?
                }
            },
            None => primary.ok_or(TaskUserError::NoGroup { uid })?,
        };
        Ok(TaskUser { name, uid, gid })
    }

    /// Who this agent's tasks run as, from the worker's `--task-user` (`None`: not
    /// given). `Ok(None)` means "as the agent itself":
    /// - agent is root, nothing asked: [`DEFAULT_TASK_USER`];
    /// - agent is root, `root` (or uid 0) asked: the agent itself, with a warning;
    /// - agent is not root, nothing asked or its own uid: the agent itself (it cannot
    ///   switch; see [`protect_agent_process`](super::protect_agent_process));
    /// - agent is not root, another user asked: [`TaskUserError::NeedsRoot`].
    pub fn for_agent(requested: Option<&str>) -> Result<Option<TaskUser>, TaskUserError> {
        let agent_uid = crate::sys::euid();
        let user = TaskUser::lookup(requested.unwrap_or(DEFAULT_TASK_USER));
        match (agent_uid, requested) {
            (0, _) => {
                let user = user?;
                if user.uid == 0 {
                    tracing::warn!(
                        "tasks run as root (--task-user {}): a task can read the cluster token, the TLS keys and anything else on this host",
                        user.name
                    );
                    return Ok(None);
                }
                Ok(Some(user))
            }
            (_, None) => {
                tracing::info!(
                    uid = agent_uid,
                    "the agent is not root: tasks run as its own user (they cannot read its environment, but can read its user's files)"
                );
                Ok(None)
            }
            (_, Some(asked)) => {
                let user = user?;
                if user.uid == agent_uid {
                    Ok(None)
                } else {
                    Err(TaskUserError::NeedsRoot {
                        requested: asked.to_string(),
                        uid: user.uid,
                        agent_uid,
                    })
                }
            }
        }
    }
}

fn read_db(path: &str) -> Result<String, TaskUserError> {
    fs::read_to_string(path).map_err(|source| TaskUserError::Read {
        path: PathBuf::from(path),
        source,
    })
}

/// The colon-separated fields of the line whose name (first field) is `key`, or
/// whose id (field `id_field`) is `key` when no name matches.
fn find_entry<'a>(db: &'a str, key: &str, id_field: usize) -> Option<Vec<&'a str>> {
    let entries: Vec<Vec<&str>> = db
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| l.split(':').collect::<Vec<_>>())
        // passwd and group lines both have at least 4 fields.
        .filter(|f| f.len() >= 4)
        .collect();
    entries
        .iter()
        .find(|f| f[0] == key)
        .or_else(|| entries.iter().find(|f| f.get(id_field) == Some(&key)))
        .cloned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_names_and_ids() {
        let db = "root:x:0:0:root:/root:/bin/bash\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n";
        assert_eq!(find_entry(db, "nobody", 2).unwrap()[2], "65534");
        assert_eq!(find_entry(db, "0", 2).unwrap()[0], "root");
        assert!(find_entry(db, "ghost", 2).is_none());
    }

    #[test]
    fn looks_up_the_default_user() {
        let u = TaskUser::lookup("nobody").expect("nobody exists on this host");
        assert_eq!(u.name, "nobody");
        assert_ne!(u.uid, 0);
        assert_ne!(u.gid, 0);
        let n = TaskUser::lookup(&format!("{}:{}", u.uid, u.gid)).unwrap();
        assert_eq!((n.uid, n.gid), (u.uid, u.gid));
        assert!(matches!(
            TaskUser::lookup("no-such-user-xyz"),
            Err(TaskUserError::UnknownUser { .. })
        ));
        assert!(matches!(
            TaskUser::lookup("nobody:no-such-group-xyz"),
            Err(TaskUserError::UnknownGroup { .. })
        ));
        assert!(matches!(
            TaskUser::lookup("4000000"),
            Err(TaskUserError::NoGroup { .. })
        ));
        assert!(matches!(
            TaskUser::lookup("nobody:"),
            Err(TaskUserError::Malformed { .. })
        ));
    }
}
