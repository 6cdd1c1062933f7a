//! DistTask-compatible routes: `POST /submit_task`, `GET /get_results`, `GET /status`.
//!
//! A thin layer over the real API, so that scripts written for the DistTask framework
//! (a Flask app taking serialized Python functions) run against Drover with only the URL
//! and an `Authorization` header changed. A submitted task is an ordinary Drover task
//! (`python3 -m drover.runner`, the serialized function in its environment) made by the
//! same submission path as `POST /v1/tasks`, so it is validated, logged, scheduled,
//! confined and authorized like any other; the results are read back from the tasks'
//! ordinary results, which the runner writes as one JSON line (see
//! `python/drover/runner.py`). The routes are authenticated like every other and have
//! their roles in `api/access.rs`.

use super::error::ApiError;
use super::json::{JsonBody, QueryParams};
use super::openapi::{Refused, TooLarge, Unauthorized, WriteRefused};
use crate::auth::Caller;
use crate::node::Node;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use drover_proto::api::WorkerInfo;
use drover_types::{JobSpec, TaskId, TaskSpec, TaskState};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;

/// The environment variable that carries the serialized function to the runner. Not
/// `DROVER_*`: those names are the worker's own.
pub const PAYLOAD_ENV: &str = "DROVERPY_PAYLOAD";
/// The label that marks the tasks made through `POST /submit_task`, which
/// `GET /get_results` lists.
pub const LABEL_KEY: &str = "drover.api";
pub const LABEL_VALUE: &str = "disttask";
/// What a DistTask task runs: the Python runner of the `drover` package, found by the
/// worker's `PATH` (the task gets the worker's `PATH`).
const RUNNER: [&str; 3] = ["python3", "-m", "drover.runner"];
/// The largest serialized task, in bytes: one environment value (`Limits::max_string_bytes`
/// by default). The server's configured limit is checked too.
const MAX_TASK_BYTES: usize = 64 * 1024;

/// `POST /submit_task`: a serialized Python call, as `drover.serialize_task(fn, *args)`
/// makes it (base64 of a cloudpickle).
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SubmitTaskRequest {
    /// The serialized task: base64 (standard alphabet, padded).
    #[schema(min_length = 1, max_length = 65536, pattern = "^[A-Za-z0-9+/]+={0,2}$")]
    pub task: String,
}

/// The answer to `POST /submit_task`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SubmitTaskResponse {
    pub message: String,
    /// The Drover task: `GET /v1/tasks/{task_id}`, `drover status ID`.
    pub task_id: TaskId,
    pub job: drover_types::JobId,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ResultsQuery {
    /// Only tasks with a larger id: a previous answer's `next_after`.
    #[param(maximum = 18446744073709551615_u64)]
    after: Option<u64>,
    /// Results per answer, 1 to 1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<usize>,
}

/// One finished DistTask task.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TaskResult {
    pub task_id: TaskId,
    pub state: TaskState,
    /// The function's return value: as JSON when it is representable so, else its
    /// `repr`; absent when the function raised or the task never produced a result.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result: Option<serde_json::Value>,
    /// The exception (`Type: message`), or why there is no result.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The remote traceback of the exception.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub traceback: Option<String>,
}

/// The answer to `GET /get_results`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ResultsResponse {
    /// Finished tasks made by `POST /submit_task`, by id.
    pub results: Vec<TaskResult>,
    /// Tasks made by `POST /submit_task` in the range looked at that have not finished.
    pub pending: u64,
    /// Pass as `after` for the next answer; absent when there is nothing more.
    pub next_after: Option<u64>,
}

/// The answer to `GET /status`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct StatusResponse {
    pub workers: Vec<WorkerInfo>,
    /// Tasks of the cluster per state.
    pub tasks: BTreeMap<TaskState, u64>,
}

/// Submits a serialized Python function call (DistTask's `POST /submit_task`). It runs
/// as `python3 -m drover.runner` on a worker; its value is the task's result.
#[utoipa::path(
    post,
    path = "/submit_task",
    tag = "disttask",
    operation_id = "disttask_submit_task",
    request_body = SubmitTaskRequest,
    responses(
        (status = 201, description = "Accepted: the task's id", body = SubmitTaskResponse),
        Refused, TooLarge, WriteRefused
    )
)]
pub async fn submit_task(
    State(node): State<Arc<Node>>,
    caller: Caller,
    JsonBody(body): JsonBody<SubmitTaskRequest>,
) -> Result<(StatusCode, Json<SubmitTaskResponse>), ApiError> {
    let max = MAX_TASK_BYTES.min(node.config.limits.max_string_bytes);
    if body.task.is_empty() || body.task.len() > max {
        return Err(ApiError::invalid(
            Some("task".into()),
            format!("the serialized task must be 1 to {max} bytes"),
        ));
    }
    if !is_base64(&body.task) {
        return Err(ApiError::invalid(
            Some("task".into()),
            "not a serialized task: expected base64, as drover.serialize_task makes it",
        ));
    }
    let mut spec = TaskSpec::command(RUNNER);
    spec.name = "disttask".into();
    spec.env.insert(PAYLOAD_ENV.into(), body.task);
    spec.labels.insert(LABEL_KEY.into(), LABEL_VALUE.into());
    let job = JobSpec {
        name: spec.name.clone(),
        owner: String::new(),
        tasks: vec![spec],
    };
    let (status, _, Json(answer)) = super::tasks::submit(&node, &caller, job, true, None).await?;
    Ok((
        status,
        Json(SubmitTaskResponse {
            message: "task submitted".into(),
            task_id: answer.first,
            job: answer.job,
        }),
    ))
}

fn is_base64(text: &str) -> bool {
    let body = text.trim_end_matches('=');
    text.len() - body.len() <= 2
        && body
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/')
}

/// Most tasks one answer looks at, like `GET /v1/tasks`.
const MAX_SCAN: usize = 100_000;
const MAX_PAGE: usize = 1000;

/// The results of the tasks made by `POST /submit_task` (DistTask's `GET /get_results`),
/// in id order, a page at a time.
#[utoipa::path(
    get,
    path = "/get_results",
    tag = "disttask",
    operation_id = "disttask_get_results",
    params(ResultsQuery),
    responses((status = 200, description = "Finished tasks and their values", body = ResultsResponse), Refused)
)]
pub async fn get_results(
    State(node): State<Arc<Node>>,
    caller: Caller,
    QueryParams(q): QueryParams<ResultsQuery>,
) -> Result<Json<ResultsResponse>, ApiError> {
    let limit = q.limit.unwrap_or(100);
    if limit == 0 || limit > MAX_PAGE {
        return Err(ApiError::invalid(
            Some("limit".into()),
            format!("must be between 1 and {MAX_PAGE}"),
        ));
    }
    // The raw results are copied under the read lock and parsed after it is released.
    let mut finished = Vec::new();
    let mut pending = 0;
    let mut next_after = None;
    let sm = node.state.read();
    for (scanned, view) in sm.scheduler().tasks_after(q.after.map(TaskId)).enumerate() {
        if finished.len() == limit || scanned == MAX_SCAN {
            next_after = Some(view.id.0 - 1);
            break;
        }
        if view.spec.shared().labels.get(LABEL_KEY).map(String::as_str) != Some(LABEL_VALUE)
            || !caller.sees(&view.spec.shared().owner)
        {
            continue;
        }
        if !view.state.is_final() {
            pending += 1;
            continue;
        }
        let raw = sm.record(view.id).and_then(|r| r.result.clone());
        finished.push((view.id, view.state, raw));
    }
    drop(sm);
    let results = finished
        .into_iter()
        .map(|(id, state, raw)| task_result(id, state, raw.as_deref()))
        .collect();
    Ok(Json(ResultsResponse {
        results,
        pending,
        next_after,
    }))
}

/// What the runner's result line says, read leniently: a task that did not get as far
/// as the runner (no interpreter, no `drover` package) has no such line.
fn task_result(task_id: TaskId, state: TaskState, raw: Option<&str>) -> TaskResult {
    let mut out = TaskResult {
        task_id,
        state,
        result: None,
        error: None,
        traceback: None,
    };
    let line = raw.map(str::trim).unwrap_or("");
    let parsed: Option<serde_json::Value> = serde_json::from_str(line).ok();
    match parsed.filter(|v| v.get("drover_python").is_some()) {
        Some(v) if v["ok"] == serde_json::Value::Bool(true) => {
            out.result = v.get("json").or_else(|| v.get("repr")).cloned();
        }
        Some(v) => {
            out.error = v["error"].as_str().map(str::to_string);
            out.traceback = v["traceback"].as_str().map(str::to_string);
        }
        None => {
            out.error = Some(match state {
                TaskState::Succeeded => {
                    "the task printed no runner result (its result was cut at the worker's result limit?)"
                        .into()
                }
                other => format!(
                    "the task ended {} without a result; see `drover logs {} --stderr`",
                    other.as_str(),
                    task_id
                ),
            });
        }
    }
    out
}

/// The workers and the tasks per state (DistTask's `GET /status`).
#[utoipa::path(
    get,
    path = "/status",
    tag = "disttask",
    operation_id = "disttask_status",
    responses((status = 200, description = "Workers and task counts", body = StatusResponse), Unauthorized)
)]
pub async fn status(State(node): State<Arc<Node>>) -> Json<StatusResponse> {
    let Json(workers) = super::cluster::workers(State(node.clone())).await;
    let sm = node.state.read();
    let counts = sm.scheduler().counts();
    let tasks = TaskState::ALL.iter().map(|s| (*s, counts.of(*s))).collect();
    Json(StatusResponse { workers, tasks })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_is_checked() {
        assert!(is_base64("gASVAAA="));
        assert!(is_base64("abc+/09"));
        assert!(!is_base64("not base64!"));
        assert!(!is_base64("abc==="));
    }

    #[test]
    fn runner_lines_become_values_or_errors() {
        let ok = r#"{"drover_python":1,"ok":true,"pickle":"x","json":7,"repr":"7"}"#;
        let r = task_result(TaskId(1), TaskState::Succeeded, Some(ok));
        assert_eq!(r.result, Some(serde_json::json!(7)));
        let only_repr = r#"{"drover_python":1,"ok":true,"pickle":"x","repr":"{1, 2}"}"#;
        let r = task_result(TaskId(1), TaskState::Succeeded, Some(only_repr));
        assert_eq!(r.result, Some(serde_json::json!("{1, 2}")));
        let err = r#"{"drover_python":1,"ok":false,"error":"ZeroDivisionError: division by zero","traceback":"Traceback"}"#;
        let r = task_result(TaskId(2), TaskState::Failed, Some(err));
        assert_eq!(
            r.error.as_deref(),
            Some("ZeroDivisionError: division by zero")
        );
        assert_eq!(r.traceback.as_deref(), Some("Traceback"));
        let r = task_result(TaskId(3), TaskState::Failed, None);
        assert!(r.error.unwrap().contains("without a result"), "no result");
    }
}
