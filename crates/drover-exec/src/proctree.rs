//! Looking at process trees through /proc, for when cgroups are not available.
//!
//! Two ways to find an attempt's processes:
//! * [`descendants`]: walk `/proc/<pid>/task/<tid>/children` down from the main
//!   process. Cheap, used for periodic sampling; misses processes that were orphaned
//!   (double fork), because they are reparented away from the tree.
//! * [`find_marked`]: scan every process's environment for the attempt's marker
//!   variable. Costs a read per process on the host, used only when killing; finds
//!   orphans and `setsid` escapees too, unless they scrubbed their environment.

use crate::sys;
use std::fs;

/// Summed figures of a set of processes at one moment.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct TreeSample {
    pub rss_bytes: u64,
    /// utime+stime of each process plus cutime+cstime (its reaped children).
    pub cpu_ms: u64,
    pub read_bytes: u64,
    pub write_bytes: u64,
}

/// `root` and all its live descendants that are still in its tree.
pub(crate) fn descendants(root: i32) -> Vec<i32> {
    let mut out = vec![root];
    let mut i = 0;
    while i < out.len() {
        let pid = out[i];
        i += 1;
        let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) else {
            continue;
        };
        for task in tasks.flatten() {
            let mut path = task.path();
            path.push("children");
            let Ok(text) = fs::read_to_string(&path) else {
                continue;
            };
            for child in text
                .split_ascii_whitespace()
                .filter_map(|s| s.parse::<i32>().ok())
            {
                // A pid can show up twice only through a race with reparenting; keep the set small anyway.
                if !out.contains(&child) {
                    out.push(child);
                }
            }
        }
    }
    out
}

pub(crate) fn sample(pids: &[i32]) -> TreeSample {
    let mut s = TreeSample::default();
    let ticks = sys::clock_ticks();
    let page = sys::page_size();
    for &pid in pids {
        if let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat"))
            && let Some(f) = stat_fields(&stat)
        {
            // Fields after the command (which may contain spaces), counted from
            // field 3 (state) as index 0: utime=11, stime=12, cutime=13, cstime=14, rss=21.
            let num = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
            let t = num(11) + num(12) + num(13) + num(14);
            s.cpu_ms += t * 1000 / ticks;
            s.rss_bytes += num(21) * page;
        }
        if let Ok(io) = fs::read_to_string(format!("/proc/{pid}/io")) {
            for line in io.lines() {
                if let Some(v) = line.strip_prefix("read_bytes: ") {
                    s.read_bytes += v.trim().parse::<u64>().unwrap_or(0);
                } else if let Some(v) = line.strip_prefix("write_bytes: ") {
                    s.write_bytes += v.trim().parse::<u64>().unwrap_or(0);
                }
            }
        }
    }
    s
}

/// The space-separated fields after `(comm)` in /proc/<pid>/stat.
fn stat_fields(stat: &str) -> Option<Vec<&str>> {
    let close = stat.rfind(')')?;
    Some(stat[close + 1..].split_ascii_whitespace().collect())
}

/// Every process (other than this one) whose environment holds exactly `entry`
/// (`NAME=value`).
pub(crate) fn find_marked(entry: &[u8]) -> Vec<i32> {
    scan_environments(|env| env.split(|b| *b == 0).any(|e| e == entry))
        .into_iter()
        .map(|(pid, _)| pid)
        .collect()
}

/// Every process (other than this one) with an environment entry starting with
/// `prefix`, with the rest of that entry.
pub(crate) fn find_marked_prefix(prefix: &[u8]) -> Vec<(i32, Vec<u8>)> {
    let mut out = Vec::new();
    for (pid, env) in scan_environments(|env| env.split(|b| *b == 0).any(|e| e.starts_with(prefix)))
    {
        if let Some(e) = env.split(|b| *b == 0).find(|e| e.starts_with(prefix)) {
            out.push((pid, e[prefix.len()..].to_vec()));
        }
    }
    out
}

/// The rest of `pid`'s environment entry starting with `prefix`, if any.
pub(crate) fn env_entry(pid: i32, prefix: &[u8]) -> Option<Vec<u8>> {
    let env = fs::read(format!("/proc/{pid}/environ")).ok()?;
    env.split(|b| *b == 0)
        .find(|e| e.starts_with(prefix))
        .map(|e| e[prefix.len()..].to_vec())
}

fn scan_environments(mut keep: impl FnMut(&[u8]) -> bool) -> Vec<(i32, Vec<u8>)> {
    let me = std::process::id() as i32;
    let mut out = Vec::new();
    let Ok(dir) = fs::read_dir("/proc") else {
        return out;
    };
    for entry in dir.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<i32>().ok())
        else {
            continue;
        };
        if pid == me {
            continue;
        }
        // Kernel threads and processes of other users simply fail or read empty.
        let Ok(env) = fs::read(format!("/proc/{pid}/environ")) else {
            continue;
        };
        if keep(&env) {
            out.push((pid, env));
        }
    }
    out
}
