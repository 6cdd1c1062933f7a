//! The replicated log: openraft glue.
//!
//! - [`TypeConfig`]: a log entry carries a [`drover_state::LogEntry`]; applying one answers
//!   a `Vec<CommandResult>` (one per command in the batch).
//! - [`LogStore`]: the raft log, vote and committed pointer in a redb file, every append
//!   fsynced before openraft is told it is durable.
//! - [`StateStore`]: the state machine in memory, rebuilt at start from the latest
//!   snapshot file plus the log after it; snapshots are files, streamed.
//! - [`Network`]: how servers talk to each other.

// openraft's storage traits fix the error type (`StorageError`, ~224 bytes); our
// helpers return the same type rather than converting back and forth.
pub mod log_file;
#[allow(clippy::result_large_err)]
mod log_store;
mod network;
#[allow(clippy::result_large_err)]
mod snapshot_files;
#[allow(clippy::result_large_err)]
mod state_store;
mod storage_health;

pub use log_store::LogStore;
pub use network::{
    APPEND_PATH, ChunkError, Network, NetworkFactory, PEER_ADOPT_PATH, PEER_JOIN_PATH,
    PEER_READ_INDEX_PATH, PEER_REMOVED_PATH, PeerError, SNAPSHOT_PATH, SnapshotChunk, VOTE_PATH,
};
pub use snapshot_files::SnapshotFileError;
pub use state_store::{SharedState, SnapshotStats, StateStore};
pub use storage_health::{StorageFailure, StorageHealth};

use drover_state::{CommandResult, LogEntry};

openraft::declare_raft_types!(
    /// Drover's raft types.
    pub TypeConfig:
        D = LogEntry,
        R = Vec<CommandResult>,
        NodeId = u64,
        Node = openraft::BasicNode,
        SnapshotData = tokio::fs::File,
);

pub type Raft = openraft::Raft<TypeConfig>;
pub type StorageError = openraft::StorageError<u64>;
