//! HTTP over TLS by hand, like `http_with` over plain TCP: blocking rustls on a
//! `TcpStream`, trusting the CA (and presenting the certificate) a test chooses.

use super::{Resp, SLOW, parse_response, request_bytes};
use rustls::pki_types::ServerName;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::sync::Arc;

/// A TLS client configuration trusting the CA of `ca_file` only, presenting the
/// certificate and key files of `identity` when given.
pub fn client_config(
    ca_file: &Path,
    identity: Option<(&Path, &Path)>,
) -> Arc<rustls::ClientConfig> {
    let read = |p: &Path| {
        std::fs::read_to_string(p).unwrap_or_else(|e| panic!("cannot read {}: {e}", p.display()))
    };
    let identity = identity.map(|(cert, key)| drover_client::tls::ClientIdentity {
        cert_pem: read(cert),
        key_pem: read(key),
    });
    Arc::new(
        drover_client::tls::client_config(&read(ca_file), identity.as_ref())
            .expect("a TLS client configuration"),
    )
}

/// One HTTPS request on a fresh connection to `addr` (`IP:PORT`, checked against the
/// server certificate's addresses). An error: the handshake failed, or no answer.
pub fn https_with(
    addr: &str,
    config: &Arc<rustls::ClientConfig>,
    method: &str,
    path: &str,
    token: Option<&str>,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
) -> std::io::Result<Resp> {
    let host = addr.rsplit_once(':').map(|(h, _)| h).unwrap_or(addr);
    let name = ServerName::try_from(host.trim_matches(['[', ']']).to_string())
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    let connection = rustls::ClientConnection::new(config.clone(), name)
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    let tcp = TcpStream::connect(addr)?;
    tcp.set_read_timeout(Some(SLOW))?;
    tcp.set_write_timeout(Some(SLOW))?;
    let mut stream = rustls::StreamOwned::new(connection, tcp);
    stream.write_all(&request_bytes(addr, method, path, token, headers, body))?;
    stream.flush()?;
    let mut raw = Vec::new();
    match stream.read_to_end(&mut raw) {
        Ok(_) => {}
        // A server may close without a close_notify after `Connection: close`.
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !raw.is_empty() => {}
        Err(e) => return Err(e),
    }
    parse_response(&raw)
}
