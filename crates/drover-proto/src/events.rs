//! The cluster's event stream (`GET /v1/events`): what changed, as derived from the
//! committed log.
//!
//! Every replica derives the same events with the same ids while applying an entry, so
//! a client moved to another server resumes from its last id. An id is
//! `"<log index>-<n>"`: the index of the log entry whose application produced the
//! event, and the event's position (from 0) among that entry's events. Ids compare as
//! the pair `(index, n)`, which increases strictly along the stream.

use drover_types::{
    Attempt, FailureCause, JobId, Millis, Outcome, PolicyConfig, TaskId, TaskState, WorkerId,
    WorkerState,
};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::str::FromStr;

/// An event's id: `(log index, position within that entry's events)`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EventId {
    pub index: u64,
    pub seq: u32,
}

impl EventId {
    pub const fn new(index: u64, seq: u32) -> EventId {
        EventId { index, seq }
    }

    /// The last id an entry at `index` could give: "everything up to this entry".
    pub const fn end_of(index: u64) -> EventId {
        EventId {
            index,
            seq: u32::MAX,
        }
    }
}

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.index, self.seq)
    }
}

/// Why a string is not an event id.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not an event id (expected INDEX-N, e.g. 12-0)")]
pub struct BadEventId(pub String);

impl FromStr for EventId {
    type Err = BadEventId;

    fn from_str(s: &str) -> Result<EventId, BadEventId> {
        let bad = || BadEventId(s.to_string());
        let (i, n) = s.trim().split_once('-').ok_or_else(bad)?;
        let digits = |t: &str| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit());
        if !digits(i) || !digits(n) {
            return Err(bad());
        }
        Ok(EventId {
            index: i.parse().map_err(|_| bad())?,
            seq: n.parse().map_err(|_| bad())?,
        })
    }
}

impl Serialize for EventId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for EventId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<EventId, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// One event: its id, the log time of the entry that produced it, and what happened.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ClusterEvent {
    pub id: EventId,
    /// The time stamped on the log entry (the leader's clock when it proposed it).
    pub at: Millis,
    #[serde(flatten)]
    pub body: EventBody,
}

/// What happened. The `type` field names the kind; `GET /v1/events?type=` filters on it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum EventBody {
    /// A task changed state.
    Task {
        task: TaskId,
        job: JobId,
        from: TaskState,
        state: TaskState,
        /// The current attempt (0 before the first placement).
        attempt: Attempt,
        /// The worker of the current (or, once it ended, the latest) attempt.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        worker: Option<WorkerId>,
        /// How the latest attempt ended, once it has.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        outcome: Option<Outcome>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        failure: Option<FailureCause>,
        /// For a task completed from the result cache: the task whose result it took.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        cached_from: Option<TaskId>,
    },
    /// A worker joined (or rejoined), was lost, started draining or resumed.
    Worker {
        worker: WorkerId,
        name: String,
        change: WorkerChange,
        state: WorkerState,
    },
    /// A job was submitted, or more of its tasks reached a final state.
    Job {
        job: JobId,
        name: String,
        /// Tasks in a final state, of which `failed` did not succeed.
        done: u64,
        failed: u64,
        total: u64,
    },
    /// The scheduling policy was switched.
    Policy { policy: PolicyConfig },
    /// A server began to lead, in a new term. Derived from the empty entry every new
    /// leader commits first, so each replica tells it at the same id; it marks where
    /// dispatch, liveness and worker sessions moved to another server.
    Leader {
        term: u64,
        /// The leader's node id (see `GET /v1/servers`).
        leader: u64,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WorkerChange {
    Joined,
    Lost,
    Drained,
    Resumed,
}

impl EventBody {
    /// The value of `type` for this kind of event.
    pub fn kind(&self) -> &'static str {
        match self {
            EventBody::Task { .. } => "task",
            EventBody::Worker { .. } => "worker",
            EventBody::Job { .. } => "job",
            EventBody::Policy { .. } => "policy",
            EventBody::Leader { .. } => "leader",
        }
    }
}

/// Every value `type` may take.
pub const EVENT_KINDS: [&str; 5] = ["task", "worker", "job", "policy", "leader"];

/// The data of the `reset` event the server sends instead of a silent gap: the events
/// after the client's position are no longer retained (or the client fell too far
/// behind); the stream continues from the oldest retained one.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResetNotice {
    /// What the client asked to resume after (or its position when it fell behind).
    pub after: EventId,
    /// Events up to and including this id were dropped from this server's buffer.
    pub dropped_through: EventId,
    pub message: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_and_order() {
        let a: EventId = "12-3".parse().unwrap();
        assert_eq!(a, EventId::new(12, 3));
        assert_eq!(a.to_string(), "12-3");
        assert!(EventId::new(12, 3) < EventId::new(12, 10));
        assert!(EventId::new(12, 10) < EventId::new(13, 0));
        for bad in ["", "12", "12-", "-3", "a-1", "1-2-3", "1--2"] {
            assert!(bad.parse::<EventId>().is_err(), "{bad}");
        }
    }

    #[test]
    fn an_event_is_flat_json() {
        let e = ClusterEvent {
            id: EventId::new(7, 1),
            at: Millis(5),
            body: EventBody::Job {
                job: JobId(2),
                name: "n".into(),
                done: 1,
                failed: 0,
                total: 3,
            },
        };
        let v = serde_json::to_value(&e).unwrap();
        assert_eq!(v["id"], "7-1");
        assert_eq!(v["type"], "job");
        assert_eq!(v["done"], 1);
        let back: ClusterEvent = serde_json::from_value(v).unwrap();
        assert_eq!(back, e);
    }
}
