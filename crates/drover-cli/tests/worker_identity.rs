//! Worker identities, black-box: real `drover server` and `drover worker` processes.
//! A worker joins with a join token, runs tasks (every start signed and verified),
//! restarts with the credential it was given and no token at all; a spent token is
//! refused; a revoked worker is cut off; in a group of three, the worker goes on
//! verifying starts after the leader is killed (the new leader signs with the same key).

mod common;

use common::servers::ServerSet;
use common::*;
use serde_json::json;
use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

/// `drover worker token create [args]` through the CLI: the secret alone on stdout.
fn create_token(out: CliOutput) -> String {
    let token = out.stdout.trim().to_string();
    assert!(token.starts_with("drover_join_"), "{out}");
    token
}

#[test]
fn a_worker_joins_with_a_token_and_restarts_with_its_own_credential() {
    let mut c = Cluster::start("wid-join");
    let token = create_token(c.cli_ok(&["worker", "token", "create", "--ttl", "10m"]));
    let name = c.add_worker_joining("w", &token, true);

    // Its credential is stored for it alone, and the cluster shows the identity.
    let credential = c.worker_dir("w").join("credential");
    // Written as the welcome arrives, which may be just after the server lists it.
    c.poll("the worker to store its credential", SLOW, || {
        credential.exists().then_some(())
    });
    let mode = std::fs::metadata(&credential)
        .expect("the credential is stored")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    assert!(read(&credential).starts_with("drover_worker_"));
    let listed = c.cli_ok(&["worker", "list"]).stdout;
    assert!(
        listed.contains(&name) && listed.contains("credential"),
        "{listed}"
    );
    let info = c.workers_info();
    assert!(
        info.iter()
            .any(|w| w.name == name && w.credential.is_some())
    );

    // Tasks run: each start was signed by the server and verified by the worker.
    let id = c.submit(json!({"command": ["echo", "signed"]}));
    let t = c.wait_final(id, SLOW);
    assert_eq!(t.state.to_string(), "succeeded", "{t:#?}\n{}", c.logs());
    assert_eq!(t.result.as_deref(), Some("signed\n"));

    // Restarted with neither the join token nor the cluster token: it is itself.
    c.kill_worker("w");
    c.restart_worker_tokenless("w");
    let id = c.submit(json!({"command": ["echo", "again"]}));
    assert_eq!(c.wait_final(id, SLOW).state.to_string(), "succeeded");
    assert!(
        !c.worker_log("w").contains("refused a start"),
        "{}",
        c.worker_log("w")
    );

    // The token was single-use: a second worker presenting it is refused and exits.
    c.add_worker_joining("x", &token, false);
    let started = Instant::now();
    let status = loop {
        if let Some(s) = c.worker_exit("x") {
            break s;
        }
        assert!(
            started.elapsed() < SLOW,
            "a worker with a spent join token kept running:\n{}",
            c.worker_log("x")
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(!status.success());
    assert!(c.worker_log("x").contains("401"), "{}", c.worker_log("x"));

    // Revoked: the worker is disconnected and cannot come back with its credential.
    c.cli_ok(&["worker", "revoke", &name]);
    let started = Instant::now();
    let status = loop {
        if let Some(s) = c.worker_exit("w") {
            break s;
        }
        assert!(
            started.elapsed() < SLOW,
            "a revoked worker kept running:\n{}",
            c.worker_log("w")
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(!status.success());
    assert!(
        c.workers_info()
            .iter()
            .all(|w| w.name != name || (!w.connected && w.credential.is_none()))
    );
}

#[test]
fn bad_join_token_requests_are_refused_with_the_field() {
    let c = Cluster::start("wid-bad");
    for (body, field) in [
        (json!({"ttl_ms": 0}), "ttl_ms"),
        (json!({"uses": 0}), "uses"),
        (json!({"uses": 1, "colour": "red"}), "colour"),
    ] {
        let r = c.post("/v1/worker-tokens", &body);
        assert_eq!(r.status, 400, "{body}: {}", r.text());
        assert_eq!(r.error()["field"], field, "{}", r.text());
    }
    let out = c.cli(&["worker", "token", "create", "--ttl", "soon"]);
    assert!(!out.status.success());
    assert!(out.stderr.contains("--ttl"), "{out}");
    let out = c.cli(&["worker", "revoke", "nobody"]);
    assert!(!out.status.success());
    assert!(out.stderr.contains("nobody"), "{out}");
}

/// Task `id` as the current leader of `set` sees it, once final.
fn wait_final_in(set: &ServerSet, id: u64) -> String {
    let started = Instant::now();
    loop {
        if let Some(&leader) = set.leaders().first()
            && let Some(t) = set.task_on(leader, id)
            && t.state.is_final()
        {
            return t.state.to_string();
        }
        assert!(
            started.elapsed() < SLOW,
            "task {id} did not end:\n{}",
            set.logs()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn after_the_leader_is_killed_the_worker_verifies_starts_from_the_new_one() {
    let mut set = ServerSet::new("wid-ha");
    for i in 0..3 {
        set.start(i);
    }
    let leader = set.wait_leader(SLOW);
    let token = create_token(set.cli_ok(&["worker", "token", "create"]));
    let name = set.add_worker("w", &["--join-token", &token]);

    let id = set.submit(&json!({"command": ["echo", "before"]}));
    assert_eq!(wait_final_in(&set, id), "succeeded");

    set.kill(leader);
    let new_leader = set.wait_leader(SLOW);
    assert_ne!(new_leader, leader);
    set.wait_worker_connected(&name, SLOW);
    let id = set.submit(&json!({"command": ["echo", "after"]}));
    assert_eq!(wait_final_in(&set, id), "succeeded", "{}", set.logs());
    let log = set.worker_log(&name);
    assert!(!log.contains("refused a start"), "{log}");
    assert!(
        log.contains("received and stored this worker's credential"),
        "{log}"
    );
}
