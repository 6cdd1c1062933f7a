//! Serving the router: an accept loop like `axum::serve`'s, with a header read timeout
//! on every connection and, over TLS, a handshake per connection and the client
//! certificate's role attached to every request of that connection.

use super::PeerCertificate;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tower_service::Service;

/// A handshake that has not finished by then is dropped: a client that connects and
/// sends nothing must not hold a task and a socket for ever.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a stop waits for open connections to finish their requests.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves `app` on `listener`: over TLS with `tls`, else plain HTTP. Both go through
/// the one accept loop below (not `axum::serve`, which sets no timer, so no header
/// read timeout), so that a client trickling its headers is cut off after
/// `header_read_timeout` either way. Returns once `stop` resolves and open connections
/// are done (or after [`DRAIN_TIMEOUT`]).
pub async fn serve(
    listener: TcpListener,
    app: Router,
    tls: Option<Arc<rustls::ServerConfig>>,
    header_read_timeout: Duration,
    stop: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let acceptor = tls.map(TlsAcceptor::from);
    let graceful = GracefulShutdown::new();
    tokio::pin!(stop);
    loop {
        let (tcp, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: wait rather than spin.
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut stop => break,
        };
        // Small messages (a worker's "started", a server's "start") must leave at once:
        // with Nagle's algorithm and delayed ACKs each exchange stalls ~40 ms.
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let app = app.clone();
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let mut builder = auto::Builder::new(TokioExecutor::new());
            builder
                .http1()
                .timer(TokioTimer::new())
                .header_read_timeout(header_read_timeout);
            let Some(acceptor) = acceptor else {
                let service = TowerToHyperService::new(app);
                let connection = builder.serve_connection_with_upgrades(TokioIo::new(tcp), service);
                if let Err(e) = watcher.watch(connection.into_owned()).await {
                    tracing::debug!("a connection ended with an error: {e}");
                }
                return;
            };
            let handshake = async {
                if !starts_with_tls(&tcp).await? {
                    answer_plain_http(tcp).await;
                    return Ok(None);
                }
                acceptor.accept(tcp).await.map(Some)
            };
            let stream = match tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake).await {
                Ok(Ok(Some(stream))) => stream,
                Ok(Ok(None)) => return,
                Ok(Err(e)) => {
                    tracing::debug!("TLS handshake refused: {e}");
                    return;
                }
                Err(_) => return,
            };
            let peer = PeerCertificate::from_chain(stream.get_ref().1.peer_certificates());
            let service =
                hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
                    request.extensions_mut().insert(peer.clone());
                    let mut app = app.clone();
                    async move { app.call(request).await }
                });
            let connection = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
            if let Err(e) = watcher.watch(connection.into_owned()).await {
                tracing::debug!("a TLS connection ended with an error: {e}");
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(DRAIN_TIMEOUT, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("connections still open {DRAIN_TIMEOUT:?} after the stop; closing them");
    }
    Ok(())
}

/// The first byte of every TLS connection: a handshake record (the ClientHello). A
/// plain-HTTP request starts with a method name in ASCII instead.
const TLS_HANDSHAKE_RECORD: u8 = 0x16;
/// How much of a plain-HTTP request is read (and dropped) before answering it.
const PLAIN_REQUEST_MAX: usize = 16 << 10;

/// Whether the client's first byte opens a TLS handshake, without consuming it. An
/// error: the client closed, or sent nothing readable.
async fn starts_with_tls(tcp: &tokio::net::TcpStream) -> std::io::Result<bool> {
    let mut first = [0u8; 1];
    match tcp.peek(&mut first).await? {
        0 => Err(std::io::ErrorKind::UnexpectedEof.into()),
        _ => Ok(first[0] == TLS_HANDSHAKE_RECORD),
    }
}

/// Answers a plain-HTTP request on the TLS listener with a short plain-HTTP 400 that
/// says to use `https://`, then closes. A mistyped URL then fails with a message that
/// names the fix, rather than a reset or TLS garbage; nothing the request carried (a
/// token, say) is looked at, and no redirect is offered: following one would have sent
/// the token in clear already, and a client should fail, not learn to retry.
async fn answer_plain_http(mut tcp: tokio::net::TcpStream) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    // Read the request's head first: closing a socket with unread bytes resets the
    // connection, and the client may lose the answer.
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while seen.len() < PLAIN_REQUEST_MAX && !seen.windows(4).any(|w| w == b"\r\n\r\n") {
        match tcp.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => seen.extend_from_slice(&buf[..n]),
        }
    }
    let body = r#"{"error":{"code":"https_required","message":"this server speaks HTTPS only: use an https:// URL (and the cluster's CA, --ca)"}}"#;
    let answer = format!(
        "HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    if tcp.write_all(answer.as_bytes()).await.is_err() {
        return;
    }
    let _ = tcp.shutdown().await;
    // Drain a body the client may still be sending (bounded), for the same reason.
    let mut drained = 0;
    while drained < PLAIN_REQUEST_MAX {
        match tokio::time::timeout(Duration::from_secs(1), tcp.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => drained += n,
            _ => break,
        }
    }
}
