//! `drover top`: one frame as text (`--once`), and the live view in a real terminal
//! (a pseudo-terminal from util-linux's `script`), driven by keys.

mod common;

use common::*;
use serde_json::json;
use std::process::Command;
use std::time::{Duration, Instant};

#[test]
fn one_frame_shows_the_leader_the_tasks_by_state_and_each_worker() {
    let mut c = Cluster::start("top-once");
    let worker = c.add_worker("w", &["--cpus", "2", "--memory", "1G"]);
    let sleeper = c.submit(json!({"command": ["sleep", "30"], "resources": {"cpu_milli": 1500}}));
    let done = c.submit(json!({"command": ["true"], "resources": {"cpu_milli": 100}}));
    c.wait_state(sleeper, "running", SLOW);
    c.wait_final(done, SLOW);
    let out = c.cli_ok(&["top", "--once", "--width", "140", "--height", "20"]);
    let frame = out.stdout;
    assert!(frame.contains("server 1 leads (this one)"), "{frame}");
    assert!(frame.contains("running 1"), "{frame}");
    assert!(frame.contains("succeeded 1"), "{frame}");
    assert!(
        frame.contains("workers: 1 active, 0 draining, 0 lost"),
        "{frame}"
    );
    let row = frame
        .lines()
        .find(|l| l.contains(&worker))
        .unwrap_or_else(|| panic!("no row for {worker}:\n{frame}"));
    // cpu: used / allocated (the sleeper's 1.5) / capacity 2.0; one attempt running.
    assert!(row.contains("/ 1.5 / 2.0"), "{row}");
    assert!(row.contains("/ 1 GiB"), "memory capacity: {row}");
    assert!(
        row.trim_end()
            .trim_end_matches('│')
            .trim_end()
            .ends_with(" 1"),
        "{row}"
    );
    assert_eq!(frame.lines().count(), 20, "{frame}");

    // Bad flags are refused with a message, not a frame.
    let bad = c.cli(&["top", "--width", "80"]);
    assert!(!bad.status.success());
    assert!(bad.stderr.contains("--once"), "{bad}");
}

/// A tmux session running one command in a terminal of a fixed size; killed on drop.
struct Tmux {
    name: String,
}

impl Tmux {
    fn start(name: &str, command: &Command) -> Tmux {
        let line = std::iter::once(command.get_program())
            .chain(command.get_args())
            .map(|a| sh_quote(std::path::Path::new(a)))
            .collect::<Vec<_>>()
            .join(" ");
        // Keep the pane after the command exits, to read its exit status.
        let ok = Command::new("tmux")
            .args(["new-session", "-d", "-s", name, "-x", "140", "-y", "30"])
            .arg(format!("{line}; echo EXITED=$?; sleep 60"))
            .env("TERM", "xterm-256color")
            .status()
            .expect("tmux (scripts/test.sh installs it)");
        assert!(ok.success());
        Tmux {
            name: name.to_string(),
        }
    }

    fn screen(&self) -> String {
        let out = Command::new("tmux")
            .args(["capture-pane", "-p", "-t", &self.name])
            .output()
            .expect("tmux capture-pane");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn keys(&self, keys: &str) {
        let ok = Command::new("tmux")
            .args(["send-keys", "-t", &self.name, keys])
            .status()
            .expect("tmux send-keys");
        assert!(ok.success());
    }

    fn wait_for(&self, what: &str) -> String {
        let deadline = Instant::now() + SLOW;
        loop {
            let screen = self.screen();
            if screen.contains(what) {
                return screen;
            }
            assert!(
                Instant::now() < deadline,
                "the screen never showed {what:?}; it shows:\n{screen}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["kill-session", "-t", &self.name])
            .status();
    }
}

#[test]
fn the_live_view_redraws_on_events_drains_with_a_key_and_quits_with_q() {
    let mut c = Cluster::start("top-live");
    let worker = c.add_worker("w", &["--cpus", "2"]);
    let term = Tmux::start(
        &unique("drover-top"),
        &c.cli_command(&["top", "--interval", "30s"]),
    );
    term.wait_for(&worker);
    term.wait_for("running 0");
    // The refresh interval is 30 s: a change shown sooner came from the event stream.
    let started = Instant::now();
    let id = c.submit(json!({"command": ["sleep", "30"]}));
    c.wait_state(id, "running", SLOW);
    term.wait_for("running 1");
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
    // `d` drains the selected (only) worker.
    term.keys("d");
    c.poll("the worker drained from top", SLOW, || {
        c.workers_info()
            .iter()
            .any(|w| w.name == worker && w.state == drover_types::WorkerState::Draining)
            .then_some(())
    });
    term.wait_for("1 draining");
    term.keys("q");
    let screen = term.wait_for("EXITED=");
    assert!(screen.contains("EXITED=0"), "{screen}");
}
