//! Where managed workers come from: the seam between the autoscaler and a machine or
//! container API. Small on purpose: list, start one of a size, stop one.

use super::decision::WorkerSize;
use super::error::ProviderError;
use std::future::Future;

/// A worker instance the provider runs for this cluster (found by its labels or tags,
/// so a new leader finds those its predecessor started).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Instance {
    /// The provider's id (container id, instance id).
    pub id: String,
    /// The name its worker joins under.
    pub worker: String,
    pub size: WorkerSize,
    /// Whether it is running (not exited, not being removed).
    pub running: bool,
}

/// What a new instance is started with.
#[derive(Clone, Debug)]
pub struct StartRequest {
    /// The worker's name, unique in the cluster.
    pub worker: String,
    pub size: WorkerSize,
    /// A single-use join token for it (see "Worker identities").
    pub join_token: String,
}

/// Starts and stops worker instances.
pub trait Provider: Send + Sync + 'static {
    /// The instances of this cluster, running or not.
    fn list(&self) -> impl Future<Output = Result<Vec<Instance>, ProviderError>> + Send;
    /// Starts one; returns its id.
    fn start(
        &self,
        request: StartRequest,
    ) -> impl Future<Output = Result<String, ProviderError>> + Send;
    /// Stops and removes one (its worker was drained first, or is gone).
    fn stop(&self, id: &str) -> impl Future<Output = Result<(), ProviderError>> + Send;
}
