//! Workers as the core sees them.

use crate::isolation::Isolation;
use crate::resources::Resources;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// What a worker declares when it joins.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct WorkerSpec {
    /// Stable name (by default the host name); a reconnecting worker uses the same one.
    pub name: String,
    /// What it offers to tasks.
    pub capacity: Resources,
    pub labels: BTreeMap<String, String>,
    /// Data keys it already holds, for locality.
    pub data_keys: Vec<String>,
    /// The execution drivers it runs tasks with (`process`, `docker`, plugins). Empty
    /// (a worker or snapshot from before drivers) means `process` only.
    pub drivers: Vec<String>,
    /// What it enforces on its tasks and the GPU indices it hands out.
    pub isolation: Isolation,
}

impl WorkerSpec {
    /// Whether this worker runs tasks of driver `name`.
    pub fn has_driver(&self, name: &str) -> bool {
        if self.drivers.is_empty() {
            return name == crate::task_spec::PROCESS_DRIVER;
        }
        self.drivers.iter().any(|d| d == name)
    }

    /// The drivers it runs, `process` for a worker that declared none.
    pub fn driver_names(&self) -> Vec<String> {
        if self.drivers.is_empty() {
            vec![crate::task_spec::PROCESS_DRIVER.to_string()]
        } else {
            self.drivers.clone()
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum WorkerState {
    /// Takes new tasks.
    Active,
    /// Takes no new tasks; its running tasks finish.
    Draining,
    /// Missed its heartbeats; its attempts were ended. It may come back.
    Lost,
}

impl fmt::Display for WorkerState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            WorkerState::Active => "active",
            WorkerState::Draining => "draining",
            WorkerState::Lost => "lost",
        })
    }
}

/// A worker's measured usage, reported with its heartbeats.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(default)]
pub struct WorkerUsage {
    pub cpu_milli: u32,
    pub memory_bytes: u64,
    pub disk_free_bytes: u64,
}
