//! The state machine: the scheduling core plus what the core need not know (results,
//! measured usage), applied entry by entry.

use crate::acl::{TokenSnapshot, TokenTable};
use crate::command::{Command, CommandResult, LogEntry, Rejection};
use crate::idempotency::{IdempotencyWindow, KeyLookup, KeyRecord};
use crate::result_cache::{CacheSnapshot, Removed, ResultCache};
use crate::staging::{StagedUploads, UploadRecord};
use crate::worker_identity::WorkerIdentities;
use drover_proto::checkpoint::CheckpointRef;
use drover_proto::events::{ClusterEvent, EventBody, EventId, WorkerChange};
use drover_proto::worker::{AttemptUsage, StartTask};
use drover_sched::{
    Action, Event, KillReason, ResizeSnapshot, Scheduler, SchedulerConfig, SchedulerSnapshot,
    TaskRange, Transition,
};
use drover_types::{
    Attempt, JobId, JobSpec, Millis, Resources, TaskId, TaskState, WorkerId, WorkerState,
};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// What the state machine keeps per task besides the core's own record.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskRecord {
    /// The result of the latest attempt that reported one (the start of its stdout).
    pub result: Option<String>,
    /// Measured usage per attempt, as reported when each attempt ended.
    pub usage: Vec<(Attempt, AttemptUsage)>,
    pub stdout_bytes: u64,
    pub stderr_bytes: u64,
    pub output_truncated: bool,
    /// The latest checkpoint saved, for a task that checkpoints: its next attempt
    /// resumes from it.
    #[serde(default)]
    pub checkpoint: Option<CheckpointRef>,
    /// The checkpoint each attempt was started from, when it was started from one.
    #[serde(default)]
    pub resumed: Vec<(Attempt, CheckpointRef)>,
}

/// A job as submitted: its name and its tasks' ids.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobRecord {
    pub name: String,
    pub first: TaskId,
    pub count: u32,
}

/// Something the leader must do after an entry is applied. Followers compute the same
/// list and drop it.
#[derive(Clone, Debug, PartialEq)]
pub enum Dispatch {
    Start {
        worker: WorkerId,
        start: Box<StartTask>,
    },
    Kill {
        worker: WorkerId,
        task: TaskId,
        attempt: Attempt,
        grace_ms: u64,
        reason: KillReason,
    },
    /// The end of this attempt is recorded (or was stale): the worker may forget it.
    FinishedAck {
        worker: WorkerId,
        task: TaskId,
        attempt: Attempt,
    },
    /// A granted resize: the worker sets the attempt's limits to `resources`.
    SetLimits {
        worker: WorkerId,
        task: TaskId,
        attempt: Attempt,
        resources: Resources,
    },
}

/// The durable state, as written into a snapshot.
#[derive(Debug, Serialize, Deserialize)]
pub struct StateSnapshot {
    pub sched: SchedulerSnapshot,
    pub records: BTreeMap<TaskId, TaskRecord>,
    pub jobs: BTreeMap<JobId, JobRecord>,
    /// The remembered idempotency keys, oldest first.
    #[serde(default)]
    pub idempotency: Vec<KeyRecord>,
    /// Client ACL tokens (hashed) and who submitted each job (format version 2).
    #[serde(default)]
    pub tokens: TokenSnapshot,
    /// Join tokens and worker credentials (digests only).
    #[serde(default)]
    pub identities: WorkerIdentities,
    /// The result cache (format version 3).
    #[serde(default)]
    pub cache: CacheSnapshot,
    /// Parts of large jobs sent ahead of their submission (format version 3).
    #[serde(default)]
    pub uploads: Vec<UploadRecord>,
    // format 4: dynamic resources
    /// Resized reservations of placed attempts and the resize decisions per task.
    #[serde(default)]
    pub resizes: ResizeSnapshot,
    // format 4: adaptive splitting
    /// The splits' progress (slices assigned, measured rate); the core's own snapshot
    /// does not encode them.
    #[serde(default)]
    pub splits: Vec<drover_sched::SplitRecord>,
}

#[derive(Debug)]
pub struct StateMachine {
    sched: Scheduler,
    records: BTreeMap<TaskId, TaskRecord>,
    jobs: BTreeMap<JobId, JobRecord>,
    /// Idempotency keys of recent submissions and their answers.
    idempotency: IdempotencyWindow,
    /// Client ACL tokens and the submitter of each job.
    tokens: TokenTable,
    /// Join tokens and worker credentials (see `worker_identity.rs`).
    identities: WorkerIdentities,
    /// The result cache (see `result_cache.rs`).
    cache: ResultCache,
    /// Parts of large jobs waiting for their submission (see `staging.rs`).
    uploads: StagedUploads,
    /// Per job, its tasks in a final state and those of them that did not succeed.
    /// Derived (rebuilt on restore, not in snapshots): it feeds the job progress events.
    progress: BTreeMap<JobId, Progress>,
    /// Scratch space reused by every apply.
    transitions: Vec<Transition>,
    touched_jobs: Vec<JobId>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Progress {
    done: u64,
    failed: u64,
}

/// What applying one entry gave: a result per command, the dispatches for the leader,
/// and the events every replica derives identically (ids `index-0`, `index-1`, …).
#[derive(Debug, Default)]
pub struct Output {
    pub results: Vec<CommandResult>,
    pub dispatches: Vec<Dispatch>,
    pub events: Vec<ClusterEvent>,
    /// The tasks retired by this entry (whole jobs, hence ranges): every server removes
    /// what it keeps of them outside the state (output files).
    pub retired: Vec<TaskRange>,
}

/// Builds the events of one entry, numbering them as they come.
struct Events<'a> {
    index: u64,
    at: Millis,
    out: &'a mut Vec<ClusterEvent>,
}

impl Events<'_> {
    fn push(&mut self, body: EventBody) {
        let seq = self.out.len() as u32;
        self.out.push(ClusterEvent {
            id: EventId::new(self.index, seq),
            at: self.at,
            body,
        });
    }
}

impl StateMachine {
    pub fn new(config: SchedulerConfig) -> StateMachine {
        let mut sched = Scheduler::new(config);
        sched.record_transitions(true);
        StateMachine {
            sched,
            records: BTreeMap::new(),
            jobs: BTreeMap::new(),
            idempotency: IdempotencyWindow::default(),
            tokens: TokenTable::default(),
            identities: WorkerIdentities::default(),
            cache: ResultCache::default(),
            uploads: StagedUploads::default(),
            progress: BTreeMap::new(),
            transitions: Vec::new(),
            touched_jobs: Vec::new(),
        }
    }

    pub fn scheduler(&self) -> &Scheduler {
        &self.sched
    }

    pub fn record(&self, task: TaskId) -> Option<&TaskRecord> {
        self.records.get(&task)
    }

    pub fn job(&self, job: JobId) -> Option<&JobRecord> {
        self.jobs.get(&job)
    }

    /// The cluster's join tokens and worker credentials.
    pub fn identities(&self) -> &WorkerIdentities {
        &self.identities
    }

    /// The result cache.
    pub fn cache(&self) -> &ResultCache {
        &self.cache
    }

    /// The idempotency keys remembered (bounded; see `idempotency.rs`).
    pub fn idempotency(&self) -> &IdempotencyWindow {
        &self.idempotency
    }

    /// The client ACL tokens.
    pub fn tokens(&self) -> &TokenTable {
        &self.tokens
    }

    /// Parts of large jobs waiting for their submission.
    pub fn uploads(&self) -> &StagedUploads {
        &self.uploads
    }

    /// Applies one log entry: every command in order, then one scheduling round.
    /// The events are dropped; see [`StateMachine::apply_indexed`].
    pub fn apply(&mut self, entry: &LogEntry) -> (Vec<CommandResult>, Vec<Dispatch>) {
        let out = self.apply_indexed(0, entry);
        (out.results, out.dispatches)
    }

    /// Applies the log entry at `index`: every command in order, then one scheduling
    /// round; also derives the entry's events, numbered `index-0`, `index-1`, … in the
    /// order things happened: per command its worker or policy change and the task
    /// state changes it caused, then those of the round, then one progress event per
    /// job submitted or advanced by the entry.
    pub fn apply_indexed(&mut self, index: u64, entry: &LogEntry) -> Output {
        self.apply_entry(index, entry.clone())
    }

    /// [`StateMachine::apply_indexed`], taking the entry: a submission's task specs
    /// move into the core instead of being copied (a job of 1,000,000 tasks is
    /// hundreds of MiB of specs; the server applies what it owns through here).
    pub fn apply_entry(&mut self, index: u64, entry: LogEntry) -> Output {
        let now = entry.now;
        let mut out = Output {
            results: Vec::with_capacity(entry.commands.len()),
            ..Output::default()
        };
        let mut events = Events {
            index,
            at: now,
            out: &mut out.events,
        };
        self.touched_jobs.clear();
        self.idempotency.expire(now);
        self.uploads.expire(now);
        for mut command in entry.commands {
            if let Some(result) = self.replayed(&command) {
                // A retry of a submission already applied: answered as it was then,
                // changing nothing (no events either). Parts it sent ahead are dropped.
                if let Command::Submit {
                    staged: Some(r), ..
                } = &command
                {
                    self.uploads.discard(r.upload);
                }
                out.results.push(result);
                continue;
            }
            let before = self.worker_state_before(&command);
            let result =
                self.apply_command(now, &mut command, &mut out.dispatches, &mut out.retired);
            self.command_events(&command, &result, before, &mut events);
            self.task_events(&mut events);
            out.results.push(result);
        }
        let plan = self.sched.schedule(now);
        for action in plan.actions {
            self.push_action(action, &mut out.dispatches);
        }
        self.task_events(&mut events);
        self.job_events(&mut events);
        out
    }

    /// The answer to a keyed submission seen before, if this is one.
    fn replayed(&self, command: &Command) -> Option<CommandResult> {
        let Command::Submit {
            idempotency: Some(key),
            ..
        } = command
        else {
            return None;
        };
        match self.idempotency.lookup(key) {
            KeyLookup::New => None,
            KeyLookup::Replay { job, tasks } => Some(CommandResult::Replayed { job, tasks }),
            KeyLookup::Conflict => Some(CommandResult::Rejected(Rejection {
                code: "conflict".into(),
                message: format!(
                    "the Idempotency-Key {:?} was used for a different submission; use a new key for a new submission",
                    key.key
                ),
                field: Some("Idempotency-Key".into()),
            })),
        }
    }

    fn worker_state_before(&self, command: &Command) -> Option<WorkerState> {
        match command {
            Command::WorkerLost { worker }
            | Command::WorkerDrain { worker }
            | Command::WorkerResume { worker } => self.sched.worker(*worker).map(|w| w.state),
            _ => None,
        }
    }

    /// The worker, policy and submission events of one applied command.
    fn command_events(
        &mut self,
        command: &Command,
        result: &CommandResult,
        before: Option<WorkerState>,
        events: &mut Events<'_>,
    ) {
        if matches!(result, CommandResult::Rejected(_)) {
            return;
        }
        let worker_event = |sched: &Scheduler, worker: WorkerId, change: WorkerChange| {
            sched.worker(worker).map(|w| EventBody::Worker {
                worker,
                name: w.spec.name.clone(),
                change,
                state: w.state,
            })
        };
        let body = match (command, result) {
            (Command::Submit { .. }, CommandResult::Submitted { job, .. }) => {
                self.touched_jobs.push(*job);
                self.progress.entry(*job).or_default();
                None
            }
            (Command::WorkerJoin { .. }, CommandResult::WorkerJoined { worker }) => {
                worker_event(&self.sched, *worker, WorkerChange::Joined)
            }
            (Command::WorkerLost { worker }, _) if before != Some(WorkerState::Lost) => {
                worker_event(&self.sched, *worker, WorkerChange::Lost)
            }
            (Command::WorkerDrain { worker }, _) if before == Some(WorkerState::Active) => {
                worker_event(&self.sched, *worker, WorkerChange::Drained)
            }
            (Command::WorkerResume { worker }, _) if before == Some(WorkerState::Draining) => {
                worker_event(&self.sched, *worker, WorkerChange::Resumed)
            }
            (Command::SetPolicy { .. }, _) => Some(EventBody::Policy {
                policy: self.sched.policy().clone(),
            }),
            _ => None,
        };
        if let Some(body) = body {
            events.push(body);
        }
    }

    /// One event per task state change the core recorded since the last call. The
    /// result cache sees the changes first: what it does (a task completed from the
    /// cache, one held back) makes more changes, followed until there are none.
    fn task_events(&mut self, events: &mut Events<'_>) {
        let mut seen = 0;
        loop {
            self.sched.take_transitions(&mut self.transitions);
            if seen == self.transitions.len() {
                break;
            }
            let batch = self.transitions[seen..].to_vec();
            seen = self.transitions.len();
            self.cache
                .on_transitions(events.at, &mut self.sched, &mut self.records, &batch);
        }
        for t in self.transitions.drain(..) {
            let Some(view) = self.sched.task(t.task) else {
                continue;
            };
            let last = view.attempts.last();
            let ended = t.from.is_on_worker();
            let worker = if t.to.is_on_worker() {
                view.worker
            } else if ended {
                last.map(|a| a.worker)
            } else {
                None
            };
            let (outcome, failure) = match last {
                Some(a) if ended => (a.outcome.clone(), a.failure.clone()),
                _ => (None, None),
            };
            let job = view.job;
            if t.from.is_final() != t.to.is_final() {
                let p = self.progress.entry(job).or_default();
                let failed = |s: TaskState| s.is_final() && s != TaskState::Succeeded;
                if t.to.is_final() {
                    p.done += 1;
                    p.failed += failed(t.to) as u64;
                } else {
                    p.done = p.done.saturating_sub(1);
                    p.failed = p.failed.saturating_sub(failed(t.from) as u64);
                }
                if self.touched_jobs.last() != Some(&job) {
                    self.touched_jobs.push(job);
                }
            }
            events.push(EventBody::Task {
                task: t.task,
                job,
                from: t.from,
                state: t.to,
                attempt: view.attempt,
                worker,
                outcome,
                failure,
                cached_from: if t.to == TaskState::Succeeded {
                    self.cache.served_from(t.task)
                } else {
                    None
                },
            });
        }
    }

    /// One progress event per job submitted or advanced in this entry, by job id.
    fn job_events(&mut self, events: &mut Events<'_>) {
        if self.touched_jobs.is_empty() {
            return;
        }
        self.touched_jobs.sort_unstable();
        self.touched_jobs.dedup();
        for job in self.touched_jobs.drain(..) {
            let (Some(rec), Some(p)) = (self.jobs.get(&job), self.progress.get(&job)) else {
                continue;
            };
            events.push(EventBody::Job {
                job,
                name: rec.name.clone(),
                done: p.done,
                failed: p.failed,
                total: rec.count as u64,
            });
        }
    }

    /// Applies one command. A submission's tasks are taken out of `command` (moved
    /// into the core): afterwards its `job.tasks` is empty.
    fn apply_command(
        &mut self,
        now: Millis,
        command: &mut Command,
        out: &mut Vec<Dispatch>,
        retired: &mut Vec<TaskRange>,
    ) -> CommandResult {
        let event = match command {
            Command::Submit { job, staged, .. } => {
                let mut tasks = std::mem::take(&mut job.tasks);
                if let Some(r) = staged {
                    match self.uploads.take(r) {
                        Ok(mut ahead) => {
                            ahead.append(&mut tasks);
                            tasks = ahead;
                        }
                        Err(e) => return CommandResult::Rejected(Rejection::from(&e)),
                    }
                }
                Event::Submit {
                    job: JobSpec {
                        name: job.name.clone(),
                        owner: job.owner.clone(),
                        tasks,
                    },
                }
            }
            Command::SubmitPart {
                upload,
                part,
                tasks,
            } => {
                return match self
                    .uploads
                    .add_part(now, *upload, *part, std::mem::take(tasks))
                {
                    Ok(()) => CommandResult::PartStaged {
                        upload: *upload,
                        part: *part,
                    },
                    Err(e) => CommandResult::Rejected(Rejection::from(&e)),
                };
            }
            Command::Cancel { target } => Event::Cancel { target: *target },
            Command::WorkerJoin { spec, running } => Event::WorkerJoin {
                spec: spec.clone(),
                running: running.clone(),
            },
            Command::WorkerLost { worker } => Event::WorkerLost { worker: *worker },
            Command::WorkerDrain { worker } => Event::WorkerDrain { worker: *worker },
            Command::WorkerResume { worker } => Event::WorkerResume { worker: *worker },
            Command::WorkerUpdate {
                worker,
                usage,
                data_keys,
            } => Event::WorkerHeartbeat {
                worker: *worker,
                usage: usage.clone(),
                data_keys: data_keys.clone(),
            },
            Command::TaskStarted {
                task,
                attempt,
                worker,
                gpus,
            } => Event::TaskStarted {
                task: *task,
                attempt: *attempt,
                worker: *worker,
                gpus: gpus.clone(),
            },
            Command::TaskFinished { worker, report } => {
                // Whatever the core says, the worker may forget this report: either it
                // is recorded now or it is stale and never will be.
                out.push(Dispatch::FinishedAck {
                    worker: *worker,
                    task: report.task,
                    attempt: report.attempt,
                });
                self.sched.report_runtime(report.task, report.usage.wall_ms);
                Event::TaskFinished {
                    task: report.task,
                    attempt: report.attempt,
                    worker: *worker,
                    outcome: report.outcome.clone(),
                }
            }
            Command::SetPolicy { policy } => Event::SetPolicy {
                policy: policy.clone(),
            },
            Command::Tick => return CommandResult::Done,
            Command::TokenCreate { token } => {
                return CommandResult::TokenCreated {
                    id: self.tokens.create(now, token),
                };
            }
            Command::TokenRevoke { id } => {
                return if self.tokens.revoke(now, *id) {
                    CommandResult::Done
                } else {
                    CommandResult::Rejected(Rejection {
                        code: "not_found".into(),
                        message: format!("no token {id}"),
                        field: Some("id".into()),
                    })
                };
            }
            Command::JoinTokenCreate {
                id,
                digest,
                ttl_ms,
                uses,
            } => {
                self.identities.expire(now);
                return Self::identity_result(
                    self.identities
                        .create_token(now, id, digest, *ttl_ms, *uses)
                        .map(drop),
                );
            }
            Command::WorkerEnroll {
                token,
                token_digest,
                name,
                credential,
                credential_digest,
            } => {
                let enrolled = self.identities.enroll(
                    now,
                    token,
                    token_digest,
                    name,
                    credential,
                    credential_digest,
                );
                self.identities.expire(now);
                return Self::identity_result(enrolled);
            }
            Command::WorkerRevoke { name } => {
                return Self::identity_result(self.identities.revoke(name).map(drop));
            }
            Command::CacheRemove { key } => {
                return match self.cache.remove(Some(key)) {
                    Removed::Entries(count) => CommandResult::CacheRemoved { count },
                    Removed::NoSuchKey => CommandResult::Rejected(Rejection {
                        code: "not_found".into(),
                        message: format!("no cache entry with the key {key:?}"),
                        field: Some("key".into()),
                    }),
                };
            }
            Command::CacheClear => {
                return match self.cache.remove(None) {
                    Removed::Entries(count) => CommandResult::CacheRemoved { count },
                    Removed::NoSuchKey => CommandResult::CacheRemoved { count: 0 },
                };
            }
            Command::CheckpointSaved { task, checkpoint } => {
                return self.checkpoint_saved(now, *task, checkpoint);
            }
            Command::Retire { keep_ms, keep_max } => Event::Retire {
                keep_ms: *keep_ms,
                keep_max: *keep_max,
            },
            Command::Resize {
                task,
                attempt,
                worker,
                request,
            } => Event::Resize {
                task: *task,
                attempt: *attempt,
                worker: *worker,
                request: request.clone(),
            },
        };
        match self.sched.apply(now, event) {
            Ok(applied) => {
                if let Command::TaskFinished { report, .. } = command {
                    let record = self.records.entry(report.task).or_default();
                    record.result = Some(report.result.clone());
                    record.usage.push((report.attempt, report.usage));
                    record.stdout_bytes = report.stdout_bytes;
                    record.stderr_bytes = report.stderr_bytes;
                    record.output_truncated = report.output_truncated;
                }
                for action in applied.actions {
                    self.push_action(action, out);
                }
                if let Command::Retire { .. } = command {
                    return self.forget_retired(now, &applied.retired, retired);
                }
                if let Some(decision) = applied.resize {
                    return CommandResult::Resized { decision };
                }
                if let Some((job_id, tasks)) = applied.job {
                    let name = match command {
                        Command::Submit {
                            job,
                            idempotency,
                            submitter,
                            ..
                        } => {
                            if let Some(key) = idempotency {
                                self.idempotency.remember(now, key, job_id, tasks);
                            }
                            if let Some(token) = submitter {
                                self.tokens.record_submitter(job_id, *token);
                            }
                            job.name.clone()
                        }
                        _ => String::new(),
                    };
                    self.cache.submitted(&self.sched, tasks);
                    self.jobs.insert(
                        job_id,
                        JobRecord {
                            name,
                            first: tasks.first,
                            count: tasks.count,
                        },
                    );
                    CommandResult::Submitted { job: job_id, tasks }
                } else if let Some(worker) = applied.worker {
                    CommandResult::WorkerJoined { worker }
                } else if matches!(command, Command::Cancel { .. }) {
                    CommandResult::Cancelled {
                        count: applied.cancelled,
                    }
                } else {
                    CommandResult::Done
                }
            }
            Err(e) => CommandResult::Rejected(Rejection::from(&e)),
        }
    }

    /// Records a checkpoint as the task's latest, if it is newer than the one recorded
    /// (an attempt's versions come in order; a later attempt's are newer) and the task
    /// still wants one (not retired, checkpointing, not over).
    fn checkpoint_saved(
        &mut self,
        now: Millis,
        task: TaskId,
        checkpoint: &CheckpointRef,
    ) -> CommandResult {
        let reject = |code: &str, message: String| {
            CommandResult::Rejected(Rejection {
                code: code.into(),
                message,
                field: None,
            })
        };
        let Some(view) = self.sched.task(task) else {
            return reject("not_found", format!("no task {task}"));
        };
        if view.spec.shared().checkpoint.is_none() {
            return reject(
                "invalid_request",
                format!("task {task} does not take checkpoints"),
            );
        }
        if checkpoint.attempt > view.attempt {
            return reject(
                "stale",
                format!("task {task} has no attempt {}", checkpoint.attempt),
            );
        }
        let record = self.records.entry(task).or_default();
        if let Some(have) = &record.checkpoint
            && (have.attempt, have.version) >= (checkpoint.attempt, checkpoint.version)
        {
            return reject(
                "stale",
                format!("task {task} has a checkpoint as new already ({have})"),
            );
        }
        let mut saved = checkpoint.clone();
        saved.saved_at = now;
        record.checkpoint = Some(saved);
        CommandResult::Done
    }

    fn identity_result(r: Result<(), crate::worker_identity::IdentityError>) -> CommandResult {
        match r {
            Ok(()) => CommandResult::Done,
            Err(e) => CommandResult::Rejected(Rejection::from(&e)),
        }
    }

    /// Drops what the state machine keeps beside the core for retired jobs. No event:
    /// nothing a watcher follows changed state (their final events went out when they
    /// ended), and a reader learns of a retirement by asking (`410 Gone`).
    fn forget_retired(
        &mut self,
        now: Millis,
        jobs: &[(JobId, TaskRange)],
        retired: &mut Vec<TaskRange>,
    ) -> CommandResult {
        let mut tasks = 0;
        for &(job, range) in jobs {
            self.jobs.remove(&job);
            self.progress.remove(&job);
            self.tokens.forget_job(job);
            for n in range.first.0..range.first.0 + range.count as u64 {
                self.records.remove(&TaskId(n));
            }
            tasks += range.count as u64;
            retired.push(range);
        }
        self.cache
            .retired(now, &retired[retired.len() - jobs.len()..]);
        CommandResult::Retired {
            jobs: jobs.len() as u64,
            tasks,
        }
    }

    fn push_action(&mut self, action: Action, out: &mut Vec<Dispatch>) {
        match action {
            Action::Start {
                task,
                attempt,
                worker,
            } => {
                if let Some(start) = self.start_message(task, attempt) {
                    if let Some(resume) = &start.resume {
                        // Which checkpoint each attempt started from, for `status`.
                        let record = self.records.entry(task).or_default();
                        record.resumed.retain(|(a, _)| *a != attempt);
                        record.resumed.push((attempt, resume.clone()));
                    }
                    out.push(Dispatch::Start {
                        worker,
                        start: Box::new(start),
                    });
                }
            }
            Action::Kill {
                task,
                attempt,
                worker,
                reason,
                grace_ms,
            } => out.push(Dispatch::Kill {
                worker,
                task,
                attempt,
                grace_ms,
                reason,
            }),
            Action::Resize {
                task,
                attempt,
                worker,
                resources,
            } => out.push(Dispatch::SetLimits {
                worker,
                task,
                attempt,
                resources,
            }),
        }
    }

    /// Builds what a worker needs to run an attempt, including the results of the
    /// task's dependencies in order (for split/combine).
    pub fn start_message(&self, task: TaskId, attempt: Attempt) -> Option<StartTask> {
        let view = self.sched.task(task)?;
        // A split's slots that the range did not need ran nothing and give no input.
        let inputs = view
            .deps
            .iter()
            .filter(|d| !self.sched.is_unused_slot(**d))
            .map(|d| {
                self.records
                    .get(d)
                    .and_then(|r| r.result.clone())
                    .unwrap_or_default()
            })
            .collect();
        Some(StartTask {
            task,
            attempt,
            spec: view.spec.to_spec().into_owned(),
            array_index: view.array_index,
            array_count: view.array_count,
            slice: view.slice,
            inputs,
            signature: String::new(),
            resume: self.resume_point(task, attempt, view.spec.shared().checkpoint.is_some()),
        })
    }

    /// The checkpoint `attempt` starts from: the one it was first started from (a
    /// start sent again must say the same), else the task's latest of an earlier attempt.
    fn resume_point(
        &self,
        task: TaskId,
        attempt: Attempt,
        checkpoints: bool,
    ) -> Option<CheckpointRef> {
        let record = self.records.get(&task)?;
        if let Some((_, c)) = record.resumed.iter().find(|(a, _)| *a == attempt) {
            return Some(c.clone());
        }
        record
            .checkpoint
            .clone()
            .filter(|c| checkpoints && c.attempt < attempt)
    }

    pub fn snapshot(&self) -> StateSnapshot {
        let sched = self.sched.snapshot();
        StateSnapshot {
            splits: sched.splits().to_vec(),
            sched,
            records: self.records.clone(),
            jobs: self.jobs.clone(),
            idempotency: self.idempotency.records(),
            tokens: self.tokens.snapshot(),
            identities: self.identities.clone(),
            cache: self.cache.snapshot(),
            uploads: self.uploads.snapshot(),
            resizes: self.sched.resize_snapshot(),
        }
    }

    pub fn restore(snapshot: StateSnapshot) -> StateMachine {
        let mut sched = snapshot.sched;
        sched.set_splits(snapshot.splits);
        // Snapshots from before the core knew job names: it learns them from ours.
        sched.adopt_job_names(|job| snapshot.jobs.get(&job).map(|r| r.name.as_str()));
        let mut sched = Scheduler::restore(sched);
        sched.restore_resizes(snapshot.resizes);
        sched.record_transitions(true);
        let cache = ResultCache::restore(snapshot.cache, &mut sched);
        let mut progress = BTreeMap::new();
        for (&job, rec) in &snapshot.jobs {
            let mut p = Progress::default();
            for n in 0..rec.count as u64 {
                if let Some(v) = sched.task(TaskId(rec.first.0 + n))
                    && v.state.is_final()
                {
                    p.done += 1;
                    p.failed += (v.state != TaskState::Succeeded) as u64;
                }
            }
            progress.insert(job, p);
        }
        StateMachine {
            sched,
            records: snapshot.records,
            jobs: snapshot.jobs,
            idempotency: IdempotencyWindow::restore(snapshot.idempotency),
            tokens: TokenTable::restore(snapshot.tokens),
            identities: snapshot.identities,
            cache,
            uploads: StagedUploads::restore(snapshot.uploads),
            progress,
            transitions: Vec::new(),
            touched_jobs: Vec::new(),
        }
    }
}
