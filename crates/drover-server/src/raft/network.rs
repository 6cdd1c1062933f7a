//! How servers talk to each other: openraft's RPCs as JSON over HTTP, on the same
//! listener as the API, under `/v1/raft/` (see `api/raft.rs` for the receiving side).
//!
//! Every request carries the peer token (`Authorization: Bearer …`), a credential
//! distinct from the cluster token that clients and workers hold; the receiving server
//! accepts nothing else on these routes. Every request is bounded by openraft's soft
//! TTL for that RPC ([`RPCOption::soft_ttl`]).
//!
//! JSON rather than postcard: openraft's types are serde-derived for self-describing
//! formats, the API already speaks JSON through the same client (reqwest) and server
//! (axum), and a captured RPC can be read with curl. Entries are batched (at most
//! `max_payload_entries` per append), so the size overhead stays small; only snapshot
//! chunks (bytes as a JSON array) pay ~3× and they are rare.

use super::TypeConfig;
use openraft::BasicNode;
use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// The paths of the three RPCs.
pub const APPEND_PATH: &str = "/v1/raft/append";
pub const VOTE_PATH: &str = "/v1/raft/vote";
pub const SNAPSHOT_PATH: &str = "/v1/raft/snapshot";
/// Membership and reads between servers (same peer token; see `api/raft.rs`).
pub const PEER_JOIN_PATH: &str = "/v1/raft/join";
pub const PEER_ADOPT_PATH: &str = "/v1/raft/adopt";
pub const PEER_REMOVED_PATH: &str = "/v1/raft/removed";
pub const PEER_READ_INDEX_PATH: &str = "/v1/raft/read-index";

/// Makes one [`Network`] per peer; they share one HTTP connection pool.
#[derive(Clone, Debug)]
pub struct NetworkFactory {
    http: reqwest::Client,
    peer_token: String,
}

impl NetworkFactory {
    pub fn new(peer_token: &str) -> NetworkFactory {
        let http = reqwest::Client::builder()
            .tcp_nodelay(true)
            .connect_timeout(std::time::Duration::from_secs(1))
            .build()
            .unwrap_or_default();
        NetworkFactory {
            http,
            peer_token: peer_token.to_string(),
        }
    }
}

/// The connection to one peer.
#[derive(Debug)]
pub struct Network {
    http: reqwest::Client,
    peer_token: String,
    target: u64,
    base: String,
}

/// Why an RPC did not get an answer.
#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    #[error("server {target} at {url} is unreachable: {source}")]
    Unreachable {
        target: u64,
        url: String,
        source: reqwest::Error,
    },
    #[error(
        "server {target} at {url} refused the peer token (HTTP {status}); all servers need the same --peer-token"
    )]
    Refused {
        target: u64,
        url: String,
        status: u16,
    },
    #[error("server {target} at {url} answered HTTP {status}")]
    Status {
        target: u64,
        url: String,
        status: u16,
    },
    #[error("server {target} at {url} sent an unreadable answer: {source}")]
    Body {
        target: u64,
        url: String,
        source: reqwest::Error,
    },
}

impl RaftNetworkFactory<TypeConfig> for NetworkFactory {
    type Network = Network;

    async fn new_client(&mut self, target: u64, node: &BasicNode) -> Network {
        Network {
            http: self.http.clone(),
            peer_token: self.peer_token.clone(),
            target,
            base: format!("http://{}", node.addr),
        }
    }
}

impl Network {
    async fn call<Req, Resp, E>(
        &self,
        path: &str,
        rpc: &Req,
        option: &RPCOption,
    ) -> Result<Resp, RPCError<u64, BasicNode, RaftError<u64, E>>>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let url = format!("{}{path}", self.base);
        let sent = self
            .http
            .post(&url)
            .bearer_auth(&self.peer_token)
            .timeout(option.soft_ttl())
            .json(rpc)
            .send()
            .await;
        let resp = match sent {
            Ok(r) => r,
            Err(source) if source.is_connect() => {
                return Err(RPCError::Unreachable(Unreachable::new(
                    &PeerError::Unreachable {
                        target: self.target,
                        url,
                        source,
                    },
                )));
            }
            Err(source) => {
                return Err(RPCError::Network(NetworkError::new(
                    &PeerError::Unreachable {
                        target: self.target,
                        url,
                        source,
                    },
                )));
            }
        };
        let status = resp.status().as_u16();
        if status == 401 || status == 403 {
            return Err(RPCError::Unreachable(Unreachable::new(
                &PeerError::Refused {
                    target: self.target,
                    url,
                    status,
                },
            )));
        }
        if status != 200 {
            return Err(RPCError::Network(NetworkError::new(&PeerError::Status {
                target: self.target,
                url,
                status,
            })));
        }
        let answer: Result<Resp, RaftError<u64, E>> = resp.json().await.map_err(|source| {
            RPCError::Network(NetworkError::new(&PeerError::Body {
                target: self.target,
                url: url.clone(),
                source,
            }))
        })?;
        answer.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }
}

impl RaftNetwork<TypeConfig> for Network {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<u64>, RPCError<u64, BasicNode, RaftError<u64>>> {
        self.call(APPEND_PATH, &rpc, &option).await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<u64>,
        RPCError<u64, BasicNode, RaftError<u64, InstallSnapshotError>>,
    > {
        self.call(SNAPSHOT_PATH, &rpc, &option).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<u64>,
        option: RPCOption,
    ) -> Result<VoteResponse<u64>, RPCError<u64, BasicNode, RaftError<u64>>> {
        self.call(VOTE_PATH, &rpc, &option).await
    }
}
