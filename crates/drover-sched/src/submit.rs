//! Submission: validation against the task table, id assignment, dependency wiring.

use crate::error::CoreError;
use crate::scheduler::{Applied, MAX_EXPANDED_DEPS_PER_JOB, Scheduler, ix};
use crate::stored_spec::StoredSpec;
use crate::task_table::{JobRec, NEVER, NO_WORKER, TaskRec};
use crate::view::TaskRange;
use drover_types::{
    DepRef, JobId, JobSpec, Millis, TaskId, TaskState, ValidationError, validate_job,
};
use std::collections::HashMap;
use std::sync::Arc;

impl Scheduler {
    pub(crate) fn submit(&mut self, job: JobSpec) -> Result<Applied, CoreError> {
        validate_job(&job, &self.config.limits)?;
        let first = self.tasks.next_id().0;
        // Plan the ids and resolve references before touching anything (atomic
        // submission). Keys are unique within the job (`validate_job`), not beyond.
        let mut starts = Vec::with_capacity(job.tasks.len());
        // Lookups only, never iterated.
        let mut local: HashMap<&str, TaskRange> = HashMap::new();
        let mut next = first;
        for t in &job.tasks {
            let n = t.expanded_len();
            if let Some(k) = &t.key {
                local.insert(
                    k,
                    TaskRange {
                        first: TaskId(next),
                        count: n as u32,
                    },
                );
            }
            starts.push(next);
            next += n;
        }
        let mut resolved: Vec<Arc<[TaskId]>> = Vec::with_capacity(job.tasks.len());
        let mut edges: u64 = 0;
        // Tasks without dependencies share one empty list (no allocation per task).
        let no_deps: Arc<[TaskId]> = Arc::from([]);
        for (i, t) in job.tasks.iter().enumerate() {
            let mut deps = Vec::new();
            for (j, d) in t.after.iter().enumerate() {
                let range = match d {
                    DepRef::Id(id) if self.tasks.get(*id).is_some() => TaskRange {
                        first: *id,
                        count: 1,
                    },
                    DepRef::Id(id) if self.task_retired(*id) => {
                        return Err(ValidationError::new(
                            format!("tasks[{i}].after[{j}]"),
                            format!("task {id} was retired (finished tasks are not kept for ever)"),
                        )
                        .into());
                    }
                    DepRef::Id(id) => {
                        return Err(ValidationError::new(
                            format!("tasks[{i}].after[{j}]"),
                            format!("no task {id} (tasks of the same job are referred to by key)"),
                        )
                        .into());
                    }
                    // A bare key of this job names its task; anything else names
                    // tasks submitted before (newest key, or the job it qualifies).
                    DepRef::Key(k) => match local.get(k.as_str()) {
                        Some(r) => *r,
                        None => self.resolve_key(k).map_err(|e| {
                            ValidationError::new(format!("tasks[{i}].after[{j}]"), e.to_string())
                        })?,
                    },
                };
                // Checked before expanding, so that an oversized job is refused
                // without first allocating its edges.
                edges += range.count as u64 * t.expanded_len();
                if edges > MAX_EXPANDED_DEPS_PER_JOB {
                    return Err(ValidationError::new(
                        format!("tasks[{i}].after"),
                        format!("the job's dependencies expand to more than {MAX_EXPANDED_DEPS_PER_JOB} edges"),
                    )
                    .into());
                }
                deps.extend((0..range.count as u64).map(|k| TaskId(range.first.0 + k)));
            }
            resolved.push(if deps.is_empty() {
                no_deps.clone()
            } else {
                deps.into()
            });
        }

        // Accepted: create the records.
        let now = self.now;
        let job_id = self.next_job;
        let job_name = self.job_names.record(&job.name, job_id);
        let default_owner = job.owner;
        self.tasks.reserve((next - first) as usize);
        let mut last: Option<(u32, u32, StoredSpec)> = None;
        for (mut spec, deps) in job.tasks.into_iter().zip(resolved) {
            if spec.owner.is_empty() {
                spec.owner.clone_from(&default_owner);
            }
            // Consecutive tasks of a job usually share owner and shape: compare with
            // the previous one before hashing.
            let owner = match &last {
                Some((o, _, prev)) if prev.shared().owner == spec.owner => *o,
                _ => self.owners.intern(&spec.owner),
            };
            let shape = match &last {
                Some((_, sh, prev))
                    if prev.shared().resources == spec.resources
                        && prev.shared().constraints == spec.constraints
                        && prev.shared().inputs.is_empty() == spec.inputs.is_empty()
                        && prev.shared().affinity.is_empty() == spec.affinity.is_empty()
                        && prev.shared().driver == spec.driver =>
                {
                    *sh
                }
                _ => self.shapes.intern(&spec),
            };
            let n = spec.expanded_len();
            let array = spec.array;
            let split = spec.split.is_some();
            let first_of_entry = self.tasks.next_id();
            if let Some(k) = &spec.key {
                self.keys.insert(
                    k,
                    TaskRange {
                        first: first_of_entry,
                        count: n as u32,
                    },
                );
            }
            let limit_ms = spec.max_runtime_ms.unwrap_or(0);
            let split_spec = spec.split.clone().map(|s| (s, spec.resources.clone()));
            // One spec for all the elements of an array; a plain task keeps its own key,
            // name and command over the template it shares with the one before.
            let spec = StoredSpec::new(spec, last.as_ref().map(|(_, _, prev)| prev));
            for k in 0..n {
                self.tasks.push(TaskRec {
                    spec: spec.clone(),
                    job: job_id,
                    deps: deps.clone(),
                    children: Vec::new(),
                    attempts: Vec::new(),
                    submitted_at: now,
                    ready_at: NEVER,
                    started_at: None,
                    ended_at: None,
                    wake_at: Millis::ZERO,
                    limit_ms,
                    attempt: 0,
                    spent: 0,
                    remaining: 0,
                    // A split's slots are numbered like an array's elements.
                    array_index: match array {
                        Some(a) => Some(a.start + k as u32),
                        None if split => Some(k as u32),
                        None => None,
                    },
                    owner,
                    shape,
                    holder: NO_WORKER,
                    slot: 0,
                    state: TaskState::Waiting,
                    kill: None,
                });
            }
            if let Some((split, resources)) = &split_spec {
                self.split_submitted(first_of_entry, split, resources);
            }
            last = Some((owner, shape, spec));
        }
        self.counts[TaskState::Waiting as usize] += next - first;
        self.jobs.insert(
            job_id,
            JobRec {
                first: TaskId(first),
                count: (next - first) as u32,
                name: job_name,
                states: {
                    let mut states = [0; TaskState::ALL.len()];
                    states[TaskState::Waiting as usize] = (next - first) as u32;
                    states
                },
                done_at: Millis::ZERO,
            },
        );
        self.next_job = JobId(job_id.0 + 1);

        // Wire the dependency edges, then release what can go.
        let mut blamed: Vec<(TaskId, TaskId)> = Vec::new();
        let mut scratch: Vec<TaskId> = Vec::new();
        for n in first..next {
            let id = TaskId(n);
            let deps = self.tasks[ix(id)].deps.clone();
            if deps.is_empty() {
                continue;
            }
            scratch.clear();
            scratch.extend_from_slice(&deps);
            scratch.sort_unstable();
            scratch.dedup();
            let mut remaining = 0;
            let mut blame = None;
            for &p in &scratch {
                let parent = &mut self.tasks[ix(p)];
                // Every edge, also to a parent already final: retirement reads
                // `children` to keep a parent while a dependant is still to run.
                parent.children.push(id);
                match parent.state {
                    TaskState::Succeeded => {}
                    s if s.is_final() => {
                        blame.get_or_insert(p);
                    }
                    _ => remaining += 1,
                }
            }
            self.tasks[ix(id)].remaining = remaining;
            if let Some(p) = blame {
                blamed.push((id, p));
            }
        }
        let mut blamed = blamed.into_iter().peekable();
        for n in first..next {
            let id = TaskId(n);
            let blame = match blamed.peek() {
                Some(&(t, p)) if t == id => {
                    blamed.next();
                    Some(p)
                }
                _ => None,
            };
            if self.tasks[ix(id)].state != TaskState::Waiting {
                continue;
            }
            if let Some(p) = blame {
                self.dependency_failed(id, p);
            } else if self.tasks[ix(id)].remaining == 0 {
                self.make_ready(id);
            }
        }
        Ok(Applied {
            job: Some((
                job_id,
                TaskRange {
                    first: TaskId(first),
                    count: (next - first) as u32,
                },
            )),
            ..Applied::default()
        })
    }
}
