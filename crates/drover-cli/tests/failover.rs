//! Failover under kill -9: task output that survives the loss of the leader, and the
//! group's history checked after repeated kills (see `common/history.rs`). Real
//! `drover server` and `drover worker` processes on loopback (`common/servers.rs`).

mod common;

use common::servers::ServerSet;
use common::*;
use std::process::Stdio;
use std::time::{Duration, Instant};

/// `drover logs ARGS` through server `i` alone.
fn logs_through(set: &ServerSet, i: usize, args: &[&str]) -> CliOutput {
    let mut c = drover_command();
    c.arg("--data-dir")
        .arg(set.root.join("cli"))
        .args(["--server", &format!("http://{}", set.addrs[i])])
        .args(["--token", &set.token, "logs"])
        .args(args);
    run_with_timeout(c, Duration::from_secs(60), || set.logs())
}

/// The lines `prefix 1` to `prefix n`, as a task prints them.
fn numbered(prefix: &str, n: usize) -> String {
    (1..=n).map(|i| format!("{prefix} {i}\n")).collect()
}

fn wait_state(set: &ServerSet, server: usize, id: u64, state: &str) {
    poll(
        &format!("task {id} {state} on server {server}"),
        SLOW,
        || {
            let t = set.task_on(server, id)?;
            (t.state.as_str() == state).then_some(())
        },
        || set.logs(),
    );
}

#[test]
fn output_of_a_finished_task_is_read_from_every_server_after_the_leader_is_killed() {
    let mut set = ServerSet::new("fo-output");
    for i in 0..3 {
        set.start(i);
    }
    let leader = set.wait_leader(SLOW);
    set.add_worker("w", &["--cpus", "2"]);

    // Known bytes on both streams, enough for several frames.
    let script = "for i in $(seq 1 2000); do echo \"out $i\"; echo \"err $i\" >&2; done";
    let out = set.cli_ok(&["submit", "--shell", "--", script]);
    let id: u64 = out.stdout.trim().parse().unwrap();
    wait_state(&set, leader, id, "succeeded");

    set.kill(leader);
    let new_leader = set.wait_leader(SLOW);
    assert_ne!(new_leader, leader);

    let (stdout, stderr) = (numbered("out", 2000), numbered("err", 2000));
    for i in (0..3).filter(|i| *i != leader) {
        let out = logs_through(&set, i, &[&id.to_string()]);
        assert!(
            out.status.success(),
            "drover logs through server {i}: {out}"
        );
        assert!(
            out.stdout == stdout,
            "stdout through server {i} differs: {out}"
        );
        let err = logs_through(&set, i, &["--stderr", &id.to_string()]);
        assert!(err.status.success(), "{err}");
        assert!(err.stdout == stderr, "stderr through server {i} differs");
    }
    // The killed server, back, reads the same bytes.
    set.start(leader);
    poll(
        "the restarted server to know the task",
        SLOW,
        || set.task_on(leader, id).map(|_| ()),
        || set.logs(),
    );
    let out = logs_through(&set, leader, &[&id.to_string()]);
    assert!(
        out.stdout == stdout,
        "stdout through the restarted server differs: {out}"
    );
}

#[test]
fn following_output_across_a_leader_kill_gets_every_byte_once() {
    let mut set = ServerSet::new("fo-follow");
    for i in 0..3 {
        set.start(i);
    }
    let leader = set.wait_leader(SLOW);
    set.add_worker("w", &["--cpus", "2"]);

    // Prints for ~8 s: before, during and after the election.
    let script = "for i in $(seq 1 80); do echo \"tick $i\"; sleep 0.1; done";
    let out = set.cli_ok(&["submit", "--shell", "--", script]);
    let id: u64 = out.stdout.trim().parse().unwrap();
    wait_state(&set, leader, id, "running");

    // `drover logs -f` reading from the leader first (it moves on when that goes).
    let mut order: Vec<String> = vec![format!("http://{}", set.addrs[leader])];
    order.extend(
        (0..3)
            .filter(|i| *i != leader)
            .map(|i| format!("http://{}", set.addrs[i])),
    );
    let follow_out = set.root.join("follow.out");
    let follow_err = set.root.join("follow.err");
    let mut c = drover_command();
    c.arg("--data-dir")
        .arg(set.root.join("cli"))
        .args(["--server", &order.join(","), "--token", &set.token])
        .args(["logs", "-f", &id.to_string()])
        .stdout(Stdio::from(std::fs::File::create(&follow_out).unwrap()))
        .stderr(Stdio::from(std::fs::File::create(&follow_err).unwrap()));
    let mut follower = c.spawn().expect("drover logs -f");
    poll(
        "some output followed",
        SLOW,
        || (read(&follow_out).lines().count() >= 5).then_some(()),
        || set.logs(),
    );

    set.kill(leader);
    set.wait_leader(SLOW);

    let deadline = Instant::now() + Duration::from_secs(90);
    let status = loop {
        if let Some(s) = follower.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = follower.kill();
            panic!(
                "drover logs -f did not end; it printed:\n{}\n{}\n{}",
                read(&follow_out),
                read(&follow_err),
                set.logs()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let expected = numbered("tick", 80);
    let got = read(&follow_out);
    assert!(
        status.success() && got == expected,
        "drover logs -f across the kill ({status}): got\n{got}\nstderr:\n{}\n{}",
        read(&follow_err),
        set.logs()
    );
    eprintln!("follow stderr: {}", read(&follow_err));
    // And a plain read through each survivor.
    for i in (0..3).filter(|i| *i != leader) {
        wait_state(&set, i, id, "succeeded");
        let out = logs_through(&set, i, &[&id.to_string()]);
        assert!(out.stdout == expected, "through server {i}: {out}");
    }
}
