//! A task's opt-in to checkpoints: what it writes into `DROVER_CHECKPOINT_DIR` is
//! saved on the servers on an interval and when the task is stopped, and restored into
//! the directory of its next attempt.

use serde::{Deserialize, Serialize};

/// The shortest interval between two checkpoints: each one is an archive of the
/// directory sent to the servers, so a shorter one costs more than it saves.
pub const MIN_CHECKPOINT_INTERVAL_MS: u64 = 100;
/// The longest interval (a day): beyond it the task may as well not checkpoint.
pub const MAX_CHECKPOINT_INTERVAL_MS: u64 = 86_400_000;

/// How often an attempt's checkpoint directory is saved.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(
    deny_unknown_fields,
    expecting = "a checkpoint: an object with interval_ms"
)]
pub struct CheckpointSpec {
    /// Milliseconds between two saves of the directory while the attempt runs (a
    /// directory that did not change is not sent again). It is also saved once more
    /// when the attempt is stopped (preemption, a kill, its time limit) or ends.
    #[cfg_attr(feature = "openapi", schema(minimum = 100, maximum = 86_400_000))]
    pub interval_ms: u64,
}
