//! Whether this server can write to its data directory right now.
//!
//! openraft stops its core for good on the first storage error, and a server whose
//! core stopped still answers reads and health checks as if all were well. So the log
//! store never hands openraft a write error: it keeps retrying the write (the disk may
//! be full for a while) and records the failure here meanwhile. The health route
//! reports it, the proposer refuses new writes with it, and the first write that
//! succeeds again clears it.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

/// Shared by the log store (which sets and clears it), the proposer and the API.
#[derive(Debug, Default)]
pub struct StorageHealth {
    failure: Mutex<Option<StorageFailure>>,
    /// Set at shutdown: a write still failing then gives up (and openraft stops).
    stopping: AtomicBool,
}

/// The write error the store is riding out.
#[derive(Clone, Debug)]
pub struct StorageFailure {
    /// The operating system's words, e.g. "No space left on device (os error 28)".
    pub reason: String,
    pub since: Instant,
}

impl StorageHealth {
    /// Records that a write failed (keeps the time of the first failure in a row).
    /// Returns whether this is the first failure in a row.
    pub fn failed(&self, reason: String) -> bool {
        let mut f = self.failure.lock().unwrap_or_else(|p| p.into_inner());
        let first = f.is_none();
        let since = f.as_ref().map_or_else(Instant::now, |f| f.since);
        *f = Some(StorageFailure { reason, since });
        first
    }

    /// Records that a write succeeded. Returns the failure it ends, if any.
    pub fn succeeded(&self) -> Option<StorageFailure> {
        self.failure
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
    }

    pub fn stop(&self) {
        self.stopping.store(true, Ordering::SeqCst);
    }

    pub fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::SeqCst)
    }

    /// The failure in progress, if writes are failing.
    pub fn failure(&self) -> Option<StorageFailure> {
        self.failure
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}
