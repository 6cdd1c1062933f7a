//! The leader's background duties: carry out dispatches, declare silent workers lost,
//! and let time advance in the log so that timers fire.

use crate::node::Node;
use drover_proto::worker::ServerMessage;
use drover_sched::KillReason;
use drover_state::{Command, Dispatch};
use drover_types::{WorkerId, WorkerState};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc::UnboundedReceiver;

/// A batch of starts at most this long is signed on the dispatch task itself; a longer
/// one on a blocking thread: an ed25519 signature costs ~0.2 ms here (debug build),
/// and a round that places thousands of tasks must not hold an async thread that long.
const SIGN_INLINE_MAX: usize = 8;

/// Signs every start of the batch with the cluster's task key (see
/// `worker_identity::task_signer`), before the state's lock is taken to send them.
async fn sign_starts(node: &Node, mut batch: Vec<Dispatch>) -> Vec<Dispatch> {
    fn sign_all(signer: &drover_proto::integrity::TaskSigner, batch: &mut [Dispatch]) {
        for d in batch {
            if let Dispatch::Start { start, .. } = d {
                signer.sign(start);
            }
        }
    }
    let starts = batch
        .iter()
        .filter(|d| matches!(d, Dispatch::Start { .. }))
        .count();
    if starts <= SIGN_INLINE_MAX {
        sign_all(&node.task_signer, &mut batch);
        return batch;
    }
    let signer = node.task_signer.clone();
    match tokio::task::spawn_blocking(move || {
        sign_all(&signer, &mut batch);
        batch
    })
    .await
    {
        Ok(batch) => batch,
        // Only a panic while signing gets here: nothing is sent (a worker rejoining
        // is sent its starts again, signed).
        Err(e) => {
            tracing::error!("signing starts failed: {e}");
            Vec::new()
        }
    }
}

/// Sends what applied entries decided to the workers concerned. Followers drop it all.
/// A message for a worker that is not connected is dropped too: when it reconnects, its
/// join reconciles what it runs with what the log says it should.
pub async fn dispatch_loop(node: Arc<Node>, mut rx: UnboundedReceiver<Vec<Dispatch>>) {
    while let Some(batch) = rx.recv().await {
        if !node.is_leader() {
            continue;
        }
        let batch = sign_starts(&node, batch).await;
        for d in batch {
            match d {
                Dispatch::Start { worker, start } => {
                    let start = *start;
                    // The checkpoint it resumes from is read before the lock is taken.
                    let restore = crate::checkpoint::restore_messages(&node, &start).await;
                    // Checked and queued under the state's read lock, so that no entry
                    // applies in between: a start superseded meanwhile is not sent (see
                    // `worker_session::start_is_current`).
                    let sm = node.state.read();
                    if crate::worker_session::start_is_current(
                        sm.scheduler(),
                        start.task,
                        start.attempt,
                    ) {
                        for m in &restore {
                            node.sessions.send(worker, m);
                        }
                        node.sessions.send(worker, &ServerMessage::Start(start));
                    }
                }
                Dispatch::Kill {
                    worker,
                    task,
                    attempt,
                    grace_ms,
                    reason,
                } => {
                    let unless_started = reason == KillReason::Retracted;
                    let reason = match reason {
                        KillReason::Cancelled => "cancelled",
                        KillReason::TimeLimit => "time limit",
                        KillReason::Preempted => "preempted",
                        KillReason::Retracted => "retracted to run elsewhere",
                        KillReason::Stale => "stale attempt",
                    };
                    node.sessions.send(
                        worker,
                        &ServerMessage::Kill {
                            task,
                            attempt,
                            grace_ms,
                            reason: reason.to_string(),
                            unless_started,
                        },
                    );
                }
                Dispatch::FinishedAck {
                    worker,
                    task,
                    attempt,
                } => {
                    node.sessions
                        .send(worker, &ServerMessage::FinishedAck { task, attempt });
                }
                Dispatch::SetLimits {
                    worker,
                    task,
                    attempt,
                    resources,
                } => {
                    node.sessions.send(
                        worker,
                        &ServerMessage::SetLimits {
                            task,
                            attempt,
                            resources,
                        },
                    );
                }
            }
        }
    }
}

/// How often the leader looks at worker liveness and timers.
const CHECK_EVERY: Duration = Duration::from_millis(200);
/// Least time between two ticks written for the same due timer.
const TICK_EVERY: Duration = Duration::from_millis(200);

pub async fn liveness_loop(node: Arc<Node>) {
    let mut was_leader = false;
    let mut lost_proposed: HashMap<WorkerId, Instant> = HashMap::new();
    let mut last_tick = Instant::now();
    let mut interval = tokio::time::interval(CHECK_EVERY);
    loop {
        interval.tick().await;
        let leader = node.is_leader();
        if !leader {
            was_leader = false;
            continue;
        }
        let (workers, next_timer) = {
            let sm = node.state.read();
            let sched = sm.scheduler();
            let workers: Vec<(WorkerId, WorkerState)> =
                sched.workers().map(|w| (w.id, w.state)).collect();
            (workers, sched.next_timer())
        };
        if !was_leader {
            // A new leader gives every worker a fresh window to reach it; in a group,
            // plus the lease, during which the previous leader may still have
            // acknowledged its heartbeats.
            let grace = if node.is_clustered() {
                crate::node::LEASE
            } else {
                Duration::ZERO
            };
            node.sessions
                .reset_clocks(workers.iter().map(|(w, _)| *w), grace);
            was_leader = true;
        }
        let now = Instant::now();
        for (worker, state) in workers {
            if state == WorkerState::Lost {
                lost_proposed.remove(&worker);
                continue;
            }
            let silent_for = node
                .sessions
                .liveness(worker)
                .map(|l| now.duration_since(l.last_seen))
                .unwrap_or_default();
            let recently_proposed = lost_proposed
                .get(&worker)
                .is_some_and(|t| now.duration_since(*t) < Duration::from_secs(5));
            if silent_for > node.config.worker_lost_after && !recently_proposed {
                tracing::warn!(%worker, silent_ms = silent_for.as_millis() as u64, "worker missed its heartbeats; declaring it lost");
                lost_proposed.insert(worker, now);
                node.proposer.propose_nowait(Command::WorkerLost { worker });
                // If it is merely stalled it must come back through a fresh join, which
                // reconciles (and kills) the attempts given up on meanwhile.
                node.sessions.disconnect(worker);
            }
        }
        // Time reaches the core only through entries: write one when a timer is due
        // (not more often than TICK_EVERY, while the due tick is on its way).
        let due = next_timer.is_some_and(|t| t <= node.proposer.now());
        if due && now.duration_since(last_tick) >= TICK_EVERY {
            last_tick = now;
            node.proposer.propose_nowait(Command::Tick);
        }
    }
}

/// In a group, the leader has a majority confirm its leadership every few hundred
/// milliseconds (one heartbeat round); see [`Node::holds_lease`].
pub async fn lease_loop(node: Arc<Node>) {
    let mut interval = tokio::time::interval(Duration::from_millis(300));
    loop {
        interval.tick().await;
        if !node.is_leader() || !node.is_clustered() {
            continue;
        }
        let asked = Instant::now();
        let confirmed =
            tokio::time::timeout(Duration::from_secs(1), node.raft.ensure_linearizable())
                .await
                .is_ok_and(|r| r.is_ok());
        if confirmed {
            *node.confirmed.lock().unwrap_or_else(|p| p.into_inner()) = Some(asked);
        }
    }
}

/// Notices that this server is no longer in the group's membership (the entry that
/// removed it reached it, or a snapshot did) and stops it taking part; the leader also
/// tells a server it removes directly (`/v1/raft/removed`), which this backs up.
pub async fn membership_watch(node: Arc<Node>) {
    use crate::output_replication::Peer;
    let mut rx = node.raft.metrics();
    // A newcomer replays the log from its start, through memberships it was not in
    // yet: only leaving a membership it was in counts.
    let mut was_member = false;
    let mut output_peers: Option<(Vec<Peer>, usize)> = None;
    loop {
        if node.is_removed() {
            return;
        }
        let gone = {
            let m = rx.borrow_and_update();
            // Task output is copied to the members of the moment (see
            // `output_replication.rs`): a server that joined gets copies too.
            let membership = m.membership_config.membership();
            if membership.nodes().count() > 0 {
                let voter_ids: Vec<u64> = membership.voter_ids().collect();
                let peers: Vec<Peer> = membership
                    .nodes()
                    .filter(|(id, _)| **id != node.config.node_id)
                    .map(|(id, n)| Peer {
                        base: node.config.peer_url(&n.addr),
                        voter: voter_ids.contains(id),
                    })
                    .collect();
                let wanted = (peers, voter_ids.len());
                if output_peers.as_ref() != Some(&wanted) {
                    node.replicator.set_members(wanted.0.clone(), wanted.1);
                    output_peers = Some(wanted);
                }
            }
            let member = m
                .membership_config
                .membership()
                .get_node(&node.config.node_id)
                .is_some();
            // Only once applied (so committed): a leader removing itself still has to
            // see the change through after appending it.
            let applied = m.membership_config.log_id() <= &m.last_applied;
            let gone = was_member && !member && applied;
            was_member |= member;
            gone
        };
        if gone {
            node.mark_removed();
            return;
        }
        if rx.changed().await.is_err() {
            return;
        }
    }
}
