//! The scheduler: the task table, the workers, the queues and the policies.
//!
//! Every state change goes through [`Scheduler::apply`] (one committed event) or
//! [`Scheduler::schedule`] (one round at `now`). Both are deterministic: no clock, no
//! randomness, and every iteration whose order can reach an output runs over an
//! ordered structure (ids, `BTreeSet`s); hash maps are used for lookups only.

use crate::action::{Action, KillReason, Plan};
use crate::error::{CoreError, InvariantViolation, ResolveError};
use crate::event::{CancelTarget, Event};
use crate::keys::{JobNames, KeyIndex, first_of_entry};
use crate::placement::{self, PlacementPolicy};
use crate::queue::ReadyQueue;
use crate::queue_policy::{self, KeyInput, OwnerOrder, QueuePolicy};
use crate::task_slots::TaskSlots;
use crate::task_table::{JobRec, NEVER, NO_WORKER, Owners, PREFETCHED, Shapes, TaskRec};
use crate::timers::{BACKOFF, TIME_LIMIT, Timers};
use crate::view::{Counts, TaskRange, TaskView, WorkerView};
use crate::worker_pool::WorkerPool;
use drover_types::{
    Attempt, DepRef, EffectivePriority, FactorInput, FailureCause, JobId, Limits, Millis, Outcome,
    PolicyConfig, TaskId, TaskState, WorkerId, WorkerSpec, WorkerState,
};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

pub use crate::snapshot::SchedulerSnapshot;

/// Grace between SIGTERM and SIGKILL for kills the core decides on its own (cancel,
/// time limit, stale attempts). Preemption uses `PolicyConfig::preemption_grace_ms`.
pub const KILL_GRACE_MS: u64 = 5_000;
/// The core's time-limit backstop fires this long after `started_at + max_runtime_ms`:
/// the worker enforces the limit itself, and the slack keeps the two from racing
/// (clock skew, the report of a task the worker just killed still in flight).
pub const TIME_LIMIT_SLACK_MS: u64 = 2_000;
/// At most this many preemption searches per round (each is O(running tasks)).
pub const MAX_PREEMPTIONS_PER_ROUND: usize = 16;
/// Low bits of a fair-share key that hold the "last served" tie-break.
const SERVED_BITS: u32 = 48;
/// A placement follows its policy's order for at most this many workers, then falls
/// back to the first fitting worker by id (see `FitTree`).
pub const POLICY_STEPS: usize = 64;
/// One retirement removes at most this many tasks (whole jobs, so a bigger job still
/// goes in one piece): apply stays short, and the leader proposes the next one soon.
pub const MAX_RETIRED_PER_EVENT: u64 = 100_000;
/// A job's dependencies may expand (arrays) to at most this many edges in all.
pub const MAX_EXPANDED_DEPS_PER_JOB: u64 = 20_000_000;

/// Configuration fixed at creation (policies can change later through events).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SchedulerConfig {
    pub limits: Limits,
    pub policy: PolicyConfig,
}

/// What applying one event produced, besides actions.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Applied {
    /// For a submission: the job's id and its tasks (consecutive ids, in spec order,
    /// arrays expanded in index order).
    pub job: Option<(JobId, TaskRange)>,
    /// For a worker join: the worker's id.
    pub worker: Option<WorkerId>,
    /// For a cancellation: how many tasks it ended.
    pub cancelled: u64,
    /// For a retirement: the jobs removed, each with its tasks.
    pub retired: Vec<(JobId, TaskRange)>,
    /// Actions to carry out now (kills for a cancel, stale attempts on a rejoin, ...).
    pub actions: Vec<Action>,
    /// For a resize: the decision.
    pub resize: Option<crate::resize::ResizeDecision>,
}

/// How an attempt ended.
pub(crate) enum End {
    Reported(Outcome),
    Lost(WorkerId),
}

/// The scheduling core. Its `Debug` output is a summary (a million tasks would not
/// make a useful log line).
pub struct Scheduler {
    pub(crate) config: SchedulerConfig,
    /// The latest `now` seen: time never goes backwards inside the core.
    pub(crate) now: Millis,
    pub(crate) tasks: TaskSlots,
    /// Held jobs; ids are issued in order from `next_job` and never reused.
    pub(crate) jobs: BTreeMap<JobId, JobRec>,
    pub(crate) next_job: JobId,
    /// Complete jobs (every task final) by the time the last one ended: the order in
    /// which retirement considers them (`retire.rs`). Derived.
    pub(crate) complete: BTreeSet<(Millis, JobId)>,
    /// Task keys and job names, for references (`keys.rs`).
    pub(crate) keys: KeyIndex,
    pub(crate) job_names: JobNames,
    /// For a DependencyFailed task: the parent whose failure reached it.
    pub(crate) dep_failed_by: BTreeMap<TaskId, TaskId>,
    pub(crate) counts: [u64; 10],
    pub(crate) pool: WorkerPool,
    pub(crate) owners: Owners,
    /// CPU millicores reserved by each owner's attempts (fair-share usage).
    pub(crate) owner_usage: Vec<u64>,
    /// Reservations made so far, and the count at each owner's latest one: the
    /// fair-share tie-break. Durable (in snapshots): it steers decisions.
    pub(crate) placements: u64,
    pub(crate) owner_last_served: Vec<u64>,
    pub(crate) shapes: Shapes,
    pub(crate) queue: ReadyQueue,
    pub(crate) qpolicy: Box<dyn QueuePolicy>,
    pub(crate) placement: Box<dyn PlacementPolicy>,
    pub(crate) timers: Timers,
    /// Task state changes since the last [`Scheduler::take_transitions`], when
    /// recording is on (the state machine turns it on to derive events). Not durable.
    pub(crate) transitions: Option<Vec<Transition>>,
    /// Tasks held back by the result cache, each with the task it waits for
    /// (`cache_hold.rs`). Not in the core's snapshot: the state machine restores it.
    pub(crate) held: BTreeMap<TaskId, TaskId>,
    /// Resized reservations and resize decisions (`resize.rs`). Not in the core's
    /// snapshot: the state machine's snapshot carries it (format 4).
    pub(crate) resizes: crate::resize::Resizes,
    /// Splits by their first slot (`split.rs`). In snapshots through the state
    /// machine's (format 4).
    pub(crate) splits: BTreeMap<TaskId, crate::split::SplitRecord>,
    /// The wall time the worker reported for the attempt whose end is being applied
    /// (`Scheduler::report_runtime`): only for the next event, never stored.
    pub(crate) reported_runtime: Option<(TaskId, u64)>,
}

/// One task state change, as recorded for [`Scheduler::take_transitions`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Transition {
    pub task: TaskId,
    pub from: TaskState,
    pub to: TaskState,
}

impl std::fmt::Debug for Scheduler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scheduler")
            .field("now", &self.now)
            .field("tasks", &self.tasks.len())
            .field("jobs", &self.jobs.len())
            .field("workers", &self.pool.workers.len())
            .field("queued", &self.queue.len())
            .field("policy", &self.config.policy)
            .field("counts", &self.counts)
            .finish()
    }
}

/// When the time limit of a started attempt passes (with the slack), if it has one.
pub(crate) fn limit_due(rec: &TaskRec) -> Option<Millis> {
    match (rec.started_at, rec.limit_ms) {
        (Some(s), l) if l > 0 => Some(s.saturating_add(l + TIME_LIMIT_SLACK_MS)),
        _ => None,
    }
}

#[inline]
pub(crate) fn ix(id: TaskId) -> usize {
    id.0 as usize - 1
}

impl Scheduler {
    pub fn new(config: SchedulerConfig) -> Scheduler {
        let qpolicy = queue_policy::build(&config.policy.queue);
        let placement = placement::build(config.policy.placement);
        Scheduler {
            queue: ReadyQueue::new(qpolicy.owner_order()),
            qpolicy,
            placement,
            config,
            now: Millis::ZERO,
            tasks: TaskSlots::default(),
            jobs: BTreeMap::new(),
            next_job: JobId(1),
            complete: BTreeSet::new(),
            keys: KeyIndex::default(),
            job_names: JobNames::default(),
            dep_failed_by: BTreeMap::new(),
            counts: [0; 10],
            pool: WorkerPool::default(),
            owners: Owners::default(),
            owner_usage: Vec::new(),
            placements: 0,
            owner_last_served: Vec::new(),
            shapes: Shapes::default(),
            timers: Timers::default(),
            transitions: None,
            held: BTreeMap::new(),
            resizes: Default::default(),
            splits: BTreeMap::new(),
            reported_runtime: None,
        }
    }

    /// Applies one event at `now`. On error, nothing changed.
    pub fn apply(&mut self, now: Millis, event: Event) -> Result<Applied, CoreError> {
        let before = self.now;
        self.now = self.now.max(now);
        let result = match event {
            Event::Submit { job } => self.submit(job),
            Event::Cancel { target } => self.cancel(target),
            Event::WorkerJoin { spec, running } => Ok(self.join(spec, running)),
            Event::WorkerHeartbeat {
                worker,
                usage,
                data_keys,
            } => self.known_worker(worker).map(|_| {
                self.pool.set_usage(worker, usage);
                if let Some(mut keys) = data_keys {
                    // One order for every replica, whatever order the worker sent.
                    keys.sort_unstable();
                    keys.dedup();
                    self.pool.set_data_keys(worker, keys);
                }
                Applied::default()
            }),
            Event::WorkerDrain { worker } => self.known_worker(worker).map(|state| {
                if state == WorkerState::Active {
                    self.pool.set_state(worker, WorkerState::Draining);
                }
                Applied::default()
            }),
            Event::WorkerResume { worker } => self.known_worker(worker).map(|state| {
                // A lost worker comes back by rejoining, not by a resume.
                if state == WorkerState::Draining {
                    self.pool.set_state(worker, WorkerState::Active);
                }
                Applied::default()
            }),
            Event::WorkerLost { worker } => self.known_worker(worker).map(|state| {
                if state != WorkerState::Lost {
                    self.worker_lost(worker);
                }
                Applied::default()
            }),
            Event::TaskStarted {
                task,
                attempt,
                worker,
                gpus,
            } => self.task_started(task, attempt, worker, gpus),
            Event::TaskFinished {
                task,
                attempt,
                worker,
                outcome,
            } => self.check_fence(task, attempt, worker).map(|_| {
                self.end_attempt(task, End::Reported(outcome));
                Applied::default()
            }),
            Event::SetPolicy { policy } => {
                self.set_policy(policy);
                Ok(Applied::default())
            }
            Event::Retire { keep_ms, keep_max } => Ok(self.retire(keep_ms, keep_max)),
            Event::Resize {
                task,
                attempt,
                worker,
                request,
            } => self.resize(task, attempt, worker, request),
        };
        if result.is_err() {
            self.now = before;
        }
        self.reported_runtime = None;
        result
    }

    /// Tells the core, before it applies the `TaskFinished` of `task`, the wall time the
    /// worker measured for the attempt (from the same log command). A split sizes its
    /// chunks from the longer of that and the time between the start's and the end's
    /// entries: entries are stamped when the leader batches them, so a short attempt's
    /// start and end can share one, while a worker cannot make a chunk look shorter
    /// than the log saw it. Forgotten after the next event.
    pub fn report_runtime(&mut self, task: TaskId, wall_ms: u64) {
        self.reported_runtime = Some((task, wall_ms));
    }

    /// One scheduling round at `now`: fire due timers, place ready tasks, preempt.
    pub fn schedule(&mut self, now: Millis) -> Plan {
        self.now = self.now.max(now);
        let mut actions = Vec::new();
        self.fire_timers(&mut actions);
        // Room that freed goes to the prefetched tasks first, in their workers' order.
        self.promote_queued();
        self.place(&mut actions);
        self.retract_round(&mut actions);
        self.prefetch_round(&mut actions);
        self.overtake_round(&mut actions);
        Plan { actions }
    }

    /// Turns the recording of task state changes on or off (off by default). While on,
    /// every change is kept, in order, until [`Scheduler::take_transitions`]. A task
    /// enters the table as `Waiting` without a recorded change.
    pub fn record_transitions(&mut self, on: bool) {
        match (on, &self.transitions) {
            (true, None) => self.transitions = Some(Vec::new()),
            (false, Some(_)) => self.transitions = None,
            _ => {}
        }
    }

    /// Moves the changes recorded so far onto the end of `out`.
    pub fn take_transitions(&mut self, out: &mut Vec<Transition>) {
        if let Some(log) = &mut self.transitions {
            out.append(log);
        }
    }

    /// When the earliest timer (a backoff's end, a time limit) is due: the runtime
    /// must let time reach the core by then (a round at or after it fires it).
    pub fn next_timer(&self) -> Option<Millis> {
        self.timers.next_due()
    }

    pub fn task(&self, id: TaskId) -> Option<TaskView<'_>> {
        let rec = self.rec(id)?;
        Some(self.view_of(id, rec))
    }

    /// The tasks a reference names: a numeric id, or a key reference (an array's key
    /// names the whole array): `KEY` the newest task with that key, `JOB_NAME/KEY` that
    /// key in the newest job with that name, `JOB_ID/KEY` that key in that job.
    pub fn resolve(&self, reference: &DepRef) -> Result<TaskRange, ResolveError> {
        match reference {
            DepRef::Id(id) => self
                .rec(*id)
                .map(|_| TaskRange {
                    first: *id,
                    count: 1,
                })
                .ok_or(ResolveError::NoTask(*id)),
            DepRef::Key(k) => self.resolve_key(k),
        }
    }

    /// Tasks in id order starting after `after` (cursor pagination).
    pub fn tasks_after(
        &self,
        after: Option<TaskId>,
    ) -> Box<dyn Iterator<Item = TaskView<'_>> + '_> {
        Box::new(
            self.tasks
                .iter_after(after.unwrap_or(TaskId(0)))
                .map(move |(id, rec)| self.view_of(id, rec)),
        )
    }

    /// Why a task that is not running is not running, in a sentence for people.
    /// `None` for running tasks.
    pub fn pending_reason(&self, id: TaskId, now: Millis) -> Option<String> {
        crate::pending::reason(self, id, now.max(self.now))
    }

    /// Why the task's latest attempt went to its worker, in a sentence for people, where
    /// placement had a choice that matters: a task with inputs (does the worker hold
    /// them?) or a load-aware placement (how loaded is the worker?). Told from the
    /// state now, not recorded at the decision: a worker's keys and load may have
    /// changed since. `None` for a task never placed, or with nothing to explain.
    pub fn placement_note(&self, id: TaskId) -> Option<String> {
        crate::pending::placement_note(self, id)
    }

    pub fn worker(&self, id: WorkerId) -> Option<WorkerView<'_>> {
        let rec = self.pool.get(id)?;
        Some(WorkerView {
            id,
            spec: &rec.spec,
            state: rec.state,
            allocated: rec.allocated.clone(),
            usage: &rec.usage,
            load_permille: rec.load_permille(),
            running: rec.running_sorted(),
            queued: rec.queued.iter().copied().collect(),
        })
    }

    pub fn worker_by_name(&self, name: &str) -> Option<WorkerId> {
        self.pool.by_name.get(name).copied()
    }

    pub fn workers(&self) -> Box<dyn Iterator<Item = WorkerView<'_>> + '_> {
        Box::new(self.pool.ids().filter_map(|w| self.worker(w)))
    }

    pub fn counts(&self) -> Counts {
        let mut c = Counts {
            tasks: self.counts,
            ..Counts::default()
        };
        for w in &self.pool.workers {
            match w.state {
                WorkerState::Active => c.workers_active += 1,
                WorkerState::Draining => c.workers_draining += 1,
                WorkerState::Lost => c.workers_lost += 1,
            }
        }
        c
    }

    pub fn policy(&self) -> &PolicyConfig {
        &self.config.policy
    }

    /// The names of the active queue and placement policies (`"priority"`, `"binpack"`).
    pub fn policy_names(&self) -> (&'static str, &'static str) {
        (self.qpolicy.name(), self.placement.name())
    }

    /// Up to `limit` tasks waiting in the ready queue (in the queue's storage order,
    /// not the order they will be placed in): what the autoscaler sizes new workers
    /// for. Never used by decisions in apply.
    pub fn ready_tasks(&self, limit: usize) -> Vec<TaskView<'_>> {
        self.queue
            .all()
            .take(limit)
            .filter_map(|id| self.task(id))
            .collect()
    }

    /// The latest `now` the core has seen.
    pub fn now(&self) -> Millis {
        self.now
    }

    /// Checks every invariant; tests call it after every event.
    pub fn check_invariants(&self) -> Result<(), InvariantViolation> {
        crate::invariants::check(self).map_err(InvariantViolation)
    }

    pub fn snapshot(&self) -> SchedulerSnapshot {
        crate::snapshot::take(self)
    }

    pub fn restore(snapshot: SchedulerSnapshot) -> Scheduler {
        crate::snapshot::restore(snapshot)
    }

    // ----- internals -------------------------------------------------------------

    pub(crate) fn rec(&self, id: TaskId) -> Option<&TaskRec> {
        self.tasks.get(id)
    }

    fn view_of<'a>(&'a self, id: TaskId, rec: &'a TaskRec) -> TaskView<'a> {
        TaskView {
            id,
            job: rec.job,
            spec: &rec.spec,
            array_index: rec.array_index,
            array_count: rec
                .array_index
                .and(rec.spec.shared().array.map(|a| a.len() as u32)),
            slice: if rec.spec.shared().split.is_some() {
                self.chunk_slice(id)
            } else {
                None
            },
            state: rec.state,
            attempt: Attempt(rec.attempt),
            worker: (rec.holder != NO_WORKER).then_some(WorkerId(rec.holder)),
            submitted_at: rec.submitted_at,
            started_at: rec.started_at,
            ended_at: rec.ended_at,
            deps: &rec.deps,
            attempts: &rec.attempts,
        }
    }

    pub(crate) fn known_worker(&self, w: WorkerId) -> Result<WorkerState, CoreError> {
        self.pool
            .get(w)
            .map(|r| r.state)
            .ok_or(CoreError::UnknownWorker(w))
    }

    pub(crate) fn set_state(&mut self, id: TaskId, state: TaskState) {
        let rec = &mut self.tasks[ix(id)];
        let (job, was) = (rec.job, rec.state);
        rec.state = state;
        self.counts[was as usize] -= 1;
        self.counts[state as usize] += 1;
        if let Some(log) = &mut self.transitions {
            log.push(Transition {
                task: id,
                from: was,
                to: state,
            });
        }
        if let Some(j) = self.jobs.get_mut(&job) {
            j.states[was as usize] -= 1;
            j.states[state as usize] += 1;
        }
        if was.is_final() != state.is_final() {
            self.job_finality(job, state.is_final());
        }
    }

    /// How many of job `job`'s tasks are in each state (states with none left out),
    /// read from counts kept as tasks change state: O(1) whatever the job's size.
    pub fn job_states(&self, job: JobId) -> Option<Vec<(TaskState, u64)>> {
        let j = self.jobs.get(&job)?;
        Some(
            TaskState::ALL
                .iter()
                .filter(|s| j.states[**s as usize] > 0)
                .map(|s| (*s, u64::from(j.states[*s as usize])))
                .collect(),
        )
    }

    pub(crate) fn key_input(&self, id: TaskId) -> KeyInput<'_> {
        let rec = &self.tasks[ix(id)];
        KeyInput {
            priority: rec.spec.shared().priority,
            ready_at: rec.ready_at,
            runtime_hint: rec
                .spec
                .shared()
                .expected_runtime_ms
                .or(rec.spec.shared().max_runtime_ms),
            cpu_milli: rec.spec.shared().resources.cpu_milli,
            labels: &rec.spec.shared().labels,
        }
    }

    /// A ready task's effective priority under the multifactor policy, as of `now`,
    /// with its terms (`None` under another policy or for a task not ready). For
    /// people: the queue orders by the same sum, exactly (see `queue_policy.rs`).
    pub fn effective_priority(&self, id: TaskId, now: Millis) -> Option<EffectivePriority> {
        let weights = self.qpolicy.multifactor()?;
        let rec = self.rec(id)?;
        if rec.state != TaskState::Ready {
            return None;
        }
        let now = now.max(self.now);
        Some(
            weights.explain(&FactorInput {
                priority: rec.spec.shared().priority,
                waited_ms: now.0.saturating_sub(rec.ready_at.0),
                cpu_milli: rec.spec.shared().resources.cpu_milli,
                labels: &rec.spec.shared().labels,
                owner_cpu_milli: self
                    .owner_usage
                    .get(rec.owner as usize)
                    .copied()
                    .unwrap_or(0),
            }),
        )
    }

    /// (group, shape, key) of a ready task in the queue.
    pub(crate) fn queue_slot(&self, id: TaskId) -> (u32, u32, u128) {
        let rec = &self.tasks[ix(id)];
        let group = if self.queue.by_group() { rec.owner } else { 0 };
        (group, rec.shape, self.qpolicy.key(&self.key_input(id)))
    }

    pub(crate) fn enqueue(&mut self, id: TaskId) {
        let (g, s, k) = self.queue_slot(id);
        let need = self.shape_need(s);
        self.queue.insert(g, s, need, k, id);
    }

    /// The (cpu, memory) a shape asks for.
    pub(crate) fn shape_need(&self, shape: u32) -> (u32, u64) {
        let r = &self.shapes.list[shape as usize].res;
        (r.cpu_milli, r.memory_bytes)
    }

    pub(crate) fn dequeue(&mut self, id: TaskId) {
        let (g, s, k) = self.queue_slot(id);
        self.queue.remove(g, s, k, id);
    }

    pub(crate) fn make_ready(&mut self, id: TaskId) {
        if !self.splits.is_empty() && self.split_gated(id) {
            // A split's slot without a slice waits for one (`split.rs`).
            return;
        }
        let now = self.now;
        let rec = &mut self.tasks[ix(id)];
        if rec.ready_at == NEVER {
            rec.ready_at = now;
        }
        self.set_state(id, TaskState::Ready);
        self.enqueue(id);
    }

    /// An owner's place in the fair-share order: CPU reserved by its attempts divided
    /// by its weight, and among owners equal on that, the one served least recently
    /// first. Without that tie-break a single slot would always go to the same owner
    /// (everyone is at zero when it frees), which is FCFS, not fair share.
    /// Under multifactor (`OwnerOrder::HeadPlusShare`) it is instead the fair-share
    /// penalty of the owner's usage, added to its tasks' keys.
    pub(crate) fn share_of(&self, owner: u32) -> u128 {
        let usage = self.owner_usage.get(owner as usize).copied().unwrap_or(0) as u128;
        if self.qpolicy.owner_order() == OwnerOrder::HeadPlusShare {
            return self.qpolicy.owner_penalty(usage as u64);
        }
        let weight = self.qpolicy.weight(&self.owners.names[owner as usize]) as u128;
        let last = self
            .owner_last_served
            .get(owner as usize)
            .copied()
            .unwrap_or(0) as u128;
        (((usage << 32) / weight) << SERVED_BITS) | (last & ((1 << SERVED_BITS) - 1))
    }

    pub(crate) fn add_usage(&mut self, owner: u32, cpu: u32, add: bool) {
        let o = owner as usize;
        if self.owner_usage.len() <= o {
            self.owner_usage.resize(o + 1, 0);
        }
        if add {
            self.owner_usage[o] += cpu as u64;
            self.placements += 1;
            if self.owner_last_served.len() <= o {
                self.owner_last_served.resize(o + 1, 0);
            }
            self.owner_last_served[o] = self.placements;
        } else {
            self.owner_usage[o] -= cpu as u64;
        }
        if self.queue.by_group() {
            let share = self.share_of(owner);
            self.queue.set_share(owner, share);
        }
    }

    // ----- endings ---------------------------------------------------------------

    /// Marks a waiting task DependencyFailed because of `parent`, and its waiting
    /// descendants after it (iteratively: chains can be a million long).
    pub(crate) fn dependency_failed(&mut self, id: TaskId, parent: TaskId) {
        self.end_final(id, TaskState::DependencyFailed);
        self.dep_failed_by.insert(id, parent);
        self.propagate_failure(id);
    }

    pub(crate) fn propagate_failure(&mut self, root: TaskId) {
        let mut stack = vec![root];
        if !self.splits.is_empty() {
            // A chunk that failed stops its split: the slots without a slice fail too.
            stack.extend(self.split_chunk_failed(root));
        }
        while let Some(p) = stack.pop() {
            let n = self.tasks[ix(p)].children.len();
            for i in 0..n {
                let c = self.tasks[ix(p)].children[i];
                if self.tasks[ix(c)].state == TaskState::Waiting {
                    self.end_final(c, TaskState::DependencyFailed);
                    self.dep_failed_by.insert(c, p);
                    stack.push(c);
                }
            }
        }
    }

    pub(crate) fn end_final(&mut self, id: TaskId, state: TaskState) {
        if !self.held.is_empty() {
            self.held.remove(&id);
        }
        self.set_state(id, state);
        self.tasks[ix(id)].ended_at = Some(self.now);
    }

    pub(crate) fn succeed(&mut self, id: TaskId) {
        self.end_final(id, TaskState::Succeeded);
        if !self.splits.is_empty() {
            self.split_chunk_succeeded(id);
        }
        let n = self.tasks[ix(id)].children.len();
        for i in 0..n {
            let c = self.tasks[ix(id)].children[i];
            let child = &mut self.tasks[ix(c)];
            child.remaining = child.remaining.saturating_sub(1);
            if child.remaining == 0 && child.state == TaskState::Waiting {
                self.make_ready(c);
            }
        }
    }

    /// Frees the resources the current attempt holds, if any.
    fn release(&mut self, id: TaskId) {
        let rec = &mut self.tasks[ix(id)];
        if rec.holder == NO_WORKER {
            return;
        }
        let w = WorkerId(rec.holder);
        rec.holder = NO_WORKER;
        if rec.slot == PREFETCHED {
            // Bound but holding nothing: leave the worker's queue.
            self.pool.unqueue(w, id);
            return;
        }
        let slot = rec.slot;
        let res = self
            .resizes
            .reserved
            .get(&id)
            .unwrap_or(&self.shapes.list[rec.shape as usize].res);
        let cpu = res.cpu_milli;
        if let Some(moved) = self.pool.release(w, slot, res) {
            self.tasks[ix(moved)].slot = slot;
        }
        self.forget_reservation(id);
        let rec = &self.tasks[ix(id)];
        if let Some(due) = limit_due(rec) {
            self.timers.disarm(due, TIME_LIMIT, id);
        }
        let owner = rec.owner;
        self.add_usage(owner, cpu, false);
    }

    /// The current attempt ended (reported, or its worker was lost): free its
    /// resources, record why, and retry, re-queue or end the task.
    pub(crate) fn end_attempt(&mut self, id: TaskId, end: End) {
        self.release(id);
        let now = self.now;
        let rec = &mut self.tasks[ix(id)];
        let kill = rec.kill.take();
        let success = matches!(&end, End::Reported(o) if o.is_success());
        let failure = if success {
            None
        } else {
            Some(match (&end, kill) {
                (_, Some(KillReason::Preempted)) => FailureCause::Preempted,
                (_, Some(KillReason::Retracted)) => FailureCause::Retracted,
                (End::Lost(w), _) => FailureCause::WorkerLost { worker: *w },
                (_, Some(KillReason::TimeLimit)) => FailureCause::TimeLimit,
                (End::Reported(o), _) => FailureCause::Outcome { outcome: o.clone() },
            })
        };
        if let Some(a) = rec.attempts.last_mut() {
            a.ended_at = Some(now);
            a.outcome = match &end {
                End::Reported(o) => Some(o.clone()),
                End::Lost(_) => None,
            };
            a.failure = failure;
        }
        if rec.state == TaskState::Cancelled {
            // Already final; its resources were kept until now.
            return;
        }
        if success {
            self.succeed(id);
            return;
        }
        if matches!(kill, Some(KillReason::Preempted | KillReason::Retracted)) {
            // An eviction is not the task's fault: no attempt spent, no backoff.
            self.make_ready(id);
            return;
        }
        rec.spent += 1;
        let retry = &rec.spec.shared().retry;
        let retry_ok = rec.spent < retry.max_attempts
            && match &end {
                // The exit-code filter applies to exit codes only; signals, OOM,
                // time-outs, spawn failures and lost workers are always worth a retry.
                End::Reported(Outcome::Exited { code }) => retry.retries_exit_code(*code),
                _ => true,
            };
        if retry_ok {
            let delay = retry.backoff.delay_before(rec.spent + 1);
            if delay == 0 {
                self.make_ready(id);
            } else {
                rec.wake_at = now.saturating_add(delay);
                let wake = rec.wake_at;
                self.set_state(id, TaskState::Backoff);
                self.timers.arm(wake, BACKOFF, id);
            }
        } else {
            let timed_out = matches!(&end, End::Reported(Outcome::TimedOut))
                || kill == Some(KillReason::TimeLimit);
            self.end_final(
                id,
                if timed_out {
                    TaskState::TimedOut
                } else {
                    TaskState::Failed
                },
            );
            self.propagate_failure(id);
        }
    }

    fn check_fence(
        &self,
        task: TaskId,
        attempt: Attempt,
        worker: WorkerId,
    ) -> Result<(), CoreError> {
        let rec = self.rec(task).ok_or(CoreError::UnknownTask(task))?;
        self.known_worker(worker)?;
        if rec.holder == NO_WORKER || attempt.0 != rec.attempt {
            if rec.holder == NO_WORKER && attempt.0 == rec.attempt && rec.state.is_final() {
                // A repeated report for the attempt that already ended the task.
                return Err(CoreError::AlreadyFinal {
                    task,
                    state: rec.state,
                });
            }
            return Err(CoreError::StaleAttempt {
                task,
                attempt,
                current: Attempt(rec.attempt),
            });
        }
        if rec.holder != worker.0 {
            return Err(CoreError::WrongWorker {
                task,
                attempt,
                worker,
            });
        }
        Ok(())
    }

    fn task_started(
        &mut self,
        task: TaskId,
        attempt: Attempt,
        worker: WorkerId,
        gpus: Vec<u32>,
    ) -> Result<Applied, CoreError> {
        self.check_fence(task, attempt, worker)?;
        if self.tasks[ix(task)].slot == PREFETCHED {
            // The worker started it as soon as it had room: that room is the one the
            // core would have promoted it into (same queue, same order of ends).
            self.promote(task);
        }
        let now = self.now;
        let rec = &mut self.tasks[ix(task)];
        if rec.kill == Some(KillReason::Retracted) {
            // The worker started it before the retraction reached it, and keeps it
            // (workers ignore a retraction of a started attempt): it runs here.
            rec.kill = None;
        }
        if let Some(a) = rec.attempts.last_mut()
            && a.started_at.is_none()
        {
            a.started_at = Some(now);
            // The first report names the devices; a repeat (after a reconnect) names
            // the same ones.
            a.gpus = gpus;
        }
        if rec.state == TaskState::Assigned {
            rec.started_at = Some(now);
            if let Some(due) = limit_due(rec) {
                self.timers.arm(due, TIME_LIMIT, task);
            }
            self.set_state(task, TaskState::Running);
        }
        // Running already: a repeated report, accepted and ignored. Cancelled (still
        // holding): its kill is on its way.
        Ok(Applied::default())
    }

    // ----- cancellation ----------------------------------------------------------

    fn cancel(&mut self, target: CancelTarget) -> Result<Applied, CoreError> {
        let ids: Vec<TaskId> = match target {
            CancelTarget::Task(t) => {
                let rec = self.rec(t).ok_or(CoreError::UnknownTask(t))?;
                if rec.state.is_final() {
                    return Err(CoreError::AlreadyFinal {
                        task: t,
                        state: rec.state,
                    });
                }
                vec![t]
            }
            CancelTarget::Job(j) => {
                let job = self.jobs.get(&j).ok_or(CoreError::UnknownJob(j))?;
                (job.first.0..job.first.0 + job.count as u64)
                    .map(TaskId)
                    .filter(|&t| !self.tasks[ix(t)].state.is_final())
                    .collect()
            }
        };
        let mut actions = Vec::new();
        // First cancel them all, then fail their dependents, so that a task of the
        // job ends Cancelled, not DependencyFailed because an earlier one was cancelled.
        for &t in &ids {
            self.cancel_one(t, &mut actions);
        }
        for &t in &ids {
            self.propagate_failure(t);
        }
        Ok(Applied {
            cancelled: ids.len() as u64,
            actions,
            ..Applied::default()
        })
    }

    fn cancel_one(&mut self, id: TaskId, actions: &mut Vec<Action>) {
        let rec = &self.tasks[ix(id)];
        match rec.state {
            TaskState::Ready => self.dequeue(id),
            TaskState::Backoff => {
                self.timers.disarm(rec.wake_at, BACKOFF, id);
            }
            TaskState::Assigned | TaskState::Running => {
                if let Some(due) = limit_due(rec) {
                    self.timers.disarm(due, TIME_LIMIT, id);
                }
                // Resources stay reserved until the worker confirms the end (or is lost).
                actions.push(Action::Kill {
                    task: id,
                    attempt: Attempt(rec.attempt),
                    worker: WorkerId(rec.holder),
                    reason: KillReason::Cancelled,
                    grace_ms: KILL_GRACE_MS,
                });
                self.tasks[ix(id)].kill = Some(KillReason::Cancelled);
            }
            _ => {}
        }
        self.end_final(id, TaskState::Cancelled);
    }

    // ----- workers ---------------------------------------------------------------

    fn join(&mut self, spec: WorkerSpec, running: Vec<(TaskId, Attempt)>) -> Applied {
        let mut actions = Vec::new();
        let mut kept: BTreeSet<TaskId> = BTreeSet::new();
        let w = if let Some(&w) = self.pool.by_name.get(&spec.name) {
            let listed: BTreeSet<(TaskId, Attempt)> = running.iter().copied().collect();
            let placed: Vec<TaskId> = self.pool.rec(w).running_sorted();
            let mut lose = Vec::new();
            // Keep, in id order, the listed attempts that still fit the (possibly new)
            // capacity; the rest are given up, so a worker is never over-committed.
            let mut sum = drover_types::Resources::default();
            for t in placed {
                let rec = &self.tasks[ix(t)];
                let res = self.held_resources(t);
                if listed.contains(&(t, Attempt(rec.attempt)))
                    && res.fits_beside(&sum, &spec.capacity)
                {
                    sum.add(res);
                    kept.insert(t);
                } else {
                    lose.push(t);
                }
            }
            // Prefetched tasks hold nothing: kept if the worker still has them queued.
            let queued: Vec<TaskId> = self.pool.rec(w).queued.iter().copied().collect();
            for t in queued {
                if listed.contains(&(t, Attempt(self.tasks[ix(t)].attempt))) {
                    kept.insert(t);
                } else {
                    lose.push(t);
                }
            }
            let was_lost = self.pool.rec(w).state == WorkerState::Lost;
            self.pool.replace_spec(w, spec);
            for t in lose {
                // Placed but never reported started, and not in the worker's list: its
                // start never reached the worker (what a worker received before it
                // reconnected, it lists or reports as ended). It ran nowhere, so it goes
                // back to the queue without spending an attempt, as a retraction does.
                // (A new leader can place a task on a worker between the worker's
                // hello and its join: that start is lost with the old session.)
                let rec = &mut self.tasks[ix(t)];
                if !was_lost && rec.state == TaskState::Assigned && rec.kill.is_none() {
                    rec.kill = Some(KillReason::Retracted);
                }
                self.end_attempt(t, End::Lost(w));
            }
            if was_lost {
                self.pool.set_state(w, WorkerState::Active);
            }
            w
        } else {
            self.pool.add(spec)
        };
        // A kept attempt that was asked to stop while the worker was away (cancelled,
        // evicted, past its limit) is asked again: that request may never have arrived.
        for &t in &kept {
            let rec = &self.tasks[ix(t)];
            if let Some(reason) = rec.kill {
                actions.push(Action::Kill {
                    task: t,
                    attempt: Attempt(rec.attempt),
                    worker: w,
                    reason,
                    grace_ms: KILL_GRACE_MS,
                });
            }
        }
        let mut seen = BTreeSet::new();
        for (t, a) in running {
            if !kept.contains(&t) && seen.insert((t, a)) {
                actions.push(Action::Kill {
                    task: t,
                    attempt: a,
                    worker: w,
                    reason: KillReason::Stale,
                    grace_ms: KILL_GRACE_MS,
                });
            }
        }
        Applied {
            worker: Some(w),
            actions,
            ..Applied::default()
        }
    }

    fn worker_lost(&mut self, w: WorkerId) {
        let mut running: Vec<TaskId> = self.pool.rec(w).running_sorted();
        // Its prefetched tasks too: the worker may have started them without telling.
        running.extend(self.pool.rec(w).queued.iter().copied());
        self.pool.set_state(w, WorkerState::Lost);
        for t in running {
            self.end_attempt(t, End::Lost(w));
        }
    }

    // ----- policies --------------------------------------------------------------

    fn set_policy(&mut self, policy: PolicyConfig) {
        let queue_changed = policy.queue != self.config.policy.queue;
        if policy.placement != self.config.policy.placement {
            self.placement = placement::build(policy.placement);
        }
        self.config.policy = policy;
        if queue_changed {
            self.qpolicy = queue_policy::build(&self.config.policy.queue);
            self.rebuild_queue();
        }
    }

    /// Recomputes every ready task's key under the current policy. Deterministic: the
    /// new order depends only on the tasks, ties by id. O(n log n).
    pub(crate) fn rebuild_queue(&mut self) {
        self.queue = ReadyQueue::new(self.qpolicy.owner_order());
        if self.queue.by_group() {
            for o in 0..self.owners.names.len() as u32 {
                let share = self.share_of(o);
                self.queue.set_share(o, share);
            }
        }
        let mut items: Vec<(u32, u32, u128, TaskId)> =
            Vec::with_capacity(self.counts[TaskState::Ready as usize] as usize);
        for (id, rec) in self.tasks.iter() {
            if rec.state == TaskState::Ready {
                let (g, s, k) = self.queue_slot(id);
                items.push((g, s, k, id));
            }
        }
        // Inserting in key order makes each insert append at the end of its sub-queue.
        items.sort_unstable();
        for (g, s, k, id) in items {
            let need = self.shape_need(s);
            self.queue.insert(g, s, need, k, id);
        }
    }

    /// Rebuilds every derived index from the task table and the workers (restore).
    pub(crate) fn rebuild_indexes(&mut self) {
        self.counts = [0; 10];
        self.owner_usage = vec![0; self.owners.names.len()];
        for id in self.tasks.ids() {
            let rec = &mut self.tasks[ix(id)];
            rec.shape = self.shapes.intern(rec.spec.shared());
            self.counts[rec.state as usize] += 1;
            if rec.holder != NO_WORKER && rec.slot != PREFETCHED {
                self.owner_usage[rec.owner as usize] +=
                    self.shapes.list[rec.shape as usize].res.cpu_milli as u64;
            }
            if rec.state == TaskState::Backoff {
                self.timers.arm(rec.wake_at, BACKOFF, id);
            }
            if rec.state == TaskState::Running
                && rec.kill != Some(KillReason::TimeLimit)
                && let Some(due) = limit_due(rec)
            {
                self.timers.arm(due, TIME_LIMIT, id);
            }
            if let Some(k) = rec.spec.key()
                && first_of_entry(rec.array_index, rec.spec.shared())
            {
                let count = rec.spec.shared().expanded_len() as u32;
                self.keys.insert(k, TaskRange { first: id, count });
            }
        }
        self.rebuild_jobs_progress();
        self.rebuild_queue();
    }
}
