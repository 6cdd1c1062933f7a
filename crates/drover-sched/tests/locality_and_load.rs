//! Table tests for live data keys (locality on keys reported after the join) and for
//! load-aware placement (measured usage combined with reservations). The harness
//! checks every invariant, the load index included, after every event and round.

mod common;
use common::*;
use drover_sched::{Event, Scheduler};
use drover_types::{
    PlacementPolicyKind, PolicyConfig, QueuePolicyKind, TaskSpec, WorkerId, WorkerUsage,
};

fn policy(placement: PlacementPolicyKind) -> PolicyConfig {
    PolicyConfig {
        queue: QueuePolicyKind::Fcfs,
        placement,
        prefetch_per_worker: 0,
        ..PolicyConfig::default()
    }
}

const ALL: [PlacementPolicyKind; 4] = [
    PlacementPolicyKind::BinPack,
    PlacementPolicyKind::Spread,
    PlacementPolicyKind::RoundRobin,
    PlacementPolicyKind::LoadAware,
];

fn update(env: &mut Env, w: WorkerId, cpu_milli: u32, keys: Option<&[&str]>) {
    env.ok(Event::WorkerHeartbeat {
        worker: w,
        usage: WorkerUsage {
            cpu_milli,
            ..WorkerUsage::default()
        },
        data_keys: keys.map(|k| k.iter().map(|s| s.to_string()).collect()),
    });
}

fn reads(keys: &[&str]) -> TaskSpec {
    TaskSpec {
        inputs: keys.iter().map(|s| s.to_string()).collect(),
        ..task()
    }
}

fn name(env: &Env, w: WorkerId) -> String {
    env.s.worker(w).unwrap().spec.name.clone()
}

/// Submits one task, runs a round, and answers the name of the worker it went to.
fn place(env: &mut Env, spec: TaskSpec) -> String {
    let id = env.submit(vec![spec])[0];
    env.starts();
    let w = env.worker_of(id).expect("placed");
    name(env, w)
}

#[test]
fn a_task_goes_to_the_worker_that_reported_its_input_after_joining() {
    for kind in ALL {
        let mut env = Env::with_policy(policy(kind));
        let [_a, b, c] = [
            env.join("a", 8, 64),
            env.join("b", 2, 64),
            env.join("c", 4, 64),
        ];
        // Nobody declared anything at the join; b reports a file later.
        update(&mut env, b, 0, Some(&["part1"]));
        assert_eq!(place(&mut env, reads(&["part1"])), "b", "{kind:?}");
        // The file moved to c: live keys replace the old ones.
        update(&mut env, b, 0, Some(&[]));
        update(&mut env, c, 0, Some(&["part1", "part0"]));
        assert_eq!(place(&mut env, reads(&["part1"])), "c", "{kind:?}");
        // A usage-only update keeps the keys.
        update(&mut env, c, 100, None);
        assert_eq!(place(&mut env, reads(&["part0"])), "c", "{kind:?}");
        assert_eq!(
            env.s.worker(c).unwrap().spec.data_keys,
            vec!["part0".to_string(), "part1".to_string()],
            "kept sorted: every replica holds the same list"
        );
    }
}

#[test]
fn load_aware_placement_picks_the_least_loaded_worker() {
    // Three 4-cpu workers; rows: (rule, measured cpu of a/b/c, cpus reserved on a/b/c
    // by earlier tasks, expected worker).
    type Row = (&'static str, [u32; 3], [u32; 3], &'static str);
    let table: Vec<Row> = vec![
        ("lowest measured usage", [3000, 500, 2000], [0, 0, 0], "b"),
        ("idle workers: the lowest id", [0, 0, 0], [0, 0, 0], "a"),
        (
            "reservations count when they exceed the measurement",
            [0, 1000, 2000],
            [3, 0, 0],
            "b",
        ),
        (
            "the measurement counts when it exceeds the reservations",
            [3900, 0, 0],
            [0, 2, 1],
            "c",
        ),
    ];
    for (rule, usage, reserved, expected) in table {
        let mut env = Env::with_policy(policy(PlacementPolicyKind::LoadAware));
        let ws = ["a", "b", "c"].map(|n| {
            let mut spec = worker(n, 4, 64);
            spec.labels.insert("name".into(), n.into());
            env.join_spec(spec)
        });
        // Reserve by placing 1-cpu tasks with a constraint on each worker's name.
        for (i, &n) in reserved.iter().enumerate() {
            for _ in 0..n {
                let mut t = task();
                t.constraints = vec![
                    drover_types::LabelSelector::parse(&format!("name={}", name(&env, ws[i])))
                        .unwrap(),
                ];
                let id = env.submit(vec![t])[0];
                env.starts();
                env.started(id);
                assert_eq!(env.worker_of(id), Some(ws[i]), "{rule}: setup");
            }
        }
        for (i, &u) in usage.iter().enumerate() {
            update(&mut env, ws[i], u, None);
        }
        assert_eq!(place(&mut env, task()), expected, "{rule}");
    }
}

#[test]
fn load_aware_placement_follows_usage_as_it_changes() {
    let mut env = Env::with_policy(policy(PlacementPolicyKind::LoadAware));
    let a = env.join("a", 2, 8);
    let b = env.join("b", 2, 8);
    // a is busy with something that reserved little.
    update(&mut env, a, 1900, None);
    assert_eq!(place(&mut env, task()), "b");
    // Now b is the busy one (its reservation: 1 cpu of 2; its measurement: more).
    update(&mut env, b, 2000, None);
    update(&mut env, a, 0, None);
    assert_eq!(place(&mut env, task()), "a");
    // Memory counts too: a at 75 % of its memory (above its 50 % of cpu reserved) is
    // still below b at 100 % of its cpu: a goes first.
    env.ok(Event::WorkerHeartbeat {
        worker: a,
        usage: WorkerUsage {
            cpu_milli: 0,
            memory_bytes: 6 * GIB,
            ..WorkerUsage::default()
        },
        data_keys: None,
    });
    assert_eq!(env.s.worker(a).unwrap().load_permille, 750);
    assert_eq!(env.s.worker(b).unwrap().load_permille, 1000);
    assert_eq!(place(&mut env, task()), "a");
}

#[test]
fn locality_outweighs_load_and_load_breaks_ties() {
    let mut env = Env::with_policy(policy(PlacementPolicyKind::LoadAware));
    let a = env.join("a", 4, 64);
    let b = env.join("b", 4, 64);
    let c = env.join("c", 4, 64);
    update(&mut env, a, 3500, Some(&["part1"]));
    update(&mut env, b, 2000, None);
    update(&mut env, c, 1000, None);
    // The holder, although the busiest.
    assert_eq!(place(&mut env, reads(&["part1"])), "a");
    // Nobody holds it: the least loaded.
    assert_eq!(place(&mut env, reads(&["nowhere"])), "c");
    let note = env.s.placement_note(drover_types::TaskId(1)).unwrap();
    assert_eq!(note, "placed on a: holds input part1");
    let note = env.s.placement_note(drover_types::TaskId(2)).unwrap();
    assert_eq!(note, "placed on c: no worker holds its inputs");
}

#[test]
fn live_keys_and_usage_survive_a_snapshot() {
    let mut env = Env::with_policy(policy(PlacementPolicyKind::LoadAware));
    let a = env.join("a", 4, 64);
    let b = env.join("b", 4, 64);
    update(&mut env, a, 3000, Some(&["part1"]));
    update(&mut env, b, 100, Some(&["part2"]));
    // (The binary form the server writes is tested in drover-state.)
    let text = serde_json::to_string(&env.s.snapshot()).unwrap();
    let snap = serde_json::from_str(&text).unwrap();
    env.s = Scheduler::restore(snap);
    env.check();
    assert_eq!(env.s.worker(a).unwrap().usage.cpu_milli, 3000);
    assert_eq!(env.s.worker(b).unwrap().spec.data_keys, vec!["part2"]);
    assert_eq!(place(&mut env, reads(&["part1"])), "a");
    assert_eq!(place(&mut env, task()), "b");
}
