//! Worker configuration.

use drover_types::Resources;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Clone, Debug)]
pub struct WorkerConfig {
    /// The server's URL, e.g. `http://127.0.0.1:7070`.
    pub server: String,
    /// The cluster token (may be empty when the worker has a credential or a join token).
    pub token: String,
    /// A join token, used on the first connection only: the server answers with this
    /// worker's own credential, stored in `<data_dir>/credential` (0600) and presented
    /// from then on, restarts included (see ARCHITECTURE.md, "Worker identities").
    pub join_token: Option<String>,
    /// Stable name; a restarted worker with the same name is the same worker.
    pub name: String,
    /// Attempt directories and the agent's own state live here.
    pub data_dir: PathBuf,
    /// Capacity overrides; `None` fields are detected from the host.
    pub cpu_milli: Option<u32>,
    pub memory_bytes: Option<u64>,
    pub disk_bytes: Option<u64>,
    /// The GPU indices to hand out to tasks; `None`: found on the host
    /// ([`crate::gpus::discover`]: nvidia-smi, else `/dev/nvidia*`).
    pub gpu_ids: Option<Vec<u32>>,
    pub custom: BTreeMap<String, u64>,
    pub labels: BTreeMap<String, String>,
    /// Data keys declared at start, held besides the files of the data directory.
    pub data_keys: Vec<String>,
    /// The directory whose files are this worker's data keys (`DROVER_DATA_DIR` for
    /// tasks); `None`: `<data_dir>/data`.
    pub data_keys_dir: Option<PathBuf>,
    /// Between SIGTERM and SIGKILL at a time limit or a kill.
    pub kill_grace: Duration,
    /// Bytes of stdout and of stderr kept per attempt.
    pub output_limit_bytes: u64,
    /// Bytes of stdout reported as the task's result.
    pub result_limit_bytes: u64,
    /// Longest wait between reconnection attempts (low: a worker back from a network
    /// cut should rejoin within seconds).
    pub max_reconnect_backoff: Duration,
    /// Use cgroups where they are writable.
    pub cgroups: bool,
    /// Where to serve this agent's Prometheus metrics, if anywhere.
    pub metrics_listen: Option<std::net::SocketAddr>,
    /// The TLS configuration for an `https://` server (the cluster's CA, and this
    /// worker's certificate if it has one); `None`: the system's roots.
    pub tls: Option<std::sync::Arc<rustls::ClientConfig>>,
    /// Who tasks run as (`NAME`, `UID`, `NAME:GROUP`, `UID:GID`); `None`: `nobody`
    /// when the agent is root, else the agent's own user. See
    /// `drover_exec::TaskUser::for_agent`.
    pub task_user: Option<String>,
    /// Host directories a task may use as its working directory.
    pub allowed_paths: Vec<PathBuf>,
    /// Processes and threads per attempt (cgroup pids); `None`: no limit of its own.
    pub pids_limit: Option<u64>,
    /// Cap each task at its cpus with a CFS quota (cgroup cpu), where available.
    pub cpu_quota: bool,
    /// Execution drivers to enable besides `process` (always there): `docker`.
    pub drivers: Vec<String>,
    /// A directory of driver plugins: each executable in it is started and enabled
    /// under the driver name it gives (`drover_exec::plugin::discover`).
    pub plugin_dir: Option<std::path::PathBuf>,
    /// Most bytes of files one checkpoint of a task may hold; a larger checkpoint
    /// directory is not sent (logged), and the task resumes from its previous one.
    pub max_checkpoint_bytes: u64,
    /// Who owns restored checkpoint directories (uid, gid): the task user when tasks
    /// run as another user than the agent (set by [`crate::run`]).
    pub checkpoint_owner: Option<(u32, u32)>,
}

impl WorkerConfig {
    /// Where attempts' checkpoint directories live: `<data_dir>/checkpoints`.
    pub fn checkpoints_dir(&self) -> PathBuf {
        self.data_dir.join("checkpoints")
    }

    /// The directory whose files are this worker's data keys.
    pub fn data_keys_dir(&self) -> PathBuf {
        self.data_keys_dir
            .clone()
            .unwrap_or_else(|| self.data_dir.join("data"))
    }

    /// Where this worker keeps the credential the server gave it.
    pub fn credential_path(&self) -> PathBuf {
        self.data_dir.join("credential")
    }

    pub fn new(
        server: impl Into<String>,
        token: impl Into<String>,
        name: impl Into<String>,
        data_dir: PathBuf,
    ) -> Self {
        WorkerConfig {
            server: server.into(),
            token: token.into(),
            join_token: None,
            name: name.into(),
            data_dir,
            cpu_milli: None,
            memory_bytes: None,
            disk_bytes: None,
            gpu_ids: None,
            custom: BTreeMap::new(),
            labels: BTreeMap::new(),
            data_keys: Vec::new(),
            data_keys_dir: None,
            kill_grace: Duration::from_secs(5),
            output_limit_bytes: 64 << 20,
            result_limit_bytes: 64 << 10,
            max_reconnect_backoff: Duration::from_secs(2),
            cgroups: true,
            metrics_listen: None,
            tls: None,
            task_user: None,
            allowed_paths: Vec::new(),
            pids_limit: Some(drover_exec::DEFAULT_PIDS_LIMIT),
            cpu_quota: true,
            drivers: Vec::new(),
            plugin_dir: None,
            max_checkpoint_bytes: 256 << 20,
            checkpoint_owner: None,
        }
    }

    /// The capacity to declare: detected values with the overrides applied; as many
    /// GPUs as `gpu_ids` names (the detected count without it).
    pub fn capacity(&self, detected: &Resources) -> Resources {
        Resources {
            cpu_milli: self.cpu_milli.unwrap_or(detected.cpu_milli),
            memory_bytes: self.memory_bytes.unwrap_or(detected.memory_bytes),
            disk_bytes: self.disk_bytes.unwrap_or(detected.disk_bytes),
            gpus: self
                .gpu_ids
                .as_ref()
                .map_or(detected.gpus, |ids| ids.len() as u32),
            custom: self.custom.clone(),
        }
    }
}
