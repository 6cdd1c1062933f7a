//! The server's buffer of recent events, fed by the state store as entries are applied.
//!
//! Events are derived from the committed log (`drover_state::StateMachine::apply_indexed`)
//! and are identical on every server; this buffer is not. It is not in the log nor in
//! snapshots: it holds the last `capacity` events this server applied, so after a restart
//! it starts at the snapshot point (the entries after the snapshot are re-applied and
//! their events come back with the same ids; events of entries before it are gone).
//!
//! Publishing never waits for a reader: it appends under a short lock, drops the oldest
//! events past the capacity and bumps a watch channel. Each reader keeps only its
//! position and copies what follows it; a reader that fell behind the buffer (it asked
//! for an old id, or read too slowly) is told so explicitly, never given a silent gap.

use drover_proto::events::{ClusterEvent, EventId};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use tokio::sync::watch;

/// How many events a server keeps by default.
pub const DEFAULT_RETAINED: usize = 100_000;

#[derive(Debug)]
pub struct EventHub {
    ring: Mutex<Ring>,
    /// The id of the newest event published (or the floor when none is retained).
    latest: watch::Sender<EventId>,
}

#[derive(Debug)]
struct Ring {
    events: VecDeque<Arc<ClusterEvent>>,
    capacity: usize,
    /// Every event with an id above this one is retained (or still to come); the
    /// events up to it are not.
    floor: EventId,
}

/// The reader is behind what is retained: events after its position were dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Behind {
    pub dropped_through: EventId,
}

impl EventHub {
    /// An empty buffer of `capacity` events; events up to `floor` are unknown to it.
    pub fn new(capacity: usize, floor: EventId) -> EventHub {
        EventHub {
            ring: Mutex::new(Ring {
                events: VecDeque::new(),
                capacity: capacity.max(1),
                floor,
            }),
            latest: watch::channel(floor).0,
        }
    }

    fn ring(&self) -> std::sync::MutexGuard<'_, Ring> {
        self.ring.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn set_capacity(&self, capacity: usize) {
        let mut r = self.ring();
        r.capacity = capacity.max(1);
        r.trim();
    }

    /// Appends the events of applied entries (in id order).
    pub fn publish(&self, events: Vec<ClusterEvent>) {
        let Some(last) = events.last().map(|e| e.id) else {
            return;
        };
        {
            let mut r = self.ring();
            r.events.extend(events.into_iter().map(Arc::new));
            r.trim();
        }
        self.latest.send_replace(last);
    }

    /// Forgets everything up to `floor` (a snapshot was installed in place of the log).
    pub fn restart_at(&self, floor: EventId) {
        {
            let mut r = self.ring();
            r.events.clear();
            r.floor = floor;
        }
        self.latest.send_replace(floor);
    }

    /// The id of the newest event (the position of a reader that wants only new ones).
    pub fn position(&self) -> EventId {
        let r = self.ring();
        r.events.back().map(|e| e.id).unwrap_or(r.floor)
    }

    /// A receiver that changes whenever events are published.
    pub fn subscribe(&self) -> watch::Receiver<EventId> {
        self.latest.subscribe()
    }

    /// Copies up to `max` events with ids above `after` into `out`; `Err` when some
    /// such events are no longer retained.
    pub fn read_after(
        &self,
        after: EventId,
        max: usize,
        out: &mut Vec<Arc<ClusterEvent>>,
    ) -> Result<(), Behind> {
        let r = self.ring();
        if after < r.floor {
            return Err(Behind {
                dropped_through: r.floor,
            });
        }
        let start = r.events.partition_point(|e| e.id <= after);
        out.extend(r.events.range(start..).take(max).cloned());
        Ok(())
    }
}

impl Ring {
    fn trim(&mut self) {
        while self.events.len() > self.capacity {
            if let Some(e) = self.events.pop_front() {
                self.floor = e.id;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use drover_proto::events::EventBody;
    use drover_types::{Millis, PolicyConfig};

    fn ev(index: u64, seq: u32) -> ClusterEvent {
        ClusterEvent {
            id: EventId::new(index, seq),
            at: Millis(0),
            body: EventBody::Policy {
                policy: PolicyConfig::default(),
            },
        }
    }

    #[test]
    fn readers_resume_after_their_id_or_learn_they_are_behind() {
        let hub = EventHub::new(3, EventId::default());
        hub.publish(vec![ev(1, 0), ev(1, 1)]);
        hub.publish(vec![ev(2, 0)]);
        let mut out = Vec::new();
        hub.read_after(EventId::new(1, 0), 10, &mut out).unwrap();
        let ids: Vec<_> = out.iter().map(|e| e.id.to_string()).collect();
        assert_eq!(ids, ["1-1", "2-0"]);
        hub.publish(vec![ev(3, 0)]); // drops 1-0
        assert_eq!(hub.position(), EventId::new(3, 0));
        out.clear();
        assert_eq!(
            hub.read_after(EventId::default(), 10, &mut out),
            Err(Behind {
                dropped_through: EventId::new(1, 0)
            })
        );
        // Right at the floor: nothing is missing.
        hub.read_after(EventId::new(1, 0), 10, &mut out).unwrap();
        assert_eq!(out.len(), 3);
    }
}
