//! Drover's coordinator: the replicated log, the worker sessions, the HTTP API.
//!
//! [`start`] brings a server up from a [`ServerConfig`]. Every state change is a
//! command proposed through the [`proposer`] into the raft log, applied by the
//! deterministic state machine (`drover-state`) on every replica; the leader then
//! carries out what the applied entries decided (start or kill attempts on workers).

pub mod api;
pub mod auth;
pub mod autoscale;
mod background;
pub mod blob;
pub mod checkpoint;
pub mod config;
mod entry_size;
pub mod events;
mod heap_trim;
pub mod identity;
pub mod input_limits;
mod join_target;
mod joining;
pub mod membership;
pub mod metrics;
pub mod node;
pub mod output;
pub mod output_archive;
pub mod output_repair;
pub mod output_replication;
pub mod proposer;
pub mod raft;
pub mod retention;
mod server;
pub mod sessions;
pub mod tls;
pub mod ui;
pub mod worker_identity;
mod worker_session;
pub mod worker_updates;

pub use auth::ClusterToken;
pub use config::{ServerConfig, TlsMode};
pub use server::{RunningServer, ServerError, start};
