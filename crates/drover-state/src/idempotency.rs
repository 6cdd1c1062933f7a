//! Idempotency keys: a submission retried with the key of an earlier one gets the
//! earlier answer instead of being submitted again.
//!
//! A client whose submission fails in flight (the leader killed after the entry was
//! committed but before it answered) cannot know whether it was applied. It retries with
//! the same key; the key travels inside the log command, so every replica, now or after
//! a restart, decides the same way. The window is bounded by count and by the age of a
//! key measured with the log's own time (`LogEntry::now`), so it is part of the
//! deterministic state and goes into snapshots.

use drover_sched::TaskRange;
use drover_types::{JobId, JobSpec, Millis};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, VecDeque};

/// Most keys remembered. At 128 bytes a key, the window costs at most ~10 MB.
pub const KEYS_KEPT: usize = 50_000;
/// How long (log time) a key is remembered. Clients retry for seconds; a day leaves
/// room for a client that retries much later by hand.
pub const KEY_WINDOW_MS: u64 = 24 * 60 * 60 * 1000;
/// Longest key accepted, in bytes.
pub const KEY_MAX_LEN: usize = 128;

/// What a submission carries when its client gave a key: the key and a fingerprint of
/// the submitted job (computed once, by the server that took the request, and logged,
/// so replicas never recompute it).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdempotencyKey {
    pub key: String,
    pub fingerprint: u64,
}

impl IdempotencyKey {
    /// The key for `job`, fingerprinting its JSON form.
    pub fn for_job(key: String, job: &JobSpec) -> IdempotencyKey {
        IdempotencyKey {
            key,
            fingerprint: fingerprint(job),
        }
    }
}

/// A fingerprint of a job: [`digest`] of its JSON form.
pub fn fingerprint(job: &JobSpec) -> u64 {
    digest(&serde_json::to_vec(job).unwrap_or_default())
}

/// A 64-bit FNV-1a hash. Only equality matters (same body or not), and the value is
/// computed once, by the server that took the request, and logged: replicas never
/// recompute it, so it need not be stable across versions.
pub fn digest(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// The answer remembered for a key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyRecord {
    pub key: String,
    pub fingerprint: u64,
    /// Log time of the original submission.
    pub at: Millis,
    pub job: JobId,
    pub tasks: TaskRange,
}

/// What to do with a keyed submission.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeyLookup {
    /// Not seen (or forgotten): submit it.
    New,
    /// Seen with the same body: answer this again.
    Replay { job: JobId, tasks: TaskRange },
    /// Seen with a different body: refuse.
    Conflict,
}

/// The remembered keys, oldest first.
#[derive(Clone, Debug, Default)]
pub struct IdempotencyWindow {
    by_key: BTreeMap<String, KeyRecord>,
    order: VecDeque<String>,
}

impl IdempotencyWindow {
    /// Rebuilds the window from a snapshot's records (oldest first).
    pub fn restore(records: Vec<KeyRecord>) -> IdempotencyWindow {
        let mut w = IdempotencyWindow::default();
        for r in records {
            w.order.push_back(r.key.clone());
            w.by_key.insert(r.key.clone(), r);
        }
        w
    }

    /// The records, oldest first, for a snapshot.
    pub fn records(&self) -> Vec<KeyRecord> {
        self.order
            .iter()
            .filter_map(|k| self.by_key.get(k).cloned())
            .collect()
    }

    pub fn len(&self) -> usize {
        self.by_key.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_key.is_empty()
    }

    pub fn lookup(&self, key: &IdempotencyKey) -> KeyLookup {
        match self.by_key.get(&key.key) {
            None => KeyLookup::New,
            Some(r) if r.fingerprint == key.fingerprint => KeyLookup::Replay {
                job: r.job,
                tasks: r.tasks,
            },
            Some(_) => KeyLookup::Conflict,
        }
    }

    /// Remembers an accepted submission, forgetting what the bounds say to.
    pub fn remember(&mut self, now: Millis, key: &IdempotencyKey, job: JobId, tasks: TaskRange) {
        let record = KeyRecord {
            key: key.key.clone(),
            fingerprint: key.fingerprint,
            at: now,
            job,
            tasks,
        };
        if self.by_key.insert(key.key.clone(), record).is_none() {
            self.order.push_back(key.key.clone());
        }
        self.expire(now);
    }

    /// Forgets keys older than the window, and the oldest beyond the count.
    pub fn expire(&mut self, now: Millis) {
        while let Some(oldest) = self.order.front() {
            let old = self
                .by_key
                .get(oldest)
                .is_none_or(|r| now.0.saturating_sub(r.at.0) > KEY_WINDOW_MS);
            if !old && self.order.len() <= KEYS_KEPT {
                break;
            }
            if let Some(k) = self.order.pop_front() {
                self.by_key.remove(&k);
            }
        }
    }
}
