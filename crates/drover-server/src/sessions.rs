//! The workers connected to this server, and when each was last heard from.
//!
//! Liveness is leader-local and not in the log: a heartbeat a second from a thousand
//! workers would flood it. Only the conclusion ("worker 7 is lost") is a log command.
//! A newly elected leader starts every worker's clock afresh, so a leader change never
//! makes a worker look dead.

use drover_proto::worker::{AttemptUsage, RunningUsage, ServerMessage};
use drover_types::{Attempt, TaskId, WorkerId, WorkerUsage};
use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;
use tokio::sync::mpsc::UnboundedSender;

#[derive(Debug)]
struct Session {
    conn: u64,
    tx: UnboundedSender<String>,
}

#[derive(Clone, Debug)]
pub struct Liveness {
    pub last_seen: Instant,
    pub usage: WorkerUsage,
}

/// The latest usage sample of each running attempt, from heartbeats. Leader-local,
/// like liveness: a live reading, not history (an attempt's final usage is in the log).
#[derive(Debug, Default)]
pub struct LiveUsage {
    samples: Mutex<HashMap<(TaskId, Attempt), AttemptUsage>>,
}

impl LiveUsage {
    /// Replaces a worker's samples with those of its latest heartbeat.
    pub fn record(
        &self,
        previous: &[(TaskId, Attempt)],
        samples: Vec<RunningUsage>,
    ) -> Vec<(TaskId, Attempt)> {
        let mut map = self.samples.lock().unwrap_or_else(|p| p.into_inner());
        for key in previous {
            map.remove(key);
        }
        samples
            .into_iter()
            .map(|s| {
                let key = (s.task, s.attempt);
                map.insert(key, s.usage);
                key
            })
            .collect()
    }

    pub fn get(&self, task: TaskId, attempt: Attempt) -> Option<AttemptUsage> {
        self.samples
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&(task, attempt))
            .cloned()
    }
}

#[derive(Debug, Default)]
pub struct Sessions {
    sessions: Mutex<HashMap<WorkerId, Session>>,
    liveness: Mutex<HashMap<WorkerId, Liveness>>,
    next_conn: AtomicU64,
    pub live_usage: LiveUsage,
}

impl Sessions {
    /// Registers the outbound queue of a worker's connection, replacing an older one.
    /// Returns the connection's number, for [`Sessions::unregister`].
    pub fn register(&self, worker: WorkerId, tx: UnboundedSender<String>) -> u64 {
        let conn = self.next_conn.fetch_add(1, Ordering::Relaxed);
        self.sessions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(worker, Session { conn, tx });
        self.touch(worker, None);
        conn
    }

    /// Forgets a connection, unless a newer one replaced it already.
    pub fn unregister(&self, worker: WorkerId, conn: u64) {
        let mut sessions = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        if sessions.get(&worker).is_some_and(|s| s.conn == conn) {
            sessions.remove(&worker);
        }
    }

    /// Drops a worker's connection (its outbound queue closes, then the socket), so
    /// that it must reconnect and rejoin.
    pub fn disconnect(&self, worker: WorkerId) {
        self.sessions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&worker);
    }

    pub fn is_connected(&self, worker: WorkerId) -> bool {
        self.sessions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains_key(&worker)
    }

    /// Queues a message for a worker. False when it is not connected here.
    pub fn send(&self, worker: WorkerId, message: &ServerMessage) -> bool {
        let sessions = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        match sessions.get(&worker) {
            Some(s) => match serde_json::to_string(message) {
                Ok(text) => s.tx.send(text).is_ok(),
                Err(_) => false,
            },
            None => false,
        }
    }

    /// Records that the worker was heard from (with its usage, for heartbeats).
    pub fn touch(&self, worker: WorkerId, usage: Option<WorkerUsage>) {
        let mut live = self.liveness.lock().unwrap_or_else(|p| p.into_inner());
        let entry = live.entry(worker).or_insert_with(|| Liveness {
            last_seen: Instant::now(),
            usage: WorkerUsage::default(),
        });
        entry.last_seen = Instant::now();
        if let Some(u) = usage {
            entry.usage = u;
        }
    }

    pub fn liveness(&self, worker: WorkerId) -> Option<Liveness> {
        self.liveness
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&worker)
            .cloned()
    }

    /// Gives every known worker a fresh window (on becoming leader).
    /// `grace` sets the clocks that much in the future (a longer first window).
    pub fn reset_clocks(
        &self,
        workers: impl IntoIterator<Item = WorkerId>,
        grace: std::time::Duration,
    ) {
        let now = Instant::now() + grace;
        let mut live = self.liveness.lock().unwrap_or_else(|p| p.into_inner());
        for w in workers {
            live.entry(w)
                .and_modify(|l| l.last_seen = now)
                .or_insert(Liveness {
                    last_seen: now,
                    usage: WorkerUsage::default(),
                });
        }
    }
}
