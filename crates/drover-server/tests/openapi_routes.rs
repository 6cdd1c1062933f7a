//! The OpenAPI document lists exactly the routes the server serves: every (path,
//! method) the real router answers is documented, and every documented one is answered.
//!
//! The router's paths come from the router itself (axum has no public route listing;
//! its `Debug` output shows its path table), its methods from asking it: a method a
//! path does not take gets the router's 405 `method_not_allowed`.

use drover_server::ServerConfig;
use std::collections::BTreeSet;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Methods probed on every path. HEAD is left out: axum answers it wherever GET is
/// served, and OpenAPI documents GET alone.
const METHODS: &[&str] = &["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE"];

/// The browsable docs UI: HTML pages and their scripts, not API operations.
const DOCS_UI: &str = "/v1/docs";

/// Server-to-server raft RPCs: internal, deliberately left out of the document. They take
/// only the peer token (not the cluster token that API users hold), carry openraft's own
/// types, and no client has any use for them.
const RAFT_INTERNAL: &str = "/v1/raft/";

/// The DistTask-compatible routes: API operations outside `/v1` (`api/disttask.rs`).
const DISTTASK: &[&str] = &["/submit_task", "/get_results", "/status"];

/// Status and body of one request on a fresh connection.
async fn request(
    addr: &str,
    tls: &tokio_rustls::TlsConnector,
    method: &str,
    path: &str,
    token: &str,
) -> (u16, String) {
    let tcp = TcpStream::connect(addr).await.expect("connect");
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let mut s = tls.connect(name, tcp).await.expect("a TLS handshake");
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
    s.write_all(head.as_bytes()).await.expect("send");
    // To the end, except for a stream (`/v1/events`) whose body never ends: its head.
    let mut raw = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = match s.read(&mut buf).await {
            Ok(n) => n,
            // A TLS server may close without a close_notify after `Connection: close`.
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !raw.is_empty() => 0,
            Err(e) => panic!("read: {e}"),
        };
        if n == 0 {
            break;
        }
        raw.extend_from_slice(&buf[..n]);
        let head = String::from_utf8_lossy(&raw).to_ascii_lowercase();
        if head.contains("\r\n\r\n") && head.contains("content-type: text/event-stream") {
            break;
        }
    }
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {text:?}"));
    (status, text)
}

/// The path templates in the router's route table (its `path_router`; the
/// `fallback_router` after it holds the catch-all).
fn router_paths(router: &axum::Router) -> BTreeSet<String> {
    let debug = format!("{router:?}");
    let table = debug
        .split_once("fallback_router")
        .map_or(debug.as_str(), |(routes, _)| routes);
    table
        .split('"')
        .filter(|s| s.starts_with('/') && !s.contains("__private__"))
        .map(str::to_string)
        .collect()
}

/// A concrete path for a template: every `{param}` becomes `1`.
fn concrete(template: &str) -> String {
    template
        .split('/')
        .map(|seg| if seg.starts_with('{') { "1" } else { seg })
        .collect::<Vec<_>>()
        .join("/")
}

#[tokio::test]
async fn the_document_lists_exactly_the_routes_the_router_serves() {
    let dir = std::env::temp_dir().join(format!("drover-openapi-routes-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut config = ServerConfig::new(dir.clone());
    config.listen = "127.0.0.1:0".parse().unwrap();
    let server = drover_server::start(config).await.expect("server starts");
    let addr = server.addr.to_string();
    let token = server.node.token.as_str().to_string();
    // A server alone makes its CA in its data directory on first start.
    let ca = std::fs::read_to_string(dir.join("tls").join("ca.crt")).expect("its CA");
    let tls = tokio_rustls::TlsConnector::from(std::sync::Arc::new(
        drover_client::tls::client_config(&ca, None).unwrap(),
    ));

    // What the router serves.
    let router = drover_server::api::router(server.node.clone());
    let paths = router_paths(&router);
    assert!(
        paths.contains("/v1/tasks") && paths.len() > 10,
        "the router's path table was not found in its Debug output: {paths:?}"
    );
    let mut served = BTreeSet::new();
    for path in &paths {
        // The web UI (`/`, `/ui/…`) is pages and their assets, not API operations.
        let api = path.starts_with("/v1/") || DISTTASK.contains(&path.as_str());
        if !api || path.starts_with(DOCS_UI) || path.starts_with(RAFT_INTERNAL) {
            continue;
        }
        for method in METHODS {
            let (status, text) = request(&addr, &tls, method, &concrete(path), &token).await;
            assert!(status < 500, "{method} {path}: {text}");
            let not_allowed = status == 405 && text.contains("\"method_not_allowed\"");
            if !not_allowed {
                served.insert((path.clone(), method.to_lowercase()));
            }
        }
    }

    // What the document lists.
    let doc: serde_json::Value =
        serde_json::from_str(drover_server::api::openapi_document()).expect("JSON");
    let mut documented = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for method in item.as_object().expect("a path item").keys() {
            if METHODS.iter().any(|m| m.eq_ignore_ascii_case(method)) {
                documented.insert((path.clone(), method.clone()));
            }
        }
    }

    let undocumented: Vec<_> = served.difference(&documented).collect();
    let unserved: Vec<_> = documented.difference(&served).collect();
    assert!(
        undocumented.is_empty() && unserved.is_empty(),
        "served but not documented: {undocumented:?}\ndocumented but not served: {unserved:?}"
    );
    assert!(served.len() >= 16, "{served:?}");

    // The same document is what the server serves, without a token, and so is the
    // docs UI that reads it.
    let (status, text) = request(&addr, &tls, "GET", "/v1/openapi.json", "").await;
    assert_eq!(status, 200, "{text}");
    assert!(text.ends_with(drover_server::api::openapi_document()));
    let (status, text) = request(&addr, &tls, "GET", "/v1/docs/", "").await;
    assert_eq!(status, 200, "{text}");
    assert!(text.contains("swagger"), "{text}");
    assert!(
        paths.iter().any(|p| p.starts_with(DOCS_UI)),
        "the docs UI is routed: {paths:?}"
    );
    assert!(
        paths.iter().any(|p| p.starts_with(RAFT_INTERNAL)),
        "the raft RPCs are routed: {paths:?}"
    );
    // The worker endpoint the document lists is the one workers use.
    assert!(doc["paths"][drover_proto::worker::WORKER_CONNECT_PATH].is_object());

    server.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}
