//! Prefetching: tasks bound to a full worker, holding nothing, started by the worker
//! (and promoted by the core) in order as room frees; taken back for a worker with
//! room. The invariant checker runs after every event (see `common`).

mod common;

use common::*;
use drover_sched::{Action, Event, KillReason};
use drover_types::{Attempt, Outcome, PolicyConfig, TaskId, TaskState, WorkerState};

fn prefetching(n: u32) -> Env {
    Env::with_policy(PolicyConfig {
        prefetch_per_worker: n,
        ..PolicyConfig::default()
    })
}

fn started(env: &mut Env, t: TaskId, w: drover_types::WorkerId) {
    let a = env.attempt(t);
    env.ok(Event::TaskStarted {
        task: t,
        attempt: a,
        worker: w,
        gpus: Vec::new(),
    });
}

#[test]
fn a_full_worker_gets_its_next_tasks_ahead_holding_nothing() {
    let mut env = prefetching(2);
    let w = env.join("w1", 2, 8);
    let ids = env.submit((0..5).map(|_| task()).collect());
    let starts = env.starts();
    // Two placed (reserved), two prefetched (bound, unreserved), one left ready.
    assert_eq!(starts.len(), 4, "{starts:?}");
    assert!(starts.iter().all(|s| s.2 == w));
    assert_eq!(env.state(ids[4]), TaskState::Ready);
    let view = env.s.worker(w).unwrap();
    assert_eq!(view.running, vec![ids[0], ids[1]]);
    assert_eq!(view.queued, vec![ids[2], ids[3]]);
    assert_eq!(
        view.allocated.cpu_milli, 2000,
        "the prefetched hold nothing"
    );
    assert!(
        env.reason(ids[2]).contains("queued on worker"),
        "{}",
        env.reason(ids[2])
    );
}

#[test]
fn when_room_frees_the_queue_head_is_promoted_before_any_other_placement() {
    let mut env = prefetching(1);
    let w = env.join("w1", 1, 8);
    let ids = env.submit((0..3).map(|_| task()).collect());
    env.starts();
    assert_eq!(env.s.worker(w).unwrap().queued, vec![ids[1]]);
    env.run_ok(ids[0]);
    let actions = env.schedule();
    // ids[1] was already sent: it is promoted (reserved), no second start; ids[2] is
    // prefetched in its place.
    let starts: Vec<TaskId> = actions
        .iter()
        .filter_map(|a| match a {
            Action::Start { task, .. } => Some(*task),
            _ => None,
        })
        .collect();
    assert_eq!(starts, vec![ids[2]]);
    let view = env.s.worker(w).unwrap();
    assert_eq!(view.running, vec![ids[1]]);
    assert_eq!(view.queued, vec![ids[2]]);
}

#[test]
fn a_worker_starting_its_queue_head_before_the_core_promotes_it_is_accepted() {
    let mut env = prefetching(1);
    let w = env.join("w1", 1, 8);
    let ids = env.submit((0..2).map(|_| task()).collect());
    env.starts();
    // The worker finished ids[0] and started ids[1] at once; both reports come in the
    // same entry, before any round.
    started(&mut env, ids[0], w);
    env.exit(ids[0], 0);
    started(&mut env, ids[1], w);
    assert_eq!(env.state(ids[1]), TaskState::Running);
    let view = env.s.worker(w).unwrap();
    assert_eq!(
        (view.running.clone(), view.queued.clone()),
        (vec![ids[1]], vec![])
    );
    env.schedule();
    env.exit(ids[1], 0);
    assert_eq!(env.state(ids[1]), TaskState::Succeeded);
}

#[test]
fn a_worker_with_a_queue_takes_no_other_placement_so_its_order_holds() {
    let mut env = prefetching(1);
    let w = env.join("w1", 2, 8);
    let big = env.submit(vec![cpus(task(), 2)])[0];
    let queued_big = env.submit(vec![cpus(task(), 2)])[0];
    env.starts();
    assert_eq!(env.s.worker(w).unwrap().queued, vec![queued_big]);
    // A small task arrives: w has no free room anyway, and once big ends the queued
    // big one goes first.
    let small = env.submit(vec![task()])[0];
    env.run_ok(big);
    env.schedule();
    let view = env.s.worker(w).unwrap();
    assert_eq!(view.running, vec![queued_big]);
    // The small one now waits in the queue behind it, not started.
    assert_eq!(view.queued, vec![small]);
    assert!(env.s.task(small).unwrap().started_at.is_none());
}

#[test]
fn a_worker_with_room_takes_a_prefetched_task_back_from_a_busy_one() {
    let mut env = prefetching(2);
    let busy = env.join("busy", 1, 8);
    let ids = env.submit((0..3).map(|_| task()).collect());
    env.starts();
    assert_eq!(env.s.worker(busy).unwrap().queued, vec![ids[1], ids[2]]);
    let free = env.join("free", 1, 8);
    let actions = env.schedule();
    // The last of the busy worker's queue is asked back (it would wait longest).
    assert_eq!(kills(&actions), vec![(ids[2], KillReason::Retracted)]);
    // The busy worker drops it (never started) and reports: back to the queue, no
    // attempt spent, then placed on the free worker.
    env.finish(ids[2], Outcome::Killed);
    let starts = env.starts();
    assert_eq!(starts, vec![(ids[2], Attempt(2), free)]);
    let rec = env.s.task(ids[2]).unwrap();
    assert_eq!(rec.attempts.len(), 2);
    assert!(env.reason(ids[2]).contains("assigned to worker"));
}

#[test]
fn a_retraction_the_worker_beat_by_starting_the_task_is_dropped_and_the_task_runs_once() {
    let mut env = prefetching(1);
    let busy = env.join("busy", 1, 8);
    let ids = env.submit((0..2).map(|_| task()).collect());
    env.starts();
    env.started(ids[0]);
    // A worker with room asks the prefetched task back...
    assert_eq!(env.s.worker(busy).unwrap().queued, vec![ids[1]]);
    let free = env.join("free", 1, 8);
    let actions = env.schedule();
    assert_eq!(kills(&actions), vec![(ids[1], KillReason::Retracted)]);
    // ...but the busy worker's first task ended and it started the next before the
    // retraction arrived: it keeps it.
    env.exit(ids[0], 0);
    started(&mut env, ids[1], busy);
    assert_eq!(env.state(ids[1]), TaskState::Running);
    assert_eq!(env.worker_of(ids[1]), Some(busy));
    assert!(env.starts().is_empty(), "nothing goes to the free worker");
    // Its end is its own: a failure spends its only attempt instead of running it
    // again elsewhere as a retraction would.
    env.exit(ids[1], 3);
    assert_eq!(env.state(ids[1]), TaskState::Failed);
    let rec = env.s.task(ids[1]).unwrap();
    assert_eq!(rec.attempts.len(), 1);
    assert_eq!(
        rec.attempts[0].failure,
        Some(drover_types::FailureCause::Outcome {
            outcome: Outcome::Exited { code: 3 }
        })
    );
    let _ = free;
}

#[test]
fn the_prefetched_tasks_of_a_lost_worker_are_ended_with_it() {
    let mut env = prefetching(2);
    let w = env.join("w1", 1, 8);
    let ids = env.submit((0..3).map(|_| retries(task(), 3, 0)).collect());
    env.starts();
    env.ok(Event::WorkerLost { worker: w });
    assert_eq!(env.s.worker(w).unwrap().state, WorkerState::Lost);
    // Lost like a running attempt (the worker may have started it unseen): a retry.
    for t in &ids {
        assert!(
            matches!(env.state(*t), TaskState::Ready | TaskState::Backoff),
            "{t}"
        );
    }
}

#[test]
fn a_rejoin_keeps_the_prefetched_tasks_the_worker_still_has_and_drops_the_others() {
    let mut env = prefetching(2);
    let w = env.join("w1", 1, 8);
    let ids = env.submit((0..3).map(|_| retries(task(), 3, 0)).collect());
    env.starts();
    started(&mut env, ids[0], w);
    // It comes back knowing ids[0] (running) and ids[1] (queued), not ids[2].
    env.ok(Event::WorkerJoin {
        spec: worker("w1", 1, 8),
        running: vec![(ids[0], Attempt(1)), (ids[1], Attempt(1))],
    });
    let view = env.s.worker(w).unwrap();
    assert_eq!(
        (view.running.clone(), view.queued.clone()),
        (vec![ids[0]], vec![ids[1]])
    );
    assert_ne!(env.state(ids[2]), TaskState::Assigned);
}

#[test]
fn a_cancelled_prefetched_task_is_killed_and_leaves_the_queue_when_the_worker_confirms() {
    let mut env = prefetching(1);
    let w = env.join("w1", 1, 8);
    let ids = env.submit((0..2).map(|_| task()).collect());
    env.starts();
    let a = env.ok(Event::Cancel {
        target: drover_sched::CancelTarget::Task(ids[1]),
    });
    assert_eq!(kills(&a.actions), vec![(ids[1], KillReason::Cancelled)]);
    assert_eq!(env.state(ids[1]), TaskState::Cancelled);
    env.finish(ids[1], Outcome::Killed);
    assert!(env.s.worker(w).unwrap().queued.is_empty());
}

#[test]
fn snapshots_keep_the_queues() {
    let mut env = prefetching(2);
    let w = env.join("w1", 1, 8);
    let ids = env.submit((0..3).map(|_| task()).collect());
    env.starts();
    let restored = drover_sched::Scheduler::restore(env.s.snapshot());
    restored.check_invariants().unwrap();
    assert_eq!(restored.worker(w).unwrap().queued, vec![ids[1], ids[2]]);
}

#[test]
fn a_later_task_of_higher_priority_overtakes_the_prefetched_ones() {
    let mut env = prefetching(2);
    let w = env.join("w1", 1, 8);
    let low = env.submit((0..3).map(|_| task()).collect());
    env.starts();
    assert_eq!(env.s.worker(w).unwrap().queued, vec![low[1], low[2]]);
    // Another task of the same priority queues behind them: nothing is asked back.
    let same = env.submit(vec![task()])[0];
    assert_eq!(kills(&env.schedule()), vec![]);
    // One of higher priority: every prefetched task ranking behind it is asked back.
    let urgent = env.submit(vec![prio(task(), 5)])[0];
    let actions = env.schedule();
    assert_eq!(
        kills(&actions),
        vec![
            (low[1], KillReason::Retracted),
            (low[2], KillReason::Retracted)
        ]
    );
    // Asked once: the next round, before the worker confirms, asks nothing more.
    assert_eq!(kills(&env.schedule()), vec![]);
    // The worker drops them (never started) and reports; they return to the queue
    // without spending an attempt, and the urgent task is prefetched first.
    env.finish(low[1], Outcome::Killed);
    env.finish(low[2], Outcome::Killed);
    env.schedule();
    assert_eq!(env.s.worker(w).unwrap().queued, vec![urgent, low[1]]);
    assert_eq!(env.s.task(low[1]).unwrap().attempt, Attempt(2));
    // When the running task ends, the urgent one runs next, then the others in order.
    env.run_ok(low[0]);
    env.schedule();
    assert_eq!(env.s.worker(w).unwrap().running, vec![urgent]);
    assert_eq!(env.s.worker(w).unwrap().queued, vec![low[1], low[2]]);
    for t in [urgent, low[1], low[2]] {
        env.run_ok(t);
        env.schedule();
    }
    env.run_ok(same);
    for t in [low[0], low[1], low[2], urgent, same] {
        assert_eq!(env.state(t), TaskState::Succeeded);
    }
}

#[test]
fn a_higher_priority_task_that_cannot_run_on_the_worker_asks_nothing_back() {
    let mut env = prefetching(1);
    let w = env.join("w1", 1, 8);
    let low = env.submit((0..2).map(|_| task()).collect());
    env.starts();
    assert_eq!(env.s.worker(w).unwrap().queued, vec![low[1]]);
    // Too big for this worker whatever it runs: retracting would gain nothing.
    env.submit(vec![prio(cpus(task(), 2), 5)]);
    assert_eq!(kills(&env.schedule()), vec![]);
}
