//! What the autoscaler shows (`GET /v1/autoscale`, `drover autoscale`): its settings,
//! the workers it manages and its latest decisions. Leader-local, like the loop.

use super::config::AutoscaleConfig;
use drover_proto::autoscale::{
    AutoscaleDecision, AutoscaleStatus, ManagedWorkerInfo, WorkerSizeInfo,
};
use std::collections::VecDeque;
use std::sync::Mutex;

/// Decisions kept for the status.
const DECISIONS_KEPT: usize = 50;

/// The autoscaler's status, written by its loop and read by the API.
#[derive(Debug, Default)]
pub struct AutoscaleState {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    status: AutoscaleStatus,
    decisions: VecDeque<AutoscaleDecision>,
}

impl AutoscaleState {
    /// The status of a server started with these settings (or none).
    pub fn new(config: Option<&AutoscaleConfig>) -> AutoscaleState {
        let status = match config {
            None => AutoscaleStatus::default(),
            Some(c) => AutoscaleStatus {
                enabled: true,
                provider: Some(c.provider.name().to_string()),
                leader: false,
                min: c.min,
                max: c.max,
                cooldown_ms: c.cooldown.as_millis() as u64,
                sizes: c
                    .sizes
                    .iter()
                    .map(|s| WorkerSizeInfo {
                        cpu_milli: s.cpu_milli,
                        memory_bytes: s.memory_bytes,
                    })
                    .collect(),
                workers: Vec::new(),
                decisions: Vec::new(),
                error: None,
                instance_filter: None,
            },
        };
        AutoscaleState {
            inner: Mutex::new(Inner {
                status,
                decisions: VecDeque::new(),
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The status as of now; `leader` as the caller knows it.
    pub fn snapshot(&self, leader: bool) -> AutoscaleStatus {
        let inner = self.lock();
        let mut status = inner.status.clone();
        status.leader = leader;
        if leader {
            status.decisions = inner.decisions.iter().cloned().collect();
        } else {
            // A follower's view is stale: only the leader scales.
            status.workers.clear();
            status.decisions.clear();
        }
        status
    }

    pub fn set_workers(&self, workers: Vec<ManagedWorkerInfo>) {
        self.lock().status.workers = workers;
    }

    pub fn set_instance_filter(&self, filter: String) {
        self.lock().status.instance_filter = Some(filter);
    }

    pub fn set_error(&self, error: Option<String>) {
        self.lock().status.error = error;
    }

    pub fn record(&self, decision: AutoscaleDecision) {
        let mut inner = self.lock();
        if inner.decisions.len() == DECISIONS_KEPT {
            inner.decisions.pop_front();
        }
        inner.decisions.push_back(decision);
    }
}
