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
//! which it could fork children outside). The launch waits for the spawn only; the
//! thread then moves back home and arms itself with another cgroup, off the path of
//! any attempt. With none armed (a burst of launches) the launch falls back to moving
//! the calling thread ([`CgroupRoot::spawn_inside`]).

use super::{AttemptCgroup, CgroupRoot};
use crate::sys;
use std::io;
use std::process::{Child, Command};
use std::sync::Arc;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};

/// One spawn for an armed thread, with where to send the child.
type Job = (Command, SyncSender<io::Result<Child>>);

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

    /// Spawns `cmd` from inside the cgroup; blocks for the spawn only. `Err` gives the
    /// command back when the thread is gone (the caller spawns it another way).
    pub(crate) fn spawn(self, cmd: Command) -> Result<io::Result<Child>, Box<Command>> {
        let (reply_tx, reply_rx) = sync_channel(1);
        if let Err(e) = self.jobs.send((cmd, reply_tx)) {
            return Err(Box::new(e.0.0));
        }
        Ok(reply_rx.recv().unwrap_or_else(|_| {
            Err(io::Error::other(
                "the spawner thread ended during the spawn",
            ))
        }))
    }
}

/// The body of one spawner thread: arm, wait, spawn, go home, again; until the root
/// is closed or arming fails (then launches fall back to the calling thread).
pub(super) fn run(root: Arc<CgroupRoot>) {
    let tid = sys::gettid().to_string();
    while !root.spawners_closed() {
        let cg = match root.take_idle_or_create() {
            Ok(cg) => cg,
            Err(e) => {
                tracing::debug!("a spawner thread cannot get an attempt cgroup: {e}");
                return;
            }
        };
        cg.set_spawner_inside(true);
        if !root.enter(&cg, &tid) {
            root.go_home(&tid);
            cg.set_spawner_inside(false);
            root.give_back(&cg);
            tracing::debug!("a spawner thread cannot enter an attempt cgroup; stopping it");
            return;
        }
        let (jobs, rx): (SyncSender<Job>, Receiver<Job>) = sync_channel(1);
        let offered = root.offer_armed(ArmedSpawner {
            cgroup: cg.clone(),
            jobs,
        });
        let job = if offered { rx.recv().ok() } else { None };
        if let Some((mut cmd, reply)) = job {
            let _ = reply.send(cmd.spawn());
            root.go_home(&tid);
            cg.set_spawner_inside(false);
            // The attempt owns the cgroup now; its monitor releases it.
        } else {
            // Closed, or taken and dropped unused: the cgroup goes back to the pool.
            root.go_home(&tid);
            cg.set_spawner_inside(false);
            root.give_back(&cg);
        }
    }
}
