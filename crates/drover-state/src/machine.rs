//! The state machine: the scheduling core plus what the core need not know (results,
//! measured usage), applied entry by entry.

use crate::command::{Command, CommandResult, LogEntry, Rejection};
use drover_proto::worker::{AttemptUsage, StartTask};
use drover_sched::{Action, Event, KillReason, Scheduler, SchedulerConfig, SchedulerSnapshot};
use drover_types::{Attempt, JobId, Millis, TaskId, WorkerId};
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
}

/// The durable state, as written into a snapshot.
#[derive(Debug, Serialize, Deserialize)]
pub struct StateSnapshot {
    pub sched: SchedulerSnapshot,
    pub records: BTreeMap<TaskId, TaskRecord>,
    pub jobs: BTreeMap<JobId, JobRecord>,
}

#[derive(Debug)]
pub struct StateMachine {
    sched: Scheduler,
    records: BTreeMap<TaskId, TaskRecord>,
    jobs: BTreeMap<JobId, JobRecord>,
}

impl StateMachine {
    pub fn new(config: SchedulerConfig) -> StateMachine {
        StateMachine {
            sched: Scheduler::new(config),
            records: BTreeMap::new(),
            jobs: BTreeMap::new(),
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

    /// Applies one log entry: every command in order, then one scheduling round.
    pub fn apply(&mut self, entry: &LogEntry) -> (Vec<CommandResult>, Vec<Dispatch>) {
        let now = entry.now;
        let mut results = Vec::with_capacity(entry.commands.len());
        let mut dispatches = Vec::new();
        for command in &entry.commands {
            results.push(self.apply_command(now, command, &mut dispatches));
        }
        let plan = self.sched.schedule(now);
        for action in plan.actions {
            self.push_action(action, &mut dispatches);
        }
        (results, dispatches)
    }

    fn apply_command(
        &mut self,
        now: Millis,
        command: &Command,
        out: &mut Vec<Dispatch>,
    ) -> CommandResult {
        let event = match command {
            Command::Submit { job } => Event::Submit { job: job.clone() },
            Command::Cancel { target } => Event::Cancel { target: *target },
            Command::WorkerJoin { spec, running } => Event::WorkerJoin {
                spec: spec.clone(),
                running: running.clone(),
            },
            Command::WorkerLost { worker } => Event::WorkerLost { worker: *worker },
            Command::WorkerDrain { worker } => Event::WorkerDrain { worker: *worker },
            Command::WorkerResume { worker } => Event::WorkerResume { worker: *worker },
            Command::TaskStarted {
                task,
                attempt,
                worker,
            } => Event::TaskStarted {
                task: *task,
                attempt: *attempt,
                worker: *worker,
            },
            Command::TaskFinished { worker, report } => {
                // Whatever the core says, the worker may forget this report: either it
                // is recorded now or it is stale and never will be.
                out.push(Dispatch::FinishedAck {
                    worker: *worker,
                    task: report.task,
                    attempt: report.attempt,
                });
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
                if let Some((job, tasks)) = applied.job {
                    let name = match command {
                        Command::Submit { job } => job.name.clone(),
                        _ => String::new(),
                    };
                    self.jobs.insert(
                        job,
                        JobRecord {
                            name,
                            first: tasks.first,
                            count: tasks.count,
                        },
                    );
                    CommandResult::Submitted { job, tasks }
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

    fn push_action(&self, action: Action, out: &mut Vec<Dispatch>) {
        match action {
            Action::Start {
                task,
                attempt,
                worker,
            } => {
                if let Some(start) = self.start_message(task, attempt) {
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
        }
    }

    /// Builds what a worker needs to run an attempt, including the results of the
    /// task's dependencies in order (for split/combine).
    pub fn start_message(&self, task: TaskId, attempt: Attempt) -> Option<StartTask> {
        let view = self.sched.task(task)?;
        let inputs = view
            .deps
            .iter()
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
            spec: view.spec.clone(),
            array_index: view.array_index,
            array_count: view.array_count,
            inputs,
        })
    }

    pub fn snapshot(&self) -> StateSnapshot {
        StateSnapshot {
            sched: self.sched.snapshot(),
            records: self.records.clone(),
            jobs: self.jobs.clone(),
        }
    }

    pub fn restore(snapshot: StateSnapshot) -> StateMachine {
        let mut sched = snapshot.sched;
        // Snapshots from before the core knew job names: it learns them from ours.
        sched.adopt_job_names(|job| snapshot.jobs.get(&job).map(|r| r.name.as_str()));
        StateMachine {
            sched: Scheduler::restore(sched),
            records: snapshot.records,
            jobs: snapshot.jobs,
        }
    }
}
