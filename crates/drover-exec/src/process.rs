//! Tasks as child processes of the agent.

use crate::attempt::{RunningAttempt, UsageProbe};
use crate::attempt_dir_pool::AttemptDirPool;
use crate::cgroup::{AttemptLimits, CgroupRoot};
use crate::config::{CgroupMode, DEFAULT_PATH, DriverConfig};
use crate::confine;
use crate::driver::{Driver, OrphanReport};
use crate::error::ExecError;
use crate::finished::{AttemptUsage, Finished, OutputSummary};
use crate::kill::KillHandle;
use crate::monitor::{Monitor, Shared};
use crate::output::Drain;
use crate::proctree;
use crate::spawn_request::SpawnRequest;
use crate::spec::{LaunchSpec, Stream};
use crate::sys;
use drover_types::Outcome;
use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::io::AsyncWriteExt;
use tokio::net::unix::pipe;
use tokio::sync::{oneshot, watch};

/// Environment variable carrying `<agent_id>/<incarnation>/<task>/<attempt>` in every
/// task process. Descendants inherit it, so the driver can find an attempt's
/// processes even after they left its process group and cgroup-less tree, and a
/// restarted agent can find its predecessor's.
pub const MARKER_VAR: &str = "DROVER_EXEC_MARKER";

/// Spawner threads kept inside an idle attempt cgroup (cgroup mode). A launch that
/// finds none ready moves its own thread, paying the cgroup move on its path; a few
/// cover the starts of a busy worker while each re-arms in a few milliseconds.
const ARMED_SPAWNERS: usize = 4;

/// Runs each attempt as a child process in its own process group, and (when
/// available) its own cgroups.
#[derive(Debug)]
pub struct ProcessDriver {
    cfg: DriverConfig,
    attempts_dir: PathBuf,
    logs_dir: PathBuf,
    /// The agent's pass-through variables, captured once.
    base_env: BTreeMap<String, String>,
    cgroups: Option<Arc<CgroupRoot>>,
    /// Empty attempt directories for reuse: with cgroups and a task user only (see
    /// attempt_dir_pool.rs).
    dir_pool: Option<AttemptDirPool>,
    /// Why cgroups are not used, when they are not.
    cgroup_note: Option<String>,
    /// Distinguishes this driver's processes from a previous agent run's.
    incarnation: String,
}

impl ProcessDriver {
    pub fn new(cfg: DriverConfig) -> Result<Self, ExecError> {
        let id = &cfg.agent_id;
        cfg.check_agent_id()?;
        let attempts_dir = cfg.work_root.join("attempts");
        let logs_dir = cfg.work_root.join("logs");
        for d in [&attempts_dir, &logs_dir] {
            fs::create_dir_all(d).map_err(|e| ExecError::io("creating", d, e))?;
        }
        if let Some(user) = &cfg.task_user {
            confine::open_work_root_to(user, &cfg.work_root, &attempts_dir, &logs_dir)?;
        }
        let mut base_env = BTreeMap::new();
        for name in &cfg.env_passthrough {
            if let Some(v) = std::env::var_os(name).and_then(|v| v.into_string().ok()) {
                base_env.insert(name.clone(), v);
            }
        }
        base_env
            .entry("PATH".to_string())
            .or_insert_with(|| DEFAULT_PATH.to_string());
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let incarnation = format!("{:x}-{:x}", std::process::id(), nanos);
        let (cgroups, cgroup_note) = match cfg.cgroups {
            CgroupMode::Off => (None, Some("disabled by configuration".to_string())),
            CgroupMode::Auto => {
                match CgroupRoot::detect(id, &incarnation, cfg.cpu_quota, cfg.spare_pid) {
                    Ok(root) => (Some(Arc::new(root)), None),
                    Err(why) => (None, Some(why)),
                }
            }
        };
        match &cgroup_note {
            None => {
                tracing::info!(controllers = ?cgroups.as_ref().map(|c| c.controllers()), "process driver uses cgroups")
            }
            Some(why) => tracing::info!("process driver runs without cgroups: {why}"),
        }
        let dir_pool = match (&cgroups, &cfg.task_user) {
            (Some(_), Some(_)) => match AttemptDirPool::new(&attempts_dir) {
                Ok(pool) => Some(pool),
                Err(e) => {
                    tracing::warn!("attempt directories will not be reused: {e}");
                    None
                }
            },
            _ => None,
        };
        Ok(ProcessDriver {
            cfg,
            dir_pool,
            attempts_dir,
            logs_dir,
            base_env,
            cgroups,
            cgroup_note,
            incarnation,
        })
    }

    /// True when attempts get their own cgroups.
    pub fn cgroups_active(&self) -> bool {
        self.cgroups.is_some()
    }

    /// The cgroup controllers in use (`memory`, `cpuacct`, `pids` or else `freezer`), empty without cgroups.
    pub fn cgroup_controllers(&self) -> Vec<&'static str> {
        self.cgroups
            .as_ref()
            .map(|c| c.controllers())
            .unwrap_or_default()
    }

    /// A line for logs and the worker's status: which mode is in use and why.
    pub fn mode_description(&self) -> String {
        match (&self.cgroups, &self.cgroup_note) {
            (Some(c), _) => format!("cgroup v1 ({})", c.controllers().join(", ")),
            (None, Some(why)) => format!("process groups + /proc (no cgroups: {why})"),
            (None, None) => "process groups + /proc".to_string(),
        }
    }

    /// The limits the kernel enforces on every attempt: those whose controller is in
    /// use (memory, cpu when quotas are on, pids), and how, or `none: <why>`. Without
    /// a memory cgroup a memory limit is still polled, which is not enforcement.
    pub fn isolation(&self) -> drover_types::Isolation {
        use crate::cgroup::Controller;
        use drover_types::EnforcedLimit;
        let Some(root) = &self.cgroups else {
            let why = self.cgroup_note.as_deref().unwrap_or("no cgroups");
            return drover_types::Isolation {
                enforced: Vec::new(),
                mechanism: format!("none: no writable cgroup hierarchy ({why})"),
                gpu_ids: Vec::new(),
            };
        };
        let mut enforced = Vec::new();
        if root.has(Controller::Memory) {
            enforced.push(EnforcedLimit::Memory);
        }
        if root.has(Controller::Cpu) {
            enforced.push(EnforcedLimit::Cpu);
        }
        if self.cfg.pids_limit.is_some() && root.has(Controller::Pids) {
            enforced.push(EnforcedLimit::Pids);
        }
        drover_types::Isolation {
            enforced,
            mechanism: self.mode_description(),
            gpu_ids: Vec::new(),
        }
    }

    /// Same as [`Driver::launch`], callable without the trait in scope.
    pub fn launch(&self, spec: LaunchSpec) -> Result<RunningAttempt, ExecError> {
        self.do_launch(spec)
    }

    /// Same as [`Driver::reap_orphans`].
    pub fn reap_orphans(&self) -> Vec<OrphanReport> {
        self.do_reap(true)
    }

    /// Kills every task process another incarnation of this agent runs, leaving their
    /// cgroups in place: the backstop of an agent that is alive but cannot act (frozen,
    /// stuck), which will find its attempts dead, not its files and cgroups gone.
    pub fn kill_agent_tasks(&self) -> Vec<OrphanReport> {
        self.do_reap(false)
    }

    /// Same as [`Driver::remove_attempt_dir`].
    pub fn remove_attempt_dir(&self, task: u64, attempt: u32) -> Result<(), ExecError> {
        self.do_remove(task, attempt)
    }

    pub fn config(&self) -> &DriverConfig {
        &self.cfg
    }

    /// `<work_root>/attempts/<task>.<attempt>`: the default working directory,
    /// created fresh (emptied if it exists) at launch, owned by the task user (mode
    /// 0700) when tasks run as one. A relative `workdir` is created inside it; an
    /// absolute one must be inside an allowed path (`DriverConfig::allowed_paths`).
    pub fn attempt_dir(&self, task: u64, attempt: u32) -> PathBuf {
        self.attempts_dir.join(format!("{task}.{attempt}"))
    }

    /// `<work_root>/logs/<task>.<attempt>.<stdout|stderr>`. Kept outside the working
    /// directory so the task cannot clobber (or archive) its own logs. A file is
    /// created at the stream's first byte; a stream that stayed silent has none.
    pub fn log_path(&self, task: u64, attempt: u32, stream: Stream) -> PathBuf {
        self.logs_dir
            .join(format!("{task}.{attempt}.{}", stream.as_str()))
    }

    fn marker_value(&self, task: u64, attempt: u32) -> String {
        format!(
            "{}/{}/{task}/{attempt}",
            self.cfg.agent_id, self.incarnation
        )
    }

    /// The environment of a task: pass-through variables, the task's own, then the
    /// driver's (which the task cannot override).
    fn task_env(&self, spec: &LaunchSpec, workdir: &Path) -> BTreeMap<String, String> {
        let mut env = self.base_env.clone();
        env.extend(spec.env.iter().map(|(k, v)| (k.clone(), v.clone())));
        env.insert("DROVER_TASK_ID".into(), spec.task.to_string());
        env.insert("DROVER_ATTEMPT".into(), spec.attempt.to_string());
        env.insert(
            "DROVER_WORKDIR".into(),
            workdir.to_string_lossy().into_owned(),
        );
        env.insert(
            MARKER_VAR.into(),
            self.marker_value(spec.task, spec.attempt),
        );
        if let Some(u) = &self.cfg.task_user {
            // Not the agent's: a task of another user must not look in root's home
            // (it cannot), nor believe it is root.
            env.insert("USER".into(), u.name.clone());
            env.insert("LOGNAME".into(), u.name.clone());
            env.insert("HOME".into(), workdir.to_string_lossy().into_owned());
        }
        env
    }

    fn do_launch(&self, spec: LaunchSpec) -> Result<RunningAttempt, ExecError> {
        let rt = tokio::runtime::Handle::try_current().map_err(|_| ExecError::NoRuntime)?;
        let dir = self.attempt_dir(spec.task, spec.attempt);
        let stdout_path = self.log_path(spec.task, spec.attempt, Stream::Stdout);
        let stderr_path = self.log_path(spec.task, spec.attempt, Stream::Stderr);
        remove_stale_logs(&stdout_path, &stderr_path)?;
        let failed = |message: String| {
            spawn_failed(
                &spec,
                dir.clone(),
                stdout_path.clone(),
                stderr_path.clone(),
                message,
            )
        };

        if spec.command.is_empty() || (spec.shell && spec.command.iter().all(|a| a.is_empty())) {
            return Ok(failed("the command is empty".into()));
        }
        let user = self.cfg.task_user.as_ref();
        let workdir = match &spec.workdir {
            Some(w) if w.is_absolute() => {
                match confine::resolve_workdir(&dir, w, &self.cfg.allowed_paths, user) {
                    Ok(resolved) => resolved,
                    Err(why) => return Ok(failed(why.to_string())),
                }
            }
            relative => {
                if !self.dir_pool.as_ref().is_some_and(|p| p.take_into(&dir)) {
                    fresh_dir(&dir)?;
                }
                if let Some(u) = user {
                    confine::prepare_attempt_dir(&dir, u)
                        .map_err(|e| ExecError::io("handing over", &dir, e))?;
                }
                match relative {
                    None => dir.clone(),
                    Some(w) => match confine::resolve_workdir(&dir, w, &[], user) {
                        Ok(resolved) => resolved,
                        Err(why) => return Ok(failed(why.to_string())),
                    },
                }
            }
        };
        let env = self.task_env(&spec, &workdir);
        // Always hand std an absolute program path: with a bare name and a changed
        // PATH, std falls back from posix_spawn to the slower fork+exec.
        let (program, args): (PathBuf, Vec<String>) = if spec.shell {
            (
                PathBuf::from("/bin/sh"),
                vec!["-c".into(), spec.command.join(" ")],
            )
        } else {
            let path_var = env.get("PATH").map_or(DEFAULT_PATH, String::as_str);
            match resolve_program(&spec.command[0], path_var, &workdir) {
                Ok(p) => (p, spec.command[1..].to_vec()),
                Err(msg) => return Ok(failed(msg)),
            }
        };

        let limits = AttemptLimits {
            memory_bytes: spec.memory_limit_bytes,
            cpu_milli: (self.cfg.cpu_quota && spec.cpu_milli > 0).then_some(spec.cpu_milli),
            pids: self.cfg.pids_limit,
        };
        // A spawner thread already inside an idle cgroup, when one is ready: the
        // launch then moves no thread between cgroups (see cgroup/spawner.rs).
        let armed = self.cgroups.as_ref().and_then(|root| {
            root.start_spawners(ARMED_SPAWNERS);
            let armed = root.take_armed()?;
            match armed.cgroup().reset(&limits) {
                Ok(()) => Some(armed),
                Err(e) => {
                    // Dropped unused: its thread puts the cgroup back, where the
                    // next acquire tries again or removes it.
                    tracing::debug!("cannot reset an armed spawner's cgroup: {e}");
                    None
                }
            }
        });
        let cgroup = match (&self.cgroups, &armed) {
            (_, Some(a)) => Some(a.cgroup().clone()),
            (None, None) => None,
            (Some(root), None) => match root.acquire(&limits) {
                Ok(cg) => Some(cg),
                Err(e) => {
                    tracing::warn!(
                        task = spec.task,
                        attempt = spec.attempt,
                        "cannot set up an attempt cgroup, running without: {e}"
                    );
                    None
                }
            },
        };

        let mut cmd = Command::new(&program);
        cmd.args(&args)
            .env_clear()
            .envs(&env)
            // Own group: one killpg reaches the whole tree. No pre_exec on an armed
            // spawner, so std can use posix_spawn (vfork-like), the cheapest way to
            // start a process (see spawn_request.rs).
            .process_group(0)
            .stdin(if spec.stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let request = SpawnRequest {
            cmd,
            cwd: workdir.clone(),
            user: user.map(|u| (u.uid, u.gid)),
        };
        let started = tokio::time::Instant::now();
        let (spawned, born_inside) = match (&self.cgroups, &cgroup, armed) {
            (Some(root), Some(cg), Some(armed)) => match armed.spawn(request) {
                Ok(spawned) => (spawned, true),
                Err(request) => root.spawn_inside(cg, move || request.spawn_forking()),
            },
            (Some(root), Some(cg), None) => root.spawn_inside(cg, || request.spawn_forking()),
            _ => (request.spawn_forking(), false),
        };
        let mut child = match spawned {
            Ok(c) => c,
            Err(e) => {
                if let (Some(root), Some(cg)) = (&self.cgroups, &cgroup)
                    && !root.recycle(cg)
                {
                    cg.rmdir();
                }
                return Ok(failed(format!("{}: {e}", program.display())));
            }
        };
        let pid = child.id();
        if let Some(cg) = &cgroup
            && !born_inside
            && let Err(e) = cg.attach(pid)
        {
            tracing::warn!(pid, "cannot move task into its cgroup: {e}");
        }
        let pid_i = pid as i32;
        // Without a pidfd (Linux < 5.3) the monitor polls wait4 instead.
        let pidfd = sys::pidfd_open(pid_i)
            .ok()
            .and_then(|fd| sys::async_pidfd(fd).ok());

        let (stop_tx, stop_rx) = watch::channel(false);
        let make_drain = |fd: Option<OwnedFd>, stream: Stream, path: PathBuf, keep: u64| {
            let rx = fd.and_then(|fd| pipe::Receiver::from_owned_fd(fd).ok());
            let drain = Drain {
                stream,
                path,
                limit: self.cfg.output_limit_bytes,
                keep: usize::try_from(keep).unwrap_or(usize::MAX),
                live: spec.output.clone(),
            };
            let stop = stop_rx.clone();
            match rx {
                Some(rx) => rt.spawn(drain.run(rx, stop)),
                None => rt.spawn(async { crate::output::Capture::default() }),
            }
        };
        let stdout = make_drain(
            child.stdout.take().map(OwnedFd::from),
            Stream::Stdout,
            stdout_path.clone(),
            self.cfg.result_limit_bytes,
        );
        let stderr = make_drain(
            child.stderr.take().map(OwnedFd::from),
            Stream::Stderr,
            stderr_path.clone(),
            0,
        );
        if let (Some(input), Some(stdin)) = (spec.stdin, child.stdin.take())
            && let Ok(mut tx) = pipe::Sender::from_owned_fd(OwnedFd::from(stdin))
        {
            rt.spawn(async move {
                // EPIPE just means the task did not want all of it.
                let _ = tx.write_all(&input).await;
            });
        }
        // `child` is dropped here: std neither kills nor waits on drop; the monitor reaps.
        drop(child);

        let shared = Arc::new(Shared {
            pid: pid_i,
            started,
            cgroup,
            sampled_peak: AtomicU64::new(0),
            final_usage: Mutex::new(None),
            memory_limit: AtomicU64::new(spec.memory_limit_bytes.unwrap_or(u64::MAX)),
        });
        let kill = KillHandle::new();
        let monitor = Monitor {
            shared: shared.clone(),
            cgroup_root: self.cgroups.clone(),
            pidfd,
            kill: kill.clone(),
            time_limit: spec.time_limit,
            memory_limit: spec.memory_limit_bytes,
            pids_limit: self.cfg.pids_limit,
            kill_grace: self.cfg.kill_grace,
            poll_interval: self.cfg.poll_interval.max(Duration::from_millis(10)),
            marker: format!(
                "{MARKER_VAR}={}",
                self.marker_value(spec.task, spec.attempt)
            )
            .into_bytes(),
            stdout,
            stderr,
            stop_drains: stop_tx,
            stdout_path: stdout_path.clone(),
            stderr_path: stderr_path.clone(),
        };
        let (done_tx, done_rx) = oneshot::channel();
        rt.spawn(monitor.run(done_tx));
        Ok(RunningAttempt {
            task: spec.task,
            attempt: spec.attempt,
            pid: Some(pid),
            dir,
            kill,
            probe: Some(shared.clone() as Arc<dyn UsageProbe>),
            limits: Some(shared as Arc<dyn crate::LimitSetter>),
            done: done_rx,
            stdout_path,
            stderr_path,
        })
    }

    fn do_reap(&self, remove_cgroups: bool) -> Vec<OrphanReport> {
        let mut found: BTreeMap<(u64, u32), Vec<u32>> = BTreeMap::new();
        let prefix = format!("{MARKER_VAR}={}/", self.cfg.agent_id);
        // Which attempt a process belongs to, from its marker; `None` for this
        // incarnation's own processes and for unmarked ones.
        let attempt_of = |rest: &[u8]| -> Option<(u64, u32)> {
            let rest = std::str::from_utf8(rest).ok()?;
            let mut parts = rest.splitn(3, '/');
            let (inc, task, attempt) = (parts.next()?, parts.next()?, parts.next()?);
            if inc == self.incarnation {
                return None;
            }
            Some((task.parse().ok()?, attempt.parse().ok()?))
        };
        if let Some(root) = &self.cgroups {
            for (name, cg) in root.existing() {
                if name.split('.').next() == Some(self.incarnation.as_str()) {
                    continue;
                }
                // Read who is inside before killing: their markers name the attempt
                // (pooled cgroup names do not).
                for pid in cg.procs() {
                    if let Some(key) = proctree::env_entry(pid, prefix.as_bytes())
                        .and_then(|rest| attempt_of(&rest))
                    {
                        found.entry(key).or_default().push(pid as u32);
                    }
                }
                for _ in 0..100 {
                    if cg.kill_all_blocking().is_empty() {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(5));
                }
                if remove_cgroups && !cg.rmdir() {
                    tracing::warn!(cgroup = %name, "could not remove a leftover attempt cgroup");
                }
            }
        }
        // Processes outside any cgroup: fallback mode, or escaped before cgroups.
        for (pid, rest) in proctree::find_marked_prefix(prefix.as_bytes()) {
            let Some(key) = attempt_of(&rest) else {
                continue;
            };
            if let Ok(true) = sys::kill(pid, libc::SIGKILL) {
                found.entry(key).or_default().push(pid as u32);
            }
        }
        found
            .into_iter()
            .map(|((task, attempt), mut pids)| {
                pids.sort_unstable();
                pids.dedup();
                OrphanReport {
                    task,
                    attempt,
                    pids,
                }
            })
            .collect()
    }
}

impl Drop for ProcessDriver {
    /// Stops the spawner threads, so that the last holder of the cgroup root removes
    /// every idle cgroup.
    fn drop(&mut self) {
        if let Some(root) = &self.cgroups {
            root.close_spawners();
        }
    }
}

impl Driver for ProcessDriver {
    fn name(&self) -> &'static str {
        "process"
    }

    fn launch(&self, spec: LaunchSpec) -> Result<RunningAttempt, ExecError> {
        self.do_launch(spec)
    }

    /// Kills processes and removes cgroups left by earlier incarnations of this
    /// agent (same `agent_id`), found by leftover attempt cgroups and by the marker
    /// variable in process environments. Safe to call while this driver runs
    /// attempts: its own are skipped. Blocks briefly (reads /proc); call it from
    /// `spawn_blocking` if that matters.
    fn reap_orphans(&self) -> Vec<OrphanReport> {
        self.do_reap(true)
    }

    /// Removes the attempt directory and its two log files.
    fn remove_attempt_dir(&self, task: u64, attempt: u32) -> Result<(), ExecError> {
        self.do_remove(task, attempt)
    }

    fn isolation(&self) -> drover_types::Isolation {
        ProcessDriver::isolation(self)
    }
}

impl ProcessDriver {
    fn do_remove(&self, task: u64, attempt: u32) -> Result<(), ExecError> {
        let dir = self.attempt_dir(task, attempt);
        if self.dir_pool.as_ref().is_some_and(|p| p.give_back(&dir)) {
            return self.remove_logs(task, attempt);
        }
        match fs::remove_dir_all(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(ExecError::io("removing", dir, e)),
        }
        self.remove_logs(task, attempt)
    }

    fn remove_logs(&self, task: u64, attempt: u32) -> Result<(), ExecError> {
        for stream in [Stream::Stdout, Stream::Stderr] {
            let p = self.log_path(task, attempt, stream);
            match fs::remove_file(&p) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(ExecError::io("removing", p, e)),
            }
        }
        Ok(())
    }
}

/// Removes an attempt's log files left by an earlier run of the same attempt: its
/// output must not pass for this one's.
pub(crate) fn remove_stale_logs(stdout: &Path, stderr: &Path) -> Result<(), ExecError> {
    for p in [stdout, stderr] {
        match fs::remove_file(p) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(ExecError::io("removing", p, e)),
        }
    }
    Ok(())
}

/// Makes `dir` exist and be empty (a re-run of the same attempt starts clean).
pub(crate) fn fresh_dir(dir: &Path) -> Result<(), ExecError> {
    match fs::create_dir(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            fs::remove_dir_all(dir).map_err(|e| ExecError::io("clearing", dir, e))?;
            fs::create_dir(dir).map_err(|e| ExecError::io("creating", dir, e))
        }
        Err(e) => Err(ExecError::io("creating", dir, e)),
    }
}

/// Finds the program like a shell would, in the task's own PATH.
fn resolve_program(name: &str, path_var: &str, cwd: &Path) -> Result<PathBuf, String> {
    if name.is_empty() {
        return Err("the program name is empty".into());
    }
    if name.contains('/') {
        let p = cwd.join(name); // an absolute `name` replaces `cwd`
        return if p.exists() {
            Ok(p)
        } else {
            Err(format!("program {} does not exist", p.display()))
        };
    }
    for dir in path_var.split(':') {
        let candidate = if dir.is_empty() {
            cwd.join(name)
        } else {
            cwd.join(dir).join(name)
        };
        if let Ok(meta) = fs::metadata(&candidate)
            && meta.is_file()
            && meta.permissions().mode() & 0o111 != 0
        {
            return Ok(candidate);
        }
    }
    Err(format!("program {name:?} not found in PATH {path_var:?}"))
}

/// An attempt that never started: its wait() reports `SpawnFailed` at once.
pub(crate) fn spawn_failed(
    spec: &LaunchSpec,
    dir: PathBuf,
    stdout_path: PathBuf,
    stderr_path: PathBuf,
    message: String,
) -> RunningAttempt {
    let (tx, rx) = oneshot::channel();
    let _ = tx.send(Finished {
        outcome: Outcome::SpawnFailed { message },
        usage: AttemptUsage::default(),
        stdout: OutputSummary {
            path: stdout_path.clone(),
            ..OutputSummary::default()
        },
        stderr: OutputSummary {
            path: stderr_path.clone(),
            ..OutputSummary::default()
        },
        result: Vec::new(),
    });
    RunningAttempt {
        task: spec.task,
        attempt: spec.attempt,
        pid: None,
        dir,
        kill: KillHandle::new(),
        probe: None,
        limits: None,
        done: rx,
        stdout_path,
        stderr_path,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_programs_in_path() {
        let cwd = Path::new("/");
        assert_eq!(
            resolve_program("sh", "/nonexistent:/bin", cwd),
            Ok(PathBuf::from("/bin/sh"))
        );
        assert!(resolve_program("no-such-program-xyz", "/bin:/usr/bin", cwd).is_err());
        assert_eq!(
            resolve_program("/bin/sh", "", cwd),
            Ok(PathBuf::from("/bin/sh"))
        );
        assert!(resolve_program("./nope", "", cwd).is_err());
    }

    #[test]
    fn rejects_bad_agent_ids() {
        let root = std::env::temp_dir().join("drover-exec-badid");
        for id in ["", "a/b", "..", "x y"] {
            let cfg = DriverConfig::new(&root, id);
            assert!(
                matches!(ProcessDriver::new(cfg), Err(ExecError::Config(_))),
                "{id:?}"
            );
        }
    }

    #[test]
    fn controller_names() {
        use crate::cgroup::Controller;
        assert_eq!(Controller::Memory.name(), "memory");
    }
}
