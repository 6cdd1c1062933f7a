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
//! `max_payload_entries` per append), so the size overhead stays small. Snapshot
//! chunks are the exception: their bytes travel as they are (see [`SnapshotChunk`]).

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
    /// `https` or `http`, as the server's own listener.
    scheme: &'static str,
}

impl NetworkFactory {
    /// `http`: the server's client for its peers (TLS with the cluster's CA and the
    /// server's certificate, when the listener speaks TLS).
    pub fn new(peer_token: &str, http: reqwest::Client, scheme: &'static str) -> NetworkFactory {
        NetworkFactory {
            scheme,
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

/// How one snapshot chunk travels: an `application/octet-stream` body made of a small
/// JSON envelope (the RPC without its data) and then the chunk's bytes, untouched.
///
/// ```text
/// u32 LE  envelope length E
/// E       the envelope: {"vote":…, "meta":…, "offset":…, "done":…} (JSON)
/// …       the chunk's bytes
/// ```
#[derive(Debug)]
pub struct SnapshotChunk;

#[derive(Serialize, serde::Deserialize)]
struct ChunkEnvelope {
    vote: openraft::Vote<u64>,
    meta: openraft::SnapshotMeta<u64, BasicNode>,
    offset: u64,
    done: bool,
}

/// Why a snapshot chunk's body could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ChunkError {
    #[error("the body is shorter than its envelope says")]
    Short,
    #[error("the envelope is not valid: {0}")]
    Envelope(#[from] serde_json::Error),
}

impl SnapshotChunk {
    pub const CONTENT_TYPE: &'static str = "application/octet-stream";

    pub fn encode(rpc: InstallSnapshotRequest<TypeConfig>) -> Result<Vec<u8>, ChunkError> {
        let envelope = serde_json::to_vec(&ChunkEnvelope {
            vote: rpc.vote,
            meta: rpc.meta,
            offset: rpc.offset,
            done: rpc.done,
        })?;
        let mut body = Vec::with_capacity(4 + envelope.len() + rpc.data.len());
        body.extend_from_slice(&(envelope.len() as u32).to_le_bytes());
        body.extend_from_slice(&envelope);
        body.extend_from_slice(&rpc.data);
        Ok(body)
    }

    pub fn decode(body: &[u8]) -> Result<InstallSnapshotRequest<TypeConfig>, ChunkError> {
        let len = body.get(..4).ok_or(ChunkError::Short)?;
        let len = u32::from_le_bytes([len[0], len[1], len[2], len[3]]) as usize;
        let envelope = body.get(4..4 + len).ok_or(ChunkError::Short)?;
        let e: ChunkEnvelope = serde_json::from_slice(envelope)?;
        Ok(InstallSnapshotRequest {
            vote: e.vote,
            meta: e.meta,
            offset: e.offset,
            data: body[4 + len..].to_vec(),
            done: e.done,
        })
    }
}

impl RaftNetworkFactory<TypeConfig> for NetworkFactory {
    type Network = Network;

    async fn new_client(&mut self, target: u64, node: &BasicNode) -> Network {
        Network {
            http: self.http.clone(),
            peer_token: self.peer_token.clone(),
            target,
            base: format!("{}://{}", self.scheme, node.addr),
        }
    }
}

/// An RPC's body: JSON, or a snapshot chunk's bytes.
enum Body<'a, Req> {
    Json(&'a Req),
    Bytes(Vec<u8>),
}

impl Network {
    async fn call<Req, Resp, E>(
        &self,
        path: &str,
        rpc: Body<'_, Req>,
        option: &RPCOption,
    ) -> Result<Resp, RPCError<u64, BasicNode, RaftError<u64, E>>>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let url = format!("{}{path}", self.base);
        let request = self
            .http
            .post(&url)
            .bearer_auth(&self.peer_token)
            .timeout(option.soft_ttl());
        let request = match rpc {
            Body::Json(rpc) => request.json(rpc),
            Body::Bytes(bytes) => request
                .header(reqwest::header::CONTENT_TYPE, SnapshotChunk::CONTENT_TYPE)
                .body(bytes),
        };
        let sent = request.send().await;
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
        mut rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<u64>, RPCError<u64, BasicNode, RaftError<u64>>> {
        // A follower that is behind is offered up to `max_payload_entries` entries at
        // once; several large ones together would not be taken in within the append's
        // limit (one heartbeat), every try would time out, and the follower would never
        // catch up. Send a bounded run and say how far it got: openraft sends the rest
        // next (a partial success).
        let keep = bounded_run(&rpc.entries, APPEND_BYTES);
        if keep < rpc.entries.len() {
            let last = rpc.entries[keep - 1].log_id;
            rpc.entries.truncate(keep);
            let answer = self.call(APPEND_PATH, Body::Json(&rpc), &option).await?;
            return Ok(match answer {
                AppendEntriesResponse::Success => AppendEntriesResponse::PartialSuccess(Some(last)),
                other => other,
            });
        }
        self.call(APPEND_PATH, Body::Json(&rpc), &option).await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<u64>,
        RPCError<u64, BasicNode, RaftError<u64, InstallSnapshotError>>,
    > {
        let body =
            SnapshotChunk::encode(rpc).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        self.call(SNAPSHOT_PATH, Body::<()>::Bytes(body), &option)
            .await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<u64>,
        option: RPCOption,
    ) -> Result<VoteResponse<u64>, RPCError<u64, BasicNode, RaftError<u64>>> {
        self.call(VOTE_PATH, Body::Json(&rpc), &option).await
    }
}

/// Most bytes (estimated) of entries sent in one append; see `append_entries`.
const APPEND_BYTES: usize = 512 << 10;

/// How many of `entries`, from the first, fit in `limit` estimated bytes (at least one).
fn bounded_run(entries: &[openraft::Entry<TypeConfig>], limit: usize) -> usize {
    let mut bytes = 0;
    for (i, e) in entries.iter().enumerate() {
        let b = match &e.payload {
            openraft::EntryPayload::Normal(entry) => crate::entry_size::entry(entry),
            _ => 64,
        };
        if i > 0 && bytes + b > limit {
            return i;
        }
        bytes += b;
    }
    entries.len()
}
