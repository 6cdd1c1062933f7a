//! About how many bytes a log entry takes on the wire, without serializing it.
//!
//! openraft bounds every append by one heartbeat, so what goes in one append must stay
//! small: the proposer cuts large jobs into parts and stops batching by these
//! estimates, and the network sends a lagging follower a bounded run of entries rather
//! than `max_payload_entries` of them at once. Cheap and rough: the strings plus a fixed
//! allowance per task and per command.

use drover_state::{Command, LogEntry};
use drover_types::TaskSpec;

/// About what a task spec takes in the log (JSON): its strings plus a fixed allowance
/// for the field names and small fields. Only for cutting and batching; cheap, not exact.
pub fn task(t: &TaskSpec) -> usize {
    let strings = |v: &[String]| v.iter().map(|s| s.len() + 3).sum::<usize>();
    let map = |m: &std::collections::BTreeMap<String, String>| {
        m.iter().map(|(k, v)| k.len() + v.len() + 6).sum::<usize>()
    };
    96 + t.name.len()
        + t.key.as_ref().map_or(0, |k| k.len())
        + t.workdir.as_ref().map_or(0, |w| w.len())
        + t.owner.len()
        + strings(&t.command)
        + strings(&t.inputs)
        + map(&t.env)
        + map(&t.labels)
        + t.secret_env
            .iter()
            .map(|(k, v)| k.len() + v.expose().len() + 6)
            .sum::<usize>()
        + 24 * t.after.len()
        + 64 * (t.constraints.len() + t.affinity.len())
}

/// About what a command takes in the log: see [`task`].
pub fn command(c: &Command) -> usize {
    match c {
        Command::Submit { job, .. } => 64 + job.tasks.iter().map(task).sum::<usize>(),
        Command::SubmitPart { tasks, .. } => 64 + tasks.iter().map(task).sum::<usize>(),
        Command::TaskFinished { report, .. } => 256 + report.result.len(),
        _ => 128,
    }
}

/// About what a whole entry takes: its commands, and a little for the entry itself.
pub fn entry(e: &LogEntry) -> usize {
    32 + e.commands.iter().map(command).sum::<usize>()
}
