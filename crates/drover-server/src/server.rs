//! Starting and stopping a server.

use crate::api;
use crate::auth::ClusterToken;
use crate::background;
use crate::config::ServerConfig;
use crate::node::Node;
use crate::output::OutputStore;
use crate::proposer::Proposer;
use crate::raft::{LogStore, NetworkFactory, Raft, StateStore};
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
pub async fn start(config: ServerConfig) -> Result<RunningServer, ServerError> {
    config.validate_timing()?;
    let dir = config.data_dir.clone();
    let data_err = |source| ServerError::DataDir {
        path: dir.clone(),
        source,
    };
    std::fs::create_dir_all(&dir).map_err(data_err)?;
    let token = match &config.token {
        Some(t) => ClusterToken::new(t),
        None => ClusterToken::load_or_create(&dir).map_err(data_err)?,
    };
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
    let state_store =
        StateStore::open(&dir, sched_config, dispatch_tx).map_err(|e| ServerError::Store {
            path: dir.clone(),
            message: e.to_string(),
        })?;
    let shared = state_store.shared();
    shared.events().set_capacity(config.events_retained);

    let raft_config = openraft::Config {
        cluster_name: "drover".into(),
        heartbeat_interval: 250,
        election_timeout_min: 1000,
        election_timeout_max: 2000,
        snapshot_policy: SnapshotPolicy::LogsSinceLast(20_000),
        max_in_snapshot_log_to_keep: 1_000,
        max_payload_entries: 64,
        ..Default::default()
    }
    .validate()
    .map_err(|e| ServerError::Raft(e.to_string()))?;
    let raft = Raft::new(
        config.node_id,
        Arc::new(raft_config),
        NetworkFactory,
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

    if !raft
        .is_initialized()
        .await
        .map_err(|e| ServerError::Raft(e.to_string()))?
    {
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
    let proposer = Proposer::start(raft.clone());
    let output = OutputStore::new(dir.join("output"));
    let node = Arc::new(Node {
        config: config.clone(),
        raft: raft.clone(),
        state: shared,
        proposer,
        sessions: Sessions::default(),
        output,
        token,
    });
    tokio::spawn(background::dispatch_loop(node.clone(), dispatch_rx));
    tokio::spawn(background::liveness_loop(node.clone()));

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

    let wait = Duration::from_secs(10);
    raft.wait(Some(wait))
        .current_leader(config.node_id, "this server leads")
        .await
        .map_err(|_| ServerError::NoLeader(wait))?;
    tracing::info!(%addr, data_dir = %dir.display(), "drover server is up");
    Ok(RunningServer {
        addr,
        node,
        stop: Some(stop),
        http,
    })
}
