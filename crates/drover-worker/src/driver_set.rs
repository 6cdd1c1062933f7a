//! The execution drivers of one worker, by the name tasks use.

use drover_exec::{Driver, ExecError, LaunchSpec, OrphanReport, RunningAttempt};
use drover_types::PROCESS_DRIVER;
use std::collections::BTreeMap;
use std::sync::Arc;

/// The drivers a worker runs tasks with, by name (`process`, `docker`, a plugin's),
/// itself a [`Driver`] that routes each launch by the spec's driver. `process` is
/// always present: every worker has it, and placement relies on that. The worker
/// declares [`DriverSet::names`] when it joins, so the server sends it only tasks of
/// these drivers.
pub struct DriverSet {
    drivers: BTreeMap<String, Arc<dyn Driver>>,
}

impl std::fmt::Debug for DriverSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DriverSet")
            .field("drivers", &self.names())
            .finish()
    }
}

impl DriverSet {
    /// A set holding `process`, the driver of tasks that name none.
    pub fn new(process: Arc<dyn Driver>) -> Self {
        DriverSet {
            drivers: BTreeMap::from([(PROCESS_DRIVER.to_string(), process)]),
        }
    }

    /// Adds (or replaces) the driver tasks call `name`.
    pub fn insert(&mut self, name: String, d: Arc<dyn Driver>) {
        self.drivers.insert(name, d);
    }

    /// The names, sorted.
    pub fn names(&self) -> Vec<String> {
        self.drivers.keys().cloned().collect()
    }

    pub fn get(&self, name: &str) -> Option<&Arc<dyn Driver>> {
        self.drivers.get(name)
    }

    fn route(&self, spec: &LaunchSpec) -> Result<&Arc<dyn Driver>, ExecError> {
        let name = spec.driver.as_deref().unwrap_or(PROCESS_DRIVER);
        self.get(name).ok_or_else(|| ExecError::NoSuchDriver {
            name: name.to_string(),
        })
    }
}

impl Driver for DriverSet {
    fn name(&self) -> &'static str {
        "set"
    }

    fn launch(&self, spec: LaunchSpec) -> Result<RunningAttempt, ExecError> {
        self.route(&spec)?.launch(spec)
    }

    /// Every member's leftovers.
    fn reap_orphans(&self) -> Vec<OrphanReport> {
        let mut all: Vec<OrphanReport> = self
            .drivers
            .values()
            .flat_map(|d| d.reap_orphans())
            .collect();
        all.sort_by_key(|r| (r.task, r.attempt));
        all
    }

    /// Asks every member: the agent does not remember which driver ran an attempt, and
    /// removing what is not there is a no-op. The first error is returned.
    fn remove_attempt_dir(&self, task: u64, attempt: u32) -> Result<(), ExecError> {
        let mut first = Ok(());
        for d in self.drivers.values() {
            if let Err(e) = d.remove_attempt_dir(task, attempt)
                && first.is_ok()
            {
                first = Err(e);
            }
        }
        first
    }

    /// The `process` driver's: the one tasks run with unless they name another
    /// (docker sets its own container limits; plugins say nothing).
    fn isolation(&self) -> drover_types::Isolation {
        self.drivers
            .get(PROCESS_DRIVER)
            .map(|d| d.isolation())
            .unwrap_or_default()
    }

    fn drivers(&self) -> Vec<String> {
        self.names()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use drover_exec::SimulatedDriver;
    use std::time::Duration;

    #[tokio::test]
    async fn launches_go_to_the_named_driver_and_unknown_names_are_refused() {
        let sim = || -> Arc<dyn Driver> {
            Arc::new(SimulatedDriver::new(Duration::from_millis(1), None))
        };
        let mut set = DriverSet::new(sim());
        set.insert("docker".into(), sim());
        assert_eq!(set.drivers(), vec!["docker", "process"]);
        let spec = |driver: Option<&str>| LaunchSpec {
            task: 1,
            attempt: 1,
            command: vec!["true".into()],
            driver: driver.map(str::to_string),
            ..LaunchSpec::default()
        };
        assert!(set.launch(spec(None)).is_ok());
        assert!(set.launch(spec(Some("docker"))).is_ok());
        match set.launch(spec(Some("k8s"))) {
            Err(ExecError::NoSuchDriver { name }) => assert_eq!(name, "k8s"),
            other => panic!("expected NoSuchDriver, got {other:?}"),
        }
    }
}
