//! Batches commands into log entries.
//!
//! Every state change goes through here. Commands that arrive while an entry is being
//! written are gathered into the next entry, so a burst of submissions or reports pays
//! one fsync and one scheduling round, not one each. Entries are handed to openraft in
//! the order commands arrived, so two commands from one source (a worker's "started"
//! then "finished") are applied in that order.
//!
//! Back-pressure: callers that wait for their answer ([`Proposer::propose_all`]) take a
//! place in a bounded queue first ([`QUEUED_MAX`]), so a flood of submissions slows the
//! submitters instead of growing memory without limit. Reports proposed without waiting
//! (workers' starts and ends, ticks, lost workers) do not wait for a place: their number is
//! bounded by the running attempts and by timers, and the tasks sending them (a worker's
//! read loop, the background loop) must not stall. Both kinds share one queue, so order
//! is kept.
//!
//! Large jobs: a follower must take in an append within one heartbeat, so no entry may
//! be large. A job whose tasks come to more than [`PART_BYTES`] (as estimated) sends its
//! tasks ahead in parts of that size, one entry each, before its submission (see
//! `drover_state::staging`), and the batching stops adding proposals to an entry past
//! [`ENTRY_BYTES`].
//!
//! Keyed resends in flight: a submission whose idempotency key is already being written
//! on this leader waits for that write and answers with its outcome, instead of writing
//! the (possibly huge) job again (see [`InFlightKeys`]).

use crate::entry_size;
use crate::raft::{Raft, SharedState, StorageHealth};
use drover_state::{Command, CommandResult, IdempotencyKey, LogEntry, StagedRef};
use drover_types::Millis;
use drover_types::TaskSpec;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot, watch};

/// Most commands in one entry. Large enough to amortise the fsync, small enough that
/// one entry never stalls the scheduler for long.
const MAX_BATCH: usize = 4096;
/// Most bytes of task specs (as estimated by [`entry_size::task`]) in one part of a
/// large job in a group: a follower receives, decodes and fsyncs a part within one
/// heartbeat (250 ms; openraft drops the append after it) even in a debug build on a
/// loaded machine. A job of 30,000 small tasks (1.2 MiB) in one entry made a 3-server
/// group lose its leader on every try.
const PART_BYTES: usize = 128 << 10;
/// The same for a server alone: nobody to replicate to now, but a server that joins
/// later is sent the log, so entries stay bounded; larger parts cost fewer commits.
const PART_BYTES_ALONE: usize = 1 << 20;
/// An entry takes no further proposals once it holds this many bytes (estimated): many
/// submissions, or ends with large results, gathered into one entry would be as hard
/// to replicate as one large job.
const ENTRY_BYTES: usize = 512 << 10;
/// Entries in flight at once (written but not yet applied).
const MAX_IN_FLIGHT: usize = 8;
/// Most waiting proposals queued (not yet taken into an entry). One full batch's worth
/// of single-command proposals (`MAX_BATCH`), so batching is never starved by the bound,
/// while a burst of thousands of clients (each holding a job in memory) waits in its own
/// task at the door rather than in the queue.
const QUEUED_MAX: usize = MAX_BATCH;
/// How long a write may wait to be committed and applied before the leader checks that
/// a majority still follows it. A leader cut off from the majority is not told so by
/// openraft (it goes on believing it leads), and its writes would otherwise wait for
/// ever; with this check they fail within `COMMIT_WAIT + QUORUM_CHECK`.
const COMMIT_WAIT: Duration = Duration::from_secs(4);
/// How long the majority has to answer that check (one heartbeat round).
const QUORUM_CHECK: Duration = Duration::from_secs(1);
/// Longest a write may take while the majority does confirm the leader (one entry of a
/// very large job is applied in one go).
const WRITE_LIMIT: Duration = Duration::from_secs(120);

#[derive(Debug, thiserror::Error, Clone)]
pub enum ProposeError {
    #[error("this server is not the leader (leader: {leader:?})")]
    NotLeader { leader: Option<u64> },
    #[error("the replicated log refused the write: {0}")]
    Raft(String),
    #[error("the server is shutting down")]
    ShuttingDown,
    /// The write was handed to the log but no majority confirmed this server's
    /// leadership when asked after [`COMMIT_WAIT`]: it is cut off, or an election is
    /// under way. Not acknowledged; it may still be applied (if the cut heals before
    /// another leader is elected), so a retry needs the same idempotency key.
    #[error(
        "no quorum: a majority of the servers did not confirm this leader within {waited_ms} ms; the write was not acknowledged (it may or may not be applied: retry with the same Idempotency-Key)"
    )]
    NoQuorum { waited_ms: u64 },
    /// Writes to this server's data directory fail (a full disk): nothing new is taken
    /// until one succeeds again (see `raft/storage_health.rs`).
    #[error(
        "this server cannot write to its data directory: {reason}; writes are refused until it can (reads still work)"
    )]
    Storage { reason: String },
    /// Applying an entry failed on this server; it serves nothing until restarted.
    #[error("{reason}")]
    StateFailed { reason: String },
    /// The leader still has its majority but the write did not complete in
    /// [`WRITE_LIMIT`] (a wedged follower disk, say).
    #[error(
        "the write did not complete within {waited_ms} ms; it may or may not be applied (retry with the same Idempotency-Key)"
    )]
    Stalled { waited_ms: u64 },
}

type Reply = oneshot::Sender<Result<Vec<CommandResult>, ProposeError>>;

struct Proposal {
    commands: Vec<Command>,
    /// The commands' estimated size in the log.
    bytes: usize,
    reply: Option<Reply>,
    /// The proposal's place in the bounded queue (waiting proposals only), given back
    /// when the proposer takes it into an entry.
    _place: Option<OwnedSemaphorePermit>,
}

/// A handle to the proposer task. Cheap to clone.
#[derive(Clone)]
pub struct Proposer {
    tx: mpsc::UnboundedSender<Proposal>,
    raft: Raft,
    places: Arc<Semaphore>,
    in_flight: Arc<InFlightKeys>,
    clock: LeaderClock,
    state: Arc<SharedState>,
    storage: Arc<StorageHealth>,
}

impl std::fmt::Debug for Proposal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Proposal({} commands)", self.commands.len())
    }
}

impl Proposer {
    /// Starts the proposer task for `raft`.
    /// `state` gives the floor of time: a new leader never stamps an entry earlier than
    /// the latest one applied (its clock may be behind the previous leader's).
    pub fn start(raft: Raft, state: Arc<SharedState>, storage: Arc<StorageHealth>) -> Proposer {
        let (tx, rx) = mpsc::unbounded_channel();
        let clock = LeaderClock::new();
        tokio::spawn(run(
            raft.clone(),
            rx,
            clock.clone(),
            state.clone(),
            storage.clone(),
        ));
        Proposer {
            tx,
            raft,
            places: Arc::new(Semaphore::new(QUEUED_MAX)),
            in_flight: Arc::new(InFlightKeys::default()),
            clock,
            state,
            storage,
        }
    }

    /// The time the next entry would be stamped with (same clock, same floor).
    pub fn now(&self) -> Millis {
        let floor = self.state.read().scheduler().now();
        self.clock.read().max(floor)
    }

    /// Proposes one command and waits until it is committed and applied.
    /// A keyed submission whose key is being written on this leader already waits for
    /// that write and answers with its outcome (see [`InFlightKeys`]).
    pub async fn propose(&self, command: Command) -> Result<CommandResult, ProposeError> {
        let key = match &command {
            Command::Submit {
                idempotency: Some(key),
                ..
            } => Some(key.clone()),
            _ => None,
        };
        let Some(key) = key else {
            return self.propose_one(command).await;
        };
        match self.in_flight.claim(&key) {
            Claim::Wait(first) => match InFlightKeys::outcome(first).await {
                Some(outcome) => outcome.map(as_replay),
                // The first one's caller went away before its answer: the entry may or
                // may not be written; the apply-time lookup decides.
                None => self.propose_one(command).await,
            },
            Claim::First(claim) => {
                let outcome = self.propose_one(command).await;
                claim.finish(&outcome);
                outcome
            }
            Claim::Unrelated => self.propose_one(command).await,
        }
    }

    async fn propose_one(&self, command: Command) -> Result<CommandResult, ProposeError> {
        let command = match self.send_ahead(command).await? {
            Ok(command) => command,
            Err(refused) => return Ok(refused),
        };
        let mut results = self.propose_all(vec![command]).await?;
        results.pop().ok_or(ProposeError::ShuttingDown)
    }

    /// A submission too large for one entry sends its tasks ahead in parts (one entry
    /// each, one at a time: openraft would gather several waiting entries into one
    /// append) and comes back carrying the last part and the name of the upload. A
    /// part refused (the staging area is full) answers the submission; an error
    /// (leadership lost) fails it, and a resend starts a new upload (the parts sent so
    /// far expire on every replica).
    async fn send_ahead(
        &self,
        command: Command,
    ) -> Result<Result<Command, CommandResult>, ProposeError> {
        let (mut job, idempotency, submitter) = match command {
            Command::Submit {
                job,
                idempotency,
                submitter,
                staged: None,
            } => (job, idempotency, submitter),
            other => return Ok(Ok(other)),
        };
        let limit = if alone(&self.raft) {
            PART_BYTES_ALONE
        } else {
            PART_BYTES
        };
        let ends = part_ends(&job.tasks, limit);
        if !ends.is_empty() {
            let mut id = [0u8; 8];
            getrandom::fill(&mut id).map_err(|e| ProposeError::Raft(e.to_string()))?;
            let upload = u64::from_le_bytes(id);
            let mut rest = std::mem::take(&mut job.tasks).into_iter();
            let mut sent = 0;
            for (part, &end) in ends.iter().enumerate() {
                let tasks: Vec<TaskSpec> = rest.by_ref().take(end - sent).collect();
                sent = end;
                let part = part as u32;
                let answer = self
                    .propose_all(vec![Command::SubmitPart {
                        upload,
                        part,
                        tasks,
                    }])
                    .await?
                    .pop();
                match answer {
                    Some(CommandResult::PartStaged { .. }) => {}
                    Some(refused) => return Ok(Err(refused)),
                    None => return Err(ProposeError::ShuttingDown),
                }
            }
            job.tasks = rest.collect();
            tracing::debug!(
                upload = format_args!("{upload:016x}"),
                parts = ends.len(),
                sent_ahead = sent,
                "a large job's tasks were sent ahead of its submission"
            );
            return Ok(Ok(Command::Submit {
                job,
                idempotency,
                submitter,
                staged: Some(StagedRef {
                    upload,
                    parts: ends.len() as u32,
                    tasks: sent as u64,
                }),
            }));
        }
        Ok(Ok(Command::Submit {
            job,
            idempotency,
            submitter,
            staged: None,
        }))
    }

    /// Proposes commands that must land in the same entry, in this order, and waits.
    pub async fn propose_all(
        &self,
        commands: Vec<Command>,
    ) -> Result<Vec<CommandResult>, ProposeError> {
        // Refused at once rather than queued behind a write that cannot be made.
        if let Some(f) = self.storage.failure() {
            return Err(ProposeError::Storage { reason: f.reason });
        }
        // Wait for a place in the queue (back-pressure). Never closed.
        let place = self
            .places
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| ProposeError::ShuttingDown)?;
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Proposal {
                bytes: commands.iter().map(entry_size::command).sum(),
                commands,
                reply: Some(reply),
                _place: Some(place),
            })
            .map_err(|_| ProposeError::ShuttingDown)?;
        let answer = rx.await.map_err(|_| ProposeError::ShuttingDown)?;
        match (&answer, self.state.failure()) {
            // The write failed because applying (this or an earlier entry) failed.
            (Err(_), Some(reason)) => Err(ProposeError::StateFailed { reason }),
            _ => answer,
        }
    }

    /// Proposes without waiting. Order with other proposals is kept.
    pub fn propose_nowait(&self, command: Command) {
        // While the disk is full a tick would only queue up behind the stuck write (the
        // next one is proposed when due anyway). Workers' reports do queue: they are
        // applied once there is room, rather than lost.
        if matches!(command, Command::Tick) && self.storage.failure().is_some() {
            return;
        }
        let _ = self.tx.send(Proposal {
            bytes: entry_size::command(&command),
            commands: vec![command],
            reply: None,
            _place: None,
        });
    }
}

/// A resend's answer from the first submission's outcome: what the apply-time lookup
/// would have answered had the resend been written.
fn as_replay(result: CommandResult) -> CommandResult {
    match result {
        CommandResult::Submitted { job, tasks } => CommandResult::Replayed { job, tasks },
        other => other,
    }
}

type Outcome = Result<CommandResult, ProposeError>;
/// Where a resend waits for the first submission's outcome (`None` until there is one).
type OutcomeWatch = watch::Receiver<Option<Outcome>>;

/// The idempotency keys of submissions being written on this leader (proposed, not yet
/// applied or failed), each with a channel its resends wait on.
///
/// Only an optimisation: it is local to this server and forgotten on restart; the
/// apply-time lookup (`drover_state::idempotency`) stays what decides. So a resend that
/// arrives at another server, or after the first one's answer, or whose first caller went
/// away, is simply proposed, and answered `Replayed` when applied. Bounded by the
/// submissions in flight: an entry leaves when its write is answered, failed or dropped.
#[derive(Default)]
struct InFlightKeys {
    /// Key → the fingerprint of the body being written, and where its outcome comes.
    keys: Mutex<HashMap<String, (u64, OutcomeWatch)>>,
}

enum Claim<'a> {
    /// Not in flight: this caller proposes and must report its outcome.
    First(KeyClaim<'a>),
    /// In flight with the same body: wait for that outcome.
    Wait(OutcomeWatch),
    /// In flight with a different body: proposed, refused as a conflict when applied.
    Unrelated,
}

/// A key this caller is writing. Dropping it without [`KeyClaim::finish`] (the caller's
/// request cancelled) releases the key and lets its waiters propose for themselves.
struct KeyClaim<'a> {
    keys: &'a InFlightKeys,
    key: String,
    tx: watch::Sender<Option<Outcome>>,
}

impl InFlightKeys {
    fn claim(&self, key: &IdempotencyKey) -> Claim<'_> {
        let mut keys = self.keys.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((fingerprint, rx)) = keys.get(&key.key) {
            return if *fingerprint == key.fingerprint {
                Claim::Wait(rx.clone())
            } else {
                Claim::Unrelated
            };
        }
        let (tx, rx) = watch::channel(None);
        keys.insert(key.key.clone(), (key.fingerprint, rx));
        Claim::First(KeyClaim {
            keys: self,
            key: key.key.clone(),
            tx,
        })
    }

    /// The first submission's outcome; `None` if its caller went away without one.
    async fn outcome(mut rx: OutcomeWatch) -> Option<Outcome> {
        rx.wait_for(Option::is_some).await.ok()?.clone()
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.keys.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}

impl KeyClaim<'_> {
    /// Answers the waiters; the key is released as `self` drops (a resend arriving in
    /// between finds the outcome already there).
    fn finish(self, outcome: &Outcome) {
        let _ = self.tx.send(Some(outcome.clone()));
    }
}

impl Drop for KeyClaim<'_> {
    fn drop(&mut self) {
        self.keys
            .keys
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.key);
    }
}

/// The time stamped on entries: wall-clock milliseconds read once, at start, then
/// advanced by the monotonic clock. A jump of the wall clock while the server runs
/// (an NTP step, an operator's `date -s`) therefore never makes time-limit or backoff
/// timers fire early or late; and entries never go back in time within this process.
/// (Across restarts and leader changes the core clamps `now` to the latest it saw.)
#[derive(Clone, Debug)]
struct LeaderClock {
    anchor_wall_ms: u64,
    anchor: Instant,
    last: u64,
}

impl LeaderClock {
    fn new() -> LeaderClock {
        let anchor_wall_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO)
            .as_millis() as u64;
        LeaderClock {
            anchor_wall_ms,
            anchor: Instant::now(),
            last: 0,
        }
    }

    fn read(&self) -> Millis {
        Millis(self.anchor_wall_ms + self.anchor.elapsed().as_millis() as u64)
    }

    fn now(&mut self, floor: Millis) -> Millis {
        self.last = self.last.max(self.read().0).max(floor.0);
        Millis(self.last)
    }
}

/// Where a part ends, for each part but the last, cutting `tasks` into runs of at most
/// `limit` estimated bytes (a task larger than that is a part alone). Empty when the
/// whole fits in one part.
fn part_ends(tasks: &[TaskSpec], limit: usize) -> Vec<usize> {
    let mut ends = Vec::new();
    let mut bytes = 0;
    for (i, t) in tasks.iter().enumerate() {
        let b = entry_size::task(t);
        if bytes > 0 && bytes + b > limit {
            ends.push(i);
            bytes = 0;
        }
        bytes += b;
    }
    ends
}

/// Takes what is already waiting, up to the batch limits, without waiting for more. A
/// proposal that would take the entry past [`ENTRY_BYTES`] is handed back for the next.
fn gather(
    rx: &mut mpsc::UnboundedReceiver<Proposal>,
    batch: &mut Vec<Proposal>,
    n: &mut usize,
    bytes: &mut usize,
) -> Option<Proposal> {
    while *n < MAX_BATCH && *bytes < ENTRY_BYTES {
        match rx.try_recv() {
            Ok(p) => {
                if *bytes + p.bytes > ENTRY_BYTES {
                    return Some(p);
                }
                *n += p.commands.len();
                *bytes += p.bytes;
                batch.push(p);
            }
            Err(_) => break,
        }
    }
    None
}

async fn run(
    raft: Raft,
    mut rx: mpsc::UnboundedReceiver<Proposal>,
    mut clock: LeaderClock,
    state: Arc<SharedState>,
    storage: Arc<StorageHealth>,
) {
    let slots = std::sync::Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    // A proposal the previous entry had no room for: the next one starts with it.
    let mut carried: Option<Proposal> = None;
    loop {
        let first = match carried.take() {
            Some(p) => p,
            None => match rx.recv().await {
                Some(p) => p,
                None => return,
            },
        };
        let mut n = first.commands.len();
        let mut bytes = first.bytes;
        let mut batch = vec![first];
        carried = gather(&mut rx, &mut batch, &mut n, &mut bytes);
        let Ok(permit) = slots.clone().acquire_owned().await else {
            return;
        };
        // While we waited for a slot, more may have arrived: take them too.
        if carried.is_none() {
            carried = gather(&mut rx, &mut batch, &mut n, &mut bytes);
        }
        let mut commands = Vec::with_capacity(n);
        let mut replies = Vec::with_capacity(batch.len());
        for p in batch {
            // `p._place` is dropped here: the next waiting proposal may queue.
            replies.push((p.commands.len(), p.reply));
            commands.extend(p.commands);
        }
        let floor = state.read().scheduler().now();
        let entry = LogEntry {
            now: clock.now(floor),
            commands,
        };
        // Hand the entry to openraft now (keeps arrival order); wait for it elsewhere.
        let receiver = raft.client_write_ff(entry).await;
        let (raft, storage) = (raft.clone(), storage.clone());
        tokio::spawn(async move {
            let _permit = permit;
            let outcome: Result<Vec<CommandResult>, ProposeError> = match receiver {
                Err(fatal) => Err(ProposeError::Raft(fatal.to_string())),
                Ok(rx) => await_applied(&raft, &storage, rx).await,
            };
            match outcome {
                Ok(results) => {
                    let mut it = results.into_iter();
                    for (count, reply) in replies {
                        let mine: Vec<CommandResult> = it.by_ref().take(count).collect();
                        if let Some(reply) = reply {
                            let _ = reply.send(Ok(mine));
                        }
                    }
                }
                Err(e) => {
                    for (_, reply) in replies {
                        if let Some(reply) = reply {
                            let _ = reply.send(Err(e.clone()));
                        }
                    }
                }
            }
        });
    }
}

/// Waits for an entry handed to openraft to be applied, bounded: see [`COMMIT_WAIT`].
/// Giving up frees the caller's in-flight slot while the entry stays in openraft's
/// hands (it may still commit, or be discarded by the next leader).
async fn await_applied(
    raft: &Raft,
    storage: &StorageHealth,
    mut rx: oneshot::Receiver<
        Result<
            openraft::raft::ClientWriteResponse<crate::raft::TypeConfig>,
            openraft::error::ClientWriteError<u64, openraft::BasicNode>,
        >,
    >,
) -> Result<Vec<CommandResult>, ProposeError> {
    let start = Instant::now();
    loop {
        let answer = match tokio::time::timeout(COMMIT_WAIT, &mut rx).await {
            Ok(answer) => answer,
            Err(_) => {
                let waited_ms = start.elapsed().as_millis() as u64;
                if let Some(f) = storage.failure() {
                    // Stuck behind a write to a full disk. It is retried, so this entry
                    // may still be applied once there is room.
                    return Err(ProposeError::Storage { reason: f.reason });
                }
                if !majority_confirms(raft).await {
                    tracing::warn!(
                        waited_ms,
                        "a write was not committed and no majority confirms this leader; refusing it"
                    );
                    return Err(ProposeError::NoQuorum {
                        waited_ms: start.elapsed().as_millis() as u64,
                    });
                }
                if start.elapsed() >= WRITE_LIMIT {
                    return Err(ProposeError::Stalled { waited_ms });
                }
                continue;
            }
        };
        return match answer {
            Err(_) => Err(ProposeError::ShuttingDown),
            Ok(Err(e)) => Err(match e {
                openraft::error::ClientWriteError::ForwardToLeader(f) => ProposeError::NotLeader {
                    leader: f.leader_id,
                },
                other => ProposeError::Raft(other.to_string()),
            }),
            Ok(Ok(resp)) => Ok(resp.data),
        };
    }
}

/// Whether this server is the group's only member (no voter or learner besides it).
fn alone(raft: &Raft) -> bool {
    let m = raft.metrics();
    let m = m.borrow();
    let mut nodes = m.membership_config.membership().nodes();
    nodes.next().is_some_and(|(id, _)| *id == m.id) && nodes.next().is_none()
}

/// Whether a majority of the voters answers this leader's heartbeat now. Only the
/// leadership is checked, not that the state machine caught up (`ensure_linearizable`
/// would also wait for the slow entry itself to be applied, and a large job then reads as
/// a lost quorum). A server that is the only voter is its own majority: nothing can cut
/// it off, however long its own disk or apply takes.
async fn majority_confirms(raft: &Raft) -> bool {
    let only_voter = {
        let m = raft.metrics();
        let m = m.borrow();
        let mut voters = m.membership_config.membership().voter_ids();
        voters.next() == Some(m.id) && voters.next().is_none()
    };
    only_voter
        || tokio::time::timeout(QUORUM_CHECK, raft.get_read_log_id())
            .await
            .is_ok_and(|r| r.is_ok())
}

impl std::fmt::Debug for Proposer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Proposer")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use drover_sched::TaskRange;
    use drover_types::{JobId, TaskId};

    fn key(k: &str, fingerprint: u64) -> IdempotencyKey {
        IdempotencyKey {
            key: k.into(),
            fingerprint,
        }
    }

    fn submitted() -> CommandResult {
        CommandResult::Submitted {
            job: JobId(7),
            tasks: TaskRange {
                first: TaskId(10),
                count: 3,
            },
        }
    }

    #[tokio::test]
    async fn a_resend_in_flight_waits_and_answers_replayed_with_the_first_ids() {
        let keys = InFlightKeys::default();
        let Claim::First(first) = keys.claim(&key("k", 1)) else {
            panic!("the first submission of a key claims it");
        };
        let Claim::Wait(rx) = keys.claim(&key("k", 1)) else {
            panic!("a resend with the same body waits");
        };
        assert!(matches!(keys.claim(&key("k", 2)), Claim::Unrelated));
        let waiter = tokio::spawn(InFlightKeys::outcome(rx));
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished(), "waits for the first outcome");
        first.finish(&Ok(submitted()));
        let got = waiter.await.unwrap().expect("an outcome").map(as_replay);
        assert!(
            matches!(got, Ok(CommandResult::Replayed { job: JobId(7), tasks }) if tasks.first == TaskId(10) && tasks.count == 3),
            "{got:?}"
        );
        assert_eq!(keys.len(), 0, "released once answered");
        assert!(matches!(keys.claim(&key("k", 1)), Claim::First(_)));
    }

    #[tokio::test]
    async fn a_failed_first_gives_its_error_and_a_dropped_one_lets_waiters_propose() {
        let keys = InFlightKeys::default();
        let Claim::First(first) = keys.claim(&key("k", 1)) else {
            panic!()
        };
        let Claim::Wait(rx) = keys.claim(&key("k", 1)) else {
            panic!()
        };
        first.finish(&Err(ProposeError::NotLeader { leader: Some(2) }));
        assert!(matches!(
            InFlightKeys::outcome(rx).await,
            Some(Err(ProposeError::NotLeader { leader: Some(2) }))
        ));
        assert_eq!(keys.len(), 0);

        let Claim::First(first) = keys.claim(&key("k", 1)) else {
            panic!()
        };
        let Claim::Wait(rx) = keys.claim(&key("k", 1)) else {
            panic!()
        };
        drop(first);
        assert!(InFlightKeys::outcome(rx).await.is_none());
        assert_eq!(keys.len(), 0, "no leak when the first caller goes away");
    }
}
