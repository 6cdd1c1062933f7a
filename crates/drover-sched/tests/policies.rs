//! Table tests for queue and placement policies, and switching between them.

mod common;
use common::*;
use drover_sched::Event;
use drover_types::{
    LabelSelector, PlacementPolicyKind, PolicyConfig, QueuePolicyKind, TaskId, TaskSpec, WorkerId,
};
use std::collections::BTreeMap;

fn policy(queue: QueuePolicyKind, placement: PlacementPolicyKind) -> PolicyConfig {
    PolicyConfig {
        queue,
        placement,
        // These order what is ready; prefetch.rs tests the worker queues.
        prefetch_per_worker: 0,
        ..PolicyConfig::default()
    }
}

/// One 1-cpu worker: each round places exactly one task, so the order of placements is
/// the queue order.
fn order(env: &mut Env, n: usize) -> Vec<TaskId> {
    let mut out = Vec::new();
    for _ in 0..n {
        let s = env.starts();
        assert_eq!(s.len(), 1);
        out.push(s[0].0);
        env.run_ok(s[0].0);
    }
    out
}

fn sjf(expected: Option<u64>, max: Option<u64>) -> TaskSpec {
    TaskSpec {
        expected_runtime_ms: expected,
        max_runtime_ms: max,
        ..task()
    }
}

#[test]
fn queue_policies_order_ready_tasks() {
    let ids = |v: &[u64]| v.iter().map(|&i| TaskId(i)).collect::<Vec<_>>();
    let table: Vec<(&str, QueuePolicyKind, Vec<TaskSpec>, Vec<TaskId>)> = vec![
        (
            "fcfs: submission order",
            QueuePolicyKind::Fcfs,
            vec![prio(task(), 1), prio(task(), 9), task()],
            ids(&[1, 2, 3]),
        ),
        (
            "priority: higher first, ties in submission order",
            QueuePolicyKind::Priority { aging_ms: 0 },
            vec![prio(task(), 1), prio(task(), 9), task(), prio(task(), 9)],
            ids(&[2, 4, 1, 3]),
        ),
        (
            "sjf: expected, else maximum runtime; unknown last",
            QueuePolicyKind::ShortestJobFirst,
            vec![
                sjf(None, None),
                sjf(Some(5_000), None),
                sjf(None, Some(1_000)),
                sjf(Some(500), Some(9_000)),
            ],
            ids(&[4, 3, 2, 1]),
        ),
    ];
    for (rule, queue, specs, expected) in table {
        let mut env = Env::with_policy(policy(queue, PlacementPolicyKind::BinPack));
        env.submit(specs);
        env.join("w1", 1, 8);
        assert_eq!(order(&mut env, expected.len()), expected, "{rule}");
    }
}

#[test]
fn aging_lets_an_old_low_priority_task_overtake_new_high_priority_ones() {
    let mut env = Env::with_policy(policy(
        QueuePolicyKind::Priority { aging_ms: 1_000 },
        PlacementPolicyKind::BinPack,
    ));
    let old = env.submit(vec![prio(task(), 0)])[0];
    env.advance(10_000);
    // Effective priority of `old` is now 10: it beats a fresh 5, not a fresh 20.
    let ids = env.submit(vec![prio(task(), 5), prio(task(), 20)]);
    env.join("w1", 1, 8);
    assert_eq!(order(&mut env, 3), vec![ids[1], old, ids[0]]);
}

#[test]
fn fair_share_serves_owners_in_proportion_to_their_weights() {
    let weights: BTreeMap<String, u32> = [("alice".to_string(), 2), ("bob".to_string(), 1)].into();
    let mut env = Env::with_policy(policy(
        QueuePolicyKind::FairShare { weights },
        PlacementPolicyKind::BinPack,
    ));
    let owned = |o: &str| TaskSpec {
        owner: o.into(),
        ..task()
    };
    env.submit((0..10).map(|_| owned("bob")).collect());
    env.submit((0..10).map(|_| owned("alice")).collect());
    env.join("w1", 6, 8);
    let starts = env.starts();
    let alice = starts
        .iter()
        .filter(|s| env.s.task(s.0).unwrap().spec.shared().owner == "alice")
        .count();
    assert_eq!(
        (starts.len(), alice),
        (6, 4),
        "alice gets twice bob's share"
    );
}

#[test]
fn fair_share_on_a_single_slot_takes_turns_between_owners() {
    // Everyone is at zero usage whenever the one slot frees: the owner served least
    // recently goes next, so a long backlog of one owner cannot starve another.
    let mut env = Env::with_policy(policy(
        QueuePolicyKind::FairShare {
            weights: BTreeMap::new(),
        },
        PlacementPolicyKind::BinPack,
    ));
    let owned = |o: &str| TaskSpec {
        owner: o.into(),
        ..task()
    };
    env.submit((0..4).map(|_| owned("alice")).collect());
    env.submit((0..2).map(|_| owned("bob")).collect());
    env.join("w1", 1, 8);
    let mut order = Vec::new();
    for _ in 0..6 {
        let starts = env.starts();
        assert_eq!(starts.len(), 1, "one slot");
        let t = starts[0].0;
        order.push(env.s.task(t).unwrap().spec.shared().owner.clone());
        env.run_ok(t);
    }
    assert_eq!(order, ["alice", "bob", "alice", "bob", "alice", "alice"]);
}

#[test]
fn the_job_owner_is_the_default_owner() {
    let mut env = Env::new();
    let job = drover_types::JobSpec {
        owner: "carol".into(),
        tasks: vec![task()],
        ..Default::default()
    };
    let r = env.ok(Event::Submit { job }).job.unwrap().1;
    assert_eq!(env.s.task(r.first).unwrap().spec.shared().owner, "carol");
}

#[test]
fn switching_the_queue_policy_reorders_without_losing_anything() {
    let mut env = Env::with_policy(policy(QueuePolicyKind::Fcfs, PlacementPolicyKind::BinPack));
    let ids = env.submit(vec![
        prio(task(), 1),
        prio(task(), 3),
        prio(task(), 2),
        sjf(Some(200), None),
    ]);
    for kind in [
        QueuePolicyKind::ShortestJobFirst,
        QueuePolicyKind::FairShare {
            weights: BTreeMap::new(),
        },
        QueuePolicyKind::Priority { aging_ms: 0 },
    ] {
        env.ok(Event::SetPolicy {
            policy: policy(kind, PlacementPolicyKind::BinPack),
        });
        assert_eq!(env.s.counts().of(drover_types::TaskState::Ready), 4);
    }
    env.join("w1", 1, 8);
    assert_eq!(order(&mut env, 4), vec![ids[1], ids[2], ids[0], ids[3]]);
    assert_eq!(env.s.policy_names(), ("priority", "binpack"));
}

fn sized_workers(env: &mut Env) -> [WorkerId; 3] {
    [
        env.join("a", 8, 64),
        env.join("b", 2, 64),
        env.join("c", 4, 64),
    ]
}

#[test]
fn placement_policies_choose_workers() {
    // Workers a (8 cpu), b (2 cpu), c (4 cpu); one 1-cpu task per round.
    let table: Vec<(&str, PlacementPolicyKind, Vec<&str>)> = vec![
        (
            "bin-pack fills the busiest worker that fits",
            PlacementPolicyKind::BinPack,
            vec!["b", "b", "c", "c"],
        ),
        (
            "spread picks the least loaded",
            PlacementPolicyKind::Spread,
            vec!["a", "a", "a", "a"],
        ),
        (
            "round-robin takes workers in turn",
            PlacementPolicyKind::RoundRobin,
            vec!["a", "b", "c", "a"],
        ),
        (
            "load-aware takes the least loaded relative to capacity (no usage reported: by reservations)",
            PlacementPolicyKind::LoadAware,
            vec!["a", "b", "c", "a"],
        ),
    ];
    for (rule, kind, expected) in table {
        let mut env = Env::with_policy(policy(QueuePolicyKind::Fcfs, kind));
        sized_workers(&mut env);
        let mut got = Vec::new();
        for _ in 0..expected.len() {
            env.submit(vec![task()]);
            let s = env.starts();
            got.push(env.s.worker(s[0].2).unwrap().spec.name.clone());
        }
        assert_eq!(got, expected, "{rule}");
    }
}

#[test]
fn hard_constraints_filter_and_soft_preferences_score() {
    let mut env = Env::new();
    let mut gpu = worker("gpu", 4, 16);
    gpu.labels.insert("gpu".into(), "a100".into());
    let mut fast = worker("fast", 4, 16);
    fast.labels.insert("disk".into(), "ssd".into());
    let mut data = worker("data", 4, 16);
    data.data_keys = vec!["dataset-1".into()];
    let [g, f, d] = [env.join_spec(gpu), env.join_spec(fast), env.join_spec(data)];
    let needs_gpu = constraint(task(), "gpu=a100");
    let likes_ssd = TaskSpec {
        affinity: vec![LabelSelector::parse("disk=ssd").unwrap()],
        ..task()
    };
    let reads = TaskSpec {
        inputs: vec!["dataset-1".into()],
        ..task()
    };
    let ids = env.submit(vec![needs_gpu, likes_ssd, reads]);
    let placed: BTreeMap<TaskId, WorkerId> = env.starts().into_iter().map(|s| (s.0, s.2)).collect();
    assert_eq!(placed[&ids[0]], g, "constraint");
    assert_eq!(placed[&ids[1]], f, "affinity");
    assert_eq!(placed[&ids[2]], d, "locality");
}

#[test]
fn switching_placement_takes_effect_at_the_next_round() {
    let mut env = Env::new();
    sized_workers(&mut env);
    env.ok(Event::SetPolicy {
        policy: policy(QueuePolicyKind::default(), PlacementPolicyKind::Spread),
    });
    env.submit(vec![task()]);
    let s = env.starts();
    assert_eq!(env.s.worker(s[0].2).unwrap().spec.name, "a");
}

#[test]
fn a_fit_is_found_even_past_many_workers_short_of_another_dimension() {
    // 100 workers with spare CPU but no GPU come first in every policy's order; the
    // only GPU worker is found through the fit tree once the walk gives up.
    for kind in [
        PlacementPolicyKind::BinPack,
        PlacementPolicyKind::Spread,
        PlacementPolicyKind::RoundRobin,
        PlacementPolicyKind::LoadAware,
    ] {
        let mut env = Env::with_policy(policy(QueuePolicyKind::Fcfs, kind));
        let mut gpu = worker("gpu", 2, 8);
        gpu.capacity.gpus = 1;
        let g = env.join_spec(gpu);
        for i in 0..100 {
            env.join(&format!("cpu{i}"), 1 + (i % 3), 8);
        }
        let mut t = task();
        t.resources.gpus = 1;
        let id = env.submit(vec![t, task()])[0];
        let starts = env.starts();
        assert_eq!(starts.len(), 2, "{kind:?}");
        assert_eq!(env.worker_of(id), Some(g), "{kind:?}");
    }
}

#[test]
fn memory_heavy_tasks_walk_the_memory_index() {
    // Bin-pack by memory for a task asking mostly memory: the worker with the least
    // free memory that fits, although it has the most free CPU.
    let mut env = Env::new();
    let roomy = env.join("roomy", 2, 64);
    let tight = env.join("tight", 16, 9);
    let t = env.submit(vec![mem(cpus(task(), 1), 8)])[0];
    env.starts();
    assert_eq!(env.worker_of(t), Some(tight));
    let _ = roomy;
}

#[test]
fn round_robin_skips_full_workers_and_wraps_around() {
    let mut env = Env::with_policy(policy(
        QueuePolicyKind::Fcfs,
        PlacementPolicyKind::RoundRobin,
    ));
    let ws: Vec<WorkerId> = (0..5).map(|i| env.join(&format!("w{i}"), 1, 8)).collect();
    let ids = env.submit((0..5).map(|_| task()).collect());
    let placed: Vec<WorkerId> = env.starts().into_iter().map(|s| s.2).collect();
    assert_eq!(placed, ws);
    // Free w2 and w4; the cursor is past w4, so the next goes to w2, then w4.
    env.run_ok(ids[1]);
    env.run_ok(ids[3]);
    env.submit(vec![task(), task()]);
    let placed: Vec<WorkerId> = env.starts().into_iter().map(|s| s.2).collect();
    assert_eq!(placed, vec![ws[1], ws[3]]);
}
