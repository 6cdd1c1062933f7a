//! The agent's main loop: connect, run what the server starts, report, reconnect.

use crate::config::WorkerConfig;
use crate::connection::{self, ConnectError, Socket};
use crate::data_catalog::DataCatalog;
use crate::driver_set::DriverSet;
use crate::fence::Fence;
use crate::lifeline::Lifeline;
use crate::metrics::WorkerMetrics;
use crate::runner::{self, RunnerEvent};
use crate::task_socket::{ResizeAsk, TaskSocket, TaskTokens};
use drover_exec::{
    CgroupMode, DockerDriver, Driver, DriverConfig, HostInfo, HostSampler, ProcessDriver,
};
use drover_proto::integrity::TaskVerifier;
use drover_proto::worker::{
    AttemptReport, AttemptUsage, DataKey, OutputFrame, PROTOCOL_VERSION, RunningUsage,
    ServerMessage, StartTask, WorkerMessage,
};
use drover_types::{Attempt, Outcome, Resources, TaskId, WorkerSpec};
use futures_util::{SinkExt, StreamExt};
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;

#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error("cannot set up the execution driver: {0}")]
    Driver(#[from] drover_exec::ExecError),
    #[error("unknown driver {name:?}: this worker has process and docker")]
    UnknownDriver { name: String },
    #[error(transparent)]
    TaskUser(#[from] drover_exec::TaskUserError),
    #[error(transparent)]
    Connect(#[from] ConnectError),
    #[error("the server refused this worker: {0}")]
    Rejected(String),
    #[error("cannot use the data directory {path}: {source}")]
    DataDir {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("cannot store the worker credential in {path}: {source}")]
    Credential {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("the server's task key is not usable: {0}")]
    TaskKey(drover_proto::integrity::IntegrityError),
    #[error("cannot serve metrics on {addr}: {source}")]
    Metrics {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
}

/// How long to wait for the server's welcome after the hello (the server logs the
/// join first: an fsync).
const WELCOME_TIMEOUT: Duration = Duration::from_secs(10);
/// The longest one send may take: a connection whose peer stopped reading (or whose
/// packets are dropped) fills its buffers and would otherwise block the agent.
const SEND_TIMEOUT: Duration = Duration::from_secs(5);
/// Most output bytes kept while disconnected.
const MAX_OFFLINE_OUTPUT: usize = 64 << 20;
/// Events of running attempts sent in one write at most.
const MAX_EVENTS_PER_WRITE: usize = 64;
/// Heartbeats remembered while waiting for their acks.
const MAX_UNACKED_HEARTBEATS: usize = 64;

struct Agent {
    config: WorkerConfig,
    driver: Arc<dyn Driver>,
    spec: WorkerSpec,
    sampler: HostSampler,
    running: HashMap<(TaskId, Attempt), runner::Handles>,
    /// The attempts of `running` whose process has started. Their `Started` reports
    /// are sent again after every welcome: one sent just before a connection dropped
    /// (or to a leader that lost its office with the report in flight) may never have
    /// been recorded, and one that started while disconnected was never sent. The
    /// server takes a repeated report as a no-op.
    spawned: BTreeSet<(TaskId, Attempt)>,
    /// Starts received but not begun, in the order received: the server may send a
    /// task before there is room for it (prefetch). The head starts as soon as it fits
    /// beside what runs, never out of order: the core promotes them in the same order
    /// from the same stream of ends, so both agree on what holds the capacity.
    waiting: VecDeque<StartTask>,
    /// Sum of the resources of `running`.
    allocated: Resources,
    /// Which GPU indices each attempt of `running` holds.
    gpus: crate::gpus::GpuAllocator,
    /// Connected and welcomed: waiting starts may begin (never while cut off, when the
    /// server may be about to give them to another worker).
    connected: bool,
    /// Ended attempts whose end the server has not acknowledged yet; sent again on
    /// every reconnect until it does.
    unacked: BTreeMap<(TaskId, Attempt), AttemptReport>,
    events_tx: mpsc::UnboundedSender<RunnerEvent>,
    events_rx: mpsc::UnboundedReceiver<RunnerEvent>,
    /// Output produced while disconnected, sent after the next welcome.
    offline_output: Vec<OutputFrame>,
    offline_output_bytes: usize,
    /// Output sent on this connection that the server has not confirmed yet, each with
    /// the sequence number of the next heartbeat at the time: the server handles one
    /// connection's messages in order, so the ack of heartbeat `n` confirms every frame
    /// tagged `n` or less. What is unconfirmed when the connection drops is sent again
    /// after the next welcome (the server ignores bytes it already holds).
    unconfirmed_output: VecDeque<(u64, OutputFrame)>,
    unconfirmed_output_bytes: usize,
    heartbeat_every: Duration,
    /// Stops every task when the server has not proven it hears us for `fence_after`.
    fence: Fence,
    fence_fired: watch::Receiver<u64>,
    /// From the welcome: the fence's window after each proof of contact.
    fence_after: Duration,
    /// Heartbeats sent on this connection and not acknowledged yet: (seq, sent at).
    beats: VecDeque<(u64, Instant)>,
    next_beat: u64,
    metrics: Arc<WorkerMetrics>,
    /// What this worker presents when it connects: its stored credential, else its
    /// join token, else the cluster token.
    bearer: String,
    /// The cluster's task key, from the latest welcome: starts whose signature does not
    /// verify with it are refused (reported as failing to start), never run.
    verifier: Option<TaskVerifier>,
    /// Checkpoint bytes the server sent ahead of a start that resumes from them, per
    /// task (one restore at a time per task).
    restores: HashMap<TaskId, Vec<u8>>,
    /// Waiting starts whose checkpoint directory is being prepared (restored): they
    /// begin only once it is ready.
    preparing: BTreeSet<(TaskId, Attempt)>,
    /// Prepared checkpoint directories of waiting starts.
    prepared: HashMap<(TaskId, Attempt), crate::checkpointer::CheckpointSetup>,
    /// Dynamic resources: the running attempts' tokens for the task socket, the socket
    /// (none if it could not be opened: tasks then get no socket in their
    /// environment), the requests it passes on, and those sent to the server and not
    /// answered yet, by request number.
    tokens: TaskTokens,
    task_socket: Option<TaskSocket>,
    asks: mpsc::Receiver<ResizeAsk>,
    asked: HashMap<u64, ResizeAsk>,
    next_ask: u64,
    /// The files of the data directory, scanned on their own thread (none for agents
    /// run by [`run_with_driver`], such as the scale harness's simulated ones).
    data: Option<DataCatalog>,
    /// The data keys last sent on this connection (in the hello or a heartbeat): a
    /// heartbeat carries the list only when it differs.
    data_sent: Vec<DataKey>,
    /// Each running attempt's CPU time at the previous heartbeat, for the CPU rate of
    /// the worker's load.
    cpu_seen: HashMap<(TaskId, Attempt), (u64, Instant)>,
}

/// Runs a worker until `shutdown` resolves (or a fatal error). Running tasks are killed
/// on shutdown. `lifeline` is the pipe to this worker's reaper process, if it has one
/// (see [`crate::lifeline`]): it then also kills the tasks of an agent that is frozen
/// past its fence deadline.
pub async fn run(
    mut config: WorkerConfig,
    shutdown: impl Future<Output = ()>,
    lifeline: Option<Lifeline>,
) -> Result<(), WorkerError> {
    let (work_root, agent_id) = identity(&config);
    std::fs::create_dir_all(&work_root).map_err(|source| WorkerError::DataDir {
        path: work_root.clone(),
        source,
    })?;
    let mut driver_config = DriverConfig::new(&work_root, agent_id);
    driver_config.kill_grace = config.kill_grace;
    driver_config.output_limit_bytes = config.output_limit_bytes;
    driver_config.result_limit_bytes = config.result_limit_bytes;
    driver_config.cgroups = if config.cgroups {
        CgroupMode::Auto
    } else {
        CgroupMode::Off
    };
    driver_config.task_user = drover_exec::TaskUser::for_agent(config.task_user.as_deref())?;
    driver_config.allowed_paths = config.allowed_paths.clone();
    driver_config.pids_limit = config.pids_limit;
    driver_config.cpu_quota = config.cpu_quota;
    let driver = ProcessDriver::new(driver_config.clone())?;
    match &driver.config().task_user {
        Some(u) => {
            // Passable, not listable: tasks reach `work/attempts/<theirs>` by path but
            // cannot see what else the worker keeps here.
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&config.data_dir, std::fs::Permissions::from_mode(0o711))
                .map_err(|source| WorkerError::DataDir {
                    path: config.data_dir.clone(),
                    source,
                })?;
            tracing::info!(user = %u.name, uid = u.uid, gid = u.gid, "tasks run as");
            config.checkpoint_owner = Some((u.uid, u.gid));
        }
        None => tracing::info!("tasks run as the agent's own user"),
    }
    tracing::info!(mode = %driver.mode_description(), "execution driver ready");
    let mut drivers = DriverSet::new(Arc::new(driver));
    for name in &config.drivers {
        match name.as_str() {
            drover_types::PROCESS_DRIVER => {}
            drover_types::DOCKER_DRIVER => {
                let docker = DockerDriver::connect(driver_config.clone()).await?;
                drivers.insert(name.clone(), Arc::new(docker));
            }
            _ => return Err(WorkerError::UnknownDriver { name: name.clone() }),
        }
    }
    if let Some(dir) = &config.plugin_dir {
        let plugin_config = drover_exec::plugin::PluginConfig::like(&driver_config);
        for plugin in drover_exec::plugin::discover(dir, &plugin_config).await? {
            let name = plugin.name().to_string();
            tracing::info!(driver = %name, dir = %dir.display(), "driver plugin ready");
            drivers.insert(name, Arc::new(plugin));
        }
    }
    tracing::info!(drivers = ?drivers.names(), "execution drivers ready");
    if config.gpu_ids.is_none() {
        config.gpu_ids = Some(crate::gpus::discover(std::path::Path::new("/dev")).await);
    }
    tracing::info!(gpus = ?config.gpu_ids, "GPU indices handed out to tasks");
    let host = HostInfo::detect(&work_root)?;
    let capacity = config.capacity(&host.capacity);
    let data = start_data_catalog(&config, driver_config.task_user.as_ref())?;
    serve_agent(
        config,
        Arc::new(drivers),
        capacity,
        shutdown,
        lifeline,
        Some(data),
    )
    .await
}

/// Makes the data directory (0700, owned by the task user when tasks run as another
/// user, so that they can write into it) and starts scanning it.
fn start_data_catalog(
    config: &WorkerConfig,
    task_user: Option<&drover_exec::TaskUser>,
) -> Result<DataCatalog, WorkerError> {
    use std::os::unix::fs::PermissionsExt;
    let dir = config.data_keys_dir();
    let err = |source| WorkerError::DataDir {
        path: dir.clone(),
        source,
    };
    std::fs::create_dir_all(&dir).map_err(err)?;
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).map_err(err)?;
    if let Some(u) = task_user {
        std::os::unix::fs::chown(&dir, Some(u.uid), Some(u.gid)).map_err(err)?;
    }
    tracing::info!(dir = %dir.display(), "data keys: the files of this directory");
    DataCatalog::start(dir.clone()).map_err(err)
}

/// [`run`] with a driver of the caller's choice and the capacity to declare as given
/// (no host detection): the scale harness runs many agents in one process this way,
/// each with a `SimulatedDriver`. The data directory is still created (the heartbeat
/// samples its disk).
pub async fn run_with_driver(
    config: WorkerConfig,
    driver: Arc<dyn Driver>,
    capacity: Resources,
    shutdown: impl Future<Output = ()>,
    lifeline: Option<Lifeline>,
) -> Result<(), WorkerError> {
    serve_agent(config, driver, capacity, shutdown, lifeline, None).await
}

async fn serve_agent(
    config: WorkerConfig,
    driver: Arc<dyn Driver>,
    capacity: Resources,
    shutdown: impl Future<Output = ()>,
    lifeline: Option<Lifeline>,
    data: Option<DataCatalog>,
) -> Result<(), WorkerError> {
    let (work_root, _) = identity(&config);
    std::fs::create_dir_all(&work_root).map_err(|source| WorkerError::DataDir {
        path: work_root.clone(),
        source,
    })?;
    // The indices to hand out: as given (or found) by `run`, else 0..gpus of the
    // declared capacity (a caller of this function that only counts them).
    let gpu_ids = match &config.gpu_ids {
        Some(ids) if ids.len() == capacity.gpus as usize => ids.clone(),
        _ => (0..capacity.gpus).collect(),
    };
    let mut isolation = driver.isolation();
    isolation.gpu_ids = gpu_ids.clone();
    tracing::info!(enforced = %isolation.summary(), how = %isolation.mechanism, "task isolation");
    let spec = WorkerSpec {
        name: config.name.clone(),
        capacity,
        labels: config.labels.clone(),
        data_keys: config.data_keys.clone(),
        drivers: driver.drivers(),
        isolation,
    };
    let metrics = Arc::new(WorkerMetrics::new());
    if let Some(addr) = config.metrics_listen {
        let bound = crate::metrics::serve(addr, metrics.clone())
            .await
            .map_err(|source| WorkerError::Metrics { addr, source })?;
        tracing::info!(%bound, "serving metrics at http://{bound}/metrics");
    }
    let credential_path = config.credential_path();
    let bearer = match tokio::fs::read_to_string(&credential_path).await {
        Ok(c) if !c.trim().is_empty() => c.trim().to_string(),
        Ok(_) => fallback_bearer(&config),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => fallback_bearer(&config),
        Err(source) => {
            return Err(WorkerError::Credential {
                path: credential_path,
                source,
            });
        }
    };
    let (events_tx, events_rx) = mpsc::unbounded_channel();
    let tokens = TaskTokens::default();
    let (asks_tx, asks) = mpsc::channel(crate::task_socket::QUEUE);
    // Inside the work directory, which the task user can pass through (not list).
    let socket_path = work_root.join("agent.sock");
    let task_socket = match TaskSocket::bind(
        &socket_path,
        config.checkpoint_owner,
        tokens.clone(),
        asks_tx,
    ) {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::warn!(path = %socket_path.display(), "no task socket (tasks cannot resize themselves): {e}");
            None
        }
    };
    let fence = Fence::start(config.kill_grace, lifeline);
    let fence_fired = fence.subscribe();
    let mut agent = Agent {
        sampler: HostSampler::new(&work_root),
        config,
        driver,
        spec,
        running: HashMap::new(),
        spawned: BTreeSet::new(),
        waiting: VecDeque::new(),
        allocated: Resources::default(),
        gpus: crate::gpus::GpuAllocator::new(gpu_ids),
        connected: false,
        unacked: BTreeMap::new(),
        events_tx,
        events_rx,
        offline_output: Vec::new(),
        offline_output_bytes: 0,
        unconfirmed_output: VecDeque::new(),
        unconfirmed_output_bytes: 0,
        heartbeat_every: Duration::from_secs(1),
        fence,
        fence_fired,
        fence_after: Duration::ZERO,
        beats: VecDeque::new(),
        next_beat: 0,
        metrics,
        bearer,
        verifier: None,
        restores: HashMap::new(),
        preparing: BTreeSet::new(),
        prepared: HashMap::new(),
        tokens,
        task_socket,
        asks,
        asked: HashMap::new(),
        next_ask: 0,
        data,
        data_sent: Vec::new(),
        cpu_seen: HashMap::new(),
    };
    // Attempts a previous run of this agent left behind cannot be watched any more:
    // end them, and report them ended so the server can retry them per their policy.
    for orphan in agent.driver.reap_orphans() {
        tracing::warn!(
            task = orphan.task,
            attempt = orphan.attempt,
            "killed an attempt left by a previous run of this worker"
        );
        let key = (TaskId(orphan.task), Attempt(orphan.attempt));
        agent
            .unacked
            .insert(key, ended_report(key, Outcome::Killed));
    }
    tokio::pin!(shutdown);
    let result = agent.serve(&mut shutdown).await;
    agent.stop_all_tasks().await;
    result
}

/// Makes `dir` a fresh checkpoint directory under `root` (0711 when tasks run as
/// another user: passable, not listable), owned by the task user, and unpacks
/// `restore` into it.
fn prepare_dir(
    root: &std::path::Path,
    dir: &std::path::Path,
    owner: Option<(u32, u32)>,
    restore: Option<&[u8]>,
) -> Result<(), crate::checkpoint_archive::ArchiveError> {
    use std::os::unix::fs::PermissionsExt;
    let io = |path: &std::path::Path| {
        let path = path.to_path_buf();
        move |source| crate::checkpoint_archive::ArchiveError::Io { path, source }
    };
    std::fs::create_dir_all(root).map_err(io(root))?;
    if owner.is_some() {
        std::fs::set_permissions(root, std::fs::Permissions::from_mode(0o711)).map_err(io(root))?;
    }
    match std::fs::remove_dir_all(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io(dir)(e)),
    }
    std::fs::create_dir(dir).map_err(io(dir))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(io(dir))?;
    if let Some((uid, gid)) = owner {
        std::os::unix::fs::chown(dir, Some(uid), Some(gid)).map_err(io(dir))?;
    }
    if let Some(bytes) = restore {
        crate::checkpoint_archive::unpack(bytes, dir, owner)?;
    }
    Ok(())
}

/// Where a worker's attempts live and the id that marks its processes.
pub fn identity(config: &WorkerConfig) -> (std::path::PathBuf, String) {
    let work_root = config.data_dir.join("work");
    let name: String = config
        .name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .take(40)
        .collect();
    // The name alone is not enough: two workers of the same name on one host (two
    // clusters' `drover up`, or two data directories) would reap each other's tasks.
    // The data directory tells them apart; the same directory is the same worker.
    let place = std::path::absolute(&config.data_dir).unwrap_or_else(|_| config.data_dir.clone());
    let agent_id = format!(
        "w{name}-{:016x}",
        fnv1a(place.as_os_str().as_encoded_bytes())
    );
    (work_root, agent_id)
}

/// FNV-1a: a stable hash (the same in every build and run), unlike std's hasher.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ *b as u64).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The secret to present without a stored credential: the join token if given.
fn fallback_bearer(config: &WorkerConfig) -> String {
    config
        .join_token
        .clone()
        .filter(|t| !t.trim().is_empty())
        .unwrap_or_else(|| config.token.clone())
}

/// Writes the credential the server gave (mode 0600, through a temporary file and a
/// rename, off the async threads): a crash mid-write must not leave half of it.
async fn store_credential(path: std::path::PathBuf, secret: String) -> std::io::Result<()> {
    tokio::task::spawn_blocking(move || {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let tmp = path.with_extension("tmp");
        let _ = std::fs::remove_file(&tmp);
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(secret.as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, &path)
    })
    .await
    .map_err(std::io::Error::other)?
}

fn ended_report((task, attempt): (TaskId, Attempt), outcome: Outcome) -> AttemptReport {
    AttemptReport {
        task,
        attempt,
        outcome,
        usage: AttemptUsage::default(),
        result: String::new(),
        stdout_bytes: 0,
        stderr_bytes: 0,
        output_truncated: false,
        digest: String::new(),
    }
    .sealed()
}

async fn send_json(socket: &mut Socket, message: &WorkerMessage) -> Result<(), String> {
    let text = serde_json::to_string(message).map_err(|e| e.to_string())?;
    send(socket, Message::Text(text.into())).await
}

/// Queues a message on the socket without flushing it, bounded by [`SEND_TIMEOUT`].
async fn feed_json(socket: &mut Socket, message: &WorkerMessage) -> Result<(), String> {
    let text = serde_json::to_string(message).map_err(|e| e.to_string())?;
    feed(socket, Message::Text(text.into())).await
}

async fn feed(socket: &mut Socket, message: Message) -> Result<(), String> {
    match tokio::time::timeout(SEND_TIMEOUT, socket.feed(message)).await {
        Ok(fed) => fed.map_err(|e| e.to_string()),
        Err(_) => Err(format!("a send took longer than {SEND_TIMEOUT:?}")),
    }
}

/// Writes out what was fed, bounded by [`SEND_TIMEOUT`].
async fn flush(socket: &mut Socket) -> Result<(), String> {
    match tokio::time::timeout(SEND_TIMEOUT, socket.flush()).await {
        Ok(flushed) => flushed.map_err(|e| e.to_string()),
        Err(_) => Err(format!("a send took longer than {SEND_TIMEOUT:?}")),
    }
}

/// One send, bounded by [`SEND_TIMEOUT`].
async fn send(socket: &mut Socket, message: Message) -> Result<(), String> {
    match tokio::time::timeout(SEND_TIMEOUT, socket.send(message)).await {
        Ok(sent) => sent.map_err(|e| e.to_string()),
        Err(_) => Err(format!("a send took longer than {SEND_TIMEOUT:?}")),
    }
}

/// The wait before reconnection attempt `tries` (0 first): doubling from 100 ms up to
/// `cap`, each spread over its upper half so that workers cut off together do not
/// return in lockstep.
fn reconnect_delay(tries: u32, cap: Duration) -> Duration {
    let full = Duration::from_millis(100)
        .saturating_mul(1 << tries.min(16))
        .min(cap);
    let mut seed = [0u8; 2];
    let spread = match getrandom::fill(&mut seed) {
        Ok(()) => u16::from_le_bytes(seed) as u32,
        Err(_) => 0,
    };
    full / 2 + (full / 2).mul_f64(spread as f64 / u16::MAX as f64)
}

enum SessionEnd {
    Shutdown,
    Disconnected(String),
    /// Refused by a server that named the leader.
    NotLeader {
        why: String,
        leader: String,
    },
}

impl Agent {
    async fn serve(
        &mut self,
        shutdown: &mut (impl Future<Output = ()> + Unpin),
    ) -> Result<(), WorkerError> {
        let mut tries = 0u32;
        // Several servers (comma-separated): only the leader takes a worker, so after a
        // refusal or a lost connection the next one is tried.
        let mut urls: Vec<String> = self
            .config
            .server
            .split(',')
            .map(|u| u.trim().to_string())
            .filter(|u| !u.is_empty())
            .collect();
        let mut next = 0usize;
        let mut redirected = false;
        loop {
            let url = urls
                .get(next % urls.len().max(1))
                .cloned()
                .unwrap_or_else(|| self.config.server.clone());
            next = next.wrapping_add(1);
            // The fence runs on its own; while connecting (bounded by the connect
            // timeout) its firing is handled as soon as the attempt returns.
            let connected = tokio::select! {
                _ = &mut *shutdown => return Ok(()),
                c = connection::connect(&url, &self.bearer, self.config.tls.clone()) => c,
            };
            match connected {
                Ok(socket) => match self.session_then_disconnect(socket, shutdown).await? {
                    SessionEnd::Shutdown => return Ok(()),
                    SessionEnd::Disconnected(why) => {
                        tracing::warn!("lost the connection to the server: {why}");
                        tries = 0;
                    }
                    SessionEnd::NotLeader { why, leader } => {
                        tracing::warn!("lost the connection to the server: {why}");
                        tries = 0;
                        // The leader next, even one this worker was not given (a
                        // server added to the group since).
                        let at = match urls.iter().position(|u| u.trim_end_matches('/') == leader) {
                            Some(at) => at,
                            None => {
                                tracing::info!(%leader, "trying the leader the server named, not in this worker's list");
                                urls.push(leader);
                                urls.len() - 1
                            }
                        };
                        next = at;
                        redirected = true;
                    }
                },
                Err(e) if e.is_fatal() => return Err(e.into()),
                Err(e) => tracing::debug!("{e}"),
            }
            // Wait before the next try, still handling what attempts report: briefly
            // between the servers of a group, with backoff once all were tried.
            let until = if std::mem::take(&mut redirected)
                || (urls.len() > 1 && !next.is_multiple_of(urls.len()))
            {
                Instant::now() + Duration::from_millis(50)
            } else {
                let t = Instant::now() + reconnect_delay(tries, self.config.max_reconnect_backoff);
                tries = tries.saturating_add(1);
                t
            };
            loop {
                tokio::select! {
                    _ = &mut *shutdown => return Ok(()),
                    ev = self.events_rx.recv() => if let Some(ev) = ev { self.record_offline(ev) },
                    ask = self.asks.recv() => if let Some(ask) = ask {
                        let _ = ask.reply.send(Err("the agent is not connected to the server; try again".into()));
                    },
                    _ = self.fence_fired.changed() => self.on_fence_fired(),
                    _ = tokio::time::sleep_until(until) => break,
                }
            }
        }
    }

    /// The fence stopped every running attempt (their ends come through the runner as
    /// usual). Nothing waiting may start later either: the server gives them elsewhere.
    fn on_fence_fired(&mut self) {
        for start in std::mem::take(&mut self.waiting) {
            let key = (start.task, start.attempt);
            self.unacked.insert(key, ended_report(key, Outcome::Fenced));
        }
    }

    /// Records an attempt's end for the server: its capacity is free again, and an
    /// attempt the fence stopped is reported as fenced, not as an ordinary kill.
    fn record_end(&mut self, mut report: AttemptReport) -> AttemptReport {
        let key = (report.task, report.attempt);
        if let Some(h) = self.running.remove(&key) {
            self.allocated.sub(&h.resources);
        }
        self.tokens.revoke(key.0, key.1);
        self.gpus.release(key);
        self.spawned.remove(&key);
        if self.fence.ended(key) && report.outcome == Outcome::Killed {
            report.outcome = Outcome::Fenced;
        }
        self.metrics.ended(&report.outcome);
        self.metrics
            .set_load(self.running.len(), self.waiting.len());
        let report = report.sealed();
        self.unacked.insert(key, report.clone());
        report
    }

    fn record_offline(&mut self, ev: RunnerEvent) {
        match ev {
            RunnerEvent::Finished(report) => {
                self.record_end(report);
            }
            // Kept for the next connection, up to a bound: output printed while the
            // server is away is not lost, and a long outage cannot eat the memory.
            RunnerEvent::Output(frame) => {
                if self.offline_output_bytes + frame.data.len() <= MAX_OFFLINE_OUTPUT {
                    self.offline_output_bytes += frame.data.len();
                    self.offline_output.push(frame);
                }
            }
            // The next hello lists what runs; its start is told after the welcome.
            RunnerEvent::Started(task, attempt) => {
                if self.running.contains_key(&(task, attempt)) {
                    self.spawned.insert((task, attempt));
                }
            }
            // Not kept: the next interval (or the end) sends a newer one.
            RunnerEvent::Checkpoint(chunk) => {
                tracing::debug!(task = %chunk.task, version = chunk.version, "a checkpoint chunk was not sent: no connection");
            }
            RunnerEvent::Prepared(task, attempt, setup) => {
                self.on_prepared(task, attempt, setup);
            }
        }
    }

    /// A checkpoint directory is ready: its start may begin.
    fn on_prepared(
        &mut self,
        task: TaskId,
        attempt: Attempt,
        setup: Option<crate::checkpointer::CheckpointSetup>,
    ) {
        self.preparing.remove(&(task, attempt));
        if let Some(setup) = setup {
            self.prepared.insert((task, attempt), setup);
        }
        self.start_waiting();
    }

    /// Prepares the checkpoint directory of a start that takes checkpoints, on a
    /// blocking thread: `<data_dir>/checkpoints/<task>.<attempt>`, fresh, owned by the
    /// task user, with the checkpoint it resumes from unpacked into it.
    fn prepare_checkpoint_dir(&mut self, start: &StartTask) {
        let Some(spec) = &start.spec.checkpoint else {
            return;
        };
        let key = (start.task, start.attempt);
        let restore = start.resume.clone().and_then(|r| {
            let bytes = self.restores.remove(&start.task)?;
            (drover_proto::checkpoint::digest_hex(&bytes) == r.digest).then_some((r, bytes))
        });
        if start.resume.is_some() && restore.is_none() {
            tracing::warn!(task = %start.task, attempt = %start.attempt, "the checkpoint this attempt resumes from did not arrive whole; it starts from an empty directory");
        }
        let root = self.config.checkpoints_dir();
        let owner = self.config.checkpoint_owner;
        let max_bytes = self.config.max_checkpoint_bytes;
        let interval = Duration::from_millis(spec.interval_ms);
        let events = self.events_tx.clone();
        self.preparing.insert(key);
        tokio::task::spawn_blocking(move || {
            let dir = root.join(format!("{}.{}", key.0, key.1));
            let prepared = prepare_dir(
                &root,
                &dir,
                owner,
                restore.as_ref().map(|(_, b)| b.as_slice()),
            );
            let setup = match prepared {
                Ok(()) => Some(crate::checkpointer::CheckpointSetup {
                    initial_digest: Some(match &restore {
                        Some((r, _)) => r.digest.clone(),
                        None => drover_proto::checkpoint::digest_hex(
                            &crate::checkpoint_archive::pack(&dir, max_bytes).unwrap_or_default(),
                        ),
                    }),
                    resumed_from: restore.map(|(r, _)| r.to_string()),
                    dir,
                    interval,
                    max_bytes,
                }),
                Err(e) => {
                    tracing::warn!(task = %key.0, attempt = %key.1, "cannot prepare the checkpoint directory; the attempt runs without checkpoints: {e}");
                    None
                }
            };
            let _ = events.send(RunnerEvent::Prepared(key.0, key.1, setup));
        });
    }

    /// Asks every attempt to stop and waits (bounded by the grace period) until each
    /// has ended, so that none outlives the agent.
    async fn stop_all_tasks(&mut self) {
        // Waiting ones never start; on rejoin the server finds them missing.
        self.waiting.clear();
        self.connected = false;
        if self.running.is_empty() {
            return;
        }
        let grace = self.config.kill_grace.min(Duration::from_secs(5));
        for handles in self.running.values() {
            handles.kill.kill(grace);
        }
        let deadline = tokio::time::Instant::now() + grace + Duration::from_secs(2);
        while !self.running.is_empty() {
            match tokio::time::timeout_at(deadline, self.events_rx.recv()).await {
                Ok(Some(ev)) => self.record_offline(ev),
                Ok(None) | Err(_) => break,
            }
        }
    }

    async fn session_then_disconnect(
        &mut self,
        socket: Socket,
        shutdown: &mut (impl Future<Output = ()> + Unpin),
    ) -> Result<SessionEnd, WorkerError> {
        let end = self.session(socket, shutdown).await;
        self.connected = false;
        // Resizes sent and not answered: their tasks hear that the connection was lost
        // (the decision, if one was made, is in the log and shown by `drover status`).
        self.asked.clear();
        // Output the server may not have received goes out again, before anything
        // printed since.
        let mut again: Vec<OutputFrame> = std::mem::take(&mut self.unconfirmed_output)
            .into_iter()
            .map(|(_, f)| f)
            .collect();
        again.append(&mut self.offline_output);
        self.offline_output_bytes = again.iter().map(|f| f.data.len()).sum();
        self.offline_output = again;
        self.unconfirmed_output_bytes = 0;
        end
    }

    async fn session(
        &mut self,
        mut socket: Socket,
        shutdown: &mut (impl Future<Output = ()> + Unpin),
    ) -> Result<SessionEnd, WorkerError> {
        // Reports that ended while we were away go first, inside the hello.
        while let Ok(ev) = self.events_rx.try_recv() {
            self.record_offline(ev);
        }
        // The keys it holds now replace whatever the server has for it.
        self.data_sent = self.data_keys();
        let mut spec = self.spec.clone();
        spec.data_keys = self.data_sent.iter().map(|k| k.key.clone()).collect();
        let hello = WorkerMessage::Hello {
            protocol_version: PROTOCOL_VERSION,
            spec,
            kill_grace_ms: self.config.kill_grace.as_millis() as u64,
            running: self
                .running
                .keys()
                .copied()
                .chain(self.waiting.iter().map(|s| (s.task, s.attempt)))
                .collect(),
            finished: self.unacked.values().cloned().collect(),
        };
        // The welcome will prove the server heard us at or after this moment.
        let hello_sent = Instant::now();
        if let Err(e) = send_json(&mut socket, &hello).await {
            return Ok(SessionEnd::Disconnected(e));
        }
        let welcome = match tokio::time::timeout(WELCOME_TIMEOUT, socket.next()).await {
            Ok(Some(Ok(Message::Text(t)))) => serde_json::from_str::<ServerMessage>(&t).ok(),
            Ok(_) => None,
            Err(_) => {
                return Ok(SessionEnd::Disconnected(
                    "no welcome from the server".into(),
                ));
            }
        };
        match welcome {
            Some(ServerMessage::Welcome {
                protocol_version,
                worker,
                heartbeat_interval_ms,
                lost_after_ms,
                fence_after_ms,
                task_key,
                credential,
            }) => {
                self.verifier =
                    Some(TaskVerifier::from_hex(&task_key).map_err(WorkerError::TaskKey)?);
                if let Some(secret) = credential {
                    // Joined with a join token: from now on this worker is itself.
                    let path = self.config.credential_path();
                    store_credential(path.clone(), secret.clone())
                        .await
                        .map_err(|source| WorkerError::Credential { path, source })?;
                    tracing::info!("received and stored this worker's credential");
                    self.bearer = secret;
                }
                self.heartbeat_every = Duration::from_millis(heartbeat_interval_ms.max(10));
                self.fence_after = Duration::from_millis(fence_after_ms);
                self.fence.proven(hello_sent, self.fence_after);
                tracing::info!(%worker, protocol_version, server = %self.config.server, lost_after_ms, fence_after_ms, "joined the cluster");
            }
            Some(ServerMessage::Reject {
                reason,
                permanent,
                leader,
            }) => {
                if permanent {
                    return Err(WorkerError::Rejected(reason));
                }
                let why = format!("rejected: {reason}");
                return Ok(match leader {
                    Some(leader) => SessionEnd::NotLeader { why, leader },
                    None => SessionEnd::Disconnected(why),
                });
            }
            _ => {
                return Ok(SessionEnd::Disconnected(
                    "no welcome from the server".into(),
                ));
            }
        }
        // A fence that fired before this welcome is behind us: the proof just moved it.
        self.fence_fired.mark_unchanged();
        self.beats.clear();
        let mut last_proof = hello_sent;
        self.connected = true;
        let started: Vec<(TaskId, Attempt)> = self.spawned.iter().copied().collect();
        for (task, attempt) in started {
            if let Err(e) = send_json(&mut socket, &self.started_message(task, attempt)).await {
                return Ok(SessionEnd::Disconnected(e));
            }
        }
        self.start_waiting();
        let mut pending = std::mem::take(&mut self.offline_output).into_iter();
        self.offline_output_bytes = 0;
        while let Some(frame) = pending.next() {
            if let Err(e) = self.send_output(&mut socket, frame).await {
                self.offline_output.extend(pending);
                return Ok(SessionEnd::Disconnected(e));
            }
        }
        if let Err(e) = flush(&mut socket).await {
            return Ok(SessionEnd::Disconnected(e));
        }
        let mut heartbeat = tokio::time::interval(self.heartbeat_every);
        // Heartbeats go unacknowledged for several intervals: this path is broken even
        // if TCP has not noticed (a cut, a one-way cut, a stalled connection). Try a
        // new connection well before the fence would fire.
        let silence_limit = (self.heartbeat_every * 5)
            .min(self.fence_after / 2)
            .max(self.heartbeat_every * 2);
        loop {
            tokio::select! {
                _ = &mut *shutdown => {
                    let _ = tokio::time::timeout(SEND_TIMEOUT, socket.close(None)).await;
                    return Ok(SessionEnd::Shutdown);
                }
                _ = self.fence_fired.changed() => {
                    self.on_fence_fired();
                    return Ok(SessionEnd::Disconnected("the self-fence fired: no proof that the server hears this worker".into()));
                }
                incoming = socket.next() => {
                    match incoming {
                        Some(Ok(Message::Text(t))) => {
                            match serde_json::from_str::<ServerMessage>(&t) {
                                Ok(ServerMessage::HeartbeatAck { seq }) => {
                                    self.confirm_output(seq);
                                    if let Some(sent) = self.acked(seq) {
                                        last_proof = last_proof.max(sent);
                                        self.fence.proven(sent, self.fence_after);
                                    }
                                }
                                Ok(m) => self.on_server_message(m),
                                Err(e) => tracing::warn!("ignoring a malformed server message: {e}"),
                            }
                        }
                        Some(Ok(Message::Close(_))) | None => return Ok(SessionEnd::Disconnected("the server closed the connection".into())),
                        Some(Ok(_)) => {}
                        Some(Err(e)) => return Ok(SessionEnd::Disconnected(e.to_string())),
                    }
                }
                ev = self.events_rx.recv() => {
                    let Some(ev) = ev else { continue };
                    // This event and those already waiting behind it go out in one
                    // write; then what an end made room for starts.
                    let (mut next, mut count, mut ended) = (Some(ev), 0, false);
                    let mut sent = Ok(());
                    while let Some(ev) = next.take() {
                        sent = match ev {
                            RunnerEvent::Started(task, attempt) => {
                                if self.running.contains_key(&(task, attempt)) {
                                    self.spawned.insert((task, attempt));
                                }
                                feed_json(&mut socket, &self.started_message(task, attempt)).await
                            }
                            RunnerEvent::Output(frame) => self.send_output(&mut socket, frame).await,
                            RunnerEvent::Checkpoint(chunk) => {
                                feed_json(&mut socket, &WorkerMessage::Checkpoint(chunk)).await
                            }
                            RunnerEvent::Prepared(task, attempt, setup) => {
                                self.on_prepared(task, attempt, setup);
                                Ok(())
                            }
                            RunnerEvent::Finished(report) => {
                                ended = true;
                                // The attempt may have left files for later tasks.
                                if let Some(catalog) = &self.data {
                                    catalog.rescan();
                                }
                                let report = self.record_end(report);
                                feed_json(&mut socket, &WorkerMessage::Finished(report)).await
                            }
                        };
                        count += 1;
                        if sent.is_ok() && count < MAX_EVENTS_PER_WRITE {
                            next = self.events_rx.try_recv().ok();
                        }
                    }
                    if sent.is_ok() {
                        sent = flush(&mut socket).await;
                    }
                    if ended {
                        self.start_waiting();
                    }
                    if let Err(e) = sent {
                        return Ok(SessionEnd::Disconnected(e));
                    }
                }
                ask = self.asks.recv() => {
                    let Some(ask) = ask else { continue };
                    let request = self.next_ask;
                    self.next_ask += 1;
                    let message = WorkerMessage::Resize {
                        request,
                        task: ask.task,
                        attempt: ask.attempt,
                        cpu_milli: ask.cpu_milli,
                        memory_bytes: ask.memory_bytes,
                    };
                    self.asked.insert(request, ask);
                    if let Err(e) = send_json(&mut socket, &message).await {
                        return Ok(SessionEnd::Disconnected(e));
                    }
                }
                _ = heartbeat.tick() => {
                    if last_proof.elapsed() > silence_limit {
                        return Ok(SessionEnd::Disconnected(format!("no heartbeat acknowledged for {:?}", last_proof.elapsed())));
                    }
                    let usage = self.sampler.sample();
                    let tasks = self.running_usage();
                    let load = Some(self.load_of(&tasks));
                    let keys = self.data_keys();
                    let data = if keys != self.data_sent {
                        self.data_sent = keys.clone();
                        Some(keys)
                    } else {
                        None
                    };
                    let seq = self.next_beat;
                    self.next_beat += 1;
                    if self.beats.len() == MAX_UNACKED_HEARTBEATS {
                        self.beats.pop_front();
                    }
                    self.beats.push_back((seq, Instant::now()));
                    if let Err(e) = send_json(&mut socket, &WorkerMessage::Heartbeat { seq, usage, tasks, load, data }).await {
                        return Ok(SessionEnd::Disconnected(e));
                    }
                }
            }
        }
    }

    /// The keys this worker holds: those declared at start (`--data-key`, no digest)
    /// and the files of its data directory, sorted by key, one entry per key.
    fn data_keys(&self) -> Vec<DataKey> {
        let mut keys: Vec<DataKey> = self
            .config
            .data_keys
            .iter()
            .map(|k| DataKey {
                key: k.clone(),
                sha256: String::new(),
                bytes: 0,
            })
            .collect();
        if let Some(catalog) = &self.data {
            keys.extend(catalog.current().iter().cloned());
        }
        // A file wins over a declared key of the same name (it has a digest).
        keys.sort_by(|a, b| a.key.cmp(&b.key).then(b.sha256.cmp(&a.sha256)));
        keys.dedup_by(|a, b| a.key == b.key);
        keys
    }

    /// What this worker's tasks use now, together: CPU as the rate since the previous
    /// heartbeat (since the attempt began, for its first), memory as the sum of their
    /// peaks. Measured per attempt (process tree or cgroup), so workers sharing a host
    /// are each charged their own tasks only.
    fn load_of(&mut self, tasks: &[RunningUsage]) -> drover_types::WorkerUsage {
        let now = Instant::now();
        let mut cpu_milli: u64 = 0;
        let mut memory_bytes: u64 = 0;
        let mut seen = HashMap::with_capacity(tasks.len());
        for t in tasks {
            let key = (t.task, t.attempt);
            let cpu = t.usage.cpu_time_ms;
            cpu_milli += match self.cpu_seen.get(&key) {
                Some(&(before, at)) => {
                    let ms = now.saturating_duration_since(at).as_millis().max(1) as u64;
                    cpu.saturating_sub(before) * 1000 / ms
                }
                None => cpu * 1000 / t.usage.wall_ms.max(1),
            };
            memory_bytes += t.usage.peak_memory_bytes;
            seen.insert(key, (cpu, now));
        }
        self.cpu_seen = seen;
        drover_types::WorkerUsage {
            cpu_milli: u32::try_from(cpu_milli).unwrap_or(u32::MAX),
            memory_bytes,
            disk_free_bytes: 0,
        }
    }

    fn running_usage(&self) -> Vec<RunningUsage> {
        self.running
            .iter()
            .filter_map(|((task, attempt), h)| {
                Some(RunningUsage {
                    task: *task,
                    attempt: *attempt,
                    usage: h.probe.as_ref()?.usage(),
                })
            })
            .collect()
    }

    /// Queues an output frame on the socket (the caller flushes) and keeps it until the
    /// server confirms it.
    async fn send_output(&mut self, socket: &mut Socket, frame: OutputFrame) -> Result<(), String> {
        let sent = feed(socket, Message::Binary(frame.encode().into())).await;
        // Kept even when the send failed: it goes out again after the next welcome.
        self.unconfirmed_output_bytes += frame.data.len();
        self.unconfirmed_output.push_back((self.next_beat, frame));
        while self.unconfirmed_output_bytes > MAX_OFFLINE_OUTPUT {
            match self.unconfirmed_output.pop_front() {
                Some((_, f)) => self.unconfirmed_output_bytes -= f.data.len(),
                None => break,
            }
        }
        sent
    }

    /// The ack of heartbeat `seq`: every frame sent before it reached the server.
    fn confirm_output(&mut self, seq: u64) {
        while let Some((tag, f)) = self.unconfirmed_output.front() {
            if *tag > seq {
                break;
            }
            self.unconfirmed_output_bytes -= f.data.len();
            self.unconfirmed_output.pop_front();
        }
    }

    /// The send time of acknowledged heartbeat `seq`, forgetting it and older ones.
    fn acked(&mut self, seq: u64) -> Option<Instant> {
        let mut sent = None;
        while let Some(&(s, at)) = self.beats.front() {
            if s > seq {
                break;
            }
            self.beats.pop_front();
            if s == seq {
                sent = Some(at);
            }
        }
        sent
    }

    /// The report that an attempt started, with the GPU indices it holds.
    fn started_message(&self, task: TaskId, attempt: Attempt) -> WorkerMessage {
        WorkerMessage::Started {
            task,
            attempt,
            gpus: self.gpus.held_by((task, attempt)).to_vec(),
        }
    }

    /// Starts waiting attempts from the head while each fits beside what runs. Never
    /// while cut off or past the fence: the server may be giving them to another worker.
    fn start_waiting(&mut self) {
        if !self.connected || self.fence.expired() {
            return;
        }
        while let Some(head) = self.waiting.front() {
            if self.preparing.contains(&(head.task, head.attempt)) {
                break;
            }
            if !head
                .spec
                .resources
                .fits_beside(&self.allocated, &self.spec.capacity)
            {
                break;
            }
            // Counted capacity and indices agree unless the declared count exceeds the
            // indices (never by `run`); then it waits like a start that does not fit.
            if !self.gpus.has_free(head.spec.resources.gpus) {
                break;
            }
            let Some(start) = self.waiting.pop_front() else {
                break;
            };
            let key = (start.task, start.attempt);
            let checkpoint = self.prepared.remove(&key);
            let access = match (&self.task_socket, self.tokens.issue(key.0, key.1)) {
                (Some(s), Some(token)) => Some(runner::TaskAccess {
                    socket: s.path().to_path_buf(),
                    token,
                }),
                _ => None,
            };
            let gpu_ids = self
                .gpus
                .take(key, start.spec.resources.gpus)
                .unwrap_or_default();
            let handles = runner::launch(
                &self.driver,
                start,
                runner::Devices {
                    gpu_ids,
                    worker_has_gpus: !self.gpus.ids().is_empty(),
                },
                checkpoint,
                access,
                self.data.as_ref().map(DataCatalog::dir),
                self.events_tx.clone(),
                &self.metrics,
            );
            self.fence.register(key, handles.kill.clone());
            self.allocated.add(&handles.resources);
            self.running.insert(key, handles);
        }
        self.metrics
            .set_load(self.running.len(), self.waiting.len());
    }

    fn on_server_message(&mut self, message: ServerMessage) {
        match message {
            ServerMessage::Start(start) => {
                let key = (start.task, start.attempt);
                let verified = match &self.verifier {
                    Some(v) => v.verify(&start),
                    None => Err(drover_proto::integrity::IntegrityError::Unsigned),
                };
                if let Err(e) = verified {
                    // Never run: reported as failing to start, so the server hears why.
                    if self.unacked.contains_key(&key) {
                        return;
                    }
                    tracing::error!(task = %start.task, attempt = %start.attempt, "refused a start: {e}");
                    let _ = self.events_tx.send(RunnerEvent::Finished(ended_report(
                        key,
                        Outcome::SpawnFailed {
                            message: format!("the worker refused to run it: {e}"),
                        },
                    )));
                    return;
                }
                // A start can arrive twice (resent after a reconnect): the attempt
                // number makes it idempotent.
                if self.running.contains_key(&key)
                    || self.unacked.contains_key(&key)
                    || self.waiting.iter().any(|s| (s.task, s.attempt) == key)
                {
                    return;
                }
                self.prepare_checkpoint_dir(&start);
                self.waiting.push_back(start);
                self.start_waiting();
            }
            ServerMessage::Checkpoint(chunk) => {
                // The bytes of the checkpoint the next start of this task resumes from.
                let Ok(data) = chunk.bytes() else {
                    tracing::warn!(task = %chunk.task, "ignoring a malformed checkpoint chunk");
                    return;
                };
                if chunk.offset == 0 {
                    self.restores.insert(chunk.task, Vec::new());
                }
                if let Some(buf) = self.restores.get_mut(&chunk.task)
                    && buf.len() as u64 == chunk.offset
                {
                    buf.extend_from_slice(&data);
                } else {
                    self.restores.remove(&chunk.task);
                }
            }
            ServerMessage::Kill {
                task,
                attempt,
                grace_ms,
                reason,
                unless_started,
            } => {
                if unless_started && self.running.contains_key(&(task, attempt)) {
                    // A retraction that came too late: the attempt started (its
                    // `Started` is on its way and cancels the retraction). Killing it
                    // would run the task twice.
                    tracing::debug!(%task, %attempt, "not retracted: already started");
                } else if let Some(handles) = self.running.get(&(task, attempt)) {
                    tracing::info!(%task, %attempt, %reason, "killing on the server's request");
                    handles.kill.kill(Duration::from_millis(grace_ms));
                } else if let Some(i) = self
                    .waiting
                    .iter()
                    .position(|s| (s.task, s.attempt) == (task, attempt))
                {
                    // Never started: it ends here, and is reported like any end.
                    self.waiting.remove(i);
                    let _ = self.events_tx.send(RunnerEvent::Finished(ended_report(
                        (task, attempt),
                        Outcome::Killed,
                    )));
                }
            }
            ServerMessage::FinishedAck { task, attempt } => {
                self.unacked.remove(&(task, attempt));
                // A start that ended before it began (killed, fenced) leaves these.
                self.preparing.remove(&(task, attempt));
                self.prepared.remove(&(task, attempt));
                // The server has the end (and the output sent before it): the attempt's
                // directory and logs are of no more use here, and would pile up over
                // months. Not before the ack: an unacknowledged end may still need its
                // output resent. File work goes off the async threads.
                let driver = self.driver.clone();
                let checkpoints = self.config.checkpoints_dir();
                tokio::task::spawn_blocking(move || {
                    if let Err(e) = driver.remove_attempt_dir(task.0, attempt.0) {
                        tracing::warn!(%task, %attempt, error = %e, "could not remove an attempt's directory");
                    }
                    // Its checkpoints are on the servers now (sent before its end).
                    let dir = checkpoints.join(format!("{}.{}", task.0, attempt.0));
                    match std::fs::remove_dir_all(&dir) {
                        Ok(()) => {}
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                        Err(e) => {
                            tracing::warn!(%task, %attempt, error = %e, "could not remove an attempt's checkpoint directory")
                        }
                    }
                });
            }
            ServerMessage::ResizeAnswer { request, answer } => {
                let Some(ask) = self.asked.remove(&request) else {
                    return;
                };
                // Granted: the limits are set before the task hears so.
                let set = if answer.granted {
                    self.set_limits(ask.task, ask.attempt, answer.resources.clone())
                } else {
                    None
                };
                tokio::spawn(async move {
                    if let Some(set) = set {
                        let _ = set.await;
                    }
                    let _ = ask.reply.send(Ok(answer));
                });
            }
            ServerMessage::SetLimits {
                task,
                attempt,
                resources,
            } => {
                let _ = self.set_limits(task, attempt, resources);
            }
            ServerMessage::Welcome { .. }
            | ServerMessage::Reject { .. }
            | ServerMessage::HeartbeatAck { .. } => {}
        }
    }

    /// A granted resize: the attempt now holds `resources` of this worker (so what
    /// waits starts by the same count as the core's), and its driver's limits follow,
    /// off the async threads (cgroup file writes). Idempotent: a resize asked by the
    /// task is applied on its answer and again on the server's `SetLimits`.
    fn set_limits(
        &mut self,
        task: TaskId,
        attempt: Attempt,
        resources: Resources,
    ) -> Option<tokio::task::JoinHandle<()>> {
        if let Some(start) = self
            .waiting
            .iter_mut()
            .find(|s| (s.task, s.attempt) == (task, attempt))
        {
            // Resized before it began (the core had reserved it): it starts with the
            // new amounts, and waits for room by them.
            start.spec.resources = resources;
            self.start_waiting();
            return None;
        }
        let handles = self.running.get_mut(&(task, attempt))?;
        self.allocated.sub(&handles.resources);
        self.allocated.add(&resources);
        let update = drover_exec::LimitUpdate {
            memory_limit_bytes: (resources.memory_bytes > 0).then_some(resources.memory_bytes),
            cpu_milli: resources.cpu_milli,
        };
        handles.resources = resources;
        let setter = handles.limits.clone();
        self.start_waiting();
        let setter = setter?;
        Some(tokio::task::spawn_blocking(move || {
            match setter.set_limits(&update) {
                Ok(()) => {
                    tracing::info!(%task, %attempt, memory = ?update.memory_limit_bytes, cpu_milli = update.cpu_milli, "resized")
                }
                Err(e) => tracing::warn!(%task, %attempt, "could not apply a resize: {e}"),
            }
        }))
    }
}
