//! Validation of user input. Every error names the field path (`tasks[3].resources.cpu_milli`)
//! and says why, so that an API client or a CLI user can fix the request without guessing.
//!
//! What needs no knowledge of the cluster is checked here: shapes, sizes, ranges,
//! duplicate keys and cycles within a job (a new job can only depend on tasks that
//! already exist, and those cannot depend on the new ones, so every possible cycle lies
//! inside one job). Keys are unique within their job only. Whether a dependency exists
//! (and which task a key reference names) is decided by the scheduling core, which knows
//! the task table.

use crate::job::{DepRef, JobSpec, KeyRef};
use crate::limits::Limits;
use crate::split_spec::{MAX_SPLIT_CHUNKS, SplitChunks, SplitSpec};
use crate::task_spec::{LabelSelector, SelectorOp, TaskSpec};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// A rejected input: which field, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct ValidationError {
    /// Path of the offending field, e.g. `tasks[2].after[0]`.
    pub field: String,
    pub reason: String,
}

impl ValidationError {
    pub fn new(field: impl Into<String>, reason: impl Into<String>) -> ValidationError {
        ValidationError {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

/// Largest single resource amount accepted, far above any machine but low enough that
/// summing a worker's worth of tasks can never overflow a `u64`.
const MAX_RESOURCE_AMOUNT: u64 = 1 << 56;

type Check = Result<(), ValidationError>;

/// Checks one task spec; `path` prefixes field names (`tasks[3]`, or empty).
pub fn validate_task(spec: &TaskSpec, limits: &Limits, path: &str) -> Check {
    let f = |name: &str| {
        if path.is_empty() {
            name.to_string()
        } else {
            format!("{path}.{name}")
        }
    };
    if let Some(key) = &spec.key {
        validate_key(key, limits, || f("key"))?;
    }
    check_string(&spec.name, limits, || f("name"))?;
    if spec.command.is_empty() {
        return Err(ValidationError::new(
            f("command"),
            "must not be empty: give the program and its arguments",
        ));
    }
    if spec.command[0].is_empty() {
        return Err(ValidationError::new(
            f("command[0]"),
            "the program name is empty",
        ));
    }
    if spec.command.len() > limits.max_command_args {
        return Err(ValidationError::new(
            f("command"),
            format!(
                "has {} arguments; at most {} are allowed",
                spec.command.len(),
                limits.max_command_args
            ),
        ));
    }
    for (i, arg) in spec.command.iter().enumerate() {
        check_string(arg, limits, || f(&format!("command[{i}]")))?;
    }
    let vars = spec.env.len() + spec.secret_env.len();
    if vars > limits.max_env_vars {
        return Err(ValidationError::new(
            f("env"),
            format!(
                "has {vars} variables (with secret_env); at most {} are allowed",
                limits.max_env_vars
            ),
        ));
    }
    let mut env_bytes = 0usize;
    for (k, v) in &spec.env {
        let field = f(&format!("env.{k}"));
        check_env_name(k, || field.clone())?;
        check_string(v, limits, || field.clone())?;
        env_bytes += k.len() + v.len();
    }
    for (k, v) in &spec.secret_env {
        let field = f(&format!("secret_env.{k}"));
        check_env_name(k, || field.clone())?;
        if spec.env.contains_key(k) {
            return Err(ValidationError::new(
                field,
                "is also in env: give a variable in one of the two",
            ));
        }
        // The reasons never quote the value: it is secret.
        check_string(v.expose(), limits, || field.clone())?;
        env_bytes += k.len() + v.expose().len();
    }
    if env_bytes > limits.max_env_bytes {
        return Err(ValidationError::new(
            f("env"),
            format!(
                "is {env_bytes} bytes (with secret_env); at most {} are allowed",
                limits.max_env_bytes
            ),
        ));
    }
    if let Some(dir) = &spec.workdir {
        check_string(dir, limits, || f("workdir"))?;
        if dir.is_empty() {
            return Err(ValidationError::new(
                f("workdir"),
                "must not be empty when given",
            ));
        }
        // What can be refused without knowing the worker: climbing out. Whether an
        // absolute path is allowed, and where symlinks lead, the worker decides.
        if dir.split('/').any(|part| part == "..") {
            return Err(ValidationError::new(
                f("workdir"),
                "must not contain '..': a relative working directory stays inside the attempt's directory",
            ));
        }
    }
    validate_driver(spec, limits, &f)?;
    validate_resources(spec, limits, || f("resources"))?;
    if spec.after.len() > limits.max_deps_per_task {
        return Err(ValidationError::new(
            f("after"),
            format!(
                "has {} dependencies; at most {} are allowed",
                spec.after.len(),
                limits.max_deps_per_task
            ),
        ));
    }
    for (i, dep) in spec.after.iter().enumerate() {
        if let DepRef::Key(k) = dep {
            validate_key_ref(k, limits, || f(&format!("after[{i}]")))?;
        }
    }
    for (name, value) in [
        ("max_runtime_ms", spec.max_runtime_ms),
        ("expected_runtime_ms", spec.expected_runtime_ms),
    ] {
        if let Some(ms) = value
            && (ms < limits.min_runtime_ms || ms > limits.max_runtime_ms)
        {
            return Err(ValidationError::new(
                f(name),
                format!(
                    "{ms} ms is out of range: it must be between {} ms and {} ms",
                    limits.min_runtime_ms, limits.max_runtime_ms
                ),
            ));
        }
    }
    if let Some(c) = &spec.checkpoint
        && !(crate::MIN_CHECKPOINT_INTERVAL_MS..=crate::MAX_CHECKPOINT_INTERVAL_MS)
            .contains(&c.interval_ms)
    {
        return Err(ValidationError::new(
            f("checkpoint.interval_ms"),
            format!(
                "{} ms is out of range: it must be between {} ms and {} ms",
                c.interval_ms,
                crate::MIN_CHECKPOINT_INTERVAL_MS,
                crate::MAX_CHECKPOINT_INTERVAL_MS
            ),
        ));
    }
    let retry = &spec.retry;
    if retry.max_attempts == 0 || retry.max_attempts > limits.max_attempts {
        return Err(ValidationError::new(
            f("retry.max_attempts"),
            format!(
                "must be between 1 and {} (1 means never retried)",
                limits.max_attempts
            ),
        ));
    }
    if retry.backoff.initial_ms > limits.max_backoff_ms
        || retry.backoff.max_ms > limits.max_backoff_ms
    {
        return Err(ValidationError::new(
            f("retry.backoff"),
            format!("delays must be at most {} ms", limits.max_backoff_ms),
        ));
    }
    if retry.backoff.multiplier_percent < 100 || retry.backoff.multiplier_percent > 1000 {
        return Err(ValidationError::new(
            f("retry.backoff.multiplier_percent"),
            "must be between 100 (constant delay) and 1000",
        ));
    }
    if retry.backoff.max_ms < retry.backoff.initial_ms {
        return Err(ValidationError::new(
            f("retry.backoff.max_ms"),
            "must be at least initial_ms",
        ));
    }
    if spec.labels.len() > limits.max_labels {
        return Err(ValidationError::new(
            f("labels"),
            format!("at most {} labels are allowed", limits.max_labels),
        ));
    }
    for (k, v) in &spec.labels {
        check_label_key(k, || f("labels"))?;
        check_string(v, limits, || f(&format!("labels.{k}")))?;
    }
    for (name, selectors) in [
        ("constraints", &spec.constraints),
        ("affinity", &spec.affinity),
    ] {
        if selectors.len() > limits.max_labels {
            return Err(ValidationError::new(
                f(name),
                format!("at most {} selectors are allowed", limits.max_labels),
            ));
        }
        for (i, sel) in selectors.iter().enumerate() {
            validate_selector(sel, limits, &f(&format!("{name}[{i}]")))?;
        }
    }
    if spec.inputs.len() > limits.max_inputs {
        return Err(ValidationError::new(
            f("inputs"),
            format!("at most {} input keys are allowed", limits.max_inputs),
        ));
    }
    for (i, k) in spec.inputs.iter().enumerate() {
        check_string(k, limits, || f(&format!("inputs[{i}]")))?;
    }
    check_string(&spec.owner, limits, || f("owner"))?;
    if let Some(cache) = &spec.cache {
        validate_cache(cache, limits, &f)?;
    }
    if let Some(split) = &spec.split {
        validate_split(split, spec.array.is_some(), &f)?;
        if spec.cache.is_some() {
            // A cached result is keyed by the slot, not by the slice the server gives
            // it, which differs from one run to the next.
            return Err(ValidationError::new(
                f("cache"),
                "a split's chunks cannot use the result cache",
            ));
        }
    }
    if let Some(array) = &spec.array {
        if array.is_empty() {
            return Err(ValidationError::new(
                f("array"),
                "end must not be below start",
            ));
        }
        if array.len() > limits.max_array_len {
            return Err(ValidationError::new(
                f("array"),
                format!(
                    "has {} elements; at most {} are allowed",
                    array.len(),
                    limits.max_array_len
                ),
            ));
        }
    }
    Ok(())
}

fn validate_split(
    split: &SplitSpec,
    with_array: bool,
    f: &impl Fn(&str) -> String,
) -> Result<(), ValidationError> {
    if with_array {
        return Err(ValidationError::new(
            f("split"),
            "a task is either an array or a split, not both",
        ));
    }
    if split.range.is_empty() {
        return Err(ValidationError::new(
            f("split.range"),
            "end must not be below start",
        ));
    }
    if split.range.len() == u64::MAX {
        return Err(ValidationError::new(
            f("split.range"),
            "the range is too long",
        ));
    }
    match split.chunks {
        SplitChunks::Count(n) if n == 0 || n > MAX_SPLIT_CHUNKS => {
            return Err(ValidationError::new(
                f("split.chunks"),
                format!("must be \"auto\" or 1 to {MAX_SPLIT_CHUNKS}"),
            ));
        }
        SplitChunks::Count(_) if split.chunk_duration_ms.is_some() => {
            return Err(ValidationError::new(
                f("split.chunk_duration_ms"),
                "a target duration is for chunks: auto (a fixed count sizes the chunks itself)",
            ));
        }
        _ => {}
    }
    if split.chunk_duration_ms == Some(0) {
        return Err(ValidationError::new(
            f("split.chunk_duration_ms"),
            "must be at least 1",
        ));
    }
    Ok(())
}

/// Whether `name` can name a driver: `[a-z0-9][a-z0-9_-]{0,31}` (also a plugin's file
/// name, so nothing that could climb out of a directory).
pub fn is_driver_name(name: &str) -> bool {
    let b = name.as_bytes();
    !b.is_empty()
        && b.len() <= 32
        && (b[0].is_ascii_lowercase() || b[0].is_ascii_digit())
        && b.iter()
            .all(|&c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'_' || c == b'-')
}

/// Longest image reference accepted (Docker's own limit for a name is 255).
const MAX_IMAGE_BYTES: usize = 255;

fn validate_driver(spec: &TaskSpec, limits: &Limits, f: &impl Fn(&str) -> String) -> Check {
    if let Some(d) = &spec.driver
        && !is_driver_name(d)
    {
        return Err(ValidationError::new(
            f("driver"),
            "must be 1 to 32 lowercase letters, digits, '_' or '-', starting with a letter or digit (e.g. process, docker)",
        ));
    }
    let docker = spec.driver_name() == crate::task_spec::DOCKER_DRIVER;
    match &spec.image {
        None if docker => Err(ValidationError::new(
            f("image"),
            "is required when the driver is docker: name an image the workers have",
        )),
        None => Ok(()),
        Some(_) if !docker => Err(ValidationError::new(
            f("image"),
            format!(
                "is only for the docker driver; this task's driver is {}",
                spec.driver_name()
            ),
        )),
        Some(image) => {
            check_string(image, limits, || f("image"))?;
            if image.is_empty()
                || image.len() > MAX_IMAGE_BYTES
                || image.chars().any(|c| c.is_whitespace() || c.is_control())
            {
                return Err(ValidationError::new(
                    f("image"),
                    format!(
                        "must be an image reference of 1 to {MAX_IMAGE_BYTES} bytes without spaces (e.g. alpine:3.20)"
                    ),
                ));
            }
            Ok(())
        }
    }
}

fn validate_resources(spec: &TaskSpec, limits: &Limits, path: impl Fn() -> String) -> Check {
    let r = &spec.resources;
    if r.cpu_milli == 0 {
        return Err(ValidationError::new(
            format!("{}.cpu_milli", path()),
            "must be at least 1 millicore; every task needs some CPU",
        ));
    }
    for (name, amount) in [
        ("memory_bytes", r.memory_bytes),
        ("disk_bytes", r.disk_bytes),
        ("gpus", r.gpus as u64),
        ("cpu_milli", r.cpu_milli as u64),
    ] {
        if amount > MAX_RESOURCE_AMOUNT {
            return Err(ValidationError::new(
                format!("{}.{name}", path()),
                format!("{amount} is too large"),
            ));
        }
    }
    if r.custom.len() > limits.max_custom_resources {
        return Err(ValidationError::new(
            format!("{}.custom", path()),
            format!(
                "at most {} custom resources are allowed",
                limits.max_custom_resources
            ),
        ));
    }
    for (k, v) in &r.custom {
        check_label_key(k, || format!("{}.custom", path()))?;
        if *v == 0 || *v > MAX_RESOURCE_AMOUNT {
            return Err(ValidationError::new(
                format!("{}.custom.{k}", path()),
                "must be between 1 and 2^56 (leave it out to ask for none)",
            ));
        }
    }
    Ok(())
}

fn validate_selector(sel: &LabelSelector, limits: &Limits, path: &str) -> Check {
    check_label_key(&sel.key, || format!("{path}.key"))?;
    let n = sel.values.len();
    let ok = match sel.op {
        SelectorOp::Eq | SelectorOp::Ne => n == 1,
        SelectorOp::In | SelectorOp::NotIn => n >= 1,
        SelectorOp::Exists | SelectorOp::NotExists => n == 0,
    };
    if !ok {
        let op = match sel.op {
            SelectorOp::Eq => "eq",
            SelectorOp::Ne => "ne",
            SelectorOp::In => "in",
            SelectorOp::NotIn => "not_in",
            SelectorOp::Exists => "exists",
            SelectorOp::NotExists => "not_exists",
        };
        let values = if n == 1 { "value does" } else { "values do" };
        return Err(ValidationError::new(
            format!("{path}.values"),
            format!(
                "{n} {values} not suit op {op} (eq/ne take 1, in/not_in 1 or more, exists/not_exists none)"
            ),
        ));
    }
    for (i, v) in sel.values.iter().enumerate() {
        check_string(v, limits, || format!("{path}.values[{i}]"))?;
    }
    Ok(())
}

/// Cache keys and salts are bounded like other strings, and at most 256 bytes (they
/// are shown in listings); a lifetime is between 1 ms and 30 days.
fn validate_cache(cache: &crate::CacheSpec, limits: &Limits, f: &dyn Fn(&str) -> String) -> Check {
    const MAX_KEY: usize = 256;
    for (name, value) in [
        ("cache.key", cache.key.as_deref()),
        ("cache.salt", Some(&cache.salt[..])),
    ] {
        let Some(v) = value else { continue };
        check_string(v, limits, || f(name))?;
        if v.len() > MAX_KEY {
            return Err(ValidationError::new(
                f(name),
                format!("is {} bytes; at most {MAX_KEY} are allowed", v.len()),
            ));
        }
    }
    if cache.key.as_deref() == Some("") {
        return Err(ValidationError::new(f("cache.key"), "must not be empty"));
    }
    if let Some(ttl) = cache.ttl_ms
        && !(1..=crate::MAX_CACHE_TTL_MS).contains(&ttl)
    {
        return Err(ValidationError::new(
            f("cache.ttl_ms"),
            format!(
                "must be between 1 and {} (30 days)",
                crate::MAX_CACHE_TTL_MS
            ),
        ));
    }
    Ok(())
}

fn check_string(s: &str, limits: &Limits, field: impl Fn() -> String) -> Check {
    if s.len() > limits.max_string_bytes {
        return Err(ValidationError::new(
            field(),
            format!(
                "is {} bytes; at most {} are allowed",
                s.len(),
                limits.max_string_bytes
            ),
        ));
    }
    if s.contains('\0') {
        return Err(ValidationError::new(field(), "must not contain a NUL byte"));
    }
    Ok(())
}

/// A portable environment variable name: `[A-Za-z_][A-Za-z0-9_]*`, not `DROVER_*`.
fn check_env_name(k: &str, field: impl Fn() -> String) -> Check {
    let mut chars = k.chars();
    let ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !ok {
        return Err(ValidationError::new(
            field(),
            "a variable name must be letters, digits and '_', not starting with a digit",
        ));
    }
    if k.starts_with("DROVER_") {
        return Err(ValidationError::new(
            field(),
            "names starting with DROVER_ are reserved for Drover",
        ));
    }
    Ok(())
}

fn check_label_key(k: &str, field: impl Fn() -> String) -> Check {
    let ok = !k.is_empty()
        && k.len() <= 253
        && k.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'));
    if ok {
        Ok(())
    } else {
        Err(ValidationError::new(
            field(),
            format!("{k:?} is not a valid name: use 1 to 253 letters, digits, '-', '_', '.', '/'"),
        ))
    }
}

/// A task key: 1 to 256 characters of letters, digits, `-_.:@`, not all digits. No
/// `/`: it separates a job from a key in references (`JOB/KEY`).
fn validate_key(key: &str, _limits: &Limits, field: impl Fn() -> String) -> Check {
    if key.is_empty() || key.len() > 256 {
        return Err(ValidationError::new(
            field(),
            "a key must be 1 to 256 characters",
        ));
    }
    if key.contains('/') {
        return Err(ValidationError::new(
            field(),
            format!(
                "{key:?} contains '/', which separates a job from a key in references (JOB/KEY); use another sign, e.g. ':' or '.'"
            ),
        ));
    }
    if !key
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':' | '@'))
    {
        return Err(ValidationError::new(
            field(),
            format!("{key:?} has a character other than letters, digits and -_.:@"),
        ));
    }
    if key.chars().all(|c| c.is_ascii_digit()) {
        return Err(ValidationError::new(
            field(),
            format!(
                "{key:?} is all digits; all-digit ids are the ones Drover assigns, so a key needs a letter or a sign"
            ),
        ));
    }
    Ok(())
}

/// A key reference in `after`: `KEY`, `JOB_ID/KEY` or `JOB_NAME/KEY` (see `KeyRef`).
fn validate_key_ref(text: &str, limits: &Limits, field: impl Fn() -> String) -> Check {
    if let KeyRef::InNamedJob { name, .. } = KeyRef::parse(text) {
        if name.is_empty() {
            return Err(ValidationError::new(
                field(),
                format!("{text:?} names no job before the '/' (use JOB_NAME/KEY or JOB_ID/KEY)"),
            ));
        }
        check_string(name, limits, &field)?;
    }
    validate_key(KeyRef::parse(text).key(), limits, field)
}

/// Checks a whole job: each task, the total size, duplicate keys, and cycles.
/// Returns the number of tasks the job expands into (arrays counted element by element).
pub fn validate_job(job: &JobSpec, limits: &Limits) -> Result<u64, ValidationError> {
    check_string(&job.name, limits, || "name".into())?;
    check_string(&job.owner, limits, || "owner".into())?;
    if job.tasks.is_empty() {
        return Err(ValidationError::new(
            "tasks",
            "a job needs at least one task",
        ));
    }
    let mut total: u64 = 0;
    let mut edges: u64 = 0;
    let mut keys: HashMap<&str, usize> = HashMap::new();
    for (i, task) in job.tasks.iter().enumerate() {
        let path = format!("tasks[{i}]");
        // Counted before the task's own checks, so that a job far over the limit is
        // refused at the task that crosses it, without checking what follows.
        edges += task.after.len() as u64;
        if edges > limits.max_edges_per_job {
            return Err(ValidationError::new(
                format!("{path}.after"),
                format!(
                    "the job's tasks have more than {} dependencies (`after` entries) in total",
                    limits.max_edges_per_job
                ),
            ));
        }
        validate_task(task, limits, &path)?;
        total += task.expanded_len();
        if total > limits.max_tasks_per_job {
            return Err(ValidationError::new(
                "tasks",
                format!(
                    "the job expands to more than {} tasks",
                    limits.max_tasks_per_job
                ),
            ));
        }
        if let Some(key) = &task.key
            && let Some(first) = keys.insert(key, i)
        {
            return Err(ValidationError::new(
                format!("{path}.key"),
                format!("{key:?} is already the key of tasks[{first}]"),
            ));
        }
    }
    if let Some(cycle) = find_cycle(job, &keys) {
        let names: Vec<&str> = cycle
            .iter()
            .map(|&i| job.tasks[i].key.as_deref().unwrap_or("?"))
            .collect();
        return Err(ValidationError::new(
            format!("tasks[{}].after", cycle[0]),
            format!("dependency cycle: {}", names.join(" -> ")),
        ));
    }
    Ok(total)
}

/// Finds a cycle among the job's own tasks (edges follow `after` keys defined in this
/// job), returned as task indices with the first repeated at the end. Iterative, so a
/// chain of a million tasks cannot overflow the stack.
fn find_cycle(job: &JobSpec, keys: &HashMap<&str, usize>) -> Option<Vec<usize>> {
    let n = job.tasks.len();
    let edges = |i: usize| -> Vec<usize> {
        job.tasks[i]
            .after
            .iter()
            .filter_map(|d| match d {
                DepRef::Key(k) => keys.get(k.as_str()).copied(),
                DepRef::Id(_) => None,
            })
            .collect()
    };
    // 0 = unvisited, 1 = on the current path, 2 = done.
    let mut color = vec![0u8; n];
    for start in 0..n {
        if color[start] != 0 || job.tasks[start].after.is_empty() {
            continue;
        }
        let mut stack: Vec<(usize, Vec<usize>, usize)> = vec![(start, edges(start), 0)];
        color[start] = 1;
        while let Some((node, succ, pos)) = stack.last_mut() {
            if *pos < succ.len() {
                let next = succ[*pos];
                *pos += 1;
                match color[next] {
                    0 => {
                        color[next] = 1;
                        let e = edges(next);
                        stack.push((next, e, 0));
                    }
                    1 => {
                        let from = stack.iter().position(|(v, _, _)| *v == next).unwrap_or(0);
                        let mut cycle: Vec<usize> =
                            stack[from..].iter().map(|(v, _, _)| *v).collect();
                        cycle.push(next);
                        return Some(cycle);
                    }
                    _ => {}
                }
            } else {
                color[*node] = 2;
                stack.pop();
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::ArraySpec;
    use crate::secret::SecretString;

    fn task(key: &str, after: &[&str]) -> TaskSpec {
        TaskSpec {
            key: Some(key.to_string()),
            after: after.iter().map(|k| DepRef::Key(k.to_string())).collect(),
            ..TaskSpec::command(["/bin/true"])
        }
    }

    fn job(tasks: Vec<TaskSpec>) -> JobSpec {
        JobSpec {
            tasks,
            ..JobSpec::default()
        }
    }

    fn err(job: &JobSpec) -> ValidationError {
        validate_job(job, &Limits::default()).unwrap_err()
    }

    #[test]
    fn a_selector_with_the_wrong_number_of_values_says_so_in_words() {
        let mut t = TaskSpec::command(["x"]);
        t.constraints = vec![LabelSelector {
            key: "zone".into(),
            op: SelectorOp::Exists,
            values: vec!["a".into()],
        }];
        let e = validate_task(&t, &Limits::default(), "task").unwrap_err();
        assert!(
            e.reason.contains("1 value does not suit op exists"),
            "{}",
            e.reason
        );
    }

    #[test]
    fn each_rule_names_its_field() {
        let limits = Limits::default();
        let table: Vec<(&str, TaskSpec, &str)> = vec![
            ("empty command", TaskSpec::default(), "command"),
            ("empty program", TaskSpec::command([""]), "command[0]"),
            (
                "zero cpu",
                TaskSpec {
                    resources: crate::Resources::default(),
                    ..TaskSpec::command(["x"])
                },
                "resources.cpu_milli",
            ),
            (
                "huge memory",
                TaskSpec {
                    resources: crate::Resources {
                        cpu_milli: 1,
                        memory_bytes: u64::MAX,
                        ..Default::default()
                    },
                    ..TaskSpec::command(["x"])
                },
                "resources.memory_bytes",
            ),
            (
                "time limit too short",
                TaskSpec {
                    max_runtime_ms: Some(1),
                    ..TaskSpec::command(["x"])
                },
                "max_runtime_ms",
            ),
            (
                "zero attempts",
                TaskSpec {
                    retry: crate::RetryPolicy {
                        max_attempts: 0,
                        ..Default::default()
                    },
                    ..TaskSpec::command(["x"])
                },
                "retry.max_attempts",
            ),
            (
                "all-digit key",
                TaskSpec {
                    key: Some("123".into()),
                    ..TaskSpec::command(["x"])
                },
                "key",
            ),
            (
                "key with a slash",
                TaskSpec {
                    key: Some("nightly/part".into()),
                    ..TaskSpec::command(["x"])
                },
                "key",
            ),
            (
                "reference with an all-digit key",
                TaskSpec {
                    after: vec![DepRef::Key("nightly/12".into())],
                    ..TaskSpec::command(["x"])
                },
                "after[0]",
            ),
            (
                "reference with no job before the slash",
                TaskSpec {
                    after: vec![DepRef::Key("/part".into())],
                    ..TaskSpec::command(["x"])
                },
                "after[0]",
            ),
            (
                "reference with no key after the slash",
                TaskSpec {
                    after: vec![DepRef::Key("nightly/".into())],
                    ..TaskSpec::command(["x"])
                },
                "after[0]",
            ),
            (
                "NUL in argument",
                TaskSpec::command(["x", "a\0b"]),
                "command[1]",
            ),
            (
                "oversize argument",
                TaskSpec::command(["x".repeat(70_000)]),
                "command[0]",
            ),
            (
                "reserved env",
                TaskSpec {
                    env: [("DROVER_X".to_string(), "1".to_string())].into(),
                    ..TaskSpec::command(["x"])
                },
                "env.DROVER_X",
            ),
            (
                "env name with a dash",
                TaskSpec {
                    env: [("A-B".to_string(), "1".to_string())].into(),
                    ..TaskSpec::command(["x"])
                },
                "env.A-B",
            ),
            (
                "env name starting with a digit",
                TaskSpec {
                    env: [("1A".to_string(), "1".to_string())].into(),
                    ..TaskSpec::command(["x"])
                },
                "env.1A",
            ),
            (
                "secret env name with '='",
                TaskSpec {
                    secret_env: [("A=B".to_string(), SecretString::new("s"))].into(),
                    ..TaskSpec::command(["x"])
                },
                "secret_env.A=B",
            ),
            (
                "secret env also in env",
                TaskSpec {
                    env: [("TOKEN".to_string(), "1".to_string())].into(),
                    secret_env: [("TOKEN".to_string(), SecretString::new("s"))].into(),
                    ..TaskSpec::command(["x"])
                },
                "secret_env.TOKEN",
            ),
            (
                "workdir climbing out",
                TaskSpec {
                    workdir: Some("out/../../etc".into()),
                    ..TaskSpec::command(["x"])
                },
                "workdir",
            ),
            (
                "driver with capitals",
                TaskSpec {
                    driver: Some("Docker".into()),
                    ..TaskSpec::command(["x"])
                },
                "driver",
            ),
            (
                "docker without image",
                TaskSpec {
                    driver: Some("docker".into()),
                    ..TaskSpec::command(["x"])
                },
                "image",
            ),
            (
                "image without docker",
                TaskSpec {
                    image: Some("alpine".into()),
                    ..TaskSpec::command(["x"])
                },
                "image",
            ),
            (
                "image with a space",
                TaskSpec {
                    driver: Some("docker".into()),
                    image: Some("alpine latest".into()),
                    ..TaskSpec::command(["x"])
                },
                "image",
            ),
            (
                "split and array",
                TaskSpec {
                    array: Some(ArraySpec { start: 0, end: 2 }),
                    split: Some(crate::SplitSpec {
                        range: crate::SplitRange { start: 1, end: 9 },
                        chunks: crate::SplitChunks::Auto,
                        chunk_duration_ms: None,
                    }),
                    ..TaskSpec::command(["x"])
                },
                "split",
            ),
            (
                "empty split range",
                TaskSpec {
                    split: Some(crate::SplitSpec {
                        range: crate::SplitRange { start: 9, end: 1 },
                        chunks: crate::SplitChunks::Auto,
                        chunk_duration_ms: None,
                    }),
                    ..TaskSpec::command(["x"])
                },
                "split.range",
            ),
            (
                "too many split chunks",
                TaskSpec {
                    split: Some(crate::SplitSpec {
                        range: crate::SplitRange { start: 1, end: 9 },
                        chunks: crate::SplitChunks::Count(crate::MAX_SPLIT_CHUNKS + 1),
                        chunk_duration_ms: None,
                    }),
                    ..TaskSpec::command(["x"])
                },
                "split.chunks",
            ),
            (
                "a target duration with a fixed count",
                TaskSpec {
                    split: Some(crate::SplitSpec {
                        range: crate::SplitRange { start: 1, end: 9 },
                        chunks: crate::SplitChunks::Count(3),
                        chunk_duration_ms: Some(1_000),
                    }),
                    ..TaskSpec::command(["x"])
                },
                "split.chunk_duration_ms",
            ),
            (
                "empty array",
                TaskSpec {
                    array: Some(ArraySpec { start: 3, end: 2 }),
                    ..TaskSpec::command(["x"])
                },
                "array",
            ),
            (
                "oversize array",
                TaskSpec {
                    array: Some(ArraySpec {
                        start: 0,
                        end: 2_000_000,
                    }),
                    ..TaskSpec::command(["x"])
                },
                "array",
            ),
        ];
        for (rule, spec, field) in table {
            let e = validate_task(&spec, &limits, "").expect_err(rule);
            assert_eq!(e.field, field, "{rule}: {e}");
        }
        assert!(validate_task(&TaskSpec::command(["/bin/true"]), &limits, "").is_ok());
        let qualified = TaskSpec {
            key: Some("a:b.c@d-e_1".into()),
            after: ["part", "nightly/part", "team/nightly/part", "12/part"]
                .iter()
                .map(|k| DepRef::Key(k.to_string()))
                .collect(),
            ..TaskSpec::command(["x"])
        };
        assert!(validate_task(&qualified, &limits, "").is_ok());
    }

    #[test]
    fn driver_names_follow_the_pattern() {
        for ok in ["process", "docker", "k8s", "0x", "my_plugin-2"] {
            assert!(is_driver_name(ok), "{ok}");
        }
        for bad in ["", "-x", "_x", "Docker", "a/b", "..", &"a".repeat(33)] {
            assert!(!is_driver_name(bad), "{bad}");
        }
        let ok = TaskSpec {
            driver: Some("docker".into()),
            image: Some("drover-test-base:1".into()),
            ..TaskSpec::command(["x"])
        };
        assert_eq!(validate_task(&ok, &Limits::default(), "tasks[0]"), Ok(()));
    }

    #[test]
    fn duplicate_keys_are_rejected() {
        let e = err(&job(vec![task("a", &[]), task("a", &[])]));
        assert_eq!(e.field, "tasks[1].key");
        assert!(e.reason.contains("tasks[0]"));
    }

    #[test]
    fn cycles_are_reported_with_their_path() {
        let e = err(&job(vec![
            task("a", &["c"]),
            task("b", &["a"]),
            task("c", &["b"]),
        ]));
        assert_eq!(e.field, "tasks[0].after");
        assert_eq!(e.reason, "dependency cycle: a -> c -> b -> a");
        let e = err(&job(vec![task("self", &["self"])]));
        assert_eq!(e.reason, "dependency cycle: self -> self");
    }

    #[test]
    fn a_long_chain_is_not_a_cycle_and_does_not_overflow() {
        let mut tasks = vec![task("t0", &[])];
        for i in 1..200_000 {
            let prev = format!("t{}", i - 1);
            tasks.push(task(&format!("t{i}"), &[&prev]));
        }
        assert_eq!(validate_job(&job(tasks), &Limits::default()), Ok(200_000));
    }

    #[test]
    fn dependency_edges_are_counted_over_the_whole_job() {
        let limits = Limits {
            max_edges_per_job: 5,
            ..Limits::default()
        };
        let three = |k: &str| task(k, &["a", "b", "c"]);
        let ok = job(vec![task("a", &[]), task("b", &[]), task("c", &["a", "b"])]);
        assert_eq!(validate_job(&ok, &limits), Ok(3));
        let over = job(vec![
            task("a", &[]),
            task("b", &[]),
            task("c", &[]),
            three("d"),
            three("e"),
        ]);
        let e = validate_job(&over, &limits).unwrap_err();
        assert_eq!(e.field, "tasks[4].after");
        assert!(
            e.reason.contains("more than 5 dependencies"),
            "{}",
            e.reason
        );
    }

    #[test]
    fn job_size_counts_array_elements() {
        let limits = Limits {
            max_tasks_per_job: 10,
            ..Limits::default()
        };
        let mut t = TaskSpec::command(["x"]);
        t.array = Some(ArraySpec { start: 0, end: 10 });
        let e = validate_job(&job(vec![t]), &limits).unwrap_err();
        assert_eq!(e.field, "tasks");
    }
}
