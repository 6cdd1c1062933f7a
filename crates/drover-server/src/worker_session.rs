//! One worker's connection: handshake, reconciliation, then reports in and work out.

use crate::api::ApiError;
use crate::input_limits::OutputCap;
use crate::node::Node;
use crate::worker_identity::{CREDENTIAL_PREFIX, IssuedSecret, WorkerAuth};
use crate::worker_updates::{Logged, UpdateLimiter};
use axum::extract::State;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use drover_proto::worker::{
    AttemptReport, FrameError, OutputFrame, PROTOCOL_VERSION, ServerMessage, WorkerMessage,
    fence_after,
};
use drover_state::{Command, CommandResult};
use drover_types::{Attempt, TaskId, TaskState, WorkerId, WorkerState};
use futures_util::{SinkExt, StreamExt};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

/// Read buffer of a worker's WebSocket (see `connect`).
const WS_READ_BUFFER: usize = 8 << 10;

const HELLO_TIMEOUT: Duration = Duration::from_secs(10);
/// The longest one write (a message and those queued behind it) to a worker may take.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// Queued messages sent along with the one that woke the writer, at most.
const MAX_MESSAGES_PER_WRITE: usize = 256;

/// The worker protocol: a WebSocket upgrade (see drover-proto's `worker` module).
#[utoipa::path(
    get,
    path = "/v1/worker/connect",
    tag = "meta",
    params(
        ("Upgrade" = String, Header, pattern = "^websocket$", description = "`websocket`"),
        ("Connection" = String, Header, pattern = "^Upgrade$", description = "`Upgrade`"),
        ("Sec-WebSocket-Version" = String, Header, pattern = "^13$", description = "`13`"),
        ("Sec-WebSocket-Key" = String, Header, pattern = "^[A-Za-z0-9+/]{22}==$", description = "A random 16-byte key, base64"),
    ),
    responses(
        (status = 101, description = "Switching to the worker protocol over a WebSocket"),
        (status = 400, description = "Not a WebSocket upgrade request", body = drover_proto::api::ErrorBody),
        (status = 401, description = "No token, or the wrong one: the cluster token, a join token that is unknown, expired or used up, or a revoked worker credential", body = drover_proto::api::ErrorBody),
        (status = 426, description = "The connection cannot be upgraded", body = drover_proto::api::ErrorBody),
    )
)]
pub async fn connect(
    State(node): State<Arc<Node>>,
    headers: HeaderMap,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    // Before the upgrade, so that a refused secret is a plain 401 the worker stops on.
    let auth = match crate::worker_identity::authenticate(&node, &headers) {
        Ok(auth) => auth,
        Err(e) => return ApiError::unauthorized(e.to_string()).into_response(),
    };
    let ws = match ws {
        Ok(ws) => ws,
        Err(rejection) => {
            let status = rejection.status();
            let code = if status == axum::http::StatusCode::UPGRADE_REQUIRED {
                "upgrade_required"
            } else {
                "invalid_request"
            };
            return ApiError::new(status, code, rejection.body_text(), None).into_response();
        }
    };
    // A small read buffer: tungstenite zero-fills it on every read, and at its 128 KiB
    // default that memset was a sixth of the server's CPU with 1,000 workers (and
    // 134 MiB of their idle RSS); worker messages are small.
    // The size of one message is bounded here, before it is buffered, not by what the
    // worker promises: a larger one ends the connection (`is_oversize`).
    ws.max_message_size(node.config.input_limits.max_worker_message_bytes)
        .read_buffer_size(WS_READ_BUFFER)
        .on_upgrade(move |socket| async move {
            if let Err(e) = serve(node, socket, auth).await {
                tracing::info!("worker connection ended: {e}");
            }
        })
}

#[derive(Debug, thiserror::Error)]
enum SessionError {
    #[error("no hello within {0:?}")]
    NoHello(Duration),
    #[error("protocol: {0}")]
    Protocol(String),
    #[error("rejected: {0}")]
    Rejected(String),
    #[error("socket: {0}")]
    Socket(#[from] axum::Error),
}

async fn send(socket: &mut WebSocket, message: &ServerMessage) -> Result<(), SessionError> {
    let text = serde_json::to_string(message).map_err(|e| SessionError::Protocol(e.to_string()))?;
    socket.send(Message::Text(text.into())).await?;
    Ok(())
}

async fn reject(mut socket: WebSocket, reason: String) -> Result<(), SessionError> {
    refuse(&mut socket, reason, false, None).await
}

/// Rejects the worker for good: trying again cannot help, and it should exit.
async fn reject_permanently(mut socket: WebSocket, reason: String) -> Result<(), SessionError> {
    refuse(&mut socket, reason, true, None).await
}

async fn refuse(
    socket: &mut WebSocket,
    reason: String,
    permanent: bool,
    leader: Option<String>,
) -> Result<(), SessionError> {
    let _ = send(
        socket,
        &ServerMessage::Reject {
            reason: reason.clone(),
            permanent,
            leader,
        },
    )
    .await;
    let _ = socket.close().await;
    Err(SessionError::Rejected(reason))
}

async fn serve(
    node: Arc<Node>,
    mut socket: WebSocket,
    auth: WorkerAuth,
) -> Result<(), SessionError> {
    let first = match tokio::time::timeout(HELLO_TIMEOUT, socket.recv()).await {
        Ok(Some(Ok(Message::Text(t)))) => t,
        Ok(Some(Err(e))) if is_oversize(&e) => {
            node.state.metrics().limit_hit("worker_message");
            tracing::warn!("a worker's hello is larger than --max-worker-message allows: {e}");
            return Err(SessionError::Socket(e));
        }
        Ok(_) => {
            return Err(SessionError::Protocol(
                "the first message must be a hello".into(),
            ));
        }
        Err(_) => return Err(SessionError::NoHello(HELLO_TIMEOUT)),
    };
    // The version first, from whatever shape the hello has: a worker of another
    // version may not parse as this one's hello.
    let version = serde_json::from_str::<serde_json::Value>(&first)
        .ok()
        .and_then(|v| v.get("protocol_version")?.as_u64());
    if let Some(v) = version
        && v != u64::from(PROTOCOL_VERSION)
    {
        return reject_permanently(
            socket,
            format!("this server speaks worker protocol {PROTOCOL_VERSION}, the worker speaks {v}: run the same drover version on both"),
        )
        .await;
    }
    let (spec, kill_grace_ms, mut running, finished) =
        match serde_json::from_str::<WorkerMessage>(&first) {
            Ok(WorkerMessage::Hello {
                spec,
                kill_grace_ms,
                running,
                finished,
                ..
            }) => (spec, kill_grace_ms, running, finished),
            Ok(_) => return reject(socket, "the first message must be a hello".into()).await,
            Err(e) => return reject(socket, format!("malformed hello: {e}")).await,
        };
    // The worker must be able to stop its tasks (fence, then its kill grace) before
    // this server's lost timeout lets it re-place them.
    let fence_after = match fence_after(
        node.config.worker_lost_after,
        node.config.heartbeat_interval,
        Duration::from_millis(kill_grace_ms),
    ) {
        Ok(f) => f,
        Err(e) => return reject_permanently(socket, e.to_string()).await,
    };
    if node.is_removed() {
        return reject(
            socket,
            "this server was removed from the group; connect to another server".into(),
        )
        .await;
    }
    if !node.holds_lease() {
        let leader = node.raft.metrics().borrow().current_leader;
        let leader_url = leader
            .filter(|l| *l != node.config.node_id)
            .and_then(|l| node.address_of(l))
            .map(|addr| node.config.peer_url(&addr));
        let reason = match &leader_url {
            _ if leader == Some(node.config.node_id) => {
                "this server leads but a majority has not confirmed it lately; try again".into()
            }
            Some(url) => format!("this server is not the leader; the leader is at {url}"),
            None => "this server is not the leader, and no leader is known yet".into(),
        };
        return refuse(&mut socket, reason, false, leader_url).await;
    }
    if spec.name.is_empty() {
        return reject(socket, "the worker has no name".into()).await;
    }
    // A credential speaks for one worker only; a join token is spent here, through the
    // log, and exchanged for a credential bound to this name.
    let credential = match &auth {
        WorkerAuth::ClusterToken => None,
        WorkerAuth::Credential { name, id } => {
            if *name != spec.name {
                tracing::warn!(credential = %id, owner = %name, declared = %spec.name, "refused a worker credential presented for another worker");
                return reject_permanently(
                    socket,
                    format!("this worker credential belongs to the worker {name:?}; it cannot connect as {:?}", spec.name),
                )
                .await;
            }
            None
        }
        WorkerAuth::JoinToken { id, digest } => match enroll(&node, id, digest, &spec.name).await {
            Ok(secret) => Some(secret),
            Err(why) => return reject_permanently(socket, why).await,
        },
    };

    // A worker we know may have been given attempts it never received (the connection
    // dropped with the message in flight). Count them as its own, rather than losing
    // them; they are sent again below.
    let (tx, mut rx) = mpsc::unbounded_channel::<String>();
    let known = node.state.read().scheduler().worker_by_name(&spec.name);
    // Reports of attempts that were not placed on this worker, or whose digest does not
    // match, are dropped here (a credential must not let one worker end another's work).
    let finished: Vec<AttemptReport> = match known {
        Some(id) => {
            let sm = node.state.read();
            finished
                .into_iter()
                .filter(|r| report_is_acceptable(&node, sm.scheduler(), id, r))
                .collect()
        }
        None => finished,
    };
    let listed: Vec<(TaskId, Attempt)> = running.clone();
    let mut conn = None;
    if let Some(id) = known {
        conn = Some(node.sessions.register(id, tx.clone()));
        let sm = node.state.read();
        let unreported = unstarted(sm.scheduler(), id, |key| {
            running.contains(&key) || finished.iter().any(|r| (r.task, r.attempt) == key)
        });
        running.extend(unreported);
    }
    let mut commands: Vec<Command> = Vec::new();
    // (task, attempt, outcome, index of its TaskFinished among the commands)
    let mut reported = Vec::new();
    if let Some(id) = known {
        for mut report in finished {
            cap_result(&node, &mut report);
            // An outcome only a process gives proves the attempt started; its own
            // `Started` may have been lost (sent to a leader that lost its office with
            // the report in flight), which would leave an attempt that ran with no
            // start. A repeated start is a no-op; a stale one is rejected like the end.
            if report.outcome.proves_a_start() {
                commands.push(Command::TaskStarted {
                    task: report.task,
                    attempt: report.attempt,
                    worker: id,
                    gpus: Vec::new(),
                });
            }
            reported.push((
                report.task,
                report.attempt,
                report.outcome.clone(),
                commands.len(),
            ));
            commands.push(Command::TaskFinished { worker: id, report });
        }
    }
    commands.push(Command::WorkerJoin {
        spec: spec.clone(),
        running,
    });
    let results = match node.proposer.propose_all(commands).await {
        Ok(r) => r,
        Err(e) => {
            if let (Some(id), Some(c)) = (known, conn) {
                node.sessions.unregister(id, c);
            }
            return reject(socket, format!("could not record the join: {e}")).await;
        }
    };
    // Ends the worker could not report while away: a stale one (an attempt given up
    // on meanwhile, such as one the worker's self-fence stopped after the server had
    // declared it lost) changes nothing; say so, it is the fence working.
    for (task, attempt, outcome, at) in &reported {
        if let Some(CommandResult::Rejected(r)) = results.get(*at) {
            tracing::info!(%task, %attempt, %outcome, "ignored a late report of an attempt given up on: {}", r.message);
        }
    }
    let worker: WorkerId = match results.last() {
        Some(CommandResult::WorkerJoined { worker }) => *worker,
        other => {
            if let (Some(id), Some(c)) = (known, conn) {
                node.sessions.unregister(id, c);
            }
            let why = match other {
                Some(CommandResult::Rejected(r)) => r.message.clone(),
                other => format!("unexpected join result {other:?}"),
            };
            return reject(socket, why).await;
        }
    };
    let conn = match conn {
        Some(c) => c,
        None => node.sessions.register(worker, tx.clone()),
    };
    // Only the registry holds the sender now: `Sessions::disconnect` ends the writer.
    drop(tx);
    tracing::info!(%worker, name = %spec.name, capacity = %spec.capacity, "worker joined");
    send(
        &mut socket,
        &ServerMessage::Welcome {
            protocol_version: PROTOCOL_VERSION,
            worker,
            heartbeat_interval_ms: node.config.heartbeat_interval.as_millis() as u64,
            lost_after_ms: node.config.worker_lost_after.as_millis() as u64,
            fence_after_ms: fence_after.as_millis() as u64,
            task_key: node.task_signer.public_hex(),
            credential,
        },
    )
    .await?;
    // Now that the session is registered every new dispatch reaches it; what was
    // decided before (while applying the join itself, or earlier for a worker that
    // dropped a start in flight) is sent here. A start may thus arrive twice; the
    // worker keys attempts by (task, attempt) and runs each once.
    let restarts = {
        let sm = node.state.read();
        unstarted(sm.scheduler(), worker, |key| listed.contains(&key))
            .into_iter()
            .filter_map(|(t, a)| sm.start_message(t, a))
            .collect::<Vec<_>>()
    }
    .into_iter()
    .map(|mut start| {
        node.task_signer.sign(&mut start);
        start
    })
    .collect::<Vec<_>>();
    for start in restarts {
        // The checkpoint a start resumes from goes just before it.
        for m in crate::checkpoint::restore_messages(&node, &start).await {
            send(&mut socket, &m).await?;
        }
        send(&mut socket, &ServerMessage::Start(start)).await?;
    }
    // What was queued for this session while its join was being applied: a start
    // decided before the join may be for an attempt placed after the worker's hello,
    // which the join (not finding it listed) gave up on. Sent only if still current.
    let mut queued = Vec::new();
    while let Ok(text) = rx.try_recv() {
        queued.push(text);
    }
    let queued: Vec<String> = {
        let sm = node.state.read();
        queued
            .into_iter()
            .filter(|text| match serde_json::from_str::<ServerMessage>(text) {
                Ok(ServerMessage::Start(s)) => start_is_current(sm.scheduler(), s.task, s.attempt),
                _ => true,
            })
            .collect()
    };
    for text in queued {
        socket.send(Message::Text(text.into())).await?;
    }

    let (mut sink, mut stream) = socket.split();
    // Pings at the heartbeat interval let a worker notice a silent partition (no
    // FIN, no RST) and stop its tasks before this server re-places them.
    let ping_every = node.config.heartbeat_interval;
    let mut writer = tokio::spawn(async move {
        let mut ping = tokio::time::interval(ping_every);
        loop {
            let message = tokio::select! {
                text = rx.recv() => match text {
                    Some(text) => Message::Text(text.into()),
                    None => break,
                },
                _ = ping.tick() => Message::Ping(Default::default()),
            };
            // What else is queued goes out in the same write (one syscall and one
            // wake-up of the worker for a round's starts, not one per message).
            // A peer that stopped reading (or a path that drops packets) must not
            // hold this task, and the session, for the kernel's retransmission time.
            let write = async {
                sink.feed(message).await?;
                for _ in 0..MAX_MESSAGES_PER_WRITE {
                    match rx.try_recv() {
                        Ok(text) => sink.feed(Message::Text(text.into())).await?,
                        Err(_) => break,
                    }
                }
                sink.flush().await
            };
            match tokio::time::timeout(WRITE_TIMEOUT, write).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) | Err(_) => break,
            }
        }
        let _ = tokio::time::timeout(WRITE_TIMEOUT, sink.close()).await;
    });
    // The session ends when the worker's side does, or when this side can no longer
    // write to it (stalled, or disconnected by `Sessions::disconnect`).
    let result = tokio::select! {
        r = read_loop(&node, worker, &mut stream) => r,
        _ = &mut writer => Err(SessionError::Protocol("the connection stopped taking messages, or was closed by this server".into())),
    };
    node.sessions.unregister(worker, conn);
    writer.abort();
    tracing::info!(%worker, "worker disconnected");
    result
}

/// Spends one use of a join token on the worker `name`, through the log (so that two
/// servers, or two workers at once, cannot both use one use), and returns the new
/// worker credential; the reason to give the worker otherwise.
async fn enroll(node: &Node, token: &str, digest: &str, name: &str) -> Result<String, String> {
    let issued = IssuedSecret::new(CREDENTIAL_PREFIX).map_err(|e| e.to_string())?;
    let command = Command::WorkerEnroll {
        token: token.to_string(),
        token_digest: digest.to_string(),
        name: name.to_string(),
        credential: issued.id.clone(),
        credential_digest: issued.digest.clone(),
    };
    match node.proposer.propose(command).await {
        Ok(CommandResult::Rejected(r)) => Err(format!("the join token is refused: {}", r.message)),
        Ok(_) => {
            tracing::info!(%name, credential = %issued.id, join_token = %token, "a worker joined with a join token and was given a credential");
            Ok(issued.secret)
        }
        Err(e) => Err(format!("could not record the enrolment: {e}")),
    }
}

/// Whether the attempt `(task, attempt)` was placed on `worker` (now or before: output
/// sent while disconnected arrives after the end the hello reported).
fn placed_on(
    sched: &drover_sched::Scheduler,
    worker: WorkerId,
    task: TaskId,
    attempt: Attempt,
) -> bool {
    sched.task(task).is_some_and(|v| {
        (v.attempt == attempt && v.worker == Some(worker))
            || v.attempts
                .iter()
                .any(|a| a.attempt == attempt && a.worker == worker)
    })
}

/// A report of an attempt's end is taken only from the worker it was placed on and
/// with a digest that matches; otherwise it is dropped, counted, logged and
/// acknowledged (to this worker, which may forget it).
fn report_is_acceptable(
    node: &Node,
    sched: &drover_sched::Scheduler,
    worker: WorkerId,
    report: &AttemptReport,
) -> bool {
    let reason = if !report.digest_matches() {
        "bad_digest"
    } else if !placed_on(sched, worker, report.task, report.attempt) {
        "not_placed_here"
    } else {
        return true;
    };
    node.state.metrics().count_refused_report(reason);
    tracing::warn!(%worker, task = %report.task, attempt = %report.attempt, reason, "dropped the end of an attempt reported by a worker");
    // Acknowledged all the same, as the core acknowledges a stale end: it will never be
    // recorded, and unacknowledged it would come back in every hello (an attempt of a
    // task retired meanwhile, say). Only this worker's own bookkeeping is affected.
    node.sessions.send(
        worker,
        &ServerMessage::FinishedAck {
            task: report.task,
            attempt: report.attempt,
        },
    );
    false
}

/// Whether `attempt` is still the task's current attempt, placed and not started: the
/// only case in which sending its start may do anything but harm. A start decided by
/// an entry and superseded by a later one (the worker's rejoin gave the attempt up,
/// because the worker did not list it) must not reach the worker, or it would run an
/// attempt that is retried elsewhere.
pub(crate) fn start_is_current(
    sched: &drover_sched::Scheduler,
    task: TaskId,
    attempt: Attempt,
) -> bool {
    sched
        .task(task)
        .is_some_and(|v| v.attempt == attempt && v.state == TaskState::Assigned)
}

/// The attempts placed on `worker` (reserved or prefetched) that it has not started,
/// leaving out those `known(task, attempt)` says the worker already has.
fn unstarted(
    sched: &drover_sched::Scheduler,
    worker: WorkerId,
    known: impl Fn((TaskId, Attempt)) -> bool,
) -> Vec<(TaskId, Attempt)> {
    let Some(w) = sched.worker(worker) else {
        return Vec::new();
    };
    w.running
        .into_iter()
        .chain(w.queued)
        .filter_map(|t| {
            let view = sched.task(t)?;
            let key = (t, view.attempt);
            (view.state == TaskState::Assigned && !known(key)).then_some(key)
        })
        .collect()
}

/// The output frames one session received, as numbers in the replicator's sequence
/// (see `output_replication.rs`): what an ack or a task's end must wait for.
#[derive(Clone, Copy, Debug, Default)]
struct SessionOutput {
    first: Option<u64>,
    last: u64,
}

impl SessionOutput {
    /// Whether everything received so far is on a majority of the servers.
    fn on_majority(&self, node: &Node) -> bool {
        self.first
            .is_none_or(|first| node.replicator.on_majority(first, self.last))
    }
}

/// Runs `then` once the output received so far is on a majority of the servers (at
/// once if it is), or after `limit` regardless: a peer that cannot take output must
/// not stop tasks' ends from being recorded nor, by withholding acks, fence a healthy
/// worker. The output is then held by fewer servers than a majority until repaired.
fn after_output_replicated(
    node: &Arc<Node>,
    received: SessionOutput,
    limit: Duration,
    what: &'static str,
    then: impl FnOnce(&Node) + Send + 'static,
) {
    if received.on_majority(node) {
        then(node);
        return;
    }
    let node = node.clone();
    tokio::spawn(async move {
        let first = received.first.unwrap_or(0);
        if !node
            .replicator
            .wait_majority(first, received.last, limit)
            .await
        {
            tracing::warn!(
                what,
                "task output did not reach a majority of the servers in {limit:?}; going on without"
            );
        }
        then(&node);
    });
}

/// Longest a task's end waits for its output to reach a majority of the servers.
const FINISH_WAITS_FOR_OUTPUT: Duration = Duration::from_secs(5);

async fn read_loop(
    node: &Arc<Node>,
    worker: WorkerId,
    stream: &mut futures_util::stream::SplitStream<WebSocket>,
) -> Result<(), SessionError> {
    let mut received = SessionOutput::default();
    // Attempts this session's output was already found placed on this worker: most
    // frames are checked without taking the state's lock. Bounded (cleared when full).
    let mut placed: std::collections::HashSet<(TaskId, Attempt)> = Default::default();
    // The attempts this worker last reported samples for, to replace them next time.
    let mut sampled_keys: Vec<(TaskId, Attempt)> = Vec::new();
    let sampled = &mut sampled_keys;
    let mut uploads = crate::checkpoint::Uploads::default();
    // Which heartbeats become `WorkerUpdate`s (rate-limited; see `worker_updates.rs`).
    let mut limiter = UpdateLimiter::default();
    while let Some(message) = stream.next().await {
        node.sessions.touch(worker, None);
        let message = match message {
            Ok(m) => m,
            Err(e) => {
                if is_oversize(&e) {
                    node.state.metrics().limit_hit("worker_message");
                    tracing::warn!(%worker, "a message from the worker is larger than --max-worker-message allows; ending its connection: {e}");
                }
                return Err(SessionError::Socket(e));
            }
        };
        match message {
            Message::Text(text) => match serde_json::from_str::<WorkerMessage>(&text) {
                Ok(WorkerMessage::Heartbeat {
                    seq,
                    usage,
                    tasks,
                    load,
                    data,
                }) => {
                    // A worker declared lost (it stalled, or was cut off) must rejoin so
                    // that its stale attempts are reconciled: end this connection.
                    let lost = node
                        .state
                        .read()
                        .scheduler()
                        .worker(worker)
                        .is_none_or(|w| w.state == WorkerState::Lost);
                    if lost {
                        return Err(SessionError::Protocol(
                            "this worker was declared lost; it must rejoin".into(),
                        ));
                    }
                    node.sessions.touch(worker, Some(usage));
                    // The ack proves to the worker that this server heard it: the
                    // worker's self-fence counts from the sending of the acked beat.
                    // In a group, only while a majority confirms this server leads: a
                    // leader cut off from it must let the worker's fence run down.
                    // The ack also lets the worker forget the output it sent before
                    // this beat: only once a majority of the servers holds it, so
                    // that it outlives this server (waiting at most one heartbeat
                    // interval, well inside the worker's patience).
                    if node.holds_lease() {
                        after_output_replicated(
                            node,
                            received,
                            node.config.heartbeat_interval,
                            "heartbeat ack",
                            move |node| {
                                if node.holds_lease() {
                                    node.sessions
                                        .send(worker, &ServerMessage::HeartbeatAck { seq });
                                }
                            },
                        );
                    }
                    *sampled = node.sessions.live_usage.record(sampled, tasks);
                    let update = {
                        let sm = node.state.read();
                        sm.scheduler().worker(worker).and_then(|w| {
                            limiter.observe(
                                std::time::Instant::now(),
                                Logged {
                                    capacity: &w.spec.capacity,
                                    usage: w.usage,
                                    data_keys: &w.spec.data_keys,
                                },
                                load,
                                data,
                            )
                        })
                    };
                    if let Some((usage, data_keys)) = update {
                        node.proposer.propose_nowait(Command::WorkerUpdate {
                            worker,
                            usage,
                            data_keys,
                        });
                    }
                }
                Ok(WorkerMessage::Started {
                    task,
                    attempt,
                    gpus,
                }) => {
                    node.proposer.propose_nowait(Command::TaskStarted {
                        task,
                        attempt,
                        worker,
                        gpus,
                    });
                }
                Ok(WorkerMessage::Finished(mut report)) => {
                    let acceptable = {
                        let sm = node.state.read();
                        report_is_acceptable(node, sm.scheduler(), worker, &report)
                    };
                    if !acceptable {
                        continue;
                    }
                    cap_result(node, &mut report);
                    // Not before the attempt's output (all sent before its end) is
                    // on a majority: a task read as finished has all its output on
                    // whichever servers survive the loss of one.
                    after_output_replicated(
                        node,
                        received,
                        FINISH_WAITS_FOR_OUTPUT,
                        "task end",
                        move |node| {
                            node.proposer
                                .propose_nowait(Command::TaskFinished { worker, report });
                        },
                    );
                }
                Ok(WorkerMessage::Checkpoint(chunk)) => {
                    take_checkpoint(node, worker, &mut uploads, chunk).await;
                }
                Ok(WorkerMessage::Resize {
                    request,
                    task,
                    attempt,
                    cpu_milli,
                    memory_bytes,
                }) => {
                    // Decided in its own task: the commit must not hold up this
                    // worker's other messages. The core checks that the attempt is
                    // current and placed on this worker.
                    let node = node.clone();
                    tokio::spawn(async move {
                        let command = Command::Resize {
                            task,
                            attempt: Some(attempt),
                            worker: Some(worker),
                            request: drover_sched::ResizeRequest {
                                cpu_milli,
                                memory_bytes,
                            },
                        };
                        let answer = match node.proposer.propose(command).await {
                            Ok(CommandResult::Resized { decision }) => {
                                crate::api::resize::answer_of(&node.state.read(), task, &decision)
                            }
                            Ok(CommandResult::Rejected(r)) => refused_answer(task, r.message),
                            Ok(other) => {
                                refused_answer(task, format!("unexpected answer: {other:?}"))
                            }
                            Err(e) => refused_answer(task, e.to_string()),
                        };
                        node.sessions
                            .send(worker, &ServerMessage::ResizeAnswer { request, answer });
                    });
                }
                Ok(WorkerMessage::Hello { .. }) => {
                    return Err(SessionError::Protocol(
                        "a second hello on one connection".into(),
                    ));
                }
                Err(e) => return Err(SessionError::Protocol(format!("malformed message: {e}"))),
            },
            Message::Binary(bytes) => match OutputFrame::decode(&bytes) {
                Ok(frame) => {
                    let key = (frame.task, frame.attempt);
                    if !placed.contains(&key) {
                        let ok = placed_on(
                            node.state.read().scheduler(),
                            worker,
                            frame.task,
                            frame.attempt,
                        );
                        if !ok {
                            node.state.metrics().count_refused_report("not_placed_here");
                            tracing::warn!(%worker, task = %frame.task, attempt = %frame.attempt, "dropped output of an attempt not placed on this worker");
                            continue;
                        }
                        if placed.len() >= 4096 {
                            placed.clear();
                        }
                        placed.insert(key);
                    }
                    let Some(frame) = cap_output(node, frame) else {
                        continue;
                    };
                    if let Err(e) = node.output.append(&frame) {
                        tracing::warn!(task = %frame.task, "could not store output: {e}");
                    }
                    let seq = node.replicator.send(frame);
                    received.first.get_or_insert(seq);
                    received.last = seq;
                }
                Err(FrameError::DigestMismatch) => {
                    node.state.metrics().count_refused_report("bad_digest");
                    tracing::warn!(%worker, "dropped an output frame whose digest does not match its bytes");
                }
                Err(e) => return Err(SessionError::Protocol(e.to_string())),
            },
            Message::Close(_) => break,
            Message::Ping(_) | Message::Pong(_) => {}
        }
    }
    Ok(())
}

/// One chunk of a checkpoint from the worker: taken only for an attempt placed on it
/// and within `--max-checkpoint`; once whole, stored (checked against its digest) and
/// then logged, before this session reads the worker's next message, so that a
/// checkpoint sent before an attempt's end is in the log before that end.
async fn take_checkpoint(
    node: &Arc<Node>,
    worker: WorkerId,
    uploads: &mut crate::checkpoint::Uploads,
    chunk: drover_proto::checkpoint::CheckpointChunk,
) {
    let (task, attempt) = (chunk.task, chunk.attempt);
    if chunk.offset == 0 && !placed_on(node.state.read().scheduler(), worker, task, attempt) {
        node.state.metrics().count_refused_report("not_placed_here");
        tracing::warn!(%worker, %task, %attempt, "dropped a checkpoint of an attempt not placed on this worker");
        return;
    }
    let max = node.config.input_limits.max_checkpoint_bytes;
    let (checkpoint, bytes) = match uploads.take(chunk, max) {
        Ok(Some(whole)) => whole,
        Ok(None) => return,
        Err(e) => {
            if matches!(e, crate::checkpoint::upload::UploadError::TooLarge { .. }) {
                node.state.metrics().limit_hit("checkpoint");
            }
            tracing::warn!(%worker, %task, %attempt, "dropped a checkpoint: {e}");
            return;
        }
    };
    let store = node.checkpoints.clone();
    let bytes = bytes::Bytes::from(bytes);
    let saved = {
        let (checkpoint, bytes) = (checkpoint.clone(), bytes.clone());
        tokio::task::spawn_blocking(move || store.save(task, &checkpoint, &bytes)).await
    };
    match saved {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            tracing::warn!(%worker, %task, %attempt, "could not store a checkpoint: {e}");
            return;
        }
        Err(e) => {
            tracing::error!(%task, "storing a checkpoint failed: {e}");
            return;
        }
    }
    if node.archive.is_some() {
        crate::checkpoint::archive(&node.blobs, task, &checkpoint, bytes.clone()).await;
    }
    // Logged only once a majority of the servers holds it, so that whichever server
    // leads next can hand it over; otherwise the task keeps its previous checkpoint
    // (see `checkpoint/peer_copies.rs`).
    if node.is_clustered()
        && !crate::checkpoint::peer_copies::copy_to_majority(node, task, &checkpoint, bytes).await
    {
        tracing::warn!(%worker, %task, which = %checkpoint, "a checkpoint did not reach a majority of the servers; not recorded");
        return;
    }
    let which = checkpoint.to_string();
    match node
        .proposer
        .propose(Command::CheckpointSaved { task, checkpoint })
        .await
    {
        Ok(CommandResult::Rejected(r)) => {
            tracing::debug!(%task, %which, "checkpoint not recorded: {}", r.message)
        }
        Ok(_) => tracing::debug!(%task, %which, "checkpoint recorded"),
        Err(e) => tracing::warn!(%task, %which, "could not record a checkpoint: {e}"),
    }
}

/// A resize the cluster could not decide (stale attempt, no leader, ...), as told to
/// the task: refused, with why.
fn refused_answer(task: TaskId, reason: String) -> drover_proto::api::ResizeAnswer {
    drover_proto::api::ResizeAnswer {
        task,
        granted: false,
        resources: Default::default(),
        reason: Some(reason),
    }
}

/// Whether a read failed because the worker's message was over
/// `max_worker_message_bytes` (tungstenite refuses it before buffering it whole).
fn is_oversize(e: &axum::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = source {
        if let Some(tokio_tungstenite::tungstenite::Error::Capacity(_)) = err.downcast_ref() {
            return true;
        }
        source = err.source();
    }
    false
}

/// Applies the server's result limit to a report, counting and logging a cut.
fn cap_result(node: &Node, report: &mut drover_proto::worker::AttemptReport) {
    let before = report.result.len();
    if node.config.input_limits.cap_result(report) {
        node.state.metrics().limit_hit("result");
        tracing::warn!(task = %report.task, attempt = %report.attempt, bytes = before, "a worker sent a result larger than --max-result allows; keeping its start");
    }
}

/// Applies the server's output limit to a frame: `None` if nothing of it is stored.
fn cap_output(node: &Node, frame: OutputFrame) -> Option<OutputFrame> {
    match node.config.input_limits.cap_output(frame) {
        OutputCap::Kept(frame) => Some(frame),
        OutputCap::Truncated(frame) => {
            node.state.metrics().limit_hit("output");
            tracing::warn!(task = %frame.task, attempt = %frame.attempt, stream = frame.stream.as_str(), "a task's output reached --max-output; the rest is not stored");
            Some(frame)
        }
        OutputCap::Dropped => None,
    }
}
