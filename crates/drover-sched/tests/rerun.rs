//! Table tests for re-running jobs: keys are scoped to their job, and references
//! resolve `KEY` (this job's task, else the newest anywhere), `JOB_NAME/KEY` (the newest
//! job with that name) and `JOB_ID/KEY`. Invariants (the key index included) are
//! checked after every event (see `common::Env`).

mod common;
use common::*;
use drover_sched::{CoreError, Event, ResolveError, Scheduler, TaskRange};
use drover_types::{ArraySpec, DepRef, JobId, JobSpec, TaskId, TaskSpec};

/// Submits a job with a name; returns its id and its tasks.
fn submit_named(env: &mut Env, name: &str, tasks: Vec<TaskSpec>) -> (JobId, Vec<TaskId>) {
    let a = env.ok(Event::Submit {
        job: JobSpec {
            name: name.into(),
            tasks,
            ..JobSpec::default()
        },
    });
    let (job, r) = a.job.unwrap();
    (
        job,
        (0..r.count as u64).map(|i| TaskId(r.first.0 + i)).collect(),
    )
}

fn array(mut t: TaskSpec, n: u32) -> TaskSpec {
    t.array = Some(ArraySpec {
        start: 0,
        end: n - 1,
    });
    t
}

fn resolve(s: &Scheduler, text: &str) -> Result<TaskRange, ResolveError> {
    s.resolve(&DepRef::parse(text))
}

fn range(first: u64, count: u32) -> TaskRange {
    TaskRange {
        first: TaskId(first),
        count,
    }
}

/// The split/combine example: `part` (an array of 3) and `combine` after `part`.
fn sum_job() -> Vec<TaskSpec> {
    vec![array(keyed("part"), 3), after(keyed("combine"), &["part"])]
}

#[test]
fn the_same_job_submitted_twice_depends_on_its_own_tasks() {
    let mut env = Env::new();
    let (j1, first) = submit_named(&mut env, "sum", sum_job());
    let (j2, second) = submit_named(&mut env, "sum", sum_job());
    assert_eq!((j1, j2), (JobId(1), JobId(2)));
    assert_eq!(first, (1..=4).map(TaskId).collect::<Vec<_>>());
    assert_eq!(second, (5..=8).map(TaskId).collect::<Vec<_>>());
    assert_eq!(env.s.task(TaskId(4)).unwrap().deps, &[1, 2, 3].map(TaskId));
    assert_eq!(env.s.task(TaskId(8)).unwrap().deps, &[5, 6, 7].map(TaskId));
    // A third time, without a name: still its own tasks.
    let third = env.submit(sum_job());
    assert_eq!(env.s.task(third[3]).unwrap().deps, &third[..3]);
    // An array's key names the whole array, in each job.
    assert_eq!(resolve(&env.s, "part"), Ok(range(9, 3)));
    assert_eq!(resolve(&env.s, "1/part"), Ok(range(1, 3)));
    assert_eq!(resolve(&env.s, "sum/part"), Ok(range(5, 3)));
    assert_eq!(resolve(&env.s, "sum/combine"), Ok(range(8, 1)));
}

#[test]
fn a_bare_key_from_a_later_submission_resolves_to_the_newest() {
    // The README's step-by-step DAG, one task per submission, run twice.
    let mut env = Env::new();
    let mut runs = Vec::new();
    for _ in 0..2 {
        let fetch = env.submit(vec![keyed("fetch")])[0];
        let build = env.submit(vec![after(keyed("build"), &["fetch"])])[0];
        let deploy = env.submit(vec![after(task(), &["build"])])[0];
        runs.push((fetch, build, deploy));
    }
    let [(f1, b1, d1), (f2, b2, d2)] = runs[..] else {
        panic!()
    };
    assert_eq!(env.s.task(b1).unwrap().deps, &[f1]);
    assert_eq!(env.s.task(d1).unwrap().deps, &[b1]);
    assert_eq!(env.s.task(b2).unwrap().deps, &[f2]);
    assert_eq!(env.s.task(d2).unwrap().deps, &[b2]);
    assert_eq!(resolve(&env.s, "fetch"), Ok(range(f2.0, 1)));
    // The older run is still reachable through its job's id.
    let old_job = env.s.task(f1).unwrap().job;
    assert_eq!(
        resolve(&env.s, &format!("{old_job}/fetch")),
        Ok(range(f1.0, 1))
    );
    // Running the first run's fetch to completion readies only the first build.
    let w = env.join("w1", 8, 8);
    let starts: Vec<TaskId> = env.starts().into_iter().map(|s| s.0).collect();
    assert_eq!(starts, vec![f1, f2]);
    env.run_ok(f1);
    let starts: Vec<(TaskId, _, _)> = env.starts();
    assert_eq!(starts, vec![(b1, drover_types::Attempt(1), w)]);
}

#[test]
fn qualified_references_name_a_job_by_name_or_by_id() {
    let mut env = Env::new();
    let (_, n1) = submit_named(&mut env, "nightly", vec![keyed("part"), keyed("other")]);
    let (_, n2) = submit_named(&mut env, "nightly", vec![keyed("part")]);
    let (_, t) = submit_named(&mut env, "team/nightly", vec![keyed("part")]);
    let (j, later) = submit_named(
        &mut env,
        "report",
        vec![
            after(keyed("a"), &["nightly/part"]),
            after(keyed("b"), &["1/part"]),
            after(keyed("c"), &["team/nightly/part"]),
            after(keyed("d"), &["part"]),
        ],
    );
    assert_eq!(j, JobId(4));
    let deps = |i: usize| env.s.task(later[i]).unwrap().deps.to_vec();
    assert_eq!(
        deps(0),
        vec![n2[0]],
        "JOB_NAME/KEY: the newest job with that name"
    );
    assert_eq!(deps(1), vec![n1[0]], "JOB_ID/KEY: exactly that job");
    assert_eq!(deps(2), vec![t[0]], "a job name may contain '/'");
    assert_eq!(deps(3), vec![t[0]], "a bare key: the newest task anywhere");
    // Only the newest job with the name is searched, not older ones.
    assert_eq!(
        resolve(&env.s, "nightly/other"),
        Err(ResolveError::NoKeyInJob {
            key: "other".into(),
            job: JobId(2),
            named: Some("nightly".into()),
        })
    );
    assert_eq!(resolve(&env.s, "1/other"), Ok(range(n1[1].0, 1)));
}

#[test]
fn within_a_submission_a_bare_key_is_the_jobs_own_and_a_qualified_one_an_earlier_jobs() {
    let mut env = Env::new();
    let (_, first) = submit_named(&mut env, "nightly", vec![keyed("part")]);
    let (_, second) = submit_named(
        &mut env,
        "nightly",
        vec![
            keyed("part"),
            after(keyed("diff"), &["part", "nightly/part"]),
        ],
    );
    assert_eq!(
        env.s.task(second[1]).unwrap().deps,
        &[second[0], first[0]],
        "part: this job's; nightly/part: the previous nightly (this one is not submitted yet)"
    );
}

#[test]
fn unresolvable_references_say_what_is_missing() {
    let mut env = Env::new();
    submit_named(&mut env, "nightly", vec![keyed("part")]);
    let table: Vec<(&str, &str, &str)> = vec![
        ("unknown key", "fetch", "no task with key \"fetch\""),
        ("unknown job name", "weekly/part", "no job named \"weekly\""),
        ("unknown job id", "9/part", "no job 9"),
        (
            "key missing in the named job",
            "nightly/fetch",
            "no task with key \"fetch\" in job 1 (the newest job named \"nightly\")",
        ),
        (
            "key missing in the job",
            "1/fetch",
            "no task with key \"fetch\" in job 1",
        ),
        ("unknown task id", "99", "no task 99"),
    ];
    for (rule, reference, message) in table {
        let before = env.s.counts();
        let err = env
            .apply(Event::Submit {
                job: JobSpec {
                    tasks: vec![task(), after(task(), &["nightly/part", reference])],
                    ..JobSpec::default()
                },
            })
            .unwrap_err();
        let CoreError::Invalid(v) = err else {
            panic!("{rule}: {err:?}")
        };
        assert_eq!(v.field, "tasks[1].after[1]", "{rule}");
        assert!(v.reason.starts_with(message), "{rule}: {}", v.reason);
        assert_eq!(env.s.counts(), before, "{rule}: nothing changed");
        if reference != "99" {
            assert_eq!(
                resolve(&env.s, reference).unwrap_err().to_string(),
                message,
                "{rule}"
            );
        }
    }
    assert_eq!(resolve(&env.s, "99"), Err(ResolveError::NoTask(TaskId(99))));
    // Ids were not consumed by the rejected jobs.
    assert_eq!(env.submit(vec![task()]), vec![TaskId(2)]);
}

#[test]
fn keys_that_would_be_ambiguous_are_rejected_naming_the_field() {
    let mut env = Env::new();
    let table: Vec<(&str, Vec<TaskSpec>, &str, &str)> = vec![
        (
            "all digits",
            vec![task(), keyed("123")],
            "tasks[1].key",
            "all digits",
        ),
        (
            "a slash",
            vec![keyed("nightly/part")],
            "tasks[0].key",
            "contains '/'",
        ),
        (
            "duplicate in one job",
            vec![keyed("a"), task(), keyed("a")],
            "tasks[2].key",
            "already the key of tasks[0]",
        ),
        (
            "all-digit key in a reference",
            vec![after(task(), &["nightly/42"])],
            "tasks[0].after[0]",
            "all digits",
        ),
    ];
    for (rule, tasks, field, reason) in table {
        let err = env
            .apply(Event::Submit {
                job: JobSpec {
                    tasks,
                    ..JobSpec::default()
                },
            })
            .unwrap_err();
        let CoreError::Invalid(v) = err else {
            panic!("{rule}: {err:?}")
        };
        assert_eq!(v.field, field, "{rule}");
        assert!(v.reason.contains(reason), "{rule}: {}", v.reason);
    }
    assert_eq!(env.s.counts().tasks.iter().sum::<u64>(), 0);
}

#[test]
fn the_reference_index_survives_snapshot_and_restore() {
    let mut env = Env::new();
    for _ in 0..3 {
        submit_named(&mut env, "sum", sum_job());
        submit_named(&mut env, "other", vec![keyed("combine")]);
        env.submit(vec![keyed("fetch")]);
    }
    let json = serde_json::to_string(&env.s.snapshot()).unwrap();
    let mut restored = Scheduler::restore(serde_json::from_str(&json).unwrap());
    restored.check_invariants().unwrap();
    for text in [
        "part",
        "combine",
        "fetch",
        "sum/part",
        "sum/combine",
        "other/combine",
        "1/part",
        "4/part",
        "5/fetch",
        "other/part",
        "nope/part",
        "10/part",
        "17",
    ] {
        assert_eq!(resolve(&restored, text), resolve(&env.s, text), "{text}");
    }
    assert_eq!(resolve(&restored, "sum/part"), Ok(range(13, 3)));
    assert_eq!(resolve(&restored, "combine"), Ok(range(17, 1)));
    // Both resolve later submissions the same way, and keep doing so.
    let now = drover_types::Millis(env.now);
    for s in [&mut env.s, &mut restored] {
        for _ in 0..2 {
            let a = s
                .apply(
                    now,
                    Event::Submit {
                        job: JobSpec {
                            name: "sum".into(),
                            tasks: vec![
                                after(keyed("part"), &["sum/part", "combine"]),
                                after(keyed("check"), &["part", "4/part", "other/combine"]),
                            ],
                            ..JobSpec::default()
                        },
                    },
                )
                .unwrap();
            s.check_invariants().unwrap();
            let first = a.job.unwrap().1.first;
            assert!(first == TaskId(19) || first == TaskId(21));
        }
    }
    for id in 19..=22 {
        assert_eq!(
            restored.task(TaskId(id)).unwrap().deps,
            env.s.task(TaskId(id)).unwrap().deps,
            "task {id}"
        );
    }
    assert_eq!(
        restored.task(TaskId(21)).unwrap().deps,
        &[19, 17].map(TaskId),
        "sum/part: the previous sum job's part (task 19); combine: the newest (task 17)"
    );
    assert_eq!(
        restored.task(TaskId(22)).unwrap().deps,
        &[21, 7, 8, 9, 17].map(TaskId)
    );
}
