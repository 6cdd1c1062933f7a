//! Asking a running attempt to stop, from anywhere.

use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;
use tokio::sync::Notify;

/// A cloneable handle that ends an attempt on request (cancel, evict).
///
/// `kill(grace)` hands the request to the attempt's monitor task, which signals the
/// whole tree at once: SIGTERM now, SIGKILL after `grace` (straight SIGKILL when
/// `grace` is zero). The attempt then finishes with `Outcome::Killed`. Idempotent:
/// later calls can only shorten the grace period. Does nothing once the attempt ended.
#[derive(Clone, Debug, Default)]
pub struct KillHandle {
    shared: Arc<KillShared>,
}

#[derive(Debug, Default)]
struct KillShared {
    /// The shortest grace asked for so far; `None` until the first request.
    grace: Mutex<Option<Duration>>,
    notify: Notify,
}

impl KillHandle {
    pub fn new() -> Self {
        KillHandle::default()
    }

    pub fn kill(&self, grace: Duration) {
        {
            let mut g = self.shared.grace.lock().unwrap_or_else(|e| e.into_inner());
            *g = Some(g.map_or(grace, |old| old.min(grace)));
        }
        // notify_one stores a permit, so a request made before the monitor waits is kept.
        self.shared.notify.notify_one();
    }

    /// The grace of the strongest request made, if any.
    pub fn requested(&self) -> Option<Duration> {
        *self.shared.grace.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Resolves at the next `kill` call (or at once if one is pending).
    pub(crate) async fn notified(&self) {
        self.shared.notify.notified().await;
    }
}
