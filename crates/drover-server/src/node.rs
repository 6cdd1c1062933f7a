//! Everything one server holds, shared by the API handlers and background loops.

use crate::auth::ClusterToken;
use crate::config::ServerConfig;
use crate::output::OutputStore;
use crate::output_replication::OutputReplicator;
use crate::proposer::Proposer;
use crate::raft::{Raft, SharedState, StorageHealth};
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
    pub output: Arc<OutputStore>,
    /// Task checkpoints stored on this server (see `checkpoint/`).
    pub checkpoints: Arc<crate::checkpoint::CheckpointStore>,
    /// Copies output frames received from workers to the other servers.
    pub replicator: OutputReplicator,
    pub token: ClusterToken,
    /// The servers' credential among themselves.
    pub peer_token: ClusterToken,
    /// Signs every start this server sends as leader (derived from the peer token, so
    /// the same on every server of the group: see `worker_identity::task_signer`).
    pub task_signer: drover_proto::integrity::TaskSigner,
    /// Forwards writes to the leader and probes peers.
    pub http: reqwest::Client,
    /// When a majority last confirmed this server's leadership (read by
    /// [`Node::holds_lease`]; written by the lease loop).
    pub confirmed: std::sync::Mutex<Option<std::time::Instant>>,
    /// Whether writes to the data directory succeed (set by the log store).
    pub storage: Arc<StorageHealth>,
    /// The leader's lock on adding and removing servers.
    pub changes: crate::membership::MembershipChanges,
    /// Set once this server is taken out of the group (see [`Node::mark_removed`]).
    pub removed: std::sync::atomic::AtomicBool,
    /// Where ended attempts' output is archived (`--object-store`), if anywhere.
    pub archive: Option<Arc<crate::output_archive::OutputArchive>>,
    /// The blob store for anything kept "like task output" (checkpoints): the
    /// `--object-store`, else a directory of this server's own (`<data>/blobs`).
    pub blobs: crate::blob::BlobStore,
    /// What the autoscaler does (written by its loop on the leader; see `autoscale/`).
    pub autoscale: Arc<crate::autoscale::AutoscaleState>,
}

/// How long a confirmation of leadership by a majority counts. A leader cut off from the
/// majority stops acknowledging workers' heartbeats at most this long after its last
/// confirmation, and a new leader adds as much to every worker's fresh window, so the
/// self-fence arithmetic ("Liveness and the self-fence") still holds across a change.
pub const LEASE: std::time::Duration = std::time::Duration::from_millis(1500);

impl Node {
    pub fn is_leader(&self) -> bool {
        !self.is_removed()
            && self.raft.metrics().borrow().current_leader == Some(self.config.node_id)
    }

    /// Whether this server was taken out of the group.
    pub fn is_removed(&self) -> bool {
        self.removed.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// This server is no longer a member: remember it (a restart must not bring it
    /// back), stop raft (a removed server that kept its timers would start elections
    /// and disturb the group), and drop its workers' sessions so they move on to the
    /// group's leader.
    pub fn mark_removed(self: &std::sync::Arc<Self>) {
        if self.removed.swap(true, std::sync::atomic::Ordering::SeqCst) {
            return;
        }
        tracing::warn!(
            node_id = self.config.node_id,
            "this server was removed from the group; it takes no part any more"
        );
        let identity = crate::identity::ServerIdentity {
            node_id: self.config.node_id,
            state: crate::identity::MemberState::Removed,
            joined: self.config.join.is_some(),
        };
        let node = self.clone();
        tokio::spawn(async move {
            let dir = node.config.data_dir.clone();
            let stored = tokio::task::spawn_blocking(move || identity.store(&dir)).await;
            if !matches!(stored, Ok(Ok(()))) {
                tracing::error!("could not record the removal in the data directory: {stored:?}");
            }
            let workers: Vec<_> = node
                .state
                .read()
                .scheduler()
                .workers()
                .map(|w| w.id)
                .collect();
            for w in workers {
                node.sessions.disconnect(w);
            }
            // A moment for what is in flight (the answer to the change that removed a
            // leader, the heartbeat carrying its commit) before raft stops.
            tokio::time::sleep(std::time::Duration::from_millis(500)).await;
            let _ = node.raft.shutdown().await;
        });
    }

    /// Whether this server leads *and* a majority confirmed it within [`LEASE`]: what it
    /// takes to welcome a worker or acknowledge its heartbeat. A server alone needs no
    /// confirmation.
    pub fn holds_lease(&self) -> bool {
        if !self.is_leader() {
            return false;
        }
        if !self.is_clustered() {
            return true;
        }
        self.confirmed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_some_and(|t| t.elapsed() < LEASE)
    }

    /// Whether this server is one of several.
    pub fn is_clustered(&self) -> bool {
        self.config.peers.len() > 1
            || self.config.join.is_some()
            || self
                .raft
                .metrics()
                .borrow()
                .membership_config
                .membership()
                .nodes()
                .nth(1)
                .is_some()
    }

    /// The address (host:port) of a member, as the membership records it.
    pub fn address_of(&self, id: u64) -> Option<String> {
        let metrics = self.raft.metrics().borrow().clone();
        let from_membership = metrics
            .membership_config
            .membership()
            .get_node(&id)
            .map(|n| n.addr.clone());
        from_membership.or_else(|| self.config.peer_address(id))
    }

    /// The leader, once one is known; `None` if none is by `deadline`.
    pub async fn wait_for_leader(&self, deadline: std::time::Instant) -> Option<u64> {
        let mut rx = self.raft.metrics();
        loop {
            if let Some(l) = rx.borrow_and_update().current_leader {
                return Some(l);
            }
            let left = deadline.checked_duration_since(std::time::Instant::now())?;
            if tokio::time::timeout(left, rx.changed())
                .await
                .ok()?
                .is_err()
            {
                return None;
            }
        }
    }
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("node_id", &self.config.node_id)
            .finish_non_exhaustive()
    }
}
