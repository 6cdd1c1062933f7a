//! How references name tasks: the key index and the job names.
//!
//! Keys are unique within their job only, so that a job can be submitted again. A key
//! names every entry (a task, or a whole array) ever given it, oldest first; job names
//! are interned, each with the newest job that bears it. Both are ordered maps (no hash
//! order can reach a decision) and are rebuilt from the task table and the jobs on
//! restore. Memory: one copy of each distinct key and job name, plus 16 bytes per keyed
//! entry (inline for a key used once).

use crate::error::ResolveError;
use crate::task_table::JobRec;
use crate::view::TaskRange;
use drover_types::{JobId, KeyRef};
use std::collections::{BTreeMap, BTreeSet};

/// Key -> the entries with that key, in id order (oldest first).
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct KeyIndex {
    by_key: BTreeMap<Box<str>, Entries>,
}

/// Most keys are used by one entry: no allocation beyond the map's own for those.
#[derive(Debug, PartialEq, Eq)]
enum Entries {
    One(TaskRange),
    Many(Vec<TaskRange>),
}

impl Entries {
    fn as_slice(&self) -> &[TaskRange] {
        match self {
            Entries::One(r) => std::slice::from_ref(r),
            Entries::Many(v) => v,
        }
    }
}

impl KeyIndex {
    /// Records a keyed entry; it must be newer (higher ids) than every entry already
    /// recorded, as submissions are.
    pub fn insert(&mut self, key: &str, range: TaskRange) {
        match self.by_key.get_mut(key) {
            None => {
                self.by_key.insert(key.into(), Entries::One(range));
            }
            Some(e) => match e {
                Entries::One(old) => *e = Entries::Many(vec![*old, range]),
                Entries::Many(v) => v.push(range),
            },
        }
    }

    /// Forgets a retired entry; the key then names its other entries, or nothing.
    pub fn remove(&mut self, key: &str, range: TaskRange) {
        let Some(e) = self.by_key.get_mut(key) else {
            return;
        };
        match e {
            Entries::One(r) if *r == range => {
                self.by_key.remove(key);
            }
            Entries::One(_) => {}
            Entries::Many(v) => {
                v.retain(|r| *r != range);
                // The same shape as a fresh index would have (the checker compares).
                if let [only] = v[..] {
                    *e = Entries::One(only);
                }
            }
        }
    }

    /// The newest entry with this key.
    pub fn newest(&self, key: &str) -> Option<TaskRange> {
        self.by_key
            .get(key)
            .and_then(|e| e.as_slice().last().copied())
    }

    /// The entry with this key among the tasks of `job` (at most one: keys are unique
    /// within a job). O(log entries with that key).
    pub fn in_job(&self, key: &str, job: &JobRec) -> Option<TaskRange> {
        let entries = self.by_key.get(key)?.as_slice();
        let at = entries.partition_point(|r| r.first < job.first);
        entries
            .get(at)
            .filter(|r| r.first.0 < job.first.0 + job.count as u64)
            .copied()
    }

    /// Every key with its entries, in key order (for the invariant checker).
    pub fn iter(&self) -> impl Iterator<Item = (&str, &[TaskRange])> {
        self.by_key.iter().map(|(k, e)| (&**k, e.as_slice()))
    }
}

/// Job names, interned: `JobRec::name` is a name's position in `names` plus one (0: the
/// job has no name). `names` is durable (in snapshots); `by_name` is rebuilt. A name no
/// held job bears any more (its jobs were retired) is emptied and its number reused,
/// lowest first, so that distinct names do not pile up over months.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct JobNames {
    pub names: Vec<String>,
    /// Name -> (its number, the newest job with that name).
    by_name: BTreeMap<Box<str>, (u32, JobId)>,
    /// Numbers of emptied names.
    free: BTreeSet<u32>,
}

impl JobNames {
    /// Records that `job` (newer than every job recorded) bears `name`; returns the
    /// number to keep in its `JobRec` (0 for an empty name).
    pub fn record(&mut self, name: &str, job: JobId) -> u32 {
        if name.is_empty() {
            return 0;
        }
        if let Some((n, newest)) = self.by_name.get_mut(name) {
            *newest = job;
            return *n;
        }
        let n = match self.free.pop_first() {
            Some(n) => {
                self.names[n as usize - 1] = name.to_string();
                n
            }
            None => {
                self.names.push(name.to_string());
                self.names.len() as u32
            }
        };
        self.by_name.insert(name.into(), (n, job));
        n
    }

    /// `job`, which bore name number `n`, was retired (and is no longer in `jobs`):
    /// the name now names the newest held job bearing it, or is freed.
    pub fn forget(&mut self, n: u32, job: JobId, jobs: &BTreeMap<JobId, JobRec>) {
        if n == 0 {
            return;
        }
        let name = self.names[n as usize - 1].as_str();
        let Some(entry) = self.by_name.get_mut(name) else {
            return;
        };
        if entry.1 != job {
            return;
        }
        // Older jobs only (the newest bore it); O(jobs) at worst, once per name.
        match jobs.range(..job).rev().find(|(_, j)| j.name == n) {
            Some((&older, _)) => entry.1 = older,
            None => {
                self.by_name.remove(name);
                self.names[n as usize - 1].clear();
                self.free.insert(n);
            }
        }
    }

    /// The newest job with this name.
    pub fn newest(&self, name: &str) -> Option<JobId> {
        self.by_name.get(name).map(|&(_, job)| job)
    }

    /// Rebuilds the index from the names and the jobs (restore, invariant checks).
    pub fn rebuild(names: Vec<String>, jobs: &BTreeMap<JobId, JobRec>) -> JobNames {
        let mut by_name: BTreeMap<Box<str>, (u32, JobId)> = BTreeMap::new();
        let mut newest = vec![JobId(0); names.len()];
        for (&id, j) in jobs {
            if j.name != 0
                && let Some(slot) = newest.get_mut(j.name as usize - 1)
            {
                *slot = id;
            }
        }
        let mut free = BTreeSet::new();
        for (i, (name, job)) in names.iter().zip(newest).enumerate() {
            if name.is_empty() {
                free.insert(i as u32 + 1);
            } else if job.0 != 0 {
                // A name nothing points at (from before names were freed) resolves to
                // nothing rather than to job 0.
                by_name.insert(name.as_str().into(), (i as u32 + 1, job));
            }
        }
        JobNames {
            names,
            by_name,
            free,
        }
    }
}

impl crate::scheduler::Scheduler {
    /// What a key reference names among the tasks submitted so far (see `KeyRef`).
    pub(crate) fn resolve_key(&self, text: &str) -> Result<TaskRange, ResolveError> {
        let (job, named, key) = match KeyRef::parse(text) {
            KeyRef::Bare(key) => {
                return self
                    .keys
                    .newest(key)
                    .ok_or_else(|| ResolveError::NoKey(key.to_string()));
            }
            KeyRef::InJob { job, key } => (job, None, key),
            KeyRef::InNamedJob { name, key } => {
                let job = self
                    .job_names
                    .newest(name)
                    .ok_or_else(|| ResolveError::NoJobNamed(name.to_string()))?;
                (job, Some(name), key)
            }
        };
        let rec = self.jobs.get(&job).ok_or(ResolveError::NoJob(job))?;
        self.keys
            .in_job(key, rec)
            .ok_or_else(|| ResolveError::NoKeyInJob {
                key: key.to_string(),
                job,
                named: named.map(str::to_string),
            })
    }

    /// The key index and job names recomputed from the task table and the jobs (for
    /// the invariant checker).
    pub(crate) fn recompute_key_index(&self) -> KeyIndex {
        let mut keys = KeyIndex::default();
        for (id, rec) in self.tasks.iter() {
            if let Some(k) = rec.spec.key()
                && first_of_entry(rec.array_index, rec.spec.shared())
            {
                let count = rec.spec.shared().expanded_len() as u32;
                keys.insert(k, TaskRange { first: id, count });
            }
        }
        keys
    }
}

/// Whether a task is the first of its entry (a plain task, an array's first element,
/// a split's first slot).
pub(crate) fn first_of_entry(array_index: Option<u32>, spec: &drover_types::TaskSpec) -> bool {
    match (array_index, spec.array) {
        (None, _) => true,
        (Some(a), Some(arr)) => arr.start == a,
        (Some(a), None) => a == 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Event, Scheduler, SchedulerConfig};
    use drover_types::{JobSpec, Millis, TaskId, TaskSpec};

    fn keyed(key: &str) -> TaskSpec {
        TaskSpec {
            key: Some(key.into()),
            ..TaskSpec::command(["x"])
        }
    }

    fn submitted_twice() -> Scheduler {
        let mut s = Scheduler::new(SchedulerConfig::default());
        for _ in 0..2 {
            let job = JobSpec {
                name: "nightly".into(),
                tasks: vec![keyed("a"), keyed("b")],
                ..JobSpec::default()
            };
            s.apply(Millis(1), Event::Submit { job }).unwrap();
        }
        s.check_invariants().unwrap();
        s
    }

    #[test]
    fn a_key_used_in_many_jobs_keeps_every_entry_in_order() {
        let s = submitted_twice();
        let a: Vec<(&str, &[TaskRange])> = s.keys.iter().collect();
        let r = |first| TaskRange {
            first: TaskId(first),
            count: 1,
        };
        assert_eq!(a[0], ("a", &[r(1), r(3)][..]));
        assert_eq!(s.keys.newest("b"), Some(r(4)));
        assert_eq!(s.keys.in_job("b", &s.jobs[&JobId(1)]), Some(r(2)));
        assert_eq!(s.job_names.newest("nightly"), Some(JobId(2)));
        assert_eq!(s.jobs[&JobId(2)].name, 1);
    }

    #[test]
    fn the_invariant_checker_notices_a_stale_index() {
        let mut s = submitted_twice();
        s.keys.insert(
            "c",
            TaskRange {
                first: TaskId(4),
                count: 1,
            },
        );
        assert!(s.check_invariants().is_err());
        let mut s = submitted_twice();
        s.job_names.record("nightly", JobId(1));
        assert!(s.check_invariants().is_err());
    }
}
