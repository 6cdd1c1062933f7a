//! Reading a task's output, from an offset, optionally following it live.

use super::error::ApiError;
use super::json::{PathParam, QueryParams};
use super::openapi::{NotFound, Refused};
use crate::node::Node;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::Response;
use drover_proto::worker::OutputStream;
use drover_types::Attempt;
use serde::Deserialize;
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct OutputQuery {
    /// `stdout` (default) or `stderr`.
    #[param(pattern = "^(stdout|stderr)$")]
    stream: Option<String>,
    /// Which attempt, from 1 (default: the latest).
    #[param(minimum = 1, maximum = 4294967295_u64)]
    attempt: Option<u32>,
    /// The byte offset to read from (default 0).
    #[param(maximum = 18446744073709551615_u64)]
    offset: Option<u64>,
    /// Keep the response open and stream new output until the attempt ends.
    follow: Option<bool>,
}

const CHUNK: usize = 1 << 20;
const MAX_RESPONSE: usize = 16 << 20;
/// Followers wake when output is appended or the state changes; this is a backstop.
const FOLLOW_BACKSTOP: Duration = Duration::from_secs(2);

/// A task's output (stdout or stderr) from an offset, up to 16 MiB at a time; with
/// `follow=true`, streamed until the attempt ends.
#[utoipa::path(
    get,
    path = "/v1/tasks/{task}/output",
    tag = "tasks",
    params(("task" = String, Path, description = "The task's id, or its key"), OutputQuery),
    responses(
        (status = 200, description = "The output bytes", content_type = "application/octet-stream", body = String,
            headers(
                ("x-drover-output-length" = u64, description = "Bytes of output stored so far (not when following)"),
                ("x-drover-next-offset" = u64, description = "The offset to read from next (not when following)"),
            )),
        Refused, NotFound
    )
)]
pub async fn read(
    State(node): State<Arc<Node>>,
    caller: crate::auth::Caller,
    PathParam(task): PathParam<String>,
    QueryParams(q): QueryParams<OutputQuery>,
) -> Result<Response, ApiError> {
    let stream = match q.stream.as_deref() {
        None | Some("stdout") => OutputStream::Stdout,
        Some("stderr") => OutputStream::Stderr,
        Some(other) => {
            return Err(ApiError::invalid(
                Some("stream".into()),
                format!("{other:?} is not a stream: use stdout or stderr"),
            ));
        }
    };
    let (id, attempt, over) = {
        let sm = node.state.read();
        let range = super::tasks::resolve(&sm, &task, &node.config.retention)?;
        if range.count != 1 {
            return Err(ApiError::invalid(
                Some("task".into()),
                format!("{task:?} names an array; ask for one task"),
            ));
        }
        let view = sm
            .scheduler()
            .task(range.first)
            .ok_or_else(|| ApiError::not_found(format!("no task {task:?}")))?;
        caller.check_owner(&view.spec.shared().owner, &format!("task {}", view.id))?;
        // A task completed from the result cache ran nothing: its output is the
        // output of the run that made the entry (same owner: keys never cross owners).
        if q.attempt.is_none()
            && let Some(origin) = sm.cache().served_from(view.id)
            && let Some(ov) = sm.scheduler().task(origin)
        {
            (origin, ov.attempt, attempt_over(&ov, ov.attempt))
        } else {
            let attempt = match q.attempt {
                Some(0) => {
                    return Err(ApiError::invalid(
                        Some("attempt".into()),
                        "attempts are numbered from 1",
                    ));
                }
                // A well-formed number naming an attempt that does not exist (yet).
                Some(a) if a > view.attempt.0 => {
                    return Err(ApiError::new(
                        axum::http::StatusCode::NOT_FOUND,
                        "not_found",
                        format!("task {} has attempts 1 to {}", view.id, view.attempt.0),
                        Some("attempt".into()),
                    ));
                }
                Some(a) => Attempt(a),
                None => view.attempt,
            };
            (range.first, attempt, attempt_over(&view, attempt))
        }
    };
    let offset = q.offset.unwrap_or(0);
    let mut builder = Response::builder().header(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    if !q.follow.unwrap_or(false) {
        if over {
            repair(&node, id, attempt, stream).await;
        }
        let (data, len) = read_off_thread(&node, id, attempt, stream, offset, MAX_RESPONSE, over)
            .await
            .map_err(|e| ApiError::internal(format!("could not read the output: {e}")))?;
        let next = offset + data.len() as u64;
        builder = builder
            .header("x-drover-output-length", len)
            .header("x-drover-next-offset", next);
        return builder
            .body(Body::from(data))
            .map_err(|e| ApiError::internal(e.to_string()));
    }
    // Following a task that has not started yet waits for its first attempt.
    let pinned = q.attempt.is_some();
    let follower = Follower {
        output: node.output.subscribe(),
        events: node.state.events().subscribe(),
        node,
        attempt,
        offset,
        done: false,
        repaired: false,
    };
    let body = futures_util::stream::unfold(follower, move |mut f| async move {
        if f.done {
            return None;
        }
        loop {
            // Seen before reading: an append after the read wakes the wait below.
            f.output.borrow_and_update();
            f.events.borrow_and_update();
            // Once the attempt is over (and repaired), the archive may hold more.
            let read =
                read_off_thread(&f.node, id, f.attempt, stream, f.offset, CHUNK, f.repaired).await;
            let (data, _) = match read {
                Ok(r) => r,
                Err(e) => {
                    f.done = true;
                    return Some((Err(e), f));
                }
            };
            if !data.is_empty() {
                f.offset += data.len() as u64;
                return Some((Ok::<_, std::io::Error>(data), f));
            }
            // Nothing new: stop once this attempt is over (its output all arrived
            // before its end was recorded), else wait for more.
            let (current, over) = {
                let sm = f.node.state.read();
                match sm.scheduler().task(id) {
                    None => (f.attempt, true),
                    Some(v) => (
                        v.attempt,
                        v.attempt != f.attempt
                            || v.state.is_final()
                            || (f.attempt.0 > 0 && !v.state.is_on_worker()),
                    ),
                }
            };
            if over && !pinned && f.attempt.0 == 0 && current.0 > 0 {
                f.attempt = current;
                f.offset = 0;
                continue;
            }
            if over && !f.repaired {
                // Before ending, take what peers hold that this server lacks (and read
                // on): a follower may have missed frames the leader sent.
                f.repaired = true;
                repair(&f.node, id, f.attempt, stream).await;
                continue;
            }
            if over {
                return None;
            }
            tokio::select! {
                _ = f.output.changed() => {}
                _ = f.events.changed() => {}
                _ = tokio::time::sleep(FOLLOW_BACKSTOP) => {}
            }
        }
    });
    builder
        .body(Body::from_stream(body))
        .map_err(|e| ApiError::internal(e.to_string()))
}

/// One follower of a task's output.
struct Follower {
    node: Arc<Node>,
    output: tokio::sync::watch::Receiver<u64>,
    events: tokio::sync::watch::Receiver<drover_proto::events::EventId>,
    attempt: Attempt,
    offset: u64,
    done: bool,
    /// Whether this server's copy was made whole from its peers once the attempt ended.
    repaired: bool,
}

/// Whether `attempt` of the task can produce no more output.
fn attempt_over(view: &drover_sched::TaskView, attempt: Attempt) -> bool {
    view.attempt != attempt || view.state.is_final() || !view.state.is_on_worker()
}

/// Makes this server's copy of an ended attempt's stream whole from its peers; a
/// failure is logged and the local copy served (it is what this server has).
async fn repair(node: &Node, task: drover_types::TaskId, attempt: Attempt, stream: OutputStream) {
    if let Err(e) = crate::output_repair::complete_from_peers(node, task, attempt, stream).await {
        tracing::warn!(%task, %attempt, "could not complete the output from the peers: {e}");
    }
}

/// Reads a stored stream on the blocking pool: a file read (a disk that stalls, a page
/// cache miss) must not hold up the async threads that serve every other request.
/// For an `ended` attempt, the object store's copy (`--object-store`) is read instead
/// when it holds more than this server's (see `crate::output_archive`).
async fn read_off_thread(
    node: &Node,
    task: drover_types::TaskId,
    attempt: Attempt,
    stream: OutputStream,
    offset: u64,
    max: usize,
    ended: bool,
) -> std::io::Result<(Vec<u8>, u64)> {
    let output = node.output.clone();
    let local =
        tokio::task::spawn_blocking(move || output.read(task, attempt, stream, offset, max))
            .await
            .unwrap_or_else(|e| Err(std::io::Error::other(e)))?;
    let Some(archive) = node.archive.as_ref().filter(|_| ended) else {
        return Ok(local);
    };
    match archive
        .read_if_longer(task, attempt, stream, local.1, offset, max)
        .await
    {
        Ok(Some(archived)) => Ok(archived),
        Ok(None) => Ok(local),
        Err(e) => {
            // This server's copy is what it has: serve it, and say why it may be short.
            tracing::warn!(%task, %attempt, "could not read the archived output: {e}");
            Ok(local)
        }
    }
}
