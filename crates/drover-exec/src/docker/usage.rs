//! A container's usage, from the daemon's stats stream.

use crate::attempt::UsageProbe;
use crate::finished::AttemptUsage;
use bollard::models::ContainerStatsResponse;
use std::sync::Mutex;
use tokio::time::Instant;

/// The latest figures of one container. The stats stream delivers about one sample a
/// second, so a task shorter than that may report no CPU time and no memory; the wall
/// time is always measured here.
pub(crate) struct ContainerUsage {
    pub started: Mutex<Option<Instant>>,
    pub figures: Mutex<AttemptUsage>,
    pub final_usage: Mutex<Option<AttemptUsage>>,
}

impl ContainerUsage {
    pub fn new() -> Self {
        ContainerUsage {
            started: Mutex::new(None),
            figures: Mutex::new(AttemptUsage::default()),
            final_usage: Mutex::new(None),
        }
    }

    pub fn wall_ms(&self) -> u64 {
        self.started
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .map_or(0, |s| s.elapsed().as_millis() as u64)
    }

    /// Folds one stats sample in. A stopped container's sample is all zeros, so
    /// figures only ever grow.
    pub fn record(&self, s: &ContainerStatsResponse) {
        let cpu_ns = s
            .cpu_stats
            .as_ref()
            .and_then(|c| c.cpu_usage.as_ref())
            .and_then(|u| u.total_usage)
            .unwrap_or(0);
        let mem = s.memory_stats.as_ref();
        // cgroup v1 keeps a peak (`max_usage`); v2 only the current usage.
        let peak = mem.and_then(|m| m.max_usage.or(m.usage)).unwrap_or(0);
        let (mut read, mut write) = (0u64, 0u64);
        for e in s
            .blkio_stats
            .as_ref()
            .and_then(|b| b.io_service_bytes_recursive.as_ref())
            .into_iter()
            .flatten()
        {
            let v = e.value.unwrap_or(0);
            match e.op.as_deref().map(str::to_ascii_lowercase).as_deref() {
                Some("read") => read += v,
                Some("write") => write += v,
                _ => {}
            }
        }
        let mut f = self.figures.lock().unwrap_or_else(|e| e.into_inner());
        f.cpu_time_ms = f.cpu_time_ms.max(cpu_ns / 1_000_000);
        f.peak_memory_bytes = f.peak_memory_bytes.max(peak);
        f.read_bytes = f.read_bytes.max(read);
        f.write_bytes = f.write_bytes.max(write);
    }

    /// The figures so far, with the wall time now.
    pub fn snapshot(&self) -> AttemptUsage {
        let mut u = *self.figures.lock().unwrap_or_else(|e| e.into_inner());
        u.wall_ms = self.wall_ms();
        u
    }
}

impl UsageProbe for ContainerUsage {
    fn usage(&self) -> AttemptUsage {
        if let Some(u) = *self.final_usage.lock().unwrap_or_else(|e| e.into_inner()) {
            return u;
        }
        self.snapshot()
    }
}
