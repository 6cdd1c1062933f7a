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
        self.spawn_worker_as(&mut w, WorkerCredential::JoinToken(join_token));
        self.workers.push(w);
        if wait {
            self.wait_worker_connected(&name);
        }
        name
    }

    /// Starts a killed worker again with neither a join token nor the cluster token:
    /// it must connect with the credential in its data directory.
    pub fn restart_worker_tokenless(&mut self, short: &str) {
        self.restart_worker_as(short, WorkerCredential::Stored);
    }

    /// The worker's data directory (`workers/<name>` inside its `--data-dir`).
    pub fn worker_dir(&self, short: &str) -> PathBuf {
        let w = self.worker(short);
        w.data_dir.join("workers").join(&w.name)
    }
}
