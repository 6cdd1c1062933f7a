//! Submitting, reading, listing and cancelling tasks and jobs.

use super::error::ApiError;
use super::json::{DigestedJsonBody, NoBody, PathParam, QueryParams, id_param};
use super::openapi::{NotFound, Refused, TooLarge, WriteRefused};
use crate::auth::Caller;
use crate::node::Node;
use crate::retention::Retention;
use crate::sessions::LiveUsage;
use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use drover_proto::api::{
    AttemptInfo, CancelResponse, JobInfo, SplitInfo, SubmitResponse, TaskInfo, TaskList,
    TaskSummary,
};
use drover_sched::{CancelTarget, ResolveError, TaskRange, TaskView};
use drover_state::{Command, CommandResult, IdempotencyKey, StateMachine};
use drover_types::{DepRef, JobId, JobSpec, Millis, Outcome, TaskId, TaskSpec, TaskState};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::sync::Arc;

/// Submits one task. It becomes a job of one task, accepted once durable.
#[utoipa::path(
    post,
    path = "/v1/tasks",
    tag = "tasks",
    request_body = TaskSpec,
    params(IdempotencyHeader),
    responses(
        (status = 201, description = "Accepted: the job and the task's id", body = SubmitResponse, headers(("Idempotent-Replayed" = String, description = "`true` when this answers a retry: the Idempotency-Key was seen before, nothing new was submitted"))),
        Refused, TooLarge, WriteRefused
    )
)]
pub async fn submit_task(
    State(node): State<Arc<Node>>,
    caller: Caller,
    headers: HeaderMap,
    body: DigestedJsonBody<TaskSpec>,
) -> Result<(StatusCode, HeaderMap, Json<SubmitResponse>), ApiError> {
    let task = body.value;
    let job = JobSpec {
        name: task.name.clone(),
        owner: String::new(),
        tasks: vec![task],
    };
    let key = idempotency_key(&headers)?.map(|key| IdempotencyKey {
        key,
        // The route too: the same bytes posted as a task and as a job differ.
        fingerprint: body.digest ^ 1,
    });
    submit(&node, &caller, job, true, key).await
}

/// Submits a job: every task is accepted, or none (arrays, dependencies by key).
#[utoipa::path(
    post,
    path = "/v1/jobs",
    tag = "tasks",
    request_body = JobSpec,
    params(IdempotencyHeader),
    responses(
        (status = 201, description = "Accepted: the job and its tasks' consecutive ids", body = SubmitResponse, headers(("Idempotent-Replayed" = String, description = "`true` when this answers a retry: the Idempotency-Key was seen before, nothing new was submitted"))),
        Refused, TooLarge, WriteRefused
    )
)]
pub async fn submit_job(
    State(node): State<Arc<Node>>,
    caller: Caller,
    headers: HeaderMap,
    body: DigestedJsonBody<JobSpec>,
) -> Result<(StatusCode, HeaderMap, Json<SubmitResponse>), ApiError> {
    let key = idempotency_key(&headers)?.map(|key| IdempotencyKey {
        key,
        fingerprint: body.digest,
    });
    submit(&node, &caller, body.value, false, key).await
}

/// The `Idempotency-Key` request header of a submission.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Header)]
#[allow(dead_code)] // Only describes the header in the OpenAPI document.
struct IdempotencyHeader {
    /// A key the client chose for this submission (1 to 128 visible ASCII
    /// characters). Sent again with the same body, byte for byte (a retry after a lost
    /// answer), the
    /// submission is not repeated: the answer names the tasks the first one created. The
    /// same key with a different body is refused (409, field `Idempotency-Key`). A
    /// replayed answer carries the header `Idempotent-Replayed: true`. Keys are
    /// remembered for 24 hours or the last 50,000 keyed submissions, whichever is less.
    #[param(rename = "Idempotency-Key")]
    idempotency_key: Option<String>,
}

const IDEMPOTENCY_HEADER: &str = "idempotency-key";
/// On the answer to a retried submission (its key seen before).
const REPLAYED_HEADER: axum::http::HeaderName =
    axum::http::HeaderName::from_static("idempotent-replayed");

fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(value) = headers.get(IDEMPOTENCY_HEADER) else {
        return Ok(None);
    };
    let bad = |why: &str| ApiError::invalid(Some("Idempotency-Key".into()), why.to_string());
    let key = value
        .to_str()
        .map_err(|_| bad("the header must be visible ASCII characters"))?;
    if key.is_empty() || key.len() > drover_state::idempotency::KEY_MAX_LEN {
        return Err(bad(&format!(
            "the key must be 1 to {} characters long",
            drover_state::idempotency::KEY_MAX_LEN
        )));
    }
    if !key.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(bad(
            "the header must be visible ASCII characters, no spaces",
        ));
    }
    Ok(Some(key.to_string()))
}

pub(super) async fn submit(
    node: &Node,
    caller: &Caller,
    mut job: JobSpec,
    single: bool,
    idempotency: Option<IdempotencyKey>,
) -> Result<(StatusCode, HeaderMap, Json<SubmitResponse>), ApiError> {
    if let Some(ns) = &caller.namespace {
        force_owner(&mut job, ns, single)?;
    }
    // Validate before proposing, so that malformed input never reaches the log. The
    // core validates again when applying (it also knows the task table).
    if let Err(mut e) = drover_types::validate_job(&job, &node.config.limits) {
        if single {
            // A single task was wrapped in a job: report its own field path.
            e.field = e
                .field
                .strip_prefix("tasks[0].")
                .unwrap_or(&e.field)
                .to_string();
        }
        return Err(ApiError::invalid(Some(e.field), e.reason));
    }
    // The key goes into the log with a digest of the request body: every replica
    // dedupes the same way, and a retry with another body is told apart from a true
    // retry.
    match node
        .proposer
        .propose(Command::Submit {
            job,
            idempotency,
            submitter: caller.token,
            staged: None,
        })
        .await?
    {
        CommandResult::Submitted { job, tasks } => Ok((
            StatusCode::CREATED,
            HeaderMap::new(),
            Json(SubmitResponse {
                job,
                first: tasks.first,
                count: tasks.count as u64,
            }),
        )),
        CommandResult::Replayed { job, tasks } => {
            // The same answer as the first time; the header tells it was a retry.
            tracing::info!(%job, "answered a retried submission with its first answer (same Idempotency-Key)");
            let mut headers = HeaderMap::new();
            headers.insert(
                REPLAYED_HEADER,
                axum::http::HeaderValue::from_static("true"),
            );
            Ok((
                StatusCode::CREATED,
                headers,
                Json(SubmitResponse {
                    job,
                    first: tasks.first,
                    count: tasks.count as u64,
                }),
            ))
        }
        CommandResult::Rejected(mut r) => {
            if single && let Some(f) = &r.field {
                r.field = Some(f.strip_prefix("tasks[0].").unwrap_or(f).to_string());
            }
            Err(r.into())
        }
        other => Err(ApiError::internal(format!(
            "unexpected answer to a submission: {other:?}"
        ))),
    }
}

/// A namespace-scoped token submits with its namespace as the owner of the job and of
/// every task: an owner left empty becomes it, another one is refused (403), so the
/// token can never place work under someone else's name.
fn force_owner(job: &mut JobSpec, ns: &str, single: bool) -> Result<(), ApiError> {
    let refuse = |field: String| {
        ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!("this token submits only as the owner {ns:?}"),
            Some(field),
        )
    };
    if !job.owner.is_empty() && job.owner != ns {
        return Err(refuse("owner".into()));
    }
    job.owner = ns.to_string();
    for (i, task) in job.tasks.iter_mut().enumerate() {
        if !task.owner.is_empty() && task.owner != ns {
            return Err(refuse(if single {
                "owner".into()
            } else {
                format!("tasks[{i}].owner")
            }));
        }
        task.owner = ns.to_string();
    }
    Ok(())
}

/// 403 unless every task of `range` is within the caller's namespace.
pub(crate) fn check_range(
    sm: &StateMachine,
    caller: &Caller,
    range: TaskRange,
    what: &str,
) -> Result<(), ApiError> {
    if caller.namespace.is_none() {
        return Ok(());
    }
    for n in range.first.0..range.first.0 + range.count as u64 {
        if let Some(v) = sm.scheduler().task(TaskId(n)) {
            caller.check_owner(&v.spec.shared().owner, what)?;
        }
    }
    Ok(())
}

/// Resolves a task reference from a path: an id or a key naming a single task.
pub(crate) fn resolve_one(
    sm: &StateMachine,
    text: &str,
    keep: &Retention,
) -> Result<TaskId, ApiError> {
    let range = resolve(sm, text, keep)?;
    if range.count != 1 {
        return Err(ApiError::invalid(
            Some("task".into()),
            format!(
                "{text:?} names an array of {} tasks (ids {} to {}); ask for one of them",
                range.count,
                range.first,
                range.first.0 + range.count as u64 - 1
            ),
        ));
    }
    Ok(range.first)
}

/// An id, or `KEY` (the newest task with that key), `JOB_NAME/KEY` or `JOB_ID/KEY`.
/// An id (or `JOB_ID/KEY`) the cluster issued and no longer holds was retired: `410`.
pub(crate) fn resolve(
    sm: &StateMachine,
    text: &str,
    keep: &Retention,
) -> Result<TaskRange, ApiError> {
    let sched = sm.scheduler();
    sched.resolve(&DepRef::parse(text)).map_err(|e| match e {
        ResolveError::NoTask(id) if sched.task_retired(id) => ApiError::retired("task", id.0, keep),
        ResolveError::NoJob(job) if sched.job_retired(job) => ApiError::retired("job", job.0, keep),
        other => ApiError::not_found(other.to_string()),
    })
}

/// The job, or a 404 / 410 naming it.
fn held_job<'a>(
    sm: &'a StateMachine,
    job: JobId,
    keep: &Retention,
) -> Result<&'a drover_state::JobRecord, ApiError> {
    sm.job(job).ok_or_else(|| {
        if sm.scheduler().job_retired(job) {
            ApiError::retired("job", job.0, keep)
        } else {
            ApiError::not_found(format!("no job {job}"))
        }
    })
}

fn worker_name(sm: &StateMachine, w: drover_types::WorkerId) -> String {
    sm.scheduler()
        .worker(w)
        .map(|v| v.spec.name.clone())
        .unwrap_or_else(|| w.to_string())
}

/// While placed, where a task runs; once over, where its last attempt ran.
fn shown_worker(sm: &StateMachine, view: &TaskView<'_>) -> Option<String> {
    view.worker
        .or_else(|| view.attempts.last().map(|a| a.worker))
        .map(|w| worker_name(sm, w))
}

fn exit_of(outcome: Option<&Outcome>) -> (Option<i32>, Option<i32>) {
    match outcome {
        Some(Outcome::Exited { code }) => (Some(*code), None),
        Some(Outcome::Signaled { signal }) => (None, Some(*signal)),
        _ => (None, None),
    }
}

pub(crate) fn task_info(
    sm: &StateMachine,
    view: &TaskView<'_>,
    now: Millis,
    live: &LiveUsage,
) -> TaskInfo {
    let record = sm.record(view.id);
    let last = view.attempts.last();
    let outcome = last.and_then(|a| a.outcome.clone());
    let (exit_code, signal) = exit_of(outcome.as_ref());
    let usage_of =
        |attempt| record.and_then(|r| r.usage.iter().find(|(a, _)| *a == attempt).map(|(_, u)| *u));
    let duration_ms = view
        .started_at
        .map(|s| view.ended_at.unwrap_or(now).saturating_sub(s));
    TaskInfo {
        id: view.id,
        job: view.job,
        key: view.spec.key().map(str::to_owned),
        name: view.spec.name().to_owned(),
        state: view.state,
        reason: sm.scheduler().pending_reason(view.id, now),
        placement: sm.scheduler().placement_note(view.id),
        attempt: view.attempt,
        max_attempts: view.spec.shared().retry.max_attempts,
        worker: shown_worker(sm, view),
        submitted_at: view.submitted_at,
        started_at: view.started_at,
        ended_at: view.ended_at,
        duration_ms,
        exit_code,
        signal,
        // The final figures once an attempt ended; while it runs, the latest sample.
        usage: last.and_then(|a| usage_of(a.attempt).or_else(|| live.get(view.id, a.attempt))),
        outcome,
        result: record.and_then(|r| r.result.clone()),
        array_index: view.array_index,
        array_count: view.array_count,
        range_start: view.slice.map(|s| s.0),
        range_end: view.slice.map(|s| s.1),
        deps: view.deps.to_vec(),
        // Secret env values reach the worker only; a read shows their names.
        spec: view.spec.to_spec().redacted(),
        attempts: view
            .attempts
            .iter()
            .map(|a| AttemptInfo {
                attempt: a.attempt,
                worker: a.worker,
                worker_name: worker_name(sm, a.worker),
                assigned_at: a.assigned_at,
                started_at: a.started_at,
                ended_at: a.ended_at,
                outcome: a.outcome.clone(),
                failure: a.failure.clone(),
                usage: usage_of(a.attempt),
                resumed_from: record.and_then(|r| {
                    r.resumed
                        .iter()
                        .find(|(at, _)| *at == a.attempt)
                        .map(|(_, c)| c.clone())
                }),
                gpus: a.gpus.clone(),
            })
            .collect(),
        cached_from: sm.cache().served_from(view.id),
        cache_key: sm.cache().key_of(view.id).map(str::to_string),
        checkpoint: record.and_then(|r| r.checkpoint.clone()),
        effective_priority: sm.scheduler().effective_priority(view.id, now),
        reserved: sm.scheduler().resized_reservation(view.id).cloned(),
        resizes: sm
            .scheduler()
            .resize_history(view.id)
            .iter()
            .map(|r| drover_proto::api::ResizeInfo {
                at: r.at,
                attempt: r.attempt,
                cpu_milli: r.request.cpu_milli,
                memory_bytes: r.request.memory_bytes,
                granted: r.decision.is_granted(),
                reason: match &r.decision {
                    drover_sched::ResizeDecision::Refused { refusal } => Some(refusal.to_string()),
                    drover_sched::ResizeDecision::Granted { .. } => None,
                },
            })
            .collect(),
    }
}

fn summary(sm: &StateMachine, view: &TaskView<'_>) -> TaskSummary {
    let (exit_code, _) = exit_of(view.attempts.last().and_then(|a| a.outcome.as_ref()));
    TaskSummary {
        id: view.id,
        job: view.job,
        key: view.spec.key().map(str::to_owned),
        name: view.spec.name().to_owned(),
        state: view.state,
        priority: view.spec.shared().priority,
        attempt: view.attempt,
        worker: shown_worker(sm, view),
        submitted_at: view.submitted_at,
        started_at: view.started_at,
        ended_at: view.ended_at,
        exit_code,
        cached_from: sm.cache().served_from(view.id),
    }
}

/// One task by id or key: state, why, attempts, times, result.
#[utoipa::path(
    get,
    path = "/v1/tasks/{task}",
    tag = "tasks",
    params(("task" = String, Path, description = "The task's id, or its key")),
    responses((status = 200, description = "The task", body = TaskInfo), Refused, NotFound)
)]
pub async fn get(
    State(node): State<Arc<Node>>,
    caller: Caller,
    PathParam(task): PathParam<String>,
) -> Result<Json<TaskInfo>, ApiError> {
    // The log's clock (monotonic, anchored once), which stamped `started_at`: a
    // running task's duration and a backoff's remaining time stay right when the wall
    // clock is stepped. (Read before the state lock: it takes it too.)
    let now = node.proposer.now();
    let sm = node.state.read();
    let id = resolve_one(&sm, &task, &node.config.retention)?;
    let view = sm
        .scheduler()
        .task(id)
        .ok_or_else(|| ApiError::not_found(format!("no task {task:?}")))?;
    caller.check_owner(&view.spec.shared().owner, &format!("task {id}"))?;
    Ok(Json(task_info(&sm, &view, now, &node.sessions.live_usage)))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Only tasks in these states (comma-separated: `running,ready`).
    #[param(
        pattern = "^ *(waiting|ready|backoff|assigned|running|succeeded|failed|timed[_-]out|cancelled|dependency[_-]failed) *(, *(waiting|ready|backoff|assigned|running|succeeded|failed|timed[_-]out|cancelled|dependency[_-]failed) *)*$"
    )]
    state: Option<String>,
    /// Only the tasks of this job.
    #[param(maximum = 18446744073709551615_u64)]
    job: Option<u64>,
    /// Only tasks with this name.
    name: Option<String>,
    /// Only tasks with this label (`key=value`).
    #[param(pattern = "=")]
    label: Option<String>,
    /// Tasks per page, 1 to 1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<usize>,
    /// Where to go on from: a previous page's `next_cursor`.
    #[param(pattern = "^[+]?[0-9]{1,19}$")]
    cursor: Option<String>,
}

const MAX_PAGE: usize = 1000;
/// Most tasks one list request looks at (see `list`).
const MAX_SCAN: usize = 100_000;

/// Lists tasks in id order, a page at a time, with filters.
#[utoipa::path(
    get,
    path = "/v1/tasks",
    tag = "tasks",
    params(ListQuery),
    responses((status = 200, description = "A page of tasks", body = TaskList), Refused, NotFound)
)]
pub async fn list(
    State(node): State<Arc<Node>>,
    caller: Caller,
    QueryParams(q): QueryParams<ListQuery>,
) -> Result<Json<TaskList>, ApiError> {
    let limit = q.limit.unwrap_or(100);
    if limit == 0 || limit > MAX_PAGE {
        return Err(ApiError::invalid(
            Some("limit".into()),
            format!("must be between 1 and {MAX_PAGE}"),
        ));
    }
    let states: Option<Vec<TaskState>> = match &q.state {
        None => None,
        Some(text) => Some(
            text.split(',')
                .map(|s| {
                    TaskState::parse(s).ok_or_else(|| {
                        ApiError::invalid(
                            Some("state".into()),
                            format!("{s:?} is not a task state"),
                        )
                    })
                })
                .collect::<Result<_, _>>()?,
        ),
    };
    let label = match &q.label {
        None => None,
        Some(l) => Some(
            l.split_once('=')
                .ok_or_else(|| ApiError::invalid(Some("label".into()), "use key=value"))?,
        ),
    };
    let mut after: Option<TaskId> = match &q.cursor {
        None => None,
        Some(c) => Some(TaskId(c.parse().map_err(|_| {
            ApiError::invalid(Some("cursor".into()), "not a cursor from a previous page")
        })?)),
    };
    let sm = node.state.read();
    let mut end: Option<TaskId> = None;
    if let Some(job) = q.job {
        let record = held_job(&sm, JobId(job), &node.config.retention)?;
        let before_first = TaskId(record.first.0 - 1);
        after = Some(after.map_or(before_first, |a| a.max(before_first)));
        end = Some(TaskId(record.first.0 + record.count as u64 - 1));
    }
    let mut tasks = Vec::new();
    let mut next_cursor = None;
    for (scanned, view) in sm.scheduler().tasks_after(after).enumerate() {
        if end.is_some_and(|e| view.id > e) {
            break;
        }
        // A page never costs more than MAX_SCAN rows of work, however sparse the
        // filter: past that, the page ends early with a cursor to go on from.
        if tasks.len() == limit || scanned == MAX_SCAN {
            next_cursor = Some(TaskId(view.id.0 - 1).0.to_string());
            break;
        }
        if states.as_ref().is_some_and(|s| !s.contains(&view.state)) {
            continue;
        }
        if q.name.as_ref().is_some_and(|n| view.spec.name() != n) {
            continue;
        }
        // A namespace-scoped token lists only its namespace's tasks.
        if !caller.sees(&view.spec.shared().owner) {
            continue;
        }
        if let Some((k, v)) = label
            && view.spec.shared().labels.get(k).map(String::as_str) != Some(v)
        {
            continue;
        }
        tasks.push(summary(&sm, &view));
    }
    Ok(Json(TaskList { tasks, next_cursor }))
}

/// Cancels a task (or every element of an array key). Takes no body (or `{}`).
#[utoipa::path(
    post,
    path = "/v1/tasks/{task}/cancel",
    tag = "tasks",
    params(("task" = String, Path, description = "The task's id, or its key")),
    responses(
        (status = 200, description = "How many tasks were cancelled", body = CancelResponse),
        Refused, NotFound, WriteRefused
    )
)]
pub async fn cancel(
    State(node): State<Arc<Node>>,
    caller: Caller,
    PathParam(task): PathParam<String>,
    _: NoBody,
) -> Result<Json<CancelResponse>, ApiError> {
    let range = {
        let sm = node.state.read();
        let range = resolve(&sm, &task, &node.config.retention)?;
        check_range(&sm, &caller, range, &format!("task {task:?}"))?;
        // "Cancel own": every task named must be of a job this token submitted.
        for n in range.first.0..range.first.0 + range.count as u64 {
            if let Some(v) = sm.scheduler().task(TaskId(n)) {
                caller.check_cancel(sm.tokens().submitter(v.job), &format!("task {n}"))?;
            }
        }
        range
    };
    let commands: Vec<Command> = (0..range.count as u64)
        .map(|i| Command::Cancel {
            target: CancelTarget::Task(TaskId(range.first.0 + i)),
        })
        .collect();
    let results = node.proposer.propose_all(commands).await?;
    let mut cancelled = 0;
    let mut last_rejection = None;
    for r in results {
        match r {
            CommandResult::Cancelled { count } => cancelled += count,
            CommandResult::Rejected(r) => last_rejection = Some(r),
            _ => {}
        }
    }
    match (cancelled, last_rejection) {
        (0, Some(r)) => Err(r.into()),
        _ => Ok(Json(CancelResponse { cancelled })),
    }
}

/// Cancels every unfinished task of a job. Takes no body (or `{}`).
#[utoipa::path(
    post,
    path = "/v1/jobs/{job}/cancel",
    tag = "tasks",
    params(("job" = u64, Path, maximum = 18446744073709551615_u64, description = "The job's id")),
    responses(
        (status = 200, description = "How many tasks were cancelled", body = CancelResponse),
        Refused, NotFound, WriteRefused
    )
)]
pub async fn cancel_job(
    State(node): State<Arc<Node>>,
    caller: Caller,
    PathParam(job): PathParam<String>,
    _: NoBody,
) -> Result<Json<CancelResponse>, ApiError> {
    let job = id_param("job", &job, u64::MAX)?;
    {
        let sm = node.state.read();
        let record = held_job(&sm, JobId(job), &node.config.retention)?;
        let range = TaskRange {
            first: record.first,
            count: record.count,
        };
        check_range(&sm, &caller, range, &format!("job {job}"))?;
        caller.check_cancel(sm.tokens().submitter(JobId(job)), &format!("job {job}"))?;
    }
    match node
        .proposer
        .propose(Command::Cancel {
            target: CancelTarget::Job(JobId(job)),
        })
        .await?
    {
        CommandResult::Cancelled { count } => Ok(Json(CancelResponse { cancelled: count })),
        CommandResult::Rejected(r) => Err(r.into()),
        other => Err(ApiError::internal(format!(
            "unexpected answer to a cancellation: {other:?}"
        ))),
    }
}

/// A job: its tasks per state.
#[utoipa::path(
    get,
    path = "/v1/jobs/{job}",
    tag = "tasks",
    params(("job" = u64, Path, maximum = 18446744073709551615_u64, description = "The job's id")),
    responses((status = 200, description = "The job", body = JobInfo), Refused, NotFound)
)]
pub async fn get_job(
    State(node): State<Arc<Node>>,
    caller: Caller,
    PathParam(job): PathParam<String>,
) -> Result<Json<JobInfo>, ApiError> {
    let job = id_param("job", &job, u64::MAX)?;
    let sm = node.state.read();
    let record = held_job(&sm, JobId(job), &node.config.retention)?;
    let range = TaskRange {
        first: record.first,
        count: record.count,
    };
    check_range(&sm, &caller, range, &format!("job {job}"))?;
    // Counts the core keeps per job: O(1), not a visit of every task under the lock
    // (a CLI waiting on a job of a million tasks asks after every entry).
    let states: BTreeMap<TaskState, u64> = sm
        .scheduler()
        .job_states(JobId(job))
        .unwrap_or_default()
        .into_iter()
        .collect();
    let finished = states.keys().all(|s| s.is_final());
    let succeeded = finished && states.keys().all(|s| *s == TaskState::Succeeded);
    Ok(Json(JobInfo {
        id: JobId(job),
        name: record.name.clone(),
        first: record.first,
        count: record.count as u64,
        states,
        finished,
        succeeded,
        splits: sm
            .scheduler()
            .splits_in(record.first, record.count)
            .iter()
            .map(|v| split_info(sm.scheduler(), v))
            .collect(),
    }))
}

fn split_info(sched: &drover_sched::Scheduler, v: &drover_sched::SplitView<'_>) -> SplitInfo {
    let r = v.record;
    SplitInfo {
        key: sched
            .task(r.first)
            .and_then(|t| t.spec.key().map(str::to_owned)),
        first: r.first,
        slots: r.slots,
        range_start: r.start,
        range_end: r.end,
        chunks: r
            .fixed
            .map_or_else(|| "auto".to_string(), |n| n.to_string()),
        chunk_duration_ms: r.fixed.is_none().then(|| r.spec().target_ms()),
        wave: r.wave,
        covered: v.covered,
        total: r.len(),
        chunks_created: r.chunks.len() as u32,
        chunks_succeeded: v.succeeded,
        chunk_sizes: r.chunks.iter().map(|(a, b)| b - a + 1).collect(),
        items_per_second: (r.done_items as u128 * 1000 / r.done_ms.max(1) as u128)
            .try_into()
            .unwrap_or(u64::MAX),
        stopped: r.stopped,
    }
}
