//! Drover's domain model.
//!
//! Everything a user can say to Drover (task and job specs, worker specs, policies)
//! and everything Drover says back about a task (its state, the outcome of an attempt)
//! is defined here, together with the validation that turns user input into a
//! well-formed spec or a [`ValidationError`] naming the offending field.
//!
//! This crate is pure: no I/O, no clock, no randomness. Time is carried as [`Millis`]
//! values that the caller supplies.

mod cache_spec;
mod checkpoint;
mod ids;
pub mod input;
mod isolation;
mod job;
mod limits;
#[cfg(feature = "openapi")]
mod openapi;
mod policy;
mod priority_weights;
mod resources;
mod role;
mod secret;
mod split_spec;
mod state;
mod task_spec;
mod time;
mod validation;
mod worker;

pub use cache_spec::{CacheSpec, DEFAULT_CACHE_TTL_MS, MAX_CACHE_TTL_MS};
pub use checkpoint::{CheckpointSpec, MAX_CHECKPOINT_INTERVAL_MS, MIN_CHECKPOINT_INTERVAL_MS};
pub use ids::{Attempt, JobId, TaskId, WorkerId, WorkerRef};
pub use input::{Input, InputError, from_input};
pub use isolation::{EnforcedLimit, Isolation};
pub use job::{ArraySpec, DepRef, JobSpec, KeyRef};
pub use limits::Limits;
pub use policy::{PlacementPolicyKind, PolicyConfig, QueuePolicyKind};
pub use priority_weights::{
    EffectivePriority, FactorInput, MAX_LABEL_VALUE, MAX_LABEL_WEIGHTS, MultifactorWeights,
    PriorityTerm, PriorityWeightsError, label_milli,
};
pub use resources::{
    ParseResourceError, Resources, format_bytes, format_cpus, parse_bytes, parse_cpus,
};
pub use role::Role;
pub use secret::{REDACTED, SecretString};
pub use split_spec::{
    AUTO_SPLIT_SLOTS, DEFAULT_CHUNK_DURATION_MS, MAX_SPLIT_CHUNKS, SplitChunks, SplitRange,
    SplitSpec,
};
pub use state::{AttemptUsage, FailureCause, Outcome, TaskState};
pub use task_spec::{
    Backoff, DOCKER_DRIVER, LabelSelector, PROCESS_DRIVER, RetryPolicy, SelectorOp, TaskSpec,
};
pub use time::{Millis, format_duration_ms};
pub use validation::{ValidationError, is_driver_name, validate_job, validate_task};
pub use worker::{WorkerSpec, WorkerState, WorkerUsage};
