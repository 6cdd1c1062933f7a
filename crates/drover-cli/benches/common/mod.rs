//! What the benches of this crate share: reading a process's figures from /proc, and
//! waiting for a started server to write its endpoint and token, a client of it. Each
//! bench uses part.
#![allow(dead_code)]

use std::path::Path;
use std::process::Child;
use std::time::{Duration, Instant};

/// A child process killed and reaped when dropped.
pub struct Proc(pub Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A `kB` field of `/proc/PID/status` (`VmRSS:`, `VmHWM:`); 0 once the process is gone.
pub fn status_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// Resident set size, in MiB.
pub fn rss_mib(pid: u32) -> f64 {
    status_kib(pid, "VmRSS:") as f64 / 1024.0
}

/// User + system CPU time of a process, in milliseconds (USER_HZ is 100 on Linux).
pub fn cpu_ms(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: u64 = fields.get(11).and_then(|v| v.parse().ok()).unwrap_or(0)
        + fields.get(12).and_then(|v| v.parse().ok()).unwrap_or(0);
    ticks * 10
}

/// An SDK client of the server started with `--data-dir data` at `url`: over TLS with
/// the CA the server made in its data directory when `url` is `https://` (a bare
/// server's default), as the CLI on this machine finds it.
pub fn local_client(data: &Path, url: String, token: String) -> drover_client::Client {
    let client = drover_client::Client::new(url.clone(), Some(token));
    if !url.starts_with("https://") {
        return client;
    }
    let ca = std::fs::read_to_string(data.join("server/tls/ca.crt")).expect("the server's CA");
    let tls = drover_client::tls::client_config(&ca, None).expect("a TLS client config");
    client.with_tls(tls).expect("a client over TLS")
}

/// The trimmed content of `path` once it has some; panics after `timeout`.
pub fn wait_for_file(path: &Path, timeout: Duration) -> String {
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(s) = std::fs::read_to_string(path)
            && !s.trim().is_empty()
        {
            return s.trim().to_string();
        }
        assert!(
            Instant::now() < deadline,
            "{} never appeared",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}
