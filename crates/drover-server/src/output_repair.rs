//! Making one server's copy of an ended attempt's output whole from its peers.
//!
//! Output reaches the other servers by [`crate::output_replication`], which may drop
//! frames for a peer that is down or slow. Every server answers output reads from its
//! own copy, so before serving an *ended* attempt (its output is final) a server that
//! has not yet done so asks each peer how far it holds the stream and fetches the bytes
//! it lacks from the one holding the most. Once every peer has answered, the stream is
//! marked complete and never asked about again. Since the leader waits for a majority
//! before acknowledging output (or proposing the end), any majority of servers holds
//! all of it, so every server that can reach a majority reads the same bytes.

use crate::node::Node;
use crate::output_replication::OUTPUT_PATH;
use drover_proto::worker::{OutputFrame, OutputStream};
use drover_types::{Attempt, TaskId};
use std::time::Duration;

/// The header of a peer's answer: how far it holds the stream.
pub const COVERED_HEADER: &str = "x-drover-output-covered";
/// One question to a peer.
const ASK_TIMEOUT: Duration = Duration::from_secs(3);

#[derive(Debug, thiserror::Error)]
pub enum RepairError {
    #[error("the output store: {0}")]
    Store(#[from] std::io::Error),
    #[error("a blocking task failed: {0}")]
    Join(#[from] tokio::task::JoinError),
}

/// What one peer said: how far it holds the stream, and its bytes from our offset.
struct PeerCopy {
    base: String,
    covered: u64,
    bytes: Vec<u8>,
}

/// Fetches what this server lacks of an ended attempt's stream from its peers.
pub async fn complete_from_peers(
    node: &Node,
    task: TaskId,
    attempt: Attempt,
    stream: OutputStream,
) -> Result<(), RepairError> {
    if !node.is_clustered() || node.output.is_complete(task, attempt, stream) {
        return Ok(());
    }
    let mut local = covered(node, task, attempt, stream).await?;
    let mut answered = 0;
    let mut peers = 0;
    let mut best: Option<PeerCopy> = None;
    // The members of the moment (a server that joined with `--join` knows no peer
    // list of its own).
    let members: Vec<String> = {
        let m = node.raft.metrics().borrow().clone();
        m.membership_config
            .membership()
            .nodes()
            .filter(|(id, _)| **id != node.config.node_id)
            .map(|(_, n)| n.addr.clone())
            .collect()
    };
    for addr in members {
        peers += 1;
        let base = node.config.peer_url(&addr);
        if let Some(copy) = ask(node, &base, task, attempt, stream, local).await {
            answered += 1;
            if best.as_ref().is_none_or(|b| copy.covered > b.covered) {
                best = Some(copy);
            }
        }
    }
    if let Some(mut copy) = best {
        while copy.covered > local && !copy.bytes.is_empty() {
            let frame = OutputFrame {
                task,
                attempt,
                stream,
                offset: local,
                data: std::mem::take(&mut copy.bytes),
            };
            local += frame.data.len() as u64;
            append(node, frame).await?;
            if copy.covered > local {
                match ask(node, &copy.base, task, attempt, stream, local).await {
                    Some(next) => copy = next,
                    None => break,
                }
            }
        }
        if local < copy.covered {
            // The peer went away halfway: ask again on the next read.
            return Ok(());
        }
    }
    if answered == peers {
        node.output.mark_complete(task, attempt, stream);
    } else {
        tracing::info!(%task, %attempt, stream = stream.as_str(), answered, peers, "not every peer answered about this output; asking again on the next read");
    }
    Ok(())
}

async fn covered(
    node: &Node,
    task: TaskId,
    attempt: Attempt,
    stream: OutputStream,
) -> Result<u64, RepairError> {
    let store = node.output.clone();
    Ok(tokio::task::spawn_blocking(move || store.covered(task, attempt, stream)).await??)
}

async fn append(node: &Node, frame: OutputFrame) -> Result<(), RepairError> {
    let store = node.output.clone();
    Ok(tokio::task::spawn_blocking(move || store.append(&frame)).await??)
}

async fn ask(
    node: &Node,
    base: &str,
    task: TaskId,
    attempt: Attempt,
    stream: OutputStream,
    offset: u64,
) -> Option<PeerCopy> {
    let resp = node
        .http
        .get(format!("{base}{OUTPUT_PATH}"))
        .bearer_auth(node.peer_token.as_str())
        .query(&[
            ("task", task.0.to_string()),
            ("attempt", attempt.0.to_string()),
            ("stream", stream.as_str().to_string()),
            ("offset", offset.to_string()),
        ])
        .timeout(ASK_TIMEOUT)
        .send()
        .await
        .ok()?;
    if !resp.status().is_success() {
        return None;
    }
    let covered = resp
        .headers()
        .get(COVERED_HEADER)?
        .to_str()
        .ok()?
        .parse()
        .ok()?;
    let bytes = resp.bytes().await.ok()?.to_vec();
    Some(PeerCopy {
        base: base.to_string(),
        covered,
        bytes,
    })
}
