//! Spawner threads that wait inside an attempt cgroup before an attempt needs one.
//!
//! Why they exist: in cgroup v1 every write to `tasks` or `cgroup.procs` takes the
//! kernel's global threadgroup rwsem for writing, and taking it waits for an RCU grace
//! period unless another move happened just before. On the development VM that is
//! 6–14 ms per first move while the CPUs idle (measured: a thread written into a memory
//! cgroup's `tasks` every 50 ms). Moving the spawning thread into the attempt's cgroups
//! right before each spawn put that wait on every attempt's start: most of the gap
//! between two short tasks of a slot (`sleep 0.05` ran at 1.28× its ideal makespan
//! with cgroups, 1.07× without).
//!
//! An armed spawner pays the moves between attempts instead: a thread takes an idle
//! attempt cgroup, moves itself into every hierarchy, and waits. A launch takes an
//! armed spawner, sets the attempt's limits on its cgroup (plain attribute writes,
//! cheap) and hands it the command; the child is born inside, as before (no window in
//! which it could fork children outside). The launch waits for the spawn only. With
//! none armed (a burst of launches) the launch falls back to moving the calling thread
//! ([`CgroupRoot::spawn_inside`]).
//!
//! Each armed thread serves one spawn and ends: it may become the task user to spawn
//! without a fork (see `spawn_request.rs`), after which it could not move itself out
//! of the cgroup (that takes the agent's rights), and ending leaves every hierarchy at
//! once without a move. A long-lived keeper thread per slot starts the next one.

use super::{AttemptCgroup, CgroupRoot};
use crate::spawn_request::SpawnRequest;
use crate::sys;
use std::io;
use std::process::Child;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::time::{Duration, Instant};

/// One spawn for an armed thread, with where to send the child.
type Job = (SpawnRequest, SyncSender<io::Result<Child>>);

/// A spawner thread that sits inside `cgroup` and waits for one command.
#[derive(Debug)]
pub(crate) struct ArmedSpawner {
    cgroup: Arc<AttemptCgroup>,
    jobs: SyncSender<Job>,
}

impl ArmedSpawner {
    /// The cgroup the child will be born in (set its limits before [`spawn`](Self::spawn)).
    pub(crate) fn cgroup(&self) -> &Arc<AttemptCgroup> {
        &self.cgroup
    }

    /// Spawns from inside the cgroup; blocks for the spawn only. `Err` gives the
    /// request back when the thread is gone (the caller spawns it another way).
    pub(crate) fn spawn(
        self,
        request: SpawnRequest,
    ) -> Result<io::Result<Child>, Box<SpawnRequest>> {
        let (reply_tx, reply_rx) = sync_channel(1);
        if let Err(e) = self.jobs.send((request, reply_tx)) {
            return Err(Box::new(e.0.0));
        }
        Ok(reply_rx.recv().unwrap_or_else(|_| {
            Err(io::Error::other(
                "the spawner thread ended during the spawn",
            ))
        }))
    }
}

/// How one armed thread ended.
enum Armed {
    /// It spawned (or tried to): the attempt owns the cgroup now; its monitor releases it.
    Spawned,
    /// Closed, or taken and dropped unused: the cgroup goes back to the pool.
    Unused,
    /// It could not enter the cgroup: stop arming (launches fall back).
    CannotEnter,
}

/// The body of one keeper thread: take a cgroup, start an armed thread in it, wait for
/// that thread to end (after its spawn), again; until the root is closed or arming
/// fails (then launches fall back to the calling thread).
pub(super) fn run(root: Arc<CgroupRoot>) {
    while !root.spawners_closed() {
        let cg = match root.take_idle_or_create() {
            Ok(cg) => cg,
            Err(e) => {
                tracing::debug!("a spawner thread cannot get an attempt cgroup: {e}");
                return;
            }
        };
        cg.set_spawner_inside(true);
        let thread = {
            let (root, cg) = (root.clone(), cg.clone());
            std::thread::Builder::new()
                .name("drover-spawn".into())
                .stack_size(128 << 10)
                .spawn(move || arm_once(&root, &cg))
        };
        let (armed, tid) = match thread {
            Ok(t) => t.join().unwrap_or((Armed::CannotEnter, 0)),
            Err(e) => {
                tracing::debug!("cannot start an armed spawner thread: {e}");
                (Armed::CannotEnter, 0)
            }
        };
        wait_until_left(&cg, tid);
        cg.set_spawner_inside(false);
        match armed {
            Armed::Spawned => {}
            Armed::Unused => root.give_back(&cg),
            Armed::CannotEnter => {
                root.give_back(&cg);
                tracing::debug!("a spawner thread cannot enter an attempt cgroup; stopping it");
                return;
            }
        }
    }
}

/// One armed thread: enter `cg`, offer itself, spawn at most once, end. Returns how,
/// and its thread id.
fn arm_once(root: &CgroupRoot, cg: &Arc<AttemptCgroup>) -> (Armed, i32) {
    let tid = sys::gettid();
    if !root.enter(cg, &tid.to_string()) {
        return (Armed::CannotEnter, tid);
    }
    let (jobs, rx): (SyncSender<Job>, Receiver<Job>) = sync_channel(1);
    let offered = root.offer_armed(ArmedSpawner {
        cgroup: cg.clone(),
        jobs,
    });
    let job = if offered { rx.recv().ok() } else { None };
    match job {
        Some((request, reply)) => {
            let _ = reply.send(request.spawn_from_disposable_thread());
            (Armed::Spawned, tid)
        }
        None => (Armed::Unused, tid),
    }
}

/// A joined thread may still be listed in its cgroup for a moment (the kernel takes it
/// out of its cgroups after it wakes the joiner): wait that moment out, briefly.
fn wait_until_left(cg: &AttemptCgroup, tid: i32) {
    if tid == 0 {
        return;
    }
    let deadline = Instant::now() + Duration::from_millis(20);
    while cg.lists_thread(tid) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_micros(50));
    }
}
