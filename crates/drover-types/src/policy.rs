//! The scheduling policies a cluster can be switched between at runtime.

use crate::priority_weights::{MAX_LABEL_WEIGHTS, MultifactorWeights};
use serde::de::{self, Deserializer};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Which ready task goes first. In JSON: `{"kind": "priority", "aging_ms": 60000}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum QueuePolicyKind {
    /// First come, first served.
    Fcfs,
    /// Higher priority first. Every `aging_ms` a task has waited counts as one more
    /// level of priority, so low priorities never starve. `0` disables aging.
    Priority { aging_ms: u64 },
    /// Shortest expected runtime first (the maximum runtime when no hint was given;
    /// tasks with neither go last, in submission order).
    ShortestJobFirst,
    /// Owners share the cluster in proportion to their weights (default weight 1);
    /// within an owner, higher priority first.
    FairShare { weights: BTreeMap<String, u32> },
    /// A weighted sum of the task's priority, its age, its owner's usage, its size and
    /// numeric labels, highest first (see [`MultifactorWeights`]). In JSON:
    /// `{"kind": "multifactor", "factors": {"priority": 1000, "age": 1}}`.
    Multifactor { factors: MultifactorWeights },
}

/// The fields a queue policy object may have; which of them a kind takes is checked
/// after reading, so that a field the kind does not take is an error, not ignored.
#[derive(Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a queue policy: an object with a kind"
)]
struct QueueFields {
    kind: QueueKindName,
    #[serde(default)]
    aging_ms: Given<u64>,
    #[serde(default)]
    weights: Given<BTreeMap<String, u32>>,
    #[serde(default)]
    factors: Given<MultifactorWeights>,
}

/// A field that may be left out but, when given, must be a value (not `null`).
struct Given<T>(Option<T>);

impl<T> Default for Given<T> {
    fn default() -> Self {
        Given(None)
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Given<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Given<T>, D::Error> {
        T::deserialize(d).map(|v| Given(Some(v)))
    }
}

#[derive(Deserialize)]
#[serde(
    rename_all = "snake_case",
    expecting = "one of fcfs, priority, shortest_job_first, fair_share, multifactor"
)]
enum QueueKindName {
    Fcfs,
    Priority,
    #[serde(alias = "sjf")]
    ShortestJobFirst,
    #[serde(alias = "fair")]
    FairShare,
    Multifactor,
}

impl<'de> Deserialize<'de> for QueuePolicyKind {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<QueuePolicyKind, D::Error> {
        let f = QueueFields::deserialize(d)?;
        let only = |taken: &'static [&'static str]| -> Result<(), D::Error> {
            let given = [
                ("aging_ms", f.aging_ms.0.is_some()),
                ("weights", f.weights.0.is_some()),
                ("factors", f.factors.0.is_some()),
            ];
            match given
                .iter()
                .find(|(name, set)| *set && !taken.contains(name))
            {
                Some((name, _)) => Err(de::Error::unknown_field(name, taken)),
                None => Ok(()),
            }
        };
        Ok(match f.kind {
            QueueKindName::Fcfs => {
                only(&["kind"])?;
                QueuePolicyKind::Fcfs
            }
            QueueKindName::Priority => {
                only(&["kind", "aging_ms"])?;
                QueuePolicyKind::Priority {
                    aging_ms: f.aging_ms.0.unwrap_or_else(default_aging_ms),
                }
            }
            QueueKindName::ShortestJobFirst => {
                only(&["kind"])?;
                QueuePolicyKind::ShortestJobFirst
            }
            QueueKindName::FairShare => {
                only(&["kind", "weights"])?;
                QueuePolicyKind::FairShare {
                    weights: f.weights.0.unwrap_or_default(),
                }
            }
            QueueKindName::Multifactor => {
                only(&["kind", "factors"])?;
                let factors = f.factors.0.unwrap_or_default();
                if factors.labels.len() > MAX_LABEL_WEIGHTS {
                    return Err(de::Error::invalid_length(
                        factors.labels.len(),
                        &"at most 16 label weights in factors.labels",
                    ));
                }
                QueuePolicyKind::Multifactor { factors }
            }
        })
    }
}

fn default_aging_ms() -> u64 {
    60_000
}

impl Default for QueuePolicyKind {
    fn default() -> Self {
        QueuePolicyKind::Priority {
            aging_ms: default_aging_ms(),
        }
    }
}

impl QueuePolicyKind {
    pub fn name(&self) -> &'static str {
        match self {
            QueuePolicyKind::Fcfs => "fcfs",
            QueuePolicyKind::Priority { .. } => "priority",
            QueuePolicyKind::ShortestJobFirst => "sjf",
            QueuePolicyKind::FairShare { .. } => "fair",
            QueuePolicyKind::Multifactor { .. } => "multifactor",
        }
    }

    /// The policy for a short name, with default parameters.
    pub fn from_name(name: &str) -> Option<QueuePolicyKind> {
        match name.trim().to_ascii_lowercase().as_str() {
            "fcfs" | "fifo" => Some(QueuePolicyKind::Fcfs),
            "priority" => Some(QueuePolicyKind::default()),
            "sjf" | "shortest-job-first" | "shortest_job_first" => {
                Some(QueuePolicyKind::ShortestJobFirst)
            }
            "fair" | "fair-share" | "fair_share" | "fairshare" => {
                Some(QueuePolicyKind::FairShare {
                    weights: BTreeMap::new(),
                })
            }
            // Weights come from `--priority-weights`; alone, it is priority only.
            "multifactor" => Some(QueuePolicyKind::Multifactor {
                factors: MultifactorWeights {
                    priority: 1,
                    ..MultifactorWeights::default()
                },
            }),
            _ => None,
        }
    }
}

/// Which worker a task goes to, among those it fits on.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(
    rename_all = "snake_case",
    expecting = "one of bin_pack, spread, round_robin, load_aware"
)]
pub enum PlacementPolicyKind {
    /// Fill the busiest worker that fits, keeping others free for big tasks.
    #[default]
    #[serde(alias = "binpack")]
    BinPack,
    /// The least loaded worker that fits.
    Spread,
    /// Workers in turn.
    #[serde(alias = "round-robin", alias = "roundrobin")]
    RoundRobin,
    /// The worker with the lowest load that fits: the larger of its measured usage
    /// (reported by the worker through the log) and its reservations, relative to its
    /// capacity, CPU or memory whichever is higher.
    #[serde(alias = "load-aware", alias = "loadaware")]
    LoadAware,
}

impl PlacementPolicyKind {
    pub fn name(self) -> &'static str {
        match self {
            PlacementPolicyKind::BinPack => "binpack",
            PlacementPolicyKind::Spread => "spread",
            PlacementPolicyKind::RoundRobin => "round-robin",
            PlacementPolicyKind::LoadAware => "load-aware",
        }
    }

    pub fn from_name(name: &str) -> Option<PlacementPolicyKind> {
        match name.trim().to_ascii_lowercase().as_str() {
            "binpack" | "bin-pack" | "bin_pack" => Some(PlacementPolicyKind::BinPack),
            "spread" => Some(PlacementPolicyKind::Spread),
            "round-robin" | "round_robin" | "roundrobin" | "rr" => {
                Some(PlacementPolicyKind::RoundRobin)
            }
            "load-aware" | "load_aware" | "loadaware" | "load" => {
                Some(PlacementPolicyKind::LoadAware)
            }
            _ => None,
        }
    }
}

/// The whole scheduling configuration, switchable at runtime.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(
    default,
    deny_unknown_fields,
    expecting = "a scheduling policy: an object"
)]
pub struct PolicyConfig {
    #[cfg_attr(feature = "openapi", schema(schema_with = crate::openapi::queue_policy))]
    pub queue: QueuePolicyKind,
    pub placement: PlacementPolicyKind,
    /// May running lower-priority tasks be evicted to make room?
    pub preemption: bool,
    /// Grace between the eviction signal and the kill, in milliseconds.
    #[cfg_attr(feature = "openapi", schema(maximum = 18446744073709551615_u64))]
    pub preemption_grace_ms: u64,
    /// Score weight of holding a task's input keys (0 disables locality).
    #[cfg_attr(feature = "openapi", schema(maximum = 4294967295_u64))]
    pub locality_weight: u32,
    /// Score weight of matching a task's affinity selectors (0 disables affinity).
    #[cfg_attr(feature = "openapi", schema(maximum = 4294967295_u64))]
    pub affinity_weight: u32,
    /// Tasks each worker may hold queued beyond its free capacity, unreserved, to start
    /// the moment a slot frees instead of waiting for the server ([`DEFAULT_PREFETCH`]
    /// by default; 0 turns it off). Only a worker too full for every ready task gets
    /// them, in the order the queue policy gives at that moment; the worker and the
    /// core start/promote them in that order, and a worker with room takes them back
    /// from a busy one. A task submitted later that the queue policy puts first (a
    /// higher priority, a shorter expected runtime; under fair share, within one owner)
    /// still overtakes them: the prefetched tasks ranking behind it are taken back.
    #[cfg_attr(feature = "openapi", schema(maximum = 4294967295_u64))]
    pub prefetch_per_worker: u32,
}

impl Default for PolicyConfig {
    fn default() -> Self {
        PolicyConfig {
            queue: QueuePolicyKind::default(),
            placement: PlacementPolicyKind::default(),
            preemption: false,
            preemption_grace_ms: 5_000,
            locality_weight: 10,
            affinity_weight: 5,
            prefetch_per_worker: DEFAULT_PREFETCH,
        }
    }
}

/// Prefetched tasks per worker unless configured: enough to hide the round trip
/// through the server (report, fsync, apply, start) behind the tasks of a busy
/// worker's slots when they are short (measured in `benches/e2e.rs`).
pub const DEFAULT_PREFETCH: u32 = 2;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_api_accepts_the_cli_spellings() {
        let p: PolicyConfig =
            serde_json::from_str(r#"{"queue":{"kind":"fair"},"placement":"round-robin"}"#).unwrap();
        assert_eq!(
            p.queue,
            QueuePolicyKind::FairShare {
                weights: BTreeMap::new()
            }
        );
        assert_eq!(p.placement, PlacementPolicyKind::RoundRobin);
        let p: PolicyConfig =
            serde_json::from_str(r#"{"queue":{"kind":"priority"},"placement":"binpack"}"#).unwrap();
        assert_eq!(p.queue, QueuePolicyKind::default());
    }
}
