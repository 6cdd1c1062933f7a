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
    /// How many recent events this server keeps for `/v1/events` readers to resume from.
    pub events_retained: usize,
}

/// Liveness settings that cannot work.
#[derive(Debug, thiserror::Error)]
pub enum TimingError {
    #[error("the heartbeat interval must be at least {min:?} (it is {given:?})")]
    HeartbeatTooShort { given: Duration, min: Duration },
    /// Even a worker with no kill grace could not stop its tasks in time.
    #[error("{0}")]
    NoRoomForFence(#[from] drover_proto::worker::FenceTimingError),
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
        )?;
        Ok(())
    }

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
            events_retained: crate::events::DEFAULT_RETAINED,
        }
    }
}
