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
    pub worker_lost_after: Duration,
    /// How often workers send heartbeats.
    pub heartbeat_interval: Duration,
    /// Largest accepted request body.
    pub max_body_bytes: usize,
    pub limits: Limits,
    /// The policy a new cluster starts with (an existing one keeps what its log says).
    pub policy: PolicyConfig,
    /// Use this token instead of the one in the data directory.
    pub token: Option<String>,
}

impl ServerConfig {
    pub fn new(data_dir: PathBuf) -> ServerConfig {
        ServerConfig {
            data_dir,
            listen: SocketAddr::from(([127, 0, 0, 1], 7070)),
            node_id: 1,
            worker_lost_after: Duration::from_secs(30),
            heartbeat_interval: Duration::from_secs(1),
            max_body_bytes: 256 << 20,
            limits: Limits::default(),
            policy: PolicyConfig::default(),
            token: None,
        }
    }
}
