//! `GET /v1/events`: the cluster's events as server-sent events.
//!
//! Each event is sent with `id: <index>-<n>` (see `drover_proto::events`), `event:` its
//! type and `data:` its JSON. A client resumes after an id with the `Last-Event-ID`
//! header (what browsers send on reconnecting) or `?since=`; while the events after it
//! are retained it gets every one of them, once. When they are not (the id is older than
//! this server's buffer, or the client read too slowly and the buffer moved past it) it
//! gets an `event: reset` naming what was dropped, then the stream goes on from the
//! oldest retained event: never a silent gap. The stream opens with an `event: open`
//! whose data is the position it starts from, and idle streams get a comment every
//! few seconds.

use super::error::ApiError;
use super::openapi::Refused;
use crate::node::Node;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::IntoResponse;
use axum::response::sse::{Event, KeepAlive, Sse};
use drover_proto::events::{ClusterEvent, EVENT_KINDS, EventBody, EventId, ResetNotice};
use drover_types::{JobId, TaskId, WorkerId};
use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

/// The query of `GET /v1/events`. Each filter takes one value, several separated by
/// commas, or is repeated; an event passes when it matches every filter given (and one
/// of the values of each).
#[derive(Debug, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)] // Documents the query; the handler reads it by hand (repeats).
pub struct EventsQuery {
    /// Only events of these jobs (task and job events).
    job: Option<String>,
    /// Only events of these tasks (ids, keys, `JOB/KEY`; an array's key names all its
    /// elements).
    task: Option<String>,
    /// Only events of these workers (`w3`, `3` or a name): worker events and the task
    /// events of attempts on them.
    worker: Option<String>,
    /// Only these kinds: `task`, `worker`, `job`, `policy`.
    #[param(rename = "type")]
    kind: Option<String>,
    /// Resume after this event id (`INDEX-N`); the `Last-Event-ID` header wins.
    since: Option<String>,
}

/// Which events a client wants.
#[derive(Debug, Default)]
struct Filter {
    jobs: Vec<JobId>,
    tasks: Vec<(TaskId, u64)>,
    workers: Vec<WorkerId>,
    kinds: Vec<&'static str>,
    /// A namespace-scoped token's namespace: only task and job events of its tasks.
    namespace: Option<String>,
}

impl Filter {
    fn pass(&self, e: &ClusterEvent) -> bool {
        if !self.kinds.is_empty() && !self.kinds.contains(&e.body.kind()) {
            return false;
        }
        let (job, task, worker) = match &e.body {
            EventBody::Task {
                task, job, worker, ..
            } => (Some(*job), Some(*task), *worker),
            EventBody::Job { job, .. } => (Some(*job), None, None),
            EventBody::Worker { worker, .. } => (None, None, Some(*worker)),
            EventBody::Policy { .. } | EventBody::Leader { .. } => (None, None, None),
        };
        fn ok<T: PartialEq>(wanted: &[T], have: Option<T>) -> bool {
            wanted.is_empty() || have.is_some_and(|h| wanted.contains(&h))
        }
        ok(&self.jobs, job)
            && ok(&self.workers, worker)
            && (self.tasks.is_empty()
                || task.is_some_and(|t| {
                    self.tasks
                        .iter()
                        .any(|(first, n)| t.0 >= first.0 && t.0 < first.0 + n)
                }))
    }
}

/// Whether a namespace-scoped token may see `e`: task and job events of tasks of its
/// owner (looked up now; a task retired since is not shown). Worker, policy and leader
/// events are cluster-wide and not shown.
fn in_namespace(sm: &drover_state::StateMachine, ns: &str, e: &ClusterEvent) -> bool {
    let task = match &e.body {
        EventBody::Task { task, .. } => *task,
        EventBody::Job { job, .. } => match sm.job(*job) {
            Some(rec) => rec.first,
            None => return false,
        },
        _ => return false,
    };
    sm.scheduler()
        .task(task)
        .is_some_and(|v| v.spec.shared().owner == ns)
}

fn parse(
    node: &Node,
    query: &str,
    headers: &HeaderMap,
) -> Result<(Filter, Option<EventId>), ApiError> {
    let mut f = Filter::default();
    let mut since = None;
    for (k, v) in form_urlencoded::parse(query.as_bytes()) {
        let values = v.split(',').map(str::trim).filter(|s| !s.is_empty());
        let field = Some(k.to_string());
        match k.as_ref() {
            "job" => {
                for t in values {
                    let n = t.parse::<u64>().map_err(|_| {
                        ApiError::invalid(field.clone(), format!("{t:?} is not a job id"))
                    })?;
                    f.jobs.push(JobId(n));
                }
            }
            "task" => {
                let sm = node.state.read();
                for t in values {
                    let r = match super::tasks::resolve(&sm, t, &node.config.retention) {
                        Ok(r) => (r.first, r.count as u64),
                        // A task not submitted yet may be named by its id.
                        Err(e) => (TaskId(t.parse::<u64>().map_err(|_| e)?), 1),
                    };
                    f.tasks.push(r);
                }
            }
            "worker" => {
                for t in values {
                    let id = match super::cluster::worker_of(node, t) {
                        Ok(w) => w,
                        // A worker that has not joined yet may be named by its id.
                        Err(e) => t
                            .strip_prefix('w')
                            .unwrap_or(t)
                            .parse::<u32>()
                            .map(WorkerId)
                            .map_err(|_| e)?,
                    };
                    f.workers.push(id);
                }
            }
            "type" => {
                for t in values {
                    let kind = EVENT_KINDS.iter().find(|k| **k == t).ok_or_else(|| {
                        ApiError::invalid(
                            field.clone(),
                            format!("{t:?} is not an event type: use {}", EVENT_KINDS.join(", ")),
                        )
                    })?;
                    f.kinds.push(kind);
                }
            }
            "since" => {
                since = Some(
                    v.parse::<EventId>()
                        .map_err(|e| ApiError::invalid(field, e.to_string()))?,
                );
            }
            other => {
                return Err(ApiError::invalid(
                    Some(other.to_string()),
                    "unknown query parameter; expected one of job, task, worker, type, since",
                ));
            }
        }
    }
    if let Some(h) = headers.get("last-event-id") {
        let text = h.to_str().unwrap_or("");
        since = Some(
            text.parse::<EventId>()
                .map_err(|e| ApiError::invalid(Some("Last-Event-ID".into()), e.to_string()))?,
        );
    }
    Ok((f, since))
}

/// At most this many events are copied from the buffer at a time.
const BATCH: usize = 256;
/// A comment this often on an idle stream keeps proxies and clients from timing out.
const HEARTBEAT: Duration = Duration::from_secs(10);

/// The cluster's events, live, as server-sent events (`text/event-stream`).
#[utoipa::path(
    get,
    path = "/v1/events",
    tag = "cluster",
    params(
        EventsQuery,
        ("Last-Event-ID" = Option<String>, Header, description = "Resume after this event id (as `since`)"),
    ),
    responses(
        (status = 200, description = "A stream of server-sent events: `open` first (data: \
            `{\"position\": ID}`), then one per cluster event (`id: INDEX-N`, `event:` task, \
            worker, job or policy, `data:` the event as JSON), and `reset` (data: `{\"after\", \
            \"dropped_through\", \"message\"}`) when events after the client's position are \
            no longer retained", content_type = "text/event-stream", body = String),
        Refused
    )
)]
pub async fn stream(
    State(node): State<Arc<Node>>,
    caller: crate::auth::Caller,
    headers: HeaderMap,
    uri: axum::http::Uri,
) -> Result<impl IntoResponse, ApiError> {
    let (mut filter, since) = parse(&node, uri.query().unwrap_or(""), &headers)?;
    filter.namespace = caller.namespace;
    let rx = node.state.events().subscribe();
    let pos = since.unwrap_or_else(|| node.state.events().position());
    let opened = Event::default()
        .event("open")
        .json_data(serde_json::json!({ "position": pos }))
        .map_err(|e| ApiError::internal(e.to_string()))?;
    let state = Reader {
        _counted: node.state.metrics().event_client(),
        node,
        filter,
        pos,
        rx,
        pending: VecDeque::new(),
        batch: Vec::new(),
    };
    let first = futures_util::stream::iter([Ok::<_, Infallible>(opened)]);
    let rest = futures_util::stream::unfold(state, |mut r| async move {
        let e = r.next().await?;
        Some((Ok::<_, Infallible>(e), r))
    });
    use futures_util::StreamExt;
    Ok(Sse::new(first.chain(rest)).keep_alive(KeepAlive::new().interval(HEARTBEAT)))
}

/// One client's position in the buffer.
struct Reader {
    /// Counts this stream in `drover_event_stream_clients` while it is open.
    _counted: crate::metrics::EventClientGuard,
    node: Arc<Node>,
    filter: Filter,
    pos: EventId,
    rx: tokio::sync::watch::Receiver<EventId>,
    pending: VecDeque<Arc<ClusterEvent>>,
    batch: Vec<Arc<ClusterEvent>>,
}

impl Reader {
    /// The next message for this client; `None` when the server shuts down.
    async fn next(&mut self) -> Option<Event> {
        loop {
            if let Some(e) = self.pending.pop_front() {
                match Event::default()
                    .id(e.id.to_string())
                    .event(e.body.kind())
                    .json_data(&*e)
                {
                    Ok(ev) => return Some(ev),
                    Err(err) => {
                        tracing::warn!("could not encode event {}: {err}", e.id);
                        continue;
                    }
                }
            }
            // Mark the current version seen before reading, so that nothing published
            // after the read is missed.
            self.rx.borrow_and_update();
            self.batch.clear();
            let read = self
                .node
                .state
                .events()
                .read_after(self.pos, BATCH, &mut self.batch);
            match read {
                Err(behind) => {
                    let notice = ResetNotice {
                        after: self.pos,
                        dropped_through: behind.dropped_through,
                        message: format!(
                            "events after {} up to {} are no longer retained by this server; \
                             continuing from the oldest retained",
                            self.pos, behind.dropped_through
                        ),
                    };
                    self.pos = behind.dropped_through;
                    return Event::default()
                        .id(self.pos.to_string())
                        .event("reset")
                        .json_data(&notice)
                        .ok();
                }
                Ok(()) if self.batch.is_empty() => {
                    if self.rx.changed().await.is_err() {
                        return None;
                    }
                }
                Ok(()) => {
                    if let Some(last) = self.batch.last() {
                        self.pos = last.id;
                    }
                    let filter = &self.filter;
                    match &filter.namespace {
                        None => self
                            .pending
                            .extend(self.batch.drain(..).filter(|e| filter.pass(e))),
                        Some(ns) => {
                            // One look at the state per batch, not per event.
                            let sm = self.node.state.read();
                            self.pending.extend(
                                self.batch
                                    .drain(..)
                                    .filter(|e| filter.pass(e) && in_namespace(&sm, ns, e)),
                            );
                        }
                    }
                }
            }
        }
    }
}
