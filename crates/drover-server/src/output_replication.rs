//! Task output copied to every server, outside the log.
//!
//! Output bytes stay out of the replicated log (ARCHITECTURE invariant 2: they are bulk,
//! and a log entry per chunk would make every commit wait for them). Instead the server
//! that receives a frame from a worker (the leader of the moment) stores it and hands
//! it to one sender per peer, which posts batches of frames to the peer's
//! `/v1/raft/output` with the peer token. Each sender has a bounded queue: a peer that
//! is down or slow loses frames rather than holding the leader up, and is made whole
//! later by [`crate::output_repair`] when its copy is read.
//!
//! What makes output survive the loss of any one server is the waiting, not the
//! copying: the leader acknowledges a worker's heartbeat (which lets the worker forget
//! the output frames it sent before that beat) and proposes a task's end only once the
//! frames received before it are stored on a majority ([`OutputReplicator::wait_majority`]).
//! Until then the worker still holds them and resends them to whichever server leads
//! next.

use drover_proto::worker::OutputFrame;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, watch};

/// The path of the peer route that takes frames (and, with GET, serves them for repair).
pub const OUTPUT_PATH: &str = "/v1/raft/output";
/// Frames, and bytes of output, queued per peer before further frames for it are
/// dropped (a frame holds up to 32 KiB).
const QUEUE: usize = 4096;
const QUEUE_BYTES: usize = 16 << 20;
/// Frames (or bytes) sent in one request at most.
const BATCH_FRAMES: usize = 256;
const BATCH_BYTES: usize = 4 << 20;
/// One post to a peer; a peer that takes longer is treated as failing.
const POST_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a failing batch is retried before it is given up (the peer repairs later).
const GIVE_UP_AFTER: Duration = Duration::from_secs(10);

/// A frame on its way to one peer, with its place in this server's sequence of frames.
struct Queued {
    seq: u64,
    frame: Arc<OutputFrame>,
}

/// How far one peer has stored the sequence.
#[derive(Clone, Copy, Debug, Default)]
struct PeerProgress {
    /// Every frame up to this sequence number was stored by the peer, or dropped.
    done: u64,
    /// The last sequence number dropped for this peer (a full queue, or given up).
    dropped: u64,
}

impl PeerProgress {
    /// Whether the peer stored every frame numbered `since..=upto`.
    fn holds(&self, since: u64, upto: u64) -> bool {
        self.done >= upto && self.dropped < since
    }
}

/// Sends output frames to every other server of the group; see the module's comment.
/// The group is whatever the membership says (`set_members`, from the membership
/// watcher): a server added with `--join` gets copies from then on and counts toward
/// the majority once it votes.
#[derive(Debug)]
pub struct OutputReplicator {
    /// The next sequence number. Held while a frame is queued for every peer, so that
    /// each queue is in sequence order (a peer's progress is "everything up to N").
    next_seq: Mutex<u64>,
    /// The other servers, by base URL. Locked after `next_seq` when both are.
    peers: Mutex<BTreeMap<String, PeerQueue>>,
    /// Bumped whenever any peer's progress moves: waiters re-check on it.
    moved: watch::Sender<u64>,
    /// Voters in the group, this one included (0: this server is not one).
    voters: AtomicUsize,
    http: reqwest::Client,
    peer_token: String,
}

#[derive(Debug)]
struct PeerQueue {
    tx: mpsc::Sender<Queued>,
    /// Bytes of output in `tx`'s queue.
    queued_bytes: Arc<AtomicUsize>,
    progress: watch::Receiver<PeerProgress>,
    dropped: Arc<watch::Sender<PeerProgress>>,
    /// Whether it votes: only voters make a majority.
    voter: bool,
}

impl std::fmt::Debug for Queued {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Queued").field("seq", &self.seq).finish()
    }
}

/// One other server, as the membership names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Peer {
    /// `http://host:port`
    pub base: String,
    pub voter: bool,
}

impl OutputReplicator {
    /// One sender task per peer (`base` URLs of the other servers, all voters), until
    /// the membership says otherwise. Must be called within a tokio runtime.
    pub fn start(
        peers: Vec<String>,
        http: reqwest::Client,
        peer_token: String,
    ) -> OutputReplicator {
        let r = OutputReplicator {
            next_seq: Mutex::new(1),
            peers: Mutex::new(BTreeMap::new()),
            moved: watch::channel(0u64).0,
            voters: AtomicUsize::new(0),
            http,
            peer_token,
        };
        let voters = peers.len() + 1;
        let peers = peers
            .into_iter()
            .map(|base| Peer { base, voter: true })
            .collect();
        r.set_members(peers, voters);
        r
    }

    /// The other servers of the group now, and how many voters it has (this server
    /// included if it votes). A new peer is sent the frames from now on: the earlier
    /// ones count as dropped for it (it fetches them when read). A peer no longer
    /// listed is forgotten (its sender ends with its queue).
    pub fn set_members(&self, peers: Vec<Peer>, voters: usize) {
        let next = self.next_seq.lock().unwrap_or_else(|p| p.into_inner());
        let mut current = self.peers.lock().unwrap_or_else(|p| p.into_inner());
        current.retain(|base, _| peers.iter().any(|p| &p.base == base));
        for peer in peers {
            if let Some(q) = current.get_mut(&peer.base) {
                q.voter = peer.voter;
                continue;
            }
            let before = next.saturating_sub(1);
            let (tx, rx) = mpsc::channel(QUEUE);
            let progress = Arc::new(
                watch::channel(PeerProgress {
                    done: before,
                    dropped: before,
                })
                .0,
            );
            let queued_bytes = Arc::new(AtomicUsize::new(0));
            tokio::spawn(send_loop(
                peer.base.clone(),
                self.http.clone(),
                self.peer_token.clone(),
                (rx, queued_bytes.clone()),
                progress.clone(),
                self.moved.clone(),
            ));
            current.insert(
                peer.base,
                PeerQueue {
                    tx,
                    queued_bytes,
                    progress: progress.subscribe(),
                    dropped: progress,
                    voter: peer.voter,
                },
            );
        }
        self.voters.store(voters, Ordering::Relaxed);
        drop(current);
        drop(next);
        self.moved.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Queues a frame (already stored here) for every peer; returns its sequence number.
    pub fn send(&self, frame: OutputFrame) -> u64 {
        let mut next = self.next_seq.lock().unwrap_or_else(|p| p.into_inner());
        let seq = *next;
        *next += 1;
        let peers = self.peers.lock().unwrap_or_else(|p| p.into_inner());
        if peers.is_empty() {
            return seq;
        }
        let frame = Arc::new(frame);
        for peer in peers.values() {
            let queued = Queued {
                seq,
                frame: frame.clone(),
            };
            // Counted before it is queued: the sender subtracts it once dequeued.
            let len = frame.data.len();
            let before = peer.queued_bytes.fetch_add(len, Ordering::Relaxed);
            let sent = before + len <= QUEUE_BYTES && peer.tx.try_send(queued).is_ok();
            if !sent {
                peer.queued_bytes.fetch_sub(len, Ordering::Relaxed);
                // The peer is far behind (or gone): it will be repaired on read.
                peer.dropped.send_modify(|p| p.dropped = p.dropped.max(seq));
                self.moved.send_modify(|n| *n = n.wrapping_add(1));
            }
        }
        seq
    }

    /// Whether the frames numbered `since..=upto` are stored on a majority of the
    /// voters (this server counts). A worker session passes the number of its first
    /// frame as `since`: what came before went through an earlier session, whose acks
    /// waited for it likewise.
    pub fn on_majority(&self, since: u64, upto: u64) -> bool {
        let voters = self.voters.load(Ordering::Relaxed);
        let needed = voters / 2; // peers, besides this server
        let holding = self
            .peers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .filter(|p| p.voter && p.progress.borrow().holds(since, upto))
            .count();
        holding >= needed
    }

    /// Waits until the frames `since..=upto` are stored on a majority, at most `limit`;
    /// returns whether they are.
    pub async fn wait_majority(&self, since: u64, upto: u64, limit: Duration) -> bool {
        let mut moved = self.moved.subscribe();
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            moved.borrow_and_update();
            if self.on_majority(since, upto) {
                return true;
            }
            match tokio::time::timeout_at(deadline, moved.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) | Err(_) => return self.on_majority(since, upto),
            }
        }
    }
}

/// `[u32 BE length][frame]…`: several frames in one request body.
pub fn encode_batch<'a>(frames: impl IntoIterator<Item = &'a OutputFrame>) -> Vec<u8> {
    let mut out = Vec::new();
    for f in frames {
        let bytes = f.encode();
        out.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
        out.extend_from_slice(&bytes);
    }
    out
}

#[derive(Debug, thiserror::Error)]
pub enum BatchError {
    #[error("a frame's length runs past the end of the body")]
    Truncated,
    #[error(transparent)]
    Frame(#[from] drover_proto::worker::FrameError),
}

pub fn decode_batch(mut body: &[u8]) -> Result<Vec<OutputFrame>, BatchError> {
    let mut frames = Vec::new();
    while !body.is_empty() {
        if body.len() < 4 {
            return Err(BatchError::Truncated);
        }
        let len = u32::from_be_bytes([body[0], body[1], body[2], body[3]]) as usize;
        let rest = &body[4..];
        if rest.len() < len {
            return Err(BatchError::Truncated);
        }
        frames.push(OutputFrame::decode(&rest[..len])?);
        body = &rest[len..];
    }
    Ok(frames)
}

async fn send_loop(
    base: String,
    http: reqwest::Client,
    peer_token: String,
    (mut rx, queued_bytes): (mpsc::Receiver<Queued>, Arc<AtomicUsize>),
    progress: Arc<watch::Sender<PeerProgress>>,
    moved: watch::Sender<u64>,
) {
    let url = format!("{base}{OUTPUT_PATH}");
    let mut batch: Vec<Queued> = Vec::new();
    while let Some(first) = rx.recv().await {
        batch.clear();
        let mut bytes = first.frame.data.len();
        batch.push(first);
        while batch.len() < BATCH_FRAMES && bytes < BATCH_BYTES {
            match rx.try_recv() {
                Ok(q) => {
                    bytes += q.frame.data.len();
                    batch.push(q);
                }
                Err(_) => break,
            }
        }
        queued_bytes.fetch_sub(bytes, Ordering::Relaxed);
        let body = encode_batch(batch.iter().map(|q| q.frame.as_ref()));
        let last = batch.last().map_or(0, |q| q.seq);
        let started = tokio::time::Instant::now();
        let mut backoff = Duration::from_millis(50);
        let stored = loop {
            let sent = http
                .post(&url)
                .bearer_auth(&peer_token)
                .timeout(POST_TIMEOUT)
                .body(body.clone())
                .send()
                .await;
            if sent.is_ok_and(|r| r.status().is_success()) {
                break true;
            }
            if started.elapsed() >= GIVE_UP_AFTER {
                break false;
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(1));
        };
        if !stored {
            tracing::warn!(peer = %base, frames = batch.len(), "gave up sending output to a peer; it will fetch what it misses when read");
        }
        progress.send_modify(|p| {
            p.done = p.done.max(last);
            if !stored {
                p.dropped = p.dropped.max(last);
            }
        });
        moved.send_modify(|n| *n = n.wrapping_add(1));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use drover_proto::worker::OutputStream;
    use drover_types::{Attempt, TaskId};

    #[test]
    fn batches_round_trip() {
        let frames = vec![
            OutputFrame {
                task: TaskId(7),
                attempt: Attempt(1),
                stream: OutputStream::Stdout,
                offset: 0,
                data: b"hello\n".to_vec(),
            },
            OutputFrame {
                task: TaskId(7),
                attempt: Attempt(1),
                stream: OutputStream::Stderr,
                offset: 3,
                data: Vec::new(),
            },
        ];
        let body = encode_batch(&frames);
        assert_eq!(decode_batch(&body).unwrap(), frames);
        assert!(matches!(
            decode_batch(&body[..body.len() - 1]),
            Err(BatchError::Truncated)
        ));
    }

    #[test]
    fn a_peer_holds_a_range_only_if_it_dropped_nothing_in_it() {
        let p = PeerProgress {
            done: 10,
            dropped: 4,
        };
        assert!(p.holds(5, 10));
        assert!(!p.holds(4, 6));
        assert!(!p.holds(5, 11));
    }
}
