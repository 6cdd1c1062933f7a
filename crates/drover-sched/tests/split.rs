//! Adaptive splitting: the slices of a split cover its range exactly (the invariant
//! checker runs after every event and round and checks no gap, no overlap), probes come
//! first and later chunks are sized from their measured runtimes, the same events give
//! the same slices, a failure or a cancel stops the split, and a snapshot taken midway
//! restores the same progress.

mod common;

use common::*;
use drover_sched::{CancelTarget, Event, Scheduler, SplitRecord};
use drover_types::{
    JobId, Outcome, SplitChunks, SplitRange, SplitSpec, TaskId, TaskSpec, TaskState,
};

fn split_task(
    key: &str,
    start: u64,
    end: u64,
    chunks: SplitChunks,
    target: Option<u64>,
) -> TaskSpec {
    TaskSpec {
        split: Some(SplitSpec {
            range: SplitRange { start, end },
            chunks,
            chunk_duration_ms: target,
        }),
        ..keyed(key)
    }
}

fn record(env: &Env, first: TaskId) -> SplitRecord {
    env.s
        .splits_in(first, 1)
        .first()
        .expect("a split starts there")
        .record
        .clone()
}

/// Runs every placed chunk one after the other, each taking `ms_per_item` per integer
/// of its slice (so the measured rate is known), until nothing is left to place.
/// Returns the tasks run, in order.
fn drain(env: &mut Env, ms_per_item: u64) -> Vec<TaskId> {
    let mut ran = Vec::new();
    loop {
        let starts = env.starts();
        if starts.is_empty() {
            return ran;
        }
        for (t, _, _) in starts {
            let (a, b) = env.s.task(t).unwrap().slice.unwrap_or((1, 1));
            env.started(t);
            env.advance((b - a + 1) * ms_per_item);
            env.exit(t, 0);
            ran.push(t);
        }
    }
}

#[test]
fn an_automatic_split_probes_then_sizes_chunks_to_the_target_and_covers_the_range() {
    let mut env = Env::new();
    env.join("w1", 4, 8);
    // 1,000,000 integers at 1 ms each (`drain`) with a 20 s target: 20,000-item chunks
    // after the probes.
    let ids = env.submit(vec![
        split_task("part", 1, 1_000_000, SplitChunks::Auto, Some(20_000)),
        after(keyed("combine"), &["part"]),
    ]);
    let first = ids[0];
    let combine = *ids.last().unwrap();
    // 128 slots and the combine step.
    assert_eq!(ids.len(), 129);
    let r = record(&env, first);
    // One probe per free slot: four 1-CPU tasks fit the worker.
    assert_eq!(r.wave, 4);
    let probe = 1_000_000 / (4 * 128);
    assert_eq!(
        r.chunks,
        (0..4)
            .map(|k| (1 + k * probe, (k + 1) * probe))
            .collect::<Vec<_>>()
    );
    // Slots without a slice wait, and say why.
    assert_eq!(env.state(TaskId(first.0 + 4)), TaskState::Waiting);
    assert!(
        env.reason(TaskId(first.0 + 4)).contains("slice"),
        "{}",
        env.reason(TaskId(first.0 + 4))
    );
    assert_eq!(env.s.task(first).unwrap().slice, Some((1, probe)));

    let ran = drain(&mut env, 1);
    let r = record(&env, first);
    assert_eq!(r.chunks.first().unwrap().0, 1);
    assert_eq!(r.chunks.last().unwrap().1, 1_000_000);
    let sizes: Vec<u64> = r.chunks.iter().map(|(a, b)| b - a + 1).collect();
    assert!(sizes[..4].iter().all(|&n| n == probe), "{sizes:?}");
    // After the probes, chunks aim at 20 s at 1 ms per item, but never below what the
    // remaining slots need to cover the rest.
    for (k, &n) in sizes.iter().enumerate().skip(4) {
        let left = 128 - k as u64;
        let rest: u64 = sizes[k..].iter().sum();
        let floor = rest.div_ceil(left);
        let expected = if left == 1 {
            rest
        } else {
            20_000u64.max(floor).min(rest)
        };
        assert_eq!(n, expected, "chunk {k} of {sizes:?}");
    }
    assert_eq!(sizes.iter().sum::<u64>(), 1_000_000);
    assert!(sizes.contains(&20_000), "{sizes:?}");
    // Every slot with a slice ran once; the combine step ran last.
    assert_eq!(ran.last(), Some(&combine));
    assert_eq!(ran.len(), r.chunks.len() + 1);
    for k in 0..128u64 {
        let t = TaskId(first.0 + k);
        assert_eq!(env.state(t), TaskState::Succeeded);
        assert_eq!(env.s.is_unused_slot(t), k as usize >= r.chunks.len());
    }
    assert_eq!(env.state(combine), TaskState::Succeeded);
}

#[test]
fn slots_left_over_end_succeeded_once_the_range_is_covered() {
    let mut env = Env::new();
    env.join("w1", 2, 8);
    // A fast task and a long target: after the probes, one chunk takes all the rest.
    let ids = env.submit(vec![
        split_task("part", 1, 1000, SplitChunks::Auto, None),
        after(keyed("combine"), &["part"]),
    ]);
    let first = ids[0];
    drain(&mut env, 1);
    let r = record(&env, first);
    let sizes: Vec<u64> = r.chunks.iter().map(|(a, b)| b - a + 1).collect();
    // Probes of max(1, 1000 / 512) = 1, two in flight; the first to finish measures
    // 1 ms per item, so 30 s covers the rest at once.
    assert_eq!(sizes, vec![1, 1, 998]);
    let unused = (0..128u64)
        .map(|k| TaskId(first.0 + k))
        .filter(|&t| env.s.is_unused_slot(t))
        .count();
    assert_eq!(unused, 125);
    assert_eq!(env.state(*ids.last().unwrap()), TaskState::Succeeded);
}

#[test]
fn a_fixed_count_assigns_equal_slices_at_submission() {
    let mut env = Env::new();
    env.join("w1", 16, 8);
    let ids = env.submit(vec![split_task(
        "part",
        10,
        1009,
        SplitChunks::Count(7),
        None,
    )]);
    assert_eq!(ids.len(), 7);
    let r = record(&env, ids[0]);
    let sizes: Vec<u64> = r.chunks.iter().map(|(a, b)| b - a + 1).collect();
    assert_eq!(sizes, vec![143, 143, 143, 143, 143, 143, 142]);
    assert_eq!(r.chunks[0], (10, 152));
    assert_eq!(r.chunks[6].1, 1009);
    assert!(ids.iter().all(|&t| env.state(t) == TaskState::Ready));
    drain(&mut env, 1);
    assert!(ids.iter().all(|&t| env.state(t) == TaskState::Succeeded));
    // A fixed count never exceeds the range: 3 integers, 3 chunks.
    let ids = env.submit(vec![split_task(
        "small",
        1,
        3,
        SplitChunks::Count(64),
        None,
    )]);
    assert_eq!(ids.len(), 3);
}

#[test]
fn the_same_events_give_the_same_slices() {
    let run = || {
        let mut env = Env::new();
        env.join("w1", 3, 8);
        env.join("w2", 2, 8);
        env.submit(vec![split_task(
            "part",
            0,
            123_456,
            SplitChunks::Auto,
            Some(700),
        )]);
        // A varying rate: 1, 2, 3 ms per item by turns.
        let mut n = 0u64;
        loop {
            let starts = env.starts();
            if starts.is_empty() {
                break;
            }
            for (t, _, _) in starts {
                let (a, b) = env.s.task(t).unwrap().slice.unwrap();
                env.started(t);
                n += 1;
                env.advance((b - a + 1) * (n % 3 + 1) / 10 + 1);
                env.exit(t, 0);
            }
        }
        env.s.split_records()
    };
    let a = run();
    assert_eq!(a, run());
    assert_eq!(a.len(), 1);
    assert_eq!(a[0].chunks.last().unwrap().1, 123_456);
}

#[test]
fn a_split_submitted_without_workers_probes_with_one_chunk_then_widens() {
    let mut env = Env::new();
    let ids = env.submit(vec![split_task(
        "part",
        1,
        10_000,
        SplitChunks::Auto,
        Some(1_000),
    )]);
    assert_eq!(record(&env, ids[0]).wave, 1);
    env.join("w1", 4, 8);
    let starts = env.starts();
    assert_eq!(starts.len(), 1);
    let t = starts[0].0;
    env.started(t);
    env.advance(20);
    env.exit(t, 0);
    // Four slots are free now: four chunks go out.
    let r = record(&env, ids[0]);
    assert_eq!(r.chunks.len(), 5, "{:?}", r.chunks);
}

#[test]
fn a_failed_chunk_stops_the_split_and_fails_its_dependants() {
    let mut env = Env::new();
    env.join("w1", 2, 8);
    let ids = env.submit(vec![
        split_task("part", 1, 1000, SplitChunks::Auto, None),
        after(keyed("combine"), &["part"]),
    ]);
    let first = ids[0];
    let starts = env.starts();
    assert_eq!(starts.len(), 2);
    env.started(starts[0].0);
    env.exit(starts[0].0, 3);
    let r = record(&env, first);
    assert!(r.stopped);
    assert_eq!(r.chunks.len(), 2);
    assert_eq!(env.state(starts[0].0), TaskState::Failed);
    for k in 2..128u64 {
        assert_eq!(env.state(TaskId(first.0 + k)), TaskState::DependencyFailed);
    }
    assert_eq!(env.state(*ids.last().unwrap()), TaskState::DependencyFailed);
    // The other probe still ends normally, and nothing new is made.
    env.started(starts[1].0);
    env.exit(starts[1].0, 0);
    assert_eq!(record(&env, first).chunks.len(), 2);
    assert!(env.starts().is_empty());
}

#[test]
fn cancelling_the_job_stops_the_split() {
    let mut env = Env::new();
    env.join("w1", 2, 8);
    let ids = env.submit(vec![split_task("part", 1, 1000, SplitChunks::Auto, None)]);
    let first = ids[0];
    let starts = env.starts();
    env.started(starts[0].0);
    let a = env.ok(Event::Cancel {
        target: CancelTarget::Job(JobId(1)),
    });
    assert_eq!(a.cancelled, 128);
    // The killed chunk reports its end: no new slice.
    env.finish(starts[0].0, Outcome::Signaled { signal: 15 });
    let r = record(&env, first);
    assert_eq!(r.chunks.len(), 2);
    assert!(r.stopped);
    assert!(ids.iter().all(|&t| env.state(t) == TaskState::Cancelled));
}

#[test]
fn a_snapshot_taken_midway_restores_the_same_progress() {
    let mut env = Env::new();
    env.join("w1", 2, 8);
    let ids = env.submit(vec![
        split_task("part", 1, 50_000, SplitChunks::Auto, Some(500)),
        after(keyed("combine"), &["part"]),
    ]);
    // Run a few chunks.
    for _ in 0..3 {
        let starts = env.starts();
        for (t, _, _) in starts {
            let (a, b) = env.s.task(t).unwrap().slice.unwrap();
            env.started(t);
            env.advance(b - a + 1);
            env.exit(t, 0);
        }
    }
    let before = env.s.split_records();
    assert!(before[0].chunks.len() > 2 && before[0].chunks.last().unwrap().1 < 50_000);
    let mut snap = env.s.snapshot();
    // The core's own encoding leaves the splits out; the state machine hands them back.
    snap.set_splits(before.clone());
    let restored = Scheduler::restore(snap);
    restored.check_invariants().unwrap();
    assert_eq!(restored.split_records(), before);
    // Slots get their `split` back, and the key still names every slot.
    assert!(restored.task(ids[5]).unwrap().spec.shared().split.is_some());
    assert_eq!(
        restored
            .resolve(&drover_types::DepRef::Key("part".into()))
            .unwrap()
            .count,
        128
    );
    // Both go on the same way.
    let mut twin = Env {
        s: restored,
        now: env.now,
    };
    let a = drain(&mut env, 1);
    let b = drain(&mut twin, 1);
    assert_eq!(a, b);
    assert_eq!(env.s.split_records(), twin.s.split_records());
    assert_eq!(twin.state(*ids.last().unwrap()), TaskState::Succeeded);
}

#[test]
fn the_workers_wall_time_counts_when_longer_than_the_logs() {
    let run = |wall_ms: u64| {
        let mut env = Env::new();
        env.join("w1", 1, 8);
        let ids = env.submit(vec![split_task(
            "part",
            1,
            100_000,
            SplitChunks::Auto,
            Some(1_000),
        )]);
        let t = env.starts()[0].0;
        assert_eq!(t, ids[0]);
        // Start and end in entries 1 ms apart (batched together, say).
        env.started(t);
        env.advance(1);
        env.s.report_runtime(t, wall_ms);
        env.exit(t, 0);
        record(&env, ids[0]).chunks[1]
    };
    let probe = 100_000 / (4 * 128);
    // The log alone (a report of 0 ms never shortens what the log saw): 195 integers
    // in 1 ms, so 1 s takes the rest.
    assert_eq!(run(0), (probe + 1, 100_000));
    // The worker measured 195 ms: 1 s is 1000 integers.
    assert_eq!(run(probe), (probe + 1, probe + 1000));
}
