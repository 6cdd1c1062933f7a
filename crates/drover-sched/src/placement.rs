//! Placement policies: which worker a task goes to, among those it fits on.
//!
//! A policy only decides the *order* in which workers are tried; the scheduler checks
//! each candidate (active, hard constraints, free resources) and stops at the first
//! that fits, or, when the task has inputs or affinities to score, collects a bounded
//! number of fitting candidates ([`SCORE_CANDIDATES`] in policy order, plus up to
//! [`LOCALITY_CANDIDATES`] holders of each of the task's first input keys) and takes
//! the best score (ties: the earlier in policy order). Hard constraints filter; scores
//! only choose among feasible workers.

use crate::worker_pool::{Need, WorkerPool};
use drover_types::{PlacementPolicyKind, Resources, WorkerId};
use std::fmt::Debug;

/// How many fitting workers, in policy order, are scored for a task with inputs or
/// affinities. Bounds the cost of a scored decision to O(K · log W).
pub const SCORE_CANDIDATES: usize = 8;
/// How many holders of each input key (of the first [`LOCALITY_KEYS`]) join the
/// candidates.
pub const LOCALITY_CANDIDATES: usize = 8;
pub const LOCALITY_KEYS: usize = 8;

/// One placement policy: the order in which workers are tried.
pub trait PlacementPolicy: Debug + Send + Sync {
    fn name(&self) -> &'static str;
    /// Calls `visit` on active workers with at least `need` free (of the binding
    /// dimension of `req`), best first, until it returns true.
    fn visit(
        &self,
        pool: &WorkerPool,
        req: &Resources,
        need: Need,
        visit: &mut dyn FnMut(WorkerId) -> bool,
    );
}

/// Bin-pack: the busiest worker that fits (least free of the task's binding dimension —
/// CPU, or memory for memory-heavy tasks — at or above the request), so that other
/// workers stay free for big tasks. Walks that dimension's free-resource index upwards
/// from the request: O(log W) to the first candidate; workers with too little free are
/// never visited. A candidate that fails on another dimension costs one more step.
#[derive(Debug)]
pub struct BinPack;

impl PlacementPolicy for BinPack {
    fn name(&self) -> &'static str {
        "binpack"
    }
    fn visit(
        &self,
        pool: &WorkerPool,
        _req: &Resources,
        need: Need,
        visit: &mut dyn FnMut(WorkerId) -> bool,
    ) {
        match need {
            Need::Cpu(c) => pool
                .free_cpu
                .range((c, WorkerId(0))..)
                .map(|e| e.1)
                .any(visit),
            Need::Mem(m) => pool
                .free_mem
                .range((m, WorkerId(0))..)
                .map(|e| e.1)
                .any(visit),
        };
    }
}

/// Spread: the least loaded worker (most free of the binding dimension) that fits. Walks
/// the index downwards and stops at the request: O(log W) to the first candidate.
#[derive(Debug)]
pub struct Spread;

impl PlacementPolicy for Spread {
    fn name(&self) -> &'static str {
        "spread"
    }
    fn visit(
        &self,
        pool: &WorkerPool,
        _req: &Resources,
        need: Need,
        visit: &mut dyn FnMut(WorkerId) -> bool,
    ) {
        match need {
            Need::Cpu(c) => pool
                .free_cpu
                .range((c, WorkerId(0))..)
                .rev()
                .map(|e| e.1)
                .any(visit),
            Need::Mem(m) => pool
                .free_mem
                .range((m, WorkerId(0))..)
                .rev()
                .map(|e| e.1)
                .any(visit),
        };
    }
}

/// Round-robin: active workers in id order, starting after the last one used. Walks the
/// fit tree (largest free CPU and memory per subtree of worker slots) from the cursor,
/// so runs of full workers are skipped a subtree at a time: O(log W) to a candidate
/// with enough CPU and memory.
#[derive(Debug)]
pub struct RoundRobin;

impl PlacementPolicy for RoundRobin {
    fn name(&self) -> &'static str {
        "round-robin"
    }
    fn visit(
        &self,
        pool: &WorkerPool,
        req: &Resources,
        _need: Need,
        visit: &mut dyn FnMut(WorkerId) -> bool,
    ) {
        // Worker ids from the cursor, then from the start, through the fit tree: full
        // workers are skipped a subtree at a time.
        let start = WorkerId(pool.rr_cursor.max(1));
        if pool
            .fit_tree
            .first_fit_in(start, WorkerId(u32::MAX), req, visit)
            .is_none()
        {
            pool.fit_tree.first_fit_in(WorkerId(1), start, req, visit);
        }
    }
}

/// Load-aware: the least loaded worker first, by [`WorkerRec::load_permille`] (the
/// larger of measured usage and reservations, relative to capacity; ties by id). The
/// measured part is the usage workers report through the log (`WorkerUpdate`), so
/// every replica orders workers alike. Walks the load index upwards: O(log W) to the
/// first candidate; a worker too full for the task costs a step (the load index does
/// not know the task's binding dimension), and past `POLICY_STEPS` steps the caller
/// falls back to the fit tree, as for the other policies.
///
/// [`WorkerRec::load_permille`]: crate::worker_pool::WorkerRec::load_permille
#[derive(Debug)]
pub struct LoadAware;

impl PlacementPolicy for LoadAware {
    fn name(&self) -> &'static str {
        "load-aware"
    }
    fn visit(
        &self,
        pool: &WorkerPool,
        _req: &Resources,
        _need: Need,
        visit: &mut dyn FnMut(WorkerId) -> bool,
    ) {
        pool.by_load.iter().map(|e| e.1).any(visit);
    }
}

pub fn build(kind: PlacementPolicyKind) -> Box<dyn PlacementPolicy> {
    match kind {
        PlacementPolicyKind::BinPack => Box::new(BinPack),
        PlacementPolicyKind::Spread => Box::new(Spread),
        PlacementPolicyKind::RoundRobin => Box::new(RoundRobin),
        PlacementPolicyKind::LoadAware => Box::new(LoadAware),
    }
}
