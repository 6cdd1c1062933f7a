//! The CLI as a person and a script meet it: what `status` shows, `logs --json`, worker
//! names, completions, negative values, the configuration file, `drover up`'s split.

mod common;

use common::*;
use serde_json::{Value, json};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::Duration;

#[test]
fn status_shows_a_quoted_command_a_bounded_result_and_where_it_ran() {
    let mut c = Cluster::start("status-view");
    let name = c.add_worker("w", &["--cpus", "2", "--memory", "4G"]);
    let script = r#"for i in $(seq 1 300); do echo "line $i"; done; echo B >&2"#;
    let out = c.cli_ok(&["submit", "--shell", "--", script]);
    let id: u64 = out.stdout.trim().parse().unwrap();
    c.wait_final(id, SLOW);
    let status = c.cli_ok(&["status", &id.to_string()]).stdout;
    assert!(
        status.contains(
            "command:   sh -c 'for i in $(seq 1 300); do echo \"line $i\"; done; echo B >&2'"
        ),
        "{status}"
    );
    assert!(status.contains("line 1\n"), "{status}");
    assert!(status.contains("line 5\n"), "{status}");
    assert!(!status.contains("line 6\n"), "at most 5 lines: {status}");
    assert!(
        status.contains(&format!("`drover logs {id}` prints the whole output")),
        "{status}"
    );
    assert!(status.contains(" KiB in all"), "the size: {status}");
    assert!(status.lines().all(|l| l.chars().count() < 300), "{status}");
    assert!(
        status.contains(&format!("worker:    {name} (w1)")),
        "{status}"
    );

    // A job file's string command splits like a shell's words, quotes kept.
    let job = c.file("job.yaml");
    std::fs::write(&job, "tasks:\n  - command: printf '%s|' \"a  b\" 'c d'\n").unwrap();
    let out = c.cli_ok(&["run", "-f", job.to_str().unwrap()]);
    assert_eq!(out.stdout, "a  b|c d|", "{out}");

    // `wait`: 0 when it succeeded, 1 when it did not.
    let out = c.cli(&["wait", &id.to_string()]);
    assert_eq!(out.code(), Some(0), "{out}");
    let failing = c.submit(json!({"command": ["false"]}));
    c.wait_final(failing, SLOW);
    let out = c.cli(&["wait", &failing.to_string()]);
    assert_eq!(out.code(), Some(1), "{out}");
}

#[test]
fn logs_json_is_one_object_per_chunk_that_adds_up_to_the_output() {
    let mut c = Cluster::start("logs-json");
    c.add_worker("w", &["--cpus", "2", "--memory", "4G"]);
    let id = c.submit(json!({
        "command": ["printf 'h\\303\\251llo \\342\\234\\223\\n%.0s' $(seq 1 2000); printf 'oops\\n' >&2"],
        "shell": true,
    }));
    c.wait_final(id, SLOW);
    let raw = c.get(&format!("/v1/tasks/{id}/output")).body;
    assert!(raw.len() > 10_000);
    let expected_stdout = String::from_utf8(raw).unwrap();
    assert!(
        expected_stdout.starts_with("héllo ✓\n"),
        "{expected_stdout:?}"
    );
    for (args, stream, expected) in [
        (vec!["logs", "--json"], "stdout", expected_stdout.clone()),
        (
            vec!["logs", "--json", "--follow"],
            "stdout",
            expected_stdout.clone(),
        ),
        (
            vec!["logs", "--json", "--stderr"],
            "stderr",
            "oops\n".to_string(),
        ),
    ] {
        let id_text = id.to_string();
        let mut all: Vec<&str> = args.clone();
        all.push(&id_text);
        let out = c.cli_ok(&all);
        let mut text = String::new();
        let mut bytes = 0u64;
        for line in out.stdout.lines() {
            let v: Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("{args:?}: not a JSON line ({e}): {line}"));
            assert_eq!(v["stream"], stream, "{line}");
            assert_eq!(v["offset"].as_u64(), Some(bytes), "{line}");
            let data = v["data"].as_str().unwrap();
            bytes += data.len() as u64;
            text.push_str(data);
        }
        assert_eq!(text, expected, "{args:?}");
    }
}

#[test]
fn a_worker_is_named_by_w_id_bare_id_or_name_everywhere() {
    let mut c = Cluster::start("worker-names");
    let name = c.add_worker("w", &["--cpus", "1", "--memory", "1G"]);
    let listed: Value = serde_json::from_str(&c.cli_ok(&["workers", "--json"]).stdout).unwrap();
    assert_eq!(listed[0]["id"], 1, "JSON has the number: {listed}");
    let table = c.cli_ok(&["workers"]).stdout;
    assert!(table.contains("w1"), "tables show w1: {table}");
    let state = |c: &Cluster| c.workers_info()[0].state.to_string();
    for (cmd, worker, expected) in [
        ("drain", "w1", "draining"),
        ("resume", "1", "active"),
        ("drain", name.as_str(), "draining"),
        ("resume", "w1", "active"),
    ] {
        let out = c.cli_ok(&[cmd, worker]);
        assert!(
            out.stdout.contains(&format!("w1 ({name}): {expected}")),
            "{out}"
        );
        assert_eq!(state(&c), expected, "{cmd} {worker}");
    }
    let out = c.cli_ok(&["--json", "drain", &name]);
    let v: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(v["state"], "draining", "{v}");
    // The API takes the same forms.
    for path in ["/v1/workers/w1/resume", "/v1/workers/1/drain"] {
        let r = c.post(path, &json!({}));
        assert_eq!(r.status, 200, "{path}: {}", r.text());
    }
    let r = c.post(&format!("/v1/workers/{name}/resume"), &json!({}));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(state(&c), "active");
    let out = c.cli(&["drain", "w99"]);
    assert_ne!(out.code(), Some(0), "{out}");
    assert!(out.stderr.contains("no worker \"w99\""), "{out}");
    // A name or number that is no worker's: 404 naming it, over the API too.
    for path in ["/v1/workers/abc/drain", "/v1/workers/4294967296/resume"] {
        let r = c.post(path, &json!({}));
        assert_eq!(r.status, 404, "{path}: {}", r.text());
        assert_eq!(r.error()["code"], "not_found", "{path}: {}", r.text());
    }

    // No debug formatting where people read.
    let out = c.cli_ok(&["cluster"]).stdout;
    assert!(out.contains("leader 1 "), "{out}");
    assert!(!out.contains("Some("), "{out}");
}

#[test]
fn completion_scripts_load_into_their_shells() {
    let mut cmd = drover_command();
    cmd.args(["completions", "bash"]);
    let out = run_with_timeout(cmd, SLOW, String::new);
    assert!(out.status.success(), "{out}");
    let dir = TempDir::new("completions");
    let script = dir.path().join("drover.bash");
    std::fs::write(&script, &out.stdout).unwrap();
    let mut bash = std::process::Command::new("bash");
    bash.arg("-c").arg(format!(
        "source '{}' && complete -p drover",
        script.display()
    ));
    let loaded = run_with_timeout(bash, SLOW, String::new);
    assert!(loaded.status.success(), "{loaded}");
    assert!(loaded.stdout.contains("_drover"), "{loaded}");
    for (shell, start) in [("zsh", "#compdef drover"), ("fish", "")] {
        let mut cmd = drover_command();
        cmd.args(["completions", shell]);
        let out = run_with_timeout(cmd, SLOW, String::new);
        assert!(out.status.success(), "{out}");
        assert!(out.stdout.starts_with(start), "{shell}: {out}");
        assert!(out.stdout.contains("print-config"), "{shell}: {out}");
    }
    let mut cmd = drover_command();
    cmd.args(["--json", "completions", "bash"]);
    let out = run_with_timeout(cmd, SLOW, String::new);
    assert_eq!(out.code(), Some(1), "--json does not apply: {out}");
}

/// `drover … | head`: a reader that goes away early ends the CLI quietly (status 141,
/// nothing on stderr: no panic message), while SIGPIPE itself stays ignored so that a
/// socket to a killed server gives the client an error, not a death by signal 13 (the
/// failover test's continuous submitter covers that side).
#[test]
fn a_closed_stdout_ends_the_cli_quietly() {
    use std::os::unix::process::ExitStatusExt;
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let mut cmd = drover_command();
    cmd.args(["completions", "bash"])
        .stdout(writer)
        .stderr(Stdio::piped());
    let out = cmd.output().unwrap();
    assert_eq!(out.status.signal(), None, "not killed by SIGPIPE: {out:?}");
    assert_eq!(out.status.code(), Some(141), "{out:?}");
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_negative_priority_is_taken_and_other_negative_values_are_refused_clearly() {
    let c = Cluster::start("negative");
    let out = c.cli_ok(&["submit", "--priority", "-5", "--", "true"]);
    let id: u64 = out.stdout.trim().parse().unwrap();
    assert_eq!(c.task(id).spec.priority, -5);
    for args in [
        &["submit", "--retries", "-1", "--", "true"][..],
        &["submit", "--timeout", "-5s", "--", "true"],
        &["list", "--limit", "-3"],
        &["job", "-1"],
    ] {
        let out = c.cli(args);
        assert_eq!(out.code(), Some(2), "{args:?}: {out}");
        assert!(out.stderr.contains("negative values"), "{args:?}: {out}");
        assert!(!out.stderr.contains("'-- -"), "no misleading tip: {out}");
    }
}

fn print_config(data: &Path, args: &[&str], env: &[(&str, &str)]) -> CliOutput {
    let mut cmd = drover_command();
    cmd.arg("--data-dir").arg(data).args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    run_with_timeout(cmd, SLOW, String::new)
}

#[test]
fn configuration_is_layered_defaults_file_environment_flags_and_checked() {
    let dir = TempDir::new("config-layers");
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let defaults = print_config(&data, &["server", "--print-config"], &[]);
    assert!(defaults.status.success(), "{defaults}");
    assert!(
        defaults.stdout.contains("worker_timeout = \"30s\""),
        "{defaults}"
    );
    assert!(
        defaults.stdout.contains("configuration file: none"),
        "{defaults}"
    );

    // The data directory's config.toml is read by default.
    std::fs::write(
        data.join("config.toml"),
        "[server]\nworker_timeout = \"1m\"\nmax_body = \"1M\"\nnode_id = 3\n\n\
         [worker]\nname = \"from-file\"\ncpus = 1.5\nlabels = { zone = \"eu\" }\n",
    )
    .unwrap();
    let file = print_config(&data, &["server", "--print-config"], &[]);
    assert!(file.status.success(), "{file}");
    assert!(file.stdout.contains("worker_timeout = \"1m\""), "{file}");
    assert!(file.stdout.contains("node_id = 3"), "{file}");
    // The environment beats the file, a flag beats the environment.
    let env = [
        ("DROVER_SERVER_WORKER_TIMEOUT", "2m"),
        ("DROVER_SERVER_NODE_ID", "4"),
    ];
    let layered = print_config(&data, &["server", "--print-config", "--node-id", "5"], &env);
    assert!(layered.status.success(), "{layered}");
    assert!(
        layered.stdout.contains("worker_timeout = \"2m\""),
        "{layered}"
    );
    assert!(layered.stdout.contains("node_id = 5"), "{layered}");
    assert!(layered.stdout.contains("max_body = \"1MiB\""), "{layered}");
    let worker = print_config(
        &data,
        &["worker", "--print-config", "--label", "zone=us"],
        &[],
    );
    assert!(worker.status.success(), "{worker}");
    assert!(worker.stdout.contains("name = \"from-file\""), "{worker}");
    assert!(worker.stdout.contains("cpus = \"1.5\""), "{worker}");
    assert!(
        worker.stdout.contains("zone = \"us\""),
        "flags replace: {worker}"
    );

    // What is printed reads back as the same configuration.
    let printed = dir.path().join("printed.toml");
    std::fs::write(&printed, &layered.stdout).unwrap();
    let empty = dir.path().join("empty-data");
    let again = print_config(
        &empty,
        &[
            "server",
            "--print-config",
            "--config",
            printed.to_str().unwrap(),
        ],
        &[],
    );
    assert!(again.status.success(), "{again}");
    let body = |s: &str| {
        s.lines()
            .filter(|l| !l.starts_with('#'))
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert_eq!(body(&again.stdout), body(&layered.stdout));

    // Mistakes are named: the key and the file, or the variable, or the flag.
    let bad = dir.path().join("bad.toml");
    for (text, named) in [
        ("[server]\nlisten_on = \"0.0.0.0:1\"\n", "server.listen_on"),
        (
            "[server]\nworker_timeout = \"soon\"\n",
            "server.worker_timeout",
        ),
        ("[worker]\nmemory = \"lots\"\n", "worker.memory"),
        ("[uup]\nworkers = 2\n", "`uup`"),
    ] {
        std::fs::write(&bad, text).unwrap();
        let out = print_config(
            &empty,
            &[
                "server",
                "--print-config",
                "--config",
                bad.to_str().unwrap(),
            ],
            &[],
        );
        assert_eq!(out.code(), Some(1), "{text}: {out}");
        assert!(out.stderr.contains(named), "{text}: {out}");
        assert!(out.stderr.contains("bad.toml"), "{text}: {out}");
    }
    let out = print_config(
        &empty,
        &["server", "--print-config"],
        &[("DROVER_SERVER_MAX_BODY", "huge")],
    );
    assert_eq!(out.code(), Some(1), "{out}");
    assert!(out.stderr.contains("DROVER_SERVER_MAX_BODY"), "{out}");
    let out = print_config(
        &empty,
        &["server", "--print-config", "--worker-timeout", "1ms"],
        &[],
    );
    assert_eq!(out.code(), Some(1), "{out}");
    assert!(out.stderr.contains("--worker-timeout"), "{out}");
}

#[test]
fn a_server_and_a_worker_run_with_their_configuration_file() {
    let dir = TempDir::new("config-run");
    let path = dir.path().join("drover.toml");
    std::fs::write(
        &path,
        "[server]\nmax_body = \"2KiB\"\n\n\
         [worker]\ncpus = 0.5\nmemory = \"300MiB\"\nlabels = { zone = \"eu\" }\n",
    )
    .unwrap();
    let config = path.to_str().unwrap();
    let mut c = Cluster::start_with("config-run", &["--config", config]);
    let big = vec![b' '; 4096];
    let r = http(&c.addr, "POST", "/v1/tasks", Some(&c.token), Some(&big));
    assert_eq!(r.status, 413, "max_body from the file: {}", r.text());
    c.add_worker("w", &["--config", config]);
    let w = &c.workers_info()[0];
    assert_eq!(w.capacity.cpu_milli, 500, "{w:?}");
    assert_eq!(w.capacity.memory_bytes, 300 << 20, "{w:?}");
    assert_eq!(
        w.labels.get("zone").map(String::as_str),
        Some("eu"),
        "{w:?}"
    );
}

/// A `drover up` process, SIGKILLed on drop if still running.
struct Up {
    child: Child,
    banner: Value,
    _dir: TempDir,
}

impl Up {
    fn start(tag: &str, args: &[&str]) -> Up {
        let dir = TempDir::new(tag);
        let mut cmd = drover_command();
        cmd.arg("--data-dir")
            .arg(dir.path())
            .args(["--json", "up", "--listen", "127.0.0.1:0"])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        let mut child = cmd.spawn().expect("start drover up");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = rx.recv_timeout(SLOW).unwrap_or_default();
        let banner: Value = match serde_json::from_str(&line) {
            Ok(v) => v,
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("`drover up --json` printed {line:?}: {e}");
            }
        };
        Up {
            child,
            banner,
            _dir: dir,
        }
    }

    /// The workers, once `n` are connected.
    fn workers(&self, n: usize) -> Vec<Value> {
        let addr = self.banner["url"]
            .as_str()
            .unwrap()
            .trim_start_matches("https://")
            .to_string();
        let token = read(Path::new(self.banner["token_file"].as_str().unwrap()));
        // `drover up` serves TLS with a CA of its own in its data directory.
        let ca = Path::new(self.banner["data_dir"].as_str().unwrap()).join("tls/ca.crt");
        let tls = common::tls::client_config(&ca, None);
        poll(
            &format!("{n} local workers"),
            SLOW,
            || {
                let v = common::tls::https_with(
                    &addr,
                    &tls,
                    "GET",
                    "/v1/workers",
                    Some(token.trim()),
                    &[],
                    None,
                )
                .ok()?
                .json();
                let list = v.as_array()?.clone();
                (list.len() == n && list.iter().all(|w| w["connected"] == true)).then_some(list)
            },
            String::new,
        )
    }

    fn stop(mut self) {
        sigterm(self.child.id());
        let deadline = std::time::Instant::now() + SLOW;
        while self.child.try_wait().unwrap().is_none() {
            assert!(std::time::Instant::now() < deadline, "up did not stop");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Up {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn sigterm(pid: u32) {
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status();
}

#[test]
fn up_splits_cpus_and_memory_exactly_and_says_when_a_share_is_small() {
    let up = Up::start(
        "up-split",
        &["--workers", "3", "--cpus", "1", "--memory", "3G"],
    );
    let workers = up.workers(3);
    let mut cpus: Vec<u64> = workers
        .iter()
        .map(|w| w["capacity"]["cpu_milli"].as_u64().unwrap())
        .collect();
    cpus.sort();
    assert_eq!(cpus, vec![333, 333, 334], "{workers:?}");
    for w in &workers {
        assert_eq!(w["capacity"]["memory_bytes"], 1u64 << 30, "{w}");
    }
    let warning = up.banner["warning"].as_str().unwrap_or_default();
    assert!(warning.contains("less than the 1 cpu"), "{}", up.banner);
    up.stop();

    // By default the host's CPUs are split: never more in all than the host has.
    let up = Up::start("up-default", &["--workers", "3"]);
    let workers = up.workers(3);
    let host = std::thread::available_parallelism().map_or(1, |n| n.get()) as u64 * 1000;
    let total: u64 = workers
        .iter()
        .map(|w| w["capacity"]["cpu_milli"].as_u64().unwrap())
        .sum();
    assert!(
        total <= host,
        "{total} millicores on a host of {host}: {workers:?}"
    );
    let shares: Vec<u64> = workers
        .iter()
        .map(|w| w["capacity"]["cpu_milli"].as_u64().unwrap())
        .collect();
    let (lo, hi) = (shares.iter().min().unwrap(), shares.iter().max().unwrap());
    assert!(hi - lo <= 1, "an even split: {shares:?}");
    assert_eq!(
        up.banner["warning"].is_string(),
        *lo < 1000,
        "a warning exactly when a share is under one cpu: {}",
        up.banner
    );
    up.stop();
}
