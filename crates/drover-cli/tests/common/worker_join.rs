//! Workers that join with a join token instead of the cluster token, and restart with
//! the credential they were given (no token at all on their command line).

use super::*;

impl Cluster {
    /// Starts a worker with `--join-token T` and no cluster token; waits until it is
    /// connected when `wait` (else the test watches it, e.g. for a refusal).
    pub fn add_worker_joining(&mut self, short: &str, join_token: &str, wait: bool) -> String {
        let name = unique(short);
        let mut w = WorkerProc {
            short: short.to_string(),
            name: name.clone(),
            child: None,
            log: self.root.join(format!("worker-{short}.log")),
            args: vec!["--kill-grace".into(), "1s".into()],
            data_dir: self.root.join(format!("wdata-{short}")),
            netns: None,
        };
        self.spawn_worker_tokenless(&mut w, Some(join_token));
        self.workers.push(w);
        if wait {
            self.wait_worker_connected(&name);
        }
        name
    }

    /// Starts a killed worker again with neither a join token nor the cluster token:
    /// it must connect with the credential in its data directory.
    pub fn restart_worker_tokenless(&mut self, short: &str) {
        let i = self
            .workers
            .iter()
            .position(|w| w.short == short)
            .unwrap_or_else(|| panic!("no worker {short}"));
        let mut w = self.workers.remove(i);
        assert!(
            w.child.is_none(),
            "kill worker {short} before restarting it"
        );
        self.spawn_worker_tokenless(&mut w, None);
        let name = w.name.clone();
        self.workers.insert(i, w);
        self.wait_worker_connected(&name);
    }

    /// The worker's data directory (`workers/<name>` inside its `--data-dir`).
    pub fn worker_dir(&self, short: &str) -> PathBuf {
        let w = self.worker(short);
        w.data_dir.join("workers").join(&w.name)
    }

    fn spawn_worker_tokenless(&self, w: &mut WorkerProc, join_token: Option<&str>) {
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&w.log)
            .expect("worker log");
        let mut cmd = drover_command();
        cmd.arg("--data-dir")
            .arg(&w.data_dir)
            .args(["--server", &self.url]);
        if let Some(ca) = self.ca_file() {
            cmd.arg("--ca").arg(ca);
        }
        cmd.args(["worker", "--name", &w.name])
            .args(&w.args)
            .env("DROVER_LOG", "info")
            .env_remove("DROVER_TOKEN")
            .stdout(Stdio::null())
            .stderr(Stdio::from(log));
        if let Some(t) = join_token {
            cmd.env("DROVER_JOIN_TOKEN", t);
        }
        w.child = Some(cmd.spawn().expect("start drover worker"));
    }
}
