//! One attempt's cgroups: limits, counters, and killing everything inside.

use super::{AttemptLimits, Controller, read_u64};
use crate::sys;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};

/// [`AttemptCgroup::limit`] value for "no limit".
const NO_LIMIT: u64 = u64::MAX;
/// The CFS period written into every new attempt cgroup (the kernel's default, made
/// explicit so the quota's arithmetic does not depend on what a parent set).
const CFS_PERIOD_US: u64 = 100_000;
/// The kernel refuses a quota below 1 ms.
const CFS_MIN_QUOTA_US: u64 = 1_000;

/// One attempt's cgroup directories.
#[derive(Debug)]
pub(crate) struct AttemptCgroup {
    pub(super) dirs: Vec<(Controller, PathBuf)>,
    /// The memory limit currently set ([`NO_LIMIT`] for none), to skip rewriting it.
    limit: AtomicU64,
    /// The CFS quota currently set, µs per [`CFS_PERIOD_US`] ([`NO_LIMIT`] for none;
    /// a new cgroup starts there), to skip rewriting it: most tasks ask for the same.
    cpu_quota: AtomicU64,
    /// `oom_kill` count when the current attempt began (the counter cannot be reset).
    oom_base: AtomicU64,
    /// Whether it was ever frozen (then its state is checked before reuse).
    pub(super) froze: AtomicBool,
    /// `max` of pids.events (forks refused at the limit) when the attempt began.
    pids_refused_base: AtomicU64,
    /// Spawner threads of the agent inside right now (see `spawner.rs`): one waits
    /// here before a launch and leaves just after it (a count, not a flag: a cgroup
    /// can go back to the pool, and be entered by the next spawner, before the last
    /// one is out).
    spawners_inside: AtomicU32,
    /// A pid besides our own never listed by [`procs`](Self::procs), so never
    /// signalled (0: none): the worker agent's, in its reaper.
    spare_pid: i32,
}

impl AttemptCgroup {
    pub(super) fn new(dirs: Vec<(Controller, PathBuf)>, spare_pid: Option<u32>) -> Self {
        AttemptCgroup {
            dirs,
            spare_pid: spare_pid.map_or(0, |p| p as i32),
            limit: AtomicU64::new(NO_LIMIT),
            cpu_quota: AtomicU64::new(NO_LIMIT),
            oom_base: AtomicU64::new(0),
            froze: AtomicBool::new(false),
            pids_refused_base: AtomicU64::new(0),
            spawners_inside: AtomicU32::new(0),
        }
    }

    pub(super) fn set_spawner_inside(&self, inside: bool) {
        if inside {
            self.spawners_inside.fetch_add(1, Ordering::AcqRel);
        } else {
            self.spawners_inside.fetch_sub(1, Ordering::AcqRel);
        }
    }

    /// True while a spawner thread is inside (for a few milliseconds after a launch).
    pub(crate) fn spawner_inside(&self) -> bool {
        self.spawners_inside.load(Ordering::Acquire) > 0
    }

    /// Sets (or lifts) `pids.max`: how many processes and threads may be inside at once.
    pub(super) fn set_pids_limit(&self, limit: Option<u64>) -> io::Result<()> {
        let Some(dir) = self.dir(Controller::Pids) else {
            return Ok(());
        };
        // Written every time, not skipped by a cached value: another object for the
        // same directory (a reaper's or a later driver's `CgroupRoot::existing`, killing
        // what it takes for leftovers) may have set 0 behind this one's back, and a
        // cgroup left at 0 fails every spawn with EAGAIN. A write to pids.max is cheap
        // (unlike cgroup.procs).
        let value = limit.map_or_else(|| "max".to_string(), |l| l.to_string());
        fs::write(dir.join("pids.max"), value)?;
        self.pids_refused_base
            .store(self.raw_pids_refused(), Ordering::Relaxed);
        Ok(())
    }

    /// How many forks the pids limit refused in the current attempt.
    pub(crate) fn pids_refused(&self) -> u64 {
        self.raw_pids_refused()
            .saturating_sub(self.pids_refused_base.load(Ordering::Relaxed))
    }

    fn raw_pids_refused(&self) -> u64 {
        self.dir(Controller::Pids)
            .and_then(|d| fs::read_to_string(d.join("pids.events")).ok())
            .and_then(|t| {
                t.lines()
                    .find_map(|l| l.strip_prefix("max "))
                    .and_then(|v| v.trim().parse().ok())
            })
            .unwrap_or(0)
    }

    /// Forbids any fork inside (`pids.max` 0), for a race-free kill. Lifted by the
    /// next `reset`. False without a pids controller, or when an agent thread is
    /// inside (its spawn would fail).
    fn stop_forks(&self) -> bool {
        let Some(dir) = self.dir(Controller::Pids) else {
            return false;
        };
        if self.holds_agent() {
            return false;
        }
        fs::write(dir.join("pids.max"), "0").is_ok()
    }

    /// Sets (or lifts) the memory limit. memsw (memory+swap) must stay at least the
    /// memory limit, so it is lifted first, then both are set to the same value: the
    /// task cannot swap its way past the limit.
    pub(crate) fn set_memory_limit(&self, limit: Option<u64>) -> io::Result<()> {
        let want = limit.unwrap_or(NO_LIMIT);
        if self.limit.load(Ordering::Relaxed) == want {
            return Ok(());
        }
        let Some(dir) = self.dir(Controller::Memory) else {
            return Ok(());
        };
        let memsw = dir.join("memory.memsw.limit_in_bytes");
        let has_memsw = memsw.exists();
        if has_memsw {
            fs::write(&memsw, "-1")?;
        }
        let value = limit.map_or_else(|| "-1".to_string(), |l| l.to_string());
        fs::write(dir.join("memory.limit_in_bytes"), &value)?;
        if has_memsw && limit.is_some() {
            fs::write(&memsw, &value)?;
        }
        self.limit.store(want, Ordering::Relaxed);
        Ok(())
    }

    /// Sets (or lifts) the CFS bandwidth limit: `cpu_milli` thousandths of a cpu, as
    /// `cpu.cfs_quota_us` over a period of [`CFS_PERIOD_US`]. A task using more threads
    /// than that is throttled for the rest of each period, whatever core it runs on.
    pub(crate) fn set_cpu_limit(&self, cpu_milli: Option<u32>) -> io::Result<()> {
        let Some(dir) = self.dir(Controller::Cpu) else {
            return Ok(());
        };
        let want = cpu_milli.map_or(NO_LIMIT, |m| {
            (u64::from(m) * CFS_PERIOD_US / 1000).max(CFS_MIN_QUOTA_US)
        });
        if self.cpu_quota.load(Ordering::Relaxed) == want {
            return Ok(());
        }
        let period = dir.join("cpu.cfs_period_us");
        if read_u64(period.clone()) != Some(CFS_PERIOD_US) {
            fs::write(&period, CFS_PERIOD_US.to_string())?;
        }
        let value = if want == NO_LIMIT {
            "-1".to_string()
        } else {
            want.to_string()
        };
        fs::write(dir.join("cpu.cfs_quota_us"), value)?;
        self.cpu_quota.store(want, Ordering::Relaxed);
        Ok(())
    }

    /// [`set_cpu_limit`](Self::set_cpu_limit) at a spawn: a quota the kernel refuses
    /// (above a quota the agent's own cgroup has) leaves the task without one rather
    /// than without any cgroup; said in the log.
    pub(super) fn set_cpu_limit_or_warn(&self, cpu_milli: Option<u32>) {
        if let Err(e) = self.set_cpu_limit(cpu_milli) {
            tracing::warn!(
                ?cpu_milli,
                "cannot set the attempt's cpu quota, running without: {e}"
            );
            // Unknown state now: the next call writes whatever it wants.
            self.cpu_quota.store(NO_LIMIT - 1, Ordering::Relaxed);
        }
    }

    /// Makes a reused cgroup look new: counters zeroed, limits set.
    pub(crate) fn reset(&self, limits: &AttemptLimits) -> io::Result<()> {
        self.set_memory_limit(limits.memory_bytes)?;
        self.set_pids_limit(limits.pids)?;
        self.set_cpu_limit_or_warn(limits.cpu_milli);
        if let Some(d) = self.dir(Controller::Cpuacct) {
            fs::write(d.join("cpuacct.usage"), "0")?;
        }
        if let Some(d) = self.dir(Controller::Memory) {
            // Resets the peak to the current (small, see RECYCLE_MAX_RESIDUAL) usage.
            fs::write(d.join("memory.max_usage_in_bytes"), "0")?;
            fs::write(d.join("memory.failcnt"), "0")?;
            self.oom_base.store(self.raw_oom_kills(), Ordering::Relaxed);
        }
        Ok(())
    }

    pub(super) fn memory_usage(&self) -> Option<u64> {
        read_u64(self.dir(Controller::Memory)?.join("memory.usage_in_bytes"))
    }

    fn dir(&self, c: Controller) -> Option<&Path> {
        self.dirs
            .iter()
            .find(|(x, _)| *x == c)
            .map(|(_, d)| d.as_path())
    }

    pub(crate) fn has(&self, c: Controller) -> bool {
        self.dir(c).is_some()
    }

    /// One directory per hierarchy: a co-mounted pair (`cpu,cpuacct`) is listed
    /// under both controllers but is one directory, entered and removed once.
    pub(super) fn hierarchies(&self) -> impl Iterator<Item = &(Controller, PathBuf)> {
        self.dirs
            .iter()
            .enumerate()
            .filter(|(i, (_, d))| !self.dirs[..*i].iter().any(|(_, e)| e == d))
            .map(|(_, x)| x)
    }

    /// Moves `pid` (and so its future children) into every hierarchy.
    pub(crate) fn attach(&self, pid: u32) -> io::Result<()> {
        let pid = pid.to_string();
        for (_, dir) in self.hierarchies() {
            fs::write(dir.join("cgroup.procs"), &pid)?;
        }
        Ok(())
    }

    /// Whether thread `tid` is still inside (its `tasks` in the first hierarchy).
    pub(super) fn lists_thread(&self, tid: i32) -> bool {
        let Some((_, dir)) = self.dirs.first() else {
            return false;
        };
        fs::read_to_string(dir.join("tasks")).is_ok_and(|text| {
            text.split_ascii_whitespace()
                .any(|t| t.parse::<i32>() == Ok(tid))
        })
    }

    /// The processes in the attempt. Every hierarchy holds the same set; any will do.
    /// Never the agent itself: should a spawning thread have failed to move back
    /// out, the agent must not signal (or freeze) itself.
    pub(crate) fn procs(&self) -> Vec<i32> {
        let me = std::process::id() as i32;
        let mut out = Vec::new();
        for (_, dir) in &self.dirs {
            if let Ok(text) = fs::read_to_string(dir.join("cgroup.procs")) {
                out.extend(
                    text.split_ascii_whitespace()
                        .filter_map(|s| s.parse::<i32>().ok())
                        .filter(|p| *p != me && *p != self.spare_pid),
                );
                break;
            }
        }
        out
    }

    /// True when a thread of the agent is inside (see [`CgroupRoot::spawn_inside`]).
    fn holds_agent(&self) -> bool {
        let me = std::process::id() as i32;
        self.dirs.iter().any(|(_, dir)| {
            fs::read_to_string(dir.join("cgroup.procs")).is_ok_and(|t| {
                t.split_ascii_whitespace()
                    .filter_map(|s| s.parse::<i32>().ok())
                    .any(|p| p == me || p == self.spare_pid)
            })
        })
    }

    /// Sends `signal` to every process in the attempt; returns them.
    pub(crate) fn signal_all(&self, signal: i32) -> Vec<i32> {
        let pids = self.procs();
        for &pid in &pids {
            let _ = sys::kill(pid, signal);
        }
        pids
    }

    /// Starts freezing. Returns false without a freezer, or when freezing would
    /// freeze an agent thread.
    pub(crate) fn freeze(&self) -> bool {
        if self.holds_agent() {
            tracing::error!("an agent thread is inside an attempt cgroup; not freezing it");
            return false;
        }
        match self.dir(Controller::Freezer) {
            Some(d) => {
                self.froze.store(true, Ordering::Relaxed);
                fs::write(d.join("freezer.state"), "FROZEN").is_ok()
            }
            None => false,
        }
    }

    pub(crate) fn is_frozen(&self) -> bool {
        self.dir(Controller::Freezer)
            .and_then(|d| fs::read_to_string(d.join("freezer.state")).ok())
            .is_some_and(|s| s.trim() == "FROZEN")
    }

    pub(crate) fn thaw(&self) {
        if let Some(d) = self.dir(Controller::Freezer) {
            let _ = fs::write(d.join("freezer.state"), "THAWED");
        }
    }

    /// Kills everything: forbid forks (`pids.max` 0) or freeze, so nothing forks
    /// between reading the list and signalling, SIGKILL all, thaw (frozen processes
    /// only die once thawed). Blocks for at most ~50 ms waiting for the freeze; for
    /// the reaper and other synchronous callers. Returns the pids signalled.
    pub(crate) fn kill_all_blocking(&self) -> Vec<i32> {
        if self.stop_forks() {
            // A second pass catches a child whose fork was already past the limit
            // check when it was lowered, and not yet listed.
            let mut pids = self.signal_all(libc::SIGKILL);
            std::thread::sleep(std::time::Duration::from_millis(1));
            pids.extend(self.signal_all(libc::SIGKILL));
            return pids;
        }
        if self.freeze() {
            for _ in 0..50 {
                if self.is_frozen() {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
        }
        let pids = self.signal_all(libc::SIGKILL);
        self.thaw();
        pids
    }

    /// Async form of [`kill_all_blocking`](Self::kill_all_blocking). A kill right after
    /// the launch first lets the spawner thread leave (bounded), so that the
    /// race-free way (`pids.max = 0`) is open to it.
    pub(crate) async fn kill_all(&self) -> Vec<i32> {
        for _ in 0..100 {
            if !self.spawner_inside() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        }
        if self.stop_forks() {
            let mut pids = self.signal_all(libc::SIGKILL);
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
            pids.extend(self.signal_all(libc::SIGKILL));
            return pids;
        }
        if self.freeze() {
            for _ in 0..50 {
                if self.is_frozen() {
                    break;
                }
                tokio::time::sleep(std::time::Duration::from_millis(1)).await;
            }
        }
        let pids = self.signal_all(libc::SIGKILL);
        self.thaw();
        pids
    }

    /// Total CPU time of everything that ever ran in the attempt, nanoseconds.
    pub(crate) fn cpu_ns(&self) -> Option<u64> {
        read_u64(self.dir(Controller::Cpuacct)?.join("cpuacct.usage"))
    }

    pub(crate) fn memory_peak(&self) -> Option<u64> {
        read_u64(
            self.dir(Controller::Memory)?
                .join("memory.max_usage_in_bytes"),
        )
    }

    /// How often the OOM killer acted in the current attempt.
    pub(crate) fn oom_kills(&self) -> u64 {
        self.raw_oom_kills()
            .saturating_sub(self.oom_base.load(Ordering::Relaxed))
    }

    /// `oom_kill` in memory.oom_control (Linux 4.13+); older kernels: 1 if the limit
    /// was hit (failcnt, reset on reuse).
    fn raw_oom_kills(&self) -> u64 {
        let Some(dir) = self.dir(Controller::Memory) else {
            return 0;
        };
        if let Ok(text) = fs::read_to_string(dir.join("memory.oom_control"))
            && let Some(v) = text.lines().find_map(|l| l.strip_prefix("oom_kill "))
        {
            return v.trim().parse().unwrap_or(0);
        }
        u64::from(read_u64(dir.join("memory.failcnt")).unwrap_or(0) > 0)
    }

    /// Removes the directories. Fails (EBUSY) for any that still hold processes.
    pub(crate) fn rmdir(&self) -> bool {
        let mut ok = true;
        for (_, dir) in self.hierarchies() {
            match fs::remove_dir(dir) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(_) => ok = false,
            }
        }
        ok
    }
}
