//! Which of a worker's heartbeats become a `WorkerUpdate` in the log.
//!
//! Heartbeats come every second from every worker; logging each would flood the log
//! (and every follower's disk) with readings nobody decides on. A worker session keeps
//! one [`UpdateLimiter`] and proposes an update only when:
//! - the data keys the worker reports differ from those the log holds for it, at most
//!   once per [`KEYS_MIN_INTERVAL`] (a burst of task ends producing files is folded
//!   into one update; the latest list is kept and proposed when the interval passes);
//! - its tasks' measured load moved by [`LOAD_THRESHOLD_PERMILLE`] of its capacity or
//!   more (CPU or memory) from what the log holds, at most once per
//!   [`LOAD_MIN_INTERVAL`].
//!
//! So a worker costs at most 60 / 2 = 30 entries a minute while its files change
//! every second, at most 60 / 5 = 12 while its load swings by 10 % every few seconds,
//! and none while nothing changes. The comparison is with the *logged* state, not with
//! the last proposal: a proposal lost to a leader change is made again by the next
//! leader's session, and a new session does not repeat what is already logged.

use drover_proto::worker::DataKey;
use drover_types::{Resources, WorkerUsage};
use std::time::{Duration, Instant};

/// Shortest time between two updates carrying data keys.
pub const KEYS_MIN_INTERVAL: Duration = Duration::from_secs(2);
/// Shortest time between two updates for load alone.
pub const LOAD_MIN_INTERVAL: Duration = Duration::from_secs(5);
/// How far (thousandths of capacity) the load must move to be logged again.
pub const LOAD_THRESHOLD_PERMILLE: u64 = 100;
/// Most data keys one worker may advertise; beyond that its list is cut (sorted, the
/// first ones kept) and a warning logged. Keeps one update well inside an entry.
pub const MAX_DATA_KEYS: usize = 10_000;

/// What the log currently holds for a worker.
pub struct Logged<'a> {
    pub capacity: &'a Resources,
    pub usage: &'a WorkerUsage,
    pub data_keys: &'a [String],
}

/// One worker session's memory of what it proposed and what waits to be.
#[derive(Debug, Default)]
pub struct UpdateLimiter {
    /// The latest key list the worker sent, until the log holds it.
    pending_keys: Option<Vec<String>>,
    keys_at: Option<Instant>,
    load_at: Option<Instant>,
}

impl UpdateLimiter {
    /// Takes one heartbeat's `load` and `data` and answers the update to propose now,
    /// if any: the usage to log and, when they are to change, the data keys.
    pub fn observe(
        &mut self,
        now: Instant,
        logged: Logged<'_>,
        load: Option<WorkerUsage>,
        data: Option<Vec<DataKey>>,
    ) -> Option<(WorkerUsage, Option<Vec<String>>)> {
        if let Some(data) = data {
            let mut keys: Vec<String> = data.into_iter().map(|k| k.key).collect();
            keys.sort_unstable();
            keys.dedup();
            if keys.len() > MAX_DATA_KEYS {
                tracing::warn!(
                    keys = keys.len(),
                    "a worker advertises more than {MAX_DATA_KEYS} data keys; the rest are ignored"
                );
                keys.truncate(MAX_DATA_KEYS);
            }
            self.pending_keys = Some(keys);
        }
        if self
            .pending_keys
            .as_deref()
            .is_some_and(|k| k == logged.data_keys)
        {
            self.pending_keys = None;
        }
        let due = |at: Option<Instant>, every: Duration| {
            at.is_none_or(|t| now.saturating_duration_since(t) >= every)
        };
        let keys = if self.pending_keys.is_some() && due(self.keys_at, KEYS_MIN_INTERVAL) {
            self.keys_at = Some(now);
            self.pending_keys.take()
        } else {
            None
        };
        let moved = load
            .as_ref()
            .is_some_and(|l| moved(logged.capacity, logged.usage, l));
        let load_due = moved && due(self.load_at, LOAD_MIN_INTERVAL);
        if keys.is_none() && !load_due {
            return None;
        }
        if load_due || (keys.is_some() && moved) {
            self.load_at = Some(now);
        }
        // An update for keys carries the latest load too (it costs nothing more); one
        // whose load did not move carries the logged figure, changing nothing.
        let usage = match load {
            Some(l) if moved => l,
            _ => logged.usage.clone(),
        };
        Some((usage, keys))
    }
}

/// Did the load move by the threshold, CPU or memory, relative to capacity?
fn moved(capacity: &Resources, logged: &WorkerUsage, now: &WorkerUsage) -> bool {
    let far = |a: u64, b: u64, cap: u64| {
        let step = (cap as u128 * LOAD_THRESHOLD_PERMILLE as u128 / 1000).max(1);
        (a.abs_diff(b) as u128) >= step
    };
    far(
        logged.cpu_milli as u64,
        now.cpu_milli as u64,
        capacity.cpu_milli as u64,
    ) || far(logged.memory_bytes, now.memory_bytes, capacity.memory_bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(k: &str) -> DataKey {
        DataKey {
            key: k.into(),
            sha256: String::new(),
            bytes: 0,
        }
    }

    fn cpu(milli: u32) -> WorkerUsage {
        WorkerUsage {
            cpu_milli: milli,
            ..WorkerUsage::default()
        }
    }

    #[test]
    fn keys_are_logged_on_change_and_folded_within_the_interval() {
        let cap = Resources::cpus(2000);
        let zero = WorkerUsage::default();
        let t0 = Instant::now();
        let mut l = UpdateLimiter::default();
        let logged = |keys: &'static [String]| -> Logged<'_> {
            Logged {
                capacity: &cap,
                usage: &zero,
                data_keys: keys,
            }
        };
        // The same list as logged: nothing.
        assert_eq!(l.observe(t0, logged(&[]), None, Some(vec![])), None);
        let got = l.observe(t0, logged(&[]), None, Some(vec![key("b"), key("a")]));
        assert_eq!(
            got,
            Some((zero.clone(), Some(vec!["a".into(), "b".into()])))
        );
        // Within the interval: kept, not proposed.
        let t1 = t0 + Duration::from_millis(500);
        assert_eq!(l.observe(t1, logged(&[]), None, Some(vec![key("c")])), None);
        // Once it passes, the latest list goes (without a new heartbeat list).
        let t2 = t0 + KEYS_MIN_INTERVAL;
        assert_eq!(
            l.observe(t2, logged(&[]), None, None),
            Some((zero.clone(), Some(vec!["c".into()])))
        );
        assert_eq!(
            l.observe(t2 + KEYS_MIN_INTERVAL, logged(&[]), None, None),
            None
        );
    }

    #[test]
    fn load_is_logged_when_it_moves_by_the_threshold_at_most_every_interval() {
        let cap = Resources::cpus(2000);
        let t0 = Instant::now();
        let mut l = UpdateLimiter::default();
        fn at<'a>(cap: &'a Resources, logged: &'a WorkerUsage) -> Logged<'a> {
            Logged {
                capacity: cap,
                usage: logged,
                data_keys: &[],
            }
        }
        let zero = WorkerUsage::default();
        // 10 % of 2000 is 200: 150 is noise.
        assert_eq!(l.observe(t0, at(&cap, &zero), Some(cpu(150)), None), None);
        assert_eq!(
            l.observe(t0, at(&cap, &zero), Some(cpu(1000)), None),
            Some((cpu(1000), None))
        );
        // Moved again, but too soon.
        let t1 = t0 + Duration::from_secs(1);
        assert_eq!(
            l.observe(t1, at(&cap, &cpu(1000)), Some(cpu(0)), None),
            None
        );
        let t2 = t0 + LOAD_MIN_INTERVAL;
        assert_eq!(
            l.observe(t2, at(&cap, &cpu(1000)), Some(cpu(0)), None),
            Some((cpu(0), None))
        );
    }
}
