//! Drover's scheduling core.
//!
//! A [`Scheduler`] holds the task table, the workers, the queues and the policies.
//! It is driven by two calls and nothing else:
//!
//! - [`Scheduler::apply`] takes one [`Event`] (a submission, a worker joining, an attempt
//!   starting or ending, a cancellation, a policy switch, ...) and the time `now`;
//! - [`Scheduler::schedule`] runs one scheduling round at `now`: timers (time limits,
//!   retry backoffs) fire, ready tasks are placed, preemptions are chosen.
//!
//! Both return [`Action`]s for the runtime to carry out (start an attempt on a worker,
//! kill one). The core does no I/O, reads no clock and has no randomness, so the same
//! events at the same `now` give the same actions on every replica of the replicated log:
//! a placement is decided by the committed log itself.

mod action;
mod cache_hold;
mod compact;
mod error;
mod event;
mod invariants;
mod keys;
mod pending;
mod placement;
mod preemption;
mod queue;
mod queue_policy;
mod resize;
mod retire;
mod round;
mod scheduler;
mod snapshot;
mod split;
mod stored_spec;
mod submit;
mod task_slots;
mod task_table;
mod timers;
mod view;
mod worker_pool;

pub use action::{Action, KillReason, Plan};
pub use compact::{pre_driver_layout, pre_isolation_layout};
pub use error::{CoreError, InvariantViolation, ResolveError};
pub use event::{CancelTarget, Event};
pub use resize::{
    MAX_RESIZE_HISTORY, ResizeDecision, ResizeRecord, ResizeRefusal, ResizeRequest, ResizeSnapshot,
};
pub use scheduler::{
    Applied, KILL_GRACE_MS, MAX_PREEMPTIONS_PER_ROUND, MAX_RETIRED_PER_EVENT, Scheduler,
    SchedulerConfig, SchedulerSnapshot, TIME_LIMIT_SLACK_MS, Transition,
};
pub use split::{MAX_WAVE, SplitRecord, SplitView};
pub use stored_spec::StoredSpec;
pub use view::{AttemptRecord, Counts, TaskRange, TaskView, WorkerView};
