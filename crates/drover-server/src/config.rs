//! Server configuration.

use drover_types::{Limits, PolicyConfig};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// Where the log, snapshots, task output and the cluster token live.
    pub data_dir: PathBuf,
    /// Address of the HTTP API and the worker endpoint. Loopback unless told otherwise.
    pub listen: SocketAddr,
    /// This server's id in the raft group.
    pub node_id: u64,
    /// A worker not heard from for this long is declared lost and its tasks re-placed.
    /// Each worker stops its own tasks before that (the self-fence, see
    /// `drover_proto::worker::fence_after`): this must leave room for its kill grace.
    pub worker_lost_after: Duration,
    /// How often workers send heartbeats (each is acknowledged) and the server pings.
    pub heartbeat_interval: Duration,
    /// Largest accepted request body.
    pub max_body_bytes: usize,
    pub limits: Limits,
    /// The policy a new cluster starts with (an existing one keeps what its log says).
    pub policy: PolicyConfig,
    /// Use this token instead of the one in the data directory.
    pub token: Option<String>,
    /// Every server of the group (host:port, this one among them), or empty for a
    /// server alone. Node ids are the positions in the sorted list, from 1.
    pub peers: Vec<String>,
    /// The servers' credential among themselves (else the `peer_token` file).
    pub peer_token: Option<String>,
    /// Join a running group rather than form one: `Some(address)` of any member to ask,
    /// or `Some("")` to wait until an admin adds this server (`drover servers add`).
    pub join: Option<String>,
    /// A snapshot is taken after this many entries since the last one.
    pub snapshot_every: u64,
    /// Entries kept in the log behind a snapshot (for followers slightly behind); a
    /// follower further behind is sent the snapshot.
    pub keep_after_snapshot: u64,
    /// How many recent events this server keeps for `/v1/events` readers to resume from.
    pub events_retained: usize,
    /// How long finished work is kept, and how much (`retention.rs`).
    pub retention: crate::retention::Retention,
    /// Whether and how the listener speaks TLS.
    pub tls: TlsMode,
    /// `https` once the listener speaks TLS, else `http` (set by `start`): the scheme
    /// of this server's URLs and of its calls to the other servers.
    pub scheme: &'static str,
    /// Rate and concurrency limits of each client ACL token.
    pub token_limits: crate::auth::TokenLimits,
    /// Sizes of what workers send and how long clients may take (see `input_limits.rs`).
    pub input_limits: crate::input_limits::InputLimits,
    /// Archive ended attempts' output in this store (`output_archive.rs`); none: the
    /// servers' disks only.
    pub object_store: Option<crate::blob::ObjectStoreConfig>,
    /// Start and stop workers on a provider from the queue (`autoscale/`); none by
    /// default.
    pub autoscale: Option<crate::autoscale::AutoscaleConfig>,
}

/// Whether a server speaks TLS.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TlsMode {
    /// The default (`<data_dir>/tls`): TLS with the certificates of this directory. When
    /// they are not there, a server alone creates a CA and a certificate for this
    /// machine in it (as `drover up` does), while a server that forms or joins a group
    /// refuses to start: its certificate must come from the group's one CA, which it
    /// cannot make by itself.
    Auto(crate::tls::TlsPaths),
    /// TLS with the certificates of a directory given explicitly (`--tls-dir`): missing
    /// files are an error, never a reason to make new ones.
    Required(crate::tls::TlsPaths),
    /// TLS; a CA and a server certificate for this machine are created in the
    /// directory on first start (`drover up`).
    CreateLocal(crate::tls::TlsPaths),
    /// Plain HTTP, by explicit request (`--insecure-http`).
    Insecure,
}

/// A group of servers that cannot be formed.
#[derive(Debug, thiserror::Error)]
pub enum PeersError {
    #[error(
        "this server's address {listen} is not among the peers ({peers}); list every server, this one included, with the address it listens on"
    )]
    NotAmong { listen: String, peers: String },
    #[error("the peer {0:?} is listed twice")]
    Duplicate(String),
    #[error("a group of servers needs at least 3 (or 1 alone); {0} given")]
    TooFew(usize),
}

/// Liveness settings that cannot work.
#[derive(Debug, thiserror::Error)]
pub enum TimingError {
    #[error("the heartbeat interval must be at least {min:?} (it is {given:?})")]
    HeartbeatTooShort { given: Duration, min: Duration },
    /// Even a worker with no kill grace could not stop its tasks in time.
    #[error(
        "the worker timeout ({lost_after:?}) must be at least {min:?}: {heartbeats} heartbeat intervals of {heartbeat:?} plus {settle:?}, and more by each worker's kill grace, so that a cut-off worker can stop its tasks before the timeout ends",
        heartbeats = drover_proto::worker::MIN_HEARTBEATS_BEFORE_FENCE,
        settle = drover_proto::worker::FENCE_SETTLE
    )]
    WorkerTimeoutTooShort {
        lost_after: Duration,
        heartbeat: Duration,
        min: Duration,
    },
}

impl ServerConfig {
    /// Refuses liveness settings that break the self-fence: the worker timeout must
    /// exceed `MIN_HEARTBEATS_BEFORE_FENCE` heartbeats plus the settle margin even for a
    /// worker with no kill grace (workers with a longer grace than fits are refused
    /// when they join, with the same explanation).
    pub fn validate_timing(&self) -> Result<(), TimingError> {
        let min = Duration::from_millis(10);
        if self.heartbeat_interval < min {
            return Err(TimingError::HeartbeatTooShort {
                given: self.heartbeat_interval,
                min,
            });
        }
        drover_proto::worker::fence_after(
            self.worker_lost_after,
            self.heartbeat_interval,
            Duration::ZERO,
        )
        .map_err(|e| TimingError::WorkerTimeoutTooShort {
            lost_after: self.worker_lost_after,
            heartbeat: self.heartbeat_interval,
            min: e.min_wait + drover_proto::worker::FENCE_SETTLE,
        })?;
        Ok(())
    }

    /// The peers, sorted: node id `i + 1` is the `i`-th.
    pub fn sorted_peers(&self) -> Vec<String> {
        let mut peers = self.peers.clone();
        peers.sort();
        peers
    }

    /// The address of the member with this id, from the peer list.
    pub fn peer_address(&self, id: u64) -> Option<String> {
        let i = usize::try_from(id.checked_sub(1)?).ok()?;
        self.sorted_peers().get(i).cloned()
    }

    /// Checks the peer list and sets `node_id` from this server's place in it.
    pub fn resolve_peers(&mut self) -> Result<(), PeersError> {
        if self.peers.is_empty() {
            return Ok(());
        }
        let peers = self.sorted_peers();
        if let Some(w) = peers.windows(2).find(|w| w[0] == w[1]) {
            return Err(PeersError::Duplicate(w[0].clone()));
        }
        if peers.len() == 1 && peers[0] == self.listen.to_string() {
            self.peers.clear();
            return Ok(());
        }
        if peers.len() < 3 {
            return Err(PeersError::TooFew(peers.len()));
        }
        let listen = self.listen.to_string();
        let i = peers
            .iter()
            .position(|p| *p == listen)
            .ok_or_else(|| PeersError::NotAmong {
                listen: listen.clone(),
                peers: peers.join(","),
            })?;
        self.node_id = i as u64 + 1;
        Ok(())
    }

    pub fn new(data_dir: PathBuf) -> ServerConfig {
        ServerConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 7070)),
            node_id: 1,
            worker_lost_after: Duration::from_secs(30),
            heartbeat_interval: Duration::from_secs(1),
            max_body_bytes: 256 << 20,
            limits: Limits::default(),
            policy: PolicyConfig::default(),
            token: None,
            peers: Vec::new(),
            peer_token: None,
            join: None,
            snapshot_every: 20_000,
            keep_after_snapshot: 1_000,
            events_retained: crate::events::DEFAULT_RETAINED,
            retention: crate::retention::Retention::default(),
            tls: TlsMode::Auto(crate::tls::TlsPaths::in_data_dir(&data_dir)),
            scheme: "http",
            token_limits: crate::auth::TokenLimits::default(),
            data_dir,
            input_limits: crate::input_limits::InputLimits::default(),
            object_store: None,
            autoscale: None,
        }
    }

    /// The base URL of the server at `addr` (`host:port`), in this server's scheme: the
    /// servers of a group all speak TLS or all do not.
    pub fn peer_url(&self, addr: &str) -> String {
        format!("{}://{addr}", self.scheme)
    }
}
