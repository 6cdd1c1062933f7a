//! The OpenAPI document of the API, served at `/v1/openapi.json`.
//!
//! Written out here rather than derived, to keep the domain crates free of schema
//! macros; a test checks that every route the router serves is documented.

use axum::Json;
use serde_json::{Value, json};

/// Every documented route, as (method, path, summary, success status).
pub const ROUTES: &[(&str, &str, &str, &str)] = &[
    (
        "get",
        "/v1/health",
        "Liveness of this server (no credentials needed)",
        "200",
    ),
    ("get", "/v1/openapi.json", "This document", "200"),
    (
        "get",
        "/v1/cluster",
        "Cluster summary: tasks per state, workers, leader, policy",
        "200",
    ),
    ("get", "/v1/policy", "The scheduling policy", "200"),
    ("put", "/v1/policy", "Switch the scheduling policy", "200"),
    (
        "get",
        "/v1/workers",
        "Workers: capacity, allocation, usage, running tasks, state",
        "200",
    ),
    (
        "post",
        "/v1/workers/{id}/drain",
        "Stop placing tasks on a worker; running ones finish",
        "200",
    ),
    (
        "post",
        "/v1/workers/{id}/resume",
        "Place tasks on a drained worker again",
        "200",
    ),
    (
        "get",
        "/v1/tasks",
        "List tasks (filters: state, job, name, label; cursor pagination)",
        "200",
    ),
    ("post", "/v1/tasks", "Submit one task (a TaskSpec)", "201"),
    (
        "get",
        "/v1/tasks/{task}",
        "One task by id or key: state, reason, attempts, times, result",
        "200",
    ),
    (
        "post",
        "/v1/tasks/{task}/cancel",
        "Cancel a task (or every element of an array key)",
        "200",
    ),
    (
        "get",
        "/v1/tasks/{task}/output",
        "A task's stdout or stderr from an offset; follow=true streams",
        "200",
    ),
    (
        "post",
        "/v1/jobs",
        "Submit a job: tasks accepted atomically (arrays, dependencies)",
        "201",
    ),
    ("get", "/v1/jobs/{job}", "A job: its tasks per state", "200"),
    (
        "post",
        "/v1/jobs/{job}/cancel",
        "Cancel every unfinished task of a job",
        "200",
    ),
    (
        "get",
        "/v1/worker/connect",
        "The worker protocol (WebSocket upgrade)",
        "101",
    ),
];

pub fn spec() -> Value {
    let mut paths = serde_json::Map::new();
    for (method, path, summary, status) in ROUTES {
        let entry = paths.entry(path.to_string()).or_insert_with(|| json!({}));
        let mut params = Vec::new();
        for name in ["task", "job", "id"] {
            if path.contains(&format!("{{{name}}}")) {
                params.push(json!({"name": name, "in": "path", "required": true, "schema": {"type": "string"}}));
            }
        }
        let mut op = json!({
            "summary": summary,
            "parameters": params,
            "responses": {
                *status: {"description": "success"},
                "400": {"description": "invalid request", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}},
                "401": {"description": "missing or wrong cluster token", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}},
                "404": {"description": "not found", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}},
            },
        });
        if *path == "/v1/health" {
            op["security"] = json!([]);
        }
        if matches!(*method, "post" | "put")
            && !path.contains("cancel")
            && !path.contains("drain")
            && !path.contains("resume")
        {
            let schema = match *path {
                "/v1/tasks" => "TaskSpec",
                "/v1/jobs" => "JobSpec",
                _ => "PolicyConfig",
            };
            op["requestBody"] = json!({
                "required": true,
                "content": {"application/json": {"schema": {"$ref": format!("#/components/schemas/{schema}")}}}
            });
        }
        entry[*method] = op;
    }
    json!({
        "openapi": "3.0.3",
        "info": {
            "title": "Drover API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Submit, watch and control tasks on a Drover cluster. Every route but /v1/health needs the cluster token as a bearer credential."
        },
        "components": {
            "securitySchemes": {"token": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                "Error": {
                    "type": "object",
                    "required": ["error"],
                    "properties": {"error": {"type": "object", "required": ["code", "message"], "properties": {
                        "code": {"type": "string"}, "message": {"type": "string"}, "field": {"type": "string"}
                    }}}
                },
                "TaskSpec": {
                    "type": "object",
                    "required": ["command"],
                    "properties": {
                        "key": {"type": "string"}, "name": {"type": "string"},
                        "command": {"type": "array", "items": {"type": "string"}, "minItems": 1},
                        "shell": {"type": "boolean"},
                        "env": {"type": "object", "additionalProperties": {"type": "string"}},
                        "workdir": {"type": "string"},
                        "resources": {"type": "object", "properties": {
                            "cpu_milli": {"type": "integer", "minimum": 1}, "memory_bytes": {"type": "integer", "minimum": 0},
                            "disk_bytes": {"type": "integer", "minimum": 0}, "gpus": {"type": "integer", "minimum": 0},
                            "custom": {"type": "object", "additionalProperties": {"type": "integer"}}
                        }},
                        "after": {"type": "array", "items": {"oneOf": [{"type": "integer"}, {"type": "string"}]}},
                        "priority": {"type": "integer"},
                        "max_runtime_ms": {"type": "integer"}, "expected_runtime_ms": {"type": "integer"},
                        "retry": {"type": "object", "properties": {
                            "max_attempts": {"type": "integer", "minimum": 1},
                            "backoff": {"type": "object", "properties": {"initial_ms": {"type": "integer"}, "multiplier_percent": {"type": "integer"}, "max_ms": {"type": "integer"}}},
                            "retry_on_exit_codes": {"type": "array", "items": {"type": "integer"}}
                        }},
                        "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                        "constraints": {"type": "array", "items": {"$ref": "#/components/schemas/LabelSelector"}},
                        "affinity": {"type": "array", "items": {"$ref": "#/components/schemas/LabelSelector"}},
                        "inputs": {"type": "array", "items": {"type": "string"}},
                        "owner": {"type": "string"},
                        "array": {"type": "object", "required": ["start", "end"], "properties": {"start": {"type": "integer"}, "end": {"type": "integer"}}}
                    }
                },
                "LabelSelector": {"type": "object", "required": ["key", "op"], "properties": {
                    "key": {"type": "string"}, "op": {"type": "string", "enum": ["eq", "ne", "in", "not_in", "exists", "not_exists"]},
                    "values": {"type": "array", "items": {"type": "string"}}
                }},
                "JobSpec": {"type": "object", "required": ["tasks"], "properties": {
                    "name": {"type": "string"}, "owner": {"type": "string"},
                    "tasks": {"type": "array", "items": {"$ref": "#/components/schemas/TaskSpec"}, "minItems": 1}
                }},
                "PolicyConfig": {"type": "object", "properties": {
                    "queue": {"type": "object", "properties": {"kind": {"type": "string", "enum": ["fcfs", "priority", "shortest_job_first", "fair_share"]}}},
                    "placement": {"type": "string", "enum": ["bin_pack", "spread", "round_robin"]},
                    "preemption": {"type": "boolean"}, "preemption_grace_ms": {"type": "integer"},
                    "locality_weight": {"type": "integer"}, "affinity_weight": {"type": "integer"}
                }}
            }
        },
        "security": [{"token": []}],
        "paths": paths,
    })
}

pub async fn document() -> Json<Value> {
    Json(spec())
}
