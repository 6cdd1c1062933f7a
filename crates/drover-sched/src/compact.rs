//! How the snapshot's fields that hold user-facing types are written in a compact,
//! non-self-describing format (postcard).
//!
//! The user-facing types in `drover-types` are shaped for the JSON API: empty fields
//! are left out (`skip_serializing_if`), dependencies are untagged (`17` or `"key"`),
//! outcomes, failure causes and queue policies are internally tagged (`{"kind": …}`).
//! A format that writes fields by position and cannot look ahead (postcard) can read
//! none of that back. Changing those types would change the API (and its OpenAPI
//! document), so the snapshot instead writes them through the mirrors below
//! (serde's `remote` derive: same fields, every one always written, enums externally
//! tagged) — but only when the format is not human-readable: a JSON snapshot keeps the
//! exact shape it always had, so older `snapshot.json` files still read.
//!
//! Each `with`-module here is used on one field of a snapshot-only type
//! (`SchedulerSnapshot`, `TaskRec`, `WorkerRec`). A new field of one of the mirrored
//! types must be added to its mirror too (the compiler insists: a remote derive lists
//! every field).

use crate::scheduler::SchedulerConfig;
use crate::stored_spec::StoredSpec;
use crate::view::AttemptRecord;
use drover_types::{
    ArraySpec, Attempt, Backoff, DepRef, EnforcedLimit, FailureCause, Isolation, LabelSelector,
    Limits, Millis, MultifactorWeights, Outcome, PlacementPolicyKind, PolicyConfig,
    QueuePolicyKind, Resources, RetryPolicy, SecretString, TaskId, TaskSpec, WorkerId, WorkerSpec,
};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::collections::BTreeMap;

#[derive(Serialize, Deserialize)]
#[serde(remote = "Resources")]
struct ResourcesC {
    cpu_milli: u32,
    memory_bytes: u64,
    disk_bytes: u64,
    gpus: u32,
    custom: BTreeMap<String, u64>,
}

#[derive(Serialize, Deserialize)]
#[serde(remote = "DepRef")]
enum DepRefC {
    Id(TaskId),
    Key(String),
}

#[derive(Serialize, Deserialize)]
#[serde(remote = "LabelSelector")]
struct LabelSelectorC {
    key: String,
    op: drover_types::SelectorOp,
    values: Vec<String>,
}

#[derive(Serialize, Deserialize)]
#[serde(remote = "RetryPolicy")]
struct RetryPolicyC {
    max_attempts: u32,
    backoff: Backoff,
    retry_on_exit_codes: Vec<i32>,
}

// Owned wrappers of the mirrored types, so that they can sit in a `Vec` or `Option`.
#[derive(Serialize, Deserialize)]
struct DepRefW(#[serde(with = "DepRefC")] DepRef);
#[derive(Serialize, Deserialize)]
struct LabelSelectorW(#[serde(with = "LabelSelectorC")] LabelSelector);
#[derive(Serialize, Deserialize)]
struct OutcomeW(#[serde(with = "OutcomeC")] Outcome);
struct AttemptRecordW(AttemptRecord);

impl<'de> Deserialize<'de> for AttemptRecordW {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        if reading_pre_isolation_layout() {
            AttemptRecordV3C::deserialize(d).map(AttemptRecordW)
        } else {
            AttemptRecordC::deserialize(d).map(AttemptRecordW)
        }
    }
}
struct TaskSpecW(TaskSpec);

impl<'de> Deserialize<'de> for TaskSpecW {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        if reading_pre_driver_layout() {
            TaskSpecV2C::deserialize(d).map(TaskSpecW)
        } else {
            TaskSpecC::deserialize(d).map(TaskSpecW)
        }
    }
}

thread_local! {
    /// Set while a snapshot written before drivers existed (state format 2 and older)
    /// is decoded on this thread: its task and worker specs lack the driver fields,
    /// and postcard, being positional, must be told which layout it reads.
    static PRE_DRIVER_LAYOUT: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

fn reading_pre_driver_layout() -> bool {
    PRE_DRIVER_LAYOUT.with(|c| c.get())
}

/// Runs `f` (a decode of a binary snapshot on this thread) reading task and worker
/// specs in the layout they had before drivers: every task then runs on `process`,
/// every worker has `process` only, which is what they were. An encode inside `f`
/// writes that layout too (for tests that make an old snapshot).
pub fn pre_driver_layout<R>(f: impl FnOnce() -> R) -> R {
    with_flag_set(&PRE_DRIVER_LAYOUT, f)
}

/// Runs `f` with the thread-local `flag` set, and puts back what it was after (also
/// when `f` panics).
fn with_flag_set<R>(
    flag: &'static std::thread::LocalKey<std::cell::Cell<bool>>,
    f: impl FnOnce() -> R,
) -> R {
    struct Reset(&'static std::thread::LocalKey<std::cell::Cell<bool>>, bool);
    impl Drop for Reset {
        fn drop(&mut self) {
            self.0.with(|c| c.set(self.1));
        }
    }
    let _reset = Reset(flag, flag.with(|c| c.replace(true)));
    f()
}

thread_local! {
    /// Set while a snapshot of state format 3 is decoded on this thread: its worker
    /// specs lack `isolation` (read as "did not say"). Formats 1 and 2 lack it too;
    /// [`pre_driver_layout`] covers them.
    static PRE_ISOLATION_LAYOUT: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Formats 1 and 2 ([`pre_driver_layout`]) lack isolation too.
fn reading_pre_isolation_layout() -> bool {
    PRE_ISOLATION_LAYOUT.with(|c| c.get()) || reading_pre_driver_layout()
}

/// Runs `f` (a decode of a binary snapshot of state format 3 on this thread) reading
/// worker specs without their isolation; an encode inside `f` writes that layout too.
pub fn pre_isolation_layout<R>(f: impl FnOnce() -> R) -> R {
    with_flag_set(&PRE_ISOLATION_LAYOUT, f)
}

/// Writes an attempt without copying it.
struct AttemptRef<'a>(&'a AttemptRecord);
impl Serialize for AttemptRef<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if reading_pre_isolation_layout() {
            AttemptRecordV3C::serialize(self.0, s)
        } else {
            AttemptRecordC::serialize(self.0, s)
        }
    }
}

fn ser_vec<S: Serializer, T, W: Serialize>(
    items: &[T],
    wrap: impl Fn(&T) -> W,
    s: S,
) -> Result<S::Ok, S::Error> {
    s.collect_seq(items.iter().map(wrap))
}

mod dep_refs {
    use super::*;
    pub fn serialize<S: Serializer>(v: &[DepRef], s: S) -> Result<S::Ok, S::Error> {
        ser_vec(v, |d| DepRefW(d.clone()), s)
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<DepRef>, D::Error> {
        Ok(Vec::<DepRefW>::deserialize(d)?
            .into_iter()
            .map(|w| w.0)
            .collect())
    }
}

mod selectors {
    use super::*;
    pub fn serialize<S: Serializer>(v: &[LabelSelector], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(v.iter().map(LabelSelectorRef))
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<LabelSelector>, D::Error> {
        Ok(Vec::<LabelSelectorW>::deserialize(d)?
            .into_iter()
            .map(|w| w.0)
            .collect())
    }
    /// Writes a selector without copying it.
    struct LabelSelectorRef<'a>(&'a LabelSelector);
    impl Serialize for LabelSelectorRef<'_> {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            LabelSelectorC::serialize(self.0, s)
        }
    }
}

#[derive(Serialize, Deserialize)]
#[serde(remote = "TaskSpec")]
struct TaskSpecC {
    key: Option<String>,
    name: String,
    command: Vec<String>,
    shell: bool,
    env: BTreeMap<String, String>,
    workdir: Option<String>,
    #[serde(with = "ResourcesC")]
    resources: Resources,
    #[serde(with = "dep_refs")]
    after: Vec<DepRef>,
    priority: i32,
    max_runtime_ms: Option<u64>,
    expected_runtime_ms: Option<u64>,
    #[serde(with = "RetryPolicyC")]
    retry: RetryPolicy,
    labels: BTreeMap<String, String>,
    #[serde(with = "selectors")]
    constraints: Vec<LabelSelector>,
    #[serde(with = "selectors")]
    affinity: Vec<LabelSelector>,
    inputs: Vec<String>,
    owner: String,
    array: Option<ArraySpec>,
    /// Not written (format 4: adaptive splitting): the split's record carries it, in
    /// the state machine's snapshot, and the restore puts it back into the slots'
    /// specs; writing it here would change the shape of every task.
    #[serde(skip)]
    split: Option<drover_types::SplitSpec>,
    secret_env: BTreeMap<String, SecretString>,
    driver: Option<String>,
    image: Option<String>,
    /// Not written: the state machine keeps each cacheable task's opt-in in its own
    /// table (`drover-state`'s `ResultCache`), which is in the snapshot; writing it
    /// here would change the shape of every task and make older snapshots unreadable.
    #[serde(skip)]
    cache: Option<drover_types::CacheSpec>,
    checkpoint: Option<drover_types::CheckpointSpec>,
    preemptible: bool,
}

/// [`TaskSpecC`] as written before drivers (see [`pre_driver_layout`]).
#[derive(Serialize, Deserialize)]
#[serde(remote = "TaskSpec")]
struct TaskSpecV2C {
    key: Option<String>,
    name: String,
    command: Vec<String>,
    shell: bool,
    env: BTreeMap<String, String>,
    workdir: Option<String>,
    #[serde(with = "ResourcesC")]
    resources: Resources,
    #[serde(with = "dep_refs")]
    after: Vec<DepRef>,
    priority: i32,
    max_runtime_ms: Option<u64>,
    expected_runtime_ms: Option<u64>,
    #[serde(with = "RetryPolicyC")]
    retry: RetryPolicy,
    labels: BTreeMap<String, String>,
    #[serde(with = "selectors")]
    constraints: Vec<LabelSelector>,
    #[serde(with = "selectors")]
    affinity: Vec<LabelSelector>,
    inputs: Vec<String>,
    owner: String,
    array: Option<ArraySpec>,
    /// Not written (format 4: adaptive splitting): the split's record carries it, in
    /// the state machine's snapshot, and the restore puts it back into the slots'
    /// specs; writing it here would change the shape of every task.
    #[serde(skip)]
    split: Option<drover_types::SplitSpec>,
    secret_env: BTreeMap<String, SecretString>,
    #[serde(skip, default)]
    driver: Option<String>,
    #[serde(skip, default)]
    image: Option<String>,
    #[serde(skip)]
    cache: Option<drover_types::CacheSpec>,
    #[serde(skip, default)]
    checkpoint: Option<drover_types::CheckpointSpec>,
    #[serde(skip, default)]
    preemptible: bool,
}

#[derive(Serialize, Deserialize)]
#[serde(remote = "Outcome")]
enum OutcomeC {
    Exited { code: i32 },
    Signaled { signal: i32 },
    TimedOut,
    Killed,
    OutOfMemory,
    SpawnFailed { message: String },
    Fenced,
    TooManyProcesses { limit: u64 },
}

#[derive(Serialize, Deserialize)]
#[serde(remote = "FailureCause")]
enum FailureCauseC {
    Outcome {
        #[serde(with = "OutcomeC")]
        outcome: Outcome,
    },
    WorkerLost {
        worker: WorkerId,
    },
    Preempted,
    Retracted,
    TimeLimit,
}

mod option_outcome {
    use super::*;
    pub fn serialize<S: Serializer>(v: &Option<Outcome>, s: S) -> Result<S::Ok, S::Error> {
        v.clone().map(OutcomeW).serialize(s)
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Outcome>, D::Error> {
        Ok(Option::<OutcomeW>::deserialize(d)?.map(|w| w.0))
    }
}

#[derive(Serialize, Deserialize)]
struct FailureCauseW(#[serde(with = "FailureCauseC")] FailureCause);

mod option_failure {
    use super::*;
    pub fn serialize<S: Serializer>(v: &Option<FailureCause>, s: S) -> Result<S::Ok, S::Error> {
        v.clone().map(FailureCauseW).serialize(s)
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<FailureCause>, D::Error> {
        Ok(Option::<FailureCauseW>::deserialize(d)?.map(|w| w.0))
    }
}

#[derive(Serialize, Deserialize)]
#[serde(remote = "AttemptRecord")]
struct AttemptRecordC {
    attempt: Attempt,
    worker: WorkerId,
    assigned_at: Millis,
    started_at: Option<Millis>,
    ended_at: Option<Millis>,
    #[serde(with = "option_outcome")]
    outcome: Option<Outcome>,
    #[serde(with = "option_failure")]
    failure: Option<FailureCause>,
    // format 4: isolation (the GPU indices the worker gave the attempt)
    gpus: Vec<u32>,
}

/// [`AttemptRecordC`] as written before GPU indices (state format 3 and older).
#[derive(Serialize, Deserialize)]
#[serde(remote = "AttemptRecord")]
struct AttemptRecordV3C {
    attempt: Attempt,
    worker: WorkerId,
    assigned_at: Millis,
    started_at: Option<Millis>,
    ended_at: Option<Millis>,
    #[serde(with = "option_outcome")]
    outcome: Option<Outcome>,
    #[serde(with = "option_failure")]
    failure: Option<FailureCause>,
    #[serde(skip, default)]
    gpus: Vec<u32>,
}

#[derive(Serialize, Deserialize)]
#[serde(remote = "QueuePolicyKind")]
enum QueuePolicyKindC {
    Fcfs,
    Priority {
        aging_ms: u64,
    },
    ShortestJobFirst,
    FairShare {
        weights: BTreeMap<String, u32>,
    },
    // Appended, so a snapshot written before it (variant indices 0-3) reads unchanged:
    // no new snapshot format is needed for it.
    Multifactor {
        #[serde(with = "MultifactorWeightsC")]
        factors: MultifactorWeights,
    },
}

#[derive(Serialize, Deserialize)]
#[serde(remote = "MultifactorWeights")]
struct MultifactorWeightsC {
    priority: i32,
    age: i32,
    fairshare: u32,
    size: i32,
    labels: BTreeMap<String, i32>,
}

#[derive(Serialize, Deserialize)]
#[serde(remote = "PolicyConfig")]
struct PolicyConfigC {
    #[serde(with = "QueuePolicyKindC")]
    queue: QueuePolicyKind,
    placement: PlacementPolicyKind,
    preemption: bool,
    preemption_grace_ms: u64,
    locality_weight: u32,
    affinity_weight: u32,
    prefetch_per_worker: u32,
}

/// `Limits` in the binary snapshot: the fields it had when the format was fixed, in
/// that order. Fields added later are not written (postcard is positional, so writing
/// one would make every older snapshot unreadable); a restored machine takes their
/// defaults, and the server validates submissions with its configured limits before
/// they reach the log anyway.
#[derive(Serialize, Deserialize)]
#[serde(remote = "Limits")]
struct LimitsC {
    max_tasks_per_job: u64,
    max_array_len: u64,
    max_command_args: usize,
    max_string_bytes: usize,
    max_env_bytes: usize,
    max_env_vars: usize,
    max_labels: usize,
    max_deps_per_task: usize,
    max_inputs: usize,
    max_custom_resources: usize,
    min_runtime_ms: u64,
    max_runtime_ms: u64,
    max_attempts: u32,
    max_backoff_ms: u64,
    #[serde(skip, default = "default_max_edges_per_job")]
    max_edges_per_job: u64,
}

fn default_max_edges_per_job() -> u64 {
    Limits::default().max_edges_per_job
}

#[derive(Serialize, Deserialize)]
#[serde(remote = "SchedulerConfig")]
struct SchedulerConfigC {
    #[serde(with = "LimitsC")]
    limits: Limits,
    #[serde(with = "PolicyConfigC")]
    policy: PolicyConfig,
}

#[derive(Serialize, Deserialize)]
#[serde(remote = "WorkerSpec")]
struct WorkerSpecC {
    name: String,
    #[serde(with = "ResourcesC")]
    capacity: Resources,
    labels: BTreeMap<String, String>,
    data_keys: Vec<String>,
    drivers: Vec<String>,
    // format 4: isolation (what the worker enforces on tasks, its GPU indices)
    #[serde(with = "IsolationC")]
    isolation: Isolation,
}

// format 4: isolation
#[derive(Serialize, Deserialize)]
#[serde(remote = "Isolation")]
struct IsolationC {
    enforced: Vec<EnforcedLimit>,
    mechanism: String,
    gpu_ids: Vec<u32>,
}

/// [`WorkerSpecC`] as written before isolation (state format 3).
#[derive(Serialize, Deserialize)]
#[serde(remote = "WorkerSpec")]
struct WorkerSpecV3C {
    name: String,
    #[serde(with = "ResourcesC")]
    capacity: Resources,
    labels: BTreeMap<String, String>,
    data_keys: Vec<String>,
    drivers: Vec<String>,
    #[serde(skip, default)]
    isolation: Isolation,
}

/// [`WorkerSpecC`] as written before drivers.
#[derive(Serialize, Deserialize)]
#[serde(remote = "WorkerSpec")]
struct WorkerSpecV2C {
    name: String,
    #[serde(with = "ResourcesC")]
    capacity: Resources,
    labels: BTreeMap<String, String>,
    data_keys: Vec<String>,
    #[serde(skip, default)]
    drivers: Vec<String>,
    #[serde(skip, default)]
    isolation: Isolation,
}

/// Defines a `with`-module for one snapshot field: the type's own serde in a
/// human-readable format, the mirror's otherwise.
macro_rules! either_format {
    ($module:ident, $ty:ty, |$v:ident, $s:ident| $compact_ser:expr, |$d:ident| $compact_de:expr) => {
        pub(crate) mod $module {
            use super::*;
            pub fn serialize<S: Serializer>($v: &$ty, $s: S) -> Result<S::Ok, S::Error> {
                if $s.is_human_readable() {
                    $v.serialize($s)
                } else {
                    $compact_ser
                }
            }
            pub fn deserialize<'de, D: Deserializer<'de>>($d: D) -> Result<$ty, D::Error> {
                if $d.is_human_readable() {
                    <$ty>::deserialize($d)
                } else {
                    $compact_de
                }
            }
        }
    };
}

either_format!(
    config,
    SchedulerConfig,
    |v, s| SchedulerConfigC::serialize(v, s),
    |d| SchedulerConfigC::deserialize(d)
);
either_format!(
    resources,
    Resources,
    |v, s| ResourcesC::serialize(v, s),
    |d| ResourcesC::deserialize(d)
);
either_format!(
    worker_spec,
    WorkerSpec,
    |v, s| if reading_pre_driver_layout() {
        WorkerSpecV2C::serialize(v, s)
    } else if reading_pre_isolation_layout() {
        WorkerSpecV3C::serialize(v, s)
    } else {
        WorkerSpecC::serialize(v, s)
    },
    |d| if reading_pre_driver_layout() {
        WorkerSpecV2C::deserialize(d)
    } else if reading_pre_isolation_layout() {
        WorkerSpecV3C::deserialize(d)
    } else {
        WorkerSpecC::deserialize(d)
    }
);
either_format!(
    attempts,
    Vec<AttemptRecord>,
    |v, s| s.collect_seq(v.iter().map(AttemptRef)),
    |d| Ok(Vec::<AttemptRecordW>::deserialize(d)?
        .into_iter()
        .map(|w| w.0)
        .collect())
);
either_format!(
    specs,
    Vec<(u64, StoredSpec)>,
    |v, s| s.collect_seq(v.iter().map(|(i, spec)| (*i, SpecRef(spec)))),
    |d| d.deserialize_seq(SpecRuns)
);

/// Writes a spec whole (the format has no templates: a task that keeps its own key,
/// name and command is put together one at a time, and the reader shares templates
/// again), without copying a whole one (there may be a million).
struct SpecRef<'a>(&'a StoredSpec);
impl Serialize for SpecRef<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let spec = self.0.to_spec();
        if reading_pre_driver_layout() {
            TaskSpecV2C::serialize(&spec, s)
        } else {
            TaskSpecC::serialize(&spec, s)
        }
    }
}

/// Reads the runs of specs one at a time, each kept as the core keeps a submitted one
/// (sharing its template with the one before), so that a million specs are never all
/// held whole at once.
struct SpecRuns;
impl<'de> serde::de::Visitor<'de> for SpecRuns {
    type Value = Vec<(u64, StoredSpec)>;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a sequence of (first task, spec)")
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        // The hint comes from the input: capped, so a corrupt length cannot reserve much.
        let mut runs: Vec<(u64, StoredSpec)> =
            Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1 << 16));
        while let Some((first, TaskSpecW(spec))) = seq.next_element::<(u64, TaskSpecW)>()? {
            let kept = StoredSpec::new(spec, runs.last().map(|(_, prev)| prev));
            runs.push((first, kept));
        }
        Ok(runs)
    }
}
