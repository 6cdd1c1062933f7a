//! `GET /metrics`: Prometheus text format, behind the cluster token like the rest of the
//! API (Prometheus sends it with `authorization: {type: Bearer, credentials_file: …}`).
//! Not part of the OpenAPI document: it is not JSON and is read by Prometheus, not by
//! API clients. Also the middleware timing every request by route.

use crate::metrics::{RaftPosition, WorkerSample};
use crate::node::Node;
use axum::extract::{MatchedPath, Request, State};
use axum::http::header::CONTENT_TYPE;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::sync::Arc;
use std::time::Instant;

pub const PATH: &str = "/metrics";

pub async fn scrape(State(node): State<Arc<Node>>) -> Response {
    let raft = {
        let m = node.raft.metrics().borrow().clone();
        RaftPosition {
            term: m.current_term,
            leader: m.current_leader.unwrap_or(0),
            is_leader: m.current_leader == Some(node.config.node_id),
            last_log: m.last_log_index.unwrap_or(0),
            committed: m.last_applied.map(|l| l.index).unwrap_or(0).max(
                m.replication
                    .as_ref()
                    .and_then(|r| {
                        // The leader's commit index: the highest index a majority holds.
                        let mut acked: Vec<u64> = r
                            .values()
                            .map(|l| l.map(|l| l.index).unwrap_or(0))
                            .collect();
                        acked.sort_unstable();
                        let n = acked.len();
                        (n > 0).then(|| acked[(n - 1) / 2])
                    })
                    .unwrap_or(0),
            ),
            applied: m.last_applied.map(|l| l.index).unwrap_or(0),
        }
    };
    // The scrape reads every task once: off the async threads.
    let body = tokio::task::spawn_blocking(move || {
        let samples: Vec<WorkerSample> = {
            let sm = node.state.read();
            sm.scheduler()
                .workers()
                .filter_map(|w| {
                    let live = node.sessions.liveness(w.id)?;
                    Some(WorkerSample {
                        name: w.spec.name.clone(),
                        cpus: live.usage.cpu_milli as f64 / 1000.0,
                        memory_bytes: live.usage.memory_bytes as f64,
                    })
                })
                .collect()
        };
        let sm = node.state.read();
        node.state.metrics().render(&sm, raft, &samples)
    })
    .await
    .unwrap_or_default();
    (
        [(CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        body,
    )
        .into_response()
}

/// Times every request, labelled by its route pattern (never the raw path: ids in
/// paths would make a series per task).
pub async fn time_requests(State(node): State<Arc<Node>>, req: Request, next: Next) -> Response {
    let start = Instant::now();
    let method = req.method().as_str().to_string();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".to_string());
    let resp = next.run(req).await;
    node.state.metrics().observe_request(
        &method,
        &route,
        resp.status().as_u16(),
        start.elapsed().as_secs_f64(),
    );
    resp
}
