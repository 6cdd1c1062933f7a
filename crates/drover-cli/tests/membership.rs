//! Changing the group while it works: a fourth server joins, the leader is removed,
//! the joined server restarts; the refusals of bad changes; linearizable and stale
//! reads. Real `drover server` processes on loopback (see `common/servers.rs`).

mod common;

use common::servers::{ServerSet, StartMode};
use common::*;
use serde_json::Value;
use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

fn servers_json(set: &ServerSet, via: usize) -> Vec<Value> {
    let r = set.get(via, "/v1/servers");
    assert_eq!(r.status, 200, "{}", r.text());
    r.json().as_array().expect("a list").clone()
}

/// A client submitting continuously through the CLI, given the set's URLs: each task
/// appends its id to `marker`, so how often each really ran can be counted.
struct Submitter {
    stop: Arc<AtomicBool>,
    acked: Arc<Mutex<Vec<u64>>>,
    errors: Arc<Mutex<Vec<String>>>,
    thread: std::thread::JoinHandle<()>,
}

impl Submitter {
    fn start(set: &ServerSet, marker: &std::path::Path) -> Submitter {
        let script = format!("echo $DROVER_TASK_ID >> {}", sh_quote(marker));
        let stop = Arc::new(AtomicBool::new(false));
        let acked = Arc::new(Mutex::new(Vec::<u64>::new()));
        let errors = Arc::new(Mutex::new(Vec::<String>::new()));
        let (s, a, e) = (stop.clone(), acked.clone(), errors.clone());
        let (urls, token, dir) = (set.urls(), set.token.clone(), set.root.join("cli"));
        let ca = set.ca_args();
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::SeqCst) {
                let mut c = drover_command();
                c.arg("--data-dir").arg(&dir).args(&ca);
                // A retry covers the one known loss of an attempt that never started
                // (see the test); the marker proves none ran twice.
                c.args([
                    "--server",
                    &urls,
                    "--token",
                    &token,
                    "submit",
                    "--cpus",
                    "0.1",
                    "--retries",
                    "2",
                    "--shell",
                    "--",
                    &script,
                ]);
                let out = run_with_timeout(c, Duration::from_secs(60), String::new);
                if out.status.success() {
                    a.lock().unwrap().push(out.stdout.trim().parse().unwrap());
                } else {
                    e.lock().unwrap().push(out.stderr.clone());
                }
            }
        });
        Submitter {
            stop,
            acked,
            errors,
            thread,
        }
    }

    fn acked(&self) -> Vec<u64> {
        self.acked.lock().unwrap().clone()
    }

    fn finish(self) -> (Vec<u64>, Vec<String>) {
        self.stop.store(true, Ordering::SeqCst);
        self.thread.join().unwrap();
        let acked = self.acked.lock().unwrap().clone();
        let errors = self.errors.lock().unwrap().clone();
        (acked, errors)
    }
}

#[test]
fn a_server_joins_under_load_the_old_leader_is_removed_and_the_joiner_restarts() {
    let mut set = ServerSet::new("members-join");
    for i in 0..3 {
        set.start(i);
    }
    let old_leader = set.wait_leader(SLOW);
    set.add_worker("w", &["--cpus", "2"]);
    // Workers and the submitter know the three first servers only.
    let marker = set.root.join("ran");
    let submitter = Submitter::start(&set, &marker);
    poll(
        "the first submissions acknowledged",
        SLOW,
        || (!submitter.acked().is_empty()).then_some(()),
        || set.logs(),
    );

    // A fourth server joins through a follower, while tasks keep coming.
    let follower = (old_leader + 1) % 3;
    let joined_at = Instant::now();
    let joiner = set.start_joining(&set.addrs[follower].clone());
    let joiner_addr = set.addrs[joiner].clone();
    let list = poll(
        "the fourth server a voter",
        SLOW,
        || {
            let list = servers_json(&set, old_leader);
            list.iter()
                .any(|s| s["address"] == joiner_addr.as_str() && s["role"] == "follower")
                .then_some(list)
        },
        || set.logs(),
    );
    eprintln!(
        "the fourth server was a voter after {:?}",
        joined_at.elapsed()
    );
    assert_eq!(list.len(), 4, "{list:?}");
    let joiner_id = list
        .iter()
        .find(|s| s["address"] == joiner_addr.as_str())
        .unwrap()["id"]
        .as_u64()
        .unwrap();
    assert_eq!(joiner_id, 4, "the next free id: {list:?}");
    let health = set.health(joiner).expect("the joiner answers");
    assert_eq!(health["membership"], "member", "{health}");

    // Reads are linearizable: what was acknowledged is visible on the joiner at once.
    for id in submitter.acked() {
        assert!(
            set.task_on(joiner, id).is_some(),
            "acknowledged task {id} not seen by the joined server"
        );
    }

    // Task output is copied to the joined server too (the group's members of the
    // moment, not the peer list it was started with): the file is there before
    // anything asks the joiner for it.
    let printed = set.cli_ok(&["submit", "--", "echo", "copied-to-the-joiner"]);
    let printer: u64 = printed.stdout.trim().parse().unwrap();
    let copy = set
        .root
        .join(format!("s{joiner}/server/output/{printer}/1.stdout"));
    poll(
        "the output copied to the joined server",
        SLOW,
        || {
            std::fs::read_to_string(&copy)
                .ok()
                .filter(|t| t == "copied-to-the-joiner\n")
                .map(|_| ())
        },
        || set.logs(),
    );

    // Meanwhile a reader reads through the joined server: through the leader change,
    // every linearizable read is answered (it waits for the next leader).
    let reading = Arc::new(AtomicBool::new(true));
    let reader = {
        let (addr, token, reading) = (joiner_addr.clone(), set.token.clone(), reading.clone());
        std::thread::spawn(move || {
            let mut failures = Vec::new();
            let mut reads = 0;
            while reading.load(Ordering::SeqCst) {
                let r = http(&addr, "GET", "/v1/tasks?limit=1", Some(&token), None);
                reads += 1;
                if r.status != 200 {
                    failures.push(r.text());
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            (reads, failures)
        })
    };

    // The old leader is removed by an admin; a new leader comes from the others.
    let term_of_old_leader = raft_term(&set, old_leader);
    let removed_at = Instant::now();
    let out = set.cli_ok(&["servers", "remove", &set.addrs[old_leader].clone()]);
    assert!(out.stdout.contains("removed server"), "{out}");
    poll(
        "the old leader says it is removed",
        SLOW,
        || {
            let h = set.health(old_leader)?;
            (h["membership"] == "removed" && h["leader"] == Value::Bool(false)).then_some(())
        },
        || set.logs(),
    );
    let new_leader = set.wait_leader(SLOW);
    assert_ne!(new_leader, old_leader);
    eprintln!(
        "new leader ({}) after {:?}",
        set.addrs[new_leader],
        removed_at.elapsed()
    );
    let term_after_election = set.get(new_leader, "/v1/cluster").json()["term"].clone();
    std::thread::sleep(Duration::from_secs(2));
    let (acked, errors) = submitter.finish();
    reading.store(false, Ordering::SeqCst);
    let (reads, failed_reads) = reader.join().unwrap();
    eprintln!("{reads} linearizable reads on the joined server through the change");
    assert!(failed_reads.is_empty(), "reads failed: {failed_reads:#?}");
    eprintln!(
        "{} submissions acknowledged, {} refused: {errors:?}",
        acked.len(),
        errors.len()
    );
    // A refusal is allowed only as an explicit "unavailable" (the write was not
    // acknowledged, and the client knows it); never a silent loss.
    assert!(
        errors.iter().all(|e| e.contains("HTTP 503")),
        "the CLI saw other errors than 503s: {errors:#?}"
    );

    // The removed server refuses to act as one: no reads, no writes, no workers; its
    // health and `drover servers` say why.
    let r = set.get(old_leader, "/v1/tasks");
    assert_eq!(r.status, 503, "{}", r.text());
    assert_eq!(r.error()["code"], "not_a_member");
    let only_removed = run_with_timeout(
        {
            let mut c = drover_command();
            c.args([
                "--server",
                &set.url(old_leader),
                "--ca",
                &set.ca_file().to_string_lossy(),
                "--token",
                &set.token,
                "servers",
            ]);
            c
        },
        Duration::from_secs(30),
        || set.logs(),
    );
    assert!(!only_removed.status.success(), "{only_removed}");
    assert!(
        only_removed.stderr.contains("removed from the group"),
        "{only_removed}"
    );
    let list = servers_json(&set, new_leader);
    assert_eq!(list.len(), 3, "{list:?}");
    assert!(
        list.iter()
            .all(|s| s["address"] != set.addrs[old_leader].as_str()),
        "{list:?}"
    );

    // The worker moved on to the new leader; every acknowledged task is there, ran
    // once, and ended well; the joined server has them all too.
    let worker = set.workers_names()[0].clone();
    set.wait_worker_connected(&worker, SLOW);
    for id in &acked {
        let t = poll(
            &format!("task {id} to end"),
            SLOW,
            || {
                let t = set.task_on(new_leader, *id)?;
                t.state.is_final().then_some(t)
            },
            || set.logs(),
        );
        assert_eq!(t.state.as_str(), "succeeded", "{t:#?}");
        // Every attempt but the last never started: an attempt placed on the worker
        // while it was reconnecting to the new leader is given up at its rejoin
        // (worker_session reads the unstarted attempts before the join is applied).
        let started = t.attempts.iter().filter(|a| a.started_at.is_some()).count();
        assert_eq!(started, 1, "task {id} recorded {started} starts: {t:#?}");
        if t.attempts.len() > 1 {
            eprintln!(
                "task {id} needed {} attempts (the earlier ones never started)",
                t.attempts.len()
            );
        }
        assert!(
            set.task_on(joiner, *id).is_some(),
            "task {id} missing on the joined server"
        );
    }

    // Each acknowledged task ran exactly once.
    let ran = read(&marker);
    for id in &acked {
        let times = ran.lines().filter(|l| l.trim() == id.to_string()).count();
        assert_eq!(times, 1, "task {id} ran {times} times");
    }

    // The removed server started no election (a candidate raises its own term first,
    // and a removed server keeps answering /metrics). The group's term is not what is
    // checked: on a loaded machine the remaining two may hold a needless election of
    // their own, which says nothing about the removed one.
    assert_eq!(
        raft_term(&set, old_leader),
        term_of_old_leader,
        "the removed server campaigned after its removal"
    );
    let term = set.get(new_leader, "/v1/cluster").json()["term"].clone();
    if term != term_after_election {
        eprintln!(
            "the remaining servers held another election: term {term_after_election} -> {term}"
        );
    }

    // The joined server, restarted without --join, finds its group by itself.
    set.kill(joiner);
    let out = set.cli_ok(&["submit", "--", "true"]);
    let late: u64 = out.stdout.trim().parse().unwrap();
    set.set_mode(joiner, StartMode::Remembered);
    set.start(joiner);
    poll(
        "the restarted joiner sees the task submitted while it was down",
        SLOW,
        || set.task_on(joiner, late),
        || set.logs(),
    );
    let list = poll(
        "the restarted joiner a voter again",
        SLOW,
        || {
            let list = servers_json(&set, joiner);
            list.iter()
                .any(|s| s["id"] == joiner_id && s["role"] == "follower" && s["reachable"] == true)
                .then_some(list)
        },
        || set.logs(),
    );
    assert_eq!(list.len(), 3, "{list:?}");
}

/// A listener that accepts and never answers: an add aimed at it holds the
/// membership lock for the adoption's whole timeout.
fn silent_listener() -> (TcpListener, String) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap().to_string();
    (l, addr)
}

#[test]
fn bad_membership_changes_are_refused_with_clear_errors() {
    let mut set = ServerSet::new("members-refused");
    for i in 0..3 {
        set.start(i);
    }
    let leader = set.wait_leader(SLOW);
    let follower = (leader + 1) % 3;
    let other = (leader + 2) % 3;
    let t = set.token.clone();

    // Unknown servers: 404, by address or by id; a malformed address: 400 naming it.
    let r = http(
        &set.addrs[follower],
        "DELETE",
        "/v1/servers/127.0.0.1:1",
        Some(&t),
        None,
    );
    assert_eq!(r.status, 404, "{}", r.text());
    assert_eq!(r.error()["code"], "not_found");
    let r = http(
        &set.addrs[leader],
        "DELETE",
        "/v1/servers/99",
        Some(&t),
        None,
    );
    assert_eq!(r.status, 404, "{}", r.text());
    let r = http(
        &set.addrs[leader],
        "POST",
        "/v1/servers",
        Some(&t),
        Some(br#"{"address":"not an address"}"#),
    );
    assert_eq!(r.status, 400, "{}", r.text());
    assert_eq!(r.error()["field"], "address");

    // One change at a time: while an add waits on a server that does not answer, a
    // second change (through a follower, forwarded to the leader) gets a 409.
    let (_silent, silent_addr) = silent_listener();
    let adding = {
        let (addr, t) = (set.addrs[leader].clone(), t.clone());
        let body = format!(r#"{{"address":"{silent_addr}"}}"#);
        std::thread::spawn(move || {
            http(
                &addr,
                "POST",
                "/v1/servers",
                Some(&t),
                Some(body.as_bytes()),
            )
        })
    };
    std::thread::sleep(Duration::from_millis(500));
    let path = format!("/v1/servers/{}", set.addrs[other]);
    let r = http(&set.addrs[follower], "DELETE", &path, Some(&t), None);
    assert_eq!(r.status, 409, "{}", r.text());
    assert_eq!(r.error()["code"], "change_in_progress");
    let first = adding.join().unwrap();
    assert_eq!(first.status, 502, "{}", first.text());
    assert_eq!(first.error()["code"], "unreachable");

    // Too few voters left reachable: with one follower down, removing the other would
    // leave the leader and a dead server, no majority.
    set.kill(other);
    let path = format!("/v1/servers/{}", set.addrs[follower]);
    let r = http(&set.addrs[leader], "DELETE", &path, Some(&t), None);
    assert_eq!(r.status, 409, "{}", r.text());
    assert_eq!(r.error()["code"], "no_majority");
    let servers = servers_json(&set, leader);
    assert_eq!(servers.len(), 3, "nothing changed: {servers:?}");

    // The CLI shows the refusal.
    let out = set.cli(&["servers", "remove", &set.addrs[follower].clone()]);
    assert!(!out.status.success(), "{out}");
    assert!(out.stderr.contains("majority"), "{out}");
}

#[test]
fn a_server_alone_cannot_remove_its_last_voter_and_reads_need_no_round_trip() {
    let cluster = Cluster::start("members-alone");
    let r = cluster.get("/v1/health");
    assert_eq!(r.json()["membership"], "member");
    let r = http(
        &cluster.addr,
        "DELETE",
        "/v1/servers/1",
        Some(&cluster.token),
        None,
    );
    assert_eq!(r.status, 409, "{}", r.text());
    assert_eq!(r.error()["code"], "last_voter");
    let r = http(
        &cluster.addr,
        "DELETE",
        &format!("/v1/servers/{}", cluster.addr),
        Some(&cluster.token),
        None,
    );
    assert_eq!(r.status, 409, "{}", r.text());

    // `stale` is taken on every read, and checked.
    let r = cluster.get("/v1/tasks?stale=true&limit=1");
    assert_eq!(r.status, 200, "{}", r.text());
    let r = cluster.get("/v1/tasks?stale=maybe");
    assert_eq!(r.status, 400, "{}", r.text());
    assert_eq!(r.error()["field"], "stale");

    let (linear, stale) = read_latencies(&cluster.addr, &cluster.token, 200);
    eprintln!("read latency, one server: linearizable median {linear:?}, stale median {stale:?}");
}

/// Medians of `n` `GET /v1/tasks?limit=1` each way (linearizable, stale), the two
/// interleaved so that neither gets a warmer server.
fn read_latencies(addr: &str, token: &str, n: usize) -> (Duration, Duration) {
    let time = |path: &str| {
        let t = Instant::now();
        let r = http(addr, "GET", path, Some(token), None);
        assert_eq!(r.status, 200, "{}", r.text());
        t.elapsed()
    };
    let mut linear = Vec::with_capacity(n);
    let mut stale = Vec::with_capacity(n);
    for _ in 0..n {
        linear.push(time("/v1/tasks?limit=1"));
        stale.push(time("/v1/tasks?limit=1&stale=true"));
    }
    linear.sort();
    stale.sort();
    (linear[n / 2], stale[n / 2])
}

#[test]
fn reads_on_a_follower_see_every_acknowledged_write_and_stale_reads_skip_the_check() {
    let mut set = ServerSet::new("members-reads");
    for i in 0..3 {
        set.start(i);
    }
    let leader = set.wait_leader(SLOW);
    let follower = (leader + 1) % 3;
    let t = set.token.clone();
    // Each write through the leader, then at once a read on a follower: the read must
    // see it (the follower asks the leader for its commit index and waits for it).
    for _ in 0..30 {
        let r = http(
            &set.addrs[leader],
            "POST",
            "/v1/tasks",
            Some(&t),
            Some(br#"{"command":["true"]}"#),
        );
        assert_eq!(r.status, 201, "{}", r.text());
        let id = r.json()["first"].as_u64().unwrap();
        let seen = http(
            &set.addrs[follower],
            "GET",
            &format!("/v1/tasks/{id}"),
            Some(&t),
            None,
        );
        assert_eq!(
            seen.status,
            200,
            "task {id} not seen on the follower: {}",
            seen.text()
        );
    }
    let (f_linear, f_stale) = read_latencies(&set.addrs[follower], &t, 100);
    let (l_linear, l_stale) = read_latencies(&set.addrs[leader], &t, 100);
    eprintln!(
        "read latency, three servers: follower linearizable median {f_linear:?}, stale {f_stale:?}; leader linearizable {l_linear:?}, stale {l_stale:?}"
    );
    // With the leader gone and no majority, a linearizable read cannot be confirmed
    // (503), a stale one is still answered from the local state.
    set.kill(leader);
    set.kill((leader + 2) % 3);
    let r = http(
        &set.addrs[follower],
        "GET",
        "/v1/tasks?limit=1",
        Some(&t),
        None,
    );
    assert_eq!(r.status, 503, "{}", r.text());
    let r = http(
        &set.addrs[follower],
        "GET",
        "/v1/tasks?limit=1&stale=true",
        Some(&t),
        None,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    // The same through the CLI (and so the SDK): `--stale` answers, the default refuses.
    let cli_on_follower = |args: &[&str]| {
        let mut c = drover_command();
        c.args(["--server", &set.url(follower)])
            .args(set.ca_args())
            .args(["--token", &t])
            .args(args);
        run_with_timeout(c, Duration::from_secs(60), || set.logs())
    };
    let out = cli_on_follower(&["--stale", "list", "--limit", "1"]);
    assert!(out.status.success(), "{out}");
    let out = cli_on_follower(&["list", "--limit", "1"]);
    assert!(!out.status.success(), "{out}");
    assert!(out.stderr.contains("HTTP 503"), "{out}");
}

#[test]
fn an_admin_adds_a_waiting_server_replaces_a_dead_one_and_a_changed_peer_list_is_refused() {
    let mut set = ServerSet::new("members-add");
    for i in 0..3 {
        set.start(i);
    }
    let leader = set.wait_leader(SLOW);
    let out = set.cli_ok(&["submit", "--", "true"]);
    let id: u64 = out.stdout.trim().parse().unwrap();

    // Started with `--join` alone, it waits (and says so) until an admin adds it.
    let waiting = set.start_joining("");
    let addr = set.addrs[waiting].clone();
    let h = poll(
        "the waiting server answers",
        SLOW,
        || set.health(waiting),
        || set.logs(),
    );
    assert_eq!(h["membership"], "joining", "{h}");
    let r = set.get(waiting, "/v1/tasks");
    assert_eq!(r.status, 503, "it serves nothing yet: {}", r.text());

    let out = set.cli_ok(&["servers", "add", &addr]);
    assert!(out.stdout.contains("added server 4"), "{out}");
    assert!(out.stdout.contains("1, 2, 3, 4"), "{out}");
    // Adding it again changes nothing.
    let out = set.cli_ok(&["--json", "servers", "add", &addr]);
    let change: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(change["id"], 4, "{change}");
    assert!(
        set.task_on(waiting, id).is_some(),
        "the new voter has the log"
    );
    let list = servers_json(&set, leader);
    let me = list
        .iter()
        .find(|s| s["address"] == addr.as_str())
        .expect("listed");
    assert_eq!(me["role"], "follower", "{list:?}");

    // A member's node id is its place in the peer list, kept in its data directory: a
    // peer list that would give it another id is refused at start, naming both ids.
    let moved = 2;
    set.kill(moved);
    let mut c = drover_command();
    c.arg("--data-dir")
        .arg(set.root.join(format!("s{moved}")))
        .args(["--token", &set.token])
        .arg("server")
        .args(["--listen", &set.addrs[moved]])
        .args([
            "--peers",
            &format!("{},127.0.0.254:1,127.0.0.255:1", set.addrs[moved]),
        ])
        .args(["--peer-token", &set.peer_token]);
    let out = run_with_timeout(c, Duration::from_secs(30), || set.logs());
    assert!(!out.status.success(), "{out}");
    assert!(
        out.stderr.contains("belongs to node 3") && out.stderr.contains("node 1"),
        "{out}"
    );

    // A dead server is replaced: removed while down (the others are a majority), the
    // group goes on with the newcomer in its place.
    let out = set.cli_ok(&["--json", "servers", "remove", "3"]);
    let change: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(change["voters"], serde_json::json!([1, 2, 4]), "{change}");
    let out = set.cli_ok(&["submit", "--", "true"]);
    let after: u64 = out.stdout.trim().parse().unwrap();
    assert!(set.task_on(waiting, after).is_some());
    let list = servers_json(&set, waiting);
    assert_eq!(list.len(), 3, "{list:?}");
}

/// The id `drover servers` gives the server at `addr`, once it is a voter.
fn wait_voter(set: &ServerSet, via: usize, addr: &str) -> u64 {
    poll(
        &format!("the server at {addr} a voter"),
        SLOW,
        || {
            let r = http_with(
                &set.addrs[via],
                "GET",
                "/v1/servers",
                Some(&set.token),
                &[],
                None,
            )
            .ok()
            .filter(|r| r.status == 200)?;
            let list = r.json();
            let me = list.as_array()?.iter().find(|s| s["address"] == addr)?;
            matches!(me["role"].as_str(), Some("follower" | "leader"))
                .then(|| me["id"].as_u64())
                .flatten()
        },
        || set.logs(),
    )
}

#[test]
fn a_removed_servers_id_is_never_handed_out_again_even_after_compaction_and_restarts() {
    let mut set = ServerSet::new("members-ids");
    // Snapshots every 20 entries, keeping 5: the membership entries that named the
    // removed server are compacted away before the next server joins.
    set.add_server_args(&["--snapshot-every", "20", "--keep-after-snapshot", "5"]);
    for i in 0..3 {
        set.start(i);
    }
    let leader = set.wait_leader(SLOW);
    let fourth = set.start_joining(&set.addrs[leader].clone());
    let fourth_addr = set.addrs[fourth].clone();
    assert_eq!(wait_voter(&set, leader, &fourth_addr), 4);
    let out = set.cli_ok(&["servers", "remove", &fourth_addr]);
    assert!(out.stdout.contains("removed server"), "{out}");
    poll(
        "the fourth server gone from the group",
        SLOW,
        || (servers_json(&set, leader).len() == 3).then_some(()),
        || set.logs(),
    );
    set.kill(fourth);

    for _ in 0..60 {
        set.submit(&serde_json::json!({"command": ["true"]}));
    }
    // Every server restarts from its snapshot and the log after it.
    for i in 0..3 {
        set.kill(i);
    }
    for i in 0..3 {
        set.start(i);
    }
    let leader = set.wait_leader(SLOW);
    let snapshot = set.data_dir(leader).join("server").join("snapshot.bin");
    assert!(snapshot.exists(), "{snapshot:?}");

    let fifth = set.start_joining(&set.addrs[leader].clone());
    let fifth_addr = set.addrs[fifth].clone();
    let id = wait_voter(&set, leader, &fifth_addr);
    assert_eq!(id, 5, "a fresh id, not the removed server's 4");
    let list = servers_json(&set, leader);
    let ids: Vec<u64> = list.iter().filter_map(|s| s["id"].as_u64()).collect();
    assert_eq!(ids, vec![1, 2, 3, 5], "{list:?}");
}

/// A server killed (-9) while joining, then started again with no flag at all, goes
/// on with its join: killed while its request cannot be answered yet (the member it
/// asked is down), and killed once offered an id but before it is a voter.
#[test]
fn a_server_killed_mid_join_resumes_the_join_when_restarted_without_flags() {
    let mut set = ServerSet::new("members-resume");
    for i in 0..3 {
        set.start(i);
    }
    let leader = set.wait_leader(SLOW);

    // Before it is offered an id: it asks a member that is down.
    let asked = (leader + 1) % 3;
    set.kill(asked);
    let early = set.start_joining(&set.addrs[asked].clone());
    let early_addr = set.addrs[early].clone();
    poll(
        "the joiner asking the member that is down",
        SLOW,
        || {
            read(&set.log(early))
                .contains("cannot ask the group to add this server")
                .then_some(())
        },
        || set.logs(),
    );
    let member_file = set.data_dir(early).join("server").join("member.json");
    assert!(!member_file.exists(), "not offered an id yet");
    set.kill(early);
    set.set_mode(early, StartMode::Remembered);
    set.start(early);
    poll(
        "the restarted joiner waiting, not a group of its own",
        SLOW,
        || set.health(early).filter(|h| h["membership"] == "joining"),
        || set.logs(),
    );
    set.start(asked);
    let early_id = wait_voter(&set, leader, &early_addr);
    assert_eq!(early_id, 4);

    // After it is offered an id, before it is a voter: frozen the moment its id is
    // stored (it cannot answer the leader's appends then), and killed.
    let leader = set.wait_leader(SLOW);
    let late = set.start_joining(&set.addrs[leader].clone());
    let late_addr = set.addrs[late].clone();
    let member_file = set.data_dir(late).join("server").join("member.json");
    let deadline = Instant::now() + SLOW;
    while !member_file.exists() {
        assert!(Instant::now() < deadline, "no id offered\n{}", set.logs());
        std::thread::sleep(Duration::from_millis(1));
    }
    set.freeze(late);
    let list = servers_json(&set, leader);
    assert!(
        !list
            .iter()
            .any(|s| s["address"] == late_addr.as_str() && s["role"] == "follower"),
        "frozen before it was a voter: {list:?}"
    );
    set.kill(late);
    set.set_mode(late, StartMode::Remembered);
    set.start(late);
    let late_id = wait_voter(&set, leader, &late_addr);
    assert_eq!(late_id, 5, "the id it was offered first");
    let list = servers_json(&set, leader);
    assert_eq!(list.len(), 5, "{list:?}");
    // Done joining: nothing is remembered any more.
    for i in [early, late] {
        let join = set.data_dir(i).join("server").join("join.json");
        poll(
            "the join target forgotten",
            SLOW,
            || (!join.exists()).then_some(()),
            || set.logs(),
        );
    }
    let out = set.cli_ok(&["submit", "--", "true"]);
    let id: u64 = out.stdout.trim().parse().unwrap();
    assert!(set.task_on(late, id).is_some());
}

/// Server `i`'s own raft term, from its `/metrics` (served by a removed server too).
fn raft_term(set: &ServerSet, i: usize) -> u64 {
    let text = set.get(i, "/metrics").text();
    text.lines()
        .find_map(|l| l.strip_prefix("drover_raft_term "))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map(|v| v as u64)
        .unwrap_or_else(|| panic!("no drover_raft_term in /metrics of server {i}:\n{text}"))
}
