//! The autoscaler's settings (`drover server --autoscale ...`).

use super::decision::WorkerSize;
use std::time::Duration;

/// Which provider starts the workers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProviderKind {
    /// Containers of the local Docker engine (`docker.rs`).
    Docker,
}

impl ProviderKind {
    pub fn name(&self) -> &'static str {
        match self {
            ProviderKind::Docker => "docker",
        }
    }
}

#[derive(Clone, Debug)]
pub struct AutoscaleConfig {
    pub provider: ProviderKind,
    /// Managed workers kept at least (started at once when fewer).
    pub min: u32,
    /// Managed workers at most (draining ones included: they still hold an instance).
    pub max: u32,
    /// A managed worker idle this long is drained, then stopped.
    pub cooldown: Duration,
    /// Sizes it may start, smallest first; a queued task no active worker can hold gets
    /// the smallest size that holds it.
    pub sizes: Vec<WorkerSize>,
    /// The worker image (`scripts/build-worker-image.sh`).
    pub image: String,
    /// The URL(s) workers dial, comma-separated [default: every peer's in a group
    /// formed with `--peers`, else this server's listener, loopback when it listens on
    /// every address; the containers share the host's network].
    pub server_url: Option<String>,
    /// How often the leader looks.
    pub interval: Duration,
    /// A worker not joined this long after its instance appeared is stopped.
    pub join_timeout: Duration,
}

impl AutoscaleConfig {
    /// Docker, 0 to 3 workers of 1 cpu and 1 GiB, 5 minutes of cooldown.
    pub fn new(provider: ProviderKind) -> AutoscaleConfig {
        AutoscaleConfig {
            provider,
            min: 0,
            max: 3,
            cooldown: Duration::from_secs(300),
            sizes: vec![WorkerSize {
                cpu_milli: 1000,
                memory_bytes: 1 << 30,
            }],
            image: format!("drover-worker:{}", env!("CARGO_PKG_VERSION")),
            server_url: None,
            interval: Duration::from_secs(1),
            join_timeout: Duration::from_secs(60),
        }
    }
}
