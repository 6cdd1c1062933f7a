//! The lifeline between a worker agent and its reaper, a separate process.
//!
//! The agent holds the write end of a pipe whose read end is the reaper's stdin. Two
//! things travel on it:
//! - **Its end.** However the agent dies, even by SIGKILL, the pipe closes; the reaper
//!   then kills every task process the agent left and removes their cgroups.
//! - **The fence's backstop.** Each time the server proves it hears the agent, the agent
//!   writes one line: the milliseconds left until the moment its own fence would have
//!   SIGKILLed its tasks (fence deadline + kill grace). If no newer line comes by then,
//!   the agent is alive but not acting (frozen by SIGSTOP, stuck): the reaper kills its
//!   task processes itself, still before the server may re-place them (the settle
//!   margin, see `drover_proto::worker::FENCE_SETTLE`), and leaves the agent's files
//!   and cgroups for the agent to find when it runs again.

use crate::agent::identity;
use crate::config::WorkerConfig;
use drover_exec::{CgroupMode, DriverConfig, OrphanReport, ProcessDriver};
use std::io::{BufRead, BufReader, Read, Write};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

#[derive(Debug, Default)]
struct Pending {
    /// The newest backstop deadline not written yet.
    deadline: Option<Instant>,
    closed: bool,
}

#[derive(Debug, Default)]
struct Shared {
    pending: Mutex<Pending>,
    wake: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The agent's end: writes backstop deadlines from a thread of its own (a pipe write
/// can block; the async runtime must not). Dropping it closes the pipe.
#[derive(Debug)]
pub struct Lifeline {
    shared: Arc<Shared>,
    writer: Option<std::thread::JoinHandle<()>>,
}

impl Lifeline {
    pub fn start(mut out: impl Write + Send + 'static) -> Lifeline {
        let shared = Arc::new(Shared::default());
        let s = shared.clone();
        let writer = std::thread::Builder::new()
            .name("drover-lifeline".into())
            .spawn(move || {
                loop {
                    let deadline = {
                        let mut p = s.lock();
                        while p.deadline.is_none() && !p.closed {
                            p = s.wake.wait(p).unwrap_or_else(|e| e.into_inner());
                        }
                        if p.closed {
                            return;
                        }
                        p.deadline.take()
                    };
                    let Some(deadline) = deadline else { continue };
                    let left = deadline.saturating_duration_since(Instant::now());
                    if writeln!(out, "{}", left.as_millis())
                        .and_then(|()| out.flush())
                        .is_err()
                    {
                        return;
                    }
                }
            })
            .ok();
        Lifeline { shared, writer }
    }

    /// The reaper kills the tasks at `deadline` unless a later one arrives first.
    pub fn backstop_at(&self, deadline: Instant) {
        self.shared.lock().deadline = Some(deadline);
        self.shared.wake.notify_one();
    }
}

impl Drop for Lifeline {
    fn drop(&mut self) {
        self.shared.lock().closed = true;
        self.shared.wake.notify_one();
        if let Some(w) = self.writer.take() {
            let _ = w.join();
        }
    }
}

/// The reaper's half: watches the backstop deadlines the agent writes, killing the
/// agent's tasks when one passes, until `lifeline` reaches end of file (the agent has
/// exited, however it died); then kills every task process the agent left behind and
/// removes their cgroups. Run it in a separate process (`drover` does, in its own
/// process group so a terminal's Ctrl-C does not reach it).
pub fn reap_when_agent_exits(
    config: &WorkerConfig,
    lifeline: impl Read + Send + 'static,
) -> Vec<OrphanReport> {
    // The reaper is the agent's child (`drover worker` starts it): the agent's process,
    // which the driver below must never kill (its spawner threads wait inside idle
    // attempt cgroups). Read now: once the agent is gone it is no longer the parent.
    let agent_pid = std::os::unix::process::parent_id();
    let (tx, rx) = mpsc::channel::<Duration>();
    // Reading blocks; deadlines are kept on this thread.
    std::thread::spawn(move || {
        for line in BufReader::new(lifeline).lines() {
            let Ok(line) = line else { break };
            if let Ok(ms) = line.trim().parse::<u64>()
                && tx.send(Duration::from_millis(ms)).is_err()
            {
                break;
            }
        }
    });
    let driver = || {
        let (work_root, agent_id) = identity(config);
        let mut driver_config = DriverConfig::new(&work_root, agent_id);
        driver_config.spare_pid = Some(agent_pid);
        driver_config.cgroups = if config.cgroups {
            CgroupMode::Auto
        } else {
            CgroupMode::Off
        };
        ProcessDriver::new(driver_config)
            .inspect_err(|e| tracing::error!("the reaper cannot set up the driver: {e}"))
            .ok()
    };
    let mut deadline: Option<Instant> = None;
    loop {
        let next = match deadline {
            None => rx.recv().map_err(|_| RecvTimeoutError::Disconnected),
            Some(d) => rx.recv_timeout(d.saturating_duration_since(Instant::now())),
        };
        match next {
            Ok(left) => deadline = Some(Instant::now() + left),
            Err(RecvTimeoutError::Disconnected) => break,
            Err(RecvTimeoutError::Timeout) => {
                deadline = None;
                let killed = driver().map(|d| d.kill_agent_tasks()).unwrap_or_default();
                for k in &killed {
                    tracing::warn!(
                        worker = %config.name,
                        task = k.task,
                        attempt = k.attempt,
                        "the worker agent did not stop this attempt by its fence deadline (frozen or stuck?); killed it"
                    );
                }
            }
        }
    }
    driver().map(|d| d.reap_orphans()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A pipe end for tests: what the lifeline writes, line by line.
    struct Lines(mpsc::Sender<String>, Vec<u8>);

    impl Write for Lines {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.1.extend_from_slice(buf);
            while let Some(i) = self.1.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = self.1.drain(..=i).collect();
                let _ = self
                    .0
                    .send(String::from_utf8_lossy(&line).trim().to_string());
            }
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn the_newest_deadline_is_written_as_the_time_left() {
        let (tx, rx) = mpsc::channel();
        let lifeline = Lifeline::start(Lines(tx, Vec::new()));
        lifeline.backstop_at(Instant::now() + Duration::from_secs(9));
        let ms: u64 = rx
            .recv_timeout(Duration::from_secs(5))
            .unwrap()
            .parse()
            .unwrap();
        assert!((8_000..=9_000).contains(&ms), "{ms}");
        lifeline.backstop_at(Instant::now() - Duration::from_secs(1));
        assert_eq!(rx.recv_timeout(Duration::from_secs(5)).unwrap(), "0");
        drop(lifeline);
        assert!(rx.recv_timeout(Duration::from_secs(1)).is_err(), "closed");
    }
}
