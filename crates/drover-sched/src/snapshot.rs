//! Snapshots: the durable state of the core, from which a replica rebuilds an
//! identical one. Only the task table, the jobs (and their names), the workers and a few
//! counters are stored; every index (queues, timers, free-CPU index, key index, job-name
//! index, shapes) is rebuilt, so a snapshot cannot disagree with itself.

use crate::keys::{JobNames, KeyIndex};
use crate::queue::ReadyQueue;
use crate::scheduler::{Scheduler, SchedulerConfig};
use crate::stored_spec::StoredSpec;
use crate::task_slots::TaskSlots;
use crate::task_table::{JobRec, Owners, TaskRec};
use crate::worker_pool::{WorkerPool, WorkerRec};
use crate::{placement, queue_policy};
use drover_types::{JobId, Millis, TaskId, WorkerId, WorkerState};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;

/// The durable state of a scheduler, from which [`Scheduler::restore`] rebuilds an
/// identical one (indexes are rebuilt, not stored). Its `Debug` output is a summary.
#[derive(Clone, Serialize, Deserialize)]
pub struct SchedulerSnapshot {
    #[serde(with = "crate::compact::config")]
    config: SchedulerConfig,
    now: Millis,
    /// The tasks held, in id order.
    tasks: Vec<TaskRec>,
    /// Their ids, when some were retired (empty: the tasks are 1, 2, 3, …).
    #[serde(default)]
    task_ids: Vec<TaskId>,
    /// The next task id to issue (0: one past the last task).
    #[serde(default)]
    next_task: u64,
    /// Each spec once: (index of the first task of the run of tasks sharing it, spec).
    #[serde(with = "crate::compact::specs")]
    specs: Vec<(u64, StoredSpec)>,
    jobs: Vec<JobRec>,
    /// The jobs' ids, when some were retired (empty: 1, 2, 3, …).
    #[serde(default)]
    job_ids: Vec<JobId>,
    /// The next job id to issue (0: one past the last job).
    #[serde(default)]
    next_job: u64,
    workers: Vec<WorkerRec>,
    rr_cursor: u32,
    owners: Owners,
    /// Job names in order of first use (`JobRec::name` counts from 1 into these).
    #[serde(default)]
    job_names: Vec<String>,
    dep_failed_by: BTreeMap<TaskId, TaskId>,
    /// Fair-share tie-break state (see `Scheduler::share_of`).
    #[serde(default)]
    placements: u64,
    #[serde(default)]
    owner_last_served: Vec<u64>,
    /// format 4: adaptive splitting. Not in the core's own encoding: the state
    /// machine's snapshot carries them (`StateSnapshot::splits`) and hands them back
    /// with [`SchedulerSnapshot::set_splits`] before the restore.
    #[serde(skip)]
    splits: Vec<crate::split::SplitRecord>,
}

impl std::fmt::Debug for SchedulerSnapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SchedulerSnapshot")
            .field("now", &self.now)
            .field("tasks", &self.tasks.len())
            .field("jobs", &self.jobs.len())
            .field("workers", &self.workers.len())
            .finish()
    }
}

impl SchedulerSnapshot {
    /// The `now` the core had reached.
    pub fn now(&self) -> Millis {
        self.now
    }

    pub fn task_count(&self) -> usize {
        self.tasks.len()
    }

    /// The splits' progress (format 4: adaptive splitting), kept by the state machine.
    pub fn splits(&self) -> &[crate::split::SplitRecord] {
        &self.splits
    }

    /// Gives back the splits read from the state machine's snapshot.
    pub fn set_splits(&mut self, splits: Vec<crate::split::SplitRecord>) {
        self.splits = splits;
    }

    /// For a snapshot written before the core kept job names (it has none): names its
    /// jobs from `name_of`, so that `JOB_NAME/KEY` finds them after an upgrade. Does
    /// nothing to a snapshot that has names.
    pub fn adopt_job_names<'a>(&mut self, name_of: impl Fn(JobId) -> Option<&'a str>) {
        if !self.job_names.is_empty() {
            return;
        }
        let mut names = JobNames::default();
        for (i, job) in self.jobs.iter_mut().enumerate() {
            let id = self.job_ids.get(i).copied().unwrap_or(JobId(i as u64 + 1));
            job.name = name_of(id).map_or(0, |n| names.record(n, id));
        }
        self.job_names = names.names;
    }
}

pub(crate) fn take(s: &Scheduler) -> SchedulerSnapshot {
    let mut specs: Vec<(u64, StoredSpec)> = Vec::new();
    let mut tasks = Vec::with_capacity(s.tasks.len());
    let mut task_ids = Vec::with_capacity(s.tasks.len());
    for (i, (id, rec)) in s.tasks.iter().enumerate() {
        task_ids.push(id);
        tasks.push(rec.clone());
        if specs
            .last()
            .is_none_or(|(_, last)| !last.same_whole(&rec.spec))
        {
            specs.push((i as u64, rec.spec.clone()));
        }
    }
    SchedulerSnapshot {
        config: s.config.clone(),
        now: s.now,
        tasks,
        task_ids,
        next_task: s.tasks.next_id().0,
        specs,
        jobs: s.jobs.values().cloned().collect(),
        job_ids: s.jobs.keys().copied().collect(),
        next_job: s.next_job.0,
        workers: s.pool.workers.clone(),
        rr_cursor: s.pool.rr_cursor,
        owners: s.owners.clone(),
        job_names: s.job_names.names.clone(),
        placements: s.placements,
        owner_last_served: s.owner_last_served.clone(),
        dep_failed_by: s.dep_failed_by.clone(),
        splits: s.splits.values().cloned().collect(),
    }
}

pub(crate) fn restore(snap: SchedulerSnapshot) -> Scheduler {
    let SchedulerSnapshot {
        config,
        now,
        mut tasks,
        task_ids,
        next_task,
        specs,
        jobs,
        job_ids,
        next_job,
        workers,
        rr_cursor,
        mut owners,
        job_names,
        dep_failed_by,
        placements,
        owner_last_served,
        splits,
    } = snap;
    let mut runs = specs.into_iter().peekable();
    let mut current: Option<StoredSpec> = None;
    let count = tasks.len();
    for (i, rec) in tasks.iter_mut().enumerate() {
        while let Some((start, _)) = runs.peek() {
            if *start as usize > i {
                break;
            }
            current = runs.next().map(|(_, s)| s);
        }
        // The last task of a run takes its spec; the others (an array's elements)
        // share it.
        let run_ends = match runs.peek() {
            Some((start, _)) => *start as usize <= i + 1,
            None => i + 1 == count,
        };
        rec.spec = if run_ends {
            current.take()
        } else {
            current.clone()
        }
        .unwrap_or_default();
    }
    let task_ids = if task_ids.len() == tasks.len() {
        task_ids
    } else {
        (1..=tasks.len() as u64).map(TaskId).collect()
    };
    // The compact specs do not carry `split`: each split's record gives it back to
    // its slots (before the indexes, whose key ranges count the slots).
    let splits: BTreeMap<TaskId, crate::split::SplitRecord> =
        splits.into_iter().map(|r| (r.first, r)).collect();
    for rec in splits.values() {
        // Task ids are in increasing order.
        let Ok(at) = task_ids.binary_search(&rec.first) else {
            continue;
        };
        let mut spec = tasks[at].spec.to_spec().into_owned();
        spec.split = Some(rec.spec());
        let spec = StoredSpec::whole(Arc::new(spec));
        for t in tasks.iter_mut().skip(at).take(rec.slots as usize) {
            t.spec = spec.clone();
        }
    }
    let next_task = TaskId(next_task.max(task_ids.last().map_or(1, |l| l.0 + 1)));
    let tasks = TaskSlots::from_parts(task_ids, tasks, next_task);
    let job_ids = if job_ids.len() == jobs.len() {
        job_ids
    } else {
        (1..=jobs.len() as u64).map(JobId).collect()
    };
    let next_job = JobId(next_job.max(job_ids.last().map_or(1, |l| l.0 + 1)));
    let jobs: BTreeMap<JobId, JobRec> = job_ids.into_iter().zip(jobs).collect();
    owners.reindex();
    let mut pool = WorkerPool {
        rr_cursor,
        ..WorkerPool::default()
    };
    for (i, w) in workers.into_iter().enumerate() {
        let id = WorkerId(i as u32 + 1);
        let state = w.state;
        pool.by_name.insert(w.spec.name.clone(), id);
        for k in &w.spec.data_keys {
            pool.data.entry(k.clone()).or_default().insert(id);
        }
        if !w.queued.is_empty() {
            pool.with_queue.insert(id);
        }
        pool.workers.push(WorkerRec {
            state: WorkerState::Lost,
            ..w
        });
        pool.set_state(id, state);
    }
    let qpolicy = queue_policy::build(&config.policy.queue);
    let mut s = Scheduler {
        queue: ReadyQueue::new(qpolicy.owner_order()),
        qpolicy,
        placement: placement::build(config.policy.placement),
        config,
        now,
        tasks,
        job_names: JobNames::rebuild(job_names, &jobs),
        jobs,
        next_job,
        complete: Default::default(),
        keys: KeyIndex::default(),
        dep_failed_by,
        counts: [0; 10],
        pool,
        owners,
        owner_usage: Vec::new(),
        placements,
        owner_last_served,
        shapes: Default::default(),
        timers: Default::default(),
        transitions: None,
        held: BTreeMap::new(),
        resizes: Default::default(),
        splits,
        reported_runtime: None,
    };
    s.rebuild_indexes();
    s
}
