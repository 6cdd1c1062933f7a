//! Starting and stopping a server.

use crate::api;
use crate::auth::ClusterToken;
use crate::background;
use crate::config::ServerConfig;
use crate::identity::{MemberState, ServerIdentity};
use crate::join_target::JoinTarget;
use crate::node::Node;
use crate::output::OutputStore;
use crate::output_replication::OutputReplicator;
use crate::proposer::Proposer;
use crate::raft::{LogStore, NetworkFactory, Raft, StateStore, StorageHealth};
use crate::retention::OutputReaper;
use crate::sessions::Sessions;
use drover_sched::SchedulerConfig;
use openraft::{BasicNode, SnapshotPolicy};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("cannot use the data directory {path}: {source}")]
    DataDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot open the log store {path}: {message}")]
    Store { path: PathBuf, message: String },
    #[error("raft: {0}")]
    Raft(String),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("no leader was elected within {0:?}")]
    NoLeader(Duration),
    #[error(transparent)]
    Timing(#[from] crate::config::TimingError),
    #[error(transparent)]
    Peers(#[from] crate::config::PeersError),
    #[error(transparent)]
    Identity(#[from] crate::identity::IdentityError),
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
    /// A server of a group cannot make its own CA: the others would not trust it.
    #[error(
        "this server forms or joins a group, but {} holds no server certificate: every server of a group needs one signed by the group's one CA. Make the CA once with `drover tls ca create --out CA_DIR`, then for each server `drover tls cert create server --ca-dir CA_DIR --host HOST --out {}` (HOST: the name or address the others and the clients dial); or pass --insecure-http on a trusted network",
        dir.display(), dir.display()
    )]
    GroupWithoutCertificates { dir: PathBuf },
    /// `--object-store` is malformed or the store does not answer.
    #[error(transparent)]
    ObjectStore(#[from] crate::blob::BlobError),
    /// `--tls-dir` names a directory without the server's certificate.
    #[error(
        "no server certificate in {} (--tls-dir): make one with `drover tls cert create server --ca-dir CA_DIR --host HOST --out {}`",
        dir.display(), dir.display()
    )]
    NoCertificates { dir: PathBuf },
    #[error(
        "--token (or DROVER_TOKEN) holds a client token (drv_…); a server takes the cluster token there: unset DROVER_TOKEN or pass the cluster token"
    )]
    ClientTokenAsClusterToken,
    #[error("a file task on the data directory failed: {0}")]
    FileTask(tokio::task::JoinError),
    /// The peer list changed under a data directory: the position gives another id.
    #[error(
        "this data directory belongs to node {stored}, but the peer list makes this server node {given}; give the same --peers as when the group was formed (ids are positions in the sorted list), or use a fresh data directory"
    )]
    NodeIdChanged { stored: u64, given: u64 },
    /// Servers of one group must share both tokens, so none may invent its own.
    #[error(
        "a group of servers needs the same {what} on every server: pass {how}, or put it in the file {file} of each data directory"
    )]
    SharedSecret {
        what: &'static str,
        how: &'static str,
        file: PathBuf,
    },
}

/// A server that is up: its address, and how to stop it.
#[derive(Debug)]
pub struct RunningServer {
    pub addr: SocketAddr,
    pub node: Arc<Node>,
    stop: Option<oneshot::Sender<()>>,
    http: JoinHandle<()>,
}

impl RunningServer {
    /// `https://ADDR`, or `http://ADDR` for a server without TLS.
    pub fn url(&self) -> String {
        self.node.config.peer_url(&self.addr.to_string())
    }

    /// Stops serving, takes a snapshot of what was applied since the last one, and shuts
    /// raft down cleanly.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = (&mut self.http).await;
        snapshot_before_stop(&self.node.raft, self.node.state.last_applied()).await;
        // A write riding out a full disk gives up, or raft would never stop.
        self.node.storage.stop();
        let _ = self.node.raft.shutdown().await;
    }
}

/// A restart restores the latest snapshot, then re-applies every entry after it: with
/// big entries (a job of 10,000 tasks is one) that tail can dominate the restart. So a
/// clean stop snapshots what was applied since the last snapshot first (bounded: a
/// stop is not held up for long by a slow disk).
async fn snapshot_before_stop(raft: &Raft, applied: Option<openraft::LogId<u64>>) {
    let Some(applied) = applied else { return };
    let covered = raft.metrics().borrow().snapshot.map(|s| s.index);
    if covered >= Some(applied.index) {
        return;
    }
    if raft.trigger().snapshot().await.is_err() {
        return;
    }
    let done = raft
        .wait(Some(Duration::from_secs(60)))
        .metrics(
            |m| m.snapshot.map(|s| s.index) >= Some(applied.index),
            "a snapshot of everything applied",
        )
        .await;
    if let Err(e) = done {
        tracing::warn!("no snapshot before stopping ({e}); the next start re-applies the log tail");
    }
}

/// Opens the data directory, starts raft (initializing a one-server cluster on first
/// start), the background loops and the HTTP listener; returns once this server leads.
pub async fn start(mut config: ServerConfig) -> Result<RunningServer, ServerError> {
    // reqwest's clients need a process-wide rustls provider even for plain HTTP.
    drover_client::tls::install_provider();
    config.validate_timing()?;
    config.resolve_peers()?;
    // Before anything else starts: a bad URL or an unreachable bucket stops the start.
    let archive = match &config.object_store {
        Some(c) => {
            let blobs = c.open_checked().await?;
            tracing::info!(store = %blobs.describe(), "ended attempts' output is archived in the object store");
            Some(Arc::new(crate::output_archive::OutputArchive::new(blobs)))
        }
        None => None,
    };
    let dir = config.data_dir.clone();
    let data_err = |source| ServerError::DataDir {
        path: dir.clone(),
        source,
    };
    std::fs::create_dir_all(&dir).map_err(data_err)?;
    let stored = blocking({
        let dir = dir.clone();
        move || ServerIdentity::load(&dir)
    })
    .await?;
    if let Some(stored) = &stored {
        if !config.peers.is_empty() && stored.node_id != config.node_id && !stored.joined {
            return Err(ServerError::NodeIdChanged {
                stored: stored.node_id,
                given: config.node_id,
            });
        }
        config.node_id = stored.node_id;
        if stored.joined && config.join.is_none() {
            // It joined a group once: it belongs to it, with or without `--join`.
            config.join = Some(String::new());
        }
    }
    let removed = stored
        .as_ref()
        .is_some_and(|s| s.state == MemberState::Removed);
    let pending = blocking({
        let dir = dir.clone();
        move || JoinTarget::load(&dir)
    })
    .await?;
    if let Some(pending) = pending
        && config.join.as_deref().is_none_or(str::is_empty)
        && !removed
    {
        // It died while joining (before it was offered an id, or before it became a
        // voter): it goes on asking the member it asked, with or without `--join`.
        tracing::info!(group = %pending.address, "resuming a join that did not finish");
        config.join = Some(pending.address);
    }
    let clustered = config.peers.len() > 1 || config.join.is_some();
    let token_path = ClusterToken::path(&dir);
    let peer_path = ClusterToken::peer_path(&dir);
    let token = match &config.token {
        // A client token in DROVER_TOKEN (set for the CLI) must not become the cluster
        // token: it would never match, since `drv_` credentials are looked up as
        // client tokens.
        Some(t) if t.trim().starts_with(crate::auth::CLIENT_TOKEN_PREFIX) => {
            return Err(ServerError::ClientTokenAsClusterToken);
        }
        Some(t) => ClusterToken::new(t),
        None if clustered => ClusterToken::load(&token_path)
            .map_err(data_err)?
            .ok_or_else(|| ServerError::SharedSecret {
                what: "cluster token",
                how: "--token (or DROVER_TOKEN)",
                file: token_path.clone(),
            })?,
        None => ClusterToken::load_or_create(&dir).map_err(data_err)?,
    };
    let peer_token = match &config.peer_token {
        Some(t) => {
            let t = ClusterToken::new(t);
            t.store(&peer_path).map_err(data_err)?;
            t
        }
        None if clustered => ClusterToken::load(&peer_path)
            .map_err(data_err)?
            .ok_or_else(|| ServerError::SharedSecret {
                what: "peer token",
                how: "--peer-token (or DROVER_PEER_TOKEN)",
                file: peer_path.clone(),
            })?,
        None => ClusterToken::load_or_create_at(&peer_path).map_err(data_err)?,
    };
    if peer_token.matches(token.as_str()) {
        return Err(ServerError::SharedSecret {
            what: "peer token, different from the cluster token,",
            how: "a --peer-token that is not the --token",
            file: peer_path.clone(),
        });
    }
    let tls = resolve_tls(&config, clustered).await?;
    config.scheme = if tls.is_some() { "https" } else { "http" };
    // Every call to another server (raft, forwarding, output copies, probes) trusts
    // the cluster's CA only and presents this server's certificate.
    let peer_http = |connect_timeout: Duration| {
        let builder = reqwest::Client::builder()
            .tcp_nodelay(true)
            .connect_timeout(connect_timeout);
        match &tls {
            Some(t) => builder.tls_backend_preconfigured(t.peer_client()),
            None => builder,
        }
        .build()
        .map_err(|e| ServerError::Raft(e.to_string()))
    };
    // Bound before raft starts: a server waiting to join must answer the leader's offer
    // of an id before it can open its log under that id.
    let std_listener =
        std::net::TcpListener::bind(config.listen).map_err(|source| ServerError::Bind {
            addr: config.listen,
            source,
        })?;
    let bind_err = |source| ServerError::Bind {
        addr: config.listen,
        source,
    };
    std_listener.set_nonblocking(true).map_err(bind_err)?;
    let addr = std_listener.local_addr().map_err(bind_err)?;
    let credentials = crate::auth::Credentials {
        cluster: token.clone(),
        peer: peer_token.clone(),
        session: crate::ui::session::SessionKey::new(token.clone()),
        // Only the raft routes are served until the node exists (see `joining.rs`).
        acl: None,
    };
    if let Some(group) = config.join.clone().filter(|g| !g.is_empty() && !removed) {
        // Remembered before asking: a restart at any later step asks again by itself.
        blocking({
            let (target, dir) = (
                JoinTarget {
                    address: group.clone(),
                },
                dir.clone(),
            );
            move || target.store(&dir)
        })
        .await?;
        tokio::spawn(crate::joining::ask_to_join(
            group,
            addr.to_string(),
            peer_token.clone(),
            dir.clone(),
            peer_http(Duration::from_secs(2))?,
            config.scheme,
        ));
    }
    let identity = match stored {
        Some(identity) => identity,
        None if config.join.is_some() => {
            crate::joining::await_adoption(
                &std_listener,
                &dir,
                credentials.clone(),
                tls.as_ref().map(|t| t.server_config()),
            )
            .await?
        }
        None => {
            let identity = ServerIdentity {
                node_id: config.node_id,
                state: MemberState::Member,
                joined: false,
            };
            blocking({
                let (identity, dir) = (identity.clone(), dir.clone());
                move || identity.store(&dir)
            })
            .await?;
            identity
        }
    };
    config.node_id = identity.node_id;

    let db_path = dir.join("raft.redb");
    // Created whole or not at all: a first start killed mid-creation must not leave a
    // file that stops every later start.
    let created = tokio::task::spawn_blocking({
        let db_path = db_path.clone();
        move || crate::raft::log_file::ensure_created(&db_path)
    })
    .await
    .map_err(ServerError::FileTask)?;
    created.map_err(|e| ServerError::Store {
        path: db_path.clone(),
        message: e.to_string(),
    })?;
    let storage = Arc::new(StorageHealth::default());
    let log_store = LogStore::open(&db_path, storage.clone()).map_err(|e| ServerError::Store {
        path: db_path.clone(),
        message: e.to_string(),
    })?;
    let (dispatch_tx, dispatch_rx) = tokio::sync::mpsc::unbounded_channel();
    let sched_config = SchedulerConfig {
        limits: config.limits.clone(),
        policy: config.policy.clone(),
    };
    let (retired_sink, output_reaper) = OutputReaper::new(dir.join("output"));
    // Reading and decoding the snapshot takes a while with a big state: off the runtime.
    let open_dir = dir.clone();
    let state_store = tokio::task::spawn_blocking(move || {
        StateStore::open(&open_dir, sched_config, dispatch_tx).map_err(|e| e.to_string())
    })
    .await
    .map_err(|e| e.to_string())
    .and_then(|r| r)
    .map_err(|message| ServerError::Store {
        path: dir.clone(),
        message,
    })?
    .with_storage_health(storage.clone())
    .send_retired_to(retired_sink);
    let shared = state_store.shared();
    output_reaper
        .spawn(shared.clone())
        .map_err(|e| ServerError::Store {
            path: dir.join("output"),
            message: e.to_string(),
        })?;
    shared.events().set_capacity(config.events_retained);

    let raft_config = openraft::Config {
        cluster_name: "drover".into(),
        // A follower that heard from a leader calls an election only after
        // `election_timeout_max` (openraft's leader lease, during which it also refuses
        // to vote) plus a random timeout in [min, max): here 1.5 to 2 s of silence
        // (was 3 to 4 s). That is the bulk of a failover (issue target: median 3 s, p99
        // 5 s from kill -9 to an accepted write), and still six heartbeats, so a loaded
        // machine does not call spurious elections. The heartbeat stays at 250 ms:
        // openraft bounds each append (fsync on the follower included) by it. Our own
        // lease (`node::LEASE`, worker fencing) does not depend on these.
        heartbeat_interval: 250,
        election_timeout_min: 500,
        election_timeout_max: 1000,
        snapshot_policy: SnapshotPolicy::LogsSinceLast(config.snapshot_every),
        max_in_snapshot_log_to_keep: config.keep_after_snapshot,
        max_payload_entries: 64,
        // A snapshot travels as binary chunks of 4 MiB, each one HTTP request; the last
        // one's answer waits for the follower to check, decode and restore the whole
        // state (seconds at a million tasks), far beyond openraft's 200 ms default.
        snapshot_max_chunk_size: 4 << 20,
        install_snapshot_timeout: 60_000,
        ..Default::default()
    }
    .validate()
    .map_err(|e| ServerError::Raft(e.to_string()))?;
    let raft = Raft::new(
        config.node_id,
        Arc::new(raft_config),
        NetworkFactory::new(
            peer_token.as_str(),
            peer_http(Duration::from_secs(1))?,
            config.scheme,
        ),
        log_store,
        state_store,
    )
    .await
    .map_err(|e| ServerError::Raft(e.to_string()))?;

    let listener = tokio::net::TcpListener::from_std(std_listener).map_err(bind_err)?;

    let initialized = raft
        .is_initialized()
        .await
        .map_err(|e| ServerError::Raft(e.to_string()))?;
    let http = peer_http(Duration::from_secs(1))?;
    if clustered && !initialized && config.node_id == 1 && config.peers.len() > 1 {
        // Exactly one initializer: the lowest address, once a majority answers.
        tokio::spawn(initialize_group(raft.clone(), http.clone(), config.clone()));
    } else if !clustered && !initialized {
        let members = BTreeMap::from([(
            config.node_id,
            BasicNode {
                addr: addr.to_string(),
            },
        )]);
        raft.initialize(members)
            .await
            .map_err(|e| ServerError::Raft(e.to_string()))?;
    } else if !clustered {
        // A server alone that restarts is its only voter: it need not wait out an
        // election timeout (1-2 s of the restart) to lead again.
        let _ = raft.trigger().elect().await;
    }
    let proposer = Proposer::start(raft.clone(), shared.clone(), storage.clone());
    let output = Arc::new(OutputStore::new(dir.join("output")));
    // Output goes to every other server of the group (outside the log).
    let others: Vec<String> = config
        .sorted_peers()
        .into_iter()
        .enumerate()
        .filter(|(i, _)| *i as u64 + 1 != config.node_id)
        .map(|(_, addr)| config.peer_url(&addr))
        .collect();
    let replicator = OutputReplicator::start(others, http.clone(), peer_token.as_str().to_string());
    let node = Arc::new(Node {
        config: config.clone(),
        raft: raft.clone(),
        state: shared,
        proposer,
        sessions: Sessions::default(),
        checkpoints: Arc::new(crate::checkpoint::CheckpointStore::new(
            dir.join("checkpoints"),
        )),
        output,
        replicator,
        token,
        task_signer: crate::worker_identity::task_signer(&peer_token),
        peer_token,
        http,
        confirmed: std::sync::Mutex::new(None),
        storage,
        changes: Default::default(),
        removed: Default::default(),
        blobs: match &archive {
            Some(a) => a.blobs().clone(),
            None => crate::blob::BlobStore::Directory(crate::blob::DirectoryBlobs::new(
                dir.join("blobs"),
            )),
        },
        archive: archive.clone(),
        autoscale: Arc::new(crate::autoscale::AutoscaleState::new(
            config.autoscale.as_ref(),
        )),
    });
    if identity.state == MemberState::Removed {
        node.mark_removed();
    }
    tokio::spawn(background::dispatch_loop(node.clone(), dispatch_rx));
    tokio::spawn(background::liveness_loop(node.clone()));
    tokio::spawn(crate::retention::retention_loop(node.clone()));
    // (In a server alone the lease loop only watches: a group may grow from it.)
    tokio::spawn(background::lease_loop(node.clone()));
    tokio::spawn(background::membership_watch(node.clone()));
    if let Some(archive) = archive {
        tokio::spawn(crate::output_archive::archive_loop(node.clone(), archive));
    }
    if let Some(autoscale) = config.autoscale.clone() {
        let url = autoscale
            .server_url
            .clone()
            .unwrap_or_else(|| crate::autoscale::scaler::default_server_url(&config, addr));
        tokio::spawn(crate::autoscale::scaler::run(node.clone(), autoscale, url));
    }

    // Let the CLI on this machine find the server without being told.
    let _ = std::fs::write(
        dir.join("endpoint"),
        format!("{}\n", config.peer_url(&addr.to_string())),
    );

    let app = api::router(node.clone());
    let (stop, stopped) = oneshot::channel::<()>();
    let server_tls = tls.as_ref().map(|t| t.server_config());
    let header_read_timeout = config.input_limits.header_read_timeout;
    let http = tokio::spawn(async move {
        let stop = async {
            let _ = stopped.await;
        };
        if let Err(e) =
            crate::tls::listener::serve(listener, app, server_tls, header_read_timeout, stop).await
        {
            tracing::error!("the HTTP server failed: {e}");
        }
    });

    if clustered || identity.state == MemberState::Removed {
        // The group forms (or this server rejoins it) in the background: serving
        // meanwhile lets the others reach this one.
        tracing::info!(%addr, node_id = config.node_id, peers = %config.sorted_peers().join(","), "drover server is up; joining its group");
    } else {
        let wait = Duration::from_secs(10);
        raft.wait(Some(wait))
            .current_leader(config.node_id, "this server leads")
            .await
            .map_err(|_| ServerError::NoLeader(wait))?;
        tracing::info!(%addr, data_dir = %dir.display(), "drover server is up");
    }
    Ok(RunningServer {
        addr,
        node,
        stop: Some(stop),
        http,
    })
}

/// The listener's TLS settings per `config.tls` (`None`: plain HTTP), creating a CA
/// and a certificate where that is safe: for a server alone (`clustered` false) or
/// `drover up`. Reads and key generation run off the async threads.
async fn resolve_tls(
    config: &ServerConfig,
    clustered: bool,
) -> Result<Option<crate::tls::TlsSettings>, ServerError> {
    use crate::config::TlsMode;
    use crate::tls::TlsSettings;
    let listen = config.listen.ip();
    let paths = match &config.tls {
        TlsMode::Insecure => {
            tracing::warn!(
                "serving plain HTTP (--insecure-http): tokens, task specs and output cross the network unencrypted and unauthenticated"
            );
            return Ok(None);
        }
        TlsMode::Auto(paths) | TlsMode::Required(paths) if paths.exist() => (paths.clone(), false),
        TlsMode::Auto(paths) if clustered => {
            return Err(ServerError::GroupWithoutCertificates {
                dir: paths.dir.clone(),
            });
        }
        TlsMode::Auto(paths) => {
            tracing::info!(
                dir = %paths.dir.display(),
                "no server certificate yet: creating a CA and a certificate for this machine (clients here find ca.crt by themselves; give it to clients elsewhere with --ca)"
            );
            (paths.clone(), true)
        }
        TlsMode::Required(paths) => {
            return Err(ServerError::NoCertificates {
                dir: paths.dir.clone(),
            });
        }
        TlsMode::CreateLocal(paths) => (paths.clone(), true),
    };
    let (paths, create) = paths;
    let settings = tokio::task::spawn_blocking(move || {
        if create {
            paths.ensure_local(Some(listen))?;
        }
        TlsSettings::load(&paths)
    })
    .await
    .map_err(ServerError::FileTask)??;
    tracing::info!(dir = %settings.paths.dir.display(), "serving TLS");
    Ok(Some(settings))
}

/// Runs file work off the async threads.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, crate::identity::IdentityError> + Send + 'static,
) -> Result<T, ServerError> {
    match tokio::task::spawn_blocking(work).await {
        Ok(r) => r.map_err(ServerError::from),
        Err(e) => Err(ServerError::FileTask(e)),
    }
}

/// Run by the server with the lowest address of a new group: once a majority of the
/// servers (itself included) answer, makes every listed server a voting member. The
/// others never initialize; they learn the membership from the leader's first append.
async fn initialize_group(raft: Raft, http: reqwest::Client, config: ServerConfig) {
    let peers = config.sorted_peers();
    let majority = peers.len() / 2 + 1;
    loop {
        let mut up = 1;
        for (i, addr) in peers.iter().enumerate() {
            if i as u64 + 1 == config.node_id {
                continue;
            }
            let probe = http
                .get(format!("{}/v1/health", config.peer_url(addr)))
                .timeout(Duration::from_millis(500))
                .send()
                .await;
            if probe.is_ok_and(|r| r.status().is_success()) {
                up += 1;
            }
        }
        if up >= majority {
            break;
        }
        tracing::info!(
            up,
            majority,
            "waiting for a majority of the servers before forming the group"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let members: BTreeMap<u64, BasicNode> = peers
        .iter()
        .enumerate()
        .map(|(i, addr)| (i as u64 + 1, BasicNode { addr: addr.clone() }))
        .collect();
    match raft.initialize(members).await {
        Ok(()) => tracing::info!("formed the group of {} servers", peers.len()),
        Err(e) => tracing::warn!("could not form the group: {e}"),
    }
}
