//! Three servers, one leader, failover with nothing lost: real `drover server`
//! processes on loopback (see `common/servers.rs`).

mod common;

use common::servers::ServerSet;
use common::*;
use serde_json::Value;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

fn servers_json(set: &ServerSet) -> Vec<Value> {
    let out = set.cli_ok(&["--json", "servers"]);
    serde_json::from_str::<Value>(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {out}"))
        .as_array()
        .expect("a list")
        .clone()
}

#[test]
fn three_servers_started_in_any_order_form_one_group_with_one_leader() {
    let mut set = ServerSet::new("ha-form");
    // The initializer (the lowest address) last, with gaps: the others wait for it.
    set.start(2);
    std::thread::sleep(Duration::from_millis(500));
    set.start(1);
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        set.leaders().is_empty(),
        "no leader before the initializer runs"
    );
    set.start(0);
    let leader = set.wait_leader(SLOW);

    let list = set.cli_ok(&["servers"]);
    assert!(list.stdout.contains("leader"), "{list}");
    let servers = poll(
        "every server reachable in `drover servers`",
        SLOW,
        || {
            let s = servers_json(&set);
            s.iter()
                .all(|x| x["reachable"] == Value::Bool(true))
                .then_some(s)
        },
        || set.logs(),
    );
    assert_eq!(servers.len(), 3, "{servers:?}");
    let leaders: Vec<_> = servers.iter().filter(|s| s["role"] == "leader").collect();
    assert_eq!(leaders.len(), 1, "{servers:?}");
    assert_eq!(leaders[0]["address"], set.addrs[leader].as_str());
    assert_eq!(
        servers.iter().filter(|s| s["role"] == "follower").count(),
        2,
        "{servers:?}"
    );

    // A write sent to a follower is forwarded; every server then shows it.
    let follower = (leader + 1) % 3;
    let out = run_with_timeout(
        {
            let mut c = drover_command();
            c.args(["--server", &set.url(follower)])
                .args(set.ca_args())
                .args(["--token", &set.token, "submit", "--", "true"]);
            c
        },
        Duration::from_secs(30),
        || set.logs(),
    );
    assert!(out.status.success(), "{out}");
    let id: u64 = out.stdout.trim().parse().expect("a task id");
    for i in 0..3 {
        poll(
            &format!("task {id} on server {i}"),
            SLOW,
            || set.task_on(i, id),
            || set.logs(),
        );
    }

    // The servers' own routes take the peer token only.
    let r = http(
        &set.addrs[0],
        "POST",
        "/v1/raft/vote",
        Some(&set.token),
        Some(b"{}"),
    );
    assert_eq!(r.status, 403, "{}", r.text());
    let r = http(
        &set.addrs[0],
        "GET",
        "/v1/tasks",
        Some(&set.peer_token),
        None,
    );
    assert_eq!(r.status, 401, "{}", r.text());
}

#[test]
fn killing_the_leader_loses_nothing_and_restarts_nothing() {
    let mut set = ServerSet::new("ha-failover");
    for i in 0..3 {
        set.start(i);
    }
    let leader = set.wait_leader(SLOW);
    set.add_worker("w", &["--cpus", "2"]);

    // Two long tasks run (the worker's two CPUs), more wait behind them.
    let marker = set.root.join("marker");
    let script = format!("sleep 6; echo done >> {}", sh_quote(&marker));
    let mut running = Vec::new();
    for _ in 0..2 {
        let out = set.cli_ok(&["submit", "--cpus", "1", "--shell", "--", &script]);
        running.push(out.stdout.trim().parse::<u64>().unwrap());
    }
    let mut queued = Vec::new();
    for _ in 0..3 {
        let out = set.cli_ok(&["submit", "--cpus", "1", "--", "true"]);
        queued.push(out.stdout.trim().parse::<u64>().unwrap());
    }
    for id in &running {
        poll(
            &format!("task {id} running"),
            SLOW,
            || {
                let t = set.task_on(leader, *id)?;
                (t.state.as_str() == "running").then_some(())
            },
            || set.logs(),
        );
    }

    // A client submits continuously, through the CLI, given every server; each
    // submission has its own name, so that duplicates can be counted.
    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(Mutex::new(Vec::<(String, u64)>::new()));
    let errors = Arc::new(Mutex::new(Vec::<String>::new()));
    let sent = Arc::new(Mutex::new(Vec::<String>::new()));
    // Four at a time, so that some are in flight on the leader when it is killed.
    let submitters: Vec<_> = (0..4)
        .map(|t| {
            let (stop, acked, errors, sent) =
                (stop.clone(), acked.clone(), errors.clone(), sent.clone());
            let (urls, token, dir) = (set.urls(), set.token.clone(), set.root.join("cli"));
            let ca = set.ca_args();
            std::thread::spawn(move || {
                let mut n = 0;
                while !stop.load(Ordering::SeqCst) {
                    n += 1;
                    let name = format!("stream-{t}-{n}");
                    sent.lock().unwrap().push(name.clone());
                    let mut c = drover_command();
                    c.arg("--data-dir").arg(&dir).args(&ca);
                    c.args([
                        "--server", &urls, "--token", &token, "submit", "--name", &name, "--cpus",
                        "0.1", "--", "true",
                    ]);
                    let out = run_with_timeout(c, Duration::from_secs(30), String::new);
                    if out.status.success() {
                        acked
                            .lock()
                            .unwrap()
                            .push((name, out.stdout.trim().parse().unwrap()));
                    } else {
                        errors.lock().unwrap().push(out.stderr.clone());
                    }
                }
            })
        })
        .collect();
    // And the Rust SDK, sixteen submissions in flight at any time, so that some are
    // between commit and answer when the leader dies.
    let sdk = {
        let (stop, acked, errors, sent) =
            (stop.clone(), acked.clone(), errors.clone(), sent.clone());
        let client = set.client();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let mut streams = Vec::new();
                for t in 0..16 {
                    let (stop, acked, errors, sent, client) = (
                        stop.clone(),
                        acked.clone(),
                        errors.clone(),
                        sent.clone(),
                        client.clone(),
                    );
                    streams.push(tokio::spawn(async move {
                        let mut n = 0;
                        while !stop.load(Ordering::SeqCst) {
                            n += 1;
                            let name = format!("stream-sdk{t}-{n}");
                            sent.lock().unwrap().push(name.clone());
                            let mut spec = drover_types::TaskSpec::command(["true"]);
                            spec.name = name.clone();
                            spec.resources.cpu_milli = 100;
                            match client.submit_task(&spec).await {
                                Ok(r) => acked.lock().unwrap().push((name, r.first.0)),
                                Err(e) => errors.lock().unwrap().push(e.to_string()),
                            }
                        }
                    }));
                }
                for s in streams {
                    s.await.unwrap();
                }
            })
        })
    };
    std::thread::sleep(Duration::from_secs(1));
    let before = acked.lock().unwrap().len();
    assert!(
        before > 0,
        "the submitter got nothing through before the kill"
    );

    let killed_at = Instant::now();
    set.kill(leader);
    let new_leader = set.wait_leader(SLOW);
    let election = killed_at.elapsed();
    assert_ne!(new_leader, leader);
    eprintln!("new leader after {election:?}");
    assert!(election < Duration::from_secs(10), "{election:?}");

    std::thread::sleep(Duration::from_secs(2));
    stop.store(true, Ordering::SeqCst);
    for s in submitters {
        s.join().unwrap();
    }
    sdk.join().unwrap();
    let acked = acked.lock().unwrap().clone();
    let errors = errors.lock().unwrap().clone();
    let sent = sent.lock().unwrap().clone();
    eprintln!(
        "{} submissions sent, {} acknowledged ({before} before the kill), {} errors: {errors:?}",
        sent.len(),
        acked.len(),
        errors.len()
    );
    // The submission in flight on the leader when it was killed lost its answer; the
    // CLI sent it again with the same idempotency key (to the next server, once one
    // leads), so nothing fails, and nothing is submitted twice.
    assert!(
        errors.is_empty(),
        "the CLI failed submissions across the leader change: {errors:#?}"
    );
    assert!(acked.len() > before, "nothing acknowledged after the kill");
    let mut by_name: std::collections::BTreeMap<String, Vec<u64>> = Default::default();
    let mut cursor = String::new();
    loop {
        let list = set
            .get(new_leader, &format!("/v1/tasks?limit=1000{cursor}"))
            .json();
        for t in list["tasks"].as_array().expect("tasks") {
            if let Some(name) = t["name"].as_str()
                && name.starts_with("stream-")
            {
                by_name
                    .entry(name.to_string())
                    .or_default()
                    .push(t["id"].as_u64().unwrap());
            }
        }
        match list["next_cursor"].as_str() {
            Some(c) => cursor = format!("&cursor={c}"),
            None => break,
        }
    }
    // How many retries found their first try applied (0 when the kill caught no
    // submission between commit and answer: the test does not depend on it).
    let replays: usize = (0..3)
        .map(|i| {
            read(&set.root.join(format!("server-{i}.log")))
                .matches("answered a retried submission")
                .count()
        })
        .sum();
    eprintln!("{replays} retried submissions were answered with their first answer");
    let twice: Vec<_> = by_name.iter().filter(|(_, ids)| ids.len() > 1).collect();
    assert!(twice.is_empty(), "submitted more than once: {twice:?}");
    for (name, id) in &acked {
        assert_eq!(
            by_name.get(name),
            Some(&vec![*id]),
            "acknowledged submission {name} (task {id}) is not there exactly once"
        );
    }

    // The worker follows the new leader.
    let worker = set.workers_names()[0].clone();
    set.wait_worker_connected(&worker, SLOW);

    // Every acknowledged submission is there; the running tasks ran once, to the end.
    for id in running.iter().chain(&queued) {
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
        assert_eq!(t.attempt.0, 1, "task {id} was restarted: {t:#?}");
        assert_eq!(t.attempts.len(), 1, "{t:#?}");
    }
    assert_eq!(read(&marker).lines().count(), 2, "each long task ran once");
}

#[test]
fn a_follower_killed_and_restarted_catches_up() {
    let mut set = ServerSet::new("ha-catchup");
    for i in 0..3 {
        set.start(i);
    }
    let leader = set.wait_leader(SLOW);
    let follower = (leader + 1) % 3;
    set.kill(follower);
    let mut ids = Vec::new();
    for _ in 0..5 {
        let out = set.cli_ok(&["submit", "--", "true"]);
        ids.push(out.stdout.trim().parse::<u64>().unwrap());
    }
    set.start(follower);
    for id in &ids {
        poll(
            &format!("task {id} on the restarted follower"),
            SLOW,
            || set.task_on(follower, *id),
            || set.logs(),
        );
    }
    assert_eq!(
        set.leaders(),
        vec![leader],
        "the restart did not unseat the leader"
    );
}

#[test]
fn drover_up_runs_three_server_processes_and_stops_them_all() {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;
    let dir = TempDir::new("ha-up");
    let data = dir.path().to_path_buf();
    let mut up = drover_command()
        .arg("--data-dir")
        .arg(&data)
        .args([
            "--json",
            "up",
            "--servers",
            "3",
            "--workers",
            "1",
            "--cpus",
            "1",
        ])
        .args(["--listen", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start drover up");
    let stdout = up.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    let line = rx.recv_timeout(SLOW).unwrap_or_default();
    let banner: Value = serde_json::from_str(&line).unwrap_or_else(|e| {
        let _ = up.kill();
        panic!("`drover up --json` printed {line:?}: {e}")
    });
    let urls: Vec<&str> = banner["url"].as_str().unwrap().split(',').collect();
    assert_eq!(urls.len(), 3, "{banner}");

    let cli = |args: &[&str]| {
        let mut c = drover_command();
        c.arg("--data-dir").arg(&data).args(args);
        run_with_timeout(c, Duration::from_secs(60), String::new)
    };
    // The CLI here finds the group by itself.
    let out = cli(&["--json", "servers"]);
    assert!(out.status.success(), "{out}");
    let servers: Vec<Value> = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(servers.len(), 3, "{servers:?}");
    assert_eq!(
        servers.iter().filter(|s| s["role"] == "leader").count(),
        1,
        "{servers:?}"
    );
    let out = cli(&["run", "--", "echo", "hello from a group"]);
    assert!(out.status.success(), "{out}");
    assert_eq!(out.stdout.trim(), "hello from a group");

    let servers_running = || {
        processes_with_cmdline(&data.to_string_lossy())
            .into_iter()
            .filter(|(_, cmd)| cmd.contains(" server "))
            .count()
    };
    assert_eq!(servers_running(), 3);
    let _ = std::process::Command::new("kill")
        .args(["-INT", &up.id().to_string()])
        .status();
    let status = poll(
        "drover up to exit after Ctrl-C",
        SLOW,
        || up.try_wait().ok().flatten(),
        String::new,
    );
    assert!(status.success(), "{status}");
    poll(
        "every server process gone",
        SLOW,
        || (servers_running() == 0).then_some(()),
        String::new,
    );
}

#[test]
fn a_leader_cut_off_from_the_majority_stops_acknowledging_writes() {
    use common::netns::NetNs;
    use common::servers::free_ports;
    let ns = NetNs::create();
    let ports = free_ports(3);
    let addrs = vec![
        format!("{}:{}", ns.ns_ip, ports[0]),
        format!("{}:{}", ns.host_ip, ports[1]),
        format!("{}:{}", ns.host_ip, ports[2]),
    ];
    let mut set = ServerSet::with_addrs(
        "ha-partition",
        addrs,
        vec![Some(ns.name.clone()), None, None],
    );
    let inside = set.netns.iter().position(Option::is_some).unwrap();
    for i in 0..3 {
        set.start(i);
    }
    // Have the server in the namespace lead: kill the leader until it does.
    let mut leader = set.wait_leader(SLOW);
    for _ in 0..10 {
        if leader == inside {
            break;
        }
        set.kill(leader);
        let next = set.wait_leader(SLOW);
        set.start(leader);
        poll(
            "the killed server back",
            SLOW,
            || set.health(leader),
            || set.logs(),
        );
        leader = next;
    }
    assert_eq!(leader, inside, "the namespace's server never led");
    let out = set.cli_ok(&["submit", "--", "true"]);
    let before: u64 = out.stdout.trim().parse().unwrap();

    ns.cut_except_loopback();
    // A write given to the old leader, from inside its namespace (its loopback still
    // works), is never acknowledged: the leader cannot commit it, answers 503 "no
    // quorum" within about 5 s, and the CLI (given only this server) retries with the
    // same idempotency key for its 10 s window, then says so.
    let cut_at = Instant::now();
    let mut write = drover_command_in(Some(&ns.name));
    write
        .arg("--data-dir")
        .arg(set.root.join("cli-inside"))
        .args(["--server", &set.url(inside)])
        .args(set.ca_args())
        .args([
            "--token",
            &set.token,
            "submit",
            "--name",
            "cut-off-write",
            "--",
            "true",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let write = write.spawn().expect("start drover submit");
    // Meanwhile the majority elects a leader of its own and takes writes.
    let outside: Vec<usize> = (0..3).filter(|i| *i != inside).collect();
    let new_leader = poll(
        "a leader among the majority",
        SLOW,
        || {
            outside.iter().copied().find(|i| {
                set.health(*i)
                    .is_some_and(|h| h["leader"] == Value::Bool(true))
            })
        },
        || set.logs(),
    );
    let majority_urls = outside
        .iter()
        .map(|i| set.url(*i))
        .collect::<Vec<_>>()
        .join(",");
    let mut c = drover_command();
    // (`--ca` before the command: after `--` it would be the task's.)
    c.args(set.ca_args());
    c.arg("--data-dir").arg(set.root.join("cli")).args([
        "--server",
        &majority_urls,
        "--token",
        &set.token,
        "submit",
        "--",
        "true",
    ]);
    let out = run_with_timeout(c, Duration::from_secs(30), || set.logs());
    assert!(out.status.success(), "the majority refused a write: {out}");
    let after: u64 = out.stdout.trim().parse().unwrap();
    assert!(after > before);

    let refused = write.wait_with_output().expect("drover submit inside");
    let took = cut_at.elapsed();
    let stderr = String::from_utf8_lossy(&refused.stderr);
    eprintln!("the write to the cut-off leader ended after {took:?}: {stderr}");
    assert!(
        !refused.status.success(),
        "the cut-off leader acknowledged a write: {refused:?}"
    );
    assert!(
        stderr.contains("no quorum") && stderr.contains("HTTP 503"),
        "the CLI does not say why: {stderr}"
    );
    // A bound, not a speed figure: 10 s of retries plus one last 5 s try, plus slack.
    assert!(took < Duration::from_secs(25), "{took:?}");
    // One request, as sent by any HTTP client (curl, inside the namespace): one 503
    // naming the cause, within the bound (4 s wait + 1 s majority check).
    let out = ns.exec(&[
        "curl",
        "-s",
        "-m",
        "30",
        "-w",
        "\n%{http_code} %{time_total}",
        "-H",
        &format!("Authorization: Bearer {}", set.token),
        "-H",
        "Content-Type: application/json",
        "-d",
        r#"{"name": "cut-off-write", "command": ["true"]}"#,
        "--cacert",
        &set.ca_file().to_string_lossy(),
        &format!("{}/v1/tasks", set.url(inside)),
    ]);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (body, status) = text.rsplit_once('\n').expect("curl's status line");
    let (code, secs) = status.split_once(' ').expect("code and time");
    let secs: f64 = secs.parse().unwrap();
    eprintln!("one write to the cut-off leader: HTTP {code} after {secs:.2} s: {body}");
    assert_eq!(code, "503", "{text}");
    assert!(
        body.contains("no_quorum") && body.contains("no quorum"),
        "{body}"
    );
    assert!(secs < 8.0, "the 503 took {secs} s");

    // Healed: the old leader follows the new one and has its writes.
    ns.heal();
    poll(
        "the old leader to follow",
        SLOW,
        || {
            let h = set.health(inside)?;
            (h["leader"] == Value::Bool(false)).then_some(())
        },
        || set.logs(),
    );
    poll(
        "the majority's write on the old leader",
        SLOW,
        || set.task_on(inside, after),
        || set.logs(),
    );
    assert_eq!(set.leaders(), vec![new_leader]);
    // The refused write was discarded with the old leader's uncommitted entries: no
    // server has it.
    for i in 0..3 {
        let list = set.get(i, "/v1/tasks?name=cut-off-write").json();
        assert_eq!(
            list["tasks"].as_array().map(Vec::len),
            Some(0),
            "server {i} applied the write refused with 503: {list}"
        );
    }
}

#[test]
fn peers_come_from_the_configuration_file_and_a_group_needs_shared_tokens() {
    let dir = TempDir::new("ha-config");
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        "[server]\nlisten = \"127.0.0.1:7301\"\npeers = [\"127.0.0.1:7302\", \"127.0.0.1:7301\", \"7303\"]\n",
    )
    .unwrap();
    let run = |args: &[&str]| {
        let mut c = drover_command();
        c.arg("--data-dir").arg(dir.path()).args(args);
        run_with_timeout(c, Duration::from_secs(30), String::new)
    };
    let cfg = config.to_str().unwrap();
    let out = run(&["--json", "server", "--config", cfg, "--print-config"]);
    assert!(out.status.success(), "{out}");
    let v: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(
        v["server"]["peers"],
        serde_json::json!(["127.0.0.1:7302", "127.0.0.1:7301", "127.0.0.1:7303"]),
        "{v}"
    );
    std::fs::write(dir.path().join("bad.toml"), "[server]\npeers = \"a,b\"\n").unwrap();
    let bad = dir.path().join("bad.toml");
    let out = run(&[
        "server",
        "--config",
        bad.to_str().unwrap(),
        "--print-config",
    ]);
    assert!(!out.status.success());
    assert!(out.stderr.contains("server.peers"), "{out}");

    // Servers of a group must share the cluster token and a peer token: none invents
    // its own.
    let out = run(&["server", "--config", cfg]);
    assert!(!out.status.success(), "{out}");
    assert!(out.stderr.contains("--token"), "{out}");
    let out = run(&["--token", "t", "server", "--config", cfg]);
    assert!(!out.status.success(), "{out}");
    assert!(out.stderr.contains("--peer-token"), "{out}");
    let out = run(&[
        "--token",
        "t",
        "server",
        "--config",
        cfg,
        "--peer-token",
        "t",
    ]);
    assert!(!out.status.success(), "{out}");
    assert!(
        out.stderr.contains("different from the cluster token"),
        "{out}"
    );
    // This server must be among its peers.
    let out = run(&[
        "--token",
        "t",
        "server",
        "--listen",
        "127.0.0.1:7309",
        "--peers",
        "127.0.0.1:7301,127.0.0.1:7302,127.0.0.1:7303",
        "--peer-token",
        "p",
    ]);
    assert!(!out.status.success(), "{out}");
    assert!(out.stderr.contains("is not among the peers"), "{out}");
}
