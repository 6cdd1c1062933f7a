//! The self-fence: a deadline of its own, enforced by a task of its own.
//!
//! The agent moves the deadline forward each time the server proves it still hears
//! this worker (a welcome, a heartbeat ack; see `drover_proto::worker`). If the
//! deadline passes, the watchdog asks every attempt registered here to stop, with the
//! worker's kill grace, whatever the connection code is doing at that moment (stuck in
//! a connect, a send, a handshake). The server's lost timeout is longer than the
//! fence by the kill grace plus a settle margin, so the attempts are gone before the
//! server may start them elsewhere.

use crate::lifeline::Lifeline;
use drover_exec::KillHandle;
use drover_types::{Attempt, TaskId};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::{Notify, watch};
use tokio::time::Instant;

type Key = (TaskId, Attempt);

#[derive(Debug, Default)]
struct State {
    /// When the fence fires unless a newer proof of contact moves it. `None` before
    /// the first welcome (nothing may run then).
    deadline: Option<Instant>,
    /// Whether it fired since the last proof of contact.
    fired: bool,
    /// What may run: each attempt's kill handle.
    attempts: BTreeMap<Key, KillHandle>,
    /// Attempts the fence stopped; their ends are reported as fenced.
    fenced: BTreeSet<Key>,
}

#[derive(Debug)]
struct Shared {
    state: Mutex<State>,
    /// Wakes the watchdog when the deadline moves.
    moved: Notify,
    /// Counts firings, for the agent to react (drop its session, give up queued starts).
    fired: watch::Sender<u64>,
    kill_grace: Duration,
    /// The reaper process, told each new deadline (plus the kill grace): it kills the
    /// tasks itself if this process cannot (frozen, stuck).
    backstop: Option<Lifeline>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The agent's handle on the fence. Dropping it stops the watchdog.
#[derive(Debug)]
pub struct Fence {
    shared: Arc<Shared>,
    watchdog: tokio::task::JoinHandle<()>,
}

impl Drop for Fence {
    fn drop(&mut self) {
        self.watchdog.abort();
    }
}

impl Fence {
    /// Starts the watchdog (on the current tokio runtime). Attempts it stops get
    /// `kill_grace` between SIGTERM and SIGKILL, like any other kill.
    pub fn start(kill_grace: Duration, backstop: Option<Lifeline>) -> Fence {
        let (fired, _) = watch::channel(0);
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            moved: Notify::new(),
            fired,
            kill_grace,
            backstop,
        });
        let watchdog = tokio::spawn(watch_deadline(shared.clone()));
        Fence { shared, watchdog }
    }

    /// The server heard this worker at or after `at` (the moment the acknowledged
    /// message was sent): the fence fires `fence_after` later unless proven again.
    pub fn proven(&self, at: Instant, fence_after: Duration) {
        let deadline = at + fence_after;
        let mut s = self.shared.lock();
        if s.deadline.is_none_or(|d| d < deadline) || s.fired {
            s.deadline = Some(deadline);
        }
        s.fired = false;
        let now_due = s.deadline;
        drop(s);
        self.shared.moved.notify_one();
        if let (Some(backstop), Some(d)) = (&self.shared.backstop, now_due) {
            backstop.backstop_at((d + self.shared.kill_grace).into_std());
        }
    }

    /// Whether the deadline has passed (or contact was never proven): nothing new may
    /// start, since the server may be giving it to another worker.
    pub fn expired(&self) -> bool {
        let s = self.shared.lock();
        s.fired || s.deadline.is_none_or(|d| Instant::now() >= d)
    }

    /// Time left before the fence fires, if contact was ever proven.
    #[cfg(test)]
    pub fn remaining(&self) -> Option<Duration> {
        let s = self.shared.lock();
        s.deadline
            .map(|d| d.saturating_duration_since(Instant::now()))
    }

    /// An attempt started: the fence stops it if it fires.
    pub fn register(&self, key: Key, kill: KillHandle) {
        let mut s = self.shared.lock();
        if s.fired {
            // Started in the instant after the fence fired: stop it too.
            kill.kill(self.shared.kill_grace);
            s.fenced.insert(key);
        }
        s.attempts.insert(key, kill);
    }

    /// An attempt ended. True when the fence had stopped it.
    pub fn ended(&self, key: Key) -> bool {
        let mut s = self.shared.lock();
        s.attempts.remove(&key);
        s.fenced.remove(&key)
    }

    /// Resolves at each firing.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.shared.fired.subscribe()
    }
}

async fn watch_deadline(shared: Arc<Shared>) {
    loop {
        let moved = shared.moved.notified();
        tokio::pin!(moved);
        // Registers interest before reading the deadline, so a move in between is seen.
        moved.as_mut().enable();
        let deadline = {
            let s = shared.lock();
            if s.fired { None } else { s.deadline }
        };
        let Some(deadline) = deadline else {
            moved.await;
            continue;
        };
        tokio::select! {
            _ = moved => continue,
            _ = tokio::time::sleep_until(deadline) => {}
        }
        let stopped = {
            let mut s = shared.lock();
            // A proof may have landed just as the timer fired.
            if s.fired || s.deadline.is_none_or(|d| Instant::now() < d) {
                continue;
            }
            s.fired = true;
            let keys: Vec<Key> = s.attempts.keys().copied().collect();
            for key in &keys {
                if let Some(kill) = s.attempts.get(key) {
                    kill.kill(shared.kill_grace);
                }
                s.fenced.insert(*key);
            }
            keys
        };
        if !stopped.is_empty() {
            tracing::warn!(
                attempts = stopped.len(),
                "no proof that the server hears this worker for the fence's whole window: stopping every task before the server re-places them"
            );
        }
        shared.fired.send_modify(|n| *n += 1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(t: u64) -> Key {
        (TaskId(t), Attempt(1))
    }

    #[tokio::test(start_paused = true)]
    async fn fires_at_the_deadline_unless_proven_again() {
        let fence = Fence::start(Duration::from_secs(1), None);
        let mut fired = fence.subscribe();
        assert!(fence.expired(), "never proven: nothing may start");
        let kill = KillHandle::new();
        fence.proven(Instant::now(), Duration::from_secs(10));
        fence.register(key(1), kill.clone());
        assert!(!fence.expired());
        tokio::time::sleep(Duration::from_secs(6)).await;
        // A proof from 5 s ago moves the deadline to 15 s from the start.
        fence.proven(
            Instant::now() - Duration::from_secs(1),
            Duration::from_secs(10),
        );
        tokio::time::sleep(Duration::from_secs(6)).await;
        assert_eq!(kill.requested(), None, "not yet: proven at 5 s");
        tokio::time::sleep(Duration::from_secs(4)).await;
        fired.changed().await.unwrap();
        assert_eq!(kill.requested(), Some(Duration::from_secs(1)));
        assert!(fence.expired());
        assert!(fence.ended(key(1)), "reported as fenced");
        assert!(!fence.ended(key(1)));
    }

    #[tokio::test(start_paused = true)]
    async fn an_older_proof_never_moves_the_deadline_back_and_a_late_start_is_stopped() {
        let fence = Fence::start(Duration::from_millis(200), None);
        let mut fired = fence.subscribe();
        let t0 = Instant::now();
        fence.proven(t0 + Duration::from_secs(5), Duration::from_secs(10));
        fence.proven(t0, Duration::from_secs(10));
        assert_eq!(fence.remaining(), Some(Duration::from_secs(15)));
        tokio::time::sleep(Duration::from_secs(16)).await;
        fired.changed().await.unwrap();
        let kill = KillHandle::new();
        fence.register(key(2), kill.clone());
        assert_eq!(kill.requested(), Some(Duration::from_millis(200)));
        assert!(fence.ended(key(2)));
        // A new proof after firing starts a new window.
        fence.proven(Instant::now(), Duration::from_secs(10));
        assert!(!fence.expired());
        let fresh = KillHandle::new();
        fence.register(key(3), fresh.clone());
        assert_eq!(fresh.requested(), None);
        assert!(!fence.ended(key(3)));
    }
}
