//! What the autoscaler should do now: a pure function of what it sees (the queue, the
//! workers it manages, the time), so that every rule is a table test.
//!
//! The loop (`scaler.rs`) gathers the inputs from the applied state and the provider,
//! calls [`decide`], and carries the actions out. Nothing here touches the clock, the
//! provider or the log.

use std::fmt;

/// A size of worker: what it offers to tasks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct WorkerSize {
    pub cpu_milli: u32,
    pub memory_bytes: u64,
}

impl WorkerSize {
    fn holds(&self, need: &Need) -> bool {
        need.cpu_milli <= self.cpu_milli && need.memory_bytes <= self.memory_bytes
    }
}

impl fmt::Display for WorkerSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} cpu, {}",
            self.cpu_milli as f64 / 1000.0,
            drover_types::format_bytes(self.memory_bytes)
        )
    }
}

/// What one queued task needs (the resources sizes are made of).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Need {
    pub cpu_milli: u32,
    pub memory_bytes: u64,
}

/// Where a managed worker is in its life, as the provider and the log tell it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ManagedState {
    /// Its instance runs but the worker has not joined (yet).
    Starting,
    Active,
    Draining,
    /// The cluster declared it lost (its agent stopped answering).
    Lost,
    /// Its instance is not running any more.
    Exited,
}

/// A worker the autoscaler started (found through the provider's labels).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Managed {
    pub name: String,
    pub size: WorkerSize,
    pub state: ManagedState,
    /// Tasks running or queued on it.
    pub tasks: u32,
    /// Since when (the loop's clock, ms) it has had no task, while it has none.
    pub idle_since_ms: Option<u64>,
    /// When the loop first saw its instance.
    pub seen_since_ms: u64,
}

/// Everything [`decide`] looks at.
#[derive(Clone, Debug)]
pub struct Inputs<'a> {
    pub now_ms: u64,
    pub min: u32,
    pub max: u32,
    /// How long a worker stays idle before it is drained.
    pub cooldown_ms: u64,
    /// A worker that has not joined this long after its instance appeared is stopped.
    pub join_timeout_ms: u64,
    /// The sizes it may start, smallest first (never empty).
    pub sizes: &'a [WorkerSize],
    /// Tasks in the ready queue: none of them could be placed by the last round.
    pub pending: &'a [Need],
    /// The capacity of every active worker of the cluster, managed or not: a task no
    /// capacity holds needs a bigger worker than any there is.
    pub active_capacities: &'a [WorkerSize],
    pub managed: &'a [Managed],
}

/// One thing to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    Start {
        size: WorkerSize,
        reason: String,
    },
    /// Through the log (`WorkerDrain`): it takes no new task; stopped once empty.
    Drain {
        name: String,
        reason: String,
    },
    /// Stop and remove its instance.
    Stop {
        name: String,
        reason: String,
    },
}

/// The actions for this moment: stops first, then drains, then starts.
pub fn decide(inp: &Inputs<'_>) -> Vec<Action> {
    let mut actions = Vec::new();
    let mut remaining: Vec<&Managed> = Vec::new();
    for m in inp.managed {
        let stop = match m.state {
            ManagedState::Exited => Some("its instance is no longer running".to_string()),
            ManagedState::Lost => Some("the cluster declared its worker lost".to_string()),
            ManagedState::Draining if m.tasks == 0 => {
                Some("drained: nothing runs on it any more".to_string())
            }
            ManagedState::Starting
                if inp.now_ms.saturating_sub(m.seen_since_ms) >= inp.join_timeout_ms =>
            {
                Some(format!(
                    "its worker did not join within {} s",
                    inp.join_timeout_ms / 1000
                ))
            }
            _ => None,
        };
        match stop {
            Some(reason) => actions.push(Action::Stop {
                name: m.name.clone(),
                reason,
            }),
            None => remaining.push(m),
        }
    }
    // Instances that still exist count against the maximum; draining ones do not count
    // towards the minimum (they are on their way out).
    let existing = remaining.len() as u32;
    let serving = remaining
        .iter()
        .filter(|m| m.state != ManagedState::Draining)
        .count() as u32;
    let room = inp.max.saturating_sub(existing);

    let starts = starts_for_queue(inp, &remaining, room);
    let wanted = inp
        .pending
        .iter()
        .any(|n| inp.sizes.iter().any(|s| s.holds(n)));
    let starting = starts.len() as u32;
    actions.extend(starts);
    if starting == 0 && !wanted {
        actions.extend(drains(inp, &remaining, serving));
    }
    if serving + starting < inp.min && existing + starting < inp.max {
        let missing = (inp.min - serving - starting).min(inp.max - existing - starting);
        for _ in 0..missing {
            actions.push(Action::Start {
                size: inp.sizes[0],
                reason: format!("keeps the minimum of {} workers", inp.min),
            });
        }
    }
    actions
}

/// A worker to be, with what is left of it once queued tasks are counted on it.
struct Bin {
    left: Need,
    size: WorkerSize,
    new: bool,
    big: bool,
}

/// Packs the queue first-fit, largest need first, into the workers already starting,
/// then into new ones (so the tasks that need a big worker get one before the maximum
/// is reached by small ones, and small tasks fill what room a big worker leaves): a
/// task no active worker could ever hold gets the smallest size that holds it ("no
/// worker has 8 cpus" asks for a big worker); a task that merely waits for room (all
/// workers busy) gets the smallest size that holds it, usually the first.
fn starts_for_queue(inp: &Inputs<'_>, remaining: &[&Managed], room: u32) -> Vec<Action> {
    let mut bins: Vec<Bin> = remaining
        .iter()
        .filter(|m| m.state == ManagedState::Starting)
        .map(|m| Bin {
            left: Need {
                cpu_milli: m.size.cpu_milli,
                memory_bytes: m.size.memory_bytes,
            },
            size: m.size,
            new: false,
            big: false,
        })
        .collect();
    let mut busy = 0u32;
    let mut big = 0u32;
    let mut pending: Vec<&Need> = inp.pending.iter().collect();
    pending.sort_by_key(|n| std::cmp::Reverse((n.cpu_milli, n.memory_bytes)));
    for need in pending {
        let Some(size) = inp.sizes.iter().find(|s| s.holds(need)) else {
            continue; // No size holds it: starting workers would not help.
        };
        // With no active worker at all, nothing is "too big" yet: it is just waiting.
        let is_big = !inp.active_capacities.is_empty()
            && !inp.active_capacities.iter().any(|c| c.holds(need));
        if is_big {
            big += 1;
        } else {
            busy += 1;
        }
        if let Some(bin) = bins.iter_mut().find(|b| {
            need.cpu_milli <= b.left.cpu_milli && need.memory_bytes <= b.left.memory_bytes
        }) {
            bin.left.cpu_milli -= need.cpu_milli;
            bin.left.memory_bytes -= need.memory_bytes;
            continue;
        }
        if bins.iter().filter(|b| b.new).count() as u32 >= room {
            continue;
        }
        bins.push(Bin {
            left: Need {
                cpu_milli: size.cpu_milli - need.cpu_milli,
                memory_bytes: size.memory_bytes - need.memory_bytes,
            },
            size: *size,
            new: true,
            big: is_big,
        });
    }
    bins.into_iter()
        .filter(|b| b.new)
        .map(|b| Action::Start {
            size: b.size,
            reason: if b.big {
                format!(
                    "{big} queued task(s) need more than any worker has; this size ({}) holds them",
                    b.size
                )
            } else if inp.active_capacities.is_empty() {
                format!("no active worker: {busy} task(s) queued")
            } else {
                format!("all workers busy: {busy} task(s) queued")
            },
        })
        .collect()
}

/// Idle workers beyond the minimum, idle for the cooldown or longer: the longest idle
/// first (then by name, so the choice is stable).
fn drains(inp: &Inputs<'_>, remaining: &[&Managed], serving: u32) -> Vec<Action> {
    let mut idle: Vec<(u64, &str)> = remaining
        .iter()
        .filter(|m| m.state == ManagedState::Active && m.tasks == 0)
        .filter_map(|m| {
            let since = m.idle_since_ms?;
            (inp.now_ms.saturating_sub(since) >= inp.cooldown_ms).then_some((since, &*m.name))
        })
        .collect();
    idle.sort();
    let surplus = serving.saturating_sub(inp.min) as usize;
    idle.into_iter()
        .take(surplus)
        .map(|(since, name)| Action::Drain {
            name: name.to_string(),
            reason: format!(
                "idle for {} s (cooldown {} s), above the minimum of {}",
                inp.now_ms.saturating_sub(since) / 1000,
                inp.cooldown_ms / 1000,
                inp.min
            ),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const G: u64 = 1 << 30;
    const SMALL: WorkerSize = WorkerSize {
        cpu_milli: 2000,
        memory_bytes: 2 * G,
    };
    const BIG: WorkerSize = WorkerSize {
        cpu_milli: 8000,
        memory_bytes: 16 * G,
    };

    fn need(cpus: u32, mem_g: u64) -> Need {
        Need {
            cpu_milli: cpus * 1000,
            memory_bytes: mem_g * G,
        }
    }

    fn managed(name: &str, size: WorkerSize, state: ManagedState, tasks: u32) -> Managed {
        Managed {
            name: name.into(),
            size,
            state,
            tasks,
            idle_since_ms: (tasks == 0).then_some(0),
            seen_since_ms: 0,
        }
    }

    fn inputs<'a>(
        now_ms: u64,
        pending: &'a [Need],
        caps: &'a [WorkerSize],
        managed: &'a [Managed],
    ) -> Inputs<'a> {
        Inputs {
            now_ms,
            min: 0,
            max: 3,
            cooldown_ms: 10_000,
            join_timeout_ms: 60_000,
            sizes: &[SMALL, BIG],
            pending,
            active_capacities: caps,
            managed,
        }
    }

    fn starts(actions: &[Action]) -> Vec<WorkerSize> {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::Start { size, .. } => Some(*size),
                _ => None,
            })
            .collect()
    }

    fn named(actions: &[Action], drain: bool) -> Vec<String> {
        actions
            .iter()
            .filter_map(|a| match (a, drain) {
                (Action::Drain { name, .. }, true) | (Action::Stop { name, .. }, false) => {
                    Some(name.clone())
                }
                _ => None,
            })
            .collect()
    }

    /// (case, pending, active capacities, managed, now, expected starts, drains, stops)
    type Case = (
        &'static str,
        Vec<Need>,
        Vec<WorkerSize>,
        Vec<Managed>,
        u64,
        Vec<WorkerSize>,
        Vec<&'static str>,
        Vec<&'static str>,
    );

    #[test]
    fn table() {
        use ManagedState::*;
        let cases: Vec<Case> = vec![
            (
                "nothing queued, nothing managed: nothing to do",
                vec![],
                vec![],
                vec![],
                0,
                vec![],
                vec![],
                vec![],
            ),
            (
                "one small task, no worker: one small worker",
                vec![need(1, 0)],
                vec![],
                vec![],
                0,
                vec![SMALL],
                vec![],
                vec![],
            ),
            (
                "four 1-cpu tasks pack two to a small worker",
                vec![need(1, 0); 4],
                vec![SMALL],
                vec![],
                0,
                vec![SMALL, SMALL],
                vec![],
                vec![],
            ),
            (
                "a burst stops at the maximum",
                vec![need(2, 0); 10],
                vec![],
                vec![],
                0,
                vec![SMALL; 3],
                vec![],
                vec![],
            ),
            (
                "no worker has 8 cpus: a big one",
                vec![need(8, 1)],
                vec![SMALL],
                vec![],
                0,
                vec![BIG],
                vec![],
                vec![],
            ),
            (
                "a task no size holds starts nothing",
                vec![need(64, 0)],
                vec![],
                vec![],
                0,
                vec![],
                vec![],
                vec![],
            ),
            (
                "a starting worker absorbs the queue",
                vec![need(1, 0); 2],
                vec![],
                vec![managed("a", SMALL, Starting, 0)],
                0,
                vec![],
                vec![],
                vec![],
            ),
            (
                "a starting worker takes part of it",
                vec![need(1, 0); 3],
                vec![],
                vec![managed("a", SMALL, Starting, 0)],
                0,
                vec![SMALL],
                vec![],
                vec![],
            ),
            (
                "instances count against the maximum",
                vec![need(2, 0); 5],
                vec![SMALL; 2],
                vec![
                    managed("a", SMALL, Active, 1),
                    managed("b", SMALL, Draining, 1),
                ],
                0,
                vec![SMALL],
                vec![],
                vec![],
            ),
            (
                "idle past the cooldown: drained",
                vec![],
                vec![SMALL],
                vec![managed("a", SMALL, Active, 0)],
                10_000,
                vec![],
                vec!["a"],
                vec![],
            ),
            (
                "idle within the cooldown: kept",
                vec![],
                vec![SMALL],
                vec![managed("a", SMALL, Active, 0)],
                9_999,
                vec![],
                vec![],
                vec![],
            ),
            (
                "busy: kept",
                vec![],
                vec![SMALL],
                vec![managed("a", SMALL, Active, 2)],
                99_000,
                vec![],
                vec![],
                vec![],
            ),
            (
                "no drain while work is queued",
                vec![need(1, 0)],
                vec![SMALL],
                vec![
                    managed("a", SMALL, Active, 0),
                    managed("b", SMALL, Starting, 0),
                ],
                50_000,
                vec![],
                vec![],
                vec![],
            ),
            (
                "drained and empty: stopped",
                vec![],
                vec![],
                vec![managed("a", SMALL, Draining, 0)],
                0,
                vec![],
                vec![],
                vec!["a"],
            ),
            (
                "draining with tasks: waits",
                vec![],
                vec![],
                vec![managed("a", SMALL, Draining, 1)],
                0,
                vec![],
                vec![],
                vec![],
            ),
            (
                "exited and lost: stopped (removed)",
                vec![],
                vec![],
                vec![managed("a", SMALL, Exited, 0), managed("b", SMALL, Lost, 0)],
                0,
                vec![],
                vec![],
                vec!["a", "b"],
            ),
            (
                "never joined: stopped after the join timeout",
                vec![],
                vec![],
                vec![managed("a", SMALL, Starting, 0)],
                60_000,
                vec![],
                vec![],
                vec!["a"],
            ),
            (
                "big first, small ones fill its room, then the maximum",
                vec![
                    need(1, 0),
                    need(1, 0),
                    need(1, 0),
                    need(1, 0),
                    need(7, 1),
                    need(1, 0),
                ],
                vec![],
                vec![],
                0,
                vec![BIG, SMALL, SMALL],
                vec![],
                vec![],
            ),
            (
                "a stopped instance frees room at once",
                vec![need(2, 0); 5],
                vec![],
                vec![
                    managed("x", SMALL, Exited, 0),
                    managed("a", SMALL, Active, 1),
                    managed("b", SMALL, Active, 1),
                ],
                0,
                vec![SMALL],
                vec![],
                vec!["x"],
            ),
        ];
        for (case, pending, caps, managed, now, want_starts, want_drains, want_stops) in cases {
            let actions = decide(&inputs(now, &pending, &caps, &managed));
            assert_eq!(starts(&actions), want_starts, "{case}: {actions:#?}");
            assert_eq!(named(&actions, true), want_drains, "{case}: {actions:#?}");
            assert_eq!(named(&actions, false), want_stops, "{case}: {actions:#?}");
        }
    }

    #[test]
    fn the_minimum_is_kept_and_never_drained_below() {
        let idle = vec![
            managed("a", SMALL, ManagedState::Active, 0),
            managed("b", SMALL, ManagedState::Active, 0),
        ];
        let mut inp = inputs(50_000, &[], &[SMALL, SMALL], &idle);
        inp.min = 1;
        let actions = decide(&inp);
        assert_eq!(named(&actions, true), vec!["a"], "{actions:#?}");
        assert!(starts(&actions).is_empty());

        let mut inp = inputs(0, &[], &[], &[]);
        inp.min = 2;
        assert_eq!(starts(&decide(&inp)), vec![SMALL, SMALL]);
        // A draining worker does not count towards the minimum, but does against the
        // maximum.
        let draining = vec![managed("a", SMALL, ManagedState::Draining, 1)];
        let mut inp = inputs(0, &[], &[], &draining);
        inp.min = 3;
        assert_eq!(starts(&decide(&inp)).len(), 2);
    }

    #[test]
    fn reasons_name_the_cause() {
        let actions = decide(&inputs(0, &[need(8, 1)], &[SMALL], &[]));
        match &actions[0] {
            Action::Start { reason, .. } => {
                assert!(reason.contains("need more than any worker has"), "{reason}")
            }
            a => panic!("{a:?}"),
        }
        let actions = decide(&inputs(0, &[need(1, 0)], &[SMALL], &[]));
        match &actions[0] {
            Action::Start { reason, .. } => {
                assert!(reason.contains("all workers busy"), "{reason}")
            }
            a => panic!("{a:?}"),
        }
    }
}
