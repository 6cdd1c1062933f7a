//! What a worker's kernel enforces on its tasks, as the worker found it at start.

use serde::{Deserialize, Serialize};
use std::fmt;

/// A limit the worker's kernel enforces on every task (through cgroups), not merely
/// watched by polling.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum EnforcedLimit {
    /// The task's memory (`memory.limit_in_bytes`): the OOM killer acts inside it.
    Memory,
    /// The task's cpus as a CFS quota: it is throttled beyond them.
    Cpu,
    /// A cap on its processes and threads (`pids.max`): forks beyond it fail.
    Pids,
}

impl fmt::Display for EnforcedLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            EnforcedLimit::Memory => "memory",
            EnforcedLimit::Cpu => "cpu",
            EnforcedLimit::Pids => "pids",
        })
    }
}

/// How a worker confines its tasks, declared when it joins. The default (nothing
/// enforced, no mechanism) is a worker that did not say: one from before this field,
/// or one of the scale harness's simulated agents.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(default)]
pub struct Isolation {
    /// The limits its kernel enforces on every task, in the order memory, cpu, pids.
    pub enforced: Vec<EnforcedLimit>,
    /// How, or why not: `cgroup v1 (memory, cpuacct, cpu, pids)`, or `none: …` with
    /// the reason (then a memory limit is only polled, cpus and processes unlimited).
    pub mechanism: String,
    /// The GPU indices it hands out, each to one running task at a time.
    pub gpu_ids: Vec<u32>,
}

impl Isolation {
    /// One word list for a table: `memory,cpu,pids`, `none`, or `unknown` for a worker
    /// that did not say.
    pub fn summary(&self) -> String {
        if self.enforced.is_empty() {
            if self.mechanism.is_empty() {
                "unknown".to_string()
            } else {
                "none".to_string()
            }
        } else {
            let names: Vec<String> = self.enforced.iter().map(|l| l.to_string()).collect();
            names.join(",")
        }
    }

    pub fn enforces(&self, limit: EnforcedLimit) -> bool {
        self.enforced.contains(&limit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_tells_unknown_from_none() {
        assert_eq!(Isolation::default().summary(), "unknown");
        let none = Isolation {
            mechanism: "none: no writable cgroup hierarchy".into(),
            ..Default::default()
        };
        assert_eq!(none.summary(), "none");
        let all = Isolation {
            enforced: vec![
                EnforcedLimit::Memory,
                EnforcedLimit::Cpu,
                EnforcedLimit::Pids,
            ],
            mechanism: "cgroup v1".into(),
            gpu_ids: vec![],
        };
        assert_eq!(all.summary(), "memory,cpu,pids");
        assert!(all.enforces(EnforcedLimit::Cpu));
    }
}
