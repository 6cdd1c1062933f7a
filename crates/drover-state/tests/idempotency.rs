//! Idempotency keys: a keyed submission applied twice (a client's retry after a lost
//! answer) creates its tasks once, on every replica, across snapshots, within a bounded
//! window.

use drover_sched::SchedulerConfig;
use drover_state::idempotency::{KEY_WINDOW_MS, KEYS_KEPT};
use drover_state::{Command, CommandResult, IdempotencyKey, LogEntry, StateMachine};
use drover_types::{JobSpec, Millis, TaskSpec};

fn job(name: &str) -> JobSpec {
    JobSpec {
        name: name.into(),
        tasks: vec![TaskSpec::command(["true"])],
        ..JobSpec::default()
    }
}

fn keyed(name: &str, key: &str) -> Command {
    let job = job(name);
    Command::Submit {
        idempotency: Some(IdempotencyKey::for_job(key.into(), &job)),
        job,
        submitter: None,
        staged: None,
    }
}

fn apply(m: &mut StateMachine, now: u64, commands: Vec<Command>) -> Vec<CommandResult> {
    m.apply(&LogEntry {
        now: Millis(now),
        commands,
    })
    .0
}

fn task_count(m: &StateMachine) -> usize {
    m.scheduler().tasks_after(None).count()
}

#[test]
fn a_retried_submission_with_the_same_key_is_answered_as_the_first_and_adds_nothing() {
    let mut m = StateMachine::new(SchedulerConfig::default());
    let first = apply(&mut m, 1_000, vec![keyed("a", "k1")]);
    let CommandResult::Submitted { job: id, tasks } = first[0].clone() else {
        panic!("{first:?}");
    };
    // The retry in a later entry, and a retry in the same entry as another submission.
    let again = apply(&mut m, 2_000, vec![keyed("a", "k1")]);
    assert_eq!(again, vec![CommandResult::Replayed { job: id, tasks }]);
    let both = apply(&mut m, 3_000, vec![keyed("b", "k2"), keyed("b", "k2")]);
    let (
        CommandResult::Submitted { job: j1, tasks: t1 },
        CommandResult::Replayed { job: j2, tasks: t2 },
    ) = (&both[0], &both[1])
    else {
        panic!("{both:?}");
    };
    assert_eq!((j1, t1), (j2, t2));
    assert_ne!(*j1, id);
    assert_eq!(task_count(&m), 2, "two submissions, two tasks");
    // Without a key nothing is deduplicated.
    let plain = Command::Submit {
        job: job("a"),
        idempotency: None,
        submitter: None,
        staged: None,
    };
    apply(&mut m, 4_000, vec![plain.clone(), plain]);
    assert_eq!(task_count(&m), 4);
}

#[test]
fn the_same_key_with_another_body_is_refused_naming_the_header() {
    let mut m = StateMachine::new(SchedulerConfig::default());
    apply(&mut m, 1_000, vec![keyed("a", "k1")]);
    let other = apply(&mut m, 2_000, vec![keyed("other", "k1")]);
    let CommandResult::Rejected(r) = &other[0] else {
        panic!("{other:?}");
    };
    assert_eq!(r.code, "conflict");
    assert_eq!(r.field.as_deref(), Some("Idempotency-Key"));
    assert_eq!(task_count(&m), 1);
}

#[test]
fn a_retry_produces_no_events() {
    let mut m = StateMachine::new(SchedulerConfig::default());
    let first = m.apply_indexed(
        1,
        &LogEntry {
            now: Millis(1_000),
            commands: vec![keyed("a", "k1")],
        },
    );
    assert!(!first.events.is_empty());
    let again = m.apply_indexed(
        2,
        &LogEntry {
            now: Millis(2_000),
            commands: vec![keyed("a", "k1")],
        },
    );
    assert!(again.events.is_empty(), "{:?}", again.events);
}

#[test]
fn keys_round_trip_through_a_snapshot() {
    let mut m = StateMachine::new(SchedulerConfig::default());
    let first = apply(&mut m, 1_000, vec![keyed("a", "k1")]);
    let json = serde_json::to_string(&m.snapshot()).unwrap();
    let mut restored = StateMachine::restore(serde_json::from_str(&json).unwrap());
    assert_eq!(restored.idempotency().len(), 1);
    let again = apply(&mut restored, 2_000, vec![keyed("a", "k1")]);
    let (CommandResult::Submitted { job, tasks }, CommandResult::Replayed { job: j2, tasks: t2 }) =
        (&first[0], &again[0])
    else {
        panic!("{first:?} {again:?}");
    };
    assert_eq!((job, tasks), (j2, t2));
    assert_eq!(task_count(&restored), 1);
    // A snapshot written before keys existed still loads (no keys remembered).
    let mut old: serde_json::Value = serde_json::from_str(&json).unwrap();
    old.as_object_mut().unwrap().remove("idempotency");
    let restored = StateMachine::restore(serde_json::from_value(old).unwrap());
    assert!(restored.idempotency().is_empty());
}

#[test]
fn a_log_entry_written_before_keys_existed_still_decodes() {
    let json = r#"{"now":5,"commands":[{"cmd":"submit","job":{"name":"x","tasks":[{"command":["true"]}]}}]}"#;
    let entry: LogEntry = serde_json::from_str(json).unwrap();
    assert!(matches!(
        &entry.commands[0],
        Command::Submit {
            idempotency: None,
            ..
        }
    ));
}

#[test]
fn keys_are_forgotten_after_the_window_and_beyond_the_count() {
    let mut m = StateMachine::new(SchedulerConfig::default());
    apply(&mut m, 1_000, vec![keyed("a", "old")]);
    // Still remembered just inside the window...
    apply(&mut m, 1_000 + KEY_WINDOW_MS, vec![keyed("a", "old")]);
    assert_eq!(task_count(&m), 1);
    // ...forgotten after it: the same key now submits anew.
    apply(&mut m, 2_000 + KEY_WINDOW_MS, vec![keyed("a", "old")]);
    assert_eq!(task_count(&m), 2);

    // The count bound: many keys in one go keep at most KEYS_KEPT.
    let mut m = StateMachine::new(SchedulerConfig::default());
    let n = KEYS_KEPT + 10;
    let commands: Vec<Command> = (0..n).map(|i| keyed("x", &format!("k{i}"))).collect();
    apply(&mut m, 1_000, commands);
    assert_eq!(m.idempotency().len(), KEYS_KEPT);
    // The oldest were forgotten first; the newest are still answered.
    let before = task_count(&m);
    apply(&mut m, 2_000, vec![keyed("x", &format!("k{}", n - 1))]);
    assert_eq!(task_count(&m), before);
    apply(&mut m, 3_000, vec![keyed("x", "k0")]);
    assert_eq!(task_count(&m), before + 1);
}
