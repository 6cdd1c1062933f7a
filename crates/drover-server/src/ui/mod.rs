//! The web UI: a small single-page app served by the server itself at `/`.
//!
//! Its files (`crates/drover-server/ui/`: one HTML page, a style sheet, plain ES
//! modules) are compiled into the binary, so nothing is fetched from elsewhere at run
//! time. The page and its assets hold no cluster data and are public; the scripts read
//! and change the cluster through the same JSON API as every client (`/v1/...`),
//! authenticated by the session cookie that `POST /ui/login` sets (see `session.rs` and
//! `auth.rs`). These routes are not API operations and stay out of the OpenAPI
//! document.

pub mod session;

use crate::api::ApiError;
use crate::node::Node;
use axum::Router;
use axum::body::Bytes;
use axum::extract::Path;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use session::SessionKey;
use std::sync::Arc;

/// Where the UI's assets are served.
pub const PREFIX: &str = "/ui/";

/// The header a state-changing request authenticated by the cookie must carry. A
/// cross-site form cannot send a custom header, and a cross-site `fetch` that tries
/// needs a CORS preflight this server never grants.
pub const CSRF_HEADER: &str = "x-drover-csrf";

/// Everything the page may load comes from this server; no inline script or style
/// runs, so even a string that escaped into markup could not execute.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'";

/// The assets: name, content type, bytes.
const ASSETS: &[(&str, &str, &[u8])] = &[
    (
        "style.css",
        "text/css; charset=utf-8",
        include_bytes!("../../ui/style.css"),
    ),
    ("app.js", JS, include_bytes!("../../ui/app.js")),
    ("api.js", JS, include_bytes!("../../ui/api.js")),
    ("dom.js", JS, include_bytes!("../../ui/dom.js")),
    ("dashboard.js", JS, include_bytes!("../../ui/dashboard.js")),
    ("workers.js", JS, include_bytes!("../../ui/workers.js")),
    ("tasks.js", JS, include_bytes!("../../ui/tasks.js")),
    ("task.js", JS, include_bytes!("../../ui/task.js")),
    ("job.js", JS, include_bytes!("../../ui/job.js")),
    ("submit.js", JS, include_bytes!("../../ui/submit.js")),
    ("policy.js", JS, include_bytes!("../../ui/policy.js")),
];
const JS: &str = "text/javascript; charset=utf-8";
const INDEX: &[u8] = include_bytes!("../../ui/index.html");

/// The UI's routes, merged beside the API's.
pub(crate) fn routes() -> Router<Arc<Node>> {
    Router::new()
        .route("/", get(index))
        .route("/ui/login", post(login))
        .route("/ui/logout", post(logout))
        .route("/ui/{file}", get(asset))
}

fn page(content_type: &'static str, body: &'static [u8]) -> Response {
    let mut r = (StatusCode::OK, body).into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    // The assets change with the binary; revalidating is cheap on loopback and avoids
    // an old script against a new API after an upgrade.
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    r
}

async fn index() -> Response {
    page("text/html; charset=utf-8", INDEX)
}

async fn asset(Path(file): Path<String>) -> Result<Response, ApiError> {
    ASSETS
        .iter()
        .find(|(name, _, _)| *name == file)
        .map(|(_, ct, body)| page(ct, body))
        .ok_or_else(|| ApiError::not_found(format!("no UI file {file:?}")))
}

/// The CSRF check for the UI's own forms: the custom header must be there.
fn check_csrf(headers: &HeaderMap) -> Result<(), ApiError> {
    if headers.get(CSRF_HEADER).is_some_and(|v| v == "1") {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!("send the header '{CSRF_HEADER}: 1' (the UI does)"),
            None,
        ))
    }
}

/// `POST /ui/login` with the form field `token` (the cluster token or a client ACL
/// token): sets the session cookie.
async fn login(
    axum::extract::State(node): axum::extract::State<Arc<Node>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    check_csrf(&headers)?;
    let token = form_urlencoded::parse(&body)
        .find(|(k, _)| k == "token")
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default();
    if token.trim().is_empty() {
        return Err(ApiError::invalid(
            Some("token".into()),
            "give the cluster token (the server's token file) or a client token",
        ));
    }
    let holder = crate::auth::session_holder(&node, token.trim())?;
    let value = SessionKey::new(node.token.clone()).issue(session::now_secs(), holder);
    // Over TLS the browser must never send the cookie in clear.
    let cookie = session::set_cookie(Some(&value), node.config.scheme == "https");
    session_response(cookie)
}

/// `POST /ui/logout`: clears the cookie.
async fn logout(
    axum::extract::State(node): axum::extract::State<Arc<Node>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    check_csrf(&headers)?;
    // The same attributes as the cookie it replaces (a browser keeps a Secure cookie
    // apart from a plain one of the same name).
    session_response(session::set_cookie(None, node.config.scheme == "https"))
}

fn session_response(cookie: String) -> Result<Response, ApiError> {
    let mut r = StatusCode::NO_CONTENT.into_response();
    r.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_str(&cookie).map_err(|e| ApiError::internal(e.to_string()))?,
    );
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(r)
}
