//! Table tests for `preemptible: true` and for the pending reason that tells why a
//! task waits although preemption is on. The invariant checker runs after every event
//! (`Env::apply`).

mod common;

use common::*;
use drover_sched::KillReason;
use drover_types::{FailureCause, Outcome, PolicyConfig, TaskSpec, TaskState};

fn preempting() -> PolicyConfig {
    PolicyConfig {
        preemption: true,
        preemption_grace_ms: 3_000,
        prefetch_per_worker: 0,
        ..PolicyConfig::default()
    }
}

fn preemptible(mut t: TaskSpec) -> TaskSpec {
    t.preemptible = true;
    t
}

#[test]
fn a_task_that_may_not_run_twice_is_not_preempted_and_the_waiting_task_says_why() {
    let mut env = Env::with_policy(preempting());
    env.join("w", 2, 8);
    // Two tasks with the default retries (one attempt) fill the worker.
    let ids = env.submit(vec![task(), task()]);
    env.starts();
    env.started(ids[0]);
    env.started(ids[1]);
    let urgent = env.submit(vec![prio(task(), 10)])[0];
    assert!(env.schedule().is_empty());
    assert_eq!(
        env.reason(urgent),
        "waiting for resources: no worker has 1 cpu free; preemption on, but the 2 running \
         tasks on w cannot be preempted: not retryable (submit them with retries or as \
         preemptible)"
    );
}

#[test]
fn equal_priority_is_named_as_the_reason_too() {
    let mut env = Env::with_policy(preempting());
    env.join("w", 2, 8);
    let ids = env.submit(vec![prio(preemptible(task()), 10), prio(task(), 3)]);
    env.starts();
    env.started(ids[0]);
    env.started(ids[1]);
    let urgent = env.submit(vec![prio(task(), 10)])[0];
    assert!(env.schedule().is_empty());
    assert_eq!(
        env.reason(urgent),
        "waiting for resources: no worker has 1 cpu free; preemption on, but the 2 running \
         tasks on w cannot be preempted: 1 not retryable (submit them with retries or as \
         preemptible), 1 with a priority not below 10"
    );
}

#[test]
fn without_preemption_the_reason_says_nothing_of_it() {
    let mut env = Env::new();
    env.join("w", 1, 8);
    let ids = env.submit(vec![task()]);
    env.starts();
    env.started(ids[0]);
    let urgent = env.submit(vec![prio(task(), 10)])[0];
    assert_eq!(
        env.reason(urgent),
        "waiting for resources: no worker has 1 cpu free"
    );
}

#[test]
fn a_preemptible_task_with_one_attempt_is_evicted_without_spending_it() {
    let mut env = Env::with_policy(preempting());
    let w = env.join("w", 1, 8);
    let victim = env.submit(vec![preemptible(task())])[0];
    env.starts();
    env.started(victim);
    let urgent = env.submit(vec![prio(task(), 10)])[0];
    assert_eq!(
        kills(&env.schedule()),
        vec![(victim, KillReason::Preempted)]
    );
    // While it stops, the waiting task says so.
    assert_eq!(
        env.reason(urgent),
        "waiting for resources: no worker has 1 cpu free; preemption on: waiting for 1 \
         evicted task to stop"
    );
    env.finish(victim, Outcome::Signaled { signal: 15 });
    let v = env.s.task(victim).unwrap();
    assert_eq!(
        (v.state, v.attempts[0].failure.clone()),
        (TaskState::Ready, Some(FailureCause::Preempted))
    );
    assert_eq!(env.starts()[0].0, urgent);
    env.run_ok(urgent);
    // It runs again, as attempt 2, and may still fail once: the eviction spent nothing.
    let again = env.starts();
    assert_eq!(again, vec![(victim, drover_types::Attempt(2), w)]);
    env.started(victim);
    env.exit(victim, 1);
    assert_eq!(env.state(victim), TaskState::Failed);
    assert_eq!(
        env.reason(victim),
        "failed: exited with code 1 on attempt 1 of 1"
    );
}

#[test]
fn a_task_prefetched_to_a_busy_worker_says_why_it_does_not_preempt_there() {
    let mut env = Env::with_policy(PolicyConfig {
        prefetch_per_worker: 2,
        ..preempting()
    });
    env.join("w", 2, 8);
    let ids = env.submit(vec![task(), task()]);
    env.starts();
    env.started(ids[0]);
    env.started(ids[1]);
    let urgent = env.submit(vec![prio(task(), 10)])[0];
    env.schedule();
    assert_eq!(env.state(urgent), TaskState::Assigned);
    let reason = env.reason(urgent);
    assert!(
        reason.starts_with("queued on worker w since")
            && reason.ends_with(
                "; preemption on, but the 2 running tasks on w cannot be preempted: not \
                 retryable (submit them with retries or as preemptible)"
            ),
        "{reason}"
    );
}
