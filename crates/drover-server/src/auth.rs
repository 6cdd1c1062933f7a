//! Authentication: one layer in front of every route.
//!
//! On first start the server creates a random cluster token in `<data_dir>/token` with
//! mode 0600. Every route but `/v1/health` and the API's documentation (`/v1/openapi.json`,
//! `/v1/docs`) requires it as `Authorization: Bearer …`;
//! workers present the same token when they connect. Submitting a task is running code,
//! so a stranger without the token can do nothing. (TLS, roles and per-worker
//! identities slot in here later.)

use crate::api::ApiError;
use axum::extract::{Request, State};
use axum::http::header::AUTHORIZATION;
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

    /// Reads the token from the data directory, creating it (mode 0600) on first start.
    pub fn load_or_create(data_dir: &Path) -> std::io::Result<ClusterToken> {
        let path = ClusterToken::path(data_dir);
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
        let tmp = path.with_extension("tmp");
        let _ = std::fs::remove_file(&tmp);
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(token.as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
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

/// Routes reachable without credentials: health, the OpenAPI document and the docs
/// UI (a browser cannot send the bearer token when it loads them; they hold nothing
/// but the API's description, the same for every cluster).
const PUBLIC: &[&str] = &["/v1/health", "/v1/openapi.json", "/v1/docs"];
const PUBLIC_PREFIX: &str = "/v1/docs/";

/// The middleware: 401 with a JSON body for a missing or wrong token.
pub async fn require_token(
    State(token): State<ClusterToken>,
    request: Request,
    next: Next,
) -> Response {
    let path = request.uri().path();
    if PUBLIC.contains(&path) || path.starts_with(PUBLIC_PREFIX) {
        return next.run(request).await;
    }
    let presented = request
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            // The scheme name is case-insensitive (RFC 7235).
            let (scheme, rest) = v.split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then_some(rest)
        });
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
