//! A Rust client for Drover's HTTP API, and how a client on the server's machine finds
//! the server and its token without being told.

mod client;
pub mod discovery;
mod events;
pub mod tls;

pub use client::{
    Client, ClientError, IDEMPOTENCY_HEADER, ListQuery, SUBMIT_RETRY_FOR, new_idempotency_key,
};
pub use events::{EventFilter, EventStream, StreamItem};
