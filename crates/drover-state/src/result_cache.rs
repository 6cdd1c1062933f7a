//! The result cache: finished results by cache key, replicated with the rest of the
//! state (see "Result cache" in ARCHITECTURE.md).
//!
//! Driven from the task state changes the core records: when a task that opted in
//! becomes ready for the first time, its key is computed ([`crate::cache_key`]) and
//! - a live entry completes it at once (`Succeeded`, no attempt, the entry's result;
//!   its output reads serve the attempt that made the entry);
//! - else, if another task with the same key is running for it, it is held back
//!   (`Waiting`, "waiting for task N with the same cache key") and completes from
//!   that task's result, or runs if that task does not succeed;
//! - else it runs, and its success records an entry.
//!
//! Bounds: each entry lives `ttl_ms` (an expired entry is never used and is dropped
//! at the next lookup, insertion or retirement); at most [`MAX_ENTRIES`] entries and
//! [`MAX_BYTES`] of results, the oldest evicted first (by creation time, then key:
//! deterministic). An entry also goes when the task whose output it serves is
//! retired: the cache never points at output that is gone.

use crate::cache_key::{KeyInputs, cache_key};
use crate::machine::TaskRecord;
use drover_sched::{Scheduler, TaskRange, Transition};
use drover_types::{Attempt, CacheSpec, Millis, TaskId, TaskState};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// At most this many entries.
pub const MAX_ENTRIES: usize = 100_000;
/// At most this many bytes of results and keys (each entry also counts
/// [`ENTRY_OVERHEAD`]).
pub const MAX_BYTES: u64 = 256 << 20;
const ENTRY_OVERHEAD: u64 = 128;

/// One cached result.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CacheEntry {
    /// 64 hex digits.
    pub key: String,
    /// The task whose attempt made the entry; its output is what a hit shows.
    pub task: TaskId,
    pub attempt: Attempt,
    pub result: String,
    pub stdout_bytes: u64,
    pub stderr_bytes: u64,
    pub output_truncated: bool,
    pub created_at: Millis,
    pub expires_at: Millis,
    /// Tasks completed from it so far.
    pub hits: u64,
}

impl CacheEntry {
    /// What the entry counts against [`MAX_BYTES`].
    pub fn size(&self) -> u64 {
        (self.result.len() + self.key.len()) as u64 + ENTRY_OVERHEAD
    }
}

/// The table as a snapshot holds it (plain fields: postcard writes by position).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CacheSnapshot {
    pub entries: Vec<CacheEntry>,
    /// Tasks that opted in and are not final: (task, key, salt, ttl_ms).
    pub opted: Vec<(TaskId, Option<String>, String, Option<u64>)>,
    /// The key of each such task that became ready.
    pub keys: Vec<(TaskId, String)>,
    /// The task running for each key.
    pub running: Vec<(String, TaskId)>,
    /// (runner, held task).
    pub waiters: Vec<(TaskId, TaskId)>,
    /// Tasks completed from the cache, and the task whose result they took.
    pub served: Vec<(TaskId, TaskId)>,
}

#[derive(Debug, Default)]
pub struct ResultCache {
    entries: BTreeMap<String, CacheEntry>,
    /// Derived: entries by (created_at, key), the eviction order, and their total size.
    by_age: BTreeSet<(Millis, String)>,
    bytes: u64,
    opted: BTreeMap<TaskId, CacheSpec>,
    keys: BTreeMap<TaskId, String>,
    running: BTreeMap<String, TaskId>,
    waiters: BTreeSet<(TaskId, TaskId)>,
    served: BTreeMap<TaskId, TaskId>,
}

/// What `remove` found.
#[derive(Debug, PartialEq, Eq)]
pub enum Removed {
    Entries(u64),
    NoSuchKey,
}

impl ResultCache {
    /// The entries, by key.
    pub fn entries(&self) -> impl Iterator<Item = &CacheEntry> {
        self.entries.values()
    }

    pub fn entry(&self, key: &str) -> Option<&CacheEntry> {
        self.entries.get(key)
    }

    /// Bytes the entries count against [`MAX_BYTES`].
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// The task a cached task took its result (and output) from.
    pub fn served_from(&self, task: TaskId) -> Option<TaskId> {
        self.served.get(&task).copied()
    }

    /// The cache key of a task that opted in and became ready.
    pub fn key_of(&self, task: TaskId) -> Option<&str> {
        self.keys.get(&task).map(String::as_str)
    }

    /// Remembers the opt-ins of a submitted job's tasks.
    pub fn submitted(&mut self, sched: &Scheduler, tasks: TaskRange) {
        for n in tasks.first.0..tasks.first.0 + tasks.count as u64 {
            if let Some(c) = sched
                .task(TaskId(n))
                .and_then(|v| v.spec.shared().cache.clone())
            {
                self.opted.insert(TaskId(n), c);
            }
        }
    }

    /// Follows one batch of task state changes (see the module's comment). What it
    /// does to the core records more changes, which the caller feeds back until none.
    pub fn on_transitions(
        &mut self,
        now: Millis,
        sched: &mut Scheduler,
        records: &mut BTreeMap<TaskId, TaskRecord>,
        batch: &[Transition],
    ) {
        for t in batch {
            if t.to == TaskState::Ready {
                self.on_ready(now, sched, records, t.task);
            } else if t.to.is_final() {
                self.on_final(now, sched, records, t.task, t.to);
            }
        }
    }

    fn on_ready(
        &mut self,
        now: Millis,
        sched: &mut Scheduler,
        records: &mut BTreeMap<TaskId, TaskRecord>,
        task: TaskId,
    ) {
        let Some(cache) = self.opted.get(&task) else {
            return;
        };
        let Some(view) = sched.task(task) else {
            return;
        };
        if view.attempt.0 != 0 {
            // Retried or evicted: it already runs for its key.
            return;
        }
        let dep_results: Vec<&str> = view
            .deps
            .iter()
            .map(|d| {
                records
                    .get(d)
                    .and_then(|r| r.result.as_deref())
                    .unwrap_or("")
            })
            .collect();
        let spec = view.spec.to_spec();
        let key = cache_key(&KeyInputs {
            spec: &spec,
            cache,
            array: view.array_index.zip(view.array_count),
            dep_results: &dep_results,
        });
        self.keys.insert(task, key.clone());
        if self.live(now, &key).is_some() {
            let entry = self.entries.get_mut(&key).expect("live entry");
            entry.hits += 1;
            let origin = entry.task;
            let record = TaskRecord {
                result: Some(entry.result.clone()),
                usage: Vec::new(),
                stdout_bytes: entry.stdout_bytes,
                stderr_bytes: entry.stderr_bytes,
                output_truncated: entry.output_truncated,
                ..TaskRecord::default()
            };
            if sched.complete_cached(task).is_ok() {
                records.insert(task, record);
                self.served.insert(task, origin);
            }
            return;
        }
        match self.running.get(&key) {
            Some(&runner) if runner != task => {
                if sched.hold(task, runner).is_ok() {
                    self.waiters.insert((runner, task));
                }
            }
            _ => {
                self.running.insert(key, task);
            }
        }
    }

    fn on_final(
        &mut self,
        now: Millis,
        sched: &mut Scheduler,
        records: &mut BTreeMap<TaskId, TaskRecord>,
        task: TaskId,
        state: TaskState,
    ) {
        let cache = self.opted.remove(&task);
        let Some(key) = self.keys.remove(&task) else {
            return;
        };
        if self.running.get(&key) != Some(&task) {
            // A held task that ended (cancelled), or one completed from the cache.
            if let Some(&runner) = self.running.get(&key) {
                self.waiters.remove(&(runner, task));
            }
            return;
        }
        self.running.remove(&key);
        let held: Vec<TaskId> = self
            .waiters
            .range((task, TaskId(0))..=(task, TaskId(u64::MAX)))
            .map(|&(_, w)| w)
            .collect();
        for w in &held {
            self.waiters.remove(&(task, *w));
        }
        let record = records.get(&task).cloned();
        match (state, record) {
            (TaskState::Succeeded, Some(record)) if !self.served.contains_key(&task) => {
                let attempt = sched.task(task).map(|v| v.attempt).unwrap_or_default();
                let ttl = cache
                    .as_ref()
                    .map_or(drover_types::DEFAULT_CACHE_TTL_MS, |c| c.ttl());
                self.insert(
                    now,
                    CacheEntry {
                        key,
                        task,
                        attempt,
                        result: record.result.clone().unwrap_or_default(),
                        stdout_bytes: record.stdout_bytes,
                        stderr_bytes: record.stderr_bytes,
                        output_truncated: record.output_truncated,
                        created_at: now,
                        expires_at: now.saturating_add(ttl),
                        hits: held.len() as u64,
                    },
                );
                for w in held {
                    if sched.complete_cached(w).is_ok() {
                        records.insert(
                            w,
                            TaskRecord {
                                usage: Vec::new(),
                                ..record.clone()
                            },
                        );
                        self.served.insert(w, task);
                    }
                }
            }
            _ => {
                // It did not succeed: the held tasks go back to the queue; the first
                // (by id) becomes the new runner as they turn ready, the others wait
                // for it again.
                for w in held {
                    sched.release_held(w);
                }
            }
        }
    }

    /// The entry for `key` if it has not expired; an expired one is dropped.
    fn live(&mut self, now: Millis, key: &str) -> Option<&CacheEntry> {
        let expired = self.entries.get(key)?.expires_at <= now;
        if expired {
            self.drop_entry(key);
            return None;
        }
        self.entries.get(key)
    }

    fn insert(&mut self, now: Millis, entry: CacheEntry) {
        self.drop_entry(&entry.key.clone());
        if entry.size() > MAX_BYTES {
            return;
        }
        self.bytes += entry.size();
        self.by_age.insert((entry.created_at, entry.key.clone()));
        self.entries.insert(entry.key.clone(), entry);
        self.expire(now);
        while self.entries.len() > MAX_ENTRIES || self.bytes > MAX_BYTES {
            let Some((_, oldest)) = self.by_age.first().cloned() else {
                break;
            };
            self.drop_entry(&oldest);
        }
    }

    fn drop_entry(&mut self, key: &str) -> bool {
        let Some(e) = self.entries.remove(key) else {
            return false;
        };
        self.bytes -= e.size();
        self.by_age.remove(&(e.created_at, e.key));
        true
    }

    /// Drops the expired entries.
    pub fn expire(&mut self, now: Millis) {
        let expired: Vec<String> = self
            .entries
            .values()
            .filter(|e| e.expires_at <= now)
            .map(|e| e.key.clone())
            .collect();
        for k in expired {
            self.drop_entry(&k);
        }
    }

    /// Removes one entry (`Some(key)`) or all of them.
    pub fn remove(&mut self, key: Option<&str>) -> Removed {
        match key {
            Some(k) => {
                if self.drop_entry(k) {
                    Removed::Entries(1)
                } else {
                    Removed::NoSuchKey
                }
            }
            None => {
                let n = self.entries.len() as u64;
                self.entries.clear();
                self.by_age.clear();
                self.bytes = 0;
                Removed::Entries(n)
            }
        }
    }

    /// Forgets what refers to retired tasks: entries whose output is gone, and the
    /// "cached from" of retired tasks.
    pub fn retired(&mut self, now: Millis, ranges: &[TaskRange]) {
        let gone = |t: TaskId| {
            ranges
                .iter()
                .any(|r| t.0 >= r.first.0 && t.0 < r.first.0 + r.count as u64)
        };
        let dropped: Vec<String> = self
            .entries
            .values()
            .filter(|e| gone(e.task))
            .map(|e| e.key.clone())
            .collect();
        for k in dropped {
            self.drop_entry(&k);
        }
        self.served.retain(|t, _| !gone(*t));
        self.expire(now);
    }

    pub fn snapshot(&self) -> CacheSnapshot {
        CacheSnapshot {
            entries: self.entries.values().cloned().collect(),
            opted: self
                .opted
                .iter()
                .map(|(t, c)| (*t, c.key.clone(), c.salt.clone(), c.ttl_ms))
                .collect(),
            keys: self.keys.iter().map(|(t, k)| (*t, k.clone())).collect(),
            running: self.running.iter().map(|(k, t)| (k.clone(), *t)).collect(),
            waiters: self.waiters.iter().copied().collect(),
            served: self.served.iter().map(|(a, b)| (*a, *b)).collect(),
        }
    }

    /// Rebuilds the table, and gives the core back its held tasks.
    pub fn restore(s: CacheSnapshot, sched: &mut Scheduler) -> ResultCache {
        let mut c = ResultCache::default();
        for e in s.entries {
            c.bytes += e.size();
            c.by_age.insert((e.created_at, e.key.clone()));
            c.entries.insert(e.key.clone(), e);
        }
        c.opted = s
            .opted
            .into_iter()
            .map(|(t, key, salt, ttl_ms)| (t, CacheSpec { key, salt, ttl_ms }))
            .collect();
        c.keys = s.keys.into_iter().collect();
        c.running = s.running.into_iter().collect();
        sched.restore_held(s.waiters.iter().map(|&(runner, w)| (w, runner)));
        c.waiters = s.waiters.into_iter().collect();
        c.served = s.served.into_iter().collect();
        c
    }
}
