//! Schemas for the OpenAPI document where the derived one would say less than the
//! validation does (feature `openapi`). Each states exactly what `validation.rs`
//! checks field by field, so that what the document calls valid is accepted and what
//! it calls invalid is refused; rules across fields (a dependency exists, no cycle,
//! `max_ms` at least `initial_ms`) are said in words.

use crate::limits::Limits;
use serde_json::{Value, json};
use utoipa::openapi::{RefOr, Schema};

/// A string without NUL bytes, of at most `max_string_bytes` (counted as characters
/// here: JSON Schema cannot count bytes; for ASCII they are the same).
pub(crate) fn text() -> Value {
    json!({"type": "string", "pattern": NO_NUL, "maxLength": Limits::default().max_string_bytes})
}

const NO_NUL: &str = "^[^\\u0000]*$";
/// A task key: letters, digits and `-_.:/@`, not all digits.
pub(crate) const KEY: &str = "^[A-Za-z0-9_.:/@-]*[A-Za-z_.:/@-][A-Za-z0-9_.:/@-]*$";
/// A label or custom resource name.
const NAME: &str = "^[A-Za-z0-9_./-]{1,253}$";
/// Largest single resource amount (see validation.rs).
const MAX_AMOUNT: u64 = 1 << 56;

fn schema(v: Value) -> RefOr<Schema> {
    RefOr::T(serde_json::from_value(v).expect("a valid schema literal"))
}

pub(crate) fn key() -> RefOr<Schema> {
    schema(
        json!({"type": ["string", "null"], "pattern": KEY, "maxLength": 256,
        "description": "Your own unique id for the task: 1 to 256 letters, digits and -_.:/@, not all digits."}),
    )
}

pub(crate) fn string() -> RefOr<Schema> {
    schema(text())
}

pub(crate) fn workdir() -> RefOr<Schema> {
    let mut t = text();
    t["minLength"] = json!(1);
    t["type"] = json!(["string", "null"]);
    schema(t)
}

pub(crate) fn driver() -> RefOr<Schema> {
    schema(
        json!({"type": ["string", "null"], "pattern": "^[a-z0-9][a-z0-9_-]{0,31}$",
        "description": "The execution driver: `process` (default), `docker`, or a plugin's name. Only workers that have it receive the task."}),
    )
}

pub(crate) fn image() -> RefOr<Schema> {
    schema(
        json!({"type": ["string", "null"], "minLength": 1, "maxLength": 255, "pattern": "^[^\\s]+$",
        "description": "The container image of a `docker` task (required then, refused for other drivers); it must already be on the worker."}),
    )
}

pub(crate) fn command() -> RefOr<Schema> {
    let l = Limits::default();
    let mut program = text();
    program["minLength"] = json!(1);
    schema(json!({
        "type": "array", "minItems": 1, "maxItems": l.max_command_args,
        "prefixItems": [program], "items": text(),
        "description": "The program and its arguments (an argument list: no shell unless `shell` is true)."
    }))
}

pub(crate) fn env() -> RefOr<Schema> {
    let l = Limits::default();
    schema(json!({
        "type": "object", "maxProperties": l.max_env_vars,
        "propertyNames": {"type": "string", "pattern": "^(?!DROVER_)[^=\\u0000]+$"},
        "additionalProperties": text(),
        "description": format!("Environment variables; names starting with DROVER_ are reserved. At most {} bytes in all.", l.max_env_bytes)
    }))
}

pub(crate) fn labels() -> RefOr<Schema> {
    schema(json!({
        "type": "object", "maxProperties": Limits::default().max_labels,
        "propertyNames": {"type": "string", "pattern": NAME},
        "additionalProperties": text()
    }))
}

pub(crate) fn inputs() -> RefOr<Schema> {
    schema(json!({"type": "array", "maxItems": Limits::default().max_inputs, "items": text()}))
}

pub(crate) fn runtime() -> RefOr<Schema> {
    let l = Limits::default();
    schema(
        json!({"type": ["integer", "null"], "minimum": l.min_runtime_ms, "maximum": l.max_runtime_ms}),
    )
}

/// What a task asks for: unlike a worker's amounts, CPU is required and at least 1.
pub(crate) fn task_resources() -> RefOr<Schema> {
    let amount = |max: u64| json!({"type": "integer", "minimum": 0, "maximum": max});
    schema(json!({
        "type": "object", "additionalProperties": false, "required": ["cpu_milli"],
        "properties": {
            "cpu_milli": {"type": "integer", "minimum": 1, "maximum": u32::MAX,
                "description": "CPU in millicores: 1500 is one and a half cores."},
            "memory_bytes": amount(MAX_AMOUNT),
            "disk_bytes": amount(MAX_AMOUNT),
            "gpus": amount(u32::MAX as u64),
            "custom": {"type": "object", "maxProperties": Limits::default().max_custom_resources,
                "propertyNames": {"type": "string", "pattern": NAME},
                "additionalProperties": {"type": "integer", "minimum": 1, "maximum": MAX_AMOUNT}}
        },
        "description": "What the task reserves on its worker. Leave the whole object out for one core."
    }))
}

pub(crate) fn after() -> RefOr<Schema> {
    schema(json!({
        "type": "array", "maxItems": Limits::default().max_deps_per_task,
        "items": {"oneOf": [
            {"type": "integer", "minimum": 0, "description": "A task id"},
            {"type": "string", "pattern": KEY, "maxLength": 256, "description": "A task key"}
        ]},
        "description": "Tasks that must all succeed first: ids of existing tasks, or keys (of this job's tasks or earlier ones)."
    }))
}

pub(crate) fn max_attempts() -> RefOr<Schema> {
    schema(json!({"type": "integer", "minimum": 1, "maximum": Limits::default().max_attempts}))
}

pub(crate) fn backoff_ms() -> RefOr<Schema> {
    schema(json!({"type": "integer", "minimum": 0, "maximum": Limits::default().max_backoff_ms}))
}

pub(crate) fn multiplier_percent() -> RefOr<Schema> {
    schema(json!({"type": "integer", "minimum": 100, "maximum": 1000}))
}

/// The queue policy: which fields each kind takes (the server refuses the others), with
/// the short names it also accepts.
pub(crate) fn queue_policy() -> RefOr<Schema> {
    let kind = |names: &[&str], fields: Value| {
        let mut properties = json!({"kind": {"type": "string", "enum": names}});
        if let (Some(p), Some(f)) = (properties.as_object_mut(), fields.as_object()) {
            p.extend(f.clone());
        }
        json!({"type": "object", "additionalProperties": false, "required": ["kind"], "properties": properties})
    };
    schema(json!({
        "oneOf": [
            kind(&["fcfs"], json!({})),
            kind(&["priority"], json!({"aging_ms": {"type": "integer", "minimum": 0, "maximum": u64::MAX,
                "description": "Every aging_ms waited counts as one more level of priority (0: no aging; default 60000)."}})),
            kind(&["shortest_job_first", "sjf"], json!({})),
            kind(&["fair_share", "fair"], json!({"weights": {"type": "object",
                "additionalProperties": {"type": "integer", "minimum": 0, "maximum": u32::MAX},
                "description": "Owners' weights (default 1)."}})),
            kind(&["multifactor"], json!({"factors": {"type": "object", "additionalProperties": false,
                "properties": {
                    "priority": {"type": "integer", "minimum": i32::MIN, "maximum": i32::MAX,
                        "description": "Points per level of the task's priority."},
                    "age": {"type": "integer", "minimum": i32::MIN, "maximum": i32::MAX,
                        "description": "Points per second the task has been ready."},
                    "fairshare": {"type": "integer", "minimum": 0, "maximum": u32::MAX,
                        "description": "Points taken off per CPU core the owner's placed tasks reserve."},
                    "size": {"type": "integer", "minimum": i32::MIN, "maximum": i32::MAX,
                        "description": "Points per CPU core the task asks for (negative favors small tasks)."},
                    "labels": {"type": "object", "maxProperties": crate::MAX_LABEL_WEIGHTS,
                        "additionalProperties": {"type": "integer", "minimum": i32::MIN, "maximum": i32::MAX},
                        "description": "Points per unit of a numeric task label, by label name."}
                },
                "description": "Weights of the effective priority (each 0 unless given); higher goes first."}})),
        ],
        "description": "Which ready task goes first."
    }))
}

pub(crate) fn selectors() -> RefOr<Schema> {
    let values = |min: u64, max: Option<u64>| {
        let mut v = json!({"type": "array", "items": text(), "minItems": min});
        if let Some(max) = max {
            v["maxItems"] = json!(max);
        }
        v
    };
    let selector = |ops: &[&str], values: Value| {
        let required: &[&str] = if values["minItems"] == 0 {
            &["key", "op"]
        } else {
            &["key", "op", "values"]
        };
        json!({"type": "object", "additionalProperties": false, "required": required,
            "properties": {"key": {"type": "string", "pattern": NAME}, "op": {"type": "string", "enum": ops}, "values": values}})
    };
    schema(json!({
        "type": "array", "maxItems": Limits::default().max_labels,
        "items": {"oneOf": [
            selector(&["eq", "ne"], values(1, Some(1))),
            selector(&["in", "not_in"], values(1, None)),
            selector(&["exists", "not_exists"], values(0, Some(0))),
        ]},
        "description": "Label selectors: eq and ne take one value, in and not_in one or more, exists and not_exists none."
    }))
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_schema_literal_is_a_schema() {
        for (name, f) in [
            ("key", super::key as fn() -> _),
            ("string", super::string),
            ("workdir", super::workdir),
            ("command", super::command),
            ("env", super::env),
            ("labels", super::labels),
            ("inputs", super::inputs),
            ("runtime", super::runtime),
            ("task_resources", super::task_resources),
            ("after", super::after),
            ("max_attempts", super::max_attempts),
            ("backoff_ms", super::backoff_ms),
            ("multiplier_percent", super::multiplier_percent),
            ("selectors", super::selectors),
            ("queue_policy", super::queue_policy),
        ] {
            let r = std::panic::catch_unwind(f);
            assert!(r.is_ok(), "{name}");
        }
    }
}
