//! The autoscaler: on the leader only, starts workers when the queue waits and stops
//! idle ones after a cooldown, draining them first through the log so that nothing
//! running is killed (see ARCHITECTURE.md, "Autoscaling").
//!
//! - [`decision`]: the pure rules (queue, managed workers, time in; actions out).
//! - [`Provider`]: where workers come from (list, start one of a size, stop one); the
//!   [`DockerProvider`] runs them as containers of the local engine.
//! - [`scaler`]: the leader's loop that gathers the inputs and carries out the actions.

pub mod config;
pub mod decision;
pub mod docker;
pub mod error;
pub mod provider;
pub mod scaler;
pub mod status;

pub use config::{AutoscaleConfig, ProviderKind};
pub use docker::DockerProvider;
pub use error::ProviderError;
pub use provider::{Instance, Provider, StartRequest};
pub use status::AutoscaleState;
