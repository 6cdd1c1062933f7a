//! The HTTP client.

use bytes::Bytes;
use drover_proto::api::{
    AddServer, CacheList, CacheRemoved, CancelResponse, ClusterSummary, CreatedToken, ErrorBody,
    Health, JobInfo, ServerChange, ServerInfo, SubmitResponse, TaskInfo, TaskList, TokenInfo,
    TokenList, TokenRequest, WorkerInfo,
};

/// The header a server removed from its group sets on its refusals.
const NOT_A_MEMBER: &str = "x-drover-not-a-member";

use drover_types::{JobSpec, PolicyConfig, TaskSpec};
use futures_util::Stream;
use reqwest::{Method, RequestBuilder, Response, StatusCode};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot reach the Drover server at {url}: {message}")]
    Unreachable { url: String, message: String },
    /// The server answered with an error.
    #[error("{}{message} (HTTP {status})", field.as_ref().map(|f| format!("{f}: ")).unwrap_or_default())]
    Api {
        status: u16,
        code: String,
        message: String,
        field: Option<String>,
    },
    /// The TLS configuration was refused by the HTTP client.
    #[error("cannot set up TLS: {0}")]
    Tls(String),
    #[error("unexpected answer from the server: {0}")]
    Decode(String),
    /// A submission kept failing (no server reachable, or no leader with a majority)
    /// for the whole retry window. It may or may not have been applied: submitting
    /// again with the same key is safe.
    #[error(
        "the submission was not acknowledged after retrying for {waited_ms} ms with Idempotency-Key {key}: {last}; it may or may not have been applied (submitting again with the same key is safe)"
    )]
    NotAcknowledged {
        key: String,
        waited_ms: u64,
        last: Box<ClientError>,
    },
    /// The event stream ended or went silent; `EventStream::resume` reconnects.
    #[error("the event stream from {url} was interrupted: {message}")]
    StreamLost { url: String, message: String },
}

impl ClientError {
    pub fn is_not_found(&self) -> bool {
        matches!(self, ClientError::Api { status: 404, .. })
    }

    /// Whether a keyed write may be sent again: the server could not be reached or
    /// answered mid-way, or it had no leader with a majority (503).
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            ClientError::Unreachable { .. } | ClientError::Api { status: 503, .. }
        )
    }

    /// The task or job existed and was retired (`410`, code `retired`).
    pub fn is_retired(&self) -> bool {
        matches!(self, ClientError::Api { status: 410, .. })
    }
}

/// How long a submission is retried, with its key, across a leader change or a
/// server that cannot reach the majority. An election takes a few seconds; a write to a
/// cut-off leader fails within about five.
pub const SUBMIT_RETRY_FOR: Duration = Duration::from_secs(10);
/// Pause between two tries of a submission.
const SUBMIT_RETRY_PAUSE: Duration = Duration::from_millis(250);
/// The request header carrying a submission's idempotency key.
pub const IDEMPOTENCY_HEADER: &str = "Idempotency-Key";

/// A fresh idempotency key: 128 random bits in hex (falls back to time, process id
/// and a counter if the system's random source fails).
pub fn new_idempotency_key() -> String {
    let mut bytes = [0u8; 16];
    if getrandom::fill(&mut bytes).is_err() {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos() as u64;
        bytes[..8].copy_from_slice(&nanos.to_le_bytes());
        bytes[8..12].copy_from_slice(&std::process::id().to_le_bytes());
        bytes[12..]
            .copy_from_slice(&(COUNTER.fetch_add(1, Ordering::Relaxed) as u32).to_le_bytes());
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Filters for listing tasks.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ListQuery {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub job: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
}

/// A client of a cluster: one server's URL, or several (comma-separated) for a
/// replicated group. Any server answers (a follower passes writes on to the leader);
/// when the one in use cannot be connected to, the request goes to the next one. Only
/// a request that was never sent is sent again, so a write is never applied twice by
/// the client's doing; but submissions carry an idempotency key, and those are sent
/// again (same key) after a lost answer or a 503, for up to [`SUBMIT_RETRY_FOR`]: the
/// server applies them once.
#[derive(Clone, Debug)]
pub struct Client {
    http: reqwest::Client,
    bases: Arc<[String]>,
    current: Arc<AtomicUsize>,
    base: String,
    token: Option<String>,
    /// Read the answering server's local state without the linearizability check.
    stale: bool,
}

impl Client {
    /// `base`: a server's URL, or several separated by commas.
    pub fn new(base: impl Into<String>, token: Option<String>) -> Client {
        crate::tls::install_provider();
        let http = Client::http_builder().build().unwrap_or_default();
        let base = base.into();
        let mut bases: Vec<String> = base
            .split(',')
            .map(|b| b.trim().trim_end_matches('/').to_string())
            .filter(|b| !b.is_empty())
            .collect();
        if bases.is_empty() {
            bases.push(base.trim_end_matches('/').to_string());
        }
        Client {
            http,
            base: bases.join(","),
            bases: bases.into(),
            current: Arc::new(AtomicUsize::new(0)),
            token,
            stale: false,
        }
    }

    fn http_builder() -> reqwest::ClientBuilder {
        reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(2))
            .pool_idle_timeout(Duration::from_secs(30))
    }

    /// Speaks TLS with this configuration (see [`crate::tls::client_config`]: the
    /// cluster's CA only) instead of checking servers against the system's roots.
    pub fn with_tls(mut self, tls: rustls::ClientConfig) -> Result<Client, ClientError> {
        self.http = Client::http_builder()
            .tls_backend_preconfigured(tls)
            .build()
            .map_err(|e| ClientError::Tls(e.to_string()))?;
        Ok(self)
    }

    /// Reads (GET) with `stale` set skip the server's linearizability check: faster,
    /// with no network round trip between servers, but a follower may answer from a
    /// state slightly behind the leader's (it may miss a write acknowledged
    /// a moment ago). By default every read sees every write acknowledged before it.
    pub fn stale(mut self, stale: bool) -> Client {
        self.stale = stale;
        self
    }

    /// The URL (or URLs, comma-separated) this client was given.
    pub fn base_url(&self) -> &str {
        &self.base
    }

    fn current_base(&self) -> &str {
        &self.bases[self.current.load(Ordering::Relaxed) % self.bases.len()]
    }

    pub(crate) fn request(&self, method: Method, path: &str) -> RequestBuilder {
        let stale = self.stale && method == Method::GET;
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.current_base()));
        if stale {
            req = req.query(&[("stale", "true")]);
        }
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        req
    }

    /// Sends to the server in use; if it cannot be connected to, to each other one in
    /// turn (remembering the first that answers).
    async fn send_any(&self, req: RequestBuilder) -> Result<Response, ClientError> {
        let (client, request) = req.build_split();
        let request = request.map_err(|e| ClientError::Decode(e.to_string()))?;
        let start = self.current.load(Ordering::Relaxed);
        let n = self.bases.len();
        let mut last = None;
        let mut not_member = None;
        for i in 0..n {
            let k = (start + i) % n;
            let Some(mut attempt) = request.try_clone() else {
                return client
                    .execute(request)
                    .await
                    .map_err(|e| self.unreachable(&e));
            };
            if i > 0 {
                let tail = &request.url().as_str()[self.bases[start % n].len()..];
                match reqwest::Url::parse(&format!("{}{tail}", self.bases[k])) {
                    Ok(url) => *attempt.url_mut() = url,
                    Err(_) => continue,
                }
            }
            match client.execute(attempt).await {
                // A server removed from the group serves nothing: the next one.
                Ok(resp) if n > 1 && resp.headers().contains_key(NOT_A_MEMBER) => {
                    not_member = Some(resp);
                }
                Ok(resp) => {
                    self.current.store(k, Ordering::Relaxed);
                    return Ok(resp);
                }
                Err(e) if e.is_connect() && n > 1 => last = Some(e),
                Err(e) => return Err(self.unreachable(&e)),
            }
        }
        if let Some(resp) = not_member {
            return Ok(resp);
        }
        Err(match last {
            Some(e) => self.unreachable(&e),
            None => ClientError::Unreachable {
                url: self.base.clone(),
                message: "no server URL".into(),
            },
        })
    }

    fn unreachable(&self, e: &reqwest::Error) -> ClientError {
        ClientError::Unreachable {
            url: self.base.clone(),
            message: root_cause(e),
        }
    }

    pub(crate) async fn send(&self, req: RequestBuilder) -> Result<Response, ClientError> {
        let resp = self.send_any(req).await?;
        if resp.status().is_success() {
            return Ok(resp);
        }
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        Err(match serde_json::from_str::<ErrorBody>(&text) {
            Ok(body) => ClientError::Api {
                status: status.as_u16(),
                code: body.error.code,
                message: body.error.message,
                field: body.error.field,
            },
            Err(_) => ClientError::Api {
                status: status.as_u16(),
                code: status.canonical_reason().unwrap_or("error").to_string(),
                message: text,
                field: None,
            },
        })
    }

    async fn json<T: DeserializeOwned>(&self, req: RequestBuilder) -> Result<T, ClientError> {
        let resp = self.send(req).await?;
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| ClientError::Decode(e.to_string()))?;
        serde_json::from_slice(&bytes).map_err(|e| ClientError::Decode(e.to_string()))
    }

    /// The servers of the replicated group, as the answering server sees them.
    pub async fn servers(&self) -> Result<Vec<ServerInfo>, ClientError> {
        self.json(self.request(Method::GET, "/v1/servers")).await
    }

    /// Adds a server that waits to join (`drover server --join`) to the group: returns
    /// once it is a voter.
    pub async fn add_server(&self, address: &str) -> Result<ServerChange, ClientError> {
        let body = AddServer {
            address: address.to_string(),
        };
        self.json(self.request(Method::POST, "/v1/servers").json(&body))
            .await
    }

    /// Removes a server from the group, by node id or address.
    pub async fn remove_server(&self, which: &str) -> Result<ServerChange, ClientError> {
        let path = format!("/v1/servers/{}", encode(which));
        self.json(self.request(Method::DELETE, &path)).await
    }

    pub async fn health(&self) -> Result<Health, ClientError> {
        self.json(self.request(Method::GET, "/v1/health")).await
    }

    /// Submits one task under a fresh idempotency key, retrying (same key) for up to
    /// [`SUBMIT_RETRY_FOR`]: it is created once however many tries it takes.
    pub async fn submit_task(&self, task: &TaskSpec) -> Result<SubmitResponse, ClientError> {
        self.submit_task_with_key(task, &new_idempotency_key())
            .await
    }

    /// Submits one task under the caller's idempotency key (see [`Client::submit_task`]).
    pub async fn submit_task_with_key(
        &self,
        task: &TaskSpec,
        key: &str,
    ) -> Result<SubmitResponse, ClientError> {
        self.submit_keyed("/v1/tasks", task, key).await
    }

    /// Submits a job under a fresh idempotency key (see [`Client::submit_task`]).
    pub async fn submit_job(&self, job: &JobSpec) -> Result<SubmitResponse, ClientError> {
        self.submit_job_with_key(job, &new_idempotency_key()).await
    }

    /// Submits a job under the caller's idempotency key.
    pub async fn submit_job_with_key(
        &self,
        job: &JobSpec,
        key: &str,
    ) -> Result<SubmitResponse, ClientError> {
        self.submit_keyed("/v1/jobs", job, key).await
    }

    /// Sends a submission with its key until it is answered, or refused for a reason
    /// that trying again cannot change, or [`SUBMIT_RETRY_FOR`] has passed. Sending it
    /// again after a lost answer is safe because the server dedupes by the key.
    async fn submit_keyed<T: Serialize>(
        &self,
        path: &str,
        body: &T,
        key: &str,
    ) -> Result<SubmitResponse, ClientError> {
        let body = serde_json::to_vec(body).map_err(|e| ClientError::Decode(e.to_string()))?;
        let start = std::time::Instant::now();
        loop {
            let req = self
                .request(Method::POST, path)
                .header(IDEMPOTENCY_HEADER, key)
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body.clone());
            match self.json(req).await {
                Err(e) if e.is_retryable() => {
                    if start.elapsed() + SUBMIT_RETRY_PAUSE >= SUBMIT_RETRY_FOR {
                        return Err(ClientError::NotAcknowledged {
                            key: key.to_string(),
                            waited_ms: start.elapsed().as_millis() as u64,
                            last: Box::new(e),
                        });
                    }
                    // The server in use may be the one cut off (or gone): try the next.
                    if self.bases.len() > 1 {
                        self.current.fetch_add(1, Ordering::Relaxed);
                    }
                    tokio::time::sleep(SUBMIT_RETRY_PAUSE).await;
                }
                other => return other,
            }
        }
    }

    pub async fn task(&self, reference: &str) -> Result<TaskInfo, ClientError> {
        self.json(self.request(Method::GET, &format!("/v1/tasks/{}", encode(reference))))
            .await
    }

    pub async fn list(&self, query: &ListQuery) -> Result<TaskList, ClientError> {
        self.json(self.request(Method::GET, "/v1/tasks").query(query))
            .await
    }

    pub async fn cancel_task(&self, reference: &str) -> Result<CancelResponse, ClientError> {
        self.json(self.request(
            Method::POST,
            &format!("/v1/tasks/{}/cancel", encode(reference)),
        ))
        .await
    }

    /// Resizes a running task's current attempt (dynamic resources). A refusal is an
    /// error with status 409 whose message says why.
    pub async fn resize_task(
        &self,
        reference: &str,
        body: &drover_proto::api::ResizeBody,
    ) -> Result<drover_proto::api::ResizeAnswer, ClientError> {
        self.json(
            self.request(
                Method::POST,
                &format!("/v1/tasks/{}/resize", encode(reference)),
            )
            .json(body),
        )
        .await
    }

    pub async fn job(&self, id: u64) -> Result<JobInfo, ClientError> {
        self.json(self.request(Method::GET, &format!("/v1/jobs/{id}")))
            .await
    }

    pub async fn cancel_job(&self, id: u64) -> Result<CancelResponse, ClientError> {
        self.json(self.request(Method::POST, &format!("/v1/jobs/{id}/cancel")))
            .await
    }

    pub async fn workers(&self) -> Result<Vec<WorkerInfo>, ClientError> {
        self.json(self.request(Method::GET, "/v1/workers")).await
    }

    /// The autoscaler of the answering server (see `drover server --autoscale`).
    pub async fn autoscale(&self) -> Result<drover_proto::autoscale::AutoscaleStatus, ClientError> {
        self.json(self.request(Method::GET, "/v1/autoscale")).await
    }

    /// Stops placing tasks on a worker (`w3`, `3` or its name); running ones finish.
    pub async fn drain_worker(&self, worker: &str) -> Result<(), ClientError> {
        let path = format!("/v1/workers/{}/drain", encode(worker));
        self.send(self.request(Method::POST, &path)).await?;
        Ok(())
    }

    /// Creates a join token (admin): `uses` workers may join with it within `ttl_ms`.
    pub async fn create_join_token(
        &self,
        ttl_ms: Option<u64>,
        uses: Option<u32>,
    ) -> Result<drover_proto::worker_identity::JoinTokenCreated, ClientError> {
        let body = drover_proto::worker_identity::JoinTokenRequest { ttl_ms, uses };
        self.json(self.request(Method::POST, "/v1/worker-tokens").json(&body))
            .await
    }

    /// The worker credentials and live join tokens (never their secrets).
    pub async fn worker_identities(
        &self,
    ) -> Result<drover_proto::worker_identity::WorkerIdentities, ClientError> {
        self.json(self.request(Method::GET, "/v1/worker-credentials"))
            .await
    }

    /// Revokes the credential of a worker (its name, or the credential's id).
    pub async fn revoke_worker_credential(&self, worker: &str) -> Result<(), ClientError> {
        let path = format!("/v1/worker-credentials/{}", encode(worker));
        self.send(self.request(Method::DELETE, &path)).await?;
        Ok(())
    }

    /// Places tasks on a drained worker (`w3`, `3` or its name) again.
    pub async fn resume_worker(&self, worker: &str) -> Result<(), ClientError> {
        let path = format!("/v1/workers/{}/resume", encode(worker));
        self.send(self.request(Method::POST, &path)).await?;
        Ok(())
    }

    pub async fn cluster(&self) -> Result<ClusterSummary, ClientError> {
        self.json(self.request(Method::GET, "/v1/cluster")).await
    }

    pub async fn policy(&self) -> Result<PolicyConfig, ClientError> {
        self.json(self.request(Method::GET, "/v1/policy")).await
    }

    /// Creates a client ACL token (admin only); the answer holds its secret, once.
    pub async fn create_token(&self, req: &TokenRequest) -> Result<CreatedToken, ClientError> {
        self.json(self.request(Method::POST, "/v1/tokens").json(req))
            .await
    }

    /// Every client ACL token (never their secrets).
    pub async fn tokens(&self) -> Result<TokenList, ClientError> {
        self.json(self.request(Method::GET, "/v1/tokens")).await
    }

    /// The result cache's live entries, oldest first.
    pub async fn cache(&self) -> Result<CacheList, ClientError> {
        self.json(self.request(Method::GET, "/v1/cache")).await
    }

    /// Removes one result cache entry (its key), or every entry (`None`).
    pub async fn cache_remove(&self, key: Option<&str>) -> Result<CacheRemoved, ClientError> {
        let path = match key {
            Some(k) => format!("/v1/cache/{k}"),
            None => "/v1/cache".to_string(),
        };
        self.json(self.request(Method::DELETE, &path)).await
    }

    /// Revokes a client ACL token.
    pub async fn revoke_token(&self, id: u64) -> Result<TokenInfo, ClientError> {
        self.json(self.request(Method::DELETE, &format!("/v1/tokens/{id}")))
            .await
    }

    pub async fn set_policy(&self, policy: &PolicyConfig) -> Result<PolicyConfig, ClientError> {
        self.json(self.request(Method::PUT, "/v1/policy").json(policy))
            .await
    }

    /// A task's output from `offset`: the bytes and the offset after them.
    pub async fn output(
        &self,
        reference: &str,
        stderr: bool,
        offset: u64,
    ) -> Result<(Bytes, u64), ClientError> {
        let stream = if stderr { "stderr" } else { "stdout" };
        let resp = self
            .send(
                self.request(
                    Method::GET,
                    &format!("/v1/tasks/{}/output", encode(reference)),
                )
                .query(&[("stream", stream), ("offset", &offset.to_string())]),
            )
            .await?;
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| ClientError::Decode(e.to_string()))?;
        let next = offset + bytes.len() as u64;
        Ok((bytes, next))
    }

    /// A task's output, followed live until its attempt ends.
    pub async fn follow_output(
        &self,
        reference: &str,
        stderr: bool,
    ) -> Result<impl Stream<Item = Result<Bytes, ClientError>> + use<>, ClientError> {
        self.follow_output_from(reference, stderr, 0).await
    }

    /// Like [`Client::follow_output`], from a byte offset (to resume after a drop).
    pub async fn follow_output_from(
        &self,
        reference: &str,
        stderr: bool,
        offset: u64,
    ) -> Result<impl Stream<Item = Result<Bytes, ClientError>> + use<>, ClientError> {
        let stream = if stderr { "stderr" } else { "stdout" };
        let resp = self
            .send(
                self.request(
                    Method::GET,
                    &format!("/v1/tasks/{}/output", encode(reference)),
                )
                .query(&[
                    ("stream", stream),
                    ("follow", "true"),
                    ("offset", &offset.to_string()),
                ]),
            )
            .await?;
        use futures_util::StreamExt;
        Ok(resp
            .bytes_stream()
            .map(|r| r.map_err(|e| ClientError::Decode(e.to_string()))))
    }

    /// Raw request, for tests of the API's edges.
    pub async fn raw(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<(StatusCode, Bytes), ClientError> {
        let mut req = self.request(method, path);
        if let Some(b) = body {
            req = req.header("content-type", "application/json").body(b);
        }
        let resp = self.send_any(req).await?;
        let status = resp.status();
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| ClientError::Decode(e.to_string()))?;
        Ok((status, bytes))
    }
}

/// Task references are ids, keys of `[A-Za-z0-9-_.:@]` or `JOB/KEY`; only `/` needs escaping.
fn encode(reference: &str) -> String {
    reference
        .replace('%', "%25")
        .replace('/', "%2F")
        .replace('?', "%3F")
        .replace('#', "%23")
}

fn root_cause(e: &dyn std::error::Error) -> String {
    let mut cause = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        cause = s.to_string();
        source = s.source();
    }
    cause
}
