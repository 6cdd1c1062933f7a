//! A driver whose attempts are run by an external plugin process.

use crate::attempt::{RunningAttempt, UsageProbe};
use crate::config::DEFAULT_PATH;
use crate::confine;
use crate::driver::{Driver, OrphanReport};
use crate::error::ExecError;
use crate::finished::AttemptUsage;
use crate::kill::KillHandle;
use crate::output_sink::OutputSink;
use crate::plugin::attempt::{AttemptRun, supervise};
use crate::plugin::config::PluginConfig;
use crate::plugin::connection::PluginConnection;
use crate::plugin::error::PluginError;
use crate::plugin::wire::{AttemptStatus, Description, Op, PROTOCOL_VERSION, WireStream};
use crate::process::{fresh_dir, remove_stale_logs, spawn_failed};
use crate::spec::{LaunchSpec, Stream};
use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use tokio::sync::oneshot;

/// Runs attempts through a plugin executable speaking the driver plugin protocol
/// (docs/driver-plugins.md). One long-lived plugin process serves every attempt of
/// this driver; if it dies, its attempts end as failed and the next launch starts
/// it again.
#[derive(Clone)]
pub struct PluginDriver {
    inner: Arc<PluginShared>,
}

pub(crate) struct PluginShared {
    pub(crate) path: PathBuf,
    /// Leaked once per discovered plugin (a handful per worker run): the `Driver`
    /// trait names drivers with `&'static str`.
    pub(crate) name: &'static str,
    pub(crate) description: Description,
    pub(crate) cfg: PluginConfig,
    attempts_dir: PathBuf,
    logs_dir: PathBuf,
    /// The agent's pass-through variables, captured once.
    base_env: BTreeMap<String, String>,
    /// The live plugin process; replaced when it is gone. An async lock: a restart
    /// awaits `describe` with it held so two launches do not start two plugins.
    conn: tokio::sync::Mutex<Option<Arc<PluginConnection>>>,
    /// The current process's pid, readable without the async lock.
    pid: Mutex<Option<u32>>,
}

impl std::fmt::Debug for PluginDriver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginDriver")
            .field("name", &self.inner.name)
            .field("path", &self.inner.path)
            .finish_non_exhaustive()
    }
}

impl PluginDriver {
    /// Starts the plugin at `path`, asks it to describe itself and checks the
    /// answer: protocol version, a valid name.
    pub async fn start(path: &Path, cfg: PluginConfig) -> Result<PluginDriver, ExecError> {
        let err = |source| ExecError::Plugin {
            path: path.to_path_buf(),
            source,
        };
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
        let (conn, description) = connect(path, &base_env, &cfg).await.map_err(err)?;
        if !valid_name(&description.name) {
            return Err(err(PluginError::BadName {
                name: description.name,
            }));
        }
        tracing::info!(
            plugin = %path.display(),
            name = %description.name,
            version = %description.version,
            capabilities = ?description.capabilities,
            "driver plugin ready"
        );
        let name: &'static str = Box::leak(description.name.clone().into_boxed_str());
        let pid = conn.pid();
        Ok(PluginDriver {
            inner: Arc::new(PluginShared {
                path: path.to_path_buf(),
                name,
                description,
                cfg,
                attempts_dir,
                logs_dir,
                base_env,
                conn: tokio::sync::Mutex::new(Some(conn)),
                pid: Mutex::new(pid),
            }),
        })
    }

    /// What the plugin said of itself when it was discovered.
    pub fn description(&self) -> &Description {
        &self.inner.description
    }

    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// The plugin process's pid, while one runs (for operators and tests).
    pub fn plugin_pid(&self) -> Option<u32> {
        *self.inner.pid.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `<work_root>/attempts/<task>.<attempt>`, as for the process driver.
    pub fn attempt_dir(&self, task: u64, attempt: u32) -> PathBuf {
        self.inner.attempts_dir.join(format!("{task}.{attempt}"))
    }

    /// `<work_root>/logs/<task>.<attempt>.<stdout|stderr>`, as for the process driver.
    pub fn log_path(&self, task: u64, attempt: u32, stream: Stream) -> PathBuf {
        self.inner.log_path(task, attempt, stream)
    }

    /// Asks the plugin how an attempt is doing (`status`).
    pub async fn status(&self, task: u64, attempt: u32) -> Result<AttemptStatus, ExecError> {
        let conn = self
            .inner
            .connection()
            .await
            .map_err(|e| self.inner.err(e))?;
        let value = conn
            .request(Op::Status { task, attempt })
            .await
            .map_err(|e| self.inner.err(e))?;
        serde_json::from_value(value).map_err(|source| {
            self.inner.err(PluginError::Malformed {
                line: "status result".into(),
                source,
            })
        })
    }

    /// Same as [`Driver::launch`], callable without the trait in scope.
    pub fn launch(&self, spec: LaunchSpec) -> Result<RunningAttempt, ExecError> {
        self.do_launch(spec)
    }

    fn do_launch(&self, spec: LaunchSpec) -> Result<RunningAttempt, ExecError> {
        let rt = tokio::runtime::Handle::try_current().map_err(|_| ExecError::NoRuntime)?;
        let shared = &self.inner;
        let cfg = &shared.cfg;
        let dir = self.attempt_dir(spec.task, spec.attempt);
        let stdout_path = shared.log_path(spec.task, spec.attempt, Stream::Stdout);
        let stderr_path = shared.log_path(spec.task, spec.attempt, Stream::Stderr);
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
        let user = cfg.task_user.as_ref();
        let workdir = match &spec.workdir {
            Some(w) if w.is_absolute() => {
                match confine::resolve_workdir(&dir, w, &cfg.allowed_paths, user) {
                    Ok(resolved) => resolved,
                    Err(why) => return Ok(failed(why.to_string())),
                }
            }
            relative => {
                fresh_dir(&dir)?;
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
        let mut env = shared.base_env.clone();
        env.extend(spec.env.iter().map(|(k, v)| (k.clone(), v.clone())));
        env.insert("DROVER_TASK_ID".into(), spec.task.to_string());
        env.insert("DROVER_ATTEMPT".into(), spec.attempt.to_string());
        env.insert(
            "DROVER_WORKDIR".into(),
            workdir.to_string_lossy().into_owned(),
        );
        if let Some(u) = user {
            env.insert("USER".into(), u.name.clone());
            env.insert("LOGNAME".into(), u.name.clone());
            env.insert("HOME".into(), workdir.to_string_lossy().into_owned());
        }
        let sink = |stream, path: &PathBuf, keep: u64| {
            OutputSink::new(
                stream,
                path.clone(),
                cfg.output_limit_bytes,
                usize::try_from(keep).unwrap_or(usize::MAX),
                spec.output.clone(),
            )
        };
        let kill = KillHandle::new();
        let usage = Arc::new(PluginUsage::new());
        let run = AttemptRun {
            task: spec.task,
            attempt: spec.attempt,
            argv: spec.command.clone(),
            shell: spec.shell,
            env,
            workdir,
            time_limit: spec.time_limit,
            memory_limit_bytes: spec.memory_limit_bytes,
            cpu_milli: spec.cpu_milli,
            stdin: spec.stdin.clone(),
            extra: spec.driver_options.clone(),
            stdout: sink(Stream::Stdout, &stdout_path, cfg.result_limit_bytes),
            stderr: sink(Stream::Stderr, &stderr_path, 0),
            stdout_path: stdout_path.clone(),
            stderr_path: stderr_path.clone(),
            kill: kill.clone(),
            usage: usage.clone(),
        };
        let (done_tx, done_rx) = oneshot::channel();
        rt.spawn(supervise(self.inner.clone(), run, done_tx));
        Ok(RunningAttempt {
            task: spec.task,
            attempt: spec.attempt,
            pid: None,
            dir,
            kill,
            probe: Some(usage as Arc<dyn UsageProbe>),
            limits: None,
            done: done_rx,
            stdout_path,
            stderr_path,
        })
    }

    fn do_remove(&self, task: u64, attempt: u32) -> Result<(), ExecError> {
        let dir = self.attempt_dir(task, attempt);
        match fs::remove_dir_all(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(ExecError::io("removing", dir, e)),
        }
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

impl PluginShared {
    pub(crate) fn err(&self, source: PluginError) -> ExecError {
        ExecError::Plugin {
            path: self.path.clone(),
            source,
        }
    }

    pub(crate) fn has_capability(&self, cap: &str) -> bool {
        self.description.capabilities.iter().any(|c| c == cap)
    }

    fn log_path(&self, task: u64, attempt: u32, stream: Stream) -> PathBuf {
        self.logs_dir
            .join(format!("{task}.{attempt}.{}", stream.as_str()))
    }

    /// The live plugin process, started again (and described again) if the last one
    /// is gone.
    pub(crate) async fn connection(&self) -> Result<Arc<PluginConnection>, PluginError> {
        let mut slot = self.conn.lock().await;
        if let Some(c) = slot.as_ref()
            && !c.is_gone()
        {
            return Ok(c.clone());
        }
        *slot = None;
        let (conn, description) = connect(&self.path, &self.base_env, &self.cfg).await?;
        if description.name != self.name {
            return Err(PluginError::Renamed {
                was: self.name.to_string(),
                now: description.name,
            });
        }
        tracing::info!(plugin = %self.path.display(), pid = ?conn.pid(), "driver plugin restarted");
        *self.pid.lock().unwrap_or_else(|e| e.into_inner()) = conn.pid();
        *slot = Some(conn.clone());
        Ok(conn)
    }
}

/// Starts the plugin and has it describe itself; checked at discovery and at every
/// restart (the file may have been replaced in between).
async fn connect(
    path: &Path,
    base_env: &BTreeMap<String, String>,
    cfg: &PluginConfig,
) -> Result<(Arc<PluginConnection>, Description), PluginError> {
    check_ownership(path)?;
    let mut env = base_env.clone();
    env.insert(
        "DROVER_PLUGIN_PROTOCOL".into(),
        PROTOCOL_VERSION.to_string(),
    );
    let conn = PluginConnection::spawn(path, &env, cfg.request_timeout)?;
    let value = conn
        .request(Op::Describe {
            protocol: PROTOCOL_VERSION,
        })
        .await?;
    // The version first: a plugin of another version may shape the rest differently.
    let spoken = value
        .get("protocol")
        .and_then(serde_json::Value::as_u64)
        .unwrap_or(0);
    if spoken != u64::from(PROTOCOL_VERSION) {
        return Err(PluginError::ProtocolVersion {
            spoken: u32::try_from(spoken).unwrap_or(u32::MAX),
            expected: PROTOCOL_VERSION,
        });
    }
    let description: Description =
        serde_json::from_value(value).map_err(|source| PluginError::Malformed {
            line: "describe result".into(),
            source,
        })?;
    // Tasks must not run as the worker's user behind its back: a plugin that cannot
    // switch users is refused where the worker confines its tasks.
    if cfg.task_user.is_some() && !description.capabilities.iter().any(|c| c == "user") {
        return Err(PluginError::MissingCapability {
            capability: "user",
            needed_for: "this worker runs its tasks as a dedicated user",
        });
    }
    Ok((conn, description))
}

impl Driver for PluginDriver {
    fn name(&self) -> &'static str {
        self.inner.name
    }

    fn launch(&self, spec: LaunchSpec) -> Result<RunningAttempt, ExecError> {
        self.do_launch(spec)
    }

    /// Nothing to reap: a plugin's attempts end with the plugin, which ends when the
    /// agent that started it does (its stdin closes).
    fn reap_orphans(&self) -> Vec<OrphanReport> {
        Vec::new()
    }

    fn remove_attempt_dir(&self, task: u64, attempt: u32) -> Result<(), ExecError> {
        self.do_remove(task, attempt)
    }
}

/// Starts every executable file of `dir` (dot files aside) as a driver plugin, in
/// name order, and keeps those that describe themselves correctly. Any plugin that
/// cannot be used is an error: a worker that silently lacks a driver it was given
/// would accept tasks it cannot run elsewhere.
pub async fn discover(dir: &Path, cfg: &PluginConfig) -> Result<Vec<PluginDriver>, ExecError> {
    let dir_err = |source| ExecError::Plugin {
        path: dir.to_path_buf(),
        source: PluginError::Directory {
            dir: dir.to_path_buf(),
            source,
        },
    };
    let mut paths = Vec::new();
    for entry in fs::read_dir(dir).map_err(dir_err)? {
        let entry = entry.map_err(dir_err)?;
        if entry.file_name().to_string_lossy().starts_with('.') {
            continue;
        }
        let path = entry.path();
        let Ok(meta) = fs::metadata(&path) else {
            continue;
        };
        use std::os::unix::fs::PermissionsExt;
        if meta.is_file() && meta.permissions().mode() & 0o111 != 0 {
            paths.push(path);
        }
    }
    paths.sort();
    let mut drivers: Vec<PluginDriver> = Vec::new();
    for path in paths {
        let driver = PluginDriver::start(&path, cfg.clone()).await?;
        if let Some(first) = drivers.iter().find(|d| d.name() == driver.name()) {
            return Err(ExecError::Plugin {
                path: path.clone(),
                source: PluginError::DuplicateName {
                    name: driver.name().to_string(),
                    first: first.path().to_path_buf(),
                    second: path,
                },
            });
        }
        drivers.push(driver);
    }
    Ok(drivers)
}

/// The plugin file and its directory must be changeable only by the worker's user
/// or root (like sshd's `StrictModes`): the worker runs the plugin with its own
/// rights, root included.
fn check_ownership(path: &Path) -> Result<(), PluginError> {
    use std::os::unix::fs::MetadataExt;
    let me = crate::sys::euid();
    let file = fs::canonicalize(path).map_err(PluginError::Spawn)?;
    let dir = file.parent().unwrap_or(Path::new("/")).to_path_buf();
    for p in [file, dir] {
        let meta = fs::metadata(&p).map_err(PluginError::Spawn)?;
        if meta.uid() != 0 && meta.uid() != me {
            return Err(PluginError::Insecure {
                path: p,
                why: "owned by another user",
            });
        }
        if meta.mode() & 0o022 != 0 {
            return Err(PluginError::Insecure {
                path: p,
                why: "writable by its group or others",
            });
        }
    }
    Ok(())
}

/// 1-32 of `a-z`, `0-9`, `-`, `_`: it travels in task specs and worker capabilities.
fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 32
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

/// The last usage the plugin reported, with the wall time measured here.
pub(crate) struct PluginUsage {
    started: std::time::Instant,
    last: Mutex<AttemptUsage>,
    /// Set at the end: the wall time stops.
    ended_wall_ms: Mutex<Option<u64>>,
}

impl PluginUsage {
    fn new() -> Self {
        PluginUsage {
            started: std::time::Instant::now(),
            last: Mutex::new(AttemptUsage::default()),
            ended_wall_ms: Mutex::new(None),
        }
    }

    pub(crate) fn record(&self, u: crate::plugin::wire::WireUsage) {
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        last.cpu_time_ms = last.cpu_time_ms.max(u.cpu_time_ms);
        last.peak_memory_bytes = last.peak_memory_bytes.max(u.peak_memory_bytes);
        last.read_bytes = last.read_bytes.max(u.read_bytes);
        last.write_bytes = last.write_bytes.max(u.write_bytes);
    }

    pub(crate) fn end(&self) -> AttemptUsage {
        let wall = self.started.elapsed().as_millis() as u64;
        *self.ended_wall_ms.lock().unwrap_or_else(|e| e.into_inner()) = Some(wall);
        self.usage()
    }
}

impl UsageProbe for PluginUsage {
    fn usage(&self) -> AttemptUsage {
        let wall_ms = self
            .ended_wall_ms
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .unwrap_or_else(|| self.started.elapsed().as_millis() as u64);
        AttemptUsage {
            wall_ms,
            ..*self.last.lock().unwrap_or_else(|e| e.into_inner())
        }
    }
}

pub(crate) fn wire_stream(stream: Stream) -> WireStream {
    match stream {
        Stream::Stdout => WireStream::Stdout,
        Stream::Stderr => WireStream::Stderr,
    }
}
