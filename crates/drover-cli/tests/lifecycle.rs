//! A task's life seen from the outside: submit, run, result, exit code, attempts,
//! output, and the shipped example.

mod common;

use common::*;
use drover_types::{FailureCause, Outcome, TaskState};
use serde_json::json;
use std::io::{BufRead, BufReader};
use std::time::{Duration, Instant};

#[test]
fn run_prints_the_tasks_output_and_exits_zero() {
    let mut c = Cluster::start("run-echo");
    c.add_worker("w", &["--cpus", "2", "--memory", "4G"]);
    let out = c.cli(&["run", "--", "echo", "hello"]);
    assert_eq!(out.code(), Some(0), "{out}");
    assert_eq!(out.stdout, "hello\n", "{out}");

    // The task is recorded as succeeded with its result and one attempt.
    let list = c.get_ok("/v1/tasks");
    let id = list["tasks"][0]["id"].as_u64().expect("one task listed");
    let t = c.task(id);
    assert_eq!(t.state, TaskState::Succeeded);
    assert_eq!(t.exit_code, Some(0));
    assert_eq!(t.result.as_deref(), Some("hello\n"));
    assert_eq!(t.attempts.len(), 1);
    assert_eq!(t.attempts[0].outcome, Some(Outcome::Exited { code: 0 }));
}

#[test]
fn run_exits_with_the_tasks_exit_code_and_status_shows_it() {
    let mut c = Cluster::start("run-exit3");
    c.add_worker("w", &["--cpus", "2", "--memory", "4G"]);
    let out = c.cli(&["run", "--", "sh", "-c", "echo partial; exit 3"]);
    assert_eq!(out.code(), Some(3), "{out}");
    assert_eq!(out.stdout, "partial\n", "{out}");

    let list = c.cli_ok(&["--json", "list"]);
    let rows: serde_json::Value = serde_json::from_str(&list.stdout).expect("list --json is JSON");
    let id = rows[0]["id"].as_u64().expect("one task listed");
    assert_eq!(rows[0]["state"], "failed");
    assert_eq!(rows[0]["exit_code"], 3);

    let st = c.cli_ok(&["--json", "status", &id.to_string()]);
    let v: serde_json::Value = serde_json::from_str(&st.stdout).expect("status --json is JSON");
    assert_eq!(v["state"], "failed", "{v}");
    assert_eq!(v["exit_code"], 3, "{v}");
    assert_eq!(v["attempt"], 1, "{v}");
    assert_eq!(v["max_attempts"], 1, "{v}");
    assert_eq!(v["attempts"].as_array().map(Vec::len), Some(1), "{v}");
    assert_eq!(
        v["attempts"][0]["outcome"],
        json!({"kind": "exited", "code": 3}),
        "{v}"
    );

    let text = c.cli_ok(&["status", &id.to_string()]).stdout;
    assert!(text.contains("failed"), "{text}");
    assert!(text.contains("exited with code 3"), "{text}");
    assert!(text.contains("1 of 1"), "{text}");
}

#[test]
fn failed_attempts_are_retried_and_every_attempt_is_recorded() {
    let mut c = Cluster::start("retries");
    c.add_worker("w", &["--cpus", "2", "--memory", "4G"]);
    let counter = c.file("counter");
    // Fails with 7 twice, then succeeds.
    let script = format!(
        "n=$(cat {f} 2>/dev/null || echo 0); n=$((n+1)); echo $n > {f}; \
         if [ $n -ge 3 ]; then echo ok-$n; exit 0; fi; echo failing-$n; exit 7",
        f = sh_quote(&counter)
    );
    let id = c.submit(json!({
        "command": [script],
        "shell": true,
        "retry": {"max_attempts": 3, "backoff": {"initial_ms": 100, "multiplier_percent": 200, "max_ms": 400}},
    }));
    let t = c.wait_final(id, SLOW);
    assert_eq!(t.state, TaskState::Succeeded, "{t:#?}");
    assert_eq!(t.attempt.0, 3, "{t:#?}");
    assert_eq!(t.attempts.len(), 3, "{t:#?}");
    for a in &t.attempts[..2] {
        assert_eq!(
            a.failure,
            Some(FailureCause::Outcome {
                outcome: Outcome::Exited { code: 7 }
            }),
            "{t:#?}"
        );
    }
    assert_eq!(
        t.attempts[2].outcome,
        Some(Outcome::Exited { code: 0 }),
        "{t:#?}"
    );
    assert_eq!(t.result.as_deref(), Some("ok-3\n"));
    assert_eq!(read(&counter).trim(), "3", "exactly three runs");

    // Each attempt keeps its own output.
    let first = c.get(&format!("/v1/tasks/{id}/output?attempt=1"));
    assert_eq!(first.status, 200);
    assert_eq!(first.text(), "failing-1\n");

    let text = c.cli_ok(&["status", &id.to_string()]).stdout;
    assert!(text.contains("3 of 3"), "{text}");
    assert!(
        text.contains("#1") && text.contains("exited with code 7"),
        "{text}"
    );
}

#[test]
fn a_task_that_exhausts_its_retries_ends_failed_with_all_attempts() {
    let mut c = Cluster::start("retries-out");
    c.add_worker("w", &["--cpus", "2", "--memory", "4G"]);
    let id = c.submit(json!({
        "command": ["sh", "-c", "exit 5"],
        "retry": {"max_attempts": 2, "backoff": {"initial_ms": 100, "multiplier_percent": 100, "max_ms": 100}},
    }));
    let t = c.wait_final(id, SLOW);
    assert_eq!(t.state, TaskState::Failed, "{t:#?}");
    assert_eq!(t.attempts.len(), 2, "{t:#?}");
    assert_eq!(t.exit_code, Some(5));
}

#[test]
fn the_sum_of_squares_example_prints_exactly_the_right_total() {
    let mut c = Cluster::start("example");
    c.add_worker("w", &["--cpus", "4", "--memory", "4G"]);
    let file = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../examples/sum_of_squares.yaml"
    );
    let out = run_with_timeout(
        c.cli_command(&["run", "-f", file]),
        Duration::from_secs(120),
        || c.logs(),
    );
    assert_eq!(out.code(), Some(0), "{out}\n{}", c.logs());
    assert_eq!(out.stdout, "333333833333500000\n", "{out}");
}

#[test]
fn logs_prints_a_finished_tasks_stdout_and_stderr() {
    let mut c = Cluster::start("logs");
    c.add_worker("w", &["--cpus", "2", "--memory", "4G"]);
    let id = c.submit(json!({"command": ["sh", "-c", "echo out1; echo err1 >&2; echo out2"]}));
    let t = c.wait_final(id, SLOW);
    assert_eq!(t.state, TaskState::Succeeded, "{t:#?}");
    let out = c.cli_ok(&["logs", &id.to_string()]);
    assert_eq!(out.stdout, "out1\nout2\n", "{out}");
    let err = c.cli_ok(&["logs", "--stderr", &id.to_string()]);
    assert_eq!(err.stdout, "err1\n", "{err}");
    // And by key.
    let keyed = c.submit(json!({"command": ["echo", "by-key"], "key": "the-key"}));
    c.wait_final(keyed, SLOW);
    assert_eq!(c.cli_ok(&["logs", "the-key"]).stdout, "by-key\n");
}

#[test]
fn logs_follow_streams_a_running_tasks_lines_and_ends_with_the_task() {
    let mut c = Cluster::start("follow");
    c.add_worker("w", &["--cpus", "2", "--memory", "4G"]);
    let id = c.submit(json!({
        "command": ["for i in 1 2 3 4 5 6 7 8 9 10; do echo line-$i; sleep 0.2; done"],
        "shell": true,
    }));
    let mut cmd = c.cli_command(&["logs", "--follow", &id.to_string()]);
    cmd.stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().expect("start drover logs --follow");
    let stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut lines = Vec::new();
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            lines.push((Instant::now(), line));
        }
        (lines, Instant::now())
    });
    let deadline = Instant::now() + SLOW;
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "`drover logs --follow` did not end with the task\n{}",
                c.logs()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let (lines, eof_at) = reader.join().unwrap();
    assert!(status.success(), "logs --follow exited with {status}");
    let texts: Vec<&str> = lines.iter().map(|(_, l)| l.as_str()).collect();
    let expected: Vec<String> = (1..=10).map(|i| format!("line-{i}")).collect();
    assert_eq!(texts, expected, "every line, in order, once");
    // Streamed as they came, not all at once at the end: the task prints over ~2 s.
    let spread = lines.last().unwrap().0 - lines.first().unwrap().0;
    assert!(
        spread >= Duration::from_millis(900),
        "lines arrived within {spread:?}: not streamed"
    );
    assert!(
        eof_at - lines.last().unwrap().0 < Duration::from_secs(5),
        "the stream lingered after the last line"
    );
    assert_eq!(c.task(id).state, TaskState::Succeeded);
}

#[test]
fn tasks_submitted_before_any_worker_joins_start_when_one_joins() {
    let mut c = Cluster::start("late-worker");
    let early = c.submit(json!({"command": ["echo", "early"]}));
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(c.task(early).state, TaskState::Ready);
    c.add_worker("w", &["--cpus", "2", "--memory", "4G"]);
    let t = c.wait_final(early, Duration::from_secs(15));
    assert_eq!(t.state, TaskState::Succeeded, "{t:#?}");
    assert_eq!(t.result.as_deref(), Some("early\n"));
    // A second worker joining later with tasks queued for it: same rule.
    let gate = c.file("gate");
    let blockers: Vec<u64> = (0..2)
        .map(|_| {
            c.submit(json!({
                "command": [format!("while [ ! -f {} ]; do sleep 0.05; done", sh_quote(&gate))],
                "shell": true,
            }))
        })
        .collect();
    for b in &blockers {
        c.wait_state(*b, "running", SLOW);
    }
    let queued = c.submit(json!({"command": ["echo", "queued"]}));
    std::thread::sleep(Duration::from_millis(200));
    // The first worker is full: the task waits, ready or prefetched to it (assigned
    // there but not started). Either way it must go to the worker that joins with room.
    let waiting = c.task(queued);
    assert!(
        matches!(waiting.state, TaskState::Ready | TaskState::Assigned)
            && waiting.started_at.is_none(),
        "the first worker is full: {waiting:#?}"
    );
    let second = c.add_worker("w2", &["--cpus", "1", "--memory", "4G"]);
    let t = c.wait_final(queued, Duration::from_secs(15));
    assert_eq!(t.state, TaskState::Succeeded, "{t:#?}");
    assert_eq!(t.worker.as_deref(), Some(second.as_str()));
    touch(&gate);
}

#[test]
fn an_array_expands_into_indexed_tasks_and_a_dependency_on_its_key_waits_for_all() {
    let mut c = Cluster::start("array");
    c.add_worker("w", &["--cpus", "4", "--memory", "4G"]);
    let out = c.cli_ok(&[
        "submit",
        "--key",
        "parts",
        "--array",
        "3-7",
        "--shell",
        "--",
        "echo $DROVER_TASK_INDEX/$DROVER_TASK_COUNT",
    ]);
    assert!(out.stdout.contains("5 tasks"), "{out}");
    let combine = c.submit(json!({"command": ["sh", "-c", "tr '\\n' ' '"], "after": ["parts"]}));
    let t = c.wait_final(combine, SLOW);
    assert_eq!(t.state, TaskState::Succeeded, "{t:#?}");
    assert_eq!(
        t.result.as_deref(),
        Some("3/5 4/5 5/5 6/5 7/5 "),
        "results in index order"
    );
    assert_eq!(t.deps.len(), 5);
    for (i, dep) in t.deps.iter().enumerate() {
        let d = c.task(dep.0);
        assert_eq!(d.array_index, Some(3 + i as u32));
        assert_eq!(d.array_count, Some(5));
    }
    // The array's key names several tasks: asking for one by it is refused clearly.
    let r = c.get("/v1/tasks/parts");
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(r.error()["message"].as_str().unwrap().contains("array"));
}

#[test]
fn cancelling_a_job_cancels_its_waiting_ready_and_running_tasks() {
    let mut c = Cluster::start("cancel-job");
    c.add_worker("w", &["--cpus", "1", "--memory", "4G"]);
    let (job, first, count) = c.submit_job(json!({"tasks": [
        {"key": "run", "command": ["sleep", "60"]},
        {"key": "queued", "command": ["sleep", "60"]},
        {"key": "after", "command": ["true"], "after": ["run"]},
    ]}));
    c.wait_state(first, "running", SLOW);
    let out = c.cli_ok(&["cancel", "--job", &job.to_string()]);
    assert!(out.stdout.contains("cancelled 3"), "{out}");
    for id in first..first + count {
        let t = c.wait_final(id, SLOW);
        assert_eq!(t.state, TaskState::Cancelled, "{t:#?}");
    }
    let w = c.poll("the worker to free its CPU", SLOW, || {
        let w = c.workers_info().remove(0);
        w.running.is_empty().then_some(w)
    });
    assert_eq!(w.allocated.cpu_milli, 0);
    let waited = c.cli(&["wait", "--job", &job.to_string()]);
    assert_eq!(waited.code(), Some(1), "{waited}");
}

#[test]
fn wait_exits_zero_only_when_every_task_succeeded() {
    let mut c = Cluster::start("wait");
    c.add_worker("w", &["--cpus", "2", "--memory", "4G"]);
    let ok = c.submit(json!({"command": ["sleep", "0.3"]}));
    let bad = c.submit(json!({"command": ["false"]}));
    let out = c.cli(&["wait", &ok.to_string()]);
    assert_eq!(out.code(), Some(0), "{out}");
    assert!(out.stdout.contains("succeeded"), "{out}");
    let out = c.cli(&["wait", &ok.to_string(), &bad.to_string()]);
    assert_eq!(out.code(), Some(1), "{out}");
    assert!(out.stdout.contains("failed"), "{out}");
    let out = c.cli_ok(&["submit", "--wait", "--", "true"]);
    assert!(out.status.success(), "{out}");
    let out = c.cli(&["submit", "--wait", "--", "sh", "-c", "exit 9"]);
    assert_eq!(out.code(), Some(9), "{out}");
}

#[test]
fn a_program_that_cannot_start_fails_with_the_reason() {
    let mut c = Cluster::start("spawn-fail");
    c.add_worker("w", &["--cpus", "2", "--memory", "4G"]);
    let out = c.cli(&["run", "--", "/no/such/program", "arg"]);
    assert_ne!(out.code(), Some(0), "{out}");
    assert!(out.stderr.contains("could not start"), "{out}");
    let id = c.get_ok("/v1/tasks")["tasks"][0]["id"].as_u64().unwrap();
    let t = c.task(id);
    assert_eq!(t.state, TaskState::Failed);
    assert!(
        matches!(t.outcome, Some(Outcome::SpawnFailed { .. })),
        "{t:#?}"
    );
    let id = c.submit(json!({"command": ["true"], "workdir": "/no/such/dir"}));
    let t = c.wait_final(id, SLOW);
    assert_eq!(t.state, TaskState::Failed, "{t:#?}");
    assert!(
        matches!(t.outcome, Some(Outcome::SpawnFailed { .. })),
        "{t:#?}"
    );
}

#[test]
fn a_task_sees_its_env_and_gets_a_fresh_working_directory_per_attempt() {
    let mut c = Cluster::start("env");
    c.add_worker("w", &["--cpus", "2", "--memory", "4G"]);
    let out = c.cli_ok(&[
        "run",
        "--env",
        "GREETING=hi there",
        "--shell",
        "--",
        "echo \"$GREETING\" $DROVER_TASK_ID $DROVER_ATTEMPT",
    ]);
    assert_eq!(out.stdout, "hi there 1 1\n", "{out}");
    // Attempt 2 must not see attempt 1's files.
    let id = c.submit(json!({
        "command": ["if [ -f left-over ]; then echo dirty; exit 0; fi; touch left-over; pwd; [ $DROVER_ATTEMPT -ge 2 ]"],
        "shell": true,
        "retry": {"max_attempts": 2, "backoff": {"initial_ms": 100, "multiplier_percent": 100, "max_ms": 100}},
    }));
    let t = c.wait_final(id, SLOW);
    assert_eq!(t.state, TaskState::Succeeded, "{t:#?}");
    assert_eq!(t.attempts.len(), 2);
    assert_ne!(
        t.result.as_deref(),
        Some("dirty\n"),
        "attempt 2 ran in attempt 1's directory"
    );
}

#[test]
fn large_output_is_kept_whole_and_the_result_is_bounded() {
    let mut c = Cluster::start("big-output");
    c.add_worker("w", &["--cpus", "2", "--memory", "4G"]);
    // 3 MB of numbered lines.
    let id = c.submit(json!({"command": ["seq", "1", "400000"]}));
    let t = c.wait_final(id, SLOW);
    assert_eq!(t.state, TaskState::Succeeded, "{t:#?}");
    let expected: String = (1..=400000).map(|i| format!("{i}\n")).collect();
    let out = c.cli_ok(&["logs", &id.to_string()]);
    assert_eq!(out.stdout.len(), expected.len(), "logs returns every byte");
    assert!(out.stdout == expected, "logs returns the bytes in order");
    let result = t.result.unwrap_or_default();
    assert!(
        !result.is_empty() && result.len() <= 64 * 1024,
        "result is {} bytes",
        result.len()
    );
    assert!(
        expected.starts_with(&result),
        "the result is the start of stdout"
    );
    // Reading from an offset.
    let r = c.get(&format!(
        "/v1/tasks/{id}/output?offset={}",
        expected.len() - 7
    ));
    assert_eq!(r.text(), "400000\n");
}

#[test]
fn a_simple_task_past_its_time_limit_is_timed_out_and_run_exits_non_zero() {
    let mut c = Cluster::start("timeout-simple");
    c.add_worker("w", &["--cpus", "2", "--memory", "4G"]);
    let started = std::time::Instant::now();
    let out = c.cli(&["run", "--timeout", "1s", "--", "sleep", "30"]);
    assert_ne!(out.code(), Some(0), "{out}");
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "the limit was enforced"
    );
    let id = c.get_ok("/v1/tasks")["tasks"][0]["id"].as_u64().unwrap();
    let t = c.task(id);
    assert_eq!(t.state, TaskState::TimedOut, "{t:#?}");
    assert_eq!(t.outcome, Some(Outcome::TimedOut), "{t:#?}");
}

#[test]
fn a_retried_task_waits_out_its_backoff() {
    let mut c = Cluster::start("backoff");
    c.add_worker("w", &["--cpus", "2", "--memory", "4G"]);
    let id = c.submit(json!({
        "command": ["sh", "-c", "[ $DROVER_ATTEMPT -ge 2 ]"],
        "retry": {"max_attempts": 2, "backoff": {"initial_ms": 1500, "multiplier_percent": 100, "max_ms": 1500}},
    }));
    let t = c.wait_state(id, "backoff", SLOW);
    assert!(t.reason.is_some(), "a task in backoff says until when");
    let t = c.wait_final(id, SLOW);
    assert_eq!(t.state, TaskState::Succeeded, "{t:#?}");
    let gap = t.attempts[1].assigned_at.0 - t.attempts[0].ended_at.unwrap().0;
    assert!(
        gap >= 1400,
        "the second attempt came {gap} ms after the first ended, before its 1.5 s backoff"
    );
}

#[test]
fn list_pages_through_many_tasks_and_filters_by_state_and_job() {
    let c = Cluster::start("list");
    let (job, first, count) =
        c.submit_job(json!({"tasks": [{"command": ["true"], "array": {"start": 0, "end": 249}}]}));
    assert_eq!(count, 250);
    c.submit(json!({"command": ["true"], "name": "other"}));
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..10 {
        let path = match &cursor {
            Some(cur) => format!("/v1/tasks?limit=100&cursor={cur}"),
            None => "/v1/tasks?limit=100".to_string(),
        };
        let page = c.get_ok(&path);
        seen.extend(
            page["tasks"]
                .as_array()
                .unwrap()
                .iter()
                .map(|t| t["id"].as_u64().unwrap()),
        );
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_string()),
            None => break,
        }
    }
    let expected: Vec<u64> = (first..=first + 250).collect();
    assert_eq!(seen, expected, "every task once, in id order");
    let out = c.cli_ok(&["--json", "list", "--all", "--limit", "60"]);
    let all: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(all.as_array().unwrap().len(), 251);
    let by_job = c.get_ok(&format!("/v1/tasks?job={job}&limit=1000"));
    assert_eq!(by_job["tasks"].as_array().unwrap().len(), 250);
    let ready = c.get_ok("/v1/tasks?state=ready,waiting&limit=1000");
    assert_eq!(ready["tasks"].as_array().unwrap().len(), 251);
    let none = c.get_ok("/v1/tasks?state=succeeded");
    assert_eq!(none["tasks"].as_array().unwrap().len(), 0);
    let named = c.get_ok("/v1/tasks?name=other");
    assert_eq!(named["tasks"].as_array().unwrap().len(), 1);
}

#[test]
fn keys_with_symbols_and_qualified_references_work_everywhere() {
    let mut c = Cluster::start("keys");
    c.add_worker("w", &["--cpus", "2", "--memory", "4G"]);
    // A key may not contain '/': it separates a job from a key in references.
    let out = c.cli(&["submit", "--key", "team/a", "--", "true"]);
    assert!(
        !out.status.success(),
        "a key with '/' must be refused: {out}"
    );
    assert!(
        out.stderr.contains("key") && out.stderr.contains("'/'"),
        "{out}"
    );
    // A single task's job is named after the task, so `team/a/step-1` is the key
    // `step-1` in the newest job named `team/a` (the client escapes the '/' in URLs).
    let mut ids = Vec::new();
    for (name, key) in [("team/a", "step-1"), ("", "x@y:z.w_v")] {
        let mut args = vec!["submit", "--key", key];
        if !name.is_empty() {
            args.extend(["--name", name]);
        }
        let echo = if name.is_empty() {
            key.to_string()
        } else {
            format!("{name}/{key}")
        };
        args.extend(["--", "echo", &echo]);
        let out = c.cli_ok(&args);
        ids.push((echo.clone(), out.stdout.trim().parse::<u64>().unwrap()));
    }
    for (reference, id) in ids {
        let st = c.cli_ok(&["--json", "status", &reference]);
        let v: serde_json::Value = serde_json::from_str(&st.stdout).unwrap();
        assert_eq!(v["id"], id, "status by reference {reference}");
        c.wait_final(id, SLOW);
        assert_eq!(
            c.cli_ok(&["logs", &reference]).stdout,
            format!("{reference}\n")
        );
        let child = c.submit(json!({"command": ["cat"], "after": [reference]}));
        assert_eq!(
            c.wait_final(child, SLOW).result.as_deref(),
            Some(format!("{reference}\n").as_str())
        );
    }
}

#[test]
fn non_utf8_and_unicode_output_is_kept_byte_for_byte() {
    let mut c = Cluster::start("bytes");
    c.add_worker("w", &["--cpus", "2", "--memory", "4G"]);
    let id = c
        .submit(json!({"command": ["printf", "h\\303\\251llo \\342\\234\\223 \\377\\376 end\\n"]}));
    let t = c.wait_final(id, SLOW);
    assert_eq!(t.state, TaskState::Succeeded, "{t:#?}");
    let r = c.get(&format!("/v1/tasks/{id}/output"));
    assert_eq!(
        r.body,
        b"h\xc3\xa9llo \xe2\x9c\x93 \xff\xfe end\n".to_vec(),
        "raw bytes"
    );
    let result = t.result.unwrap();
    assert!(result.starts_with("héllo ✓ "), "{result:?}");
}

#[test]
fn a_time_limited_task_with_retries_is_retried_then_ends_timed_out() {
    let mut c = Cluster::start("timeout-retry");
    c.add_worker("w", &["--cpus", "2", "--memory", "4G"]);
    let id = c.submit(json!({
        "command": ["sleep", "30"],
        "max_runtime_ms": 500,
        "retry": {"max_attempts": 2, "backoff": {"initial_ms": 100, "multiplier_percent": 100, "max_ms": 100}},
    }));
    let t = c.wait_final(id, SLOW);
    assert_eq!(t.state, TaskState::TimedOut, "{t:#?}");
    assert_eq!(t.attempts.len(), 2, "{t:#?}");
}

#[test]
fn cancelling_a_task_in_backoff_stops_it_for_good() {
    let mut c = Cluster::start("cancel-backoff");
    c.add_worker("w", &["--cpus", "2", "--memory", "4G"]);
    let id = c.submit(json!({
        "command": ["false"],
        "retry": {"max_attempts": 5, "backoff": {"initial_ms": 3000, "multiplier_percent": 100, "max_ms": 3000}},
    }));
    c.wait_state(id, "backoff", SLOW);
    c.cli_ok(&["cancel", &id.to_string()]);
    assert_eq!(c.task(id).state, TaskState::Cancelled);
    std::thread::sleep(Duration::from_millis(3500));
    let t = c.task(id);
    assert_eq!(t.state, TaskState::Cancelled);
    assert_eq!(t.attempts.len(), 1, "no attempt after the cancel: {t:#?}");
}

/// Whether a worker's log says its driver has a memory cgroup ("execution driver ready
/// mode=cgroup v1 (memory, cpuacct, ...)").
fn has_memory_cgroup(log: &str) -> bool {
    log.lines()
        .filter_map(|l| l.split_once("cgroup v1 (").map(|(_, rest)| rest))
        .any(|rest| rest.split(')').next().unwrap_or("").contains("memory"))
}

#[test]
fn a_task_over_its_memory_limit_is_ended_as_out_of_memory() {
    let mut c = Cluster::start("oom");
    // One worker as it comes (a memory cgroup where the host has one), one on the
    // fallback that polls the task's memory: both must end the task at its limit.
    c.add_worker(
        "default",
        &["--cpus", "2", "--memory", "4G", "--label", "kind=default"],
    );
    c.add_worker(
        "polling",
        &[
            "--cpus",
            "2",
            "--memory",
            "4G",
            "--label",
            "kind=polling",
            "--no-cgroups",
        ],
    );
    let cgroup = has_memory_cgroup(&c.worker_log("default"));
    if !cgroup {
        eprintln!(
            "NOTE: skipped the memory cgroup case: this host gives the worker no memory \
             cgroup, so both workers enforce the limit by polling"
        );
    }
    for kind in ["default", "polling"] {
        // Holds ~200 MiB for 30 s with a 64 MiB limit: only the limit ends it early.
        let id = c.submit(json!({
            "command": ["x=$(head -c 209715200 /dev/zero | tr '\\0' a); sleep 30; echo ${#x}"],
            "shell": true,
            "resources": {"cpu_milli": 1000, "memory_bytes": 64u64 << 20},
            "constraints": [{"key": "kind", "op": "eq", "values": [kind]}],
        }));
        let started = Instant::now();
        let t = c.wait_final(id, Duration::from_secs(60));
        assert_eq!(t.state, TaskState::Failed, "{kind}: {t:#?}");
        assert_eq!(t.outcome, Some(Outcome::OutOfMemory), "{kind}: {t:#?}");
        assert!(
            started.elapsed() < Duration::from_secs(25),
            "{kind}: ended by the limit, not by its end: {:?}",
            started.elapsed()
        );
    }
}

#[test]
fn concurrent_submissions_get_distinct_consecutive_ids() {
    let c = Cluster::start("concurrent");
    let ids = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for t in 0..8 {
            let c = &c;
            let ids = &ids;
            s.spawn(move || {
                for i in 0..25 {
                    let id = c.submit(json!({"command": ["echo", format!("{t}-{i}")]}));
                    ids.lock().unwrap().push(id);
                }
            });
        }
    });
    let mut ids = ids.into_inner().unwrap();
    ids.sort();
    assert_eq!(ids, (1..=200).collect::<Vec<u64>>());
    let cluster = c.get_ok("/v1/cluster");
    assert_eq!(cluster["tasks"]["ready"], 200, "{cluster}");
}

#[test]
fn the_read_commands_show_the_cluster_in_tables_and_json() {
    let mut c = Cluster::start("read-cmds");
    let w = c.add_worker("w", &["--cpus", "2", "--memory", "4G"]);
    let id = c.submit(json!({"command": ["echo", "hi"], "name": "greeter"}));
    c.wait_final(id, SLOW);
    let workers = c.cli_ok(&["workers"]).stdout;
    assert!(
        workers.contains(&w) && workers.contains("active"),
        "{workers}"
    );
    let wj: serde_json::Value =
        serde_json::from_str(&c.cli_ok(&["--json", "workers"]).stdout).unwrap();
    assert_eq!(wj[0]["name"], w.as_str());
    assert_eq!(wj[0]["capacity"]["cpu_milli"], 2000);
    assert_eq!(wj[0]["capacity"]["memory_bytes"], 4u64 << 30);
    let cluster = c.cli_ok(&["cluster"]).stdout;
    assert!(cluster.contains("1 active"), "{cluster}");
    let cj: serde_json::Value =
        serde_json::from_str(&c.cli_ok(&["--json", "cluster"]).stdout).unwrap();
    assert_eq!(cj["tasks"]["succeeded"], 1, "{cj}");
    assert_eq!(cj["leader"], cj["node_id"], "{cj}");
    let list = c.cli_ok(&["list"]).stdout;
    assert!(
        list.contains("greeter") && list.contains("succeeded"),
        "{list}"
    );
    let job = c.cli_ok(&["job", "1"]).stdout;
    assert!(job.contains("succeeded"), "{job}");
    let filtered = c.cli_ok(&["--json", "list", "--state", "failed"]).stdout;
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&filtered).unwrap(),
        json!([])
    );
}

#[test]
fn only_the_listed_exit_codes_are_retried() {
    let mut c = Cluster::start("retry-codes");
    c.add_worker("w", &["--cpus", "2", "--memory", "4G"]);
    let retry = |codes: &[i32]| json!({"max_attempts": 3, "backoff": {"initial_ms": 100, "multiplier_percent": 100, "max_ms": 100}, "retry_on_exit_codes": codes});
    let not_listed = c.submit(json!({"command": ["sh", "-c", "exit 4"], "retry": retry(&[3])}));
    let listed = c.submit(json!({"command": ["sh", "-c", "exit 3"], "retry": retry(&[3])}));
    let t = c.wait_final(not_listed, SLOW);
    assert_eq!(t.state, TaskState::Failed);
    assert_eq!(t.attempts.len(), 1, "exit 4 is not worth a retry: {t:#?}");
    let t = c.wait_final(listed, SLOW);
    assert_eq!(t.state, TaskState::Failed);
    assert_eq!(t.attempts.len(), 3, "exit 3 is retried: {t:#?}");
}

#[test]
fn run_of_a_job_prints_the_output_of_every_final_task() {
    let mut c = Cluster::start("run-sinks");
    c.add_worker("w", &["--cpus", "2", "--memory", "4G"]);
    let job_file = c.file("job.yaml");
    std::fs::write(
        &job_file,
        "tasks:\n  - key: src\n    command: [echo, source]\n  - key: left\n    after: [src]\n    shell: true\n    command: 'echo left-$(cat)'\n  - key: right\n    after: [src]\n    shell: true\n    command: 'echo right-$(cat)'\n",
    )
    .unwrap();
    let out = c.cli(&["run", "-f", job_file.to_str().unwrap()]);
    assert_eq!(out.code(), Some(0), "{out}");
    assert_eq!(out.stdout, "left-source\nright-source\n", "{out}");
}

#[test]
fn logs_follow_of_a_finished_task_prints_everything_and_ends() {
    let mut c = Cluster::start("follow-done");
    c.add_worker("w", &["--cpus", "2", "--memory", "4G"]);
    let id = c.submit(json!({"command": ["printf", "a\\nb\\n"]}));
    c.wait_final(id, SLOW);
    let out = c.cli_ok(&["logs", "--follow", &id.to_string()]);
    assert_eq!(out.stdout, "a\nb\n");
    // A task cancelled before it ever ran: following it ends at once, empty.
    let never = c.submit(json!({"command": ["true"], "resources": {"cpu_milli": 64000}}));
    c.cli_ok(&["cancel", &never.to_string()]);
    let out = c.cli_ok(&["logs", "--follow", &never.to_string()]);
    assert_eq!(out.stdout, "");
}

#[test]
fn a_task_killed_by_a_signal_reports_the_signal() {
    let mut c = Cluster::start("signaled");
    c.add_worker("w", &["--cpus", "2", "--memory", "4G"]);
    let out = c.cli(&["run", "--", "sh", "-c", "kill -9 $$"]);
    assert_ne!(out.code(), Some(0), "{out}");
    let id = c.get_ok("/v1/tasks")["tasks"][0]["id"].as_u64().unwrap();
    let t = c.task(id);
    assert_eq!(t.state, TaskState::Failed, "{t:#?}");
    assert_eq!(t.signal, Some(9), "{t:#?}");
    assert_eq!(t.outcome, Some(Outcome::Signaled { signal: 9 }));
    let text = c.cli_ok(&["status", &id.to_string()]).stdout;
    assert!(text.contains("signal 9"), "{text}");
}

#[test]
fn a_worker_sharing_the_servers_data_dir_finds_it_without_flags() {
    let c = Cluster::start("same-dir-worker");
    // `drover --data-dir D worker` with neither --server nor --token.
    let name = unique("local");
    let log = c.file("local-worker.log");
    let mut cmd = drover_command();
    cmd.arg("--data-dir")
        .arg(&c.data)
        .args([
            "worker",
            "--name",
            &name,
            "--cpus",
            "1",
            "--memory",
            "1G",
            "--kill-grace",
            "1s",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap());
    let mut child = cmd.spawn().unwrap();
    let joined = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        c.wait_worker_connected(&name);
        let id = c.submit(json!({"command": ["echo", "found"]}));
        c.wait_final(id, SLOW)
    }));
    let _ = child.kill();
    let _ = child.wait();
    clean_agent_cgroups(&agent_id(&name, &c.data), true);
    let t = joined.unwrap_or_else(|_| panic!("the worker did not join by itself:\n{}", read(&log)));
    assert_eq!(t.result.as_deref(), Some("found\n"));
}
