//! The job file: a YAML (or JSON) description of many tasks and their dependencies.
//!
//! ```yaml
//! name: sum-of-squares
//! tasks:
//!   - key: part                 # your own id, for dependencies
//!     array: 0-9                # ten tasks; each sees DROVER_TASK_INDEX and DROVER_TASK_COUNT
//!     shell: true
//!     command: 'echo $DROVER_TASK_INDEX'
//!     cpus: 0.5
//!     memory: 256M
//!     timeout: 10m
//!     retries: 2                # attempts after the first
//!   - key: combine
//!     after: [part]             # every element of the array must succeed first
//!     command: [python3, combine.py]   # reads the parts' results on stdin, in order
//! ```
//!
//! Every field of a task: `key`, `name`, `command` (a list, or a string split into
//! words as a shell would, quotes respected, but with no expansion; with `shell: true`
//! a string goes to `/bin/sh -c` as is), `shell`, `env`, `secret_env`,
//! `workdir`, `cpus`, `memory`, `disk`, `gpus`, `custom`, `after`, `priority`,
//! `timeout`, `expected_runtime`, `retries`, `backoff`, `retry_on_exit_codes`, `labels`
//! (values strings, or numbers kept as written: `{business_value: 150}`),
//! `constraints`, `affinity`, `inputs`, `owner`, `array`, `driver`, `image` (an image
//! without a driver means `driver: docker`), `cache` (`true`, or `{key, salt, ttl}`:
//! see "Result cache" in the README). Unknown fields are errors.
//! `constraints`, `affinity`, `inputs`, `owner`, `array`, `checkpoint` (`{interval: 30s}`),
//! `preemptible`. Unknown fields are errors.

use anyhow::{Context, Result, anyhow, bail};
use drover_types::{
    ArraySpec, Backoff, DepRef, Input, JobSpec, LabelSelector, Resources, RetryPolicy, TaskSpec,
    parse_bytes, parse_cpus,
};
use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

#[derive(Debug, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a job: an object with a list of tasks"
)]
struct JobFile {
    #[serde(default)]
    name: String,
    #[serde(default)]
    owner: String,
    tasks: Vec<TaskEntry>,
}

/// `command`: a list of strings, or one string.
#[derive(Debug)]
enum Command {
    List(Vec<String>),
    Line(String),
}

impl<'de> Deserialize<'de> for Command {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Command, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Command;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a list of strings, or a string")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Command, E> {
                Ok(Command::Line(v.to_string()))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Command, A::Error> {
                let mut list = Vec::new();
                while let Some(arg) = seq.next_element::<String>()? {
                    list.push(arg);
                }
                Ok(Command::List(list))
            }
        }
        d.deserialize_any(V)
    }
}

/// An amount or a duration as written: a number (`0.5`, `30`) or a string (`250m`,
/// `2G`, `10m`); the field's own parser reads its text.
#[derive(Debug)]
struct Number(String);

impl Number {
    fn text(&self) -> String {
        self.0.clone()
    }
}

impl<'de> Deserialize<'de> for Number {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Number, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Number;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a number, or a string such as 250m, 2G or 10m")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Number, E> {
                Ok(Number(v.to_string()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Number, E> {
                Ok(Number(v.to_string()))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Number, E> {
                Ok(Number(v.to_string()))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Number, E> {
                Ok(Number(v.to_string()))
            }
        }
        d.deserialize_any(V)
    }
}

/// A label's value: a string, or a number written as one (`business_value: 10`), so
/// that numeric labels for the multifactor queue policy read as written.
#[derive(Debug)]
struct LabelText(String);

impl<'de> Deserialize<'de> for LabelText {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<LabelText, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = LabelText;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string or a number")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<LabelText, E> {
                Ok(LabelText(v.to_string()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<LabelText, E> {
                Ok(LabelText(v.to_string()))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<LabelText, E> {
                Ok(LabelText(v.to_string()))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<LabelText, E> {
                Ok(LabelText(v.to_string()))
            }
        }
        d.deserialize_any(V)
    }
}

/// An entry of `after`: a task id or a key.
#[derive(Debug)]
enum Dep {
    Id(u64),
    Key(String),
}

impl<'de> Deserialize<'de> for Dep {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Dep, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Dep;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a task id (a whole number) or a task key (a string)")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Dep, E> {
                Ok(Dep::Id(v))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Dep, E> {
                Ok(Dep::Key(v.to_string()))
            }
        }
        d.deserialize_any(V)
    }
}

/// `array`: a range (`0-9`), a count (`10`), or `{start, end}`.
#[derive(Debug)]
enum Array {
    Range(String),
    Count(u32),
    Spec(ArraySpec),
}

impl<'de> Deserialize<'de> for Array {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Array, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Array;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a range such as 0-9, a count, or an object with start and end")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Array, E> {
                u32::try_from(v)
                    .map(Array::Count)
                    .map_err(|_| E::invalid_value(de::Unexpected::Unsigned(v), &self))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Array, E> {
                Ok(Array::Range(v.to_string()))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Array, A::Error> {
                ArraySpec::deserialize(de::value::MapAccessDeserializer::new(map)).map(Array::Spec)
            }
        }
        d.deserialize_any(V)
    }
}

/// `cache`: `true`, or `{key, salt, ttl}` (each optional; `ttl` a duration).
#[derive(Debug)]
enum Cache {
    On(bool),
    Spec(CacheEntry),
}

#[derive(Debug, Default, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a cache setting: an object with optional key, salt and ttl"
)]
struct CacheEntry {
    key: Option<String>,
    #[serde(default)]
    salt: String,
    ttl: Option<Number>,
}

impl<'de> Deserialize<'de> for Cache {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Cache, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Cache;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("true, false, or an object with optional key, salt and ttl")
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Cache, E> {
                Ok(Cache::On(v))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Cache, A::Error> {
                CacheEntry::deserialize(de::value::MapAccessDeserializer::new(map)).map(Cache::Spec)
            }
        }
        d.deserialize_any(V)
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a backoff: an object")]
struct BackoffEntry {
    initial: Option<Number>,
    multiplier: Option<f64>,
    max: Option<Number>,
}

#[derive(Debug, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a task: an object with at least a command"
)]
struct TaskEntry {
    #[serde(alias = "id")]
    key: Option<String>,
    #[serde(default)]
    name: String,
    command: Command,
    #[serde(default)]
    shell: bool,
    #[serde(default)]
    env: BTreeMap<String, String>,
    #[serde(default)]
    secret_env: BTreeMap<String, drover_types::SecretString>,
    workdir: Option<String>,
    cpus: Option<Number>,
    memory: Option<Number>,
    disk: Option<Number>,
    #[serde(default)]
    gpus: u32,
    #[serde(default)]
    custom: BTreeMap<String, u64>,
    #[serde(default)]
    after: Vec<Dep>,
    #[serde(default)]
    priority: i32,
    timeout: Option<Number>,
    expected_runtime: Option<Number>,
    #[serde(default)]
    retries: u32,
    backoff: Option<BackoffEntry>,
    #[serde(default)]
    retry_on_exit_codes: Vec<i32>,
    #[serde(default)]
    labels: BTreeMap<String, LabelText>,
    #[serde(default)]
    constraints: Vec<String>,
    #[serde(default)]
    affinity: Vec<String>,
    #[serde(default)]
    inputs: Vec<String>,
    #[serde(default)]
    owner: String,
    array: Option<Array>,
    split: Option<SplitEntry>,
    driver: Option<String>,
    image: Option<String>,
    cache: Option<Cache>,
    checkpoint: Option<CheckpointEntry>,
    #[serde(default)]
    preemptible: bool,
}

/// `split: {range: 1-1000000, chunks: auto}`, `chunks: 64`, or
/// `chunk_duration: 30s` (automatic chunks aiming at that duration).
#[derive(Debug, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a split: an object with a range and chunks or chunk_duration"
)]
struct SplitEntry {
    range: Number,
    #[serde(default)]
    chunks: drover_types::SplitChunks,
    chunk_duration: Option<Number>,
}

/// `checkpoint: {interval: 30s}`.
#[derive(Debug, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a checkpoint: an object with an interval"
)]
struct CheckpointEntry {
    interval: Number,
}

/// Parses a duration: `500ms`, `30s`, `10m`, `2h`, `1d`, `1h 30m` (humantime's
/// syntax), or a plain number of seconds (`2`, `0.5`).
pub fn parse_duration_ms(text: &str) -> Result<u64> {
    let t = text.trim();
    if let Ok(secs) = t.parse::<f64>() {
        if !(secs.is_finite() && secs >= 0.0) {
            bail!("{text:?} is not a duration: it must be 0 or more");
        }
        return Ok((secs * 1000.0).round() as u64);
    }
    let d = humantime::parse_duration(t).map_err(|e| {
        anyhow!("{text:?} is not a duration ({e}; examples: 500ms, 30s, 10m, 2h, 1h 30m)")
    })?;
    u64::try_from(d.as_millis()).map_err(|_| anyhow!("{text:?} is too long a duration"))
}

/// Parses repeated `KEY=VALUE` flags; `what` names the flag in errors.
pub fn parse_pairs(items: &[String], what: &str) -> Result<BTreeMap<String, String>> {
    items
        .iter()
        .map(|p| {
            p.split_once('=')
                .map(|(k, v)| (k.trim().to_string(), v.to_string()))
                .ok_or_else(|| anyhow!("{what} {p:?} is not KEY=VALUE"))
        })
        .collect()
}

pub fn parse_selector(text: &str) -> Result<LabelSelector> {
    LabelSelector::parse(text).ok_or_else(|| {
        anyhow!(
            "{text:?} is not a label selector (use key=value, key!=value, 'key in a|b', key, !key)"
        )
    })
}

impl TaskEntry {
    fn into_spec(self, i: usize) -> Result<TaskSpec> {
        let at = |field: &str| format!("tasks[{i}].{field}");
        let command = match (self.command, self.shell) {
            (Command::List(list), _) => list,
            (Command::Line(line), true) => vec![line],
            (Command::Line(line), false) => shlex::split(&line).ok_or_else(|| {
                anyhow!(
                    "{}: {line:?} has an unclosed quote or a trailing backslash",
                    at("command")
                )
            })?,
        };
        let mut resources = Resources::cpus(1000);
        if let Some(c) = &self.cpus {
            resources.cpu_milli = parse_cpus(&c.text()).with_context(|| at("cpus"))?;
        }
        if let Some(m) = &self.memory {
            resources.memory_bytes = parse_bytes(&m.text()).with_context(|| at("memory"))?;
        }
        if let Some(d) = &self.disk {
            resources.disk_bytes = parse_bytes(&d.text()).with_context(|| at("disk"))?;
        }
        resources.gpus = self.gpus;
        resources.custom = self.custom;
        let mut backoff = Backoff::default();
        if let Some(b) = self.backoff {
            if let Some(x) = b.initial {
                backoff.initial_ms =
                    parse_duration_ms(&x.text()).with_context(|| at("backoff.initial"))?;
            }
            if let Some(x) = b.max {
                backoff.max_ms = parse_duration_ms(&x.text()).with_context(|| at("backoff.max"))?;
            }
            if let Some(m) = b.multiplier {
                backoff.multiplier_percent = (m * 100.0).round() as u32;
            }
        }
        let array = match self.array {
            None => None,
            Some(Array::Count(n)) if n > 0 => Some(ArraySpec {
                start: 0,
                end: n - 1,
            }),
            Some(Array::Count(_)) => bail!("{}: an array needs at least one element", at("array")),
            Some(Array::Range(r)) => Some(
                ArraySpec::parse(&r)
                    .ok_or_else(|| anyhow!("{}: {r:?} is not a range like 0-9", at("array")))?,
            ),
            Some(Array::Spec(spec)) => Some(spec),
        };
        let split = match self.split {
            None => None,
            Some(s) => Some(drover_types::SplitSpec {
                range: drover_types::SplitRange::parse(&s.range.text()).ok_or_else(|| {
                    anyhow!(
                        "{}: {:?} is not a range like 1-1000000",
                        at("split.range"),
                        s.range.text()
                    )
                })?,
                chunks: s.chunks,
                chunk_duration_ms: s
                    .chunk_duration
                    .map(|t| parse_duration_ms(&t.text()))
                    .transpose()
                    .with_context(|| at("split.chunk_duration"))?,
            }),
        };
        let cache = match self.cache {
            None | Some(Cache::On(false)) => None,
            Some(Cache::On(true)) => Some(drover_types::CacheSpec::default()),
            Some(Cache::Spec(c)) => Some(drover_types::CacheSpec {
                key: c.key,
                salt: c.salt,
                ttl_ms: c
                    .ttl
                    .map(|t| parse_duration_ms(&t.text()))
                    .transpose()
                    .with_context(|| at("cache.ttl"))?,
            }),
        };
        Ok(TaskSpec {
            key: self.key,
            name: self.name,
            command,
            shell: self.shell,
            env: self.env,
            secret_env: self.secret_env,
            workdir: self.workdir,
            resources,
            after: self
                .after
                .into_iter()
                .map(|d| match d {
                    Dep::Id(n) => DepRef::Id(drover_types::TaskId(n)),
                    Dep::Key(k) => DepRef::parse(&k),
                })
                .collect(),
            priority: self.priority,
            max_runtime_ms: self
                .timeout
                .map(|t| parse_duration_ms(&t.text()))
                .transpose()
                .with_context(|| at("timeout"))?,
            expected_runtime_ms: self
                .expected_runtime
                .map(|t| parse_duration_ms(&t.text()))
                .transpose()
                .with_context(|| at("expected_runtime"))?,
            retry: RetryPolicy {
                max_attempts: self.retries.saturating_add(1),
                backoff,
                retry_on_exit_codes: self.retry_on_exit_codes,
            },
            labels: self.labels.into_iter().map(|(k, v)| (k, v.0)).collect(),
            constraints: self
                .constraints
                .iter()
                .map(|c| parse_selector(c))
                .collect::<Result<_>>()
                .with_context(|| at("constraints"))?,
            affinity: self
                .affinity
                .iter()
                .map(|c| parse_selector(c))
                .collect::<Result<_>>()
                .with_context(|| at("affinity"))?,
            inputs: self.inputs,
            owner: self.owner,
            array,
            split,
            driver: self.driver.or_else(|| {
                self.image
                    .is_some()
                    .then(|| drover_types::DOCKER_DRIVER.into())
            }),
            image: self.image,
            cache,
            checkpoint: self
                .checkpoint
                .map(|c| parse_duration_ms(&c.interval.text()))
                .transpose()
                .with_context(|| at("checkpoint.interval"))?
                .map(|interval_ms| drover_types::CheckpointSpec { interval_ms }),
            preemptible: self.preemptible,
        })
    }
}

/// Reads a job file (YAML, of which JSON is a subset).
pub fn load(path: &Path) -> Result<JobSpec> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the job file {}", path.display()))?;
    parse(&text).with_context(|| format!("in the job file {}", path.display()))
}

/// Parses a job file strictly: the YAML is read into a [`drover_types::Input`] tree and
/// then by Drover's strict deserializer, so that an unknown field, a repeated key, a
/// list where an object belongs or a boolean where a string belongs
/// (`command: [true]`) is an error naming its path (`tasks[0].command[0]`).
pub fn parse(text: &str) -> Result<JobSpec> {
    let input: Input = serde_norway::from_str(text).context("not valid YAML")?;
    let file: JobFile = drover_types::from_input(input)?;
    let tasks = file
        .tasks
        .into_iter()
        .enumerate()
        .map(|(i, t)| t.into_spec(i))
        .collect::<Result<Vec<_>>>()?;
    Ok(JobSpec {
        name: file.name,
        owner: file.owner,
        tasks,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_may_be_written_as_numbers() {
        let job = parse(
            "tasks:\n  - command: x\n    labels: {business_value: 150, ratio: -2.5, tier: gold, code: '007'}\n",
        )
        .unwrap();
        let labels = &job.tasks[0].labels;
        assert_eq!(labels["business_value"], "150");
        assert_eq!(labels["ratio"], "-2.5");
        assert_eq!(labels["tier"], "gold");
        assert_eq!(labels["code"], "007");
        assert!(parse("tasks:\n  - command: x\n    labels: {a: [1]}\n").is_err());
    }

    #[test]
    fn a_job_file_reads_into_a_job() {
        let job = parse(
            r#"
name: demo
tasks:
  - key: part
    array: 0-9
    shell: true
    command: 'echo $DROVER_TASK_INDEX'
    cpus: 0.5
    memory: 256M
    timeout: 10m
    retries: 2
  - key: combine
    after: [part, 7]
    command: sort -n
"#,
        )
        .unwrap();
        assert_eq!(job.name, "demo");
        let part = &job.tasks[0];
        assert_eq!(part.command, vec!["echo $DROVER_TASK_INDEX"]);
        assert_eq!(part.resources.cpu_milli, 500);
        assert_eq!(part.resources.memory_bytes, 256 << 20);
        assert_eq!(part.max_runtime_ms, Some(600_000));
        assert_eq!(part.retry.max_attempts, 3);
        assert_eq!(part.array.unwrap().len(), 10);
        let combine = &job.tasks[1];
        assert_eq!(combine.command, vec!["sort", "-n"]);
        assert_eq!(
            combine.after,
            vec![
                DepRef::Key("part".into()),
                DepRef::Id(drover_types::TaskId(7))
            ]
        );
    }

    #[test]
    fn a_task_names_its_driver_and_an_image_alone_means_docker() {
        let job = parse(
            "tasks:\n  - command: [\"true\"]\n    image: drover-test-base:1\n  - command: [\"true\"]\n    driver: k8s\n",
        )
        .unwrap();
        assert_eq!(job.tasks[0].driver.as_deref(), Some("docker"));
        assert_eq!(job.tasks[0].image.as_deref(), Some("drover-test-base:1"));
        assert_eq!(job.tasks[1].driver.as_deref(), Some("k8s"));
        assert_eq!(job.tasks[1].image, None);
    }

    #[test]
    fn cache_is_true_or_an_object() {
        let job = parse(
            "tasks:\n  - command: [a]\n    cache: true\n  - command: [b]\n    cache: false\n  - command: [c]\n    cache: {key: k, salt: s, ttl: 1h}\n",
        )
        .unwrap();
        assert_eq!(job.tasks[0].cache, Some(drover_types::CacheSpec::default()));
        assert_eq!(job.tasks[1].cache, None);
        assert_eq!(
            job.tasks[2].cache,
            Some(drover_types::CacheSpec {
                key: Some("k".into()),
                salt: "s".into(),
                ttl_ms: Some(3_600_000),
            })
        );
        let e = parse("tasks:\n  - command: [a]\n    cache: {ttl_ms: 5}\n").unwrap_err();
        assert!(format!("{e:#}").contains("ttl_ms"), "{e:#}");
    }

    #[test]
    fn unknown_fields_are_errors() {
        let e = parse("tasks:\n  - command: [x]\n    cpu: 2\n").unwrap_err();
        assert!(format!("{e:#}").contains("cpu"), "{e:#}");
    }

    #[test]
    fn mistakes_name_their_field_in_the_users_terms() {
        let cases = [
            (
                "tasks:\n  - command: [true]\n",
                "tasks[0].command[0]: expected a string, found a boolean (true)",
            ),
            (
                "tasks:\n  - command: [x]\n    memory: [1]\n",
                "tasks[0].memory: expected a number, or a string such as 250m, 2G or 10m, found an array",
            ),
            (
                "tasks:\n  - command: {a: 1}\n",
                "tasks[0].command: expected a list of strings, or a string, found an object",
            ),
            (
                "tasks:\n  - [echo, hi]\n",
                "tasks[0]: expected an object, found an array",
            ),
            (
                "tasks:\n  - command: [x]\n    array: {start: 0, end: 3, step: 1}\n",
                "tasks[0].array.step: unknown field; expected one of start, end",
            ),
            (
                "tasks:\n  - command: [x]\n    backoff: {initial: 1s, factor: 2}\n",
                "tasks[0].backoff.factor: unknown field; expected one of initial, multiplier, max",
            ),
            (
                "tasks:\n  - command: [x]\n    after: [true]\n",
                "tasks[0].after[0]: expected a task id (a whole number) or a task key (a string), found a boolean (true)",
            ),
            (
                "tasks:\n  - command: [x]\n    command: [y]\n",
                "tasks[0].command: given more than once",
            ),
            ("- command: [x]\n", "expected an object, found an array"),
            (
                "tasks:\n  - command: [x]\n    retries: -1\n",
                "tasks[0].retries: expected a whole number from 0 to 4294967295, found the integer -1",
            ),
        ];
        for (yaml, message) in cases {
            let e = format!("{:#}", parse(yaml).unwrap_err());
            assert!(e.starts_with(message), "{yaml:?}: {e}");
        }
    }

    #[test]
    fn numbers_and_strings_both_do_for_amounts_and_durations() {
        let job = parse(
            "tasks:\n  - command: x\n    cpus: 2\n    memory: 1048576\n    timeout: 30\n    array: 4\n",
        )
        .unwrap();
        let t = &job.tasks[0];
        assert_eq!(t.resources.cpu_milli, 2000);
        assert_eq!(t.resources.memory_bytes, 1 << 20);
        assert_eq!(t.max_runtime_ms, Some(30_000));
        assert_eq!(t.array, Some(ArraySpec { start: 0, end: 3 }));
    }

    #[test]
    fn the_example_job_files_read() {
        parse(include_str!("../../../examples/sum_of_squares.yaml")).unwrap();
    }

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration_ms("500ms").unwrap(), 500);
        assert_eq!(parse_duration_ms("1s 500ms").unwrap(), 1500);
        assert_eq!(parse_duration_ms("10m").unwrap(), 600_000);
        assert_eq!(parse_duration_ms("1h30m").unwrap(), 5_400_000);
        assert_eq!(parse_duration_ms("1d").unwrap(), 86_400_000);
        assert_eq!(parse_duration_ms("2").unwrap(), 2000);
        assert_eq!(parse_duration_ms("0.25").unwrap(), 250);
        assert!(parse_duration_ms("soon").is_err());
        assert!(parse_duration_ms("-5").is_err());
        assert!(parse_duration_ms("5 parsecs").is_err());
    }

    #[test]
    fn a_string_command_splits_like_a_shell_keeping_quoted_words() {
        let job = parse(
            r#"
tasks:
  - command: printf '%s|' "a  b" c\ d 'it''s'
"#,
        )
        .unwrap();
        assert_eq!(
            job.tasks[0].command,
            vec!["printf", "%s|", "a  b", "c d", "its"]
        );
        let e = parse("tasks:\n  - command: echo 'unclosed\n").unwrap_err();
        assert!(format!("{e:#}").contains("tasks[0].command"), "{e:#}");
    }
}
