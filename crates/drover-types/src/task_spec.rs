//! What a user asks Drover to run.

use crate::cache_spec::CacheSpec;
use crate::checkpoint::CheckpointSpec;
use crate::job::{ArraySpec, DepRef};
use crate::resources::Resources;
use crate::secret::{REDACTED, SecretString};
use crate::split_spec::SplitSpec;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// One task as submitted. Every field but `command` has a default, so the smallest
/// valid task is `{"command": ["/bin/true"]}`: one core, no memory reservation,
/// one attempt.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(
    default,
    deny_unknown_fields,
    expecting = "a task: an object with at least a command"
)]
pub struct TaskSpec {
    /// Your own name for this task (optional), unique within its job: the same job can
    /// be submitted again with the same keys. It must contain a character other than a
    /// digit and no `/`, so it can never be confused with the numeric ids Drover assigns
    /// nor with a qualified reference. Anywhere a task is referenced (dependencies, the
    /// API, the CLI), `KEY` (this job's task, else the newest with that key),
    /// `JOB_NAME/KEY` or `JOB_ID/KEY` works.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(schema_with = crate::openapi::key))]
    pub key: Option<String>,
    /// A name for people; not unique.
    #[serde(skip_serializing_if = "String::is_empty")]
    #[cfg_attr(feature = "openapi", schema(schema_with = crate::openapi::string))]
    pub name: String,
    /// The program and its arguments, run as an argument list: no shell, no globbing,
    /// no metacharacters, unless `shell` is true.
    #[cfg_attr(
        feature = "openapi",
        schema(schema_with = crate::openapi::command, required = true)
    )]
    pub command: Vec<String>,
    /// Run `command` joined by spaces through `/bin/sh -c`. Off by default.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub shell: bool,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    #[cfg_attr(feature = "openapi", schema(schema_with = crate::openapi::env))]
    pub env: BTreeMap<String, String>,
    /// Environment variables whose values are secret: the task gets them like `env`,
    /// but every read of the task (API, CLI, web UI) shows their names with the value
    /// replaced by `(secret)`, and they are never written to a log line.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    #[cfg_attr(feature = "openapi", schema(schema_with = crate::openapi::env))]
    pub secret_env: BTreeMap<String, SecretString>,
    /// Working directory, relative to the attempt's fresh directory (created), or an
    /// absolute host path the worker allows (`--allow-path`); no `..`. The attempt's
    /// fresh directory when not given.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(schema_with = crate::openapi::workdir))]
    pub workdir: Option<String>,
    #[cfg_attr(feature = "openapi", schema(schema_with = crate::openapi::task_resources))]
    pub resources: Resources,
    /// Tasks that must all succeed before this one may start.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    #[cfg_attr(feature = "openapi", schema(schema_with = crate::openapi::after))]
    pub after: Vec<DepRef>,
    /// Higher runs first. Default 0.
    #[serde(skip_serializing_if = "is_zero_i32")]
    pub priority: i32,
    /// Wall-clock limit of one attempt, in milliseconds. At the limit the task's whole
    /// process tree gets SIGTERM, then SIGKILL after the grace period.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(schema_with = crate::openapi::runtime))]
    pub max_runtime_ms: Option<u64>,
    /// A hint of how long an attempt usually takes, for shortest-job-first.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(schema_with = crate::openapi::runtime))]
    pub expected_runtime_ms: Option<u64>,
    pub retry: RetryPolicy,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    #[cfg_attr(feature = "openapi", schema(schema_with = crate::openapi::labels))]
    pub labels: BTreeMap<String, String>,
    /// Hard placement constraints: a worker must match every selector.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    #[cfg_attr(feature = "openapi", schema(schema_with = crate::openapi::selectors))]
    pub constraints: Vec<LabelSelector>,
    /// Soft placement preferences: workers matching these selectors score higher.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    #[cfg_attr(feature = "openapi", schema(schema_with = crate::openapi::selectors))]
    pub affinity: Vec<LabelSelector>,
    /// Data this task reads; workers that already hold these keys are preferred.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    #[cfg_attr(feature = "openapi", schema(schema_with = crate::openapi::inputs))]
    pub inputs: Vec<String>,
    /// Owner or namespace, for fair-share. Filled in from the credentials when empty.
    #[serde(skip_serializing_if = "String::is_empty")]
    #[cfg_attr(feature = "openapi", schema(schema_with = crate::openapi::string))]
    pub owner: String,
    /// Expands this entry into one task per index of the range; each knows its index
    /// and the count (`DROVER_TASK_INDEX`, `DROVER_TASK_COUNT`). A key given to an
    /// array names the whole array: depending on it means depending on every element.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub array: Option<ArraySpec>,
    /// Cuts a range of integers into chunks the server sizes (see `SplitSpec`): each
    /// chunk is a task that sees `DROVER_RANGE_START` and `DROVER_RANGE_END`
    /// (inclusive). A key given to a split names every chunk, so a combine step that
    /// depends on it waits for the whole range and reads the chunks' results in range
    /// order. Not with `array`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub split: Option<SplitSpec>,
    /// The execution driver that runs the task: `process` (the default: a process
    /// tree on the worker's host), `docker` (a container of `image`), or a plugin's
    /// name. Only workers that declared the driver receive the task.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(schema_with = crate::openapi::driver))]
    pub driver: Option<String>,
    /// The container image of a `docker` task (required then, refused otherwise). It
    /// must already be on the worker: workers do not pull.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(schema_with = crate::openapi::image))]
    pub image: Option<String>,
    /// Opt in to the result cache (see `CacheSpec`): a task whose key matches a live
    /// entry completes at once with the cached result and output.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cache: Option<CacheSpec>,
    /// Save what the task writes into `DROVER_CHECKPOINT_DIR` on this interval (and when
    /// it is stopped), and restore the latest save into the next attempt's directory.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub checkpoint: Option<CheckpointSpec>,
    /// The task may be evicted by a higher-priority task (with preemption on) even when
    /// it is not retryable: an eviction spends no attempt. Retryable tasks are
    /// preemptible anyway.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub preemptible: bool,
}

/// The driver of a task that names none, and the one every worker has.
pub const PROCESS_DRIVER: &str = "process";
/// The container driver built into workers (`drover worker --driver docker`).
pub const DOCKER_DRIVER: &str = "docker";

impl Default for TaskSpec {
    fn default() -> Self {
        TaskSpec {
            key: None,
            name: String::new(),
            command: Vec::new(),
            shell: false,
            env: BTreeMap::new(),
            secret_env: BTreeMap::new(),
            workdir: None,
            resources: Resources::cpus(1000),
            after: Vec::new(),
            priority: 0,
            max_runtime_ms: None,
            expected_runtime_ms: None,
            retry: RetryPolicy::default(),
            labels: BTreeMap::new(),
            constraints: Vec::new(),
            affinity: Vec::new(),
            inputs: Vec::new(),
            owner: String::new(),
            array: None,
            split: None,
            driver: None,
            image: None,
            cache: None,
            checkpoint: None,
            preemptible: false,
        }
    }
}

impl TaskSpec {
    /// Whether a higher-priority task may evict it: it said so, or it may run again
    /// anyway (an eviction spends no attempt, but a task that must run at most once
    /// is never stopped to run it twice unless it agreed).
    pub fn is_preemptible(&self) -> bool {
        self.preemptible || self.retry.is_retryable()
    }

    /// A task running `args` with every other field at its default.
    pub fn command<I, S>(args: I) -> TaskSpec
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        TaskSpec {
            command: args.into_iter().map(Into::into).collect(),
            ..TaskSpec::default()
        }
    }

    /// How many tasks this entry expands into: an array's elements, a split's chunk
    /// slots, else one.
    pub fn expanded_len(&self) -> u64 {
        match (&self.array, &self.split) {
            (Some(a), _) => a.len(),
            (None, Some(s)) => s.slots(),
            (None, None) => 1,
        }
    }

    /// The driver that runs this task (`process` when none is named).
    pub fn driver_name(&self) -> &str {
        self.driver.as_deref().unwrap_or(PROCESS_DRIVER)
    }

    /// This spec as it may be shown: every secret value replaced by `(secret)`.
    pub fn redacted(&self) -> TaskSpec {
        let mut shown = self.clone();
        for v in shown.secret_env.values_mut() {
            *v = SecretString::new(REDACTED);
        }
        shown
    }
}

fn is_zero_i32(v: &i32) -> bool {
    *v == 0
}

/// How often and when a failed attempt is tried again.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(default, deny_unknown_fields, expecting = "a retry policy: an object")]
pub struct RetryPolicy {
    /// Attempts in all, the first included. `1` means never retried: the task is then
    /// also never preempted (unless `preemptible`) and never re-run after its worker is
    /// lost (at most once).
    #[cfg_attr(feature = "openapi", schema(schema_with = crate::openapi::max_attempts))]
    pub max_attempts: u32,
    pub backoff: Backoff,
    /// Exit codes that are worth a retry. Empty: every failure is.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub retry_on_exit_codes: Vec<i32>,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 1,
            backoff: Backoff::default(),
            retry_on_exit_codes: Vec::new(),
        }
    }
}

impl RetryPolicy {
    /// True when the task may run more than once.
    pub fn is_retryable(&self) -> bool {
        self.max_attempts > 1
    }

    /// Whether an attempt that exited with `code` deserves another attempt.
    pub fn retries_exit_code(&self, code: i32) -> bool {
        self.retry_on_exit_codes.is_empty() || self.retry_on_exit_codes.contains(&code)
    }
}

/// Exponential backoff between attempts: `initial_ms`, then multiplied by
/// `multiplier_percent / 100` after each failure, never above `max_ms`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(default, deny_unknown_fields, expecting = "a backoff: an object")]
pub struct Backoff {
    #[cfg_attr(feature = "openapi", schema(schema_with = crate::openapi::backoff_ms))]
    pub initial_ms: u64,
    /// 200 doubles the delay each time. An integer, so every replica computes the same.
    #[cfg_attr(feature = "openapi", schema(schema_with = crate::openapi::multiplier_percent))]
    pub multiplier_percent: u32,
    #[cfg_attr(feature = "openapi", schema(schema_with = crate::openapi::backoff_ms))]
    pub max_ms: u64,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            initial_ms: 1_000,
            multiplier_percent: 200,
            max_ms: 300_000,
        }
    }
}

impl Backoff {
    /// The delay before attempt `next_attempt` (2 for the first retry).
    pub fn delay_before(&self, next_attempt: u32) -> u64 {
        let mut delay = self.initial_ms;
        for _ in 2..next_attempt {
            delay = (delay as u128 * self.multiplier_percent as u128 / 100).min(self.max_ms as u128)
                as u64;
            if delay >= self.max_ms {
                break;
            }
        }
        delay.min(self.max_ms)
    }
}

/// A condition on a worker's labels.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(
    deny_unknown_fields,
    expecting = "a label selector: an object with a key and an op"
)]
pub struct LabelSelector {
    pub key: String,
    pub op: SelectorOp,
    /// The values for `in` and `not_in`; one value for `eq` and `ne`; none for `exists`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(
    rename_all = "snake_case",
    expecting = "one of eq, ne, in, not_in, exists, not_exists"
)]
pub enum SelectorOp {
    Eq,
    Ne,
    In,
    NotIn,
    Exists,
    NotExists,
}

impl LabelSelector {
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        let value = labels.get(&self.key);
        match self.op {
            SelectorOp::Eq | SelectorOp::In => value.is_some_and(|v| self.values.contains(v)),
            SelectorOp::Ne | SelectorOp::NotIn => !value.is_some_and(|v| self.values.contains(v)),
            SelectorOp::Exists => value.is_some(),
            SelectorOp::NotExists => value.is_none(),
        }
    }

    /// Parses the CLI form: `key=value`, `key!=value`, `key in a|b`, `key`, `!key`.
    pub fn parse(text: &str) -> Option<LabelSelector> {
        let t = text.trim();
        let sel = |key: &str, op, values: Vec<String>| {
            let key = key.trim();
            (!key.is_empty()).then(|| LabelSelector {
                key: key.to_string(),
                op,
                values,
            })
        };
        if let Some((k, v)) = t.split_once("!=") {
            return sel(k, SelectorOp::Ne, vec![v.trim().to_string()]);
        }
        if let Some((k, v)) = t.split_once('=') {
            return sel(k, SelectorOp::Eq, vec![v.trim().to_string()]);
        }
        if let Some((k, v)) = t.split_once(" in ") {
            let values = v.split('|').map(|s| s.trim().to_string()).collect();
            return sel(k, SelectorOp::In, values);
        }
        if let Some(k) = t.strip_prefix('!') {
            return sel(k, SelectorOp::NotExists, vec![]);
        }
        sel(t, SelectorOp::Exists, vec![])
    }
}

impl std::fmt::Display for LabelSelector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.op {
            SelectorOp::Eq => write!(f, "{}={}", self.key, self.values.join("|")),
            SelectorOp::Ne => write!(f, "{}!={}", self.key, self.values.join("|")),
            SelectorOp::In => write!(f, "{} in {}", self.key, self.values.join("|")),
            SelectorOp::NotIn => write!(f, "{} not in {}", self.key, self.values.join("|")),
            SelectorOp::Exists => write!(f, "{}", self.key),
            SelectorOp::NotExists => write!(f, "!{}", self.key),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let b = Backoff {
            initial_ms: 1000,
            multiplier_percent: 200,
            max_ms: 5000,
        };
        assert_eq!(b.delay_before(2), 1000);
        assert_eq!(b.delay_before(3), 2000);
        assert_eq!(b.delay_before(4), 4000);
        assert_eq!(b.delay_before(5), 5000);
        assert_eq!(b.delay_before(60), 5000);
    }

    #[test]
    fn selectors_parse_and_match() {
        let mut labels = BTreeMap::new();
        labels.insert("zone".to_string(), "a".to_string());
        assert!(LabelSelector::parse("zone=a").unwrap().matches(&labels));
        assert!(!LabelSelector::parse("zone!=a").unwrap().matches(&labels));
        assert!(
            LabelSelector::parse("zone in b|a")
                .unwrap()
                .matches(&labels)
        );
        assert!(LabelSelector::parse("zone").unwrap().matches(&labels));
        assert!(LabelSelector::parse("!gpu").unwrap().matches(&labels));
        assert!(LabelSelector::parse("=x").is_none());
    }

    #[test]
    fn smallest_task_is_just_a_command() {
        let t: TaskSpec = serde_json::from_str(r#"{"command":["/bin/true"]}"#).unwrap();
        assert_eq!(t.command, vec!["/bin/true"]);
        assert_eq!(t.retry.max_attempts, 1);
    }
}
