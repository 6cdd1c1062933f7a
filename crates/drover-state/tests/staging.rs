//! Large jobs sent in parts (`SubmitPart` entries, then the `Submit` naming the
//! upload): the job appears whole at its submission and never before, in the order
//! submitted, the same on a replica restored from a snapshot taken half-way; parts
//! whose submission never comes expire; a replayed key drops its parts.

use drover_sched::SchedulerConfig;
use drover_state::staging::UPLOAD_TTL_MS;
use drover_state::{
    Command, CommandResult, IdempotencyKey, LogEntry, SnapshotReader, StagedRef, StateMachine,
    TaskRecord, write_snapshot,
};
use drover_types::{JobSpec, Millis, TaskId, TaskSpec};

fn tasks(from: usize, n: usize) -> Vec<TaskSpec> {
    (from..from + n)
        .map(|i| TaskSpec {
            name: format!("t{i}"),
            ..TaskSpec::command(["echo", &i.to_string()])
        })
        .collect()
}

fn apply(m: &mut StateMachine, now: u64, commands: Vec<Command>) -> Vec<CommandResult> {
    m.apply(&LogEntry {
        now: Millis(now),
        commands,
    })
    .0
}

fn part(upload: u64, part: u32, tasks: Vec<TaskSpec>) -> Command {
    Command::SubmitPart {
        upload,
        part,
        tasks,
    }
}

fn submit(tail: Vec<TaskSpec>, staged: Option<StagedRef>, key: Option<&str>) -> Command {
    let job = JobSpec {
        name: "big".into(),
        tasks: tail,
        ..JobSpec::default()
    };
    Command::Submit {
        idempotency: key.map(|k| IdempotencyKey {
            key: k.into(),
            fingerprint: 1,
        }),
        job,
        submitter: None,
        staged,
    }
}

fn task_count(m: &StateMachine) -> usize {
    m.scheduler().tasks_after(None).count()
}

fn names(m: &StateMachine) -> Vec<String> {
    m.scheduler()
        .tasks_after(None)
        .map(|v| v.spec.name().to_owned())
        .collect()
}

fn staged(upload: u64, parts: u32, tasks: u64) -> Option<StagedRef> {
    Some(StagedRef {
        upload,
        parts,
        tasks,
    })
}

#[test]
fn parts_are_invisible_until_the_submission_and_then_the_job_is_whole_and_in_order() {
    let mut m = StateMachine::new(SchedulerConfig::default());
    let r = apply(&mut m, 1_000, vec![part(5, 0, tasks(0, 3))]);
    assert_eq!(r, vec![CommandResult::PartStaged { upload: 5, part: 0 }]);
    apply(&mut m, 1_001, vec![part(5, 1, tasks(3, 2))]);
    assert_eq!(task_count(&m), 0, "parts are not tasks");
    assert_eq!(m.uploads().held_tasks(), 5);

    let r = apply(
        &mut m,
        1_002,
        vec![submit(tasks(5, 1), staged(5, 2, 5), None)],
    );
    let CommandResult::Submitted { tasks: range, .. } = &r[0] else {
        panic!("{r:?}");
    };
    assert_eq!(range.count, 6);
    assert_eq!(names(&m), ["t0", "t1", "t2", "t3", "t4", "t5"]);
    assert!(m.uploads().is_empty());
    assert_eq!(m.job(drover_types::JobId(1)).unwrap().count, 6);
}

#[test]
fn a_submission_whose_parts_are_missing_is_refused_as_retryable_and_creates_nothing() {
    let mut m = StateMachine::new(SchedulerConfig::default());
    apply(&mut m, 1_000, vec![part(5, 0, tasks(0, 3))]);
    // Says two parts were sent; only one arrived.
    let r = apply(
        &mut m,
        1_001,
        vec![submit(tasks(3, 1), staged(5, 2, 6), None)],
    );
    let CommandResult::Rejected(rej) = &r[0] else {
        panic!("{r:?}");
    };
    assert_eq!(rej.code, "unavailable", "{rej:?}");
    assert_eq!(task_count(&m), 0);
    assert!(m.uploads().is_empty(), "the broken upload is dropped");
    // An upload nobody sent.
    let r = apply(
        &mut m,
        1_002,
        vec![submit(tasks(3, 1), staged(9, 1, 3), None)],
    );
    assert!(matches!(&r[0], CommandResult::Rejected(rej) if rej.code == "unavailable"));
    // A part out of order.
    let r = apply(&mut m, 1_003, vec![part(7, 1, tasks(0, 1))]);
    assert!(matches!(&r[0], CommandResult::Rejected(rej) if rej.code == "unavailable"));
    assert_eq!(task_count(&m), 0);
}

#[test]
fn parts_whose_submission_never_comes_expire_on_every_replica_alike() {
    let mut a = StateMachine::new(SchedulerConfig::default());
    apply(&mut a, 1_000, vec![part(5, 0, tasks(0, 3))]);
    apply(&mut a, 1_000 + UPLOAD_TTL_MS - 1, vec![Command::Tick]);
    assert_eq!(a.uploads().len(), 1);
    apply(&mut a, 1_000 + UPLOAD_TTL_MS, vec![Command::Tick]);
    assert!(a.uploads().is_empty());
    assert_eq!(a.uploads().held_tasks(), 0);
    // Its submission arriving after that is refused, retryable.
    let r = apply(
        &mut a,
        2_000 + UPLOAD_TTL_MS,
        vec![submit(tasks(3, 1), staged(5, 1, 3), None)],
    );
    assert!(matches!(&r[0], CommandResult::Rejected(rej) if rej.code == "unavailable"));
}

#[test]
fn a_snapshot_taken_half_way_gives_a_replica_that_completes_the_job_identically() {
    let mut a = StateMachine::new(SchedulerConfig::default());
    apply(&mut a, 1_000, vec![part(5, 0, tasks(0, 3))]);
    let mut bytes = std::io::Cursor::new(Vec::new());
    write_snapshot(b"meta", &a.snapshot(), &mut bytes).unwrap();
    let bytes = bytes.into_inner();
    let mut b = StateMachine::restore(SnapshotReader::open(&bytes[..]).unwrap().state().unwrap());
    assert_eq!(b.uploads().held_tasks(), 3);
    for m in [&mut a, &mut b] {
        apply(m, 1_001, vec![part(5, 1, tasks(3, 2))]);
        apply(m, 1_002, vec![submit(tasks(5, 1), staged(5, 2, 5), None)]);
    }
    assert_eq!(names(&a), names(&b));
    assert_eq!(task_count(&b), 6);
    let spec = |m: &StateMachine| {
        m.scheduler()
            .task(TaskId(4))
            .unwrap()
            .spec
            .to_spec()
            .into_owned()
    };
    assert_eq!(spec(&a), spec(&b));
    assert_eq!(a.record(TaskId(4)), None::<&TaskRecord>);
}

#[test]
fn a_replayed_submission_drops_the_parts_it_sent_again() {
    let mut m = StateMachine::new(SchedulerConfig::default());
    apply(&mut m, 1_000, vec![part(5, 0, tasks(0, 3))]);
    apply(
        &mut m,
        1_001,
        vec![submit(tasks(3, 1), staged(5, 1, 3), Some("k"))],
    );
    assert_eq!(task_count(&m), 4);
    // The client did not hear the answer and sent the job again: a new upload.
    apply(&mut m, 1_002, vec![part(6, 0, tasks(0, 3))]);
    let r = apply(
        &mut m,
        1_003,
        vec![submit(tasks(3, 1), staged(6, 1, 3), Some("k"))],
    );
    assert!(matches!(&r[0], CommandResult::Replayed { .. }), "{r:?}");
    assert_eq!(task_count(&m), 4, "nothing doubled");
    assert!(m.uploads().is_empty(), "the resend's parts are dropped");
}
