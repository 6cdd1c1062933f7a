//! The multifactor queue policy end to end: set with `drover policy
//! --priority-weights`, tasks from a job file with numeric labels, the start order on
//! a one-slot worker, the effective priority in `drover status` and in the API, and
//! refusals of bad weights by the CLI and the API.

mod common;

use common::*;
use drover_types::TaskState;
use serde_json::{Value, json};

#[test]
fn multifactor_weights_order_tasks_and_status_shows_the_effective_priority() {
    let mut c = Cluster::start("multifactor");
    c.add_worker("w", &["--cpus", "1", "--memory", "4G"]);

    // Bad weights: the CLI names the term and exits non-zero; the API names the field.
    let out = c.cli(&["policy", "--priority-weights", "age=1,agee=2"]);
    assert_ne!(out.code(), Some(0), "{out}");
    assert!(
        out.stderr.contains("\"agee=2\": unknown factor \"agee\""),
        "{out}"
    );
    let out = c.cli(&["policy", "--priority-weights", "priority=lots"]);
    assert_ne!(out.code(), Some(0), "{out}");
    assert!(out.stderr.contains("\"priority=lots\""), "{out}");
    let r = c.put(
        "/v1/policy",
        &json!({"queue": {"kind": "multifactor", "factors": {"agee": 1}}}),
    );
    assert_eq!(r.status, 400, "{}", r.text());
    assert_eq!(r.error()["field"], "queue.factors.agee", "{}", r.text());
    let r = c.put(
        "/v1/policy",
        &json!({"queue": {"kind": "multifactor", "factors": {"age": 1u64 << 40}}}),
    );
    assert_eq!(r.status, 400, "{}", r.text());
    assert_eq!(r.error()["field"], "queue.factors.age", "{}", r.text());
    assert_eq!(c.get_ok("/v1/policy")["queue"]["kind"], "priority");

    // Without prefetch, so that the queued tasks stay in the server's queue (a task
    // prefetched to a worker is no longer ordered by the queue policy).
    let out = c.cli_ok(&[
        "policy",
        "--priority-weights",
        "age=1,priority=1000,label:business_value=10",
        "--prefetch",
        "0",
    ]);
    assert!(
        out.stdout
            .contains("queue:      multifactor (priority=1000,age=1,label:business_value=10)"),
        "{out}"
    );
    let policy = c.get_ok("/v1/policy");
    assert_eq!(policy["queue"]["kind"], "multifactor", "{policy}");
    assert_eq!(policy["queue"]["factors"]["priority"], 1000, "{policy}");
    assert_eq!(
        policy["queue"]["factors"]["labels"]["business_value"], 10,
        "{policy}"
    );

    // A blocker holds the one slot; then one job file with three tasks whose order by
    // priority alone (low, mid, valuable) differs from their order by the weights:
    // valuable 1000×0 + 10×150 = 1500, mid 1000×1 + 10×20 = 1200, low 1000×1 = 1000
    // (the same age for all: one job).
    let gate = c.file("gate");
    let order = c.file("order");
    let b = c.submit(json!({
        "name": "blocker",
        "command": [format!("while [ ! -f {} ]; do sleep 0.05; done", sh_quote(&gate))],
        "shell": true,
    }));
    c.wait_state(b, "running", SLOW);
    let job = c.file("job.yaml");
    let append = |name: &str| format!("echo {name} >> {}", sh_quote(&order));
    std::fs::write(
        &job,
        format!(
            "tasks:\n\
             - {{key: low, priority: 1, shell: true, command: {low:?}}}\n\
             - {{key: mid, priority: 1, labels: {{business_value: 20}}, shell: true, command: {mid:?}}}\n\
             - {{key: valuable, labels: {{business_value: \"150\"}}, shell: true, command: {valuable:?}}}\n",
            low = append("low"),
            mid = append("mid"),
            valuable = append("valuable"),
        ),
    )
    .unwrap();
    let out = c.cli_ok(&["--json", "submit", "-f", job.to_str().unwrap()]);
    let resp: Value = serde_json::from_str(&out.stdout).expect("JSON");
    let first = resp["first"].as_u64().unwrap();
    let (low, mid, valuable) = (first, first + 1, first + 2);

    // Queued: `drover status` shows the sum and its terms; the API has them as a field.
    let status = c.cli_ok(&["status", &valuable.to_string()]).stdout;
    let line = status
        .lines()
        .find(|l| l.contains("effective priority"))
        .unwrap_or_else(|| panic!("no effective priority in:\n{status}"));
    assert!(
        line.starts_with("  effective priority 1,5")
            && line.contains(" = 1000×priority(0) + 1×age(")
            && line.ends_with("s) + 10×label:business_value(150)"),
        "{status}"
    );
    let info = c.get_ok(&format!("/v1/tasks/{mid}"));
    let e = &info["effective_priority"];
    assert!(e["value"].as_i64().unwrap() >= 1200, "{info}");
    let terms: Vec<(String, i64, i64)> = e["terms"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["factor"].as_str().unwrap().to_string(),
                t["weight"].as_i64().unwrap(),
                t["value_milli"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(terms[0], ("priority".into(), 1000, 1000), "{info}");
    assert_eq!(terms[1].0, "age", "{info}");
    assert_eq!(
        terms[2],
        ("label:business_value".into(), 10, 20_000),
        "{info}"
    );
    // The API's description has the field and the policy kind.
    let doc = c.get_ok("/v1/openapi.json");
    let schemas = &doc["components"]["schemas"];
    assert!(
        schemas["TaskInfo"]["properties"]["effective_priority"].is_object(),
        "{}",
        schemas["TaskInfo"]
    );
    assert!(schemas["EffectivePriority"]["properties"]["terms"].is_object());
    assert!(doc.to_string().contains("\"multifactor\""));
    // A running task has none.
    assert!(c.get_ok(&format!("/v1/tasks/{b}"))["effective_priority"].is_null());

    touch(&gate);
    c.wait_final(b, SLOW);
    for id in [low, mid, valuable] {
        assert_eq!(c.wait_final(id, SLOW).state, TaskState::Succeeded);
    }
    assert_eq!(read(&order), "valuable\nmid\nlow\n");

    // Back to plain priority: the weights are gone, nothing else changed.
    let out = c.cli_ok(&["policy", "priority"]);
    assert!(out.stdout.contains("queue:      priority"), "{out}");
}
