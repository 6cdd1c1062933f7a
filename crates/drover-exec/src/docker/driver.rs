//! The docker driver: one container per attempt.

use super::labels::{LABEL_AGENT, LABEL_ATTEMPT, LABEL_INCARNATION, LABEL_TASK};
use super::run::ContainerRun;
use super::usage::ContainerUsage;
use crate::attempt::{RunningAttempt, UsageProbe};
use crate::config::DriverConfig;
use crate::confine;
use crate::driver::{Driver, OrphanReport};
use crate::error::ExecError;
use crate::kill::KillHandle;
use crate::output::Drain;
use crate::process::{fresh_dir, remove_stale_logs, spawn_failed};
use crate::spec::{LaunchSpec, Stream};
use bollard::Docker;
use bollard::models::{ContainerCreateBody, HostConfig};
use bollard::query_parameters::{ListContainersOptions, RemoveContainerOptions};
use std::collections::HashMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::oneshot;

/// Runs each attempt as a container of the task's image, through the Docker daemon
/// at the usual local endpoint (`DOCKER_HOST`, else `/var/run/docker.sock`).
///
/// What a container gets: the image's root file system, the attempt directory
/// bind-mounted at its host path (and its working directory, so `$DROVER_WORKDIR`
/// means the same inside and out), the task's environment plus Drover's variables
/// (not the agent's: the image's `PATH` stays), the task user's uid:gid when the agent
/// is root (`nobody` by default), else the agent's own uid:gid (so the agent can
/// delete what the task wrote), no privileges (`no-new-privileges`), the default
/// bridge network, and as limits: `nano_cpus` from the task's CPU request, `memory`
/// (swap included) from its memory limit, `pids_limit` from the driver's.
pub struct DockerDriver {
    docker: Docker,
    cfg: DriverConfig,
    attempts_dir: PathBuf,
    logs_dir: PathBuf,
    incarnation: String,
    /// The daemon's API version in use, for logs.
    api_version: String,
}

impl std::fmt::Debug for DockerDriver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DockerDriver")
            .field("work_root", &self.cfg.work_root)
            .field("api_version", &self.api_version)
            .finish_non_exhaustive()
    }
}

/// Connects to the local daemon at the highest API version both sides speak.
async fn connect() -> Result<Docker, ExecError> {
    let docker = Docker::connect_with_local_defaults().map_err(|source| ExecError::Docker {
        action: "connecting",
        source,
    })?;
    // bollard speaks a newer API than many daemons accept; without negotiating,
    // requests only work by accident (some daemons take unversioned paths).
    docker
        .negotiate_version()
        .await
        .map_err(|source| ExecError::Docker {
            action: "negotiating the API version",
            source,
        })
}

impl DockerDriver {
    /// Connects to the daemon (and checks it answers) and prepares the work root, laid
    /// out as the process driver's (`attempts/`, `logs/`), which it may share.
    pub async fn connect(cfg: DriverConfig) -> Result<Self, ExecError> {
        cfg.check_agent_id()?;
        let docker = connect().await?;
        let version = docker.version().await.map_err(|source| ExecError::Docker {
            action: "asking the daemon's version",
            source,
        })?;
        let attempts_dir = cfg.work_root.join("attempts");
        let logs_dir = cfg.work_root.join("logs");
        for d in [&attempts_dir, &logs_dir] {
            fs::create_dir_all(d).map_err(|e| ExecError::io("creating", d, e))?;
        }
        if let Some(user) = &cfg.task_user {
            confine::open_work_root_to(user, &cfg.work_root, &attempts_dir, &logs_dir)?;
        }
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let api_version = docker.client_version().to_string();
        tracing::info!(
            daemon = version.version.as_deref().unwrap_or("?"),
            api = %api_version,
            "docker driver connected"
        );
        Ok(DockerDriver {
            docker,
            cfg,
            attempts_dir,
            logs_dir,
            incarnation: format!("{:x}-{:x}", std::process::id(), nanos),
            api_version,
        })
    }

    pub fn config(&self) -> &DriverConfig {
        &self.cfg
    }

    /// `<work_root>/attempts/<task>.<attempt>`, mounted into the container.
    pub fn attempt_dir(&self, task: u64, attempt: u32) -> PathBuf {
        self.attempts_dir.join(format!("{task}.{attempt}"))
    }

    /// `<work_root>/logs/<task>.<attempt>.<stdout|stderr>`, outside the container.
    pub fn log_path(&self, task: u64, attempt: u32, stream: Stream) -> PathBuf {
        self.logs_dir
            .join(format!("{task}.{attempt}.{}", stream.as_str()))
    }

    /// The container's name: agent, attempt and incarnation, so two agents on one
    /// daemon and a re-run of the same attempt never collide.
    pub fn container_name(&self, task: u64, attempt: u32) -> String {
        format!(
            "drover-{}-{task}.{attempt}-{}",
            self.cfg.agent_id, self.incarnation
        )
    }

    fn task_env(&self, spec: &LaunchSpec, workdir: &Path) -> Vec<String> {
        let mut env = spec.env.clone();
        env.insert("DROVER_TASK_ID".into(), spec.task.to_string());
        env.insert("DROVER_ATTEMPT".into(), spec.attempt.to_string());
        let wd = workdir.to_string_lossy().into_owned();
        env.insert("DROVER_WORKDIR".into(), wd.clone());
        if let Some(u) = &self.cfg.task_user {
            env.insert("USER".into(), u.name.clone());
            env.insert("LOGNAME".into(), u.name.clone());
        }
        env.entry("HOME".into()).or_insert(wd);
        env.into_iter().map(|(k, v)| format!("{k}={v}")).collect()
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
        let Some(image) = spec.image.clone().filter(|i| !i.is_empty()) else {
            return Ok(failed("the docker driver needs an image".into()));
        };
        if spec.command.is_empty() || spec.command.iter().all(|a| a.is_empty()) {
            return Ok(failed("the command is empty".into()));
        }
        let user = self.cfg.task_user.as_ref();
        fresh_dir(&dir)?;
        if let Some(u) = user {
            confine::prepare_attempt_dir(&dir, u)
                .map_err(|e| ExecError::io("handing over", &dir, e))?;
        }
        let workdir = match &spec.workdir {
            None => dir.clone(),
            Some(w) if w.is_absolute() => {
                match confine::resolve_workdir(&dir, w, &self.cfg.allowed_paths, user) {
                    Ok(resolved) => resolved,
                    Err(why) => return Ok(failed(why.to_string())),
                }
            }
            Some(w) => match confine::resolve_workdir(&dir, w, &[], user) {
                Ok(resolved) => resolved,
                Err(why) => return Ok(failed(why.to_string())),
            },
        };
        let mut binds = vec![bind(&dir)];
        if !workdir.starts_with(&dir) {
            binds.push(bind(&workdir));
        }
        // The command runs exactly as given: as the entrypoint, so an image's own
        // ENTRYPOINT does not wrap it.
        let (entrypoint, cmd) = if spec.shell {
            (
                vec!["/bin/sh".to_string(), "-c".to_string()],
                vec![spec.command.join(" ")],
            )
        } else {
            (vec![spec.command[0].clone()], spec.command[1..].to_vec())
        };
        let (uid, gid) = match user {
            Some(u) => (u.uid, u.gid),
            None => crate::sys::own_ids(),
        };
        let labels = HashMap::from([
            (LABEL_AGENT.to_string(), self.cfg.agent_id.clone()),
            (LABEL_INCARNATION.to_string(), self.incarnation.clone()),
            (LABEL_TASK.to_string(), spec.task.to_string()),
            (LABEL_ATTEMPT.to_string(), spec.attempt.to_string()),
        ]);
        let memory = spec
            .memory_limit_bytes
            .map(|b| i64::try_from(b).unwrap_or(i64::MAX));
        let host_config = HostConfig {
            binds: Some(binds),
            nano_cpus: (spec.cpu_milli > 0).then(|| i64::from(spec.cpu_milli) * 1_000_000),
            memory,
            // Equal to `memory`: no swap, so the limit is the limit.
            memory_swap: memory,
            pids_limit: self
                .cfg
                .pids_limit
                .map(|p| i64::try_from(p).unwrap_or(i64::MAX)),
            privileged: Some(false),
            security_opt: Some(vec!["no-new-privileges".to_string()]),
            ..HostConfig::default()
        };
        let body = ContainerCreateBody {
            image: Some(image.clone()),
            entrypoint: Some(entrypoint),
            cmd: Some(cmd),
            env: Some(self.task_env(&spec, &workdir)),
            working_dir: Some(workdir.to_string_lossy().into_owned()),
            user: Some(format!("{uid}:{gid}")),
            labels: Some(labels),
            attach_stdin: Some(spec.stdin.is_some()),
            open_stdin: Some(spec.stdin.is_some()),
            stdin_once: Some(spec.stdin.is_some()),
            attach_stdout: Some(true),
            attach_stderr: Some(true),
            tty: Some(false),
            host_config: Some(host_config),
            ..ContainerCreateBody::default()
        };
        let drain = |stream, path: &PathBuf, keep: u64| Drain {
            stream,
            path: path.clone(),
            limit: self.cfg.output_limit_bytes,
            keep: usize::try_from(keep).unwrap_or(usize::MAX),
            live: spec.output.clone(),
        };
        let usage = Arc::new(ContainerUsage::new());
        let kill = KillHandle::new();
        let run = ContainerRun {
            docker: self.docker.clone(),
            name: self.container_name(spec.task, spec.attempt),
            image,
            body,
            stdin: spec.stdin,
            time_limit: spec.time_limit,
            kill_grace: self.cfg.kill_grace,
            kill: kill.clone(),
            usage: usage.clone(),
            stdout: drain(Stream::Stdout, &stdout_path, self.cfg.result_limit_bytes),
            stderr: drain(Stream::Stderr, &stderr_path, 0),
            stdout_path: stdout_path.clone(),
            stderr_path: stderr_path.clone(),
        };
        let (done_tx, done_rx) = oneshot::channel();
        rt.spawn(run.run(done_tx));
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

    /// Removes every container of this agent id that another incarnation left.
    async fn reap(&self, docker: &Docker) -> Result<Vec<OrphanReport>, bollard::errors::Error> {
        let filters = HashMap::from([(
            "label".to_string(),
            vec![format!("{LABEL_AGENT}={}", self.cfg.agent_id)],
        )]);
        let found = docker
            .list_containers(Some(ListContainersOptions {
                all: true,
                filters: Some(filters),
                ..ListContainersOptions::default()
            }))
            .await?;
        let mut reports = Vec::new();
        for c in found {
            let labels = c.labels.unwrap_or_default();
            if labels.get(LABEL_INCARNATION) == Some(&self.incarnation) {
                continue;
            }
            let Some(id) = c.id else { continue };
            let remove = RemoveContainerOptions {
                force: true,
                v: true,
                ..RemoveContainerOptions::default()
            };
            if let Err(e) = docker.remove_container(&id, Some(remove)).await {
                tracing::warn!(container = %id, "cannot remove a leftover container: {e}");
                continue;
            }
            let task = labels.get(LABEL_TASK).and_then(|v| v.parse().ok());
            let attempt = labels.get(LABEL_ATTEMPT).and_then(|v| v.parse().ok());
            if let (Some(task), Some(attempt)) = (task, attempt) {
                reports.push(OrphanReport {
                    task,
                    attempt,
                    pids: Vec::new(),
                });
            }
        }
        reports.sort_by_key(|r| (r.task, r.attempt));
        Ok(reports)
    }
}

fn bind(path: &Path) -> String {
    let p = path.to_string_lossy();
    format!("{p}:{p}")
}

impl Driver for DockerDriver {
    fn name(&self) -> &'static str {
        "docker"
    }

    fn launch(&self, spec: LaunchSpec) -> Result<RunningAttempt, ExecError> {
        self.do_launch(spec)
    }

    /// Force-removes (kills) the containers that earlier incarnations of this agent
    /// left, found by their labels. Blocks until done: it runs on a thread of its own
    /// with its own connection, so it may be called from anywhere, async code included
    /// (briefly blocking that thread, as the process driver's /proc scan does).
    fn reap_orphans(&self) -> Vec<OrphanReport> {
        // Built (timer included) inside the thread's runtime: a timer needs one.
        let work = || async {
            let reap = async {
                let docker = connect().await.map_err(|e| e.to_string())?;
                self.reap(&docker).await.map_err(|e| e.to_string())
            };
            tokio::time::timeout(Duration::from_secs(60), reap)
                .await
                .map_err(|_| "timed out".to_string())?
        };
        let result = std::thread::scope(|s| {
            s.spawn(|| {
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|e| e.to_string())
                    .and_then(|rt| rt.block_on(work()))
            })
            .join()
            .unwrap_or_else(|_| Err("the reaping thread panicked".to_string()))
        });
        result.unwrap_or_else(|e| {
            tracing::warn!("docker driver: cannot reap leftover containers: {e}");
            Vec::new()
        })
    }

    /// Removes the attempt directory and its two log files (the container is gone
    /// already: it is removed when its attempt ends).
    fn remove_attempt_dir(&self, task: u64, attempt: u32) -> Result<(), ExecError> {
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
