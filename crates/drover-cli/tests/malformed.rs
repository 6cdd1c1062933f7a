//! Malformed input, row by row: every request body the API must refuse gets a 4xx with
//! the JSON error naming the field, never a 5xx, and creates nothing; every malformed
//! job file makes `drover submit -f` fail naming the field, and creates nothing.

mod common;

use common::*;

/// Which field the error must name.
#[derive(Clone, Copy, Debug)]
enum Field {
    /// The whole document is at fault: no `field`.
    Whole,
    Is(&'static str),
    /// Nesting past the server's depth limit: refused before parsing, as `too_deep`,
    /// with no field (no one field is at fault).
    TooDeep,
}

use Field::{Is, TooDeep, Whole};

/// Words that would betray Rust types in a message meant for people.
const RUST_WORDS: &[&str] = &[
    "struct ",
    "enum ",
    "untagged",
    "TaskSpec",
    "JobSpec",
    "PolicyConfig",
    "Resources",
    "DepRef",
    "expected u",
    "expected i",
    "usize",
    "sequence",
];

fn raw(s: &str) -> Vec<u8> {
    s.as_bytes().to_vec()
}

fn rows() -> Vec<(&'static str, &'static str, String, Vec<u8>, Field)> {
    let t = "/v1/tasks".to_string();
    let j = "/v1/jobs".to_string();
    let p = "/v1/policy".to_string();
    let long_arg = "x".repeat(70_000);
    let long_key = "k".repeat(300);
    let deep = format!("{{\"command\":{}{}}}", "[".repeat(500), "]".repeat(500));
    vec![
        // The document as a whole.
        ("empty body", "POST", t.clone(), raw(""), Whole),
        ("only whitespace", "POST", t.clone(), raw(" \n\t "), Whole),
        ("not JSON", "POST", t.clone(), raw("command = true"), Whole),
        (
            "trailing data",
            "POST",
            t.clone(),
            raw(r#"{"command":["true"]} x"#),
            Whole,
        ),
        (
            "array for the task",
            "POST",
            t.clone(),
            raw(r#"["k","",["true"]]"#),
            Whole,
        ),
        (
            "string for the task",
            "POST",
            t.clone(),
            raw(r#""true""#),
            Whole,
        ),
        ("number for the task", "POST", t.clone(), raw("42"), Whole),
        ("null for the task", "POST", t.clone(), raw("null"), Whole),
        (
            "bad UTF-8 outside strings",
            "POST",
            t.clone(),
            b"{\"command\":[\"true\"]\xff}".to_vec(),
            Whole,
        ),
        // Syntax errors inside a field name it.
        (
            "truncated",
            "POST",
            t.clone(),
            raw(r#"{"command":"#),
            Is("command"),
        ),
        (
            "NaN",
            "POST",
            t.clone(),
            raw(r#"{"command":["true"],"priority":NaN}"#),
            Is("priority"),
        ),
        (
            "Infinity",
            "POST",
            t.clone(),
            raw(r#"{"command":["true"],"max_runtime_ms":Infinity}"#),
            Is("max_runtime_ms"),
        ),
        (
            "-Infinity",
            "POST",
            t.clone(),
            raw(r#"{"command":["true"],"resources":{"cpu_milli":-Infinity}}"#),
            Is("resources.cpu_milli"),
        ),
        (
            "a number too big for a float",
            "POST",
            t.clone(),
            raw(r#"{"command":["true"],"priority":1e999}"#),
            Is("priority"),
        ),
        (
            "bad UTF-8 in a string",
            "POST",
            t.clone(),
            b"{\"command\":[\"\xff\xfe\"]}".to_vec(),
            Is("command[0]"),
        ),
        (
            "lone surrogate",
            "POST",
            t.clone(),
            raw(r#"{"command":["\ud800"]}"#),
            Is("command[0]"),
        ),
        (
            "nesting past the limit",
            "POST",
            t.clone(),
            raw(&deep),
            TooDeep,
        ),
        // Wrong types.
        (
            "string command",
            "POST",
            t.clone(),
            raw(r#"{"command":"true"}"#),
            Is("command"),
        ),
        (
            "number in command",
            "POST",
            t.clone(),
            raw(r#"{"command":["echo",1]}"#),
            Is("command[1]"),
        ),
        (
            "boolean in command",
            "POST",
            t.clone(),
            raw(r#"{"command":[true]}"#),
            Is("command[0]"),
        ),
        (
            "null in command",
            "POST",
            t.clone(),
            raw(r#"{"command":[null]}"#),
            Is("command[0]"),
        ),
        (
            "object in command",
            "POST",
            t.clone(),
            raw(r#"{"command":[{}]}"#),
            Is("command[0]"),
        ),
        (
            "number for name",
            "POST",
            t.clone(),
            raw(r#"{"command":["true"],"name":7}"#),
            Is("name"),
        ),
        (
            "string for shell",
            "POST",
            t.clone(),
            raw(r#"{"command":["true"],"shell":"yes"}"#),
            Is("shell"),
        ),
        (
            "array for env",
            "POST",
            t.clone(),
            raw(r#"{"command":["true"],"env":["A=1"]}"#),
            Is("env"),
        ),
        (
            "number env value",
            "POST",
            t.clone(),
            raw(r#"{"command":["true"],"env":{"A":1}}"#),
            Is("env.A"),
        ),
        (
            "object env value",
            "POST",
            t.clone(),
            raw(r#"{"command":["true"],"env":{"A":{}}}"#),
            Is("env.A"),
        ),
        (
            "number label value",
            "POST",
            t.clone(),
            raw(r#"{"command":["true"],"labels":{"team":5}}"#),
            Is("labels.team"),
        ),
        (
            "string priority",
            "POST",
            t.clone(),
            raw(r#"{"command":["true"],"priority":"high"}"#),
            Is("priority"),
        ),
        (
            "fractional priority",
            "POST",
            t.clone(),
            raw(r#"{"command":["true"],"priority":1.5}"#),
            Is("priority"),
        ),
        (
            "string in exit codes",
            "POST",
            t.clone(),
            raw(r#"{"command":["true"],"retry":{"retry_on_exit_codes":["1"]}}"#),
            Is("retry.retry_on_exit_codes[0]"),
        ),
        (
            "boolean gpus",
            "POST",
            t.clone(),
            raw(r#"{"command":["true"],"resources":{"gpus":true}}"#),
            Is("resources.gpus"),
        ),
        (
            "string cpu",
            "POST",
            t.clone(),
            raw(r#"{"command":["true"],"resources":{"cpu_milli":"500m"}}"#),
            Is("resources.cpu_milli"),
        ),
        (
            "fractional cpu",
            "POST",
            t.clone(),
            raw(r#"{"command":["true"],"resources":{"cpu_milli":0.5}}"#),
            Is("resources.cpu_milli"),
        ),
        // Arrays for objects, objects for arrays, at every level.
        (
            "array for resources",
            "POST",
            t.clone(),
            raw(r#"{"command":["true"],"resources":[500,0]}"#),
            Is("resources"),
        ),
        (
            "array for retry",
            "POST",
            t.clone(),
            raw(r#"{"command":["true"],"retry":[3]}"#),
            Is("retry"),
        ),
        (
            "array for backoff",
            "POST",
            t.clone(),
            raw(r#"{"command":["true"],"retry":{"backoff":[1,2,3]}}"#),
            Is("retry.backoff"),
        ),
        (
            "array for an index range",
            "POST",
            t.clone(),
            raw(r#"{"command":["true"],"array":[0,9]}"#),
            Is("array"),
        ),
        (
            "string for an index range",
            "POST",
            t.clone(),
            raw(r#"{"command":["true"],"array":"0-9"}"#),
            Is("array"),
        ),
        (
            "array for a selector",
            "POST",
            t.clone(),
            raw(r#"{"command":["true"],"constraints":[["zone","eq",["a"]]]}"#),
            Is("constraints[0]"),
        ),
        (
            "object for constraints",
            "POST",
            t.clone(),
            raw(r#"{"command":["true"],"constraints":{"key":"zone","op":"exists"}}"#),
            Is("constraints"),
        ),
        (
            "array for custom resources",
            "POST",
            t.clone(),
            raw(r#"{"command":["true"],"resources":{"custom":[1]}}"#),
            Is("resources.custom"),
        ),
        (
            "string for after",
            "POST",
            t.clone(),
            raw(r#"{"command":["true"],"after":"a"}"#),
            Is("after"),
        ),
        (
            "object in after",
            "POST",
            t.clone(),
            raw(r#"{"command":["true"],"after":[{"id":1}]}"#),
            Is("after[0]"),
        ),
        (
            "boolean in after",
            "POST",
            t.clone(),
            raw(r#"{"command":["true"],"after":[true]}"#),
            Is("after[0]"),
        ),
        // Unknown fields at every level, and repeated ones.
        (
            "unknown top-level field",
            "POST",
            t.clone(),
            raw(r#"{"command":["true"],"bogus":1}"#),
            Is("bogus"),
        ),
        (
            "memory instead of memory_bytes",
            "POST",
            t.clone(),
            raw(r#"{"command":["true"],"resources":{"cpu_milli":500,"memory":"2G"}}"#),
            Is("resources.memory"),
        ),
        (
            "unknown retry field",
            "POST",
            t.clone(),
            raw(r#"{"command":["true"],"retry":{"attempts":3}}"#),
            Is("retry.attempts"),
        ),
        (
            "unknown backoff field",
            "POST",
            t.clone(),
            raw(r#"{"command":["true"],"retry":{"backoff":{"factor":2}}}"#),
            Is("retry.backoff.factor"),
        ),
        (
            "unknown selector field",
            "POST",
            t.clone(),
            raw(r#"{"command":["true"],"constraints":[{"key":"z","op":"eq","value":"a"}]}"#),
            Is("constraints[0].value"),
        ),
        (
            "unknown index range field",
            "POST",
            t.clone(),
            raw(r#"{"command":["true"],"array":{"start":0,"end":3,"step":1}}"#),
            Is("array.step"),
        ),
        (
            "repeated field",
            "POST",
            t.clone(),
            raw(r#"{"command":["true"],"command":["rm","-rf","/tmp/x"]}"#),
            Is("command"),
        ),
        (
            "repeated env key",
            "POST",
            t.clone(),
            raw(r#"{"command":["true"],"env":{"A":"1","A":"2"}}"#),
            Is("env.A"),
        ),
        (
            "missing selector key",
            "POST",
            t.clone(),
            raw(r#"{"command":["true"],"affinity":[{"op":"exists"}]}"#),
            Is("affinity[0].key"),
        ),
        (
            "missing range end",
            "POST",
            t.clone(),
            raw(r#"{"command":["true"],"array":{"start":0}}"#),
            Is("array.end"),
        ),
        (
            "unknown selector op",
            "POST",
            t.clone(),
            raw(r#"{"command":["true"],"constraints":[{"key":"z","op":"like"}]}"#),
            Is("constraints[0].op"),
        ),
        // Numbers out of range.
        (
            "cpu over u32",
            "POST",
            t.clone(),
            raw(r#"{"command":["true"],"resources":{"cpu_milli":5000000000}}"#),
            Is("resources.cpu_milli"),
        ),
        (
            "negative cpu",
            "POST",
            t.clone(),
            raw(r#"{"command":["true"],"resources":{"cpu_milli":-1}}"#),
            Is("resources.cpu_milli"),
        ),
        (
            "memory over u64",
            "POST",
            t.clone(),
            raw(r#"{"command":["true"],"resources":{"memory_bytes":99999999999999999999999}}"#),
            Is("resources.memory_bytes"),
        ),
        (
            "memory as a huge float",
            "POST",
            t.clone(),
            raw(r#"{"command":["true"],"resources":{"memory_bytes":1e30}}"#),
            Is("resources.memory_bytes"),
        ),
        (
            "memory at u64::MAX",
            "POST",
            t.clone(),
            raw(
                r#"{"command":["true"],"resources":{"cpu_milli":1,"memory_bytes":18446744073709551615}}"#,
            ),
            Is("resources.memory_bytes"),
        ),
        (
            "negative custom resource",
            "POST",
            t.clone(),
            raw(r#"{"command":["true"],"resources":{"custom":{"lic":-2}}}"#),
            Is("resources.custom.lic"),
        ),
        (
            "priority over i32",
            "POST",
            t.clone(),
            raw(r#"{"command":["true"],"priority":2147483648}"#),
            Is("priority"),
        ),
        (
            "negative time limit",
            "POST",
            t.clone(),
            raw(r#"{"command":["true"],"max_runtime_ms":-5}"#),
            Is("max_runtime_ms"),
        ),
        (
            "time limit at u64::MAX",
            "POST",
            t.clone(),
            raw(r#"{"command":["true"],"max_runtime_ms":18446744073709551615}"#),
            Is("max_runtime_ms"),
        ),
        (
            "negative dependency id",
            "POST",
            t.clone(),
            raw(r#"{"command":["true"],"after":[-1]}"#),
            Is("after[0]"),
        ),
        (
            "fractional dependency id",
            "POST",
            t.clone(),
            raw(r#"{"command":["true"],"after":[1.5]}"#),
            Is("after[0]"),
        ),
        (
            "range end over u32",
            "POST",
            t.clone(),
            raw(r#"{"command":["true"],"array":{"start":0,"end":4294967296}}"#),
            Is("array.end"),
        ),
        (
            "a four-billion-task array",
            "POST",
            t.clone(),
            raw(r#"{"command":["true"],"array":{"start":0,"end":4294967295}}"#),
            Is("array"),
        ),
        (
            "zero attempts",
            "POST",
            t.clone(),
            raw(r#"{"command":["true"],"retry":{"max_attempts":0}}"#),
            Is("retry.max_attempts"),
        ),
        (
            "attempts over u32",
            "POST",
            t.clone(),
            raw(r#"{"command":["true"],"retry":{"max_attempts":4294967296}}"#),
            Is("retry.max_attempts"),
        ),
        (
            "backoff shrinking",
            "POST",
            t.clone(),
            raw(r#"{"command":["true"],"retry":{"backoff":{"multiplier_percent":50}}}"#),
            Is("retry.backoff.multiplier_percent"),
        ),
        // Huge values.
        (
            "a 70 kB argument",
            "POST",
            t.clone(),
            raw(&format!(r#"{{"command":["echo","{long_arg}"]}}"#)),
            Is("command[1]"),
        ),
        (
            "a 300-character key",
            "POST",
            t.clone(),
            raw(&format!(r#"{{"command":["true"],"key":"{long_key}"}}"#)),
            Is("key"),
        ),
        (
            "a dependency that does not exist",
            "POST",
            t.clone(),
            raw(r#"{"command":["true"],"after":[999999]}"#),
            Is("after[0]"),
        ),
        (
            "self-dependency of a task",
            "POST",
            t.clone(),
            raw(r#"{"command":["true"],"key":"me","after":["me"]}"#),
            Is("after"),
        ),
        // Jobs.
        (
            "array for the job",
            "POST",
            j.clone(),
            raw(r#"[{"command":["true"]}]"#),
            Whole,
        ),
        (
            "object for tasks",
            "POST",
            j.clone(),
            raw(r#"{"tasks":{"command":["true"]}}"#),
            Is("tasks"),
        ),
        (
            "array for a job's task",
            "POST",
            j.clone(),
            raw(r#"{"tasks":[{"command":["true"]},["true"]]}"#),
            Is("tasks[1]"),
        ),
        (
            "no tasks",
            "POST",
            j.clone(),
            raw(r#"{"tasks":[]}"#),
            Is("tasks"),
        ),
        (
            "unknown job field",
            "POST",
            j.clone(),
            raw(r#"{"tasks":[{"command":["true"]}],"priority":3}"#),
            Is("priority"),
        ),
        (
            "unknown field deep in a job",
            "POST",
            j.clone(),
            raw(
                r#"{"tasks":[{"command":["true"]},{"command":["true"]},{"command":["true"],"resources":{"memory":"2G"}}]}"#,
            ),
            Is("tasks[2].resources.memory"),
        ),
        (
            "wrong type deep in a job",
            "POST",
            j.clone(),
            raw(
                r#"{"tasks":[{"command":["true"]},{"command":["true"]},{"command":["true"],"resources":{"cpu_milli":"x"}}]}"#,
            ),
            Is("tasks[2].resources.cpu_milli"),
        ),
        (
            "a dependency cycle",
            "POST",
            j.clone(),
            raw(
                r#"{"tasks":[{"key":"a","command":["true"],"after":["c"]},{"key":"b","command":["true"],"after":["a"]},{"key":"c","command":["true"],"after":["b"]}]}"#,
            ),
            Is("tasks[0].after"),
        ),
        (
            "self-dependency in a job",
            "POST",
            j.clone(),
            raw(r#"{"tasks":[{"key":"me","command":["true"],"after":["me"]}]}"#),
            Is("tasks[0].after"),
        ),
        (
            "a key twice in a job",
            "POST",
            j.clone(),
            raw(r#"{"tasks":[{"key":"k","command":["true"]},{"key":"k","command":["true"]}]}"#),
            Is("tasks[1].key"),
        ),
        // The policy.
        ("empty policy body", "PUT", p.clone(), raw(""), Whole),
        (
            "array for the policy",
            "PUT",
            p.clone(),
            raw(r#"["fcfs"]"#),
            Whole,
        ),
        (
            "string for the queue",
            "PUT",
            p.clone(),
            raw(r#"{"queue":"fcfs"}"#),
            Is("queue"),
        ),
        (
            "queue without a kind",
            "PUT",
            p.clone(),
            raw(r#"{"queue":{}}"#),
            Is("queue.kind"),
        ),
        (
            "unknown queue kind",
            "PUT",
            p.clone(),
            raw(r#"{"queue":{"kind":"lottery"}}"#),
            Is("queue.kind"),
        ),
        (
            "a field the queue kind does not take",
            "PUT",
            p.clone(),
            raw(r#"{"queue":{"kind":"fcfs","aging_ms":5}}"#),
            Is("queue.aging_ms"),
        ),
        (
            "string weight",
            "PUT",
            p.clone(),
            raw(r#"{"queue":{"kind":"fair_share","weights":{"a":"2"}}}"#),
            Is("queue.weights.a"),
        ),
        (
            "unknown placement",
            "PUT",
            p.clone(),
            raw(r#"{"placement":"random"}"#),
            Is("placement"),
        ),
        (
            "string preemption",
            "PUT",
            p.clone(),
            raw(r#"{"preemption":"on"}"#),
            Is("preemption"),
        ),
        (
            "negative prefetch",
            "PUT",
            p.clone(),
            raw(r#"{"prefetch_per_worker":-1}"#),
            Is("prefetch_per_worker"),
        ),
        (
            "unknown policy field",
            "PUT",
            p.clone(),
            raw(r#"{"queue_kind":"fcfs"}"#),
            Is("queue_kind"),
        ),
        // Routes that take no body, and path and query parameters.
        (
            "a body for a cancel",
            "POST",
            "/v1/tasks/1/cancel".into(),
            raw(r#"{"force":true}"#),
            Is("force"),
        ),
        (
            "an array for a job cancel",
            "POST",
            "/v1/jobs/1/cancel".into(),
            raw("[1]"),
            Whole,
        ),
        (
            "a body for a drain",
            "POST",
            "/v1/workers/1/drain".into(),
            raw(r#"{"now":true}"#),
            Is("now"),
        ),
        // A worker path takes `w3`, `3` or a name, so `abc` or a huge number is not
        // malformed: it names no worker (404, in tests/cli.rs).
        (
            "not a job id",
            "GET",
            "/v1/jobs/abc".into(),
            Vec::new(),
            Is("job"),
        ),
        (
            "a job id over u64",
            "GET",
            "/v1/jobs/99999999999999999999999".into(),
            Vec::new(),
            Is("job"),
        ),
        (
            "not a limit",
            "GET",
            "/v1/tasks?limit=abc".into(),
            Vec::new(),
            Is("limit"),
        ),
        (
            "a negative job filter",
            "GET",
            "/v1/tasks?job=-1".into(),
            Vec::new(),
            Is("job"),
        ),
        (
            "not an offset",
            "GET",
            "/v1/tasks/1/output?offset=x".into(),
            Vec::new(),
            Is("offset"),
        ),
        (
            "not a boolean follow",
            "GET",
            "/v1/tasks/1/output?follow=maybe".into(),
            Vec::new(),
            Is("follow"),
        ),
    ]
}

#[test]
fn malformed_requests_get_a_4xx_naming_the_field_and_change_nothing() {
    let c = Cluster::start("malformed-table");
    let policy_before = c.get_ok("/v1/policy");
    let rows = rows();
    assert!(rows.len() >= 50, "{} rows", rows.len());
    let mut failures = Vec::new();
    for (what, method, path, body, field) in &rows {
        let b = (!body.is_empty() || *method != "GET").then_some(&body[..]);
        let r = http(&c.addr, method, path, Some(&c.token), b);
        let verdict = check(&r, *field);
        if std::env::var_os("MALFORMED_SHOW").is_some() {
            eprintln!("{what}: {} {}", r.status, r.text());
        }
        if let Err(why) = verdict {
            failures.push(format!(
                "{what}: {method} {path}: {why}\n    got HTTP {} {}",
                r.status,
                r.text()
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} rows failed:\n{}",
        failures.len(),
        rows.len(),
        failures.join("\n")
    );
    // Nothing was created or changed by any of it.
    let list = c.get_ok("/v1/tasks");
    assert_eq!(list["tasks"].as_array().map(Vec::len), Some(0), "{list}");
    assert_eq!(c.get("/v1/jobs/1").status, 404, "no job was created");
    assert_eq!(
        c.get_ok("/v1/policy"),
        policy_before,
        "the policy is unchanged"
    );
    assert_eq!(http(&c.addr, "GET", "/v1/health", None, None).status, 200);
}

fn check(r: &Resp, field: Field) -> Result<(), String> {
    if !(400..500).contains(&r.status) {
        return Err("not a 4xx".into());
    }
    let ct = r.header("content-type").unwrap_or_default();
    if !ct.contains("application/json") {
        return Err(format!("content-type {ct:?}"));
    }
    let v: serde_json::Value =
        serde_json::from_slice(&r.body).map_err(|e| format!("the body is not JSON: {e}"))?;
    let e = &v["error"];
    let code = if matches!(field, TooDeep) {
        "too_deep"
    } else {
        "invalid_request"
    };
    if e["code"] != code {
        return Err(format!("code is not {code}"));
    }
    let message = e["message"].as_str().unwrap_or_default();
    if message.is_empty() {
        return Err("no message".into());
    }
    if let Some(w) = RUST_WORDS.iter().find(|w| message.contains(*w)) {
        return Err(format!("the message speaks Rust ({w:?})"));
    }
    let got = e["field"].as_str();
    let ok = match field {
        Whole | TooDeep => got.is_none(),
        Is(f) => got == Some(f),
    };
    if !ok {
        return Err(format!("expected field {field:?}"));
    }
    Ok(())
}

#[test]
fn malformed_job_files_fail_naming_the_field_and_submit_nothing() {
    let c = Cluster::start("malformed-jobfile");
    let cases: &[(&str, &str, &str)] = &[
        (
            "a boolean in a command",
            "tasks:\n  - command: [true]\n",
            "tasks[0].command[0]: expected a string, found a boolean",
        ),
        (
            "an unknown field",
            "tasks:\n  - command: [x]\n    cpu: 2\n",
            "tasks[0].cpu: unknown field; expected one of",
        ),
        (
            "an unknown field in the second task",
            "tasks:\n  - command: [x]\n  - command: [y]\n    memroy: 2G\n",
            "tasks[1].memroy: unknown field",
        ),
        (
            "a list for a task",
            "tasks:\n  - [echo, hi]\n",
            "tasks[0]: expected an object, found an array",
        ),
        (
            "a list for the job",
            "- command: [x]\n",
            "expected an object, found an array",
        ),
        (
            "a repeated field",
            "tasks:\n  - command: [x]\n    command: [y]\n",
            "tasks[0].command: given more than once",
        ),
        (
            "an object for a command",
            "tasks:\n  - command: {run: x}\n",
            "tasks[0].command: expected a list of strings, or a string",
        ),
        (
            "an unknown backoff field",
            "tasks:\n  - command: [x]\n    backoff: {initial: 1s, factor: 2}\n",
            "tasks[0].backoff.factor: unknown field",
        ),
        (
            "a bad memory size",
            "tasks:\n  - command: [x]\n    memory: lots\n",
            "tasks[0].memory",
        ),
        (
            "a negative retry count",
            "tasks:\n  - command: [x]\n    retries: -1\n",
            "tasks[0].retries: expected a whole number",
        ),
        (
            "a dependency cycle",
            "tasks:\n  - {key: a, command: [x], after: [b]}\n  - {key: b, command: [x], after: [a]}\n",
            "tasks[0].after",
        ),
        (
            "no tasks",
            "name: empty\n",
            "tasks: missing; this field is required",
        ),
        ("not YAML", "tasks: [\n", "not valid YAML"),
    ];
    for (what, yaml, words) in cases {
        let path = c.file("bad.yaml");
        std::fs::write(&path, yaml).unwrap();
        let out = c.cli(&["submit", "-f", path.to_str().unwrap()]);
        assert_ne!(out.code(), Some(0), "{what}: {out}");
        assert!(
            out.stderr.contains(words),
            "{what}: expected {words:?}: {out}"
        );
        assert!(
            !out.stderr.contains("untagged") && !out.stderr.contains("struct "),
            "{what}: {out}"
        );
    }
    let list = c.get_ok("/v1/tasks");
    assert_eq!(list["tasks"].as_array().map(Vec::len), Some(0), "{list}");
}
