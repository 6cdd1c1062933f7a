//! Where a task may run: inside its attempt directory, or in a host path the worker
//! allows. Resolved by the worker (symlinks and all) right before the start.

use super::TaskUser;
use std::fs;
use std::io;
use std::os::unix::fs::{PermissionsExt, chown};
use std::path::{Component, Path, PathBuf};

/// Why a task's working directory was refused; the text becomes the attempt's
/// spawn failure message.
#[derive(Debug, thiserror::Error)]
pub(crate) enum WorkdirRefused {
    #[error("working directory {requested}: leads out of the attempt's directory (to {resolved})")]
    Escapes {
        requested: PathBuf,
        resolved: PathBuf,
    },
    #[error("working directory {requested}: '..' is not allowed")]
    ParentComponent { requested: PathBuf },
    #[error(
        "working directory {requested} (resolved: {resolved}) is not inside a path this worker allows (--allow-path)"
    )]
    NotAllowed {
        requested: PathBuf,
        resolved: PathBuf,
    },
    #[error("working directory {path} does not exist or is not a directory")]
    Missing { path: PathBuf },
    #[error("working directory {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// The directory a task runs in. `requested` relative: below `attempt_dir` (which
/// must exist), created as needed and owned by `owner`; absolute: an existing
/// directory inside one of `allowed`. Both are compared after resolving symlinks,
/// so neither `..` nor a symlink (one the task left in a re-used directory, or one
/// in an allowed host path) leads elsewhere.
///
/// What this cannot stop: a process that swaps a component of an *allowed host
/// path* for a symlink between this check and the task's `chdir`. Only allow paths
/// that tasks cannot rename things in, or that are not shared between tasks.
pub(crate) fn resolve_workdir(
    attempt_dir: &Path,
    requested: &Path,
    allowed: &[PathBuf],
    owner: Option<&TaskUser>,
) -> Result<PathBuf, WorkdirRefused> {
    if requested
        .components()
        .any(|c| matches!(c, Component::ParentDir))
    {
        return Err(WorkdirRefused::ParentComponent {
            requested: requested.to_path_buf(),
        });
    }
    if requested.is_absolute() {
        let resolved = canonical(requested)?;
        let inside = allowed
            .iter()
            .filter_map(|a| fs::canonicalize(a).ok())
            .any(|a| resolved.starts_with(&a));
        if !inside {
            return Err(WorkdirRefused::NotAllowed {
                requested: requested.to_path_buf(),
                resolved,
            });
        }
        return Ok(resolved);
    }
    let base = canonical(attempt_dir)?;
    let mut dir = base.clone();
    for part in requested.components() {
        let Component::Normal(name) = part else {
            continue; // `.`
        };
        dir.push(name);
        match fs::create_dir(&dir) {
            Ok(()) => {
                if let Some(u) = owner {
                    chown(&dir, Some(u.uid), Some(u.gid)).map_err(|source| WorkdirRefused::Io {
                        path: dir.clone(),
                        source,
                    })?;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(source) => return Err(WorkdirRefused::Io { path: dir, source }),
        }
    }
    let resolved = canonical(&dir)?;
    if !resolved.starts_with(&base) {
        return Err(WorkdirRefused::Escapes {
            requested: requested.to_path_buf(),
            resolved,
        });
    }
    Ok(resolved)
}

fn canonical(p: &Path) -> Result<PathBuf, WorkdirRefused> {
    match fs::canonicalize(p) {
        Ok(r) if r.is_dir() => Ok(r),
        Ok(_) => Err(WorkdirRefused::Missing {
            path: p.to_path_buf(),
        }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Err(WorkdirRefused::Missing {
            path: p.to_path_buf(),
        }),
        Err(source) => Err(WorkdirRefused::Io {
            path: p.to_path_buf(),
            source,
        }),
    }
}

/// Hands a fresh attempt directory to the task's user: owned by it, mode 0700, so
/// that other users (the agent aside: it is root) cannot look inside.
pub(crate) fn prepare_attempt_dir(dir: &Path, owner: &TaskUser) -> io::Result<()> {
    chown(dir, Some(owner.uid), Some(owner.gid))?;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
}

/// Sets the driver's own directories for tasks running as `user`: the work root
/// and `attempts/` searchable but not listable (0711: a task reaches its own
/// directory by its path, cannot see the others'), `logs/` closed (0700: output
/// files are the agent's). Warns when a directory above the work root is closed to
/// `user`: tasks still start in their directory (the agent enters it for them), but
/// cannot use its absolute path (`$DROVER_WORKDIR`).
pub(crate) fn open_work_root_to(
    user: &TaskUser,
    work_root: &Path,
    attempts: &Path,
    logs: &Path,
) -> Result<(), crate::ExecError> {
    let set = |p: &Path, mode: u32| {
        fs::set_permissions(p, fs::Permissions::from_mode(mode))
            .map_err(|e| crate::ExecError::io("setting the mode of", p, e))
    };
    set(work_root, 0o711)?;
    set(attempts, 0o711)?;
    set(logs, 0o700)?;
    let abs = std::path::absolute(work_root).unwrap_or_else(|_| work_root.to_path_buf());
    for dir in abs.ancestors().skip(1) {
        if let Ok(meta) = fs::metadata(dir)
            && !searchable_by(&meta, user)
        {
            tracing::warn!(
                dir = %dir.display(),
                user = %user.name,
                "tasks run as {} cannot pass through {}: they start in their directory but cannot use its absolute path; give the worker a data directory they can reach (e.g. under /var/lib)",
                user.name,
                dir.display()
            );
            break;
        }
    }
    Ok(())
}

fn searchable_by(meta: &fs::Metadata, user: &TaskUser) -> bool {
    use std::os::unix::fs::MetadataExt;
    let mode = meta.mode();
    if meta.uid() == user.uid {
        mode & 0o100 != 0
    } else if meta.gid() == user.gid {
        mode & 0o010 != 0
    } else {
        mode & 0o001 != 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    struct Scratch(PathBuf);
    impl Scratch {
        fn new(name: &str) -> Scratch {
            let p = std::env::temp_dir()
                .join(format!("drover-exec-workdir-{name}-{}", std::process::id()));
            let _ = fs::remove_dir_all(&p);
            fs::create_dir_all(p.join("attempt")).unwrap();
            fs::create_dir_all(p.join("data/inner")).unwrap();
            fs::create_dir_all(p.join("private")).unwrap();
            Scratch(p)
        }
    }
    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn relative_directories_are_created_inside_the_attempt() {
        let s = Scratch::new("rel");
        let attempt = s.0.join("attempt");
        let got = resolve_workdir(&attempt, Path::new("a/./b"), &[], None).unwrap();
        assert_eq!(got, fs::canonicalize(&attempt).unwrap().join("a/b"));
        assert!(got.is_dir());
        let same = resolve_workdir(&attempt, Path::new("."), &[], None).unwrap();
        assert_eq!(same, fs::canonicalize(&attempt).unwrap());
    }

    #[test]
    fn dot_dot_is_refused_before_anything_is_touched() {
        let s = Scratch::new("dotdot");
        let attempt = s.0.join("attempt");
        for bad in ["..", "a/../..", "x/..", "/tmp/../etc"] {
            assert!(
                matches!(
                    resolve_workdir(&attempt, Path::new(bad), std::slice::from_ref(&s.0), None),
                    Err(WorkdirRefused::ParentComponent { .. })
                ),
                "{bad}"
            );
        }
        assert!(!attempt.join("a").exists());
    }

    #[test]
    fn a_symlink_out_of_the_attempt_is_refused() {
        let s = Scratch::new("link");
        let attempt = s.0.join("attempt");
        symlink(s.0.join("private"), attempt.join("out")).unwrap();
        symlink("/", attempt.join("root")).unwrap();
        for link in ["out", "root", "out/deeper"] {
            let r = resolve_workdir(&attempt, Path::new(link), &[], None);
            assert!(
                matches!(r, Err(WorkdirRefused::Escapes { .. })),
                "{link}: {r:?}"
            );
        }
        // A symlink that stays inside is fine.
        fs::create_dir(attempt.join("real")).unwrap();
        symlink("real", attempt.join("alias")).unwrap();
        let ok = resolve_workdir(&attempt, Path::new("alias"), &[], None).unwrap();
        assert!(ok.ends_with("attempt/real"), "{ok:?}");
    }

    #[test]
    fn absolute_paths_need_an_allowed_prefix_after_resolution() {
        let s = Scratch::new("abs");
        let attempt = s.0.join("attempt");
        let data = s.0.join("data");
        let allowed = vec![data.clone()];
        // Not allowed at all.
        assert!(matches!(
            resolve_workdir(&attempt, &s.0.join("private"), &allowed, None),
            Err(WorkdirRefused::NotAllowed { .. })
        ));
        assert!(matches!(
            resolve_workdir(&attempt, Path::new("/etc"), &[], None),
            Err(WorkdirRefused::NotAllowed { .. })
        ));
        // Inside, directly and below.
        assert_eq!(
            resolve_workdir(&attempt, &data.join("inner"), &allowed, None).unwrap(),
            fs::canonicalize(data.join("inner")).unwrap()
        );
        // A symlink inside the allowed path that leads out is judged by its target.
        symlink(s.0.join("private"), data.join("escape")).unwrap();
        assert!(matches!(
            resolve_workdir(&attempt, &data.join("escape"), &allowed, None),
            Err(WorkdirRefused::NotAllowed { .. })
        ));
        // A prefix that is only a string prefix is not inside (`data` vs `data2`).
        fs::create_dir(s.0.join("data2")).unwrap();
        assert!(matches!(
            resolve_workdir(&attempt, &s.0.join("data2"), &allowed, None),
            Err(WorkdirRefused::NotAllowed { .. })
        ));
        assert!(matches!(
            resolve_workdir(&attempt, &data.join("nope"), &allowed, None),
            Err(WorkdirRefused::Missing { .. })
        ));
    }
}
