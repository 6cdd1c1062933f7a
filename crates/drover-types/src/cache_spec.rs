//! A task's opt-in to the result cache.

use serde::{Deserialize, Serialize};

/// How long a cache entry lives when the task does not say: one day.
pub const DEFAULT_CACHE_TTL_MS: u64 = 24 * 3_600_000;
/// The longest lifetime a task may ask for: 30 days.
pub const MAX_CACHE_TTL_MS: u64 = 30 * 24 * 3_600_000;

/// A task that opts in to the result cache (`"cache": {}` in the API, `cache: true`
/// in a job file). A task whose cache key matches a live entry completes at once with
/// the entry's result and output instead of running; a task that runs and succeeds
/// records an entry. Every field is optional.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(
    default,
    deny_unknown_fields,
    expecting = "a cache setting: an object with optional key, salt and ttl_ms"
)]
pub struct CacheSpec {
    /// Your own key: tasks with the same key (and salt) share one entry, whatever their
    /// command. Without it the key is a digest of what decides the result: command,
    /// shell, environment (secret values as a digest), working directory, inputs,
    /// array position, result-affecting resources (GPUs) and the results of the
    /// task's dependencies.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(max_length = 256))]
    pub key: Option<String>,
    /// Mixed into the key: change it to stop sharing entries with older runs.
    #[serde(skip_serializing_if = "String::is_empty")]
    #[cfg_attr(feature = "openapi", schema(max_length = 256))]
    pub salt: String,
    /// How long the entry this task records lives, in milliseconds (default one day,
    /// at most 30 days). An expired entry is never used.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 2_592_000_000_u64))]
    pub ttl_ms: Option<u64>,
}

impl CacheSpec {
    /// The lifetime of an entry this task records.
    pub fn ttl(&self) -> u64 {
        self.ttl_ms.unwrap_or(DEFAULT_CACHE_TTL_MS)
    }
}
