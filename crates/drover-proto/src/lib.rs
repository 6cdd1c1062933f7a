//! Drover's wire formats.
//!
//! - [`worker`]: the messages of the long-lived stream between a worker and the server
//!   (a WebSocket: JSON text frames for control, binary frames for output chunks).
//! - [`api`]: the bodies of the HTTP/JSON API under `/v1`.
//! - [`events`]: the cluster event stream (`/v1/events`) and its ids.
//! - [`checkpoint`]: a task's saved checkpoint directory, as recorded and as carried in
//!   chunks over the worker stream.
//! - [`integrity`]: the signature of starts and the digests of reports.
//!
//! Every type here is plain data with serde derives; both ends depend on this crate, so
//! a field added here is added on both sides at once.

pub mod api;
pub mod autoscale;
pub mod checkpoint;
pub mod events;
pub mod integrity;
pub mod task_socket;
pub mod worker;
pub mod worker_identity;
