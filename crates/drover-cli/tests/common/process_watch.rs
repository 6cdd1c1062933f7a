//! Watches one attempt's whole process tree (found by the driver's marker in the
//! environment, see [`super::attempt_processes`]) every few milliseconds: when it was
//! last seen alive, and when first seen gone. Partition tests compare these instants
//! with the moment the task's next attempt began elsewhere.

use super::attempt_processes;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Nanoseconds since the epoch: comparable with `date +%s%N` written by a task.
pub fn now_ns() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

pub struct Watcher {
    stop: Arc<AtomicBool>,
    seen: Arc<Mutex<(Option<u128>, Option<u128>)>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Watcher {
    pub fn start(agent: &str, task: u64, attempt: u32) -> Watcher {
        let stop = Arc::new(AtomicBool::new(false));
        let seen = Arc::new(Mutex::new((None, None)));
        let (s, agent, st) = (seen.clone(), agent.to_string(), stop.clone());
        let thread = std::thread::spawn(move || {
            while !st.load(Ordering::Relaxed) {
                let alive = !attempt_processes(&agent, task, attempt).is_empty();
                let t = now_ns();
                let mut g = s.lock().unwrap();
                if alive {
                    g.0 = Some(t);
                    g.1 = None;
                } else if g.0.is_some() && g.1.is_none() {
                    g.1 = Some(t);
                }
                drop(g);
                std::thread::sleep(Duration::from_millis(2));
            }
        });
        Watcher {
            stop,
            seen,
            thread: Some(thread),
        }
    }

    /// (last seen alive, first seen gone) so far, in ns since the epoch.
    pub fn seen(&self) -> (Option<u128>, Option<u128>) {
        *self.seen.lock().unwrap()
    }

    /// Stops watching; (last seen alive, first seen gone), in ns since the epoch.
    pub fn finish(mut self) -> (Option<u128>, Option<u128>) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        *self.seen.lock().unwrap()
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
