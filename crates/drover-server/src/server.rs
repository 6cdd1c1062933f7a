//! Starting and stopping a server.

use crate::api;
use crate::auth::ClusterToken;
use crate::background;
use crate::config::ServerConfig;
use crate::node::Node;
use crate::output::OutputStore;
use crate::proposer::Proposer;
use crate::raft::{LogStore, NetworkFactory, Raft, StateStore};
use crate::retention::OutputReaper;
use crate::sessions::Sessions;
use axum::serve::ListenerExt;
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
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops serving and shuts raft down cleanly.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = (&mut self.http).await;
        let _ = self.node.raft.shutdown().await;
    }
}

/// Opens the data directory, starts raft (initializing a one-server cluster on first
/// start), the background loops and the HTTP listener; returns once this server leads.
pub async fn start(mut config: ServerConfig) -> Result<RunningServer, ServerError> {
    config.validate_timing()?;
    config.resolve_peers()?;
    let clustered = config.peers.len() > 1;
    let dir = config.data_dir.clone();
    let data_err = |source| ServerError::DataDir {
        path: dir.clone(),
        source,
    };
    std::fs::create_dir_all(&dir).map_err(data_err)?;
    let token_path = ClusterToken::path(&dir);
    let peer_path = ClusterToken::peer_path(&dir);
    let token = match &config.token {
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
    let db_path = dir.join("raft.redb");
    let db = redb::Database::create(&db_path).map_err(|e| ServerError::Store {
        path: db_path.clone(),
        message: e.to_string(),
    })?;
    let log_store = LogStore::open(Arc::new(db)).map_err(|e| ServerError::Store {
        path: db_path.clone(),
        message: e.to_string(),
    })?;
    let (dispatch_tx, dispatch_rx) = tokio::sync::mpsc::unbounded_channel();
    let sched_config = SchedulerConfig {
        limits: config.limits.clone(),
        policy: config.policy.clone(),
    };
    let (retired_sink, output_reaper) = OutputReaper::new(dir.join("output"));
    let state_store = StateStore::open(&dir, sched_config, dispatch_tx)
        .map_err(|e| ServerError::Store {
            path: dir.clone(),
            message: e.to_string(),
        })?
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
        heartbeat_interval: 250,
        election_timeout_min: 1000,
        election_timeout_max: 2000,
        snapshot_policy: SnapshotPolicy::LogsSinceLast(config.snapshot_every),
        max_in_snapshot_log_to_keep: config.keep_after_snapshot,
        max_payload_entries: 64,
        // A snapshot travels as JSON in 1 MiB chunks; sending one and, for the last,
        // restoring the state from it may take far longer than openraft's 200 ms default.
        snapshot_max_chunk_size: 1 << 20,
        install_snapshot_timeout: 10_000,
        ..Default::default()
    }
    .validate()
    .map_err(|e| ServerError::Raft(e.to_string()))?;
    let raft = Raft::new(
        config.node_id,
        Arc::new(raft_config),
        NetworkFactory::new(peer_token.as_str()),
        log_store,
        state_store,
    )
    .await
    .map_err(|e| ServerError::Raft(e.to_string()))?;

    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|source| ServerError::Bind {
            addr: config.listen,
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| ServerError::Bind {
        addr: config.listen,
        source,
    })?;

    let initialized = raft
        .is_initialized()
        .await
        .map_err(|e| ServerError::Raft(e.to_string()))?;
    let http = reqwest::Client::builder()
        .tcp_nodelay(true)
        .connect_timeout(Duration::from_secs(1))
        .build()
        .map_err(|e| ServerError::Raft(e.to_string()))?;
    if clustered && !initialized && config.node_id == 1 {
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
    }
    let proposer = Proposer::start(raft.clone(), shared.clone());
    let output = OutputStore::new(dir.join("output"));
    let node = Arc::new(Node {
        config: config.clone(),
        raft: raft.clone(),
        state: shared,
        proposer,
        sessions: Sessions::default(),
        output,
        token,
        peer_token,
        http,
        confirmed: std::sync::Mutex::new(None),
    });
    tokio::spawn(background::dispatch_loop(node.clone(), dispatch_rx));
    tokio::spawn(background::liveness_loop(node.clone()));
    tokio::spawn(crate::retention::retention_loop(node.clone()));
    if clustered {
        tokio::spawn(background::lease_loop(node.clone()));
    }

    // Let the CLI on this machine find the server without being told.
    let _ = std::fs::write(dir.join("endpoint"), format!("http://{addr}\n"));

    let app = api::router(node.clone());
    let (stop, stopped) = oneshot::channel::<()>();
    let http = tokio::spawn(async move {
        // Small messages (a worker's "started", a server's "start") must leave at once:
        // with Nagle's algorithm and delayed ACKs each exchange stalls ~40 ms.
        let listener = listener.tap_io(|tcp| {
            let _ = tcp.set_nodelay(true);
        });
        let serve = axum::serve(listener, app).with_graceful_shutdown(async {
            let _ = stopped.await;
        });
        if let Err(e) = serve.await {
            tracing::error!("the HTTP server failed: {e}");
        }
    });

    if clustered {
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
                .get(format!("http://{addr}/v1/health"))
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
