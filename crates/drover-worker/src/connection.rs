//! Opening the WebSocket to the server.

use drover_proto::worker::WORKER_CONNECT_PATH;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::{HeaderValue, StatusCode, header::AUTHORIZATION};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The server refused the token: retrying will not help.
    #[error(
        "the server refused this worker's secret (HTTP 401): check --token or DROVER_TOKEN, or the join token (--join-token; it is single-use and expires), or whether this worker's credential was revoked (remove the file credential in its data directory and join again)"
    )]
    Unauthorized,
    #[error("bad server URL {url:?}: {message}")]
    BadUrl { url: String, message: String },
    /// Anything else (server down, network) is worth retrying.
    #[error("cannot reach {url}: {message}")]
    Unreachable { url: String, message: String },
}

impl ConnectError {
    pub fn is_fatal(&self) -> bool {
        matches!(
            self,
            ConnectError::Unauthorized | ConnectError::BadUrl { .. }
        )
    }
}

/// The WebSocket URL of the worker endpoint for a server URL.
pub fn endpoint(server: &str) -> Result<String, ConnectError> {
    let base = server.trim_end_matches('/');
    let ws = if let Some(rest) = base.strip_prefix("http://") {
        format!("ws://{rest}")
    } else if let Some(rest) = base.strip_prefix("https://") {
        format!("wss://{rest}")
    } else if base.starts_with("ws://") || base.starts_with("wss://") {
        base.to_string()
    } else {
        return Err(ConnectError::BadUrl {
            url: server.to_string(),
            message: "use https://host:port (or http:// for a server run with --insecure-http)"
                .into(),
        });
    };
    Ok(format!("{ws}{WORKER_CONNECT_PATH}"))
}

/// The longest a connection attempt (TCP connect and WebSocket handshake) may take.
/// Without it a connect into a network that drops packets waits out the kernel's SYN
/// retries (minutes), and the worker rejoins long after the network healed.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

pub async fn connect(
    server: &str,
    token: &str,
    tls: Option<Arc<rustls::ClientConfig>>,
) -> Result<Socket, ConnectError> {
    match tokio::time::timeout(CONNECT_TIMEOUT, connect_unbounded(server, token, tls)).await {
        Ok(result) => result,
        Err(_) => Err(ConnectError::Unreachable {
            url: server.to_string(),
            message: format!("no connection within {CONNECT_TIMEOUT:?}"),
        }),
    }
}

async fn connect_unbounded(
    server: &str,
    token: &str,
    tls: Option<Arc<rustls::ClientConfig>>,
) -> Result<Socket, ConnectError> {
    let url = endpoint(server)?;
    let mut request = url
        .as_str()
        .into_client_request()
        .map_err(|e| ConnectError::BadUrl {
            url: url.clone(),
            message: e.to_string(),
        })?;
    let value =
        HeaderValue::from_str(&format!("Bearer {token}")).map_err(|_| ConnectError::BadUrl {
            url: url.clone(),
            message: "the token has characters a header cannot carry".into(),
        })?;
    request.headers_mut().insert(AUTHORIZATION, value);
    // No Nagle: reports are small and latency-bound (see the server's listener).
    // `wss://` with the cluster's CA when given (else the system's roots); `ws://`
    // ignores the connector.
    let connector = tls.map(tokio_tungstenite::Connector::Rustls);
    // A small read buffer: tungstenite zero-fills it on every read (128 KiB by default),
    // and what the server sends is small; thousands of agents in one process (the scale
    // harness) also pay it in memory.
    let config = tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
        .read_buffer_size(8 << 10);
    match tokio_tungstenite::connect_async_tls_with_config(request, Some(config), true, connector)
        .await
    {
        Ok((socket, _)) => Ok(socket),
        Err(tokio_tungstenite::tungstenite::Error::Http(resp))
            if resp.status() == StatusCode::UNAUTHORIZED =>
        {
            Err(ConnectError::Unauthorized)
        }
        Err(e) => Err(ConnectError::Unreachable {
            url,
            message: e.to_string(),
        }),
    }
}
