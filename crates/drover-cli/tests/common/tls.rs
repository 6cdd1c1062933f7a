//! HTTPS by hand: the harness's servers speak TLS, so every raw request of the tests
//! (`http`, `http_with`, [`connect`]) goes over TLS to an address the harness has
//! registered with its cluster's CA ([`trust`]), and over plain TCP to any other
//! address (a server started with `--insecure-http`). Blocking rustls on a
//! `TcpStream`, trusting only the CA a test chooses (and presenting the certificate it
//! chooses).

use super::{Resp, SLOW, parse_response, request_bytes};
use rustls::pki_types::ServerName;
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::sync::{Arc, Mutex};

/// The TLS configuration to reach each harness server by, keyed by `IP:PORT`. Per
/// address rather than one for the whole process: each cluster has its own CA, and a
/// test that checks a certificate must not pass because another cluster's CA is trusted.
static TRUSTED: Mutex<BTreeMap<String, Arc<rustls::ClientConfig>>> = Mutex::new(BTreeMap::new());

/// From now on, raw requests to `addr` speak TLS with `config`.
pub fn trust(addr: &str, config: Arc<rustls::ClientConfig>) {
    TRUSTED
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(addr.to_string(), config);
}

/// From now on, raw requests to `addr` speak plain HTTP (a server with `--insecure-http`).
pub fn forget(addr: &str) {
    TRUSTED
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .remove(addr);
}

/// The TLS configuration registered for `addr`, if it speaks TLS.
pub fn trusted(addr: &str) -> Option<Arc<rustls::ClientConfig>> {
    TRUSTED
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(addr)
        .cloned()
}

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

/// A connection to a harness server: TLS when the harness trusts its address, plain
/// TCP otherwise. Reads and writes as a socket would; the TLS handshake happens on the
/// first write or read.
pub enum Conn {
    Plain(TcpStream),
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>),
}

impl Conn {
    /// The TCP socket underneath (for timeouts).
    pub fn tcp(&self) -> &TcpStream {
        match self {
            Conn::Plain(s) => s,
            Conn::Tls(s) => s.get_ref(),
        }
    }

    /// Ends the sending direction: over TLS a close_notify first, so the server reads a
    /// clean end of stream rather than a truncated record.
    pub fn shutdown_write(&mut self) -> std::io::Result<()> {
        if let Conn::Tls(s) = self {
            s.conn.send_close_notify();
            s.flush()?;
        }
        self.tcp().shutdown(std::net::Shutdown::Write)
    }
}

impl Read for Conn {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Conn::Plain(s) => s.read(buf),
            Conn::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Conn {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Conn::Plain(s) => s.write(buf),
            Conn::Tls(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Conn::Plain(s) => s.flush(),
            Conn::Tls(s) => s.flush(),
        }
    }
}

/// Opens a connection to `addr` (`IP:PORT`) the way the harness reaches it (see
/// [`trust`]), with [`SLOW`] read and write timeouts.
pub fn connect(addr: &str) -> std::io::Result<Conn> {
    match trusted(addr) {
        Some(config) => connect_tls(addr, &config),
        None => {
            let tcp = TcpStream::connect(addr)?;
            tcp.set_read_timeout(Some(SLOW))?;
            tcp.set_write_timeout(Some(SLOW))?;
            Ok(Conn::Plain(tcp))
        }
    }
}

/// A TLS connection to `addr` with `config` (the address is checked against the server
/// certificate's names).
pub fn connect_tls(addr: &str, config: &Arc<rustls::ClientConfig>) -> std::io::Result<Conn> {
    let host = addr.rsplit_once(':').map(|(h, _)| h).unwrap_or(addr);
    let name = ServerName::try_from(host.trim_matches(['[', ']']).to_string())
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    let connection = rustls::ClientConnection::new(config.clone(), name)
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    let tcp = TcpStream::connect(addr)?;
    tcp.set_read_timeout(Some(SLOW))?;
    tcp.set_write_timeout(Some(SLOW))?;
    Ok(Conn::Tls(Box::new(rustls::StreamOwned::new(
        connection, tcp,
    ))))
}

/// Reads a whole response until the server closes. A TLS server may close without a
/// close_notify after `Connection: close`: what came before counts.
pub fn read_to_close(conn: &mut Conn) -> std::io::Result<Vec<u8>> {
    let mut raw = Vec::new();
    match conn.read_to_end(&mut raw) {
        Ok(_) => Ok(raw),
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !raw.is_empty() => Ok(raw),
        Err(e) => Err(e),
    }
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
    let mut conn = connect_tls(addr, config)?;
    conn.write_all(&request_bytes(addr, method, path, token, headers, body))?;
    conn.flush()?;
    parse_response(&read_to_close(&mut conn)?)
}
