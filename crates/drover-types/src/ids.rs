//! Identifiers. Task, job and worker ids are dense numbers assigned by the state
//! machine in log order, so that every replica assigns the same ones.

use serde::{Deserialize, Serialize};
use std::fmt;

/// A task's id: assigned in submission order, starting at 1, never reused.
/// A user may also give a task a `key` (unique within its job); wherever a task is
/// referenced, either works (see [`crate::KeyRef`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TaskId(pub u64);

/// A job's id: one atomic submission of one or more tasks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct JobId(pub u64);

/// A worker's id: assigned when a worker name first joins, stable across its reconnects.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct WorkerId(pub u32);

/// The attempt number of a task, starting at 1. It is the fencing token of an attempt:
/// a report carrying an attempt other than the task's current one is stale and rejected.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Attempt(pub u32);

impl fmt::Display for TaskId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl fmt::Display for WorkerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "w{}", self.0)
    }
}

impl fmt::Display for Attempt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A worker as a person names it: by id, written `w3` (as tables show it) or `3` (as
/// JSON has it), or by its name. Every command and route that takes a worker accepts
/// all three.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WorkerRef {
    Id(WorkerId),
    Name(String),
}

impl WorkerRef {
    /// `w3` and `3` are ids; anything else is a name.
    pub fn parse(text: &str) -> WorkerRef {
        let t = text.trim();
        let digits = t.strip_prefix('w').unwrap_or(t);
        if !digits.is_empty()
            && digits.bytes().all(|b| b.is_ascii_digit())
            && let Ok(n) = digits.parse::<u32>()
        {
            return WorkerRef::Id(WorkerId(n));
        }
        WorkerRef::Name(t.to_string())
    }

    /// The worker among `workers` (id, name) this names. An id form names the worker
    /// with that id when there is one, else a worker of that exact name (a worker may
    /// be called `w2`).
    pub fn resolve<'a>(
        &self,
        workers: impl IntoIterator<Item = (WorkerId, &'a str)>,
    ) -> Option<WorkerId> {
        let workers: Vec<(WorkerId, &str)> = workers.into_iter().collect();
        let by_name = |name: &str| workers.iter().find(|(_, n)| *n == name).map(|(w, _)| *w);
        match self {
            WorkerRef::Id(id) => workers
                .iter()
                .find(|(w, _)| w == id)
                .map(|(w, _)| *w)
                .or_else(|| by_name(&id.0.to_string()))
                .or_else(|| by_name(&id.to_string())),
            WorkerRef::Name(name) => by_name(name),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_worker_is_named_by_w_id_bare_id_or_name() {
        assert_eq!(WorkerRef::parse("w3"), WorkerRef::Id(WorkerId(3)));
        assert_eq!(WorkerRef::parse("3"), WorkerRef::Id(WorkerId(3)));
        assert_eq!(
            WorkerRef::parse("local-1"),
            WorkerRef::Name("local-1".into())
        );
        assert_eq!(WorkerRef::parse("w"), WorkerRef::Name("w".into()));
        assert_eq!(WorkerRef::parse("w-3"), WorkerRef::Name("w-3".into()));
        assert_eq!(
            WorkerRef::parse("99999999999"),
            WorkerRef::Name("99999999999".into())
        );
        let workers = [(WorkerId(1), "local-1"), (WorkerId(2), "w7")];
        let find = |t: &str| WorkerRef::parse(t).resolve(workers.iter().copied());
        assert_eq!(find("w1"), Some(WorkerId(1)));
        assert_eq!(find("1"), Some(WorkerId(1)));
        assert_eq!(find("local-1"), Some(WorkerId(1)));
        assert_eq!(find("w2"), Some(WorkerId(2)));
        // No worker 7: the worker named `w7`.
        assert_eq!(find("w7"), Some(WorkerId(2)));
        assert_eq!(find("w9"), None);
        assert_eq!(find("nobody"), None);
    }
}
