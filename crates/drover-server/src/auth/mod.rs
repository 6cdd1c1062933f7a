//! Authentication and authorization: one layer in front of every route.
//!
//! On first start the server creates a random cluster token in `<data_dir>/token` with
//! mode 0600 (`cluster_token.rs`). It is the bootstrap admin credential: workers present
//! it when they connect, and with it an admin creates client ACL tokens
//! (`drv_<id>_<secret>`, `acl_secret.rs`) of a role (`read`, `submit`, `operator`,
//! `admin`), optionally confined to a namespace and with an expiry; they live hashed in
//! the replicated state. Every route but `/v1/health` and the API's documentation
//! (`/v1/openapi.json`, `/v1/docs`) needs a credential as `Authorization: Bearer …`,
//! and the role that `api/access.rs` gives the route (401 for a missing, malformed,
//! unknown, expired or revoked credential; 403 for a wrong role or namespace). The web
//! UI's pages send instead the session cookie its login sets (`ui/session.rs`), which
//! names the token it was opened with: accepted on the API's routes only (never on the
//! worker endpoint nor the raft routes), and on a request that changes something only
//! with the `X-Drover-CSRF` header, which a cross-site form cannot send. Requests made
//! with an ACL token are rate- and concurrency-limited per token
//! (`token_limiter.rs`), and their response bodies end when the token is revoked or
//! expires (`revocation_guard.rs`). Submitting a task is running code, so a stranger
//! without a credential can do nothing.

mod acl_secret;
mod caller;
mod cluster_token;
mod revocation_guard;
mod token_limiter;

pub use acl_secret::{NewSecret, PREFIX as CLIENT_TOKEN_PREFIX};
pub use caller::Caller;
pub use cluster_token::ClusterToken;
pub use token_limiter::{TokenLimiter, TokenLimits};

use crate::api::ApiError;
use crate::api::access::{self, Access};
use crate::node::Node;
use crate::ui::session::{self, SessionHolder, SessionKey};
use acl_secret::Shape;
use axum::extract::{MatchedPath, Request, State};
use axum::http::header::{AUTHORIZATION, COOKIE, RETRY_AFTER};
use axum::http::{HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use revocation_guard::{GuardedBody, TokenCheck};
use std::sync::Arc;
use std::time::Instant;
use token_limiter::{InFlight, Refusal};

/// What the auth layer checks: the cluster token and ACL tokens on the API, the
/// cluster token on the worker endpoint, the peer token (and only it) on the servers'
/// raft routes.
#[derive(Clone, Debug)]
pub struct Credentials {
    pub cluster: ClusterToken,
    pub peer: ClusterToken,
    /// Checks the web UI's session cookie (derived from the cluster token).
    pub session: SessionKey,
    /// The ACL tokens (the applied state) and their limits; `None` on a server still
    /// waiting to be adopted into a group, which serves only the raft routes.
    pub acl: Option<AclTokens>,
}

/// Where ACL tokens are looked up, and their limits.
#[derive(Clone)]
pub struct AclTokens {
    pub node: Arc<Node>,
    pub limiter: Arc<TokenLimiter>,
}

impl std::fmt::Debug for AclTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AclTokens(…)")
    }
}

/// The servers' own routes (raft RPCs): the peer token only.
pub const PEER_PREFIX: &str = "/v1/raft/";

/// Routes reachable without credentials: health, the OpenAPI document and the docs
/// UI (a browser cannot send the bearer token when it loads them; they hold nothing
/// but the API's description, the same for every cluster).
const PUBLIC: &[&str] = &["/v1/health", "/v1/openapi.json", "/v1/docs"];
const PUBLIC_PREFIX: &str = "/v1/docs/";

/// The middleware: 401 with a JSON body for a missing or wrong credential, 403 for a
/// wrong role or namespace, 429 over a token's limits.
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
    let presented = bearer(&request);
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
    if path == drover_proto::worker::WORKER_CONNECT_PATH {
        // The worker endpoint takes the cluster token, as a bearer token only.
        return match presented {
            Some(t) if credentials.cluster.matches(t.trim()) => next.run(request).await,
            Some(_) => ApiError::unauthorized("the cluster token is wrong").into_response(),
            None => ApiError::unauthorized(
                "workers connect with the cluster token: send 'Authorization: Bearer <token>'",
            )
            .into_response(),
        };
    }
    let identified = match presented {
        Some(t) => identify_bearer(&credentials, t.trim()),
        None => match session_cookie(&request) {
            Some(value) => identify_session(&credentials, &request, value),
            None => Err(ApiError::unauthorized(
                "this server requires a credential: send 'Authorization: Bearer <token>' (the cluster token is in the token file of the server's data directory; `drover token create` makes others)",
            )),
        },
    };
    let (caller, check) = match identified {
        Ok(c) => c,
        Err(e) => return e.into_response(),
    };
    if let Err(e) = authorize(&request, &caller) {
        return e.into_response();
    }
    let in_flight = match (&check, &credentials.acl) {
        (Some(check), Some(acl)) => match acl.limiter.admit(check.id, Instant::now()) {
            Ok(f) => Some(f),
            Err(refusal) => return too_many(refusal),
        },
        _ => None,
    };
    let mut request = request;
    request.extensions_mut().insert(caller);
    let response = next.run(request).await;
    match check {
        Some(check) => guard(response, check, in_flight),
        None => response,
    }
}

/// The bearer token of a request, if it sent one.
fn bearer(request: &Request) -> Option<&str> {
    request
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            // The scheme name is case-insensitive (RFC 7235).
            let (scheme, rest) = v.split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then_some(rest)
        })
}

fn session_cookie(request: &Request) -> Option<&str> {
    request
        .headers()
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(session::from_cookie_header)
}

/// Who a bearer token is: the cluster token's holder or an ACL token's.
fn identify_bearer(
    credentials: &Credentials,
    presented: &str,
) -> Result<(Caller, Option<TokenCheck>), ApiError> {
    match acl_secret::parse(presented) {
        Shape::Acl(secret) => {
            let acl = credentials
                .acl
                .as_ref()
                .ok_or_else(|| ApiError::unauthorized("this server takes no client tokens yet"))?;
            let id = secret.id;
            token_caller(&acl.node, id, |hash| secret.matches(hash))
        }
        Shape::Malformed => Err(ApiError::unauthorized(
            "the token is malformed: a client token reads drv_<id>_<64 hex digits>",
        )),
        Shape::Other if credentials.cluster.matches(presented) => Ok((Caller::cluster(), None)),
        Shape::Other => Err(ApiError::unauthorized("the token is wrong")),
    }
}

/// The caller of ACL token `id`, if its record exists, `secret_ok` accepts its hash,
/// and it is neither revoked nor expired.
fn token_caller(
    node: &Arc<Node>,
    id: u64,
    secret_ok: impl FnOnce(&[u8; 32]) -> bool,
) -> Result<(Caller, Option<TokenCheck>), ApiError> {
    // The clock first: it takes the state lock too.
    let now = node.proposer.now();
    let sm = node.state.read();
    let record = sm
        .tokens()
        .get(id)
        .filter(|r| secret_ok(&r.hash))
        .ok_or_else(|| ApiError::unauthorized("the token is wrong or unknown"))?;
    if record.revoked_at.is_some() {
        return Err(ApiError::unauthorized(format!("token {id} was revoked")));
    }
    if !record.usable_at(now) {
        return Err(ApiError::unauthorized(format!("token {id} expired")));
    }
    let caller = Caller {
        role: record.role,
        token: Some(id),
        namespace: record.namespace.clone(),
    };
    drop(sm);
    Ok((
        caller,
        Some(TokenCheck {
            node: node.clone(),
            id,
        }),
    ))
}

/// Who a UI session is: it names the token it was opened with, checked again now (a
/// session of a revoked or expired token ends with it).
fn identify_session(
    credentials: &Credentials,
    request: &Request,
    value: &str,
) -> Result<(Caller, Option<TokenCheck>), ApiError> {
    let holder = credentials
        .session
        .verify(value, session::now_secs())
        .ok_or_else(|| {
            ApiError::unauthorized("the session expired or is not valid: log in again")
        })?;
    let safe = matches!(
        *request.method(),
        Method::GET | Method::HEAD | Method::OPTIONS
    );
    let csrf = request
        .headers()
        .get(crate::ui::CSRF_HEADER)
        .is_some_and(|v| v == "1");
    if !safe && !csrf {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "a change made with the session cookie needs the header 'X-Drover-CSRF: 1'",
            None,
        ));
    }
    match holder {
        SessionHolder::Cluster => Ok((Caller::cluster(), None)),
        SessionHolder::Token(id) => {
            let acl = credentials
                .acl
                .as_ref()
                .ok_or_else(|| ApiError::unauthorized("this server takes no client tokens yet"))?;
            // The MAC vouches for the id; the record must still be usable.
            token_caller(&acl.node, id, |_| true)
        }
    }
}

/// 403 unless the caller's role and namespace open the route.
fn authorize(request: &Request, caller: &Caller) -> Result<(), ApiError> {
    // No matched route: the router answers 404 (to an authenticated caller only).
    let Some(pattern) = request.extensions().get::<MatchedPath>() else {
        return Ok(());
    };
    let pattern = pattern.as_str();
    let access = match access::lookup(request.method(), pattern) {
        Some(a) => a,
        // A method the route does not take: the router answers 405.
        None if access::ROUTES.iter().any(|(_, p, _)| *p == pattern) => return Ok(()),
        None => {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                format!("the route {pattern} has no role in the access table; refused"),
                None,
            ));
        }
    };
    match access {
        Access::Public => Ok(()),
        // Handled before: a client credential never reaches it.
        Access::Worker => Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "the worker endpoint takes the cluster token",
            None,
        )),
        Access::Client { role, scoped } => {
            if !caller.role.allows(role) {
                return Err(ApiError::new(
                    StatusCode::FORBIDDEN,
                    "forbidden",
                    format!(
                        "{} {pattern} needs the role '{role}' or higher; this credential is '{}'",
                        request.method(),
                        caller.role
                    ),
                    None,
                ));
            }
            if let Some(ns) = &caller.namespace
                && !scoped
            {
                return Err(ApiError::new(
                    StatusCode::FORBIDDEN,
                    "forbidden",
                    format!(
                        "this token is confined to the namespace {ns:?}; {pattern} is cluster-wide"
                    ),
                    None,
                ));
            }
            Ok(())
        }
    }
}

/// 429 with `Retry-After` (whole seconds, at least 1).
fn too_many(refusal: Refusal) -> Response {
    let (message, secs) = match refusal {
        Refusal::Rate { retry_after } => (
            "this token sends requests faster than its rate limit; slow down".to_string(),
            retry_after.as_secs_f64().ceil().max(1.0) as u64,
        ),
        Refusal::Concurrency => (
            "this token has as many requests in flight as its limit allows (open event streams count); wait for one to end".to_string(),
            1,
        ),
    };
    let mut r = ApiError::new(
        StatusCode::TOO_MANY_REQUESTS,
        "too_many_requests",
        message,
        None,
    )
    .into_response();
    r.headers_mut().insert(RETRY_AFTER, HeaderValue::from(secs));
    r
}

/// The response, its body ending when the token does.
fn guard(response: Response, check: TokenCheck, in_flight: Option<InFlight>) -> Response {
    let (parts, body) = response.into_parts();
    Response::from_parts(parts, GuardedBody::wrap(body, check, in_flight))
}

/// Whose session a UI login with `presented` opens: the cluster token's, or that of a
/// usable ACL token (401 otherwise).
pub fn session_holder(node: &Arc<Node>, presented: &str) -> Result<SessionHolder, ApiError> {
    match acl_secret::parse(presented) {
        Shape::Acl(secret) => {
            let id = secret.id;
            token_caller(node, id, |hash| secret.matches(hash))?;
            Ok(SessionHolder::Token(id))
        }
        Shape::Malformed => Err(ApiError::unauthorized("the token is malformed")),
        Shape::Other if node.token.matches(presented) => Ok(SessionHolder::Cluster),
        Shape::Other => Err(ApiError::unauthorized("the token is wrong")),
    }
}
