//! A history checker for failover tests: what clients were told, what the servers said
//! about leadership while it happened, and what the group holds at the end.
//!
//! During a run, record every acknowledged submission ([`History::acked`]), every error
//! a client saw ([`History::error`]), the parents of tasks that have some
//! ([`History::parents`]), and keep a [`LeaderWatch`] polling each server's
//! `GET /v1/servers` for (term, leader) pairs. Tasks may also log their runs to a
//! marker file ([`RUN_LOG_LINE`]). At the end, [`History::check`] reads one server's
//! tasks and returns every violation found:
//!
//! - an acknowledged submission that is missing;
//! - two attempts of one task whose lifetimes (assigned to ended, in log time) overlap;
//! - a run of a task's process with an attempt number the log does not have, or two
//!   runs of one attempt;
//! - a task that started before each of its parents had succeeded;
//! - two leaders claimed in one term.

use super::servers::ServerSet;
use super::*;
use drover_proto::api::{ServerInfo, TaskList, TaskSummary};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};

/// A shell line a task runs first to log its run: `<task> <attempt>` into `$RUNS`.
pub const RUN_LOG_LINE: &str = r#"echo "$DROVER_TASK_ID $DROVER_ATTEMPT" >> "$RUNS""#;

#[derive(Default)]
pub struct History {
    acked: Mutex<BTreeSet<u64>>,
    errors: Mutex<Vec<String>>,
    parents: Mutex<BTreeMap<u64, Vec<u64>>>,
    /// term → the leaders claimed for it, by which server.
    leaders: Mutex<BTreeMap<u64, BTreeSet<u64>>>,
}

impl History {
    pub fn new() -> Arc<History> {
        Arc::new(History::default())
    }

    /// The client was told task `id` exists (a 201, or the CLI printed its id).
    pub fn acked(&self, id: u64) {
        self.acked.lock().unwrap().insert(id);
    }

    pub fn acked_count(&self) -> usize {
        self.acked.lock().unwrap().len()
    }

    /// A client saw an error.
    pub fn error(&self, what: String) {
        self.errors.lock().unwrap().push(what);
    }

    pub fn errors(&self) -> Vec<String> {
        self.errors.lock().unwrap().clone()
    }

    /// Task `child` must not start before every one of `parents` succeeded.
    pub fn parents(&self, child: u64, parents: Vec<u64>) {
        self.parents.lock().unwrap().insert(child, parents);
    }

    fn leader_seen(&self, term: u64, leader: u64) {
        self.leaders
            .lock()
            .unwrap()
            .entry(term)
            .or_default()
            .insert(leader);
    }

    /// The terms seen and their leaders.
    pub fn terms(&self) -> BTreeMap<u64, BTreeSet<u64>> {
        self.leaders.lock().unwrap().clone()
    }

    /// Every violation of the rules above, as sentences (empty: the history is fine).
    /// `server`: the one whose state is read; `runs`: the marker file tasks logged
    /// their runs to, if any.
    pub fn check(&self, set: &ServerSet, server: usize, runs: Option<&Path>) -> Vec<String> {
        let mut bad = Vec::new();
        let tasks = list_tasks(set, server);
        let by_id: BTreeMap<u64, &TaskSummary> = tasks.iter().map(|t| (t.id.0, t)).collect();
        for id in self.acked.lock().unwrap().iter() {
            if !by_id.contains_key(id) {
                bad.push(format!("acknowledged task {id} is missing"));
            }
        }
        // Details (attempts) of the tasks that may break a rule: those with more than
        // one attempt, those with parents, and the parents.
        let parents = self.parents.lock().unwrap().clone();
        let mut detail: BTreeSet<u64> = tasks
            .iter()
            .filter(|t| t.attempt.0 > 1)
            .map(|t| t.id.0)
            .collect();
        for (child, ps) in &parents {
            detail.insert(*child);
            detail.extend(ps);
        }
        let mut infos = BTreeMap::new();
        for id in detail {
            match set.task_on(server, id) {
                Some(t) => {
                    infos.insert(id, t);
                }
                None => bad.push(format!("task {id} cannot be read from server {server}")),
            }
        }
        for t in infos.values() {
            for pair in t.attempts.windows(2) {
                let (a, b) = (&pair[0], &pair[1]);
                match a.ended_at {
                    Some(end) if end <= b.assigned_at => {}
                    end => bad.push(format!(
                        "task {}: attempt {} (ended {end:?}) overlaps attempt {} (assigned {})",
                        t.id, a.attempt, b.attempt, b.assigned_at
                    )),
                }
            }
        }
        for (child, ps) in &parents {
            let Some(c) = infos.get(child) else { continue };
            let Some(first_start) = c.attempts.iter().filter_map(|a| a.started_at).min() else {
                continue;
            };
            for p in ps {
                let Some(p) = infos.get(p) else { continue };
                let succeeded_at = (p.state.as_str() == "succeeded")
                    .then_some(p.ended_at)
                    .flatten();
                match succeeded_at {
                    Some(at) if at <= first_start => {}
                    other => bad.push(format!(
                        "task {child} started at {first_start} but its parent {} had not succeeded (state {}, ended {other:?})",
                        p.id,
                        p.state.as_str()
                    )),
                }
            }
        }
        if let Some(path) = runs {
            let mut seen: BTreeMap<(u64, u32), usize> = BTreeMap::new();
            for line in read(path).lines() {
                let mut words = line.split_whitespace();
                let (Some(id), Some(attempt)) = (
                    words.next().and_then(|w| w.parse::<u64>().ok()),
                    words.next().and_then(|w| w.parse::<u32>().ok()),
                ) else {
                    bad.push(format!("unreadable run line {line:?}"));
                    continue;
                };
                *seen.entry((id, attempt)).or_default() += 1;
            }
            for ((id, attempt), n) in seen {
                if n > 1 {
                    bad.push(format!("task {id} attempt {attempt} ran {n} times"));
                }
                match by_id.get(&id) {
                    Some(t) if attempt <= t.attempt.0 => {}
                    Some(t) => bad.push(format!(
                        "task {id} ran as attempt {attempt}; the log has {}",
                        t.attempt
                    )),
                    None => bad.push(format!("task {id} ran but the group does not know it")),
                }
            }
        }
        for (term, leaders) in self.leaders.lock().unwrap().iter() {
            if leaders.len() > 1 {
                bad.push(format!("term {term} had leaders {leaders:?}"));
            }
        }
        bad
    }
}

/// Every task server `i` holds, in id order.
///
/// A linearizable read answers 503 when a majority does not confirm the leader in
/// time; on a loaded machine (a CI host compiling beside the test) that happens without
/// any fault, so a page answered 503 is asked again for up to a minute. Any other
/// status fails at once.
pub fn list_tasks(set: &ServerSet, i: usize) -> Vec<TaskSummary> {
    let mut out = Vec::new();
    let mut cursor: Option<String> = None;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let path = match &cursor {
            Some(c) => format!("/v1/tasks?limit=1000&cursor={c}"),
            None => "/v1/tasks?limit=1000".to_string(),
        };
        let r = set.get(i, &path);
        if r.status == 503 && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(250));
            continue;
        }
        assert_eq!(r.status, 200, "listing tasks on server {i}: {}", r.text());
        let page: TaskList = serde_json::from_slice(&r.body).expect("a task list");
        out.extend(page.tasks);
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => return out,
        }
    }
}

/// Polls every server's `GET /v1/servers` in a thread, recording who each says leads
/// in which term, until dropped.
pub struct LeaderWatch {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl LeaderWatch {
    pub fn start(set: &ServerSet, history: Arc<History>) -> LeaderWatch {
        let stop = Arc::new(AtomicBool::new(false));
        let (addrs, token) = (set.addrs.clone(), set.token.clone());
        let thread = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    for addr in &addrs {
                        let Ok(sock) = addr.parse::<std::net::SocketAddr>() else {
                            continue;
                        };
                        if TcpStream::connect_timeout(&sock, Duration::from_millis(200)).is_err() {
                            continue;
                        }
                        let Ok(r) = http_with(addr, "GET", "/v1/servers", Some(&token), &[], None)
                        else {
                            continue;
                        };
                        let Ok(list) = serde_json::from_slice::<Vec<ServerInfo>>(&r.body) else {
                            continue;
                        };
                        // The answering server's own view: its term, and whom it
                        // calls the leader in it.
                        for s in list.iter().filter(|s| s.role == "leader") {
                            history.leader_seen(s.term, s.id);
                        }
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
            })
        };
        LeaderWatch {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for LeaderWatch {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
