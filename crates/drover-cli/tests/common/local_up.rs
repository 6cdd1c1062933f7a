//! `drover up` as a child process (server and worker agent in one process), possibly
//! under another user, with the CLI pointed at its data directory. Included by the
//! tests that need it with `#[path]`, so `mod.rs` stays as it is.

use crate::common::{CliOutput, SLOW, drover_command, run_with_timeout};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running `drover --json up`, stopped (SIGTERM, then SIGKILL) on drop.
pub struct LocalUp {
    child: Child,
    pub data: PathBuf,
    /// `--json` banner: url, data_dir, token_file, ...
    pub banner: Value,
    /// Runs the CLI as the same user as `up` (e.g. `setpriv ... --`), or empty.
    wrapper: Vec<String>,
}

impl LocalUp {
    /// Starts `drover --data-dir DATA --json up --listen 127.0.0.1:0 ARGS`, under
    /// `wrapper` (a command prefix such as `setpriv --reuid=65534 ... --`) if any, with
    /// `env` added, and waits for its banner.
    pub fn start(data: &Path, wrapper: &[&str], args: &[&str], env: &[(&str, &str)]) -> LocalUp {
        let wrapper: Vec<String> = wrapper.iter().map(|s| s.to_string()).collect();
        let mut cmd = wrapped(&wrapper);
        cmd.arg("--data-dir")
            .arg(data)
            .args(["--json", "up", "--listen", "127.0.0.1:0"])
            .args(args)
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        let mut child = cmd.spawn().expect("start drover up");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            use std::io::BufRead;
            let mut line = String::new();
            let _ = std::io::BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = rx.recv_timeout(SLOW).unwrap_or_default();
        let banner = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("drover up printed no banner ({e}): {line:?}"));
        LocalUp {
            child,
            data: data.to_path_buf(),
            banner,
            wrapper,
        }
    }

    /// The `drover up` process: the server and the agent.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `drover --data-dir DATA ARGS` as the same user as `up`.
    pub fn cli(&self, args: &[&str]) -> CliOutput {
        let mut c = wrapped(&self.wrapper);
        c.arg("--data-dir").arg(&self.data).args(args);
        run_with_timeout(c, SLOW, String::new)
    }
}

fn wrapped(wrapper: &[String]) -> Command {
    let drover = drover_command();
    match wrapper.split_first() {
        None => drover,
        Some((first, rest)) => {
            let mut c = Command::new(first);
            c.args(rest).arg(drover.get_program());
            c
        }
    }
}

impl Drop for LocalUp {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(15);
        while matches!(self.child.try_wait(), Ok(None)) {
            if Instant::now() > deadline {
                let _ = self.child.kill();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}
