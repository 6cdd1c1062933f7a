//! Drover's worker agent.
//!
//! It joins a server with its real capacity, keeps one WebSocket open to it, runs the
//! attempts the server starts through an execution driver (`drover-exec`), streams
//! their output, reports how they ended, and heartbeats its usage. When the server is
//! away it reconnects with a short jittered backoff and reports what ended meanwhile;
//! if it cannot prove for the fence's window that the server hears it, it stops its own
//! tasks (`fence`), before the server gives up on them and may run them elsewhere.

mod agent;
mod checkpoint_archive;
mod checkpointer;
mod config;
mod connection;
mod data_catalog;
mod driver_set;
mod fence;
pub mod gpus;
mod lifeline;
pub mod metrics;
mod runner;
mod task_socket;

pub use agent::{WorkerError, identity, run, run_with_driver};
pub use config::WorkerConfig;
pub use driver_set::DriverSet;
pub use lifeline::{Lifeline, reap_when_agent_exits};
