//! GPUs by index: which ones this worker has, and which running attempt holds which.
//!
//! The server counts GPUs (`Resources::gpus`) and never places more than a worker
//! has; which *devices* an attempt gets is the worker's business, decided here and
//! told to the task through `CUDA_VISIBLE_DEVICES` and its equivalents. Nothing of it
//! is in the replicated state: after a restart the agent kills its predecessor's
//! attempts (it does not re-adopt them), so it starts with every index free.

use drover_types::{Attempt, TaskId};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

/// How long `nvidia-smi` may take to list the GPUs before the worker gives up on it
/// (a wedged driver can hang it) and looks at `/dev` instead.
const NVIDIA_SMI_TIMEOUT: Duration = Duration::from_secs(10);

/// The GPU indices of this host: from `nvidia-smi` (the program found on `PATH`),
/// else the `nvidiaN` device nodes of `dev_dir` (`/dev`), else none.
pub async fn discover(dev_dir: &Path) -> Vec<u32> {
    let query = tokio::process::Command::new("nvidia-smi")
        .args(["--query-gpu=index", "--format=csv,noheader"])
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .output();
    match tokio::time::timeout(NVIDIA_SMI_TIMEOUT, query).await {
        Ok(Ok(out)) if out.status.success() => {
            let ids = parse_index_list(&String::from_utf8_lossy(&out.stdout));
            if !ids.is_empty() {
                return ids;
            }
        }
        Ok(Ok(out)) => {
            tracing::info!(status = %out.status, "nvidia-smi failed; looking for GPU devices in /dev")
        }
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::NotFound => {}
        Ok(Err(e)) => tracing::info!("cannot run nvidia-smi: {e}; looking for GPU devices in /dev"),
        Err(_) => tracing::warn!(
            "nvidia-smi did not answer in {NVIDIA_SMI_TIMEOUT:?}; looking for GPU devices in /dev"
        ),
    }
    let dir = dev_dir.to_path_buf();
    tokio::task::spawn_blocking(move || device_indices(&dir))
        .await
        .unwrap_or_default()
}

/// Indices one per line (`nvidia-smi --query-gpu=index --format=csv,noheader`),
/// sorted and without repeats; lines that are not numbers are skipped.
fn parse_index_list(text: &str) -> Vec<u32> {
    let set: BTreeSet<u32> = text.lines().filter_map(|l| l.trim().parse().ok()).collect();
    set.into_iter().collect()
}

/// The `N` of every `nvidiaN` entry of `dir` (not `nvidiactl`, `nvidia-uvm`, …).
fn device_indices(dir: &Path) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let set: BTreeSet<u32> = entries
        .flatten()
        .filter_map(|e| {
            let name = e.file_name();
            let digits = name.to_str()?.strip_prefix("nvidia")?;
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            digits.parse().ok()
        })
        .collect();
    set.into_iter().collect()
}

/// Parses `--gpu-ids`: comma-separated indices, e.g. `0,1,2,3`, no repeats.
pub fn parse_gpu_ids(text: &str) -> Result<Vec<u32>, String> {
    let mut ids = Vec::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let id: u32 = part
            .parse()
            .map_err(|_| format!("{part:?} is not a GPU index (a whole number)"))?;
        if ids.contains(&id) {
            return Err(format!("GPU {id} is listed twice"));
        }
        ids.push(id);
    }
    Ok(ids)
}

/// Which of this worker's GPU indices each running attempt holds. An index is held
/// by at most one attempt at a time; it is free again when the attempt's end is
/// recorded.
#[derive(Debug, Default)]
pub struct GpuAllocator {
    /// Every index this worker hands out, in the order given.
    all: Vec<u32>,
    free: BTreeSet<u32>,
    held: BTreeMap<(TaskId, Attempt), Vec<u32>>,
}

impl GpuAllocator {
    pub fn new(ids: Vec<u32>) -> Self {
        GpuAllocator {
            free: ids.iter().copied().collect(),
            all: ids,
            held: BTreeMap::new(),
        }
    }

    pub fn ids(&self) -> &[u32] {
        &self.all
    }

    /// Gives `attempt` `count` free indices (the lowest), or `None` when fewer are
    /// free (nothing taken then). An attempt asking for none gets an empty list.
    pub fn take(&mut self, attempt: (TaskId, Attempt), count: u32) -> Option<Vec<u32>> {
        if count == 0 {
            return Some(Vec::new());
        }
        if (self.free.len() as u64) < u64::from(count) {
            return None;
        }
        let ids: Vec<u32> = self.free.iter().take(count as usize).copied().collect();
        for id in &ids {
            self.free.remove(id);
        }
        self.held.insert(attempt, ids.clone());
        Some(ids)
    }

    /// Frees what `attempt` held (nothing if it held none).
    pub fn release(&mut self, attempt: (TaskId, Attempt)) {
        if let Some(ids) = self.held.remove(&attempt) {
            self.free.extend(ids);
        }
    }

    /// The indices `attempt` holds (none when it holds none).
    pub fn held_by(&self, attempt: (TaskId, Attempt)) -> &[u32] {
        self.held.get(&attempt).map_or(&[], Vec::as_slice)
    }

    /// Whether `count` indices are free now.
    pub fn has_free(&self, count: u32) -> bool {
        self.free.len() as u64 >= u64::from(count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(t: u64) -> (TaskId, Attempt) {
        (TaskId(t), Attempt(1))
    }

    #[test]
    fn attempts_get_disjoint_indices_freed_at_their_end() {
        let mut g = GpuAllocator::new(vec![0, 1, 2, 3]);
        let a = g.take(key(1), 2).unwrap();
        let b = g.take(key(2), 2).unwrap();
        assert_eq!((a.clone(), b.clone()), (vec![0, 1], vec![2, 3]));
        assert_eq!(g.take(key(3), 2), None, "a third must wait");
        assert!(!g.has_free(1));
        g.release(key(1));
        assert_eq!(g.take(key(3), 2), Some(a));
        assert_eq!(g.take(key(4), 0), Some(vec![]));
        g.release(key(4)); // held none: nothing freed
        assert!(!g.has_free(1));
    }

    #[test]
    fn given_indices_are_used_as_given() {
        let mut g = GpuAllocator::new(vec![4, 6]);
        assert_eq!(g.take(key(1), 1), Some(vec![4]));
        assert_eq!(g.take(key(2), 1), Some(vec![6]));
        assert_eq!(g.ids(), &[4, 6]);
    }

    #[test]
    fn parses_nvidia_smi_output_and_device_nodes() {
        assert_eq!(parse_index_list("0\n1\n 3 \n\nNo devices\n"), vec![0, 1, 3]);
        let dir = std::env::temp_dir().join(format!("drover-gpus-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        for name in [
            "nvidia0",
            "nvidia2",
            "nvidiactl",
            "nvidia-uvm",
            "nvidia-caps",
            "null",
        ] {
            std::fs::write(dir.join(name), "").unwrap();
        }
        assert_eq!(device_indices(&dir), vec![0, 2]);
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(device_indices(&dir), Vec::<u32>::new());
    }

    #[test]
    fn gpu_id_lists_parse_or_say_why_not() {
        assert_eq!(parse_gpu_ids("0,1, 2,3"), Ok(vec![0, 1, 2, 3]));
        assert_eq!(parse_gpu_ids(""), Ok(vec![]));
        assert!(parse_gpu_ids("0,x").unwrap_err().contains("\"x\""));
        assert!(parse_gpu_ids("1,1").unwrap_err().contains("twice"));
    }
}
