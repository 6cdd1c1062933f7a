//! Table tests for time limits, backoff timers and preemption.

mod common;
use common::*;
use drover_sched::{Action, Event, KillReason, TIME_LIMIT_SLACK_MS};
use drover_types::{Attempt, FailureCause, Outcome, PolicyConfig, TaskSpec, TaskState};

fn limited(ms: u64) -> TaskSpec {
    TaskSpec {
        max_runtime_ms: Some(ms),
        ..task()
    }
}

#[test]
fn the_core_kills_an_attempt_past_its_time_limit() {
    let mut env = Env::new();
    let w = env.join("w1", 4, 8);
    let t = env.submit(vec![limited(10_000)])[0];
    env.starts();
    env.advance(5_000);
    env.started(t);
    env.advance(10_000 + TIME_LIMIT_SLACK_MS - 1);
    assert!(
        env.schedule().is_empty(),
        "not before the limit and the slack"
    );
    env.advance(1);
    let actions = env.schedule();
    assert!(matches!(
        actions[..],
        [Action::Kill { task, attempt: Attempt(1), worker, reason: KillReason::TimeLimit, .. }] if task == t && worker == w
    ));
    env.advance(60_000);
    assert!(env.schedule().is_empty(), "one kill, not one per round");
    // The worker reports the kill: the task timed out, and its resources are free.
    env.finish(t, Outcome::Killed);
    assert_eq!(env.state(t), TaskState::TimedOut);
    assert_eq!(
        env.s.task(t).unwrap().attempts[0].failure,
        Some(FailureCause::TimeLimit)
    );
    assert_eq!(env.reason(t), "timed out on attempt 1 of 1");
}

#[test]
fn a_timeout_with_attempts_left_is_retried() {
    let mut env = Env::new();
    env.join("w1", 4, 8);
    let t = env.submit(vec![retries(limited(1_000), 2, 100)])[0];
    env.starts();
    env.started(t);
    env.finish(t, Outcome::TimedOut);
    assert_eq!(env.state(t), TaskState::Backoff);
    env.advance(100);
    assert_eq!(env.starts().len(), 1);
    env.started(t);
    env.finish(t, Outcome::TimedOut);
    assert_eq!(env.state(t), TaskState::TimedOut);
}

#[test]
fn a_task_that_ends_before_its_limit_is_not_killed() {
    let mut env = Env::new();
    env.join("w1", 4, 8);
    let t = env.submit(vec![limited(1_000)])[0];
    env.starts();
    env.run_ok(t);
    env.advance(100_000);
    assert!(env.schedule().is_empty());
}

fn preempting() -> PolicyConfig {
    PolicyConfig {
        preemption: true,
        preemption_grace_ms: 3_000,
        prefetch_per_worker: 0,
        ..PolicyConfig::default()
    }
}

#[test]
fn a_higher_priority_task_evicts_the_cheapest_lower_priority_ones() {
    let mut env = Env::with_policy(preempting());
    let w = env.join("w1", 4, 8);
    // Four 1-cpu tasks fill the worker: priorities 5, 1, 1 (started later), and a
    // non-retryable 0 that may never be preempted.
    let ids = env.submit(vec![
        retries(prio(task(), 5), 3, 0),
        retries(prio(task(), 1), 3, 0),
        retries(prio(task(), 1), 3, 0),
        prio(task(), 0),
    ]);
    env.starts();
    env.started(ids[0]);
    env.started(ids[1]);
    env.advance(10_000);
    env.started(ids[2]);
    env.advance(1_000);
    let urgent = env.submit(vec![cpus(prio(task(), 10), 1)])[0];
    let actions = env.schedule();
    // Fewest victims (one), lowest priority among the preemptible (1), least work lost
    // (the one started later).
    assert_eq!(
        actions,
        vec![Action::Kill {
            task: ids[2],
            attempt: Attempt(1),
            worker: w,
            reason: KillReason::Preempted,
            grace_ms: 3_000
        }]
    );
    assert_eq!(env.state(urgent), TaskState::Ready);
    // Nothing more is evicted while the victim stops.
    assert!(env.schedule().is_empty());
    env.finish(ids[2], Outcome::Killed);
    // The victim is back in the queue without spending an attempt; the urgent task runs.
    let v = env.s.task(ids[2]).unwrap();
    assert_eq!(
        (v.state, v.attempts[0].failure.clone()),
        (TaskState::Ready, Some(FailureCause::Preempted))
    );
    assert!(
        env.reason(ids[2])
            .starts_with("preempted by a higher-priority task; re-queued")
    );
    let starts = env.starts();
    assert_eq!(starts[0].0, urgent);
    env.run_ok(urgent);
    let again = env.starts();
    assert_eq!(again, vec![(ids[2], Attempt(2), w)]);
    env.run_ok(ids[2]);
    assert_eq!(env.state(ids[2]), TaskState::Succeeded);
}

#[test]
fn equal_priority_and_non_retryable_tasks_are_never_preempted() {
    let mut env = Env::with_policy(preempting());
    env.join("w1", 2, 8);
    let ids = env.submit(vec![prio(task(), 0), retries(prio(task(), 5), 3, 0)]);
    env.starts();
    env.submit(vec![prio(task(), 5)]);
    assert!(env.schedule().is_empty());
    assert_eq!(env.state(ids[0]), TaskState::Assigned);
}

#[test]
fn preemption_is_off_unless_the_policy_allows_it() {
    let mut env = Env::new();
    env.join("w1", 1, 8);
    env.submit(vec![retries(task(), 3, 0)]);
    env.starts();
    env.submit(vec![prio(task(), 100)]);
    assert!(env.schedule().is_empty());
    env.ok(Event::SetPolicy {
        policy: preempting(),
    });
    assert_eq!(
        kills(&env.schedule()),
        vec![(drover_types::TaskId(1), KillReason::Preempted)]
    );
}

#[test]
fn preemption_prefers_fewer_victims() {
    let mut env = Env::with_policy(preempting());
    let w = env.join("w1", 8, 8);
    // Four 1-cpu tasks at priority 0 and one 4-cpu task at priority 1 fill the worker.
    let mut specs: Vec<TaskSpec> = (0..4).map(|_| retries(prio(task(), 0), 3, 0)).collect();
    specs.push(cpus(retries(prio(task(), 1), 3, 0), 4));
    let ids = env.submit(specs);
    assert_eq!(env.starts().len(), 5);
    env.submit(vec![cpus(prio(task(), 10), 4)]);
    // One victim (the 4-cpu task) beats four.
    assert_eq!(
        kills(&env.schedule()),
        vec![(ids[4], KillReason::Preempted)]
    );
    let _ = w;
}
