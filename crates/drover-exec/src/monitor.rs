//! The task that watches one attempt from spawn to cleanup.
//!
//! It waits for the main process to exit (pidfd, else polling `wait4`), enforces the
//! time limit, kill requests and (without a memory cgroup) the memory limit, then
//! kills any leftovers, collects output and usage, and returns the cgroup to the
//! pool (or removes it).

use crate::attempt::UsageProbe;
use crate::cgroup::{AttemptCgroup, CgroupRoot, Controller};
use crate::finished::{AttemptUsage, Finished, OutputSummary};
use crate::kill::KillHandle;
use crate::output::Capture;
use crate::proctree::{self, TreeSample};
use crate::sys::{self, ChildRusage, ExitStatus};
use drover_types::Outcome;
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::unix::AsyncFd;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// How long output pipes may stay open after the main process is gone before the
/// driver hunts down whoever holds them, and how long after that before it stops
/// reading.
const PIPE_LINGER: Duration = Duration::from_millis(300);
const PIPE_GIVE_UP: Duration = Duration::from_secs(2);

/// State shared between the monitor and live usage queries.
pub(crate) struct Shared {
    pub pid: i32,
    pub started: Instant,
    pub cgroup: Option<Arc<AttemptCgroup>>,
    /// Largest summed RSS of the tree seen by polling (fallback mode).
    pub sampled_peak: AtomicU64,
    pub final_usage: Mutex<Option<AttemptUsage>>,
    /// The memory limit in force (`u64::MAX`: none): a resize changes it while the
    /// attempt runs, and the polling fallback (no memory cgroup) reads it.
    pub memory_limit: AtomicU64,
}

impl Shared {
    fn memory_limit(&self) -> Option<u64> {
        Some(self.memory_limit.load(Ordering::Relaxed)).filter(|l| *l != u64::MAX)
    }
}

/// A resize of a process-driver attempt: the memory cgroup's limit is written at once
/// (raising it lets the task allocate more from now on; lowering it below what the
/// task uses makes the kernel reclaim or OOM-kill, as at a launch with that limit), the
/// polling fallback checks the new value, and the CFS quota follows the new cpus (when
/// the worker enforces cpu quotas: the attempt then has a cpu cgroup). Blocking (cgroup
/// file writes): call it off the async threads.
impl crate::LimitSetter for Shared {
    fn set_limits(&self, update: &crate::LimitUpdate) -> Result<(), crate::ExecError> {
        if let Some(cg) = &self.cgroup {
            cg.set_memory_limit(update.memory_limit_bytes)
                .map_err(crate::ExecError::SetLimits)?;
        }
        self.memory_limit.store(
            update.memory_limit_bytes.unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
        if let Some(cg) = &self.cgroup {
            cg.set_cpu_limit((update.cpu_milli > 0).then_some(update.cpu_milli))
                .map_err(crate::ExecError::SetLimits)?;
        }
        Ok(())
    }
}

impl UsageProbe for Shared {
    fn usage(&self) -> AttemptUsage {
        if let Some(u) = *self.final_usage.lock().unwrap_or_else(|e| e.into_inner()) {
            return u;
        }
        let wall_ms = self.started.elapsed().as_millis() as u64;
        let tree = proctree::sample(&proctree::descendants(self.pid));
        let peak = self
            .sampled_peak
            .fetch_max(tree.rss_bytes, Ordering::Relaxed)
            .max(tree.rss_bytes);
        let cg = self.cgroup.as_deref();
        AttemptUsage {
            wall_ms,
            cpu_time_ms: cg
                .and_then(|c| c.cpu_ns())
                .map_or(tree.cpu_ms, |ns| ns / 1_000_000),
            peak_memory_bytes: cg.and_then(|c| c.memory_peak()).unwrap_or(peak),
            read_bytes: tree.read_bytes,
            write_bytes: tree.write_bytes,
        }
    }
}

pub(crate) struct Monitor {
    pub shared: Arc<Shared>,
    /// Where the attempt's cgroup goes back to when it ends.
    pub cgroup_root: Option<Arc<CgroupRoot>>,
    pub pidfd: Option<AsyncFd<OwnedFd>>,
    pub kill: KillHandle,
    pub time_limit: Option<Duration>,
    pub memory_limit: Option<u64>,
    /// The attempt cgroup's `pids.max`, when it has a pids controller.
    pub pids_limit: Option<u64>,
    pub kill_grace: Duration,
    pub poll_interval: Duration,
    /// `NAME=value` of the attempt's marker variable.
    pub marker: Vec<u8>,
    pub stdout: JoinHandle<Capture>,
    pub stderr: JoinHandle<Capture>,
    pub stop_drains: watch::Sender<bool>,
    pub stdout_path: PathBuf,
    pub stderr_path: PathBuf,
}

async fn sleep_until_opt(t: Option<Instant>) {
    match t {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

impl Monitor {
    fn cgroup(&self) -> Option<&AttemptCgroup> {
        self.shared.cgroup.as_deref()
    }

    /// The pids limit, when a pids controller enforces it.
    fn enforced_pids_limit(&self) -> Option<u64> {
        self.pids_limit
            .filter(|_| self.cgroup().is_some_and(|c| c.has(Controller::Pids)))
    }

    fn cgroup_has_memory(&self) -> bool {
        self.cgroup().is_some_and(|c| c.has(Controller::Memory))
    }

    pub(crate) async fn run(mut self, done: oneshot::Sender<Finished>) {
        let finished = self.watch().await;
        // The agent may have dropped the handle; the attempt still ran to completion.
        let _ = done.send(finished);
    }

    async fn watch(&mut self) -> Finished {
        let pid = self.shared.pid;
        let started = self.shared.started;
        let time_deadline = self.time_limit.map(|d| started + d);
        // Polling is for figures the kernel does not keep for us: the memory limit
        // and peak without a memory cgroup. Slower when only the peak is wanted.
        let poll_every = match (self.cgroup_has_memory(), self.memory_limit) {
            (true, _) => None,
            (false, Some(_)) => Some(self.poll_interval),
            (false, None) => Some(self.poll_interval * 5),
        };
        let mut next_poll = poll_every.map(|p| started + p);
        // The pids controller refuses forks at the limit but kills nothing: a fork
        // bomb would spin until its time limit. Refused forks are counted, so one
        // file read per interval (none for tasks shorter than that) finds it.
        let pids_limit = self.enforced_pids_limit();
        let mut next_pids_check = pids_limit.map(|_| started + self.poll_interval);
        let mut reason: Option<Outcome> = None;
        let mut hard_deadline: Option<Instant> = None;
        let mut hard_killed = false;
        let mut last_sample = TreeSample::default();

        let (status, rusage) = loop {
            tokio::select! {
                biased;
                r = self.exited() => break r,
                () = sleep_until_opt(time_deadline), if reason.is_none() => {
                    reason = Some(Outcome::TimedOut);
                    hard_deadline = Some(Instant::now() + self.kill_grace);
                    if self.kill_grace.is_zero() {
                        self.signal_tree(libc::SIGKILL).await;
                        hard_killed = true;
                    } else {
                        self.signal_tree(libc::SIGTERM).await;
                    }
                }
                () = self.kill.notified() => {
                    let grace = self.kill.requested().unwrap_or_default();
                    let first = reason.is_none();
                    reason.get_or_insert(Outcome::Killed);
                    let dl = Instant::now() + grace;
                    if hard_deadline.is_none_or(|h| dl < h) {
                        hard_deadline = Some(dl);
                    }
                    if !hard_killed {
                        if grace.is_zero() {
                            self.signal_tree(libc::SIGKILL).await;
                            hard_killed = true;
                        } else if first {
                            self.signal_tree(libc::SIGTERM).await;
                        }
                    }
                }
                () = sleep_until_opt(hard_deadline), if !hard_killed => {
                    self.signal_tree(libc::SIGKILL).await;
                    hard_killed = true;
                }
                () = sleep_until_opt(next_pids_check) => {
                    next_pids_check = Some(Instant::now() + self.poll_interval);
                    if let (Some(limit), Some(cg)) = (pids_limit, self.cgroup())
                        && cg.pids_refused() > 0
                        && !hard_killed
                    {
                        reason.get_or_insert(Outcome::TooManyProcesses { limit });
                        self.signal_tree(libc::SIGKILL).await;
                        hard_killed = true;
                        next_pids_check = None;
                    }
                }
                () = sleep_until_opt(next_poll) => {
                    last_sample = proctree::sample(&proctree::descendants(pid));
                    self.shared.sampled_peak.fetch_max(last_sample.rss_bytes, Ordering::Relaxed);
                    next_poll = poll_every.map(|p| Instant::now() + p);
                    if let Some(limit) = self.shared.memory_limit()
                        && !self.cgroup_has_memory()
                        && last_sample.rss_bytes > limit
                        && !hard_killed
                    {
                        // Over the limit gets no grace: every moment longer risks the
                        // host. (An earlier decision, say a timeout in its grace, stands.)
                        reason.get_or_insert(Outcome::OutOfMemory);
                        self.signal_tree(libc::SIGKILL).await;
                        hard_killed = true;
                    }
                }
            }
        };
        let wall_ms = started.elapsed().as_millis() as u64;
        // Read before the kill below, whose `pids.max = 0` refuses forks too.
        let pids_refused =
            pids_limit.is_some() && self.cgroup().is_some_and(|c| c.pids_refused() > 0);

        // The main process is gone. Nothing of the attempt outlives it: its process
        // group (a pgid cannot be reused while members remain), then its cgroup.
        let _ = sys::killpg(pid, libc::SIGKILL);
        if let Some(cg) = self.cgroup()
            && !cg.procs().is_empty()
        {
            cg.kill_all().await;
        }
        if reason.is_some() {
            // Processes outside both the group and the cgroup: setsid escapees in
            // fallback mode, or children of a task that had to be attached late.
            self.kill_marked(libc::SIGKILL).await;
        }
        let (out, err) = self.collect_output().await;

        let oom = self.cgroup().map_or(0, |c| c.oom_kills()) > 0;
        let base = match status {
            ExitStatus::Code(code) => Outcome::Exited { code },
            ExitStatus::Signal(signal) => Outcome::Signaled { signal },
        };
        let outcome = match reason {
            Some(r) => r,
            None if oom && !base.is_success() => Outcome::OutOfMemory,
            // It failed after a fork was refused at the limit: that is the likely cause.
            None if pids_refused && !base.is_success() => Outcome::TooManyProcesses {
                limit: pids_limit.unwrap_or_default(),
            },
            None => base,
        };
        let usage = self.final_usage(wall_ms, &rusage, &last_sample);
        // From here on live queries get the final figures, not the cgroup's (which
        // may already serve another attempt).
        *self
            .shared
            .final_usage
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(usage);
        if let Some(cg) = self.shared.cgroup.clone() {
            if cg.spawner_inside() {
                // The spawner thread is still on its way out (a short task): the
                // release waits for it, but the report of the end does not.
                let root = self.cgroup_root.clone();
                tokio::spawn(async move {
                    for _ in 0..500 {
                        if !cg.spawner_inside() {
                            break;
                        }
                        tokio::time::sleep(Duration::from_millis(1)).await;
                    }
                    release_cgroup(root.as_deref(), &cg).await;
                });
            } else {
                release_cgroup(self.cgroup_root.as_deref(), &cg).await;
            }
        }
        Finished {
            outcome,
            usage,
            result: out.kept.clone(),
            stdout: OutputSummary {
                path: self.stdout_path.clone(),
                bytes: out.bytes,
                truncated: out.truncated,
            },
            stderr: OutputSummary {
                path: self.stderr_path.clone(),
                bytes: err.bytes,
                truncated: err.truncated,
            },
        }
    }

    fn final_usage(&self, wall_ms: u64, r: &ChildRusage, last: &TreeSample) -> AttemptUsage {
        let cg = self.cgroup();
        let rusage_cpu_ms = (r.user_us + r.system_us) / 1000;
        let sampled_peak = self.shared.sampled_peak.load(Ordering::Relaxed);
        AttemptUsage {
            wall_ms,
            cpu_time_ms: cg
                .and_then(|c| c.cpu_ns())
                .map_or(rusage_cpu_ms.max(last.cpu_ms), |ns| ns / 1_000_000),
            peak_memory_bytes: cg
                .and_then(|c| c.memory_peak())
                .unwrap_or(r.max_rss_bytes.max(sampled_peak)),
            read_bytes: (r.in_blocks * 512).max(last.read_bytes),
            write_bytes: (r.out_blocks * 512).max(last.write_bytes),
        }
    }

    /// Waits for the main process to exit and reaps it.
    async fn exited(&self) -> (ExitStatus, ChildRusage) {
        let pid = self.shared.pid;
        let mut backoff = Duration::from_millis(1);
        loop {
            if let Some(fd) = &self.pidfd {
                match fd.readable().await {
                    Ok(guard) => match sys::wait4_nohang(pid) {
                        Ok(Some(r)) => return r,
                        Ok(None) => {
                            // Readable but not yet waitable (a multi-threaded leader
                            // exits before its threads). Readiness stays set, so
                            // retry shortly rather than wait for an edge that has passed.
                            drop(guard);
                            tokio::time::sleep(Duration::from_millis(1)).await;
                            continue;
                        }
                        Err(e) => return lost_child(pid, e),
                    },
                    Err(e) => {
                        tracing::warn!(pid, "pidfd wait failed, polling instead: {e}");
                    }
                }
            }
            match sys::wait4_nohang(pid) {
                Ok(Some(r)) => return r,
                Ok(None) => {}
                Err(e) => return lost_child(pid, e),
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_millis(50));
        }
    }

    /// Signals every process of the attempt that can be found.
    async fn signal_tree(&self, signal: i32) {
        let _ = sys::killpg(self.shared.pid, signal);
        match self.cgroup() {
            Some(cg) if signal == libc::SIGKILL => {
                cg.kill_all().await;
            }
            Some(cg) => {
                cg.signal_all(signal);
            }
            None => {}
        }
        // The marker scan reads every process's environment; in cgroup mode it is
        // only needed for the final SIGKILL (to cover the attach race).
        if self.cgroup().is_none() || signal == libc::SIGKILL {
            self.kill_marked(signal).await;
        }
    }

    async fn kill_marked(&self, signal: i32) {
        let marker = self.marker.clone();
        let scan = tokio::task::spawn_blocking(move || {
            for pid in proctree::find_marked(&marker) {
                let _ = sys::kill(pid, signal);
            }
        });
        let _ = scan.await;
    }

    /// Waits for both output pipes to close. A descendant that escaped the group
    /// may still hold them: after a moment it is hunted down by marker, and if the
    /// pipes still do not close, reading stops.
    async fn collect_output(&mut self) -> (Capture, Capture) {
        let joined = async {
            let out = (&mut self.stdout).await.unwrap_or_default();
            let err = (&mut self.stderr).await.unwrap_or_default();
            (out, err)
        };
        let stop = self.stop_drains.clone();
        let marker = self.marker.clone();
        let escalate = async move {
            tokio::time::sleep(PIPE_LINGER).await;
            let _ = tokio::task::spawn_blocking(move || {
                for pid in proctree::find_marked(&marker) {
                    let _ = sys::kill(pid, libc::SIGKILL);
                }
            })
            .await;
            tokio::time::sleep(PIPE_GIVE_UP).await;
            let _ = stop.send(true);
            std::future::pending::<()>().await
        };
        tokio::select! {
            r = joined => r,
            () = escalate => unreachable!("escalate never finishes"),
        }
    }
}

fn lost_child(pid: i32, e: std::io::Error) -> (ExitStatus, ChildRusage) {
    // ECHILD: someone else reaped it (e.g. SIGCHLD set to SIG_IGN in the agent).
    tracing::error!(pid, "cannot reap task process: {e}");
    (ExitStatus::Code(-1), ChildRusage::default())
}

/// Waits (bounded) for the cgroup to empty, then returns it to the pool or removes it.
async fn release_cgroup(root: Option<&CgroupRoot>, cg: &Arc<AttemptCgroup>) {
    for i in 0..500 {
        if cg.procs().is_empty() {
            if root.is_some_and(|r| r.recycle(cg)) || cg.rmdir() {
                return;
            }
        } else if i % 50 == 49 {
            cg.kill_all().await;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    tracing::warn!("attempt cgroup still busy; leaving it for reap_orphans");
}
