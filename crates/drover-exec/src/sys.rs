//! The few system calls the standard library does not offer, behind safe functions.
//!
//! This is the only module of the crate that uses `unsafe`: `wait4` (for the exact
//! resource usage of one child and its reaped descendants), `pidfd_open` (to learn
//! that one child exited without a process-wide SIGCHLD handler or a thread per
//! child), `kill`, `statvfs`/`sysconf`, `prctl` (non-dumpable) and the user switch
//! run in a task's child process between fork and exec. Each wrapper owns its buffers and checks
//! the return value, so callers never see raw pointers.
#![allow(unsafe_code)]

use std::ffi::CString;
use std::io;
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::OnceLock;
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

/// What `wait4` reports about a reaped child.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct ChildRusage {
    pub user_us: u64,
    pub system_us: u64,
    /// Largest resident set of the child or of any descendant it waited for, bytes.
    pub max_rss_bytes: u64,
    /// Storage-layer reads/writes (the kernel's I/O accounting), in 512-byte blocks.
    pub in_blocks: u64,
    pub out_blocks: u64,
}

/// How a reaped child ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ExitStatus {
    Code(i32),
    Signal(i32),
}

/// Opens a pidfd for `pid`; it becomes readable when the process exits.
pub(crate) fn pidfd_open(pid: i32) -> io::Result<OwnedFd> {
    // SAFETY: pidfd_open takes two integers and returns a new fd or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    let fd = i32::try_from(fd).map_err(|_| io::Error::other("pidfd out of range"))?;
    // SAFETY: the kernel just gave us this descriptor; nobody else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Reaps `pid` if it has exited (`WNOHANG`), returning its status and usage.
pub(crate) fn wait4_nohang(pid: i32) -> io::Result<Option<(ExitStatus, ChildRusage)>> {
    let mut status: libc::c_int = 0;
    // SAFETY: rusage is plain old data; all-zero is a valid value.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: both pointers point to live, writable locals.
        let r = unsafe { libc::wait4(pid, &mut status, libc::WNOHANG, &mut usage) };
        if r == 0 {
            return Ok(None);
        }
        if r < 0 {
            let err = io::Error::last_os_error();
            if err.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(err);
        }
        break;
    }
    let exit = if libc::WIFSIGNALED(status) {
        ExitStatus::Signal(libc::WTERMSIG(status))
    } else {
        ExitStatus::Code(libc::WEXITSTATUS(status))
    };
    let tv_us =
        |tv: libc::timeval| (tv.tv_sec.max(0) as u64) * 1_000_000 + tv.tv_usec.max(0) as u64;
    Ok(Some((
        exit,
        ChildRusage {
            user_us: tv_us(usage.ru_utime),
            system_us: tv_us(usage.ru_stime),
            max_rss_bytes: (usage.ru_maxrss.max(0) as u64) * 1024,
            in_blocks: usage.ru_inblock.max(0) as u64,
            out_blocks: usage.ru_oublock.max(0) as u64,
        },
    )))
}

/// Sends `signal` to `pid`. `Ok(false)` when the process does not exist.
pub(crate) fn kill(pid: i32, signal: i32) -> io::Result<bool> {
    if pid <= 0 {
        // 0 and negative pids address groups or everything; never do that by accident.
        return Err(io::Error::from(io::ErrorKind::InvalidInput));
    }
    // SAFETY: kill takes two integers.
    let r = unsafe { libc::kill(pid, signal) };
    check_kill(r)
}

/// Sends `signal` to every process in process group `pgid`.
pub(crate) fn killpg(pgid: i32, signal: i32) -> io::Result<bool> {
    if pgid <= 1 {
        return Err(io::Error::from(io::ErrorKind::InvalidInput));
    }
    // SAFETY: killpg takes two integers.
    let r = unsafe { libc::killpg(pgid, signal) };
    check_kill(r)
}

fn check_kill(r: libc::c_int) -> io::Result<bool> {
    if r == 0 {
        return Ok(true);
    }
    let err = io::Error::last_os_error();
    if err.raw_os_error() == Some(libc::ESRCH) {
        Ok(false)
    } else {
        Err(err)
    }
}

/// Size and free space of the file system holding `path`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct FsSpace {
    pub total_bytes: u64,
    /// Free space usable by unprivileged users.
    pub available_bytes: u64,
}

pub(crate) fn statvfs(path: &Path) -> io::Result<FsSpace> {
    let c = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: statvfs is plain old data.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: c is a valid NUL-terminated string; st is a writable local.
    let r = unsafe { libc::statvfs(c.as_ptr(), &mut st) };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    let frsize = st.f_frsize as u64;
    Ok(FsSpace {
        total_bytes: (st.f_blocks as u64).saturating_mul(frsize),
        available_bytes: (st.f_bavail as u64).saturating_mul(frsize),
    })
}

/// Bytes per memory page (for RSS in /proc/<pid>/stat).
pub(crate) fn page_size() -> u64 {
    static PAGE: OnceLock<u64> = OnceLock::new();
    *PAGE.get_or_init(|| {
        // SAFETY: sysconf takes an integer.
        let v = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
        if v > 0 { v as u64 } else { 4096 }
    })
}

/// Clock ticks per second (for CPU times in /proc/<pid>/stat and /proc/stat).
pub(crate) fn clock_ticks() -> u64 {
    static TICKS: OnceLock<u64> = OnceLock::new();
    *TICKS.get_or_init(|| {
        // SAFETY: sysconf takes an integer.
        let v = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
        if v > 0 { v as u64 } else { 100 }
    })
}

/// Registers a pidfd with the tokio reactor.
pub(crate) fn async_pidfd(fd: OwnedFd) -> io::Result<AsyncFd<OwnedFd>> {
    // SAFETY: the OwnedFd owns a valid descriptor, and the AsyncFd owns the OwnedFd,
    // so it is neither replaced nor closed while registered.
    unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE) }.map_err(|e| e.into())
}

/// The effective user id of this process.
pub(crate) fn euid() -> u32 {
    // SAFETY: geteuid takes no arguments and cannot fail.
    unsafe { libc::geteuid() }
}

/// `prctl(PR_SET_DUMPABLE, 0)`, see [`crate::confine::protect_agent_process`].
pub(crate) fn set_non_dumpable() -> io::Result<()> {
    // SAFETY: prctl with PR_SET_DUMPABLE takes integers only.
    let r = unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Whether `path` carries extended attributes (ACLs included). A file system
/// without them (ENOTSUP) carries none.
pub(crate) fn has_xattrs(path: &Path) -> bool {
    let Ok(c) = CString::new(path.as_os_str().as_bytes()) else {
        return true;
    };
    // SAFETY: a NUL-terminated path and a null buffer of size 0 (asks for the size).
    let n = unsafe { libc::llistxattr(c.as_ptr(), std::ptr::null_mut(), 0) };
    if n < 0 {
        return io::Error::last_os_error().raw_os_error() != Some(libc::ENOTSUP);
    }
    n > 0
}

/// `rename` that fails with `AlreadyExists` instead of replacing an empty `to`.
pub(crate) fn rename_no_replace(from: &Path, to: &Path) -> io::Result<()> {
    let (Ok(f), Ok(t)) = (
        CString::new(from.as_os_str().as_bytes()),
        CString::new(to.as_os_str().as_bytes()),
    ) else {
        return Err(io::Error::from(io::ErrorKind::InvalidInput));
    };
    // SAFETY: two NUL-terminated paths, relative to the working directory.
    let r = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            f.as_ptr(),
            libc::AT_FDCWD,
            t.as_ptr(),
            libc::RENAME_NOREPLACE,
        )
    };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Sets extended attribute `name` on `path` (tests).
#[cfg(test)]
pub(crate) fn set_xattr(path: &Path, name: &str, value: &[u8]) -> io::Result<()> {
    let (Ok(p), Ok(n)) = (
        CString::new(path.as_os_str().as_bytes()),
        CString::new(name),
    ) else {
        return Err(io::Error::from(io::ErrorKind::InvalidInput));
    };
    // SAFETY: NUL-terminated strings and a value with its length.
    let r = unsafe {
        libc::setxattr(
            p.as_ptr(),
            n.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Gives the calling thread a working directory (and umask, root) of its own, so that
/// a `chdir` on it leaves the agent's other threads where they are.
pub(crate) fn unshare_thread_fs() -> io::Result<()> {
    // SAFETY: unshare takes a flag and touches no memory of ours.
    if unsafe { libc::unshare(libc::CLONE_FS) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Makes the calling thread, and only it, `uid`:`gid` with no supplementary groups:
/// real, effective and saved ids alike, so neither it nor a child it starts can
/// return to the agent's. Raw system calls: glibc's wrappers would change every
/// thread of the process.
pub(crate) fn become_user_on_this_thread(uid: u32, gid: u32) -> io::Result<()> {
    // SAFETY: three system calls with integer arguments and a null list (no groups).
    let failed = unsafe {
        libc::syscall(libc::SYS_setgroups, 0, std::ptr::null::<libc::gid_t>()) != 0
            || libc::syscall(libc::SYS_setresgid, gid, gid, gid) != 0
            || libc::syscall(libc::SYS_setresuid, uid, uid, uid) != 0
    };
    if failed {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Makes the child of `cmd` drop to `uid`:`gid` with no supplementary groups, right
/// before exec. std runs this after its own `chdir` (still as the agent), so the
/// task starts in its directory even when the directories above it are closed to
/// its user. (std's `uid()`/`gid()` would switch before the `chdir`.) Either way std
/// then forks instead of using posix_spawn.
pub(crate) fn switch_user_before_exec(cmd: &mut std::process::Command, uid: u32, gid: u32) {
    use std::os::unix::process::CommandExt;
    // SAFETY: the closure runs in the forked child and only makes three system
    // calls (async-signal-safe), touching no memory but its two captured integers.
    unsafe {
        cmd.pre_exec(move || {
            // Groups first: after setuid we could no longer drop root's groups.
            if libc::setgroups(0, std::ptr::null()) != 0
                || libc::setgid(gid) != 0
                || libc::setuid(uid) != 0
            {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// The calling thread's id.
pub(crate) fn gettid() -> i32 {
    // SAFETY: gettid takes no arguments and cannot fail.
    unsafe { libc::gettid() }
}

/// The agent's own (real) uid and gid.
pub(crate) fn own_ids() -> (u32, u32) {
    // SAFETY: getuid and getgid cannot fail and touch no memory.
    unsafe { (libc::getuid(), libc::getgid()) }
}
