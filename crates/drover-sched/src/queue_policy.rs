//! Queue policies: which ready task goes first.
//!
//! A policy turns a ready task into a *static* ordering key (lower goes first, ties
//! broken by task id). "Static" means the key does not change while the task waits,
//! so a ready task is inserted once into an ordered set and each scheduling decision
//! is a `first()` on that set: O(log n) per decision, whatever the number of queued
//! tasks. Policies whose natural definition moves with time (priority aging) are
//! rewritten into an equivalent static key (see [`PriorityAging`]). Fair-share, whose
//! order between owners depends on live usage, is split in two: the static key orders
//! tasks *within* an owner, and the queue orders owners by their weighted usage (see
//! [`crate::queue::ReadyQueue`]). Multifactor ([`Multifactor`]) combines both: its
//! static key holds every term but the owner's usage (age rewritten like aging), and
//! with a fair-share weight the queue orders owners by their head's key plus the
//! owner's usage penalty, the one term that is the same for all of an owner's tasks.
//!
//! Switching policies recomputes every ready task's key and rebuilds the queue:
//! O(n log n), deterministic, nothing lost; ties keep submission (id) order.

use drover_types::{FactorInput, Millis, MultifactorWeights, QueuePolicyKind};
use std::collections::BTreeMap;
use std::fmt::Debug;

/// What a queue policy may look at to order a ready task. All of it is fixed while the
/// task is ready, so a key computed when the task is enqueued stays valid.
#[derive(Clone, Copy, Debug)]
pub struct KeyInput<'a> {
    pub priority: i32,
    /// When the task first became ready (kept across retries, so retried tasks keep
    /// the age they earned).
    pub ready_at: Millis,
    /// Expected runtime, or else the maximum runtime, if the spec gives either.
    pub runtime_hint: Option<u64>,
    /// CPU the task asks for, and its labels (multifactor's size and label terms).
    pub cpu_milli: u32,
    pub labels: &'a BTreeMap<String, String>,
}

/// How the queue orders owners (groups) against each other.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OwnerOrder {
    /// One group: no split by owner.
    None,
    /// By the owner's share alone (fair share: weighted usage, then least recently served).
    Share,
    /// By the key of the owner's best task plus the owner's share (multifactor's
    /// fair-share penalty): exactly the order of the full sum, task by task.
    HeadPlusShare,
}

/// One queue policy. Implementations are small and stateless apart from their
/// parameters; they are chosen by [`build`] from the configuration.
pub trait QueuePolicy: Debug + Send + Sync {
    fn name(&self) -> &'static str;
    /// The ordering key of a ready task: lower goes first; equal keys go in id order.
    fn key(&self, t: &KeyInput<'_>) -> u128;
    /// Whether the queue is split per owner, and how owners are then ordered.
    fn owner_order(&self) -> OwnerOrder {
        OwnerOrder::None
    }
    /// Under [`OwnerOrder::HeadPlusShare`]: what an owner's placed tasks reserving
    /// `cpu_milli` add to the keys of its tasks (same scale as [`Self::key`]).
    fn owner_penalty(&self, _cpu_milli: u64) -> u128 {
        0
    }
    /// The weights, when the policy computes an effective priority.
    fn multifactor(&self) -> Option<&MultifactorWeights> {
        None
    }
    /// An owner's fair-share weight (never 0).
    fn weight(&self, _owner: &str) -> u32 {
        1
    }
    /// Completes "queued behind N tasks ..." in pending reasons.
    fn ahead_phrase(&self) -> &'static str;
}

/// Maps a signed key to an unsigned one preserving order.
fn biased(v: i128) -> u128 {
    (v + (1i128 << 100)) as u128
}

/// First come, first served: submission order (task ids are assigned in submission
/// order). Cost per decision O(log n); enqueue O(log n).
#[derive(Debug)]
pub struct Fcfs;

impl QueuePolicy for Fcfs {
    fn name(&self) -> &'static str {
        "fcfs"
    }
    fn key(&self, _t: &KeyInput<'_>) -> u128 {
        0
    }
    fn ahead_phrase(&self) -> &'static str {
        "submitted earlier"
    }
}

/// Higher priority first, with aging: a task that has been ready for `w` ms has an
/// effective priority of `priority + w / aging_ms`. Ordering by that moving quantity
/// is the same as ordering by the static `ready_at - priority * aging_ms` (ascending):
/// `p1 + (now - r1)/A > p2 + (now - r2)/A  ⇔  r1 - p1·A < r2 - p2·A`. So aging costs
/// nothing at decision time, and a low priority task eventually overtakes any newer
/// high-priority arrivals (no starvation). `aging_ms == 0` is pure priority.
/// Cost per decision O(log n); enqueue O(log n).
#[derive(Debug)]
pub struct PriorityAging {
    pub aging_ms: u64,
}

impl QueuePolicy for PriorityAging {
    fn name(&self) -> &'static str {
        "priority"
    }
    fn key(&self, t: &KeyInput<'_>) -> u128 {
        if self.aging_ms == 0 {
            biased(-(t.priority as i128))
        } else {
            biased(t.ready_at.0 as i128 - t.priority as i128 * self.aging_ms as i128)
        }
    }
    fn ahead_phrase(&self) -> &'static str {
        // Equal priorities queue in submission order, so "or equal" keeps it exact.
        "of higher or equal priority"
    }
}

/// Shortest job first: by expected runtime, else maximum runtime; tasks with neither
/// go last, in submission order. Cost per decision O(log n); enqueue O(log n).
#[derive(Debug)]
pub struct ShortestJobFirst;

impl QueuePolicy for ShortestJobFirst {
    fn name(&self) -> &'static str {
        "sjf"
    }
    fn key(&self, t: &KeyInput<'_>) -> u128 {
        t.runtime_hint.unwrap_or(u64::MAX) as u128
    }
    fn ahead_phrase(&self) -> &'static str {
        "expected to be shorter"
    }
}

/// Weighted fair share across owners: the owner whose reserved CPU divided by its
/// weight is lowest goes next; within an owner, higher priority first. Owners are
/// kept in an ordered set keyed by that share, updated in O(log owners) when an
/// owner's reservation changes. Cost per decision O(log owners + log n).
#[derive(Debug)]
pub struct FairShare {
    pub weights: BTreeMap<String, u32>,
}

impl QueuePolicy for FairShare {
    fn name(&self) -> &'static str {
        "fair"
    }
    fn key(&self, t: &KeyInput<'_>) -> u128 {
        biased(-(t.priority as i128))
    }
    fn owner_order(&self) -> OwnerOrder {
        OwnerOrder::Share
    }
    fn weight(&self, owner: &str) -> u32 {
        // A weight of 0 would divide by zero; treat it as the smallest share, 1.
        self.weights.get(owner).copied().unwrap_or(1).max(1)
    }
    fn ahead_phrase(&self) -> &'static str {
        "of the same owner with higher or equal priority"
    }
}

/// Multifactor: highest effective priority first, the weighted sum of
/// [`MultifactorWeights`] (`drover_types::priority_weights`), in integer thousandths.
/// The sum is `S + age·(now - ready_at) - fairshare·usage(owner)` where `S` (priority,
/// size, labels) is fixed per task. Ordering by it descending is ordering by
/// `age·ready_at - S` ascending (the `now` term is the same for every task, as in
/// [`PriorityAging`]) plus the owner's `fairshare·usage`, which is the same for every
/// task of one owner: the queue orders within an owner by the static key and across
/// owners by head key + penalty ([`OwnerOrder::HeadPlusShare`]). Without a fair-share
/// weight there is no split. Cost per decision O(log owners + log n).
#[derive(Debug)]
pub struct Multifactor {
    pub weights: MultifactorWeights,
}

impl QueuePolicy for Multifactor {
    fn name(&self) -> &'static str {
        "multifactor"
    }
    fn key(&self, t: &KeyInput<'_>) -> u128 {
        let input = FactorInput {
            priority: t.priority,
            waited_ms: 0,
            cpu_milli: t.cpu_milli,
            labels: t.labels,
            owner_cpu_milli: 0,
        };
        // |static| < 2^86 and |age·ready_at| < 2^95: well inside `biased`'s 2^100.
        biased(self.weights.age as i128 * t.ready_at.0 as i128 - self.weights.static_milli(&input))
    }
    fn owner_order(&self) -> OwnerOrder {
        if self.weights.fairshare == 0 {
            OwnerOrder::None
        } else {
            OwnerOrder::HeadPlusShare
        }
    }
    fn owner_penalty(&self, cpu_milli: u64) -> u128 {
        self.weights.fairshare as u128 * cpu_milli as u128
    }
    fn multifactor(&self) -> Option<&MultifactorWeights> {
        Some(&self.weights)
    }
    fn ahead_phrase(&self) -> &'static str {
        if self.weights.fairshare == 0 {
            "of higher or equal effective priority"
        } else {
            "of the same owner with higher or equal effective priority"
        }
    }
}

/// The policy object for a configuration.
pub fn build(kind: &QueuePolicyKind) -> Box<dyn QueuePolicy> {
    match kind {
        QueuePolicyKind::Fcfs => Box::new(Fcfs),
        QueuePolicyKind::Priority { aging_ms } => Box::new(PriorityAging {
            aging_ms: *aging_ms,
        }),
        QueuePolicyKind::ShortestJobFirst => Box::new(ShortestJobFirst),
        QueuePolicyKind::FairShare { weights } => Box::new(FairShare {
            weights: weights.clone(),
        }),
        QueuePolicyKind::Multifactor { factors } => Box::new(Multifactor {
            weights: factors.clone(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    static NO_LABELS: BTreeMap<String, String> = BTreeMap::new();

    fn input(_id: u64, priority: i32, ready_at: u64) -> KeyInput<'static> {
        KeyInput {
            priority,
            ready_at: Millis(ready_at),
            runtime_hint: None,
            cpu_milli: 1000,
            labels: &NO_LABELS,
        }
    }

    #[test]
    fn aging_key_orders_like_effective_priority() {
        let p = PriorityAging { aging_ms: 1000 };
        // Ready for 10 s at priority 0 beats priority 5 that just arrived (0 + 10 > 5).
        let old_low = p.key(&input(1, 0, 0));
        let new_high = p.key(&input(2, 5, 10_000));
        assert!(old_low < new_high);
        // ...but not priority 20.
        assert!(p.key(&input(3, 20, 10_000)) < old_low);
    }

    #[test]
    fn sjf_puts_unknown_runtimes_last() {
        let s = ShortestJobFirst;
        let mut a = input(1, 0, 0);
        a.runtime_hint = Some(5);
        assert!(s.key(&a) < s.key(&input(2, 0, 0)));
    }
}
