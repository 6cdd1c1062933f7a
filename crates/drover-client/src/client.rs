//! The HTTP client.

use bytes::Bytes;
use drover_proto::api::{
    CancelResponse, ClusterSummary, ErrorBody, Health, JobInfo, ServerInfo, SubmitResponse,
    TaskInfo, TaskList, WorkerInfo,
};
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
    #[error("unexpected answer from the server: {0}")]
    Decode(String),
    /// The event stream ended or went silent; `EventStream::resume` reconnects.
    #[error("the event stream from {url} was interrupted: {message}")]
    StreamLost { url: String, message: String },
}

impl ClientError {
    pub fn is_not_found(&self) -> bool {
        matches!(self, ClientError::Api { status: 404, .. })
    }

    /// The task or job existed and was retired (`410`, code `retired`).
    pub fn is_retired(&self) -> bool {
        matches!(self, ClientError::Api { status: 410, .. })
    }
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
/// the client's doing.
#[derive(Clone, Debug)]
pub struct Client {
    http: reqwest::Client,
    bases: Arc<[String]>,
    current: Arc<AtomicUsize>,
    base: String,
    token: Option<String>,
}

impl Client {
    /// `base`: a server's URL, or several separated by commas.
    pub fn new(base: impl Into<String>, token: Option<String>) -> Client {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(2))
            .pool_idle_timeout(Duration::from_secs(30))
            .build()
            .unwrap_or_default();
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
        }
    }

    /// The URL (or URLs, comma-separated) this client was given.
    pub fn base_url(&self) -> &str {
        &self.base
    }

    fn current_base(&self) -> &str {
        &self.bases[self.current.load(Ordering::Relaxed) % self.bases.len()]
    }

    pub(crate) fn request(&self, method: Method, path: &str) -> RequestBuilder {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.current_base()));
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
                Ok(resp) => {
                    self.current.store(k, Ordering::Relaxed);
                    return Ok(resp);
                }
                Err(e) if e.is_connect() && n > 1 => last = Some(e),
                Err(e) => return Err(self.unreachable(&e)),
            }
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

    pub async fn health(&self) -> Result<Health, ClientError> {
        self.json(self.request(Method::GET, "/v1/health")).await
    }

    pub async fn submit_task(&self, task: &TaskSpec) -> Result<SubmitResponse, ClientError> {
        self.json(self.request(Method::POST, "/v1/tasks").json(task))
            .await
    }

    pub async fn submit_job(&self, job: &JobSpec) -> Result<SubmitResponse, ClientError> {
        self.json(self.request(Method::POST, "/v1/jobs").json(job))
            .await
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

    /// Stops placing tasks on a worker (`w3`, `3` or its name); running ones finish.
    pub async fn drain_worker(&self, worker: &str) -> Result<(), ClientError> {
        let path = format!("/v1/workers/{}/drain", encode(worker));
        self.send(self.request(Method::POST, &path)).await?;
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
