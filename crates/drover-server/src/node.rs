//! Everything one server holds, shared by the API handlers and background loops.

use crate::auth::ClusterToken;
use crate::config::ServerConfig;
use crate::output::OutputStore;
use crate::proposer::Proposer;
use crate::raft::{Raft, SharedState};
use crate::sessions::Sessions;
use std::sync::Arc;

pub struct Node {
    pub config: ServerConfig,
    pub raft: Raft,
    /// The applied state (read side).
    pub state: Arc<SharedState>,
    /// The only way to change the state.
    pub proposer: Proposer,
    pub sessions: Sessions,
    pub output: OutputStore,
    pub token: ClusterToken,
}

impl Node {
    pub fn is_leader(&self) -> bool {
        self.raft.metrics().borrow().current_leader == Some(self.config.node_id)
    }
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("node_id", &self.config.node_id)
            .finish_non_exhaustive()
    }
}
