//! One attempt's container from creation to removal.

use super::usage::ContainerUsage;
use crate::finished::{Finished, OutputSummary};
use crate::kill::KillHandle;
use crate::output::{Capture, Drain};
use bollard::Docker;
use bollard::container::LogOutput;
use bollard::errors::Error as DockerError;
use bollard::models::ContainerCreateBody;
use bollard::query_parameters::{
    AttachContainerOptions, CreateContainerOptions, KillContainerOptions, RemoveContainerOptions,
    StatsOptions,
};
use drover_types::Outcome;
use futures_util::StreamExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::sync::oneshot;
use tokio::time::Instant;

/// How long the attach stream may keep delivering after the container exited.
const OUTPUT_LINGER: Duration = Duration::from_secs(5);

pub(crate) struct ContainerRun {
    pub docker: Docker,
    pub name: String,
    pub image: String,
    pub body: ContainerCreateBody,
    pub stdin: Option<Vec<u8>>,
    pub time_limit: Option<Duration>,
    pub kill_grace: Duration,
    pub kill: KillHandle,
    pub usage: Arc<ContainerUsage>,
    pub stdout: Drain,
    pub stderr: Drain,
    pub stdout_path: PathBuf,
    pub stderr_path: PathBuf,
}

async fn sleep_until_opt(t: Option<Instant>) {
    match t {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

/// Why a container could not be started, in words for the task's `SpawnFailed`.
fn start_error(image: &str, action: &str, e: &DockerError) -> String {
    match e {
        DockerError::DockerResponseServerError {
            status_code: 404,
            message,
        } if action == "create" => {
            format!("image {image} is not on this worker (workers do not pull): {message}")
        }
        DockerError::DockerResponseServerError { message, .. } => {
            format!("docker {action}: {message}")
        }
        other => format!("docker {action}: {other}"),
    }
}

impl ContainerRun {
    pub(crate) async fn run(self, done: oneshot::Sender<Finished>) {
        let finished = self.watch().await;
        let _ = done.send(finished);
    }

    fn finished(&self, outcome: Outcome, out: Capture, err: Capture) -> Finished {
        let usage = self.usage.snapshot();
        *self
            .usage
            .final_usage
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(usage);
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

    fn spawn_failed(&self, message: String) -> Finished {
        self.finished(
            Outcome::SpawnFailed { message },
            Capture::default(),
            Capture::default(),
        )
    }

    async fn signal(&self, signal: &str) {
        let opts = KillContainerOptions {
            signal: signal.to_string(),
        };
        if let Err(e) = self.docker.kill_container(&self.name, Some(opts)).await {
            // Usually: it has just exited.
            tracing::debug!(container = %self.name, signal, "docker kill: {e}");
        }
    }

    async fn remove(&self) {
        let opts = RemoveContainerOptions {
            force: true,
            v: true,
            ..RemoveContainerOptions::default()
        };
        for _ in 0..3 {
            match self
                .docker
                .remove_container(&self.name, Some(opts.clone()))
                .await
            {
                Ok(()) => return,
                Err(DockerError::DockerResponseServerError {
                    status_code: 404, ..
                }) => return,
                Err(e) => {
                    tracing::warn!(container = %self.name, "removing the container: {e}");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
        tracing::warn!(container = %self.name, "container left behind; reap_orphans of the next agent run removes it");
    }

    async fn watch(&self) -> Finished {
        let create = CreateContainerOptions {
            name: Some(self.name.clone()),
            ..CreateContainerOptions::default()
        };
        if let Err(e) = self
            .docker
            .create_container(Some(create), self.body.clone())
            .await
        {
            return self.spawn_failed(start_error(&self.image, "create", &e));
        }
        // Attached before the start, so no output is missed; without the log replay
        // (`logs`), which under load could deliver the first lines a second time (the
        // replay and the live stream overlapping), doubling them in the output file.
        let attach = AttachContainerOptions {
            stream: true,
            logs: false,
            stdout: true,
            stderr: true,
            stdin: self.stdin.is_some(),
            ..AttachContainerOptions::default()
        };
        let attached = match self.docker.attach_container(&self.name, Some(attach)).await {
            Ok(a) => a,
            Err(e) => {
                self.remove().await;
                return self.spawn_failed(start_error(&self.image, "attach", &e));
            }
        };
        if let Err(e) = self.docker.start_container(&self.name, None).await {
            self.remove().await;
            return self.spawn_failed(start_error(&self.image, "start", &e));
        }
        let started = Instant::now();
        *self.usage.started.lock().unwrap_or_else(|e| e.into_inner()) = Some(started);

        let mut output = attached.output;
        let mut out = self.stdout.clone_for_sink().into_sink();
        let mut err = self.stderr.clone_for_sink().into_sink();
        let reader = tokio::spawn(async move {
            while let Some(item) = output.next().await {
                match item {
                    Ok(LogOutput::StdOut { message } | LogOutput::Console { message }) => {
                        out.write(&message)
                    }
                    Ok(LogOutput::StdErr { message }) => err.write(&message),
                    Ok(LogOutput::StdIn { .. }) => {}
                    Err(e) => {
                        tracing::warn!("reading container output: {e}");
                        break;
                    }
                }
            }
            (out.finish(), err.finish())
        });
        if let Some(input) = self.stdin.clone() {
            let mut tx = attached.input;
            tokio::spawn(async move {
                // A broken pipe just means the task did not want all of it.
                let _ = tx.write_all(&input).await;
                let _ = tx.shutdown().await;
            });
        }
        let sampler = {
            let docker = self.docker.clone();
            let name = self.name.clone();
            let usage = self.usage.clone();
            tokio::spawn(async move {
                let opts = StatsOptions {
                    stream: true,
                    one_shot: false,
                };
                let mut stats = docker.stats(&name, Some(opts));
                while let Some(Ok(s)) = stats.next().await {
                    usage.record(&s);
                }
            })
        };

        let time_deadline = self.time_limit.map(|d| started + d);
        let mut reason: Option<Outcome> = None;
        let mut hard_deadline: Option<Instant> = None;
        let mut hard_killed = false;
        let mut wait = self.docker.wait_container(&self.name, None);
        let code: Option<i64> = loop {
            tokio::select! {
                biased;
                w = wait.next() => break match w {
                    Some(Ok(r)) => Some(r.status_code),
                    Some(Err(DockerError::DockerContainerWaitError { code, .. })) => Some(code),
                    Some(Err(e)) => {
                        tracing::warn!(container = %self.name, "waiting for the container: {e}");
                        None
                    }
                    None => None,
                },
                () = sleep_until_opt(time_deadline), if reason.is_none() => {
                    reason = Some(Outcome::TimedOut);
                    hard_deadline = Some(Instant::now() + self.kill_grace);
                    if self.kill_grace.is_zero() {
                        self.signal("SIGKILL").await;
                        hard_killed = true;
                    } else {
                        self.signal("SIGTERM").await;
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
                            self.signal("SIGKILL").await;
                            hard_killed = true;
                        } else if first {
                            self.signal("SIGTERM").await;
                        }
                    }
                }
                () = sleep_until_opt(hard_deadline), if !hard_killed => {
                    self.signal("SIGKILL").await;
                    hard_killed = true;
                }
            }
        };
        drop(wait);
        let wall = started.elapsed();
        let inspected = self.docker.inspect_container(&self.name, None).await.ok();
        let state = inspected.and_then(|i| i.state);
        let oom = state.as_ref().and_then(|s| s.oom_killed).unwrap_or(false);
        let code = code.or_else(|| state.as_ref().and_then(|s| s.exit_code));
        let (out, err) = match tokio::time::timeout(OUTPUT_LINGER, reader).await {
            Ok(Ok(captured)) => captured,
            _ => {
                tracing::warn!(container = %self.name, "container output did not end; keeping what arrived");
                (Capture::default(), Capture::default())
            }
        };
        sampler.abort();
        self.remove().await;
        let base = Outcome::Exited {
            code: code.map_or(-1, |c| i32::try_from(c).unwrap_or(-1)),
        };
        let outcome = match reason {
            Some(r) => r,
            None if oom && !base.is_success() => Outcome::OutOfMemory,
            None => base,
        };
        let mut finished = self.finished(outcome, out, err);
        finished.usage.wall_ms = wall.as_millis() as u64;
        *self
            .usage
            .final_usage
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(finished.usage);
        finished
    }
}
