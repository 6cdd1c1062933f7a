//! Following one attempt run by a plugin, from `start` to its `exit` (or the
//! plugin's death): output into the attempt's files, the time limit and kill
//! requests turned into `stop`, usage sampled, the outcome decided.

use crate::finished::{Finished, OutputSummary};
use crate::kill::KillHandle;
use crate::output::Capture;
use crate::output_sink::OutputSink;
use crate::plugin::connection::PluginConnection;
use crate::plugin::driver::{PluginShared, PluginUsage, wire_stream};
use crate::plugin::error::PluginError;
use crate::plugin::stream_order::StreamOrder;
use crate::plugin::wire::{
    Limits, Notification, Op, StartRequest, Started, StopSignal, WireOutcome, WireStream, WireUser,
};
use crate::spec::Stream;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use drover_types::Outcome;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

/// Everything `launch` prepared for the supervisor.
pub(crate) struct AttemptRun {
    pub task: u64,
    pub attempt: u32,
    pub argv: Vec<String>,
    pub shell: bool,
    pub env: BTreeMap<String, String>,
    pub workdir: PathBuf,
    pub time_limit: Option<Duration>,
    pub memory_limit_bytes: Option<u64>,
    pub cpu_milli: u32,
    pub stdin: Option<Vec<u8>>,
    pub extra: BTreeMap<String, String>,
    pub stdout: OutputSink,
    pub stderr: OutputSink,
    pub stdout_path: PathBuf,
    pub stderr_path: PathBuf,
    pub kill: KillHandle,
    pub usage: Arc<PluginUsage>,
}

/// Why the worker asked the plugin to stop the attempt.
#[derive(Clone, Copy, PartialEq, Eq)]
enum StopCause {
    TimeLimit,
    Cancel,
}

/// Runs until the attempt ended, then sends its [`Finished`].
pub(crate) async fn supervise(
    shared: Arc<PluginShared>,
    run: AttemptRun,
    done: oneshot::Sender<Finished>,
) {
    let key = (run.task, run.attempt);
    let AttemptRun {
        task,
        attempt,
        argv,
        shell,
        env,
        workdir,
        time_limit,
        memory_limit_bytes,
        cpu_milli,
        stdin,
        extra,
        mut stdout,
        mut stderr,
        stdout_path,
        stderr_path,
        kill,
        usage,
    } = run;
    if memory_limit_bytes.is_some() && !shared.has_capability("memory_limit") {
        tracing::warn!(
            plugin = shared.name,
            task,
            attempt,
            "the plugin does not enforce memory limits; this attempt runs without one"
        );
    }
    let outcome = match shared.connection().await {
        Err(e) => unavailable(&shared, e),
        Ok(conn) => match conn.register(key) {
            Err(e) => unavailable(&shared, e),
            Ok(mut events) => {
                let start = StartRequest {
                    task,
                    attempt,
                    argv: &argv,
                    shell,
                    env: &env,
                    workdir: workdir.to_string_lossy().into_owned(),
                    limits: Limits {
                        time_ms: time_limit.map(|d| d.as_millis() as u64),
                        memory_bytes: memory_limit_bytes,
                        cpu_milli,
                    },
                    stdin: stdin.as_ref().map(|b| BASE64.encode(b)),
                    user: shared.cfg.task_user.as_ref().map(|u| WireUser {
                        name: u.name.clone(),
                        uid: u.uid,
                        gid: u.gid,
                    }),
                    extra: &extra,
                };
                let mut follower = Follower {
                    shared: &shared,
                    conn: &conn,
                    key,
                    sinks: [&mut stdout, &mut stderr],
                    orders: [StreamOrder::new(), StreamOrder::new()],
                    kill: &kill,
                    usage: &usage,
                    time_limit,
                };
                let outcome = follower.follow(start, &mut events).await;
                conn.forget(key);
                outcome
            }
        },
    };
    let out = stdout.finish();
    let err = stderr.finish();
    let _ = done.send(Finished {
        outcome,
        usage: usage.end(),
        stdout: summary(&out, stdout_path),
        stderr: summary(&err, stderr_path),
        result: out.kept,
    });
}

fn unavailable(shared: &PluginShared, e: PluginError) -> Outcome {
    Outcome::SpawnFailed {
        message: format!("driver plugin {:?} is unavailable: {e}", shared.name),
    }
}

fn summary(cap: &Capture, path: PathBuf) -> OutputSummary {
    OutputSummary {
        path,
        bytes: cap.bytes,
        truncated: cap.truncated,
    }
}

struct Follower<'a> {
    shared: &'a PluginShared,
    conn: &'a Arc<PluginConnection>,
    key: (u64, u32),
    /// Stdout, stderr.
    sinks: [&'a mut OutputSink; 2],
    orders: [StreamOrder; 2],
    kill: &'a KillHandle,
    usage: &'a Arc<PluginUsage>,
    time_limit: Option<Duration>,
}

impl Follower<'_> {
    async fn follow(
        &mut self,
        start: StartRequest<'_>,
        events: &mut mpsc::Receiver<Notification>,
    ) -> Outcome {
        let name = self.shared.name;
        let cfg = &self.shared.cfg;
        let began = Instant::now();
        let deadline = self.time_limit.map(|d| began + d);
        let start = self.conn.request(Op::Start(Box::new(start)));
        tokio::pin!(start);
        let mut start_pending = true;
        let mut pgid: Option<u32> = None;
        let mut cause: Option<StopCause> = None;
        // When to send `stop` with KILL; then when to give up waiting for the exit.
        let mut kill_at: Option<Instant> = None;
        let mut abandon_at: Option<Instant> = None;
        let far = began + Duration::from_secs(100 * 365 * 24 * 3600);
        let sample_usage = self.shared.has_capability("usage");
        let mut usage_tick = tokio::time::interval_at(
            began + cfg.usage_interval,
            cfg.usage_interval.max(Duration::from_millis(10)),
        );
        usage_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let (replay_tx, mut replay_rx) = mpsc::channel::<(usize, Result<(), PluginError>)>(4);

        loop {
            tokio::select! {
                biased;
                event = events.recv() => match event {
                    Some(Notification::Output { stream, offset, data, .. }) => {
                        let Ok(bytes) = BASE64.decode(data.as_bytes()) else {
                            tracing::warn!(plugin = name, "output chunk that is not base64, dropped");
                            continue;
                        };
                        let i = stream_index(stream);
                        if let Some(from) = self.orders[i].deliver(self.sinks[i], offset, &bytes) {
                            let conn = self.conn.clone();
                            let tx = replay_tx.clone();
                            let (task, attempt) = self.key;
                            let stream = if i == 0 { Stream::Stdout } else { Stream::Stderr };
                            tracing::warn!(plugin = name, task, attempt, stream = stream.as_str(), expected = from, got = offset, "gap in plugin output; asking for a replay");
                            tokio::spawn(async move {
                                let r = conn
                                    .request(Op::Logs { task, attempt, stream: wire_stream(stream), offset: from })
                                    .await
                                    .map(|_| ());
                                let _ = tx.send((i, r)).await;
                            });
                        }
                    }
                    Some(Notification::Exit { outcome, usage, .. }) => {
                        self.usage.record(usage);
                        self.finish_replays(events, &mut replay_rx).await;
                        return outcome_of(outcome, cause);
                    }
                    None => {
                        // The plugin is gone: what it ran must not outlive it. Its
                        // answer to `start` (the group) may be waiting unread.
                        if start_pending {
                            let answer = tokio::select! {
                                biased;
                                r = &mut start => Some(r),
                                _ = std::future::ready(()) => None,
                            };
                            if let Some(Ok(v)) = answer {
                                pgid = serde_json::from_value::<Started>(v).unwrap_or_default().pgid;
                            }
                        }
                        if let Some(pg) = pgid {
                            kill_group(pg);
                        }
                        if let Some(c) = cause {
                            return c.outcome();
                        }
                        let reason = self
                            .conn
                            .gone_reason()
                            .unwrap_or_else(|| "it stopped following the attempt".into());
                        return Outcome::SpawnFailed {
                            message: format!(
                                "driver plugin {name:?} died during the attempt: {reason}; \
                                 the worker starts it again at its next launch"
                            ),
                        };
                    }
                },
                r = &mut start, if start_pending => {
                    start_pending = false;
                    match r {
                        Ok(v) => {
                            pgid = serde_json::from_value::<Started>(v).unwrap_or_default().pgid;
                            // A stop asked for while `start` was on its way.
                            if cause.is_some() {
                                let (signal, grace) = match kill_at {
                                    Some(at) => (StopSignal::Term, at.saturating_duration_since(Instant::now())),
                                    None => (StopSignal::Kill, Duration::ZERO),
                                };
                                self.stop(signal, grace);
                            }
                        }
                        Err(PluginError::Refused { code, message, .. }) => {
                            return Outcome::SpawnFailed {
                                message: format!("driver plugin {name:?} could not start it: {code}: {message}"),
                            };
                        }
                        // Its channel closes next: handled there.
                        Err(PluginError::Gone { .. }) => {}
                        Err(e) => {
                            // No answer: it may run anyway, so tell the plugin to end it.
                            self.stop(StopSignal::Kill, Duration::ZERO);
                            return Outcome::SpawnFailed {
                                message: format!("driver plugin {name:?}: {e}"),
                            };
                        }
                    }
                },
                _ = self.kill.notified() => {
                    let grace = self.kill.requested().unwrap_or(Duration::ZERO);
                    cause.get_or_insert(StopCause::Cancel);
                    let now = Instant::now();
                    if abandon_at.is_none() {
                        if grace.is_zero() {
                            kill_at = None;
                            abandon_at = Some(now + cfg.request_timeout);
                            if !start_pending {
                                self.stop(StopSignal::Kill, Duration::ZERO);
                            }
                        } else {
                            let at = kill_at.map_or(now + grace, |k| k.min(now + grace));
                            kill_at = Some(at);
                            if !start_pending {
                                self.stop(StopSignal::Term, at - now);
                            }
                        }
                    }
                },
                _ = tokio::time::sleep_until(deadline.unwrap_or(far)), if deadline.is_some() && cause.is_none() => {
                    cause = Some(StopCause::TimeLimit);
                    kill_at = Some(Instant::now() + cfg.kill_grace);
                    if !start_pending {
                        self.stop(StopSignal::Term, cfg.kill_grace);
                    }
                },
                _ = tokio::time::sleep_until(kill_at.unwrap_or(far)), if kill_at.is_some() => {
                    kill_at = None;
                    abandon_at = Some(Instant::now() + cfg.request_timeout);
                    if !start_pending {
                        self.stop(StopSignal::Kill, Duration::ZERO);
                    }
                },
                _ = tokio::time::sleep_until(abandon_at.unwrap_or(far)), if abandon_at.is_some() => {
                    let (task, attempt) = self.key;
                    tracing::error!(plugin = name, task, attempt, "the plugin did not end the attempt after stop with KILL; giving up on it");
                    if let Some(pg) = pgid {
                        kill_group(pg);
                    }
                    return cause.map_or(Outcome::Killed, StopCause::outcome);
                },
                _ = usage_tick.tick(), if sample_usage && !start_pending => {
                    let conn = self.conn.clone();
                    let usage = self.usage.clone();
                    let (task, attempt) = self.key;
                    tokio::spawn(async move {
                        match conn.request(Op::Usage { task, attempt }).await {
                            Ok(v) => match serde_json::from_value(v) {
                                Ok(u) => usage.record(u),
                                Err(e) => tracing::debug!("usage answer not understood: {e}"),
                            },
                            Err(e) => tracing::debug!(task, attempt, "usage not available: {e}"),
                        }
                    });
                },
                Some((i, r)) = replay_rx.recv() => self.replayed(i, r),
            }
        }
    }

    /// The answer to a `logs` replay. The replayed chunks came before it (the plugin
    /// sends them first, and events are taken before replay answers), so a gap still
    /// open now stays open.
    fn replayed(&mut self, i: usize, r: Result<(), PluginError>) {
        let name = self.shared.name;
        if self.orders[i].replay_done(self.sinks[i]) {
            match r {
                Err(e) => tracing::warn!(
                    plugin = name,
                    "the plugin cannot replay output ({e}): keeping it with its gap"
                ),
                Ok(()) => tracing::warn!(
                    plugin = name,
                    "the plugin's replay did not fill the gap: keeping the output with it"
                ),
            }
        }
    }

    /// After the exit: waits (up to the request timeout) for replays still asked
    /// for, taking any output that comes meanwhile, then keeps what is held.
    async fn finish_replays(
        &mut self,
        events: &mut mpsc::Receiver<Notification>,
        replay_rx: &mut mpsc::Receiver<(usize, Result<(), PluginError>)>,
    ) {
        let until = Instant::now() + self.shared.cfg.request_timeout;
        while self.orders.iter().any(StreamOrder::is_replaying) {
            tokio::select! {
                biased;
                event = events.recv() => match event {
                    Some(Notification::Output { stream, offset, data, .. }) => {
                        if let Ok(bytes) = BASE64.decode(data.as_bytes()) {
                            let i = stream_index(stream);
                            self.orders[i].deliver(self.sinks[i], offset, &bytes);
                        }
                    }
                    Some(Notification::Exit { .. }) => {}
                    None => break,
                },
                Some((i, r)) = replay_rx.recv() => self.replayed(i, r),
                _ = tokio::time::sleep_until(until) => break,
            }
        }
        for i in 0..2 {
            self.orders[i].replay_done(self.sinks[i]);
        }
    }

    /// Sends `stop` without waiting for the answer (the `exit` notification is the
    /// answer that counts).
    fn stop(&self, signal: StopSignal, grace: Duration) {
        let conn = self.conn.clone();
        let (task, attempt) = self.key;
        tokio::spawn(async move {
            let op = Op::Stop {
                task,
                attempt,
                signal,
                grace_ms: grace.as_millis() as u64,
            };
            if let Err(e) = conn.request(op).await {
                tracing::debug!(task, attempt, "stop: {e}");
            }
        });
    }
}

impl StopCause {
    fn outcome(self) -> Outcome {
        match self {
            StopCause::TimeLimit => Outcome::TimedOut,
            StopCause::Cancel => Outcome::Killed,
        }
    }
}

/// The outcome of an attempt the plugin reports ended: a stop the worker asked for
/// names the outcome (the signal or exit code it caused says less).
fn outcome_of(exit: WireOutcome, cause: Option<StopCause>) -> Outcome {
    match (exit, cause) {
        (WireOutcome::SpawnFailed { message }, _) => Outcome::SpawnFailed { message },
        (WireOutcome::OutOfMemory, _) => Outcome::OutOfMemory,
        (_, Some(c)) => c.outcome(),
        (WireOutcome::Exited { code }, None) => Outcome::Exited { code },
        (WireOutcome::Signaled { signal }, None) => Outcome::Signaled { signal },
    }
}

fn stream_index(stream: WireStream) -> usize {
    match stream {
        WireStream::Stdout => 0,
        WireStream::Stderr => 1,
    }
}

/// Kills the process group a plugin reported for an attempt (never this process's).
fn kill_group(pgid: u32) {
    let Ok(pg) = i32::try_from(pgid) else {
        return;
    };
    if pgid == std::process::id() {
        return;
    }
    if let Err(e) = crate::sys::killpg(pg, libc::SIGKILL) {
        tracing::warn!(pgid, "killing a dead plugin's attempt: {e}");
    }
}
