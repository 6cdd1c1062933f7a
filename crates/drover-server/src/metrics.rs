//! The server's Prometheus metrics (`GET /metrics`, text format 0.0.4).
//!
//! Two kinds of values, kept apart on purpose:
//! - **Counted as it happens**: placements, completions and the submit→start and
//!   start→end latencies are observed while entries are applied (every server applies
//!   every entry, so each server's figures describe the whole cluster, not only what it
//!   led); API request latencies are observed by a middleware; event-stream clients by
//!   a guard held for each stream. They start from zero when the process starts (the
//!   entries re-applied after a restart count again; Prometheus treats the drop to zero
//!   as a counter reset).
//! - **Read when scraped**: tasks by state and priority class, queue depth by reason,
//!   workers, capacity/allocation/usage and raft's position are read from the state at
//!   scrape time, so they cannot drift from what the API shows.
//!
//! One registry per server (no global recorder): several servers in one test process
//! keep their own figures.

use drover_proto::events::{ClusterEvent, EventBody};
use drover_state::StateMachine;
use drover_types::{Millis, TaskState};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};
use std::sync::Mutex;
use std::sync::atomic::AtomicU64;

/// Latency buckets in seconds, from 1 ms to ~2 min: task latencies on a busy cluster
/// and API requests share them.
fn latency_buckets() -> impl Iterator<Item = f64> {
    [
        0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
        120.0,
    ]
    .into_iter()
}

fn latency_histogram() -> Histogram {
    Histogram::new(latency_buckets())
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StateLabel {
    pub state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TaskLabels {
    pub state: String,
    pub priority_class: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResourceLabel {
    pub resource: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WorkerResourceLabels {
    pub worker: String,
    pub resource: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub method: String,
    pub route: String,
    pub status: String,
}

/// Which input limit was hit (see `input_limits.rs`): `result`, `output`,
/// `worker_message`, `body_read_timeout`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LimitLabel {
    pub limit: String,
}

type FloatGauge = Gauge<f64, AtomicU64>;

/// Every metric one server exports.
#[derive(Debug)]
pub struct ServerMetrics {
    registry: Registry,
    /// Serialises scrapes: the read-at-scrape gauges are cleared and refilled.
    scrape: Mutex<()>,
    // Counted as applied.
    placements: Counter,
    /// Tasks completed from the result cache.
    cache_hits: Counter,
    completions: Family<StateLabel, Counter>,
    submit_to_start: Histogram,
    start_to_end: Histogram,
    // Counted by the HTTP layer.
    requests: Family<RequestLabels, Histogram, fn() -> Histogram>,
    event_clients: Gauge,
    /// Worker reports (output frames, ends) dropped by the session, by why.
    refused_reports: Family<ReasonLabel, Counter>,
    // Counted where an input limit cuts or refuses something.
    limit_hits: Family<LimitLabel, Counter>,
    // Read at scrape time.
    submitted: Gauge,
    tasks: Family<TaskLabels, Gauge>,
    queue: Family<ReasonLabel, Gauge>,
    workers: Family<StateLabel, Gauge>,
    capacity: Family<ResourceLabel, FloatGauge>,
    allocated: Family<ResourceLabel, FloatGauge>,
    used: Family<ResourceLabel, FloatGauge>,
    worker_used: Family<WorkerResourceLabels, FloatGauge>,
    raft_term: Gauge,
    raft_leader: Gauge,
    raft_is_leader: Gauge,
    raft_last_log: Gauge,
    raft_committed: Gauge,
    raft_applied: Gauge,
    raft_apply_lag: Gauge,
}

/// What the scrape reads from raft's own metrics.
#[derive(Clone, Copy, Debug, Default)]
pub struct RaftPosition {
    pub term: u64,
    /// 0 when no leader is known.
    pub leader: u64,
    pub is_leader: bool,
    pub last_log: u64,
    pub committed: u64,
    pub applied: u64,
}

/// A live usage sample of one worker (not in the log: reported by the worker to the
/// leader, so only the leader has them).
#[derive(Clone, Debug)]
pub struct WorkerSample {
    pub name: String,
    pub cpus: f64,
    pub memory_bytes: f64,
}

/// The class of a priority: what dashboards group by (priorities are any `i32`).
pub fn priority_class(priority: i32) -> &'static str {
    match priority {
        p if p > 0 => "high",
        0 => "normal",
        _ => "low",
    }
}

/// Why a task that is not running waits, coarsely: the kind of its pending reason.
fn reason_kind(state: TaskState) -> Option<&'static str> {
    match state {
        TaskState::Waiting => Some("dependencies"),
        TaskState::Ready => Some("resources"),
        TaskState::Backoff => Some("retry_backoff"),
        TaskState::Assigned => Some("starting"),
        _ => None,
    }
}

fn seconds(from: Millis, to: Millis) -> f64 {
    to.0.saturating_sub(from.0) as f64 / 1000.0
}

impl Default for ServerMetrics {
    fn default() -> Self {
        ServerMetrics::new()
    }
}

impl ServerMetrics {
    pub fn new() -> ServerMetrics {
        let mut r = Registry::with_prefix("drover");
        let m = ServerMetrics {
            registry: Registry::default(),
            scrape: Mutex::new(()),
            placements: Counter::default(),
            cache_hits: Counter::default(),
            completions: Family::default(),
            submit_to_start: latency_histogram(),
            start_to_end: latency_histogram(),
            requests: Family::new_with_constructor(latency_histogram),
            event_clients: Gauge::default(),
            refused_reports: Family::default(),
            limit_hits: Family::default(),
            submitted: Gauge::default(),
            tasks: Family::default(),
            queue: Family::default(),
            workers: Family::default(),
            capacity: Family::default(),
            allocated: Family::default(),
            used: Family::default(),
            worker_used: Family::default(),
            raft_term: Gauge::default(),
            raft_leader: Gauge::default(),
            raft_is_leader: Gauge::default(),
            raft_last_log: Gauge::default(),
            raft_committed: Gauge::default(),
            raft_applied: Gauge::default(),
            raft_apply_lag: Gauge::default(),
        };
        r.register(
            "task_placements",
            "Attempts placed on a worker (transitions into assigned or running from the queue)",
            m.placements.clone(),
        );
        r.register(
            "cache_hits",
            "Tasks completed from the result cache instead of running",
            m.cache_hits.clone(),
        );
        r.register(
            "task_completions",
            "Tasks that reached a final state, by that state",
            m.completions.clone(),
        );
        r.register_with_unit(
            "task_submit_to_start",
            "From submission to the start of the task's latest attempt (log time)",
            Unit::Seconds,
            m.submit_to_start.clone(),
        );
        r.register_with_unit(
            "task_start_to_end",
            "From the start of an attempt to the task's final state (log time)",
            Unit::Seconds,
            m.start_to_end.clone(),
        );
        r.register_with_unit(
            "http_request_duration",
            "API requests served by this server, by method, route and status",
            Unit::Seconds,
            m.requests.clone(),
        );
        r.register(
            "event_stream_clients",
            "Open GET /v1/events streams on this server",
            m.event_clients.clone(),
        );
        r.register(
            "worker_reports_refused",
            "Output frames and attempt ends a worker sent that were dropped, by reason (not_placed_here: the attempt was not placed on that worker; bad_digest: the digest did not match)",
            m.refused_reports.clone(),
        );
        r.register(
            "input_limit_hits",
            "Inputs cut or refused by a size or time limit of this server, by limit (result, output, worker_message, body_read_timeout)",
            m.limit_hits.clone(),
        );
        r.register(
            "tasks_submitted",
            "Tasks ever accepted (the highest task id issued)",
            m.submitted.clone(),
        );
        r.register(
            "tasks",
            "Tasks held, by state and priority class (high > 0, normal = 0, low < 0)",
            m.tasks.clone(),
        );
        r.register(
            "queue_depth",
            "Tasks not running, by what they wait for (dependencies, resources, retry_backoff, starting)",
            m.queue.clone(),
        );
        r.register("workers", "Workers by state", m.workers.clone());
        r.register(
            "capacity",
            "Capacity of the active and draining workers (cpu in cores, memory and disk in bytes)",
            m.capacity.clone(),
        );
        r.register(
            "allocated",
            "Resources reserved by placed attempts",
            m.allocated.clone(),
        );
        r.register(
            "used",
            "Resources in use as last reported by the workers (leader only)",
            m.used.clone(),
        );
        r.register(
            "worker_used",
            "Per worker, resources in use as last reported (leader only)",
            m.worker_used.clone(),
        );
        r.register("raft_term", "Current raft term", m.raft_term.clone());
        r.register(
            "raft_leader_id",
            "Node id of the leader this server knows (0: none)",
            m.raft_leader.clone(),
        );
        r.register(
            "raft_is_leader",
            "1 if this server leads",
            m.raft_is_leader.clone(),
        );
        r.register(
            "raft_last_log_index",
            "Index of the last entry in this server's log",
            m.raft_last_log.clone(),
        );
        r.register(
            "raft_commit_index",
            "Index of the last entry known committed",
            m.raft_committed.clone(),
        );
        r.register(
            "raft_applied_index",
            "Index of the last entry applied to the state",
            m.raft_applied.clone(),
        );
        r.register(
            "raft_apply_lag",
            "Entries in the log not yet applied",
            m.raft_apply_lag.clone(),
        );
        ServerMetrics { registry: r, ..m }
    }

    /// Counts a worker report (output frame or end) the session dropped, and why.
    pub fn count_refused_report(&self, reason: &str) {
        self.refused_reports
            .get_or_create(&ReasonLabel {
                reason: reason.to_string(),
            })
            .inc();
    }

    /// Counts what one applied entry's events tell, reading the tasks' times from the
    /// state they were applied to.
    pub fn observe_applied(&self, machine: &StateMachine, events: &[ClusterEvent]) {
        let sched = machine.scheduler();
        for e in events {
            let EventBody::Task {
                task,
                from,
                state,
                cached_from,
                ..
            } = &e.body
            else {
                continue;
            };
            if cached_from.is_some() {
                self.cache_hits.inc();
            }
            let placed = matches!(state, TaskState::Assigned)
                || (*state == TaskState::Running && *from != TaskState::Assigned);
            if placed {
                self.placements.inc();
            }
            let view = sched.task(*task);
            if *state == TaskState::Running
                && let Some(v) = &view
                && let Some(started) = v.started_at
            {
                self.submit_to_start
                    .observe(seconds(v.submitted_at, started));
            }
            if state.is_final() && !from.is_final() {
                self.completions
                    .get_or_create(&StateLabel {
                        state: state.as_str().to_string(),
                    })
                    .inc();
                if let Some(v) = &view
                    && let (Some(started), Some(ended)) = (v.started_at, v.ended_at)
                    && from.is_on_worker()
                {
                    self.start_to_end.observe(seconds(started, ended));
                }
            }
        }
    }

    /// Records one API request.
    pub fn observe_request(&self, method: &str, route: &str, status: u16, secs: f64) {
        self.requests
            .get_or_create(&RequestLabels {
                method: method.to_string(),
                route: route.to_string(),
                status: status.to_string(),
            })
            .observe(secs);
    }

    /// Counts one input cut or refused by `limit` (see [`LimitLabel`]).
    pub fn limit_hit(&self, limit: &str) {
        self.limit_hits
            .get_or_create(&LimitLabel {
                limit: limit.to_string(),
            })
            .inc();
    }

    /// Counts an open event stream for as long as the guard lives.
    pub fn event_client(&self) -> EventClientGuard {
        self.event_clients.inc();
        EventClientGuard {
            gauge: self.event_clients.clone(),
        }
    }

    /// Refreshes the read-at-scrape values and renders everything.
    /// Holds the state's read lock once, for one pass over the tasks held (apply waits
    /// that long; not measured yet at a million tasks).
    pub fn render(
        &self,
        machine: &StateMachine,
        raft: RaftPosition,
        samples: &[WorkerSample],
    ) -> String {
        let _one = self.scrape.lock().unwrap_or_else(|p| p.into_inner());
        self.read_state(machine);
        self.raft_term.set(raft.term as i64);
        self.raft_leader.set(raft.leader as i64);
        self.raft_is_leader.set(raft.is_leader as i64);
        self.raft_last_log.set(raft.last_log as i64);
        self.raft_committed.set(raft.committed as i64);
        self.raft_applied.set(raft.applied as i64);
        self.raft_apply_lag
            .set(raft.last_log.saturating_sub(raft.applied) as i64);
        self.used.clear();
        self.worker_used.clear();
        let (mut cpus, mut mem) = (0.0, 0.0);
        for s in samples {
            cpus += s.cpus;
            mem += s.memory_bytes;
            for (resource, v) in [("cpu", s.cpus), ("memory", s.memory_bytes)] {
                self.worker_used
                    .get_or_create(&WorkerResourceLabels {
                        worker: s.name.clone(),
                        resource: resource.to_string(),
                    })
                    .set(v);
            }
        }
        for (resource, v) in [("cpu", cpus), ("memory", mem)] {
            self.used
                .get_or_create(&ResourceLabel {
                    resource: resource.to_string(),
                })
                .set(v);
        }
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry);
        out
    }

    fn read_state(&self, machine: &StateMachine) {
        let sched = machine.scheduler();
        let mut by_class: std::collections::BTreeMap<(TaskState, &'static str), i64> =
            Default::default();
        let mut by_reason: std::collections::BTreeMap<&'static str, i64> = Default::default();
        for t in sched.tasks_after(None) {
            *by_class
                .entry((t.state, priority_class(t.spec.shared().priority)))
                .or_default() += 1;
            if let Some(k) = reason_kind(t.state) {
                *by_reason.entry(k).or_default() += 1;
            }
        }
        // Ids are issued in order and never reused: retired tasks still count.
        self.submitted
            .set(sched.next_task_id().0.saturating_sub(1) as i64);
        self.tasks.clear();
        // Every state and class appears, zeros included, so a query never sees a gap.
        for state in TaskState::ALL {
            for class in ["high", "normal", "low"] {
                self.tasks
                    .get_or_create(&TaskLabels {
                        state: state.as_str().to_string(),
                        priority_class: class.to_string(),
                    })
                    .set(by_class.get(&(state, class)).copied().unwrap_or(0));
            }
        }
        self.queue.clear();
        for kind in ["dependencies", "resources", "retry_backoff", "starting"] {
            self.queue
                .get_or_create(&ReasonLabel {
                    reason: kind.to_string(),
                })
                .set(by_reason.get(kind).copied().unwrap_or(0));
        }
        let counts = sched.counts();
        self.workers.clear();
        for (state, n) in [
            ("active", counts.workers_active),
            ("draining", counts.workers_draining),
            ("lost", counts.workers_lost),
        ] {
            self.workers
                .get_or_create(&StateLabel {
                    state: state.to_string(),
                })
                .set(n as i64);
        }
        let (mut cap, mut alloc) = ([0.0f64; 4], [0.0f64; 4]);
        for w in sched.workers() {
            if w.state == drover_types::WorkerState::Lost {
                continue;
            }
            let c = &w.spec.capacity;
            let a = &w.allocated;
            for (slot, (cv, av)) in [
                (c.cpu_milli as f64 / 1000.0, a.cpu_milli as f64 / 1000.0),
                (c.memory_bytes as f64, a.memory_bytes as f64),
                (c.disk_bytes as f64, a.disk_bytes as f64),
                (c.gpus as f64, a.gpus as f64),
            ]
            .into_iter()
            .enumerate()
            {
                cap[slot] += cv;
                alloc[slot] += av;
            }
        }
        for (i, resource) in ["cpu", "memory", "disk", "gpu"].into_iter().enumerate() {
            let label = ResourceLabel {
                resource: resource.to_string(),
            };
            self.capacity.get_or_create(&label).set(cap[i]);
            self.allocated.get_or_create(&label).set(alloc[i]);
        }
    }
}

/// Decrements the open-streams gauge when the stream ends.
#[derive(Debug)]
pub struct EventClientGuard {
    gauge: Gauge,
}

impl Drop for EventClientGuard {
    fn drop(&mut self) {
        self.gauge.dec();
    }
}
