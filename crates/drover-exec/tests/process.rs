//! The process driver against real processes, in both cgroup and fallback modes.

mod common;

use common::*;
use drover_exec::{CgroupMode, Driver, OutputChunk, ProcessDriver, Stream, truncation_marker};
use drover_types::Outcome;
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_argv_as_given_without_a_shell() {
    let root = Scratch::new("argv");
    let d = driver(&root, "argv", CgroupMode::Auto);
    let a = d
        .launch(spec(1, &["printf", "%s|", "a b", "$HOME", ";true"]))
        .unwrap();
    assert!(a.pid().is_some());
    let f = a.wait().await;
    assert_eq!(f.outcome, Outcome::Exited { code: 0 });
    assert_eq!(f.result, b"a b|$HOME|;true|");
    assert_eq!(std::fs::read(&f.stdout.path).unwrap(), b"a b|$HOME|;true|");
    assert_eq!(f.stdout.bytes, 16);
    assert!(!f.stdout.truncated);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shell_mode_joins_arguments() {
    let root = Scratch::new("shell");
    let d = driver(&root, "shell", CgroupMode::Auto);
    let mut s = spec(
        7,
        &["echo", "task=$DROVER_TASK_ID", "1>&2", "&&", "exit", "3"],
    );
    s.shell = true;
    let f = d.launch(s).unwrap().wait().await;
    assert_eq!(f.outcome, Outcome::Exited { code: 3 });
    assert_eq!(std::fs::read_to_string(&f.stderr.path).unwrap(), "task=7\n");
    assert_eq!(f.stdout.bytes, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn environment_is_minimal_plus_task_and_driver_variables() {
    assert!(
        std::env::var("CARGO_MANIFEST_DIR").is_ok(),
        "cargo sets this for tests"
    );
    let root = Scratch::new("env");
    let d = driver(&root, "env", CgroupMode::Off);
    let mut s = spec(3, &["env"]);
    s.attempt = 2;
    s.env.insert("FOO".into(), "bar baz".into());
    s.env.insert("DROVER_TASK_ID".into(), "forged".into());
    let a = d.launch(s).unwrap();
    let dir = a.dir().to_path_buf();
    let f = a.wait().await;
    assert_eq!(f.outcome, Outcome::Exited { code: 0 });
    let out = String::from_utf8(f.result).unwrap();
    let vars: std::collections::BTreeMap<&str, &str> =
        out.lines().filter_map(|l| l.split_once('=')).collect();
    assert_eq!(vars.get("FOO"), Some(&"bar baz"));
    assert_eq!(vars.get("DROVER_TASK_ID"), Some(&"3"));
    assert_eq!(vars.get("DROVER_ATTEMPT"), Some(&"2"));
    let workdir = dir.clone();
    assert_eq!(vars.get("DROVER_WORKDIR"), Some(&workdir.to_str().unwrap()));
    assert!(vars.contains_key("PATH"));
    assert!(
        !vars.contains_key("CARGO_MANIFEST_DIR"),
        "agent env leaked: {out}"
    );
    assert!(!vars.contains_key("RUST_TEST_THREADS"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn working_directory_default_given_and_missing() {
    let root = Scratch::new("cwd");
    let mut cfg = config(&root, "cwd", CgroupMode::Off);
    cfg.allowed_paths = vec!["/tmp".into()];
    let d = ProcessDriver::new(cfg).unwrap();
    let a = d.launch(spec(1, &["pwd"])).unwrap();
    let expected = format!("{}\n", a.dir().display());
    let f = a.wait().await;
    assert_eq!(String::from_utf8(f.result).unwrap(), expected);

    let mut s = spec(2, &["pwd"]);
    s.workdir = Some("/tmp".into());
    let f = d.launch(s).unwrap().wait().await;
    assert_eq!(f.result, b"/tmp\n");

    let mut s = spec(3, &["pwd"]);
    s.workdir = Some("/nonexistent/dir".into());
    let f = d.launch(s).unwrap().wait().await;
    match f.outcome {
        Outcome::SpawnFailed { message } => {
            assert!(
                message.contains("working directory /nonexistent/dir"),
                "{message}"
            )
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_program_is_a_spawn_failure() {
    let root = Scratch::new("missing");
    let d = driver(&root, "missing", CgroupMode::Auto);
    for cmd in [
        &["no-such-program-drover"][..],
        &["/no/such/program"][..],
        &[][..],
    ] {
        let a = d.launch(spec(1, cmd)).unwrap();
        assert_eq!(a.pid(), None);
        match a.wait().await.outcome {
            Outcome::SpawnFailed { message } => assert!(!message.is_empty()),
            other => panic!("{cmd:?}: {other:?}"),
        }
    }
    // Exists but is not executable: std reports it at spawn.
    let f = d.launch(spec(2, &["/etc/hostname"])).unwrap().wait().await;
    assert!(
        matches!(f.outcome, Outcome::SpawnFailed { .. }),
        "{:?}",
        f.outcome
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stdin_exit_codes_and_signals() {
    let root = Scratch::new("codes");
    let d = driver(&root, "codes", CgroupMode::Auto);
    let mut s = spec(1, &["cat"]);
    s.stdin = Some(b"hello\nworld\n".to_vec());
    let f = d.launch(s).unwrap().wait().await;
    assert_eq!(f.outcome, Outcome::Exited { code: 0 });
    assert_eq!(f.result, b"hello\nworld\n");

    let f = d.launch(sh(2, "exit 42")).unwrap().wait().await;
    assert_eq!(f.outcome, Outcome::Exited { code: 42 });

    let f = d.launch(sh(3, "kill -SEGV $$")).unwrap().wait().await;
    assert_eq!(f.outcome, Outcome::Signaled { signal: 11 });
}

/// A script that ignores SIGTERM and leaves a grandchild in a new session: the
/// classic way to outlive a process-group kill.
const NASTY: &str = r#"
trap '' TERM
setsid sh -c 'echo $$ >> pids; sleep 1000 & echo $! >> pids; wait' &
echo $$ >> pids
while true; do sleep 0.1; done
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn time_limit_kills_the_whole_tree_even_escaped_sessions() {
    for mode in modes() {
        let root = Scratch::new(&format!("timeout-{mode:?}"));
        let d = driver(&root, &format!("timeout-{mode:?}"), mode);
        let mut s = sh(1, NASTY);
        s.time_limit = Some(Duration::from_secs(1));
        let t = Instant::now();
        let a = d.launch(s).unwrap();
        let pids_file = a.dir().join("pids");
        let pids = read_pids(&pids_file, 3).await;
        let f = a.wait().await;
        let took = t.elapsed();
        assert_eq!(f.outcome, Outcome::TimedOut, "{mode:?}");
        // limit 1 s + grace 0.5 s + 1 s slack
        assert!(
            took < Duration::from_millis(2500),
            "{mode:?}: took {took:?}"
        );
        assert!(took >= Duration::from_secs(1), "{mode:?}: took {took:?}");
        assert!(
            all_gone(&pids, Duration::from_millis(500)),
            "{mode:?}: survivors among {pids:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timed_out_even_when_it_exits_zero_on_sigterm() {
    let root = Scratch::new("timeout0");
    let d = driver(&root, "timeout0", CgroupMode::Auto);
    let mut s = sh(1, "trap 'exit 0' TERM; sleep 30 & wait");
    s.time_limit = Some(Duration::from_millis(300));
    let f = d.launch(s).unwrap().wait().await;
    assert_eq!(f.outcome, Outcome::TimedOut);
    assert!(f.usage.wall_ms < 2000, "{:?}", f.usage);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_on_request_is_idempotent() {
    for mode in modes() {
        let root = Scratch::new(&format!("kill-{mode:?}"));
        let d = driver(&root, &format!("kill-{mode:?}"), mode);
        let a = d
            .launch(sh(1, "trap '' TERM; echo $$ > pids; sleep 100"))
            .unwrap();
        let pids = read_pids(&a.dir().join("pids"), 1).await;
        let h = a.kill_handle();
        let t = Instant::now();
        h.kill(Duration::from_millis(300));
        h.kill(Duration::from_secs(60)); // cannot lengthen the grace
        let f = a.wait().await;
        assert_eq!(f.outcome, Outcome::Killed, "{mode:?}");
        assert!(
            t.elapsed() < Duration::from_millis(1500),
            "{:?}",
            t.elapsed()
        );
        assert!(all_gone(&pids, Duration::from_millis(500)));
        h.kill(Duration::ZERO); // after the end: no effect, no panic
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn output_is_bounded_marked_and_drained() {
    let root = Scratch::new("output");
    let mut cfg = config(&root, "output", CgroupMode::Auto);
    cfg.output_limit_bytes = 1000;
    cfg.result_limit_bytes = 100;
    let d = drover_exec::ProcessDriver::new(cfg).unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::channel::<OutputChunk>(1024);
    // 8 MiB on stdout (far more than a pipe buffer) and a little on stderr.
    let mut s = sh(1, "head -c 8388608 /dev/zero; echo oops >&2");
    s.output = Some(tx);
    s.time_limit = Some(Duration::from_secs(20));
    let f = d.launch(s).unwrap().wait().await;
    assert_eq!(f.outcome, Outcome::Exited { code: 0 });
    assert_eq!(f.stdout.bytes, 8 << 20);
    assert!(f.stdout.truncated);
    let file = std::fs::read(&f.stdout.path).unwrap();
    let marker = truncation_marker(1000);
    assert_eq!(file.len(), 1000 + marker.len());
    assert!(file.ends_with(marker.as_bytes()));
    assert_eq!(f.result.len(), 100);
    assert_eq!(std::fs::read(&f.stderr.path).unwrap(), b"oops\n");
    assert!(!f.stderr.truncated);

    let mut stdout_live = Vec::new();
    let mut stderr_live = Vec::new();
    while let Ok(c) = rx.try_recv() {
        let buf = match c.stream {
            Stream::Stdout => &mut stdout_live,
            Stream::Stderr => &mut stderr_live,
        };
        assert_eq!(
            c.offset,
            buf.len() as u64,
            "chunks arrive in order, no gaps"
        );
        buf.extend_from_slice(&c.data);
    }
    assert_eq!(stdout_live, file);
    assert_eq!(stderr_live, b"oops\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_limit_ends_in_out_of_memory() {
    for mode in modes() {
        let root = Scratch::new(&format!("oom-{mode:?}"));
        let d = driver(&root, &format!("oom-{mode:?}"), mode);
        let mut s = spec(
            1,
            &[
                "python3",
                "-c",
                "x = bytearray(300*1024*1024)\nfor i in range(0, len(x), 4096): x[i] = 1\nimport time; time.sleep(5)",
            ],
        );
        s.memory_limit_bytes = Some(100 << 20);
        s.time_limit = Some(Duration::from_secs(20));
        let t = Instant::now();
        let f = d.launch(s).unwrap().wait().await;
        assert_eq!(f.outcome, Outcome::OutOfMemory, "{mode:?}: {f:?}");
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "{mode:?}: {:?}",
            t.elapsed()
        );
        // The peak is near the limit (cgroup: capped by it; polling: caught past it).
        assert!(
            f.usage.peak_memory_bytes > 50 << 20,
            "{mode:?}: {:?}",
            f.usage
        );
        // The agent is fine and keeps running tasks, and a reused cgroup does not
        // carry the OOM kill over to the next attempt.
        let f = d.launch(sh(2, "exit 1")).unwrap().wait().await;
        assert_eq!(f.outcome, Outcome::Exited { code: 1 }, "{mode:?}");
        let f = d.launch(spec(3, &["true"])).unwrap().wait().await;
        assert!(f.outcome.is_success());
        assert!(
            f.usage.peak_memory_bytes < 32 << 20,
            "{mode:?}: {:?}",
            f.usage
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_counts_cpu_memory_and_io() {
    for mode in modes() {
        let root = Scratch::new(&format!("usage-{mode:?}"));
        let d = driver(&root, &format!("usage-{mode:?}"), mode);
        // CPU in a child of the main process, memory in python, writes with fsync.
        let script = "sh -c 'i=0; while [ $i -lt 200000 ]; do i=$((i+1)); done'; \
                      python3 -c 'x = bytearray(64*1024*1024); x[::4096] = b\"\\x01\" * (len(x)//4096)'; \
                      dd if=/dev/zero of=big bs=1M count=8 conv=fsync 2>/dev/null";
        let a = d.launch(sh(1, script)).unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        let live = a.usage();
        assert!(live.wall_ms >= 40, "{live:?}");
        let f = a.wait().await;
        assert_eq!(f.outcome, Outcome::Exited { code: 0 }, "{mode:?}");
        let u = f.usage;
        assert!(u.cpu_time_ms >= 100, "{mode:?}: {u:?}");
        assert!(u.cpu_time_ms <= u.wall_ms + 50, "{mode:?}: {u:?}");
        assert!(u.peak_memory_bytes >= 60 << 20, "{mode:?}: {u:?}");
        assert!(u.write_bytes >= 8 << 20, "{mode:?}: {u:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cgroups_are_born_into_reused_and_removed_and_attempt_dir_kept_until_asked() {
    let root = Scratch::new("cleanup");
    let d = driver(&root, "cleanup", CgroupMode::Auto);
    let a = d.launch(sh(1, "cat /proc/self/cgroup; sleep 0.2")).unwrap();
    assert!(a.dir().is_dir());
    let dir = a.dir().to_path_buf();
    let f = a.wait().await;
    assert!(f.outcome.is_success());
    let mut cgroup_dirs = Vec::new();
    if d.cgroups_active() {
        // Born inside: even `cat`, forked at once by the shell, is in every hierarchy.
        let text = String::from_utf8(f.result.clone()).unwrap();
        for ctrl in d.cgroup_controllers() {
            let line = text
                .lines()
                .find(|l| {
                    l.split(':')
                        .nth(1)
                        .is_some_and(|c| c.split(',').any(|x| x == ctrl))
                })
                .unwrap();
            let path = line.splitn(3, ':').nth(2).unwrap();
            assert!(
                path.contains("/drover/"),
                "{ctrl}: task ran outside its cgroup: {text}"
            );
            let cg = std::path::Path::new("/sys/fs/cgroup")
                .join(ctrl)
                .join(path.trim_start_matches('/'));
            // Idle in the pool: empty, ready for the next attempt.
            let procs = std::fs::read_to_string(cg.join("cgroup.procs")).unwrap();
            assert!(
                procs.trim().is_empty(),
                "{} still holds {procs}",
                cg.display()
            );
            cgroup_dirs.push(cg);
        }
        // Later attempts reuse pooled cgroups, with fresh counters. Which one is not
        // fixed (spawner threads wait inside a few idle ones ahead of the launches),
        // but running attempt after attempt cycles through a small set.
        let mut seen = std::collections::BTreeSet::from([text.clone()]);
        for i in 0..12 {
            let f2 = d
                .launch(sh(2 + i, "cat /proc/self/cgroup"))
                .unwrap()
                .wait()
                .await;
            let text2 = String::from_utf8(f2.result).unwrap();
            assert!(
                text2.contains("/drover/"),
                "ran outside its cgroup: {text2}"
            );
            assert!(
                f2.usage.cpu_time_ms < f.usage.cpu_time_ms + 100,
                "{:?}",
                f2.usage
            );
            seen.insert(text2);
        }
        assert!(
            seen.len() <= 8,
            "13 attempts one after another used {} cgroups: the pool is not reused",
            seen.len()
        );
        // Every cgroup used must be gone once the driver is.
        for text in &seen {
            for line in text.lines().filter(|l| l.contains("/drover/")) {
                let mut parts = line.splitn(3, ':');
                let (_, ctrl, path) = (parts.next(), parts.next().unwrap(), parts.next().unwrap());
                let ctrl = if ctrl.starts_with("name=") {
                    continue;
                } else {
                    ctrl
                };
                let cg = std::path::Path::new("/sys/fs/cgroup")
                    .join(ctrl)
                    .join(path.trim_start_matches('/'));
                if !cgroup_dirs.contains(&cg) {
                    cgroup_dirs.push(cg);
                }
            }
        }
    }
    assert!(f.stdout.path.exists());
    assert!(!f.stderr.path.exists(), "a silent stream has no file");
    d.remove_attempt_dir(1, 1).unwrap();
    assert!(!dir.exists());
    assert!(!f.stdout.path.exists());
    d.remove_attempt_dir(1, 1).unwrap();
    drop(d);
    // The last attempt's cgroup may be released a moment after its end (once the
    // spawner thread that started it is out): allow for that, not more.
    let deadline = Instant::now() + Duration::from_secs(2);
    while cgroup_dirs.iter().any(|cg| cg.exists()) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for cg in cgroup_dirs {
        assert!(!cg.exists(), "{} left behind", cg.display());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn normal_exit_leaves_no_background_processes_in_its_group() {
    let root = Scratch::new("bg");
    let d = driver(&root, "bg", CgroupMode::Off);
    let a = d.launch(sh(1, "sleep 1000 & echo $! > pids")).unwrap();
    let pids_path = a.dir().join("pids");
    let f = a.wait().await;
    assert!(f.outcome.is_success());
    let pids = read_pids(&pids_path, 1).await;
    assert!(all_gone(&pids, Duration::from_millis(500)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_short_tasks_in_parallel() {
    let root = Scratch::new("many");
    // The agent holds drivers as trait objects.
    let d: std::sync::Arc<dyn Driver> =
        std::sync::Arc::new(driver(&root, "many", CgroupMode::Auto));
    let mut handles = Vec::new();
    for i in 0..100u64 {
        let a = d.launch(spec(i, &["echo", &i.to_string()])).unwrap();
        handles.push(tokio::spawn(a.wait()));
    }
    for (i, h) in handles.into_iter().enumerate() {
        let f = h.await.unwrap();
        assert_eq!(f.outcome, Outcome::Exited { code: 0 });
        assert_eq!(f.result, format!("{i}\n").into_bytes());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn escaped_session_holding_the_output_pipe_is_hunted_down_at_exit() {
    for mode in modes() {
        let root = Scratch::new(&format!("escape-{mode:?}"));
        let d = driver(&root, &format!("escape-{mode:?}"), mode);
        // The grandchild keeps stdout open and leaves the group; the main process exits 0.
        let a = d
            .launch(sh(
                1,
                "setsid sh -c 'echo $$ >> pids; exec sleep 1000' & sleep 0.2; echo done",
            ))
            .unwrap();
        let pids_path = a.dir().join("pids");
        let t = Instant::now();
        let f = a.wait().await;
        assert_eq!(f.outcome, Outcome::Exited { code: 0 }, "{mode:?}");
        assert_eq!(f.result, b"done\n");
        assert!(
            t.elapsed() < Duration::from_secs(3),
            "{mode:?}: {:?}",
            t.elapsed()
        );
        let pids = read_pids(&pids_path, 1).await;
        assert!(
            all_gone(&pids, Duration::from_millis(500)),
            "{mode:?}: {pids:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_right_after_launch() {
    let root = Scratch::new("kill-now");
    let d = driver(&root, "kill-now", CgroupMode::Auto);
    let a = d.launch(spec(1, &["sleep", "100"])).unwrap();
    a.kill_handle().kill(Duration::ZERO);
    let f = a.wait().await;
    assert_eq!(f.outcome, Outcome::Killed);
    assert!(f.usage.wall_ms < 1000, "{:?}", f.usage);
}
