//! The Docker provider: each managed worker is a container of the local engine, run
//! from the worker image (`scripts/build-worker-image.sh`) on the host's network (so it
//! reaches the server on loopback), with a single-use join token and the cluster's CA.
//!
//! Containers carry labels naming the cluster, the worker and its size: the provider
//! lists by the cluster label, so a new leader (or a restarted server) finds the
//! containers its predecessor started, and two clusters on one engine never touch each
//! other's.

use super::decision::WorkerSize;
use super::error::ProviderError;
use super::provider::{Instance, Provider, StartRequest};
use bollard::Docker;
use bollard::models::{ContainerCreateBody, ContainerSummaryStateEnum, HostConfig};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, ListContainersOptionsBuilder, RemoveContainerOptionsBuilder,
    StopContainerOptionsBuilder,
};
use std::collections::HashMap;
use std::path::PathBuf;

/// The label every managed container carries: the cluster it belongs to.
pub const CLUSTER_LABEL: &str = "drover.cluster";
/// The name its worker joins under.
pub const WORKER_LABEL: &str = "drover.worker";
const CPU_LABEL: &str = "drover.cpu_milli";
const MEMORY_LABEL: &str = "drover.memory_bytes";
/// Where the cluster's CA is mounted in the container.
const CA_IN_CONTAINER: &str = "/etc/drover/ca.crt";
/// The worker's data directory in the container (its credential, attempt directories).
const DATA_IN_CONTAINER: &str = "/var/lib/drover";
/// Room for the agent and its reaper above what the worker offers to tasks.
const AGENT_MEMORY: u64 = 256 << 20;
/// SIGTERM, then this long for the agent to stop before SIGKILL (it is drained: nothing
/// runs on it).
const STOP_GRACE_S: i32 = 10;

pub struct DockerProvider {
    docker: Docker,
    image: String,
    /// The value of [`CLUSTER_LABEL`] for this cluster.
    cluster: String,
    server_url: String,
    /// The cluster's CA on this host, mounted read-only; none over plain HTTP.
    ca: Option<PathBuf>,
}

impl DockerProvider {
    /// Connects to the local engine (`DOCKER_HOST` or the default socket) and agrees
    /// on an API version it speaks.
    pub async fn connect(
        image: String,
        cluster: String,
        server_url: String,
        ca: Option<PathBuf>,
    ) -> Result<DockerProvider, ProviderError> {
        let docker = Docker::connect_with_unix_defaults()
            .map_err(ProviderError::DockerUnreachable)?
            // bollard speaks a newer API than many engines accept: agree first.
            .negotiate_version()
            .await
            .map_err(ProviderError::DockerUnreachable)?;
        Ok(DockerProvider {
            docker,
            image,
            cluster,
            server_url,
            ca,
        })
    }

    fn command(&self, request: &StartRequest) -> Vec<String> {
        let mut cmd = vec![
            "--server".to_string(),
            self.server_url.clone(),
            "--data-dir".to_string(),
            DATA_IN_CONTAINER.to_string(),
        ];
        if self.ca.is_some() {
            cmd.extend(["--ca".to_string(), CA_IN_CONTAINER.to_string()]);
        }
        cmd.extend([
            "worker".to_string(),
            "--name".to_string(),
            request.worker.clone(),
            "--cpus".to_string(),
            format!("{}", request.size.cpu_milli as f64 / 1000.0),
            "--memory".to_string(),
            request.size.memory_bytes.to_string(),
        ]);
        cmd
    }
}

fn refused(action: &'static str) -> impl FnOnce(bollard::errors::Error) -> ProviderError {
    move |source| ProviderError::Docker { action, source }
}

fn is_not_found(e: &bollard::errors::Error) -> bool {
    matches!(
        e,
        bollard::errors::Error::DockerResponseServerError {
            status_code: 404,
            ..
        }
    )
}

impl Provider for DockerProvider {
    async fn list(&self) -> Result<Vec<Instance>, ProviderError> {
        let filters = HashMap::from([("label", vec![format!("{CLUSTER_LABEL}={}", self.cluster)])]);
        let options = ListContainersOptionsBuilder::new()
            .all(true)
            .filters(&filters)
            .build();
        let containers = self
            .docker
            .list_containers(Some(options))
            .await
            .map_err(refused("list containers"))?;
        let mut instances: Vec<Instance> = containers
            .into_iter()
            .filter_map(|c| {
                let labels = c.labels.unwrap_or_default();
                let worker = labels.get(WORKER_LABEL)?.clone();
                let size = WorkerSize {
                    cpu_milli: labels.get(CPU_LABEL)?.parse().ok()?,
                    memory_bytes: labels.get(MEMORY_LABEL)?.parse().ok()?,
                };
                let running = matches!(
                    c.state,
                    Some(ContainerSummaryStateEnum::RUNNING)
                        | Some(ContainerSummaryStateEnum::CREATED)
                        | Some(ContainerSummaryStateEnum::RESTARTING)
                );
                Some(Instance {
                    id: c.id?,
                    worker,
                    size,
                    running,
                })
            })
            .collect();
        instances.sort_by(|a, b| a.worker.cmp(&b.worker));
        Ok(instances)
    }

    async fn start(&self, request: StartRequest) -> Result<String, ProviderError> {
        if let Err(e) = self.docker.inspect_image(&self.image).await {
            return Err(if is_not_found(&e) {
                ProviderError::NoImage {
                    image: self.image.clone(),
                }
            } else {
                ProviderError::Docker {
                    action: "inspect the worker image",
                    source: e,
                }
            });
        }
        let labels = HashMap::from([
            (CLUSTER_LABEL.to_string(), self.cluster.clone()),
            (WORKER_LABEL.to_string(), request.worker.clone()),
            (CPU_LABEL.to_string(), request.size.cpu_milli.to_string()),
            (
                MEMORY_LABEL.to_string(),
                request.size.memory_bytes.to_string(),
            ),
        ]);
        let binds = self
            .ca
            .as_ref()
            .map(|ca| vec![format!("{}:{CA_IN_CONTAINER}:ro", ca.display())]);
        let body = ContainerCreateBody {
            image: Some(self.image.clone()),
            cmd: Some(self.command(&request)),
            // In the environment rather than the command line: not in `ps` on the host.
            env: Some(vec![format!("DROVER_JOIN_TOKEN={}", request.join_token)]),
            labels: Some(labels),
            host_config: Some(HostConfig {
                network_mode: Some("host".to_string()),
                binds,
                // A real init as PID 1 reaps what tasks leave behind.
                init: Some(true),
                // A weight, not a quota: a quota above the engine's own CPUs is refused,
                // and a big worker may well offer more than one machine has.
                cpu_shares: Some(i64::from(request.size.cpu_milli) * 1024 / 1000),
                memory: i64::try_from(request.size.memory_bytes.saturating_add(AGENT_MEMORY)).ok(),
                ..HostConfig::default()
            }),
            ..ContainerCreateBody::default()
        };
        let options = CreateContainerOptionsBuilder::new()
            .name(&request.worker)
            .build();
        let created = self
            .docker
            .create_container(Some(options), body)
            .await
            .map_err(refused("create a worker container"))?;
        if let Err(e) = self
            .docker
            .start_container(
                &created.id,
                None::<bollard::query_parameters::StartContainerOptions>,
            )
            .await
        {
            // Leave nothing half made behind.
            let _ = self.stop(&created.id).await;
            return Err(ProviderError::Docker {
                action: "start a worker container",
                source: e,
            });
        }
        Ok(created.id)
    }

    async fn stop(&self, id: &str) -> Result<(), ProviderError> {
        let stop = StopContainerOptionsBuilder::new().t(STOP_GRACE_S).build();
        match self.docker.stop_container(id, Some(stop)).await {
            Ok(()) => {}
            Err(e) if is_not_found(&e) => return Ok(()),
            // 304: already stopped.
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 304, ..
            }) => {}
            Err(e) => return Err(refused("stop a worker container")(e)),
        }
        let remove = RemoveContainerOptionsBuilder::new().force(true).build();
        match self.docker.remove_container(id, Some(remove)).await {
            Ok(()) => Ok(()),
            Err(e) if is_not_found(&e) => Ok(()),
            // 409: a removal already under way.
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 409, ..
            }) => Ok(()),
            Err(e) => Err(refused("remove a worker container")(e)),
        }
    }
}
