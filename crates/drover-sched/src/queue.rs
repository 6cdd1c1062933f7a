//! The ready queue: every Ready task, ordered for placement.
//!
//! Ready tasks are split into sub-queues by (group, shape). The *shape* is what decides
//! whether a task can fit on a worker (its resources and hard constraints); the *group*
//! is the owner under fair-share and a single group otherwise. Each sub-queue is an
//! ordered set by the policy's static key. Each group keeps an ordered set of its
//! sub-queues' heads, and under fair-share the groups themselves are ordered by their
//! weighted usage (under multifactor with a fair-share weight: by their best head's
//! key plus their usage penalty, see `OwnerOrder`). The best task is therefore
//! `first()` of `first()`: O(log n).
//!
//! During a scheduling round, a shape whose head could not be placed is *blocked*: its
//! heads leave the head sets until the round ends, because free resources only shrink
//! within a round. So a task no worker can take costs one failed fit per round and never
//! makes the round scan the queue or hold back other shapes.

use crate::queue_policy::OwnerOrder;
use drover_types::TaskId;
use std::collections::{BTreeSet, HashMap};

type Item = (u128, TaskId);
/// A group's place among groups: (share, 0, group) under fair share; (head key +
/// share, head task, group) under multifactor, so that equal sums go in task id order.
type Rank = (u128, TaskId, u32);

#[derive(Debug)]
struct Sub {
    group: u32,
    shape: u32,
    items: BTreeSet<Item>,
    blocked: bool,
}

#[derive(Debug, Default)]
struct Group {
    /// Heads of this group's unblocked, non-empty sub-queues: (key, task, sub-queue).
    heads: BTreeSet<(u128, TaskId, u32)>,
    /// Weighted usage (fair-share), or the usage penalty (multifactor); lower is
    /// served first.
    share: u128,
}

#[derive(Debug)]
pub(crate) struct ReadyQueue {
    subs: Vec<Sub>,
    sub_index: HashMap<(u32, u32), u32>,
    by_shape: Vec<Vec<u32>>,
    groups: Vec<Group>,
    /// When split by owner: the rank of every group with a head (see [`Self::rank`]).
    fair: BTreeSet<Rank>,
    by_group: bool,
    order: OwnerOrder,
    blocked: Vec<u32>,
    len: usize,
    /// Ready tasks per shape, and the (cpu, memory) each shape asks for.
    shape_len: Vec<u64>,
    shape_need: Vec<(u32, u64)>,
    /// Shapes with ready tasks, by the CPU and by the memory they ask for: the smallest
    /// requests, so that a round can stop as soon as no worker could take any of them.
    by_cpu: BTreeSet<(u32, u32)>,
    by_mem: BTreeSet<(u64, u32)>,
}

impl ReadyQueue {
    pub fn new(order: OwnerOrder) -> ReadyQueue {
        ReadyQueue {
            order,
            by_group: order != OwnerOrder::None,
            subs: Vec::new(),
            sub_index: HashMap::new(),
            by_shape: Vec::new(),
            groups: vec![Group::default()],
            fair: BTreeSet::new(),
            blocked: Vec::new(),
            len: 0,
            shape_len: Vec::new(),
            shape_need: Vec::new(),
            by_cpu: BTreeSet::new(),
            by_mem: BTreeSet::new(),
        }
    }

    /// True when the queue is split per owner (fair-share).
    pub fn by_group(&self) -> bool {
        self.by_group
    }

    pub fn len(&self) -> usize {
        self.len
    }

    fn group_mut(&mut self, g: u32) -> &mut Group {
        let g = g as usize;
        if self.groups.len() <= g {
            self.groups.resize_with(g + 1, Group::default);
        }
        &mut self.groups[g]
    }

    /// The sub-queue of (group, shape), if it exists. With a single group, a shape has
    /// at most one sub-queue: no hashing on the hot path.
    fn find_sub(&self, group: u32, shape: u32) -> Option<u32> {
        if !self.by_group {
            return self
                .by_shape
                .get(shape as usize)
                .and_then(|v| v.first().copied());
        }
        self.sub_index.get(&(group, shape)).copied()
    }

    fn sub_for(&mut self, group: u32, shape: u32) -> u32 {
        if let Some(s) = self.find_sub(group, shape) {
            return s;
        }
        let s = self.subs.len() as u32;
        self.subs.push(Sub {
            group,
            shape,
            items: BTreeSet::new(),
            blocked: false,
        });
        self.sub_index.insert((group, shape), s);
        let sh = shape as usize;
        if self.by_shape.len() <= sh {
            self.by_shape.resize_with(sh + 1, Vec::new);
        }
        self.by_shape[sh].push(s);
        self.group_mut(group);
        s
    }

    /// Where group `g` stands among the groups, if it has a head.
    fn rank(&self, g: u32) -> Option<Rank> {
        let grp = self.groups.get(g as usize)?;
        let &(key, id, _) = grp.heads.first()?;
        Some(match self.order {
            OwnerOrder::HeadPlusShare => (key + grp.share, id, g),
            _ => (grp.share, TaskId(0), g),
        })
    }

    /// Applies `change` to group `g` and moves the group to its new rank.
    fn regroup(&mut self, g: u32, change: impl FnOnce(&mut Group)) {
        let before = if self.by_group { self.rank(g) } else { None };
        change(self.group_mut(g));
        if !self.by_group {
            return;
        }
        let after = self.rank(g);
        if before != after {
            if let Some(r) = before {
                self.fair.remove(&r);
            }
            if let Some(r) = after {
                self.fair.insert(r);
            }
        }
    }

    fn replace_head(&mut self, s: u32, old: Option<Item>, new: Option<Item>) {
        let g = self.subs[s as usize].group;
        self.regroup(g, |grp| {
            if let Some((k, id)) = old {
                grp.heads.remove(&(k, id, s));
            }
            if let Some((k, id)) = new {
                grp.heads.insert((k, id, s));
            }
        });
    }

    /// The smallest CPU and the smallest memory any ready task asks for.
    pub fn min_need(&self) -> Option<(u32, u64)> {
        Some((self.by_cpu.first()?.0, self.by_mem.first()?.0))
    }

    fn count(&mut self, shape: u32, up: bool) {
        let sh = shape as usize;
        let (cpu, mem) = self.shape_need[sh];
        if up {
            self.shape_len[sh] += 1;
            if self.shape_len[sh] == 1 {
                self.by_cpu.insert((cpu, shape));
                self.by_mem.insert((mem, shape));
            }
        } else {
            self.shape_len[sh] -= 1;
            if self.shape_len[sh] == 0 {
                self.by_cpu.remove(&(cpu, shape));
                self.by_mem.remove(&(mem, shape));
            }
        }
    }

    /// Queues a ready task; `need` is its shape's (cpu, memory).
    pub fn insert(&mut self, group: u32, shape: u32, need: (u32, u64), key: u128, id: TaskId) {
        let sh = shape as usize;
        if self.shape_len.len() <= sh {
            self.shape_len.resize(sh + 1, 0);
            self.shape_need.resize(sh + 1, (0, 0));
        }
        self.shape_need[sh] = need;
        self.count(shape, true);
        let s = self.sub_for(group, shape);
        let sub = &mut self.subs[s as usize];
        let old = sub.items.first().copied();
        sub.items.insert((key, id));
        self.len += 1;
        if sub.blocked {
            return;
        }
        let new = sub.items.first().copied();
        if old != new {
            self.replace_head(s, old, new);
        }
    }

    pub fn remove(&mut self, group: u32, shape: u32, key: u128, id: TaskId) -> bool {
        let Some(s) = self.find_sub(group, shape) else {
            return false;
        };
        let sub = &mut self.subs[s as usize];
        let old = sub.items.first().copied();
        if !sub.items.remove(&(key, id)) {
            return false;
        }
        self.len -= 1;
        self.count(shape, false);
        let sub = &mut self.subs[s as usize];
        if sub.blocked {
            return true;
        }
        let new = sub.items.first().copied();
        if old != new {
            self.replace_head(s, old, new);
        }
        true
    }

    /// The task to consider next, its sub-queue and its shape.
    pub fn best(&self) -> Option<(TaskId, u32, u32)> {
        let g = if self.by_group {
            self.fair.first()?.2
        } else {
            0
        };
        let &(_, id, s) = self.groups.get(g as usize)?.heads.first()?;
        Some((id, s, self.subs[s as usize].shape))
    }

    /// Removes the head of sub-queue `s` (just placed).
    pub fn pop_head(&mut self, s: u32) {
        let sub = &mut self.subs[s as usize];
        let old = sub.items.pop_first();
        let shape = sub.shape;
        if old.is_some() {
            self.len -= 1;
            self.count(shape, false);
        }
        let sub = &mut self.subs[s as usize];
        let new = sub.items.first().copied();
        if !sub.blocked {
            self.replace_head(s, old, new);
        }
    }

    /// Takes every sub-queue of `shape` out of consideration until [`Self::unblock_all`].
    pub fn block_shape(&mut self, shape: u32) {
        let Some(list) = self.by_shape.get(shape as usize) else {
            return;
        };
        for i in 0..list.len() {
            let s = self.by_shape[shape as usize][i];
            let sub = &mut self.subs[s as usize];
            if sub.blocked {
                continue;
            }
            sub.blocked = true;
            let head = sub.items.first().copied();
            self.blocked.push(s);
            if head.is_some() {
                self.replace_head(s, head, None);
            }
        }
    }

    pub fn unblock_all(&mut self) {
        for s in std::mem::take(&mut self.blocked) {
            let sub = &mut self.subs[s as usize];
            sub.blocked = false;
            let head = sub.items.first().copied();
            if head.is_some() {
                self.replace_head(s, None, head);
            }
        }
    }

    /// Sets a group's weighted usage (fair-share), re-ordering it among the groups.
    pub fn set_share(&mut self, g: u32, share: u128) {
        self.regroup(g, |grp| grp.share = share);
    }

    /// A group's share as last set (for the invariant checker).
    pub fn share(&self, g: u32) -> u128 {
        self.groups.get(g as usize).map_or(0, |grp| grp.share)
    }

    /// How many queued tasks of `group` come before `(key, id)`, counting up to `cap`
    /// (then `cap` is returned). O(min(count, cap) + sub-queues): for pending reasons
    /// only, never on the scheduling path.
    pub fn count_ahead(&self, group: u32, key: u128, id: TaskId, cap: u64) -> u64 {
        let mut n = 0;
        for s in self.subs.iter().filter(|s| s.group == group) {
            n += s.items.range(..(key, id)).take((cap - n) as usize).count() as u64;
            if n >= cap {
                break;
            }
        }
        n
    }

    pub fn contains(&self, group: u32, shape: u32, key: u128, id: TaskId) -> bool {
        self.find_sub(group, shape)
            .is_some_and(|s| self.subs[s as usize].items.contains(&(key, id)))
    }

    /// Every queued task (any order), for the invariant checker.
    pub fn all(&self) -> impl Iterator<Item = TaskId> + '_ {
        self.subs
            .iter()
            .flat_map(|s| s.items.iter().map(|&(_, id)| id))
    }

    /// Checks the head sets against the sub-queues.
    pub fn check(&self) -> Result<(), String> {
        let mut n = 0;
        for (i, s) in self.subs.iter().enumerate() {
            n += s.items.len();
            if s.blocked {
                return Err(format!("sub-queue {i} is still blocked outside a round"));
            }
            if let Some(&(k, id)) = s.items.first() {
                let g = &self.groups[s.group as usize];
                if !g.heads.contains(&(k, id, i as u32)) {
                    return Err(format!("head {id} of sub-queue {i} missing from its group"));
                }
            }
        }
        if n != self.len {
            return Err(format!("queue length {} but {} items", self.len, n));
        }
        let heads: usize = self.groups.iter().map(|g| g.heads.len()).sum();
        let nonempty = self.subs.iter().filter(|s| !s.items.is_empty()).count();
        if heads != nonempty {
            return Err(format!("{heads} heads for {nonempty} non-empty sub-queues"));
        }
        let mut per_shape = vec![0u64; self.shape_len.len()];
        for sub in &self.subs {
            per_shape[sub.shape as usize] += sub.items.len() as u64;
        }
        let nonempty_shapes = per_shape.iter().filter(|&&n| n > 0).count();
        if per_shape != self.shape_len
            || nonempty_shapes != self.by_cpu.len()
            || nonempty_shapes != self.by_mem.len()
        {
            return Err("per-shape counts out of date".into());
        }
        if self.by_group {
            let with_heads = self.groups.iter().filter(|g| !g.heads.is_empty()).count();
            if with_heads != self.fair.len() {
                return Err("fair-share group set out of date".into());
            }
            for g in 0..self.groups.len() as u32 {
                if let Some(r) = self.rank(g)
                    && !self.fair.contains(&r)
                {
                    return Err(format!("group {g} is not at its rank {r:?}"));
                }
            }
        }
        Ok(())
    }
}
