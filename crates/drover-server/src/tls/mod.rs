//! TLS on the server's one listener, and the cluster's certificates.
//!
//! A cluster has its own certificate authority (`ca.crt` + `ca.key`). It signs three
//! kinds of certificates, told apart by the organizational unit of their subject
//! ([`CertRole`]): a **server** certificate (valid for TLS server and client use, with
//! the server's host names and addresses) for each server, a **worker** and a
//! **client** certificate (client use only). A server's TLS directory
//! ([`TlsPaths`], `<data_dir>/tls` by default) holds `ca.crt`, `server.crt` and
//! `server.key`; `drover up` creates all of them on first start, `drover tls ...`
//! makes them for a real cluster.
//!
//! The listener ([`listener::serve`]) asks every connection for a client
//! certificate but does not require one: clients and workers authenticate with their
//! token as before. What a certificate of the cluster's CA proves is recorded on each
//! request ([`PeerCertificate`]); the auth layer lets only a *server* certificate
//! reach the servers' routes (`/v1/raft/…`), so servers authenticate each other with
//! mutual TLS (and still present the peer token), and a worker's or client's
//! certificate cannot speak raft. A certificate from another CA fails the handshake.
//!
//! Servers talk to each other through [`TlsSettings::peer_client`]: it trusts the
//! cluster's CA only and presents the server's own certificate.

mod authority;
pub mod listener;
mod settings;

pub use authority::{CertRole, CertificateAuthority, IssuedCertificate, local_hosts};
pub use settings::{PeerCertificate, TlsPaths, TlsSettings};

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} already exists: remove it first if you mean to replace it")]
    Exists { path: PathBuf },
    #[error("{path} holds no PEM {what}")]
    NoPem { path: PathBuf, what: &'static str },
    #[error("{path}: {message}")]
    BadPem { path: PathBuf, message: String },
    #[error("cannot make a certificate: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("the TLS configuration is not valid: {0}")]
    Config(#[from] rustls::Error),
    #[error("the CA certificate cannot verify clients: {0}")]
    Verifier(#[from] rustls::server::VerifierBuilderError),
    #[error("a server certificate needs at least one --host (a DNS name or an IP address)")]
    NoHosts,
}

/// The `Debug` of a rustls configuration is long and says nothing useful in ours.
#[derive(Clone)]
pub(crate) struct Opaque<T>(pub T);

impl<T> std::fmt::Debug for Opaque<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("…")
    }
}
