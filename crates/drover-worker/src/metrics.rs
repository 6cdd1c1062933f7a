//! The worker's own Prometheus metrics, served at `GET /metrics` on the address given
//! with `drover worker --metrics ADDR` (off unless asked). They say nothing a task
//! could use against the cluster (counts and latencies only, no names or commands), so
//! the endpoint has no token; bind it to loopback or a private interface.

use drover_types::Outcome;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabel {
    outcome: String,
}

/// Every metric one agent exports.
#[derive(Debug)]
pub struct WorkerMetrics {
    registry: Registry,
    spawn: Histogram,
    running: Gauge,
    waiting: Gauge,
    ended: Family<OutcomeLabel, Counter>,
    driver_errors: Counter,
}

impl Default for WorkerMetrics {
    fn default() -> Self {
        WorkerMetrics::new()
    }
}

impl WorkerMetrics {
    pub fn new() -> WorkerMetrics {
        let mut r = Registry::with_prefix("drover_worker");
        let spawn = Histogram::new([
            0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
        ]);
        let m = WorkerMetrics {
            registry: Registry::default(),
            spawn,
            running: Gauge::default(),
            waiting: Gauge::default(),
            ended: Family::default(),
            driver_errors: Counter::default(),
        };
        r.register_with_unit(
            "spawn",
            "Time the driver took to launch an attempt (fork/exec, cgroup set-up)",
            Unit::Seconds,
            m.spawn.clone(),
        );
        r.register(
            "running_attempts",
            "Attempts running on this worker",
            m.running.clone(),
        );
        r.register(
            "waiting_starts",
            "Starts received and waiting for room (prefetch)",
            m.waiting.clone(),
        );
        r.register(
            "attempts_ended",
            "Attempts ended, by how (exited, signaled, killed, timed_out, ...)",
            m.ended.clone(),
        );
        r.register(
            "driver_errors",
            "Attempts the driver could not start (they end as spawn_failed)",
            m.driver_errors.clone(),
        );
        WorkerMetrics { registry: r, ..m }
    }

    pub fn launched(&self, took: Duration) {
        self.spawn.observe(took.as_secs_f64());
    }

    pub fn set_load(&self, running: usize, waiting: usize) {
        self.running.set(running as i64);
        self.waiting.set(waiting as i64);
    }

    /// Counts an attempt's end. A launch refused by the driver, at once or from the
    /// child before exec, ends as `spawn_failed`: that is what `driver_errors` counts.
    pub fn ended(&self, outcome: &Outcome) {
        if matches!(outcome, Outcome::SpawnFailed { .. }) {
            self.driver_errors.inc();
        }
        let kind = serde_json::to_value(outcome)
            .ok()
            .and_then(|v| v["kind"].as_str().map(str::to_string))
            .unwrap_or_else(|| "unknown".to_string());
        self.ended
            .get_or_create(&OutcomeLabel { outcome: kind })
            .inc();
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry);
        out
    }
}

/// Serves `GET /metrics` on `addr` until the process ends.
pub async fn serve(addr: SocketAddr, metrics: Arc<WorkerMetrics>) -> std::io::Result<SocketAddr> {
    use axum::http::header::CONTENT_TYPE;
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let m = metrics.clone();
            async move {
                (
                    [(CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
                    m.render(),
                )
            }
        }),
    );
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::warn!("the metrics endpoint stopped: {e}");
        }
    });
    Ok(bound)
}
