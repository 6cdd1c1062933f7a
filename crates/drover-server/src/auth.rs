//! Authentication: one layer in front of every route.
//!
//! On first start the server creates a random cluster token in `<data_dir>/token` with
//! mode 0600. Every route but `/v1/health` and the API's documentation (`/v1/openapi.json`,
//! `/v1/docs`) requires it as `Authorization: Bearer …`;
//! workers present the same token when they connect. The web UI's pages send instead
//! the session cookie its login sets (`ui/session.rs`): accepted on the API's routes
//! only (never on the worker endpoint nor the raft routes), and on a request that
//! changes something only with the `X-Drover-CSRF` header, which a cross-site form
//! cannot send. Submitting a task is running code,
//! so a stranger without the token can do nothing. (TLS, roles and per-worker
//! identities slot in here later.)

use crate::api::ApiError;
use crate::ui::session::{self, SessionKey};
use axum::extract::{Request, State};
use axum::http::Method;
use axum::http::header::{AUTHORIZATION, COOKIE};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The shared secret of a cluster.
#[derive(Clone)]
pub struct ClusterToken(Arc<str>);

impl std::fmt::Debug for ClusterToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClusterToken(…)")
    }
}

impl ClusterToken {
    pub fn new(token: &str) -> ClusterToken {
        ClusterToken(Arc::from(token.trim()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The token file of a data directory.
    pub fn path(data_dir: &Path) -> PathBuf {
        data_dir.join("token")
    }

    /// The peer token file of a data directory (servers' credential among themselves).
    pub fn peer_path(data_dir: &Path) -> PathBuf {
        data_dir.join("peer_token")
    }

    /// Reads a token file if it exists and is not empty.
    pub fn load(path: &Path) -> std::io::Result<Option<ClusterToken>> {
        match std::fs::read_to_string(path) {
            Ok(text) if !text.trim().is_empty() => Ok(Some(ClusterToken::new(&text))),
            Ok(_) => Ok(None),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Writes a token given on the command line to a token file (mode 0600), so a
    /// restart without the flag uses the same one.
    pub fn store(&self, path: &Path) -> std::io::Result<()> {
        if ClusterToken::load(path)?.is_some_and(|t| t.matches(self.as_str())) {
            return Ok(());
        }
        write_secret(path, self.as_str())
    }

    /// Reads the token from the data directory, creating it (mode 0600) on first start.
    pub fn load_or_create(data_dir: &Path) -> std::io::Result<ClusterToken> {
        ClusterToken::load_or_create_at(&ClusterToken::path(data_dir))
    }

    /// Reads the token file at `path`, creating it (mode 0600) if it is missing.
    pub fn load_or_create_at(path: &Path) -> std::io::Result<ClusterToken> {
        let path = path.to_path_buf();
        match std::fs::read_to_string(&path) {
            Ok(text) if !text.trim().is_empty() => {
                let mode = std::fs::metadata(&path)?.permissions().mode();
                if mode & 0o077 != 0 {
                    tracing::warn!(path = %path.display(), "the token file is readable by others; fixing its mode to 0600");
                    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
                }
                Ok(ClusterToken::new(&text))
            }
            Ok(_) => ClusterToken::create(&path),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => ClusterToken::create(&path),
            Err(e) => Err(e),
        }
    }

    fn create(path: &Path) -> std::io::Result<ClusterToken> {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes).map_err(|e| std::io::Error::other(e.to_string()))?;
        let token: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        write_secret(path, &token)?;
        Ok(ClusterToken::new(&token))
    }

    /// Compares in time independent of where the strings differ.
    pub fn matches(&self, presented: &str) -> bool {
        let a = self.0.as_bytes();
        let b = presented.as_bytes();
        if a.len() != b.len() {
            return false;
        }
        a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
    }
}

fn write_secret(path: &Path, token: &str) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(token.as_bytes())?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

/// What the auth layer checks: the cluster token on the API and the worker endpoint,
/// the peer token (and only it) on the servers' raft routes.
#[derive(Clone, Debug)]
pub struct Credentials {
    pub cluster: ClusterToken,
    pub peer: ClusterToken,
    /// Checks the web UI's session cookie (derived from the cluster token).
    pub session: SessionKey,
}

/// The servers' own routes (raft RPCs): the peer token only.
pub const PEER_PREFIX: &str = "/v1/raft/";

/// Routes reachable without credentials: health, the OpenAPI document and the docs
/// UI (a browser cannot send the bearer token when it loads them; they hold nothing
/// but the API's description, the same for every cluster).
const PUBLIC: &[&str] = &["/v1/health", "/v1/openapi.json", "/v1/docs"];
const PUBLIC_PREFIX: &str = "/v1/docs/";

/// The middleware: 401 with a JSON body for a missing or wrong token.
pub async fn require_token(
    State(credentials): State<Credentials>,
    request: Request,
    next: Next,
) -> Response {
    let path = request.uri().path();
    if PUBLIC.contains(&path) || path.starts_with(PUBLIC_PREFIX) {
        return next.run(request).await;
    }
    let peer_route = path.starts_with(PEER_PREFIX);
    let presented = request
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            // The scheme name is case-insensitive (RFC 7235).
            let (scheme, rest) = v.split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then_some(rest)
        });
    if peer_route
        && let Some(peer) = request.extensions().get::<crate::tls::PeerCertificate>()
        && peer.role != Some(crate::tls::CertRole::Server)
    {
        // Over TLS the servers' routes need mutual TLS: a certificate of the cluster's
        // CA made for a server. A worker's or a client's certificate (or none) cannot
        // speak raft, whatever token it sends.
        return ApiError::new(
            axum::http::StatusCode::FORBIDDEN,
            "forbidden",
            "these routes are for the servers of the cluster: present a server certificate of the cluster's CA (mutual TLS)",
            None,
        )
        .into_response();
    }
    // Worker identities: a join token or a worker credential opens the worker endpoint
    // only, where it is checked against the replicated state (`worker_identity.rs`);
    // anywhere else it fails the checks below (403 on the servers' routes, 401 others).
    let worker_secret =
        presented.is_some_and(|t| crate::worker_identity::is_worker_secret(t.trim()));
    if worker_secret && path == drover_proto::worker::WORKER_CONNECT_PATH {
        return next.run(request).await;
    }
    if peer_route {
        // Servers only: a client's or a worker's token is refused here, and the peer
        // token opens nothing else (it fails the cluster-token check below).
        return match presented {
            Some(t) if credentials.peer.matches(t.trim()) => next.run(request).await,
            Some(t) if credentials.cluster.matches(t.trim()) || worker_secret => ApiError::new(
                axum::http::StatusCode::FORBIDDEN,
                "forbidden",
                "these routes are for the servers of the cluster, not for clients or workers",
                None,
            )
            .into_response(),
            _ => {
                ApiError::unauthorized("these routes take the servers' peer token").into_response()
            }
        };
    }
    if presented.is_none() && path != drover_proto::worker::WORKER_CONNECT_PATH {
        let cookie = request
            .headers()
            .get_all(COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find_map(session::from_cookie_header);
        if let Some(value) = cookie {
            if !credentials.session.verify(value, session::now_secs()) {
                return ApiError::unauthorized("the session expired or is not valid: log in again")
                    .into_response();
            }
            let safe = matches!(
                *request.method(),
                Method::GET | Method::HEAD | Method::OPTIONS
            );
            let csrf = request
                .headers()
                .get(crate::ui::CSRF_HEADER)
                .is_some_and(|v| v == "1");
            if !safe && !csrf {
                return ApiError::new(
                    axum::http::StatusCode::FORBIDDEN,
                    "forbidden",
                    "a change made with the session cookie needs the header 'X-Drover-CSRF: 1'",
                    None,
                )
                .into_response();
            }
            return next.run(request).await;
        }
    }
    let token = &credentials.cluster;
    match presented {
        Some(t) if token.matches(t.trim()) => next.run(request).await,
        Some(_) => ApiError::unauthorized("the cluster token is wrong").into_response(),
        None => ApiError::unauthorized(
            "this server requires the cluster token: send 'Authorization: Bearer <token>' (it is in the token file of the server's data directory)",
        )
        .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_is_created_once_with_mode_0600() {
        let dir = std::env::temp_dir().join(format!("drover-token-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let t1 = ClusterToken::load_or_create(&dir).unwrap();
        let t2 = ClusterToken::load_or_create(&dir).unwrap();
        assert_eq!(t1.as_str(), t2.as_str());
        assert_eq!(t1.as_str().len(), 64);
        let mode = std::fs::metadata(ClusterToken::path(&dir))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(t1.matches(t1.as_str()));
        assert!(!t1.matches("nope"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
