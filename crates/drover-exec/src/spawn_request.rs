//! A task's command with where and as whom it starts, and the two ways to start it.
//!
//! Why two: switching to the task user in a `pre_exec` hook (the portable way) makes
//! std fork the whole agent instead of using `posix_spawn` (a vfork). A fork copies the
//! agent's page tables, and every page the agent writes afterwards faults and is copied
//! while the child lives: measured with `perf` on a worker running 4,000 × `/bin/true`
//! as a task user, `_Fork` and those copy-on-write faults (with the TLB shootdowns they
//! send to the other core) took about a third of the agent's CPU.
//!
//! On Linux a user, its groups and the working directory belong to a thread, not to the
//! process, once that thread asks for it (`unshare(CLONE_FS)`; raw `setres[ug]id`
//! calls, which glibc would otherwise apply to every thread). A thread that exists for
//! one spawn (an armed spawner, `cgroup/spawner.rs`) can therefore become the task user
//! in its own working directory and `posix_spawn` from there: the child inherits
//! exactly those credentials and that directory, the agent's other threads keep theirs,
//! and the thread ends right after.
use crate::sys;
use std::io;
use std::path::PathBuf;
use std::process::{Child, Command};

/// What to start: the command (everything but its directory and user), its working
/// directory, and the user (uid, gid) it runs as (`None`: the agent's own).
#[derive(Debug)]
pub(crate) struct SpawnRequest {
    pub(crate) cmd: Command,
    pub(crate) cwd: PathBuf,
    pub(crate) user: Option<(u32, u32)>,
}

impl SpawnRequest {
    /// Starts the command from the calling thread by changing that thread's directory
    /// and credentials first. Only for a thread that ends right after (an armed
    /// spawner's): it keeps what it changed.
    pub(crate) fn spawn_from_disposable_thread(mut self) -> io::Result<Child> {
        let Some((uid, gid)) = self.user else {
            self.cmd.current_dir(&self.cwd);
            return self.cmd.spawn();
        };
        // The directory is entered while this thread is still the agent: the
        // directories above an attempt's may be closed to the task user.
        sys::unshare_thread_fs()?;
        std::env::set_current_dir(&self.cwd)?;
        sys::become_user_on_this_thread(uid, gid)?;
        self.cmd.spawn()
    }

    /// Starts the command from any thread: the user switch runs in the child, after
    /// std's `chdir` (so std forks).
    pub(crate) fn spawn_forking(mut self) -> io::Result<Child> {
        self.cmd.current_dir(&self.cwd);
        if let Some((uid, gid)) = self.user {
            sys::switch_user_before_exec(&mut self.cmd, uid, gid);
        }
        self.cmd.spawn()
    }
}
