//! Drover's replicated state machine.
//!
//! The replicated log carries [`LogEntry`] values: a batch of [`Command`]s stamped with
//! the proposing leader's time. [`StateMachine::apply`] applies one entry to the
//! scheduling core and the side tables (results, usage), then runs one scheduling round,
//! and returns a [`CommandResult`] per command plus the [`Dispatch`]es that the leader
//! must carry out. Applying the same entries in the same order gives the same state and
//! the same dispatches on every replica: a placement is decided by the log itself, so a
//! restarted or newly elected leader can never assign a task twice.
//!
//! Pure: no I/O, no clock. The server wraps it in openraft's storage traits.

pub mod acl;
pub mod cache_key;
mod command;
mod command_decode;
pub mod idempotency;
mod machine;
pub mod result_cache;
mod snapshot_codec;
pub mod staging;
pub mod worker_identity;

pub use acl::{NewToken, TokenRecord, TokenSnapshot, TokenTable};
pub use command::{Command, CommandResult, LogEntry, Rejection};
pub use idempotency::IdempotencyKey;
pub use machine::{Dispatch, JobRecord, Output, StateMachine, StateSnapshot, TaskRecord};
pub use result_cache::{CacheEntry, CacheSnapshot, ResultCache};
pub use snapshot_codec::{
    FORMAT_VERSION, MAGIC, SnapshotCodecError, SnapshotReader, write_snapshot,
};
pub use staging::{StagedRef, StagingError};
