//! Changing the group: adding a server, removing one. Run on the leader only.
//!
//! One change at a time: openraft itself refuses a change while a joint configuration
//! is uncommitted, but adding is three steps (hand the newcomer an id, add it as a
//! learner and wait until it has caught up, make it a voter), and two interleaved
//! additions could be handed the same id. So the leader takes a lock for the whole
//! change and a second request meanwhile is refused ([`MembershipError::Busy`], 409)
//! rather than queued behind a catch-up that may take a minute.

use crate::node::Node;
use crate::raft::PEER_ADOPT_PATH;
use openraft::error::{ClientWriteError, RaftError};
use openraft::{BasicNode, ChangeMembers};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

/// Longest a newcomer may take to catch up with the log as a learner.
pub const CATCH_UP: Duration = Duration::from_secs(60);
/// How long a member's health probe may take when counting the reachable voters.
const PROBE: Duration = Duration::from_millis(500);

/// The leader's lock on membership changes.
#[derive(Debug, Default)]
pub struct MembershipChanges {
    busy: tokio::sync::Mutex<()>,
}

/// `POST /v1/raft/adopt`: the leader offers a waiting server its node id; it answers
/// with the id it will use (the offered one, or the one it already has).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Adoption {
    pub node_id: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum MembershipError {
    #[error(
        "another membership change is under way; changes are made one at a time, try again once it is done"
    )]
    Busy,
    #[error("this server is not the leader; membership changes are made by the leader")]
    NotLeader,
    #[error("this server has been removed from the group")]
    Removed,
    #[error(
        "no server {0:?} in the group (give its id or its address as `drover servers` lists them)"
    )]
    Unknown(String),
    #[error("server {id} is the group's last voter; a group cannot remove its last voter")]
    LastVoter { id: u64 },
    #[error(
        "removing server {id} would leave {reachable} reachable voter(s) of {remaining}, fewer than the {majority} a majority of them needs; bring servers back first"
    )]
    NoMajority {
        id: u64,
        remaining: usize,
        reachable: usize,
        majority: usize,
    },
    #[error("cannot reach the server at {address} to add it: {source}")]
    Unreachable {
        address: String,
        source: reqwest::Error,
    },
    #[error(
        "the server at {address} is not waiting to join (HTTP {status}); start it with `drover server --join` and the group's peer token"
    )]
    NotJoining { address: String, status: u16 },
    #[error("the server at {address} answers as node {id}, an id another member ({other}) has")]
    IdTaken {
        address: String,
        id: u64,
        other: String,
    },
    #[error(
        "the server at {address} did not catch up with the log within {waited:?}; it was not added"
    )]
    CatchUpTimeout { address: String, waited: Duration },
    #[error("the replicated log refused the change: {0}")]
    Raft(Box<RaftError<u64, ClientWriteError<u64, BasicNode>>>),
}

impl From<RaftError<u64, ClientWriteError<u64, BasicNode>>> for MembershipError {
    fn from(e: RaftError<u64, ClientWriteError<u64, BasicNode>>) -> MembershipError {
        MembershipError::Raft(Box::new(e))
    }
}

/// Who a change concerned, and the voters after it.
#[derive(Clone, Debug)]
pub struct Changed {
    pub id: u64,
    pub address: String,
    pub voters: Vec<u64>,
}

impl MembershipChanges {
    /// Adds the server at `address` (host:port): a voter once this returns.
    /// Idempotent: a server that is a voter already is left as it is, a learner is
    /// promoted.
    pub async fn add(&self, node: &Arc<Node>, address: &str) -> Result<Changed, MembershipError> {
        let _one_at_a_time = self.busy.try_lock().map_err(|_| MembershipError::Busy)?;
        check_leader(node)?;
        let membership = current(node);
        let known = membership
            .iter()
            .find(|(_, (addr, _))| addr == address)
            .map(|(id, (_, voter))| (*id, *voter));
        let id = match known {
            Some((id, true)) => return Ok(changed(node, id, address)),
            Some((id, false)) => id,
            None => {
                let offered = next_node_id(node, &membership).await?;
                let id = adopt(node, address, offered).await?;
                if let Some((other, _)) = membership.get(&id) {
                    return Err(MembershipError::IdTaken {
                        address: address.to_string(),
                        id,
                        other: other.clone(),
                    });
                }
                tracing::info!(id, address, "adding a server as a learner");
                let learner = BasicNode {
                    addr: address.to_string(),
                };
                let added =
                    tokio::time::timeout(CATCH_UP, node.raft.add_learner(id, learner, true));
                match added.await {
                    Ok(r) => {
                        r?;
                    }
                    Err(_) => {
                        // A learner that never caught up would be replicated to for ever.
                        let _ = node
                            .raft
                            .change_membership(
                                ChangeMembers::RemoveNodes(BTreeSet::from([id])),
                                false,
                            )
                            .await;
                        return Err(MembershipError::CatchUpTimeout {
                            address: address.to_string(),
                            waited: CATCH_UP,
                        });
                    }
                }
                id
            }
        };
        tracing::info!(id, address, "making the server a voter (joint consensus)");
        node.raft
            .change_membership(ChangeMembers::AddVoterIds(BTreeSet::from([id])), false)
            .await?;
        Ok(changed(node, id, address))
    }

    /// Removes a member, named by its id or its address. Refuses to remove the last
    /// voter, or a voter whose removal leaves fewer reachable voters than a majority of
    /// the rest (the group could then commit nothing, this change's end included).
    pub async fn remove(&self, node: &Arc<Node>, which: &str) -> Result<Changed, MembershipError> {
        let _one_at_a_time = self.busy.try_lock().map_err(|_| MembershipError::Busy)?;
        check_leader(node)?;
        let membership = current(node);
        let (id, address, voter) = membership
            .iter()
            .find(|(id, (addr, _))| addr == which || which.parse::<u64>() == Ok(**id))
            .map(|(id, (addr, voter))| (*id, addr.clone(), *voter))
            .ok_or_else(|| MembershipError::Unknown(which.to_string()))?;
        if voter {
            let remaining: Vec<(u64, String)> = membership
                .iter()
                .filter(|(i, (_, v))| *v && **i != id)
                .map(|(i, (a, _))| (*i, a.clone()))
                .collect();
            if remaining.is_empty() {
                return Err(MembershipError::LastVoter { id });
            }
            let majority = remaining.len() / 2 + 1;
            let reachable = count_reachable(node, &remaining).await;
            if reachable < majority {
                return Err(MembershipError::NoMajority {
                    id,
                    remaining: remaining.len(),
                    reachable,
                    majority,
                });
            }
        }
        tracing::info!(id, %address, "removing a server from the group");
        let change = if voter {
            ChangeMembers::RemoveVoters(BTreeSet::from([id]))
        } else {
            ChangeMembers::RemoveNodes(BTreeSet::from([id]))
        };
        node.raft.change_membership(change, false).await?;
        let done = changed(node, id, &address);
        if id == node.config.node_id {
            // The leader removed itself: openraft steps it down once the change is
            // committed. Let one more heartbeat carry the commit to the others first.
            tokio::time::sleep(Duration::from_millis(300)).await;
            node.mark_removed();
        } else {
            tell_removed(node, &address).await;
        }
        Ok(done)
    }
}

/// The id to offer a newcomer: above every id any membership of the group has had,
/// removed servers' included, so that no id is ever handed out twice (a removed
/// server's id coming back would let its old votes and log positions, still known to
/// the others under that id, be taken for the newcomer's). The highest id of the
/// memberships applied is part of the replicated state (see `raft/state_store.rs`);
/// the current membership (the last one in the log, which may not be applied yet)
/// counts too. Confirming the leadership first also waits until everything committed
/// is applied, so no committed membership is missed.
async fn next_node_id(
    node: &Node,
    membership: &BTreeMap<u64, (String, bool)>,
) -> Result<u64, MembershipError> {
    node.raft
        .ensure_linearizable()
        .await
        .map_err(|_| MembershipError::NotLeader)?;
    let highest = membership
        .keys()
        .copied()
        .chain([node.config.node_id, node.state.highest_node_id()])
        .max()
        .unwrap_or(0);
    Ok(highest + 1)
}

fn check_leader(node: &Node) -> Result<(), MembershipError> {
    if node.is_removed() {
        return Err(MembershipError::Removed);
    }
    if !node.is_leader() {
        return Err(MembershipError::NotLeader);
    }
    Ok(())
}

/// The members as this leader sees them: id → (address, voter).
fn current(node: &Node) -> BTreeMap<u64, (String, bool)> {
    let metrics = node.raft.metrics().borrow().clone();
    let membership = metrics.membership_config.membership();
    let voters: BTreeSet<u64> = membership.voter_ids().collect();
    membership
        .nodes()
        .map(|(id, n)| (*id, (n.addr.clone(), voters.contains(id))))
        .collect()
}

fn changed(node: &Node, id: u64, address: &str) -> Changed {
    let metrics = node.raft.metrics().borrow().clone();
    Changed {
        id,
        address: address.to_string(),
        voters: metrics.membership_config.membership().voter_ids().collect(),
    }
}

/// Offers `offered` to the server at `address`; returns the id it takes.
async fn adopt(node: &Node, address: &str, offered: u64) -> Result<u64, MembershipError> {
    let resp = node
        .http
        .post(format!(
            "{}{PEER_ADOPT_PATH}",
            node.config.peer_url(address)
        ))
        .bearer_auth(node.peer_token.as_str())
        .timeout(Duration::from_secs(5))
        .json(&Adoption { node_id: offered })
        .send()
        .await
        .map_err(|source| MembershipError::Unreachable {
            address: address.to_string(),
            source,
        })?;
    let status = resp.status().as_u16();
    if status != 200 {
        return Err(MembershipError::NotJoining {
            address: address.to_string(),
            status,
        });
    }
    let answer: Adoption = resp
        .json()
        .await
        .map_err(|source| MembershipError::Unreachable {
            address: address.to_string(),
            source,
        })?;
    Ok(answer.node_id)
}

/// How many of these voters answer a health probe as members (this server counts
/// without asking).
async fn count_reachable(node: &Node, voters: &[(u64, String)]) -> usize {
    let probes = voters.iter().map(|(id, addr)| {
        let me = *id == node.config.node_id;
        let req = node
            .http
            .get(format!("{}/v1/health", node.config.peer_url(addr)))
            .timeout(PROBE);
        async move {
            if me {
                return true;
            }
            match req.send().await {
                Ok(r) if r.status().is_success() => r
                    .json::<drover_proto::api::Health>()
                    .await
                    .is_ok_and(|h| h.membership == "member"),
                _ => false,
            }
        }
    });
    futures_util::future::join_all(probes)
        .await
        .into_iter()
        .filter(|up| *up)
        .count()
}

/// Tells a removed server so, at once: it may never see the entry that removed it (the
/// leader stops replicating to it once the change commits), and without being told it
/// would start elections. Best effort: a server that misses this finds out from its
/// own membership (see `background::membership_watch`) or stays harmless, since the
/// others refuse its votes while they hear from the leader.
async fn tell_removed(node: &Node, address: &str) {
    let sent = node
        .http
        .post(format!(
            "{}{}",
            node.config.peer_url(address),
            crate::raft::PEER_REMOVED_PATH
        ))
        .bearer_auth(node.peer_token.as_str())
        .timeout(Duration::from_secs(2))
        .send()
        .await;
    if let Err(e) = sent {
        tracing::warn!(
            address,
            "could not tell the removed server it was removed: {e}"
        );
    }
}
