//! Dynamic resources over HTTP: `POST /v1/tasks/{task}/resize`.

use super::error::ApiError;
use super::json::{JsonBody, PathParam};
use super::openapi::{NotFound, Refused, WriteRefused};
use super::tasks::{check_range, resolve_one};
use crate::auth::Caller;
use crate::node::Node;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use drover_proto::api::{ResizeAnswer, ResizeBody};
use drover_sched::{ResizeDecision, ResizeRequest, TaskRange};
use drover_state::{Command, CommandResult, StateMachine};
use drover_types::{TaskId, parse_bytes, parse_cpus};
use std::sync::Arc;

/// The body's amounts, each parsed, or a 400 naming the field.
pub(crate) fn request_of(body: &ResizeBody) -> Result<ResizeRequest, ApiError> {
    if body.cpus.is_none() && body.memory.is_none() {
        return Err(ApiError::invalid(
            None,
            "name what to change: \"cpus\", \"memory\" or both",
        ));
    }
    let cpu_milli = body
        .cpus
        .as_deref()
        .map(parse_cpus)
        .transpose()
        .map_err(|e| ApiError::invalid(Some("cpus".into()), e.to_string()))?;
    let memory_bytes = body
        .memory
        .as_deref()
        .map(parse_bytes)
        .transpose()
        .map_err(|e| ApiError::invalid(Some("memory".into()), e.to_string()))?;
    Ok(ResizeRequest {
        cpu_milli,
        memory_bytes,
    })
}

/// The answer told to the task or the client, read from the state right after the
/// decision was applied.
pub(crate) fn answer_of(
    sm: &StateMachine,
    task: TaskId,
    decision: &ResizeDecision,
) -> ResizeAnswer {
    let sched = sm.scheduler();
    let held = || {
        sched
            .resized_reservation(task)
            .cloned()
            .or_else(|| sched.task(task).map(|v| v.spec.shared().resources.clone()))
            .unwrap_or_default()
    };
    match decision {
        ResizeDecision::Granted { resources } => ResizeAnswer {
            task,
            granted: true,
            resources: resources.clone(),
            reason: None,
        },
        ResizeDecision::Refused { refusal } => ResizeAnswer {
            task,
            granted: false,
            resources: held(),
            reason: Some(refusal.to_string()),
        },
    }
}

/// Changes the reservation of a running task's current attempt (dynamic resources):
/// granted at once when its worker has room beside its other reservations (the
/// worker's limits follow), refused otherwise; shrinking is always granted. Never
/// queued: ask again later. The same rights as cancelling it.
#[utoipa::path(
    post,
    path = "/v1/tasks/{task}/resize",
    tag = "tasks",
    params(("task" = String, Path, description = "The task's id, or its key")),
    request_body = ResizeBody,
    responses(
        (status = 200, description = "Granted: what the attempt holds now", body = ResizeAnswer),
        (status = 400, description = "A bad amount (the field is named)", body = drover_proto::api::ErrorBody),
        (status = 409, description = "Refused (no room on its worker; the message says how much is missing), or the task is not running", body = drover_proto::api::ErrorBody),
        Refused, NotFound, WriteRefused
    )
)]
pub async fn resize(
    State(node): State<Arc<Node>>,
    caller: Caller,
    PathParam(task): PathParam<String>,
    JsonBody(body): JsonBody<ResizeBody>,
) -> Result<Json<ResizeAnswer>, ApiError> {
    let request = request_of(&body)?;
    let id = {
        let sm = node.state.read();
        let id = resolve_one(&sm, &task, &node.config.retention)?;
        check_range(
            &sm,
            &caller,
            TaskRange {
                first: id,
                count: 1,
            },
            &format!("task {task:?}"),
        )?;
        if let Some(v) = sm.scheduler().task(id) {
            caller.check_cancel(sm.tokens().submitter(v.job), &format!("task {id}"))?;
        }
        id
    };
    let result = node
        .proposer
        .propose(Command::Resize {
            task: id,
            attempt: None,
            worker: None,
            request,
        })
        .await?;
    match result {
        CommandResult::Resized { decision } => {
            let answer = answer_of(&node.state.read(), id, &decision);
            match answer.reason {
                None => Ok(Json(answer)),
                Some(reason) => Err(ApiError::new(
                    StatusCode::CONFLICT,
                    "resize_refused",
                    reason,
                    None,
                )),
            }
        }
        CommandResult::Rejected(r) => Err(r.into()),
        other => Err(ApiError::internal(format!(
            "unexpected answer to a resize: {other:?}"
        ))),
    }
}
