//! Confinement of tasks, with real `drover` processes (RELIABILITY S4): a task cannot
//! read the cluster token, the TLS keys, the server's or the agent's environment, nor
//! climb out of its directory; a fork bomb and a memory hog end alone; secret env
//! values reach the task and nothing else. The tests run as root (as on this host's
//! CI), so tasks run as `nobody`; one test runs `drover up` as an unprivileged user
//! to check the fallback (non-dumpable processes).

mod common;
#[path = "common/local_up.rs"]
mod local_up;

use common::event_lines::EventLines;
use common::*;
use drover_types::{Outcome, TaskState};
use local_up::LocalUp;
use serde_json::json;
use std::path::Path;
use std::time::{Duration, Instant};

fn assert_root() {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let euid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|l| l.split_ascii_whitespace().nth(1))
        .unwrap();
    assert_eq!(
        euid, "0",
        "these tests check the switch to the task user: run them as root"
    );
}

fn nobody_uid() -> String {
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap();
    passwd
        .lines()
        .find_map(|l| l.strip_prefix("nobody:x:"))
        .and_then(|rest| rest.split(':').next())
        .expect("a nobody user")
        .to_string()
}

/// A shell script that tries each of `attempts` (a name and a command) and prints
/// `READ:<name>` for every one that succeeded.
fn probe_script(attempts: &[(&str, String)]) -> String {
    let mut s = String::from("id -u; ");
    for (name, cmd) in attempts {
        s.push_str(&format!(
            "if ({cmd}) >/dev/null 2>&1; then echo READ:{name}; fi; "
        ));
    }
    s.push_str("exit 0");
    s
}

#[test]
fn under_drover_up_a_task_cannot_reach_the_servers_secrets_nor_climb_out() {
    assert_root();
    let dir = TempDir::new("confine-up");
    let data = dir.path().join("data");
    let canary = format!("env-canary-{}", unique("c"));
    let up = LocalUp::start(
        &data,
        &[],
        &["--workers", "1", "--cpus", "2"],
        &[("CONFINE_CANARY", canary.as_str())],
    );
    let pid = up.pid();
    assert!(
        up.banner["url"]
            .as_str()
            .unwrap_or("")
            .starts_with("https://"),
        "{}",
        up.banner
    );
    let server = data.join("server");
    let token_file = server.join("token");
    let token = std::fs::read_to_string(&token_file).expect("the token file exists");
    for f in ["server.key", "ca.key"] {
        assert!(server.join("tls").join(f).is_file(), "{f} exists");
    }
    let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap();
    assert!(
        String::from_utf8_lossy(&environ).contains(&canary),
        "root can read what the task must not"
    );
    let d = data.display();
    let script = probe_script(&[
        ("token", format!("cat {}", token_file.display())),
        ("server-key", format!("cat {d}/server/tls/server.key")),
        ("ca-key", format!("cat {d}/server/tls/ca.key")),
        ("agent-environ", format!("cat /proc/{pid}/environ")),
        ("parent-environ", "cat /proc/$PPID/environ".into()),
        ("parent-mem", "head -c 1 /proc/$PPID/mem".into()),
        ("server-dir", format!("ls {d}/server")),
        ("data-dir", format!("ls {d}")),
        ("worker-dir", format!("ls {d}/workers/local-1")),
        ("other-attempts", "ls ..".into()),
        ("climb-to-token", "cat ../../../../../server/token".into()),
        (
            "symlink-to-token",
            format!("ln -s {d}/server escape && cat escape/token"),
        ),
        ("write-outside", format!("touch {d}/workers/planted")),
    ]);
    let out = up.cli(&["run", "--", "sh", "-c", &script]);
    assert!(out.status.success(), "{out}");
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.first(), Some(&nobody_uid().as_str()), "{out}");
    let leaks: Vec<&&str> = lines.iter().filter(|l| l.starts_with("READ:")).collect();
    assert!(leaks.is_empty(), "the task reached: {leaks:?}\n{out}");
    assert!(!out.stdout.contains(token.trim()), "{out}");
    assert!(!out.stdout.contains(&canary), "{out}");
    // The same probes as root do succeed: they test the confinement, not a typo.
    let as_root = std::process::Command::new("sh")
        .arg("-c")
        .arg(probe_script(&[
            ("token", format!("cat {}", token_file.display())),
            ("server-key", format!("cat {d}/server/tls/server.key")),
            ("agent-environ", format!("cat /proc/{pid}/environ")),
        ]))
        .output()
        .unwrap();
    let root_out = String::from_utf8_lossy(&as_root.stdout);
    for name in ["token", "server-key", "agent-environ"] {
        assert!(root_out.contains(&format!("READ:{name}")), "{root_out}");
    }
}

#[test]
fn without_root_drover_up_is_not_dumpable_and_tasks_run_as_its_user() {
    assert_root();
    let dir = TempDir::new("confine-nonroot");
    let data = dir.path().join("data");
    let uid = nobody_uid();
    let setpriv = [
        "setpriv",
        &format!("--reuid={uid}"),
        &format!("--regid={uid}"),
        "--clear-groups",
        "--",
    ];
    let setpriv: Vec<&str> = setpriv.iter().map(|s| s.as_ref()).collect();
    let canary = format!("env-canary-{}", unique("n"));
    let up = LocalUp::start(
        &data,
        &setpriv,
        &["--workers", "1", "--cpus", "1"],
        &[
            ("CONFINE_CANARY", canary.as_str()),
            ("HOME", "/nonexistent"),
        ],
    );
    let pid = up.pid();
    let d = data.display();
    let script = probe_script(&[
        ("agent-environ", format!("cat /proc/{pid}/environ")),
        ("parent-environ", "cat /proc/$PPID/environ".into()),
        ("parent-mem", "head -c 1 /proc/$PPID/mem".into()),
        // What a task of the same user can still reach (documented in ARCHITECTURE.md):
        ("token", format!("cat {d}/server/token")),
    ]);
    let out = up.cli(&["run", "--", "sh", "-c", &script]);
    assert!(out.status.success(), "{out}");
    assert_eq!(out.stdout.lines().next(), Some(uid.as_str()), "{out}");
    for hidden in ["agent-environ", "parent-environ", "parent-mem"] {
        assert!(
            !out.stdout.contains(&format!("READ:{hidden}")),
            "{hidden} readable by a same-user task: {out}"
        );
    }
    assert!(!out.stdout.contains(&canary), "{out}");
    assert!(
        out.stdout.contains("READ:token"),
        "a same-user task can read the user's files; if that changed, update the docs: {out}"
    );
}

#[test]
fn working_directories_stay_in_the_attempt_or_an_allowed_path() {
    assert_root();
    let mut c = Cluster::start("confine-cwd");
    let shared = c.root.join("shared");
    std::fs::create_dir_all(shared.join("inside")).unwrap();
    std::os::unix::fs::symlink(c.data.join("server"), shared.join("escape")).unwrap();
    let shared_arg = shared.display().to_string();
    c.add_worker(
        "w",
        &["--cpus", "2", "--memory", "2G", "--allow-path", &shared_arg],
    );
    // Statically refused: climbing out with `..` (400 naming the field).
    let r = c.post(
        "/v1/tasks",
        &json!({"command": ["pwd"], "workdir": "sub/../../x"}),
    );
    assert_eq!(r.status, 400, "{}", r.text());
    assert_eq!(r.error()["field"], "workdir", "{}", r.text());
    let spawn_failure = |spec: serde_json::Value| -> String {
        let id = c.submit(spec);
        let t = c.wait_final(id, SLOW);
        assert_eq!(t.state, TaskState::Failed, "{t:#?}");
        match t.outcome {
            Some(Outcome::SpawnFailed { message }) => message,
            other => panic!("{other:?}"),
        }
    };
    // Refused by the worker: a host path it does not allow, and a symlink inside an
    // allowed path that leads out of it.
    let m = spawn_failure(json!({"command": ["pwd"], "workdir": "/etc"}));
    assert!(m.contains("not inside a path this worker allows"), "{m}");
    let escape = shared.join("escape").display().to_string();
    let m = spawn_failure(json!({"command": ["ls"], "workdir": escape}));
    assert!(m.contains("not inside a path this worker allows"), "{m}");
    // Allowed: a directory below the allowed path, and a relative one in the attempt.
    let inside = shared.join("inside");
    let id = c.submit(json!({"command": ["pwd"], "workdir": inside.display().to_string()}));
    let t = c.wait_final(id, SLOW);
    assert_eq!(t.state, TaskState::Succeeded, "{t:#?}");
    assert_eq!(
        t.result.as_deref().map(str::trim),
        Some(inside.to_str().unwrap())
    );
    let id = c.submit(json!({"command": ["sh", "-c", "pwd; touch here"], "workdir": "a/b"}));
    let t = c.wait_final(id, SLOW);
    assert_eq!(t.state, TaskState::Succeeded, "{t:#?}");
    let pwd = t.result.unwrap_or_default();
    assert!(
        pwd.trim().ends_with(&format!("/attempts/{id}.1/a/b")),
        "{pwd}"
    );
    // And the processes of `drover server` and `drover worker` are out of reach.
    let (server, agent) = (c.server_pid(), c.worker_pid("w"));
    let token_file = c.data.join("server").join("token");
    assert!(token_file.is_file());
    let script = probe_script(&[
        ("server-environ", format!("cat /proc/{server}/environ")),
        ("agent-environ", format!("cat /proc/{agent}/environ")),
        ("parent-environ", "cat /proc/$PPID/environ".into()),
        ("token", format!("cat {}", token_file.display())),
    ]);
    let id = c.submit(json!({"command": ["sh", "-c", script]}));
    let t = c.wait_final(id, SLOW);
    assert_eq!(t.state, TaskState::Succeeded, "{t:#?}");
    let out = t.result.unwrap_or_default();
    assert!(out.starts_with(&nobody_uid()), "{out}");
    assert!(!out.contains("READ:"), "{out}");
}

#[test]
fn a_fork_bomb_and_a_memory_hog_end_alone_and_the_worker_carries_on() {
    assert_root();
    let mut c = Cluster::start("confine-bomb");
    c.add_worker(
        "w",
        &["--cpus", "4", "--memory", "4G", "--task-pids-max", "256"],
    );
    let neighbour = c.submit(json!({
        "command": ["sh", "-c", "sleep 4; echo fine"],
        "resources": {"cpu_milli": 1000},
    }));
    let started = Instant::now();
    let bomb = c.submit(json!({
        "command": ["b() { b | b & }; b; sleep 60"],
        "shell": true,
        "max_runtime_ms": 60_000,
        "resources": {"cpu_milli": 1000},
    }));
    let hog = c.submit(json!({
        "command": ["x=$(head -c 209715200 /dev/zero | tr '\\0' a); sleep 30; echo ${#x}"],
        "shell": true,
        "resources": {"cpu_milli": 1000, "memory_bytes": 64u64 << 20},
    }));
    let b = c.wait_final(bomb, Duration::from_secs(60));
    assert_eq!(b.state, TaskState::Failed, "{b:#?}");
    assert_eq!(
        b.outcome,
        Some(Outcome::TooManyProcesses { limit: 256 }),
        "{b:#?}"
    );
    let h = c.wait_final(hog, Duration::from_secs(60));
    assert_eq!(h.outcome, Some(Outcome::OutOfMemory), "{h:#?}");
    assert!(
        started.elapsed() < Duration::from_secs(25),
        "ended by their limits, not by their ends: {:?}",
        started.elapsed()
    );
    let n = c.wait_final(neighbour, SLOW);
    assert_eq!(n.state, TaskState::Succeeded, "{n:#?}");
    assert_eq!(n.result.as_deref(), Some("fine\n"));
    // The agent is healthy: still connected, and runs the next task.
    let after = c.submit(json!({"command": ["echo", "after"]}));
    let a = c.wait_final(after, SLOW);
    assert_eq!(a.state, TaskState::Succeeded, "{a:#?}");
    assert!(
        c.worker_log("w").contains("tasks run as"),
        "{}",
        c.worker_log("w")
    );
}

#[test]
fn env_names_are_validated_and_secret_values_appear_nowhere_but_in_the_task() {
    assert_root();
    let mut c = Cluster::start("confine-secret");
    c.add_worker("w", &["--cpus", "2", "--memory", "2G"]);
    for (spec, field) in [
        (json!({"command": ["true"], "env": {"A-B": "1"}}), "env.A-B"),
        (json!({"command": ["true"], "env": {"1X": "1"}}), "env.1X"),
        (
            json!({"command": ["true"], "secret_env": {"A=B": "1"}}),
            "secret_env.A=B",
        ),
        (
            json!({"command": ["true"], "env": {"DROVER_X": "1"}}),
            "env.DROVER_X",
        ),
    ] {
        let r = c.post("/v1/tasks", &spec);
        assert_eq!(r.status, 400, "{spec}: {}", r.text());
        assert_eq!(r.error()["field"], field, "{}", r.text());
    }
    let secret = format!("canary-{}-{}", unique("s"), std::process::id());
    let events = EventLines::spawn(c.cli_command(&["--json", "events"]));
    // Through the API, and through the CLI's --secret-env. The task proves it has the
    // value by printing its length and a checksum of it, never the value itself.
    let check = "printf %s \"$CANARY\" | cksum";
    let api_task = c.submit(json!({
        "command": ["sh", "-c", check],
        "secret_env": {"CANARY": secret},
        "env": {"PLAIN": "visible"},
    }));
    let out = c.cli_ok(&[
        "--json",
        "submit",
        "--secret-env",
        &format!("CANARY={secret}"),
        "--",
        "sh",
        "-c",
        check,
    ]);
    let cli_task = serde_json::from_str::<serde_json::Value>(&out.stdout)
        .ok()
        .and_then(|v| {
            v["first"]
                .as_u64()
                .or(v["id"].as_u64())
                .or(v["ids"][0].as_u64())
        })
        .unwrap_or_else(|| panic!("no task id in {out}"));
    let expected = {
        let o = std::process::Command::new("sh")
            .args(["-c", check])
            .env("CANARY", &secret)
            .output()
            .unwrap();
        String::from_utf8(o.stdout).unwrap()
    };
    let mut seen = Vec::new();
    for id in [api_task, cli_task] {
        let t = c.wait_final(id, SLOW);
        assert_eq!(t.state, TaskState::Succeeded, "{t:#?}");
        assert_eq!(
            t.result.as_deref(),
            Some(expected.as_str()),
            "the task got the value"
        );
        assert_eq!(
            t.spec
                .secret_env
                .get("CANARY")
                .map(|v| v.expose().to_string()),
            Some(drover_types::REDACTED.to_string()),
            "reads show the name, not the value"
        );
        seen.push(events.until("the task's end", |v| {
            v["type"] == "task" && v["task"] == id && v["state"] == "succeeded"
        }));
    }
    let api = c.get(&format!("/v1/tasks/{api_task}")).text();
    assert!(api.contains("visible"), "plain env is shown: {api}");
    let mut reads = vec![
        ("task", api),
        ("cli task", c.get(&format!("/v1/tasks/{cli_task}")).text()),
        ("tasks", c.get("/v1/tasks").text()),
        ("jobs", c.get("/v1/jobs").text()),
        ("workers", c.get("/v1/workers").text()),
        ("cluster", c.get("/v1/cluster").text()),
        (
            "output",
            c.get(&format!("/v1/tasks/{api_task}/output")).text(),
        ),
        ("ui", c.get("/").text()),
        (
            "status",
            c.cli_ok(&["--json", "status", &api_task.to_string()])
                .stdout,
        ),
        ("list", c.cli_ok(&["--json", "list"]).stdout),
        ("events", format!("{seen:?}")),
        ("logs", c.logs()),
    ];
    let job = c.get(&format!("/v1/tasks/{api_task}")).json()["job"].clone();
    reads.push(("job", c.get(&format!("/v1/jobs/{job}")).text()));
    for (what, text) in &reads {
        assert!(!text.is_empty() || *what == "output", "{what} read nothing");
        assert!(
            !text.contains(&secret),
            "the secret appears in {what}: {text}"
        );
    }
    // The canary is a real one: the raw log of the replicated state holds it (it must,
    // to reach the worker), so a grep that never matches would be caught here.
    let on_disk = files_containing(&c.data.join("server"), secret.as_bytes());
    assert!(
        !on_disk.is_empty(),
        "the secret reached the server's storage"
    );
}

/// Files under `dir` whose bytes contain `needle`.
fn files_containing(dir: &Path, needle: &[u8]) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if std::fs::read(&p).is_ok_and(|b| b.windows(needle.len()).any(|w| w == needle))
            {
                found.push(p);
            }
        }
    }
    found
}

/// The `attempts` directory of worker `short` (found under its data directory).
fn attempts_dir_of(c: &Cluster, short: &str) -> std::path::PathBuf {
    let mut stack = vec![c.root.join(format!("wdata-{short}"))];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() && !p.is_symlink() {
                if p.file_name().is_some_and(|n| n == "attempts") {
                    return p;
                }
                stack.push(p);
            }
        }
    }
    panic!("no attempts directory under wdata-{short}");
}

/// Attempt directories are reused (a rename instead of mkdir + rmdir), and a reused
/// one is indistinguishable from a new one: empty, 0700, the task user's, whatever the
/// last task did to its mode; a directory a task left files in is not reused.
#[test]
fn a_reused_attempt_directory_starts_empty_and_closed() {
    assert_root();
    let mut c = Cluster::start("confine-reuse");
    c.add_worker("w", &["--cpus", "1", "--memory", "1G"]);
    let attempts = attempts_dir_of(&c, "w");
    // Runs `script` and waits for its directory to be handed back after its end.
    let run = |c: &Cluster, script: &str| -> String {
        let id = c.submit(json!({"command": ["sh", "-c", script]}));
        let t = c.wait_final(id, SLOW);
        assert_eq!(t.state, TaskState::Succeeded, "{t:#?}");
        poll(
            "the attempt directory to be handed back",
            SLOW,
            || (!attempts.join(format!("{id}.1")).exists()).then_some(()),
            || c.logs(),
        );
        t.result.unwrap_or_default()
    };
    let show = "stat -c '%a %U' .; ls -A | wc -l";
    let pooled = || {
        std::fs::read_dir(attempts.join(".pool"))
            .map(|d| d.count())
            .unwrap_or(0)
    };
    let nobody = "nobody";
    run(&c, &format!("{show}; chmod 777 ."));
    assert_eq!(pooled(), 1, "the first attempt's empty directory was kept");
    let second = run(&c, show);
    assert_eq!(
        second.split_whitespace().collect::<Vec<_>>(),
        ["700", nobody, "0"],
        "{second}"
    );
    assert_eq!(
        pooled(),
        1,
        "taken for the second attempt, kept again after it"
    );
    // Files left behind: that directory is removed, not kept; the next attempt
    // starts empty anyway.
    run(&c, &format!("{show}; touch left-behind; mkdir sub"));
    assert_eq!(pooled(), 0, "a directory with files is not kept");
    let fourth = run(&c, show);
    assert_eq!(
        fourth.split_whitespace().collect::<Vec<_>>(),
        ["700", nobody, "0"],
        "{fourth}"
    );
}
