//! Table tests for the multifactor queue policy: ordering by each term, ties,
//! determinism (and across a snapshot), switching to and from it, and the effective
//! priority shown to people. The harness checks every invariant after every event.

mod common;
use common::*;
use drover_sched::{Event, Scheduler};
use drover_types::{
    Millis, MultifactorWeights, PlacementPolicyKind, PolicyConfig, QueuePolicyKind, TaskId,
    TaskSpec, TaskState,
};
use std::collections::BTreeMap;

fn multifactor(weights: &str) -> PolicyConfig {
    PolicyConfig {
        queue: QueuePolicyKind::Multifactor {
            factors: MultifactorWeights::parse(weights).unwrap(),
        },
        placement: PlacementPolicyKind::BinPack,
        prefetch_per_worker: 0,
        ..PolicyConfig::default()
    }
}

/// Each round places exactly one task (the tests size worker and tasks for that), so
/// the order of placements is the queue order.
fn order(env: &mut Env, n: usize) -> Vec<TaskId> {
    let mut out = Vec::new();
    for _ in 0..n {
        let s = env.starts();
        assert_eq!(s.len(), 1, "one start per round");
        out.push(s[0].0);
        env.run_ok(s[0].0);
    }
    out
}

fn label(mut t: TaskSpec, name: &str, value: &str) -> TaskSpec {
    t.labels.insert(name.into(), value.into());
    t
}

fn owned(mut t: TaskSpec, owner: &str) -> TaskSpec {
    t.owner = owner.into();
    t
}

fn ids(v: &[u64]) -> Vec<TaskId> {
    v.iter().map(|&i| TaskId(i)).collect()
}

/// (rule, weights, tasks, worker cpus, expected order)
type Case = (&'static str, &'static str, Vec<TaskSpec>, u32, Vec<TaskId>);

#[test]
fn each_term_orders_ready_tasks() {
    let table: Vec<Case> = vec![
        (
            "priority alone: higher first, ties by id",
            "priority=1",
            vec![prio(task(), 1), prio(task(), 9), task(), prio(task(), 9)],
            1,
            ids(&[2, 4, 1, 3]),
        ),
        (
            "a numeric label: higher first; missing and non-numeric count 0",
            "label:bv=10",
            vec![
                label(task(), "bv", "1"),
                label(task(), "bv", "high"),
                label(task(), "bv", "2.5"),
                task(),
                label(task(), "bv", "-1"),
            ],
            1,
            ids(&[3, 1, 2, 4, 5]),
        ),
        (
            "label against priority: 10×150 beats 1000×1",
            "priority=1000,label:bv=10",
            vec![
                prio(task(), 1),
                label(task(), "bv", "150"),
                label(task(), "bv", "50"),
            ],
            1,
            ids(&[2, 1, 3]),
        ),
        (
            "size, positive: bigger first",
            "size=1",
            vec![
                cpus(task(), 2),
                cpus(task(), 3),
                cpus(task(), 2),
                cpus(task(), 3),
            ],
            3,
            ids(&[2, 4, 1, 3]),
        ),
        (
            "size, negative: smaller first",
            "size=-1",
            vec![
                cpus(task(), 3),
                cpus(task(), 2),
                cpus(task(), 3),
                cpus(task(), 2),
            ],
            3,
            ids(&[2, 4, 1, 3]),
        ),
        (
            "all weights 0: submission order",
            "priority=0",
            vec![prio(task(), 5), label(task(), "bv", "9"), cpus(task(), 1)],
            1,
            ids(&[1, 2, 3]),
        ),
        (
            "equal sums across owners (fairshare on) go in id order",
            "priority=1,fairshare=1000",
            vec![
                owned(task(), "bob"),
                owned(task(), "alice"),
                owned(task(), "bob"),
                owned(task(), "alice"),
            ],
            1,
            ids(&[1, 2, 3, 4]),
        ),
    ];
    for (rule, weights, specs, worker_cpus, expected) in table {
        let mut env = Env::with_policy(multifactor(weights));
        env.submit(specs);
        env.join("w1", worker_cpus, 64);
        assert_eq!(order(&mut env, expected.len()), expected, "{rule}");
    }
}

#[test]
fn age_lets_an_old_task_overtake_a_newer_higher_priority_one() {
    // 1 point per second waited against 1 per level: after 10 s at priority 0 the old
    // task is at 10, past a fresh 5 and behind a fresh 20.
    let mut env = Env::with_policy(multifactor("priority=1,age=1"));
    let old = env.submit(vec![prio(task(), 0)])[0];
    env.advance(10_000);
    let new = env.submit(vec![prio(task(), 5), prio(task(), 20)]);
    env.join("w1", 1, 8);
    assert_eq!(order(&mut env, 3), vec![new[1], old, new[0]]);
}

#[test]
fn fairshare_takes_the_owners_running_cpu_off_its_queued_tasks() {
    // One round on a 2-cpu worker: alice's priority-10 task goes first; then alice
    // holds 1 core, so her priority-5 task is at 5 - 1000 and bob's 0 goes before it.
    // Without the fair-share weight, alice's two go first.
    let specs = || {
        vec![
            owned(prio(task(), 10), "alice"),
            owned(prio(task(), 5), "alice"),
            owned(prio(task(), 0), "bob"),
        ]
    };
    for (weights, expected) in [
        ("priority=1,fairshare=1000", ids(&[1, 3])),
        ("priority=1", ids(&[1, 2])),
    ] {
        let mut env = Env::with_policy(multifactor(weights));
        env.submit(specs());
        env.join("w1", 2, 8);
        let mut started: Vec<TaskId> = env.starts().iter().map(|s| s.0).collect();
        started.sort();
        assert_eq!(started, expected, "{weights}");
    }
    // The penalty moves with usage: once alice's task ends, her queued one is back
    // ahead of bob's lower-priority tasks.
    let mut env = Env::with_policy(multifactor("priority=1,fairshare=1000"));
    env.submit(vec![
        owned(prio(task(), 10), "alice"),
        owned(prio(task(), 5), "alice"),
        owned(prio(task(), 0), "bob"),
        owned(prio(task(), 0), "bob"),
    ]);
    env.join("w1", 1, 8);
    assert_eq!(order(&mut env, 4), ids(&[1, 2, 3, 4]));
}

/// The same events give the same placements, and so does a copy restored from a
/// snapshot taken in the middle (through JSON, as a replica reads it).
#[test]
fn the_order_is_deterministic_and_survives_a_snapshot() {
    let run = |restore_midway: bool| -> Vec<TaskId> {
        let mut env = Env::with_policy(multifactor(
            "priority=100,age=3,fairshare=50,size=-20,label:bv=7",
        ));
        for i in 0..12u64 {
            let t = owned(
                label(
                    cpus(prio(task(), (i % 4) as i32), 1 + (i % 2) as u32),
                    "bv",
                    &i.to_string(),
                ),
                ["a", "b", "c"][(i % 3) as usize],
            );
            env.submit(vec![t]);
            env.advance(700);
        }
        env.join("w1", 2, 64);
        let mut out = Vec::new();
        for step in 0..12 {
            if restore_midway && step == 5 {
                let json = serde_json::to_string(&env.s.snapshot()).unwrap();
                env.s = Scheduler::restore(serde_json::from_str(&json).unwrap());
                env.check();
            }
            let starts = env.starts();
            if starts.is_empty() {
                break;
            }
            for s in starts {
                out.push(s.0);
                env.run_ok(s.0);
            }
            env.advance(300);
        }
        out
    };
    let first = run(false);
    assert_eq!(first.len(), 12);
    assert_eq!(run(false), first);
    assert_eq!(run(true), first);
}

#[test]
fn switching_to_and_from_multifactor_keeps_every_task() {
    let mut env = Env::with_policy(PolicyConfig {
        prefetch_per_worker: 0,
        ..PolicyConfig::default()
    });
    let ids = env.submit(vec![
        owned(prio(task(), 1), "a"),
        owned(label(task(), "bv", "100"), "b"),
        owned(prio(task(), 3), "a"),
        owned(task(), "b"),
    ]);
    let kinds = [
        multifactor("label:bv=1"),
        multifactor("priority=1,fairshare=5"),
        PolicyConfig {
            queue: QueuePolicyKind::FairShare {
                weights: BTreeMap::new(),
            },
            prefetch_per_worker: 0,
            ..PolicyConfig::default()
        },
        multifactor("label:bv=1,fairshare=1"),
        PolicyConfig {
            queue: QueuePolicyKind::Fcfs,
            prefetch_per_worker: 0,
            ..PolicyConfig::default()
        },
        multifactor("label:bv=1,priority=1"),
    ];
    for policy in kinds {
        env.ok(Event::SetPolicy { policy });
        assert_eq!(env.s.counts().of(TaskState::Ready), 4);
    }
    env.join("w1", 1, 8);
    // label bv=100 first, then priority 3, 1, and the last task (0).
    assert_eq!(order(&mut env, 4), vec![ids[1], ids[2], ids[0], ids[3]]);
    assert_eq!(env.s.policy_names(), ("multifactor", "binpack"));
}

#[test]
fn the_effective_priority_is_shown_with_its_terms() {
    let mut env = Env::with_policy(multifactor(
        "priority=1000,age=1,fairshare=10,label:business_value=10",
    ));
    let blocker = env.submit(vec![owned(task(), "alice")])[0];
    env.join("w1", 1, 8);
    assert_eq!(env.starts()[0].0, blocker);
    let t = env.submit(vec![owned(
        label(prio(task(), 3), "business_value", "2.5"),
        "alice",
    )])[0];
    assert_eq!(env.s.effective_priority(blocker, Millis(env.now)), None);
    env.advance(42_500);
    let e = env.s.effective_priority(t, Millis(env.now)).unwrap();
    // 3000 + 42.5 - 10 × 1 core + 25.
    assert_eq!(e.value, 3057);
    assert_eq!(
        e.to_string(),
        "3,057 = 1000×priority(3) + 1×age(42.5s) - 10×fairshare(1cpu) + 10×label:business_value(2.5)"
    );
    // Under another policy, none.
    env.ok(Event::SetPolicy {
        policy: PolicyConfig::default(),
    });
    assert_eq!(env.s.effective_priority(t, Millis(env.now)), None);
}
