//! The leader's autoscaling loop: every `interval`, list the provider's instances, read
//! the queue and the workers from the applied state, [`decide`], and carry the actions
//! out: start (with a single-use join token made through the log), drain (through the
//! log), stop (then revoke the stopped worker's credential).
//!
//! Only the leader acts. What the loop remembers (when it first saw an instance, since
//! when a worker is idle) is its own and starts afresh on a new leader: that only
//! restarts cooldowns. Everything else is found again: the instances by their labels,
//! the workers' states (draining ones included) in the log.

use super::config::{AutoscaleConfig, ProviderKind};
use super::decision::{Action, Inputs, Managed, ManagedState, Need, WorkerSize, decide};
use super::docker::DockerProvider;
use super::error::ProviderError;
use super::provider::{Instance, Provider, StartRequest};
use crate::auth::ClusterToken;
use crate::config::{ServerConfig, TlsMode};
use crate::node::Node;
use crate::worker_identity::{IssuedSecret, JOIN_PREFIX};
use drover_proto::autoscale::{AutoscaleDecision, ManagedWorkerInfo, WorkerSizeInfo};
use drover_state::{Command, CommandResult};
use drover_types::{WorkerId, WorkerState};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Queued tasks looked at per round, at most: enough to size a burst, cheap to read.
const PENDING_SCAN: usize = 10_000;
/// Wait between attempts to reach the provider when it is not there.
const RECONNECT_EVERY: Duration = Duration::from_secs(5);
/// After a start fails, or an instance ends without its worker ever joining (a server URL
/// the container cannot reach, a worker the server refuses), starts wait this long,
/// doubling with each such failure up to [`START_BACKOFF_MAX_MS`]: no crash loop.
const START_BACKOFF_MS: u64 = 5_000;
const START_BACKOFF_MAX_MS: u64 = 300_000;

/// The URL(s) the workers dial: in a group given by `--peers`, every server's
/// (comma-separated: a worker tries them in turn and stays with the leader, so it
/// follows a change of leader); else this server's, on loopback when it listens on
/// every address (the containers share the host's network).
pub fn default_server_url(config: &ServerConfig, bound: SocketAddr) -> String {
    if config.peers.len() > 1 {
        return config
            .sorted_peers()
            .iter()
            .map(|p| config.peer_url(p))
            .collect::<Vec<_>>()
            .join(",");
    }
    let ip = match bound.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    config.peer_url(&SocketAddr::new(ip, bound.port()).to_string())
}

/// The cluster's label value: the same on every server of a group (derived from the
/// peer token, as the task key is), different between clusters, and not the secret.
pub fn cluster_label(peer_token: &ClusterToken) -> String {
    let digest = Sha256::digest(format!("drover-autoscale:{}", peer_token.as_str()).as_bytes());
    digest[..8].iter().map(|b| format!("{b:02x}")).collect()
}

/// Runs the autoscaler of this server for as long as the server runs.
pub async fn run(node: Arc<Node>, config: AutoscaleConfig, server_url: String) {
    let ca = match &node.config.tls {
        TlsMode::Insecure => None,
        TlsMode::Auto(p) | TlsMode::Required(p) | TlsMode::CreateLocal(p) => Some(p.ca()),
    };
    let cluster = cluster_label(&node.peer_token);
    node.autoscale
        .set_instance_filter(format!("label={}={cluster}", super::docker::CLUSTER_LABEL));
    tracing::info!(provider = config.provider.name(), min = config.min, max = config.max, cooldown_ms = config.cooldown.as_millis() as u64, %server_url, %cluster, "autoscaling");
    match config.provider {
        ProviderKind::Docker => {
            let provider = loop {
                match DockerProvider::connect(
                    config.image.clone(),
                    cluster.clone(),
                    server_url.clone(),
                    ca.clone(),
                )
                .await
                {
                    Ok(p) => break p,
                    Err(e) => {
                        tracing::warn!("autoscaler: {e}");
                        node.autoscale.set_error(Some(e.to_string()));
                        tokio::time::sleep(RECONNECT_EVERY).await;
                    }
                }
            };
            node.autoscale.set_error(None);
            Scaler::new(node, config, provider).run().await
        }
    }
}

/// The loop's memory, leader-local.
struct Scaler<P> {
    node: Arc<Node>,
    config: AutoscaleConfig,
    provider: P,
    /// The loop's clock (milliseconds since this start).
    base: Instant,
    /// Worker name -> when its instance was first seen.
    seen: BTreeMap<String, u64>,
    /// Worker name -> since when it has had no task.
    idle: BTreeMap<String, u64>,
    /// Workers whose start is settled: seen joined (active or draining) at least once,
    /// or counted as a failed start.
    joined: std::collections::BTreeSet<String>,
    /// Instances in a row that ended before their worker joined, and when starting
    /// is allowed again.
    failed_starts: u32,
    starts_after_ms: u64,
}

/// What one look found, beside the decision's inputs.
struct Observed {
    managed: Vec<Managed>,
    pending: Vec<Need>,
    capacities: Vec<WorkerSize>,
    ids: BTreeMap<String, WorkerId>,
    instances: BTreeMap<String, Instance>,
}

impl<P: Provider> Scaler<P> {
    fn new(node: Arc<Node>, config: AutoscaleConfig, provider: P) -> Scaler<P> {
        Scaler {
            node,
            config,
            provider,
            base: Instant::now(),
            seen: BTreeMap::new(),
            idle: BTreeMap::new(),
            joined: Default::default(),
            failed_starts: 0,
            starts_after_ms: 0,
        }
    }

    async fn run(mut self) {
        let mut interval = tokio::time::interval(self.config.interval);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            interval.tick().await;
            if self.node.is_removed() {
                return;
            }
            if !self.node.is_leader() {
                // A later leadership starts its cooldowns afresh.
                self.seen.clear();
                self.idle.clear();
                continue;
            }
            match self.step().await {
                // (While starts back off, the status says so instead.)
                Ok(()) if self.now_ms() >= self.starts_after_ms => {
                    self.node.autoscale.set_error(None)
                }
                Ok(()) => {}
                Err(e) => {
                    tracing::warn!("autoscaler: {e}");
                    self.node.autoscale.set_error(Some(e.to_string()));
                }
            }
        }
    }

    fn now_ms(&self) -> u64 {
        self.base.elapsed().as_millis() as u64
    }

    /// One more failed start: the next waits longer. Returns the wait.
    fn back_off(&mut self, now: u64) -> u64 {
        self.failed_starts += 1;
        let wait = START_BACKOFF_MS
            .saturating_mul(1 << (self.failed_starts - 1).min(10))
            .min(START_BACKOFF_MAX_MS);
        self.starts_after_ms = now + wait;
        wait
    }

    async fn step(&mut self) -> Result<(), ProviderError> {
        let instances = self.provider.list().await?;
        let now = self.now_ms();
        let seen = self.observe(instances, now);
        let actions = decide(&Inputs {
            now_ms: now,
            min: self.config.min,
            max: self.config.max,
            cooldown_ms: self.config.cooldown.as_millis() as u64,
            join_timeout_ms: self.config.join_timeout.as_millis() as u64,
            sizes: &self.config.sizes,
            pending: &seen.pending,
            active_capacities: &seen.capacities,
            managed: &seen.managed,
        });
        for action in actions {
            self.carry_out(action, &seen).await;
        }
        Ok(())
    }

    /// Reads the queue and the workers (under the state's read lock, no I/O) and
    /// matches the provider's instances to workers by name.
    fn observe(&mut self, instances: Vec<Instance>, now: u64) -> Observed {
        self.seen
            .retain(|name, _| instances.iter().any(|i| i.worker == *name));
        self.idle
            .retain(|name, _| instances.iter().any(|i| i.worker == *name));
        self.joined
            .retain(|name| instances.iter().any(|i| i.worker == *name));
        let node = self.node.clone();
        let sm = node.state.read();
        let sched = sm.scheduler();
        let need = |spec: &drover_types::TaskSpec| Need {
            cpu_milli: spec.resources.cpu_milli,
            memory_bytes: spec.resources.memory_bytes,
        };
        let mut pending: Vec<Need> = sched
            .ready_tasks(PENDING_SCAN)
            .iter()
            .map(|t| need(t.spec.shared()))
            .collect();
        // Tasks prefetched to a worker wait behind what it runs: they are demand too (a
        // new worker gets them, retracted from where they wait).
        for w in sched.workers() {
            for id in &w.queued {
                if pending.len() >= PENDING_SCAN {
                    break;
                }
                if let Some(t) = sched.task(*id) {
                    pending.push(need(t.spec.shared()));
                }
            }
        }
        let capacities = sched
            .workers()
            .filter(|w| w.state == WorkerState::Active)
            .map(|w| WorkerSize {
                cpu_milli: w.spec.capacity.cpu_milli,
                memory_bytes: w.spec.capacity.memory_bytes,
            })
            .collect();
        let mut managed = Vec::new();
        let mut infos = Vec::new();
        let mut ids = BTreeMap::new();
        let mut by_name = BTreeMap::new();
        for inst in instances {
            let seen_since = *self.seen.entry(inst.worker.clone()).or_insert(now);
            let worker = sched
                .worker_by_name(&inst.worker)
                .and_then(|id| sched.worker(id));
            let state = match (&worker, inst.running) {
                (_, false) => ManagedState::Exited,
                (None, true) => ManagedState::Starting,
                (Some(w), true) => match w.state {
                    WorkerState::Active => ManagedState::Active,
                    WorkerState::Draining => ManagedState::Draining,
                    WorkerState::Lost => ManagedState::Lost,
                },
            };
            if matches!(state, ManagedState::Active | ManagedState::Draining) {
                if self.joined.insert(inst.worker.clone()) {
                    self.failed_starts = 0;
                }
            } else if state == ManagedState::Exited && !self.joined.contains(&inst.worker) {
                // Counted once per instance: it is removed below, and forgotten.
                if self.joined.insert(inst.worker.clone()) {
                    let wait = self.back_off(now);
                    tracing::warn!(worker = %inst.worker, failed = self.failed_starts, wait_ms = wait, "autoscaler: a worker instance ended before its worker joined (see its logs: docker logs {}); starts wait", inst.id);
                }
            }
            let tasks = worker
                .as_ref()
                .map(|w| (w.running.len() + w.queued.len()) as u32)
                .unwrap_or(0);
            let idle_since = if state == ManagedState::Active && tasks == 0 {
                Some(*self.idle.entry(inst.worker.clone()).or_insert(now))
            } else {
                self.idle.remove(&inst.worker);
                None
            };
            if let Some(w) = &worker {
                ids.insert(inst.worker.clone(), w.id);
            }
            infos.push(ManagedWorkerInfo {
                name: inst.worker.clone(),
                instance: inst.id.clone(),
                size: size_info(inst.size),
                state: state_name(state).to_string(),
                tasks,
                idle_ms: idle_since.map(|s| now.saturating_sub(s)),
            });
            managed.push(Managed {
                name: inst.worker.clone(),
                size: inst.size,
                state,
                tasks,
                idle_since_ms: idle_since,
                seen_since_ms: seen_since,
            });
            by_name.insert(inst.worker.clone(), inst);
        }
        drop(sm);
        self.node.autoscale.set_workers(infos);
        Observed {
            managed,
            pending,
            capacities,
            ids,
            instances: by_name,
        }
    }

    async fn carry_out(&mut self, action: Action, seen: &Observed) {
        let (verb, worker, size, reason, result) = match action {
            Action::Start { .. } if self.now_ms() < self.starts_after_ms => {
                self.node.autoscale.set_error(Some(format!(
                    "{} failed start(s) in a row (an instance that could not start, or ended before its worker joined: see the latest decisions and the server's log); the next start waits {} s",
                    self.failed_starts,
                    (self.starts_after_ms - self.now_ms()).div_ceil(1000)
                )));
                return;
            }
            Action::Start { size, reason } => {
                let (name, result) = self.start(size).await;
                ("start", name, size, reason, result)
            }
            Action::Drain { name, reason } => {
                let size = seen.instances.get(&name).map(|i| i.size);
                let result = match seen.ids.get(&name) {
                    Some(&worker) => self.propose(Command::WorkerDrain { worker }).await,
                    None => Err(format!("no worker is named {name}")),
                };
                (
                    "drain",
                    name,
                    size.unwrap_or(self.config.sizes[0]),
                    reason,
                    result,
                )
            }
            Action::Stop { name, reason } => {
                let instance = seen.instances.get(&name);
                let result = match instance {
                    Some(i) => self.stop(i).await,
                    None => Ok(()),
                };
                let size = instance.map(|i| i.size).unwrap_or(self.config.sizes[0]);
                ("stop", name, size, reason, result)
            }
        };
        match &result {
            Ok(()) => {
                tracing::info!(action = verb, %worker, cpu_milli = size.cpu_milli, memory_bytes = size.memory_bytes, "autoscaler: {reason}")
            }
            Err(e) => tracing::warn!(action = verb, %worker, "autoscaler: {reason}; failed: {e}"),
        }
        self.node.autoscale.record(AutoscaleDecision {
            at_unix_ms: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis() as u64)
                .unwrap_or_default(),
            action: verb.to_string(),
            worker,
            size: size_info(size),
            reason,
            error: result.err(),
        });
    }

    /// A single-use join token through the log, then the instance.
    async fn start(&mut self, size: WorkerSize) -> (String, Result<(), String>) {
        let issued = match IssuedSecret::new(JOIN_PREFIX) {
            Ok(i) => i,
            Err(e) => return (String::new(), Err(e.to_string())),
        };
        // Named after the token's id: unique, and it says where it came from.
        let name = format!("drover-auto-{}", issued.id);
        let token = Command::JoinTokenCreate {
            id: issued.id.clone(),
            digest: issued.digest.clone(),
            ttl_ms: (self.config.join_timeout.as_millis() as u64).max(1),
            uses: 1,
        };
        if let Err(e) = self.propose(token).await {
            return (name, Err(e));
        }
        let request = StartRequest {
            worker: name.clone(),
            size,
            join_token: issued.secret,
        };
        let result = self.provider.start(request).await;
        if result.is_err() {
            // (No image, an engine that refuses: retrying every second would only
            // fill the log with join tokens.)
            self.back_off(self.now_ms());
        }
        self.seen.insert(name.clone(), self.now_ms());
        (name, result.map(|_| ()).map_err(|e| e.to_string()))
    }

    /// Stops the instance, then revokes its worker's credential: nothing will present
    /// it again, and a copy of it must not outlive the container.
    async fn stop(&mut self, instance: &Instance) -> Result<(), String> {
        self.provider
            .stop(&instance.id)
            .await
            .map_err(|e| e.to_string())?;
        let has_credential = self
            .node
            .state
            .read()
            .identities()
            .credential_of(&instance.worker)
            .is_some();
        if has_credential {
            self.propose(Command::WorkerRevoke {
                name: instance.worker.clone(),
            })
            .await?;
        }
        Ok(())
    }

    async fn propose(&self, command: Command) -> Result<(), String> {
        match self.node.proposer.propose(command).await {
            Ok(CommandResult::Rejected(r)) => Err(format!("{r:?}")),
            Ok(_) => Ok(()),
            Err(e) => Err(e.to_string()),
        }
    }
}

fn size_info(size: WorkerSize) -> WorkerSizeInfo {
    WorkerSizeInfo {
        cpu_milli: size.cpu_milli,
        memory_bytes: size.memory_bytes,
    }
}

fn state_name(state: ManagedState) -> &'static str {
    match state {
        ManagedState::Starting => "starting",
        ManagedState::Active => "active",
        ManagedState::Draining => "draining",
        ManagedState::Lost => "lost",
        ManagedState::Exited => "exited",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workers_dial_loopback_alone_and_every_peer_in_a_group() {
        let mut config = ServerConfig::new("/nonexistent".into());
        config.scheme = "https";
        let any: SocketAddr = "0.0.0.0:7070".parse().unwrap();
        assert_eq!(default_server_url(&config, any), "https://127.0.0.1:7070");
        let v6: SocketAddr = "[::]:7070".parse().unwrap();
        assert_eq!(default_server_url(&config, v6), "https://[::1]:7070");
        let given: SocketAddr = "10.0.0.5:7070".parse().unwrap();
        assert_eq!(default_server_url(&config, given), "https://10.0.0.5:7070");
        config.peers = vec!["b:7070".into(), "a:7070".into(), "c:7070".into()];
        assert_eq!(
            default_server_url(&config, given),
            "https://a:7070,https://b:7070,https://c:7070"
        );
    }

    #[test]
    fn the_cluster_label_depends_on_the_peer_token_only() {
        let a = cluster_label(&ClusterToken::new("peer-secret"));
        assert_eq!(a, cluster_label(&ClusterToken::new("peer-secret")));
        assert_ne!(a, cluster_label(&ClusterToken::new("another")));
        assert_eq!(a.len(), 16);
        assert!(!a.contains("peer-secret"));
    }
}
