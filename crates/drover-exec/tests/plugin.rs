//! Driver plugins end to end: the example Python plugin
//! (examples/plugins/drover-driver-pyexec) discovered from a directory and driven
//! through the `Driver` trait, plus small plugins written here that break the
//! protocol on purpose. Real python3, real processes, real pipes.

#![allow(unsafe_code)]

mod common;

use common::{Scratch, alive, all_gone, read_pids};
use drover_exec::plugin::{PluginConfig, PluginError, discover};
use drover_exec::{Driver, ExecError, LaunchSpec, OutputChunk, PluginDriver, Stream, TaskUser};
use drover_types::Outcome;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

fn example_plugin() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples/plugins/drover-driver-pyexec/drover-driver-pyexec")
}

/// A plugin directory under `root` holding the example plugin (and a README, which
/// is not executable and must be skipped).
fn plugin_dir(root: &Scratch) -> PathBuf {
    let dir = root.0.join("plugins");
    std::fs::create_dir_all(&dir).unwrap();
    install(&example_plugin(), &dir.join("drover-driver-pyexec"));
    std::fs::write(dir.join("README"), "not a plugin\n").unwrap();
    dir
}

/// Copies a plugin with the modes discovery insists on (whatever the umask): 0755
/// for it and its directory.
fn install(from: &Path, to: &Path) {
    std::fs::copy(from, to).unwrap();
    std::fs::set_permissions(to, std::fs::Permissions::from_mode(0o755)).unwrap();
    let dir = to.parent().unwrap();
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
}

fn write_script(dir: &Path, name: &str, text: &str) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    p
}

fn config(root: &Scratch) -> PluginConfig {
    let mut cfg = PluginConfig::new(root.0.join("work"));
    cfg.kill_grace = Duration::from_millis(500);
    cfg.usage_interval = Duration::from_millis(100);
    // Generous: python3 starts slowly on a loaded machine.
    cfg.request_timeout = Duration::from_secs(10);
    cfg
}

async fn pyexec(root: &Scratch) -> PluginDriver {
    let mut found = discover(&plugin_dir(root), &config(root)).await.unwrap();
    assert_eq!(found.len(), 1, "only the executable is a plugin");
    found.pop().unwrap()
}

fn sh(task: u64, script: &str) -> LaunchSpec {
    LaunchSpec {
        task,
        attempt: 1,
        command: vec!["/bin/sh".into(), "-c".into(), script.into()],
        ..LaunchSpec::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_plugin_is_discovered_and_streams_output_with_offsets() {
    let root = Scratch::new("plugin-stream");
    let driver = pyexec(&root).await;
    assert_eq!(driver.name(), "pyexec");
    let d = driver.description();
    assert_eq!(d.protocol, 1);
    assert!(d.capabilities.iter().any(|c| c == "usage"), "{d:?}");

    let (tx, mut rx) = mpsc::channel::<OutputChunk>(64);
    let mut spec = sh(
        1,
        "printf 'one\\n'; sleep 1; printf 'two\\n'; echo err >&2; exit 3",
    );
    spec.output = Some(tx);
    let started = Instant::now();
    let running = driver.launch(spec).unwrap();
    // The first line arrives while the task still sleeps: streamed, not batched.
    let first = tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .expect("no live output")
        .unwrap();
    assert_eq!(first.stream, Stream::Stdout);
    assert_eq!((first.offset, first.data.as_slice()), (0, &b"one\n"[..]));
    let before_end = started.elapsed();
    let finished = running.wait().await;
    assert!(
        before_end + Duration::from_millis(500) < started.elapsed(),
        "first chunk at {before_end:?}, end at {:?}",
        started.elapsed()
    );
    assert_eq!(finished.outcome, Outcome::Exited { code: 3 });
    assert_eq!(std::fs::read(&finished.stdout.path).unwrap(), b"one\ntwo\n");
    assert_eq!(std::fs::read(&finished.stderr.path).unwrap(), b"err\n");
    assert_eq!(finished.stdout.bytes, 8);
    assert_eq!(finished.result, b"one\ntwo\n");
    assert_eq!(
        finished.stdout.path,
        driver.log_path(1, 1, Stream::Stdout),
        "same log layout as the process driver"
    );
    // Offsets of every chunk follow each other per stream.
    let mut chunks = vec![first];
    while let Ok(c) = rx.try_recv() {
        chunks.push(c);
    }
    for stream in [Stream::Stdout, Stream::Stderr] {
        let mut next = 0;
        let mut all = Vec::new();
        for c in chunks.iter().filter(|c| c.stream == stream) {
            assert_eq!(c.offset, next, "{stream:?} chunks must be contiguous");
            next += c.data.len() as u64;
            all.extend_from_slice(&c.data);
        }
        let want: &[u8] = if stream == Stream::Stdout {
            b"one\ntwo\n"
        } else {
            b"err\n"
        };
        assert_eq!(all, want);
    }
    assert!(finished.usage.wall_ms >= 1000, "{:?}", finished.usage);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn environment_working_directory_stdin_argv_and_spawn_failures() {
    let root = Scratch::new("plugin-env");
    let driver = pyexec(&root).await;
    let mut spec = sh(
        2,
        "echo \"$FOO $DROVER_TASK_ID $DROVER_ATTEMPT\"; pwd; cat; echo; echo \"agent variable: ${CARGO_PKG_NAME:-none}\"",
    );
    spec.env.insert("FOO".into(), "bar".into());
    spec.stdin = Some(b"from stdin".to_vec());
    // Cargo sets it for this test process: the agent's environment is not the task's.
    assert!(std::env::var_os("CARGO_PKG_NAME").is_some());
    let finished = driver.launch(spec).unwrap().wait().await;
    assert_eq!(finished.outcome, Outcome::Exited { code: 0 });
    let dir = std::fs::canonicalize(driver.attempt_dir(2, 1)).unwrap();
    let out = String::from_utf8(finished.result).unwrap();
    assert_eq!(
        out,
        format!(
            "bar 2 1\n{}\nfrom stdin\nagent variable: none\n",
            dir.display()
        )
    );

    // argv without a shell: the space stays inside the argument.
    let finished = driver
        .launch(LaunchSpec {
            task: 3,
            attempt: 1,
            command: vec!["echo".into(), "a  b".into()],
            ..LaunchSpec::default()
        })
        .unwrap()
        .wait()
        .await;
    assert_eq!(finished.outcome, Outcome::Exited { code: 0 });
    assert_eq!(finished.result, b"a  b\n");

    // Signals the task itself received are reported as such.
    let finished = driver.launch(sh(4, "kill -9 $$")).unwrap().wait().await;
    assert_eq!(finished.outcome, Outcome::Signaled { signal: 9 });

    let finished = driver
        .launch(LaunchSpec {
            task: 5,
            attempt: 1,
            command: vec!["no-such-program-xyz".into()],
            ..LaunchSpec::default()
        })
        .unwrap()
        .wait()
        .await;
    match finished.outcome {
        Outcome::SpawnFailed { message } => {
            assert!(message.contains("no-such-program-xyz"), "{message}");
            assert!(message.contains("spawn_failed"), "{message}");
        }
        other => panic!("expected a spawn failure, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn time_limit_stops_then_kills_the_whole_group() {
    let root = Scratch::new("plugin-time");
    let driver = pyexec(&root).await;
    let pids = root.0.join("pids");

    // Ignores TERM: the worker's `stop` with KILL after the grace ends it.
    let mut spec = sh(
        6,
        &format!(
            "trap '' TERM; sleep 30 & echo $! >> {p}; echo $$ >> {p}; wait",
            p = pids.display()
        ),
    );
    spec.time_limit = Some(Duration::from_millis(300));
    let started = Instant::now();
    let running = driver.launch(spec).unwrap();
    let tree = read_pids(&pids, 2).await;
    let finished = running.wait().await;
    let took = started.elapsed();
    assert_eq!(finished.outcome, Outcome::TimedOut);
    assert!(
        took >= Duration::from_millis(700) && took < Duration::from_secs(5),
        "limit 300 ms + grace 500 ms, took {took:?}"
    );
    assert!(
        all_gone(&tree, Duration::from_secs(3)),
        "left running: {tree:?}"
    );

    // Ends at TERM (which it sees first), and exits 0: still timed out.
    let seen = root.0.join("seen");
    let mut spec = sh(
        7,
        &format!(
            "trap 'echo TERM > {}; exit 0' TERM; sleep 30 & wait",
            seen.display()
        ),
    );
    spec.time_limit = Some(Duration::from_millis(200));
    let finished = driver.launch(spec).unwrap().wait().await;
    assert_eq!(finished.outcome, Outcome::TimedOut);
    assert_eq!(std::fs::read_to_string(&seen).unwrap(), "TERM\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_stops_the_attempt_and_status_and_usage_follow_it() {
    let root = Scratch::new("plugin-cancel");
    let driver = pyexec(&root).await;
    // Burns CPU for a while, then sleeps until stopped.
    let spec = sh(
        8,
        "python3 -c 'import time\nt=time.time()\nwhile time.time()-t<0.6: pass'; sleep 30",
    );
    let running = driver.launch(spec).unwrap();
    let probe = running
        .usage_probe()
        .expect("plugin attempts have a usage probe");
    let kill = running.kill_handle();
    // Status and usage while it runs (the CPU figure comes from the plugin).
    let t = Instant::now();
    loop {
        if let Ok(s) = driver.status(8, 1).await
            && s.state == "running"
        {
            break;
        }
        assert!(t.elapsed() < Duration::from_secs(10), "never running");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let t = Instant::now();
    while probe.usage().cpu_time_ms == 0 {
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "no live usage from the plugin: {:?}",
            probe.usage()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(700)).await;
    let started = Instant::now();
    kill.kill(Duration::from_secs(8));
    let finished = running.wait().await;
    assert_eq!(finished.outcome, Outcome::Killed);
    assert!(
        started.elapsed() < Duration::from_secs(6),
        "TERM (not the KILL after 8 s) should end it"
    );
    assert!(finished.usage.wall_ms >= 700, "{:?}", finished.usage);
    assert_eq!(driver.status(8, 1).await.unwrap().state, "exited");
    // A second kill after the end changes nothing.
    kill.kill(Duration::ZERO);

    // Status of an attempt the plugin never ran is a typed refusal.
    match driver.status(999, 1).await {
        Err(ExecError::Plugin {
            source: PluginError::Refused { code, .. },
            ..
        }) => assert_eq!(code, "unknown_attempt"),
        other => panic!("expected unknown_attempt, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_that_dies_fails_its_attempts_and_is_restarted_at_the_next_launch() {
    let root = Scratch::new("plugin-crash");
    let driver = pyexec(&root).await;
    let first_pid = driver.plugin_pid().expect("a running plugin");
    let pids = root.0.join("pids");
    let running = driver
        .launch(sh(9, &format!("echo $$ > {}; sleep 30", pids.display())))
        .unwrap();
    let task_pid = read_pids(&pids, 1).await;
    // `status` is answered after `start` (the plugin answers in order): by now the
    // worker knows the attempt's process group.
    assert_eq!(driver.status(9, 1).await.unwrap().state, "running");
    // SAFETY: kill with plain integers, on the plugin this test started.
    assert_eq!(unsafe { libc::kill(first_pid as i32, libc::SIGKILL) }, 0);
    let finished = tokio::time::timeout(Duration::from_secs(10), running.wait())
        .await
        .expect("the attempt must end when its plugin dies");
    match &finished.outcome {
        Outcome::SpawnFailed { message } => {
            assert!(message.contains("died during the attempt"), "{message}");
            assert!(message.contains("signal: 9"), "{message}");
        }
        other => panic!("expected a failure naming the plugin's death, got {other:?}"),
    }
    assert!(
        all_gone(&task_pid, Duration::from_secs(3)),
        "the dead plugin's task {task_pid:?} must not outlive it"
    );
    assert!(!alive(first_pid as i32));

    let finished = driver.launch(sh(10, "echo again")).unwrap().wait().await;
    assert_eq!(finished.outcome, Outcome::Exited { code: 0 });
    assert_eq!(finished.result, b"again\n");
    let second_pid = driver.plugin_pid().unwrap();
    assert_ne!(first_pid, second_pid, "a new plugin process");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_plugin_enforces_memory_limits() {
    let root = Scratch::new("plugin-memory");
    let driver = pyexec(&root).await;
    assert!(
        driver
            .description()
            .capabilities
            .iter()
            .any(|c| c == "memory_limit")
    );
    // Grows to 400 MiB in 10 MiB steps, touching every page; the limit is 64 MiB.
    let mut spec = LaunchSpec {
        task: 11,
        attempt: 1,
        command: vec![
            "python3".into(),
            "-c".into(),
            "import time\nb=[]\nfor _ in range(40):\n    b.append(bytearray(10<<20))\n    time.sleep(0.02)\nprint('survived')".into(),
        ],
        ..LaunchSpec::default()
    };
    spec.memory_limit_bytes = Some(64 << 20);
    let finished = driver.launch(spec).unwrap().wait().await;
    assert_eq!(finished.outcome, Outcome::OutOfMemory);
    assert!(finished.result.is_empty(), "it must not have finished");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tasks_run_as_the_task_user_and_plugins_that_cannot_switch_are_refused() {
    let root = Scratch::new("plugin-user");
    let mut cfg = config(&root);
    cfg.task_user = TaskUser::for_agent(None).unwrap();
    let me = std::fs::metadata("/proc/self").unwrap();
    let want_uid = match &cfg.task_user {
        Some(u) => u.uid,
        None => {
            eprintln!(
                "SKIP (partly): not root, so tasks run as this user (uid {}); checking that",
                std::os::unix::fs::MetadataExt::uid(&me)
            );
            std::os::unix::fs::MetadataExt::uid(&me)
        }
    };
    let driver = discover(&plugin_dir(&root), &cfg)
        .await
        .unwrap()
        .pop()
        .unwrap();
    let finished = driver
        .launch(sh(12, "id -u; touch made-here && echo wrote"))
        .unwrap()
        .wait()
        .await;
    assert_eq!(finished.outcome, Outcome::Exited { code: 0 });
    assert_eq!(
        String::from_utf8(finished.result).unwrap(),
        format!("{want_uid}\nwrote\n")
    );

    // A plugin that does not say it can switch users is refused where tasks run as one.
    let dir = root.0.join("no-user");
    write_script(
        &dir,
        "plugin",
        &scripted_plugin(
            r#"{"name": "rooty", "version": "1", "protocol": 1, "capabilities": []}"#,
            "for _ in requests: pass",
        ),
    );
    let mut confined = config(&root);
    confined.task_user = Some(TaskUser {
        name: "nobody".into(),
        uid: 65534,
        gid: 65534,
    });
    let err = discover(&dir, &confined).await.unwrap_err();
    assert!(
        matches!(
            &err,
            ExecError::Plugin {
                source: PluginError::MissingCapability {
                    capability: "user",
                    ..
                },
                ..
            }
        ),
        "{err}"
    );
}

/// A plugin that answers `describe` with `describe` and then does what `rest`
/// (Python, with `send`, `requests` in scope) says.
fn scripted_plugin(describe: &str, rest: &str) -> String {
    format!(
        r#"#!/usr/bin/env python3
import base64, json, sys
def send(o):
    sys.stdout.write(json.dumps(o) + "\n"); sys.stdout.flush()
requests = (json.loads(l) for l in sys.stdin)
r = next(requests)
send({{"id": r["id"], "ok": True, "result": {describe}}})
{rest}
"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugins_that_break_the_protocol_are_refused_with_clear_errors() {
    let root = Scratch::new("plugin-refused");
    let cfg = config(&root);
    let cases: [(&str, String, &str); 5] = [
        (
            "version",
            scripted_plugin(
                r#"{"name": "future", "version": "9", "protocol": 2}"#,
                "for _ in requests: pass",
            ),
            "speaks protocol 2; this worker speaks protocol 1",
        ),
        (
            "name",
            scripted_plugin(
                r#"{"name": "Bad Name!", "version": "1", "protocol": 1}"#,
                "for _ in requests: pass",
            ),
            "a driver name is",
        ),
        (
            "garbage",
            "#!/bin/sh\necho 'hello, I am not JSON'\ncat >/dev/null\n".to_string(),
            "not protocol JSON",
        ),
        ("exits", "#!/bin/sh\nexit 7\n".to_string(), "exit status: 7"),
        (
            "silent",
            "#!/bin/sh\nexec sleep 60\n".to_string(),
            "did not answer describe",
        ),
    ];
    // Only the silent one waits out its timeout.
    let mut short = cfg.clone();
    short.request_timeout = Duration::from_secs(1);
    for (tag, text, expect) in cases {
        let dir = root.0.join(tag);
        write_script(&dir, "plugin", &text);
        let cfg = if tag == "silent" { &short } else { &cfg };
        let err = discover(&dir, cfg).await.expect_err(tag);
        let msg = error_chain(&err);
        assert!(msg.contains(expect), "{tag}: {msg:?} should say {expect:?}");
        assert!(msg.contains("driver plugin"), "{tag}: {msg}");
    }

    // Two plugins calling themselves the same.
    let dir = plugin_dir(&root);
    install(&example_plugin(), &dir.join("another-pyexec"));
    let err = discover(&dir, &cfg).await.expect_err("duplicate names");
    assert!(
        matches!(
            err,
            ExecError::Plugin {
                source: PluginError::DuplicateName { .. },
                ..
            }
        ),
        "{err}"
    );
    // A plugin anybody may rewrite would run their code as the worker.
    let dir = root.0.join("loose");
    std::fs::create_dir_all(&dir).unwrap();
    let loose = dir.join("drover-driver-pyexec");
    install(&example_plugin(), &loose);
    std::fs::set_permissions(&loose, std::fs::Permissions::from_mode(0o777)).unwrap();
    let err = discover(&dir, &cfg)
        .await
        .expect_err("world-writable plugin");
    assert!(
        error_chain(&err).contains("writable by its group or others"),
        "{err}"
    );
    std::fs::set_permissions(&loose, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    let err = discover(&dir, &cfg)
        .await
        .expect_err("world-writable directory");
    assert!(error_chain(&err).contains("loose is writable"), "{err}");
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    assert_eq!(discover(&dir, &cfg).await.unwrap().len(), 1);

    // A directory that does not exist.
    let err = discover(&root.0.join("nowhere"), &cfg).await.unwrap_err();
    assert!(error_chain(&err).contains("nowhere"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gap_in_output_offsets_is_repaired_with_a_logs_replay() {
    let root = Scratch::new("plugin-gap");
    let dir = root.0.join("gap");
    // Sends "ab" at 0, then "ef" at 4 (skipping "cd"); when asked for `logs` from 2,
    // replays "cdef", then reports the exit.
    write_script(
        &dir,
        "gappy",
        &scripted_plugin(
            r#"{"name": "gappy", "version": "1", "protocol": 1, "capabilities": ["logs"]}"#,
            r#"
def out(off, data):
    send({"event": "output", "task": 1, "attempt": 1, "stream": "stdout", "offset": off,
          "data": base64.b64encode(data).decode()})
for r in requests:
    if r["op"] == "start":
        send({"id": r["id"], "ok": True, "result": {}})
        out(0, b"ab"); out(4, b"ef")
    elif r["op"] == "logs":
        assert (r["stream"], r["offset"]) == ("stdout", 2), r
        out(2, b"cdef")
        send({"id": r["id"], "ok": True, "result": {"bytes": 6}})
        send({"event": "exit", "task": 1, "attempt": 1, "outcome": {"kind": "exited", "code": 0}})
    else:
        send({"id": r["id"], "ok": False, "error": {"code": "unknown_op", "message": r["op"]}})
"#,
        ),
    );
    let driver = discover(&dir, &config(&root)).await.unwrap().pop().unwrap();
    let spec = LaunchSpec {
        task: 1,
        attempt: 1,
        command: vec!["anything".into()],
        ..LaunchSpec::default()
    };
    let finished =
        tokio::time::timeout(Duration::from_secs(10), driver.launch(spec).unwrap().wait())
            .await
            .expect("the scripted attempt must end");
    assert_eq!(finished.outcome, Outcome::Exited { code: 0 });
    assert_eq!(std::fs::read(&finished.stdout.path).unwrap(), b"abcdef");

    // A plugin that cannot replay: the output is kept with its gap, nothing is lost
    // after it.
    let dir = root.0.join("gap-forever");
    write_script(
        &dir,
        "gappy",
        &scripted_plugin(
            r#"{"name": "gappy", "version": "1", "protocol": 1}"#,
            r#"
def out(off, data):
    send({"event": "output", "task": 1, "attempt": 2, "stream": "stdout", "offset": off,
          "data": base64.b64encode(data).decode()})
for r in requests:
    if r["op"] == "start":
        send({"id": r["id"], "ok": True, "result": {}})
        out(0, b"ab"); out(4, b"ef")
    elif r["op"] == "logs":
        send({"id": r["id"], "ok": False, "error": {"code": "unknown_op", "message": "no logs"}})
        out(6, b"gh")
        send({"event": "exit", "task": 1, "attempt": 2, "outcome": {"kind": "exited", "code": 0}})
    else:
        send({"id": r["id"], "ok": False, "error": {"code": "unknown_op", "message": r["op"]}})
"#,
        ),
    );
    let driver = discover(&dir, &config(&root)).await.unwrap().pop().unwrap();
    let spec = LaunchSpec {
        task: 1,
        attempt: 2,
        command: vec!["anything".into()],
        ..LaunchSpec::default()
    };
    let finished =
        tokio::time::timeout(Duration::from_secs(10), driver.launch(spec).unwrap().wait())
            .await
            .expect("the scripted attempt must end");
    assert_eq!(finished.outcome, Outcome::Exited { code: 0 });
    // "cd" is missing for good; "ef", held while the replay was awaited, and "gh"
    // follow "ab".
    assert_eq!(std::fs::read(&finished.stdout.path).unwrap(), b"abefgh");
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_attempts_keep_their_own_output_and_limits_apply_as_for_processes() {
    let root = Scratch::new("plugin-many");
    let mut cfg = config(&root);
    cfg.output_limit_bytes = 1000;
    cfg.result_limit_bytes = 100;
    let driver = discover(&plugin_dir(&root), &cfg)
        .await
        .unwrap()
        .pop()
        .unwrap();
    let running: Vec<_> = (20..28u64)
        .map(|task| {
            driver
                .launch(sh(
                    task,
                    &format!("for i in 1 2 3; do echo task {task} line $i; sleep 0.05; done"),
                ))
                .unwrap()
        })
        .collect();
    for (task, attempt) in (20..28u64).zip(running) {
        let finished = attempt.wait().await;
        assert_eq!(finished.outcome, Outcome::Exited { code: 0 });
        let want: String = (1..=3).map(|i| format!("task {task} line {i}\n")).collect();
        assert_eq!(
            std::fs::read_to_string(&finished.stdout.path).unwrap(),
            want
        );
    }

    // 5000 bytes against a 1000-byte limit: the file keeps 1000 and the marker, the
    // count keeps all, the result its first 100.
    let finished = driver
        .launch(sh(30, "head -c 5000 /dev/zero | tr '\\0' x"))
        .unwrap()
        .wait()
        .await;
    assert_eq!(finished.outcome, Outcome::Exited { code: 0 });
    assert_eq!(finished.stdout.bytes, 5000);
    assert!(finished.stdout.truncated);
    let file = std::fs::read(&finished.stdout.path).unwrap();
    let marker = drover_exec::truncation_marker(1000);
    assert_eq!(file.len(), 1000 + marker.len());
    assert!(file.ends_with(marker.as_bytes()));
    assert_eq!(finished.result, vec![b'x'; 100]);
}

/// The protocol's end rule, checked on the example plugin by hand: when its stdin
/// closes (the worker went away), it kills what it runs and exits.
#[test]
fn the_example_plugin_ends_its_attempts_when_its_stdin_closes() {
    use std::io::{BufRead, Write};
    let root = Scratch::new("plugin-eof");
    let pids = root.0.join("pids");
    let mut plugin = std::process::Command::new(example_plugin())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = plugin.stdin.take().unwrap();
    let start = serde_json::json!({
        "id": 1, "op": "start", "task": 1, "attempt": 1,
        "argv": ["/bin/sh", "-c", format!("echo $$ > {}; sleep 30", pids.display())],
        "shell": false, "env": {"PATH": "/usr/bin:/bin"}, "workdir": root.0,
        "limits": {"cpu_milli": 0}, "extra": {}
    });
    writeln!(stdin, "{start}").unwrap();
    let mut out = std::io::BufReader::new(plugin.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    let answer: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(answer["ok"], true, "{line}");
    let t = Instant::now();
    let task: Vec<i32> = loop {
        if let Ok(text) = std::fs::read_to_string(&pids)
            && let Ok(pid) = text.trim().parse()
        {
            break vec![pid];
        }
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "the task never started"
        );
        std::thread::sleep(Duration::from_millis(10));
    };
    drop(stdin);
    let t = Instant::now();
    loop {
        if plugin.try_wait().unwrap().is_some() {
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "the plugin did not exit"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        all_gone(&task, Duration::from_secs(3)),
        "its task {task:?} outlived it"
    );
}
