//! A small test harness: a scheduler, a clock, and helpers that check every invariant
//! after every event and every round.
#![allow(dead_code)]

use drover_sched::{Action, Applied, CoreError, Event, KillReason, Scheduler, SchedulerConfig};
use drover_types::{
    Attempt, Backoff, DepRef, JobSpec, LabelSelector, Millis, Outcome, PolicyConfig, Resources,
    RetryPolicy, TaskId, TaskSpec, TaskState, WorkerId, WorkerSpec,
};

pub const GIB: u64 = 1 << 30;

pub struct Env {
    pub s: Scheduler,
    pub now: u64,
}

impl Env {
    /// Without prefetch, so that a full worker's tasks stay ready where these tests
    /// look for them (`prefetch.rs` tests prefetch; `model.rs` runs with the default).
    pub fn new() -> Env {
        Env::with_policy(PolicyConfig {
            prefetch_per_worker: 0,
            ..PolicyConfig::default()
        })
    }

    pub fn with_policy(policy: PolicyConfig) -> Env {
        Env {
            s: Scheduler::new(SchedulerConfig {
                policy,
                ..SchedulerConfig::default()
            }),
            now: 1_000_000,
        }
    }

    pub fn check(&self) {
        if let Err(e) = self.s.check_invariants() {
            panic!("{e}");
        }
    }

    pub fn apply(&mut self, e: Event) -> Result<Applied, CoreError> {
        let r = self.s.apply(Millis(self.now), e);
        self.check();
        r
    }

    pub fn ok(&mut self, e: Event) -> Applied {
        let desc = format!("{e:?}");
        self.apply(e).unwrap_or_else(|err| panic!("{desc}: {err}"))
    }

    pub fn advance(&mut self, ms: u64) {
        self.now += ms;
    }

    pub fn join(&mut self, name: &str, cpus: u32, mem_gib: u64) -> WorkerId {
        self.join_spec(worker(name, cpus, mem_gib))
    }

    pub fn join_spec(&mut self, spec: WorkerSpec) -> WorkerId {
        self.ok(Event::WorkerJoin {
            spec,
            running: vec![],
        })
        .worker
        .unwrap()
    }

    pub fn submit(&mut self, tasks: Vec<TaskSpec>) -> Vec<TaskId> {
        let a = self.ok(Event::Submit {
            job: JobSpec {
                tasks,
                ..JobSpec::default()
            },
        });
        let (_, r) = a.job.unwrap();
        (0..r.count as u64).map(|i| TaskId(r.first.0 + i)).collect()
    }

    pub fn schedule(&mut self) -> Vec<Action> {
        let p = self.s.schedule(Millis(self.now));
        self.check();
        p.actions
    }

    /// Runs a round and returns its starts as (task, attempt, worker).
    pub fn starts(&mut self) -> Vec<(TaskId, Attempt, WorkerId)> {
        self.schedule()
            .into_iter()
            .filter_map(|a| match a {
                Action::Start {
                    task,
                    attempt,
                    worker,
                } => Some((task, attempt, worker)),
                _ => None,
            })
            .collect()
    }

    pub fn state(&self, t: TaskId) -> TaskState {
        self.s.task(t).unwrap().state
    }

    pub fn attempt(&self, t: TaskId) -> Attempt {
        self.s.task(t).unwrap().attempt
    }

    pub fn worker_of(&self, t: TaskId) -> Option<WorkerId> {
        self.s.task(t).unwrap().worker
    }

    pub fn started(&mut self, t: TaskId) {
        let (a, w) = (self.attempt(t), self.worker_of(t).expect("placed"));
        self.ok(Event::TaskStarted {
            task: t,
            attempt: a,
            worker: w,
            gpus: Vec::new(),
        });
    }

    pub fn finish(&mut self, t: TaskId, outcome: Outcome) {
        let (a, w) = (self.attempt(t), self.worker_of(t).expect("placed"));
        self.ok(Event::TaskFinished {
            task: t,
            attempt: a,
            worker: w,
            outcome,
        });
    }

    pub fn exit(&mut self, t: TaskId, code: i32) {
        self.finish(t, Outcome::Exited { code });
    }

    /// Starts and finishes with exit 0.
    pub fn run_ok(&mut self, t: TaskId) {
        self.started(t);
        self.exit(t, 0);
    }

    pub fn reason(&self, t: TaskId) -> String {
        self.s
            .pending_reason(t, Millis(self.now))
            .unwrap_or_else(|| "<running>".into())
    }
}

pub fn worker(name: &str, cpus: u32, mem_gib: u64) -> WorkerSpec {
    WorkerSpec {
        name: name.into(),
        capacity: Resources {
            cpu_milli: cpus * 1000,
            memory_bytes: mem_gib * GIB,
            ..Resources::default()
        },
        ..WorkerSpec::default()
    }
}

pub fn task() -> TaskSpec {
    TaskSpec::command(["/bin/true"])
}

pub fn keyed(key: &str) -> TaskSpec {
    TaskSpec {
        key: Some(key.into()),
        ..task()
    }
}

pub fn after(mut t: TaskSpec, deps: &[&str]) -> TaskSpec {
    t.after = deps.iter().map(|d| DepRef::parse(d)).collect();
    t
}

pub fn cpus(mut t: TaskSpec, cpus: u32) -> TaskSpec {
    t.resources.cpu_milli = cpus * 1000;
    t
}

pub fn mem(mut t: TaskSpec, gib: u64) -> TaskSpec {
    t.resources.memory_bytes = gib * GIB;
    t
}

pub fn prio(mut t: TaskSpec, p: i32) -> TaskSpec {
    t.priority = p;
    t
}

pub fn retries(mut t: TaskSpec, max_attempts: u32, initial_ms: u64) -> TaskSpec {
    t.retry = RetryPolicy {
        max_attempts,
        backoff: Backoff {
            initial_ms,
            multiplier_percent: 200,
            max_ms: 60_000,
        },
        retry_on_exit_codes: vec![],
    };
    t
}

pub fn constraint(mut t: TaskSpec, sel: &str) -> TaskSpec {
    t.constraints.push(LabelSelector::parse(sel).unwrap());
    t
}

pub fn kills(actions: &[Action]) -> Vec<(TaskId, KillReason)> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Kill { task, reason, .. } => Some((*task, *reason)),
            _ => None,
        })
        .collect()
}

pub fn gpus(mut t: TaskSpec, n: u32) -> TaskSpec {
    t.resources.gpus = n;
    t
}

/// A worker with 8 cpus, 32 GiB and `n` GPUs.
pub fn gpu_worker(name: &str, n: u32) -> WorkerSpec {
    let mut w = worker(name, 8, 32);
    w.capacity.gpus = n;
    w
}
