//! A panic while applying an entry stops that server's state machine: it says so in its
//! health and its log and refuses to serve the (possibly half-applied) state, instead of
//! carrying on. Uses the debug-build hook `DROVER_TEST_PANIC_ON_JOB` (a submission of a
//! job with that name panics in apply).

mod common;

use common::*;
use serde_json::json;

#[test]
fn a_panic_in_apply_stops_the_state_machine_and_the_server_says_so() {
    let mut c = Cluster::start_prepared("apply-panic", &[], |c| {
        c.server_env
            .push(("DROVER_TEST_PANIC_ON_JOB".into(), "boom".into()));
    });
    let before = c.submit(json!({"name": "fine", "command": ["true"]}));

    let r = c.post(
        "/v1/jobs",
        &json!({"name": "boom", "tasks": [{"command": ["true"]}]}),
    );
    assert_eq!(r.status, 503, "{}", r.text());
    let e = r.error();
    assert_eq!(e["code"], "state_failed", "{e}");
    assert!(e["message"].as_str().unwrap().contains("panicked"), "{e}");

    // Health tells, with a non-2xx code.
    let h = http(&c.addr, "GET", "/v1/health", None, None);
    assert_eq!(h.status, 503, "{}", h.text());
    let h = h.json();
    assert_eq!(h["status"], "state_failed", "{h}");
    assert!(h["reason"].as_str().unwrap().contains("panicked"), "{h}");

    // Nothing is served from the state any more: reads and writes get 503 naming why.
    for r in [
        c.get(&format!("/v1/tasks/{before}")),
        c.get("/v1/cluster"),
        c.post("/v1/tasks", &json!({"command": ["true"]})),
    ] {
        assert_eq!(r.status, 503, "{}", r.text());
        assert_eq!(r.error()["code"], "state_failed");
    }
    let log = read(&c.root.join("server.log"));
    assert!(
        log.contains("panicked") && log.contains("stopped serving"),
        "the log does not say what happened:\n{log}"
    );

    // Restarted without the hook (the bug "fixed"), the server rebuilds its state from
    // the log: the earlier task is there, and the entry that panicked is applied.
    c.kill_server();
    c.server_env.clear();
    c.restart_server();
    assert_eq!(c.get(&format!("/v1/tasks/{before}")).status, 200);
    let h = http(&c.addr, "GET", "/v1/health", None, None);
    assert_eq!(h.status, 200, "{}", h.text());
    let list = c.get_ok("/v1/tasks");
    assert_eq!(list["tasks"].as_array().map(Vec::len), Some(2), "{list}");
}
