//! Checkpoint versions copied to every server of a group, outside the log (like task
//! output: bulk bytes stay out of the entries, invariant 2).
//!
//! The leader that took an upload stores it, then posts it to every other member's
//! `/v1/raft/checkpoint` (peer token) and proposes `CheckpointSaved` only once a
//! majority of the voters holds it (this server counts), the same rule as output's
//! acknowledgements: any later leader was elected by a majority, so it shares at
//! least one server with the one that holds the version, and a version the log names
//! is one some server of every majority can hand over. The copies to the rest go on in
//! the background. A server asked for a version it lacks (a new leader that was the
//! one peer the copy did not reach, or a server restarted from an older disk) fetches
//! it from a peer on demand ([`fetch_from_peers`]), checked against its digest, and
//! keeps it.

use super::store::CheckpointError;
use crate::node::Node;
use drover_proto::checkpoint::{CheckpointRef, digest_hex};
use drover_types::TaskId;
use std::sync::Arc;
use std::time::Duration;

/// The peer route that takes (POST) and serves (GET) one checkpoint version.
pub const CHECKPOINT_PATH: &str = "/v1/raft/checkpoint";
/// How long the leader waits for a majority to hold a version before giving up on
/// logging it (the task keeps its previous checkpoint). Well inside a worker's
/// patience: its session reads nothing else meanwhile.
const MAJORITY_WAIT: Duration = Duration::from_secs(10);
/// One post or read of a version (up to `--max-checkpoint` bytes) to or from a peer.
const TRANSFER_TIMEOUT: Duration = Duration::from_secs(60);

/// The other members of the group now, as base URLs with whether each votes, and how
/// many voters the group has (this server included if it votes).
fn members(node: &Node) -> (Vec<(String, bool)>, usize) {
    let m = node.raft.metrics().borrow().clone();
    let membership = m.membership_config.membership();
    let voter_ids: Vec<u64> = membership.voter_ids().collect();
    let peers = membership
        .nodes()
        .filter(|(id, _)| **id != node.config.node_id)
        .map(|(id, n)| (node.config.peer_url(&n.addr), voter_ids.contains(id)))
        .collect();
    (peers, voter_ids.len())
}

/// The query naming one version on the peer route.
fn query(task: TaskId, c: &CheckpointRef) -> [(&'static str, String); 5] {
    [
        ("task", task.0.to_string()),
        ("attempt", c.attempt.0.to_string()),
        ("version", c.version.to_string()),
        ("size", c.size.to_string()),
        ("digest", c.digest.clone()),
    ]
}

/// Posts a version (already stored here) to every other member; returns once a
/// majority of the voters holds it (true), or when that can no longer happen or
/// [`MAJORITY_WAIT`] has passed (false). The posts not yet answered go on.
pub async fn copy_to_majority(
    node: &Arc<Node>,
    task: TaskId,
    c: &CheckpointRef,
    bytes: bytes::Bytes,
) -> bool {
    let (peers, voters) = members(node);
    // Peers that must hold it besides this server (as for output: voters / 2).
    let needed = voters / 2;
    if needed == 0 {
        return true;
    }
    let voting_peers = peers.iter().filter(|(_, v)| *v).count();
    // Bounded by the number of peers: each post sends one answer.
    let (tx, mut rx) = tokio::sync::mpsc::channel::<bool>(peers.len().max(1));
    for (base, voter) in peers {
        let (node, tx, bytes, c) = (node.clone(), tx.clone(), bytes.clone(), c.clone());
        tokio::spawn(async move {
            let stored = post(&node, &base, task, &c, bytes).await;
            if let Err(e) = &stored {
                tracing::warn!(peer = %base, %task, which = %c, "could not copy a checkpoint to a peer: {e}");
            }
            if voter {
                let _ = tx.send(stored.is_ok()).await;
            }
        });
    }
    drop(tx);
    let (mut held, mut answered) = (0, 0);
    let deadline = tokio::time::Instant::now() + MAJORITY_WAIT;
    while held < needed && voting_peers - answered + held >= needed {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(ok)) => {
                answered += 1;
                held += usize::from(ok);
            }
            Ok(None) | Err(_) => break,
        }
    }
    held >= needed
}

/// Why a peer did not take or hand over a version.
#[derive(Debug, thiserror::Error)]
pub enum PeerCopyError {
    #[error("the request failed: {0}")]
    Http(#[from] reqwest::Error),
    #[error("the peer answered {0}")]
    Status(reqwest::StatusCode),
}

async fn post(
    node: &Node,
    base: &str,
    task: TaskId,
    c: &CheckpointRef,
    bytes: bytes::Bytes,
) -> Result<(), PeerCopyError> {
    let resp = node
        .http
        .post(format!("{base}{CHECKPOINT_PATH}"))
        .bearer_auth(node.peer_token.as_str())
        .query(&query(task, c))
        .timeout(TRANSFER_TIMEOUT)
        .body(bytes)
        .send()
        .await?;
    match resp.status() {
        s if s.is_success() => Ok(()),
        s => Err(PeerCopyError::Status(s)),
    }
}

/// Reads a version this server does not hold from the first peer that has it whole
/// (checked against its digest), and stores it here for the next time.
pub async fn fetch_from_peers(
    node: &Node,
    task: TaskId,
    c: &CheckpointRef,
) -> Result<Vec<u8>, CheckpointError> {
    let (peers, _) = members(node);
    for (base, _) in peers {
        let bytes = match read(node, &base, task, c).await {
            Ok(Some(b)) => b,
            Ok(None) => continue,
            Err(e) => {
                tracing::info!(peer = %base, %task, which = %c, "could not read a checkpoint from a peer: {e}");
                continue;
            }
        };
        if bytes.len() as u64 != c.size || digest_hex(&bytes) != c.digest {
            tracing::warn!(peer = %base, %task, which = %c, "a peer's copy of a checkpoint does not match its digest");
            continue;
        }
        tracing::info!(peer = %base, %task, which = %c, "checkpoint fetched from a peer");
        let (store, kept, c2) = (node.checkpoints.clone(), bytes.clone(), c.clone());
        match tokio::task::spawn_blocking(move || store.save(task, &c2, &kept)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::warn!(%task, which = %c, "could not keep a fetched checkpoint: {e}")
            }
            Err(e) => tracing::error!(%task, "keeping a fetched checkpoint failed: {e}"),
        }
        return Ok(bytes.to_vec());
    }
    Err(CheckpointError::Missing {
        task,
        which: c.to_string(),
    })
}

/// A peer's copy of a version: `None` when it does not hold it (404).
async fn read(
    node: &Node,
    base: &str,
    task: TaskId,
    c: &CheckpointRef,
) -> Result<Option<bytes::Bytes>, PeerCopyError> {
    let resp = node
        .http
        .get(format!("{base}{CHECKPOINT_PATH}"))
        .bearer_auth(node.peer_token.as_str())
        .query(&query(task, c))
        .timeout(TRANSFER_TIMEOUT)
        .send()
        .await?;
    match resp.status() {
        reqwest::StatusCode::NOT_FOUND => Ok(None),
        s if s.is_success() => Ok(Some(resp.bytes().await?)),
        s => Err(PeerCopyError::Status(s)),
    }
}
