//! Running one attempt: launch through the driver, forward its output, report its end.

use crate::checkpointer::{CheckpointSetup, Checkpointer};
use drover_exec::{Driver, KillHandle, LaunchSpec, LimitSetter, OutputChunk, Stream, UsageProbe};
use drover_proto::worker::{AttemptReport, AttemptUsage, OutputFrame, OutputStream, StartTask};
use drover_types::Outcome;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

/// What attempts tell the connection, in the order it must reach the server: an
/// attempt's output frames always precede its end.
#[derive(Debug)]
pub enum RunnerEvent {
    Started(drover_types::TaskId, drover_types::Attempt),
    Output(OutputFrame),
    Finished(AttemptReport),
    /// A piece of a checkpoint of the attempt (always before its end).
    Checkpoint(drover_proto::checkpoint::CheckpointChunk),
    /// The checkpoint directory of a waiting start is ready (restored, or empty): it
    /// may begin. `None` when it could not be prepared (the error).
    Prepared(
        drover_types::TaskId,
        drover_types::Attempt,
        Option<crate::checkpointer::CheckpointSetup>,
    ),
}

/// The environment Drover adds for a task, besides the driver's own variables.
fn task_env(start: &StartTask) -> std::collections::BTreeMap<String, String> {
    let mut env = start.spec.env.clone();
    // Secret values end here, in the task's environment (validation keeps their
    // names apart from `env`'s).
    env.extend(
        start
            .spec
            .secret_env
            .iter()
            .map(|(k, v)| (k.clone(), v.expose().to_string())),
    );
    if let (Some(i), Some(n)) = (start.array_index, start.array_count) {
        env.insert("DROVER_TASK_INDEX".into(), i.to_string());
        env.insert("DROVER_TASK_COUNT".into(), n.to_string());
    }
    if let Some((first, last)) = start.slice {
        // Both ends inclusive.
        env.insert("DROVER_RANGE_START".into(), first.to_string());
        env.insert("DROVER_RANGE_END".into(), last.to_string());
    }
    if !start.inputs.is_empty() {
        env.insert("DROVER_INPUT_COUNT".into(), start.inputs.len().to_string());
    }
    env
}

/// The devices the worker gave an attempt.
#[derive(Clone, Debug, Default)]
pub struct Devices {
    /// GPU indices it holds alone while it runs.
    pub gpu_ids: Vec<u32>,
    /// Whether the worker has GPUs at all: then a task given none is told so (an empty
    /// list), rather than left to see every device of the host.
    pub worker_has_gpus: bool,
}

/// The variables naming an attempt's GPUs: CUDA's, the NVIDIA container runtime's,
/// ROCm's and HIP's, and Drover's own. Set over the task's own `env`, so a task
/// cannot name devices it was not given.
fn gpu_env(devices: &Devices, env: &mut std::collections::BTreeMap<String, String>) {
    if devices.gpu_ids.is_empty() && !devices.worker_has_gpus {
        return;
    }
    let list = devices
        .gpu_ids
        .iter()
        .map(|i| i.to_string())
        .collect::<Vec<_>>()
        .join(",");
    for name in [
        "CUDA_VISIBLE_DEVICES",
        "ROCR_VISIBLE_DEVICES",
        "HIP_VISIBLE_DEVICES",
        "DROVER_GPU_IDS",
    ] {
        env.insert(name.into(), list.clone());
    }
    // The NVIDIA container runtime reads an empty value as "all": `void` is its "none".
    let nvidia = if list.is_empty() {
        "void".to_string()
    } else {
        list
    };
    env.insert("NVIDIA_VISIBLE_DEVICES".into(), nvidia);
}

/// The results of the task's dependencies, one after the other, each ending in a
/// newline: what a combine step reads on its stdin.
fn stdin_of(start: &StartTask) -> Option<Vec<u8>> {
    if start.inputs.is_empty() {
        return None;
    }
    let mut bytes = Vec::new();
    for input in &start.inputs {
        bytes.extend_from_slice(input.as_bytes());
        if !input.ends_with('\n') {
            bytes.push(b'\n');
        }
    }
    Some(bytes)
}

/// The agent's handles on one running attempt.
pub struct Handles {
    /// What the attempt was given of this worker's capacity (changed by a resize).
    pub resources: drover_types::Resources,
    pub kill: KillHandle,
    /// Samples the attempt's usage for heartbeats (none if it never started).
    pub probe: Option<Arc<dyn UsageProbe>>,
    /// Changes its limits (a granted resize), when its driver can.
    pub limits: Option<Arc<dyn LimitSetter>>,
}

/// How the attempt reaches its agent's task socket (dynamic resources).
pub struct TaskAccess {
    pub socket: std::path::PathBuf,
    pub token: String,
}

/// Launches the attempt and returns its handles; a task reports its end through
/// `events`. A launch the driver refuses is reported as a spawn failure at once.
pub fn launch(
    driver: &Arc<dyn Driver>,
    start: StartTask,
    devices: Devices,
    checkpoint: Option<CheckpointSetup>,
    access: Option<TaskAccess>,
    data_dir: Option<&std::path::Path>,
    events: mpsc::UnboundedSender<RunnerEvent>,
    metrics: &crate::metrics::WorkerMetrics,
) -> Handles {
    let (out_tx, mut out_rx) = mpsc::channel::<OutputChunk>(256);
    let mut env = task_env(&start);
    if let Some(a) = access {
        use drover_proto::task_socket::{SOCKET_ENV, TOKEN_ENV};
        env.insert(SOCKET_ENV.into(), a.socket.to_string_lossy().into_owned());
        env.insert(TOKEN_ENV.into(), a.token);
    }
    if let Some(dir) = data_dir {
        // Where the task finds and leaves data keys (see `data_catalog.rs`).
        env.insert("DROVER_DATA_DIR".into(), dir.to_string_lossy().into_owned());
    }
    gpu_env(&devices, &mut env);
    if let Some(c) = &checkpoint {
        env.insert(
            "DROVER_CHECKPOINT_DIR".into(),
            c.dir.to_string_lossy().into_owned(),
        );
        if let Some(from) = &c.resumed_from {
            env.insert("DROVER_RESUMED_FROM".into(), from.clone());
        }
    }
    let spec = LaunchSpec {
        task: start.task.0,
        attempt: start.attempt.0,
        command: start.spec.command.clone(),
        shell: start.spec.shell,
        env,
        workdir: start.spec.workdir.as_ref().map(Into::into),
        time_limit: start.spec.max_runtime_ms.map(Duration::from_millis),
        memory_limit_bytes: (start.spec.resources.memory_bytes > 0)
            .then_some(start.spec.resources.memory_bytes),
        cpu_milli: start.spec.resources.cpu_milli,
        stdin: stdin_of(&start),
        output: Some(out_tx),
        driver_options: Default::default(),
        driver: start.spec.driver.clone(),
        image: start.spec.image.clone(),
    };
    let (task, attempt) = (start.task, start.attempt);
    let resources = start.spec.resources.clone();
    let began = std::time::Instant::now();
    let launched = driver.launch(spec);
    metrics.launched(began.elapsed());
    let running = match launched {
        Ok(r) => r,
        Err(e) => {
            let _ = events.send(RunnerEvent::Finished(AttemptReport {
                task,
                attempt,
                outcome: Outcome::SpawnFailed {
                    message: e.to_string(),
                },
                usage: AttemptUsage::default(),
                result: String::new(),
                stdout_bytes: 0,
                stderr_bytes: 0,
                output_truncated: false,
                digest: String::new(),
            }));
            return Handles {
                resources,
                kill: KillHandle::new(),
                probe: None,
                limits: None,
            };
        }
    };
    let kill = running.kill_handle();
    let probe = running.usage_probe();
    let limits = running.limit_setter();
    let _ = events.send(RunnerEvent::Started(task, attempt));
    let checkpointer = checkpoint.map(|c| Checkpointer::start(task, attempt, c, events.clone()));
    let forward_events = events.clone();
    let forwarder = tokio::spawn(async move {
        while let Some(chunk) = out_rx.recv().await {
            let frame = OutputFrame {
                task,
                attempt,
                stream: match chunk.stream {
                    Stream::Stdout => OutputStream::Stdout,
                    Stream::Stderr => OutputStream::Stderr,
                },
                offset: chunk.offset,
                data: chunk.data,
            };
            if forward_events.send(RunnerEvent::Output(frame)).is_err() {
                break;
            }
        }
    });
    tokio::spawn(async move {
        let finished = running.wait().await;
        // Let the last chunks through before the end, so a follower of the output sees
        // all of it before the task is over.
        let _ = tokio::time::timeout(Duration::from_secs(2), forwarder).await;
        // The last checkpoint (what a stopped task wrote in its grace) goes before the
        // end, so the server has it before it places the next attempt. A success needs
        // none: there is no next attempt.
        if let Some(c) = checkpointer
            && !finished.outcome.is_success()
        {
            c.finish().await;
        }
        let _ = events.send(RunnerEvent::Finished(AttemptReport {
            task,
            attempt,
            outcome: finished.outcome,
            usage: finished.usage,
            result: String::from_utf8_lossy(&finished.result).into_owned(),
            stdout_bytes: finished.stdout.bytes,
            stderr_bytes: finished.stderr.bytes,
            output_truncated: finished.stdout.truncated || finished.stderr.truncated,
            digest: String::new(),
        }));
    });
    Handles {
        resources,
        kill,
        probe,
        limits,
    }
}
