//! A driver that runs nothing: each attempt only waits out a duration.
//!
//! For the scale harness (`benches/scale.rs` in drover-cli): a thousand real worker
//! agents in one process, each with this driver, exercise the server, the protocol,
//! heartbeats and fencing as real workers do, without a thousand hosts to spawn
//! processes on. Not for production: it confines and measures nothing.

use crate::attempt::RunningAttempt;
use crate::driver::{Driver, OrphanReport};
use crate::error::ExecError;
use crate::finished::{AttemptUsage, Finished, OutputSummary};
use crate::kill::KillHandle;
use crate::spec::LaunchSpec;
use drover_types::Outcome;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// Told what the simulated attempts do, for a harness to measure the agent from inside.
pub trait SimulationObserver: Send + Sync {
    /// The agent launched an attempt (the moment a real process would be spawned).
    fn launched(&self, task: u64, attempt: u32, at: Instant);
    /// The agent removed the attempt's directory: it does so only once the server
    /// acknowledged the attempt's end, so this is the end being durable at the server.
    fn end_acknowledged(&self, task: u64, attempt: u32, at: Instant);
}

/// Runs each attempt as a timer. The duration is the task's own when its command is
/// `sleep <seconds>` (so the same job runs on real workers too), else `default`. The
/// attempt exits with code 0 unless killed first.
pub struct SimulatedDriver {
    default: Duration,
    observer: Option<Arc<dyn SimulationObserver>>,
}

impl std::fmt::Debug for SimulatedDriver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimulatedDriver")
            .field("default", &self.default)
            .finish_non_exhaustive()
    }
}

impl SimulatedDriver {
    pub fn new(default: Duration, observer: Option<Arc<dyn SimulationObserver>>) -> Self {
        SimulatedDriver { default, observer }
    }

    /// How long an attempt of this command "runs".
    pub fn duration_of(&self, command: &[String]) -> Duration {
        match command {
            [program, seconds] if program == "sleep" || program.ends_with("/sleep") => seconds
                .parse::<f64>()
                .ok()
                .and_then(|s| Duration::try_from_secs_f64(s).ok())
                .unwrap_or(self.default),
            _ => self.default,
        }
    }
}

impl Driver for SimulatedDriver {
    fn name(&self) -> &'static str {
        "simulated"
    }

    fn launch(&self, spec: LaunchSpec) -> Result<RunningAttempt, ExecError> {
        let duration = self.duration_of(&spec.command);
        let began = Instant::now();
        if let Some(observer) = &self.observer {
            observer.launched(spec.task, spec.attempt, began);
        }
        let kill = KillHandle::new();
        let (done_tx, done) = oneshot::channel();
        let killed = kill.clone();
        tokio::spawn(async move {
            let outcome = tokio::select! {
                _ = tokio::time::sleep(duration) => Outcome::Exited { code: 0 },
                _ = killed.notified() => Outcome::Killed,
            };
            let _ = done_tx.send(Finished {
                outcome,
                usage: AttemptUsage {
                    wall_ms: began.elapsed().as_millis() as u64,
                    ..AttemptUsage::default()
                },
                stdout: OutputSummary::default(),
                stderr: OutputSummary::default(),
                result: Vec::new(),
            });
        });
        Ok(RunningAttempt {
            task: spec.task,
            attempt: spec.attempt,
            pid: None,
            dir: PathBuf::new(),
            kill,
            probe: None,
            limits: None,
            done,
            stdout_path: PathBuf::new(),
            stderr_path: PathBuf::new(),
        })
    }

    fn reap_orphans(&self) -> Vec<OrphanReport> {
        Vec::new()
    }

    fn remove_attempt_dir(&self, task: u64, attempt: u32) -> Result<(), ExecError> {
        if let Some(observer) = &self.observer {
            observer.end_acknowledged(task, attempt, Instant::now());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sleep_command_sets_the_duration_and_anything_else_takes_the_default() {
        let d = SimulatedDriver::new(Duration::from_millis(7), None);
        let cmd = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            d.duration_of(&cmd(&["sleep", "0.05"])),
            Duration::from_millis(50)
        );
        assert_eq!(
            d.duration_of(&cmd(&["/bin/sleep", "2"])),
            Duration::from_secs(2)
        );
        assert_eq!(
            d.duration_of(&cmd(&["/bin/true"])),
            Duration::from_millis(7)
        );
        assert_eq!(
            d.duration_of(&cmd(&["sleep", "x"])),
            Duration::from_millis(7)
        );
    }

    #[tokio::test]
    async fn an_attempt_ends_after_its_duration_or_at_a_kill() {
        let d = SimulatedDriver::new(Duration::from_millis(10), None);
        let t = Instant::now();
        let a = d
            .launch(LaunchSpec {
                task: 1,
                attempt: 1,
                ..LaunchSpec::default()
            })
            .unwrap();
        assert_eq!(a.wait().await.outcome, Outcome::Exited { code: 0 });
        assert!(t.elapsed() >= Duration::from_millis(10));

        let long = d
            .launch(LaunchSpec {
                task: 2,
                attempt: 1,
                command: vec!["sleep".into(), "60".into()],
                ..LaunchSpec::default()
            })
            .unwrap();
        long.kill_handle().kill(Duration::ZERO);
        let ended = tokio::time::timeout(Duration::from_secs(5), long.wait()).await;
        assert_eq!(ended.unwrap().outcome, Outcome::Killed);
    }
}
