//! The TLS configuration of a client of the cluster: which CA it trusts, and the
//! certificate it presents, if any.
//!
//! A cluster has its own CA (`drover tls ca create`, or the one `drover up` makes), so
//! a client given the CA's certificate trusts that CA alone, not the system's roots: a
//! certificate some public CA issued for the same name is refused. Without one, an
//! `https://` URL is checked against the system's roots (a server behind a proxy with a
//! public certificate).

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum TlsConfigError {
    #[error("the CA certificate is not valid PEM: {0}")]
    CaPem(String),
    #[error("the CA file holds no certificate")]
    NoCa,
    #[error("the client certificate is not valid PEM: {0}")]
    CertPem(String),
    #[error("the client key is not valid PEM: {0}")]
    KeyPem(String),
    #[error(transparent)]
    Rustls(#[from] rustls::Error),
}

/// A certificate and key a client presents (mutual TLS), both PEM.
#[derive(Clone)]
pub struct ClientIdentity {
    pub cert_pem: String,
    pub key_pem: String,
}

impl std::fmt::Debug for ClientIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClientIdentity(…)")
    }
}

/// The ring provider, explicitly: no process-wide default is needed for our own
/// configurations (reqwest's fallback verifier still needs one; `main` installs it).
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Makes ring the process's default crypto provider unless one is set. reqwest
/// (`rustls-no-provider`) and tokio-tungstenite build their fallback configurations
/// from the default and panic without one; each entry point calls this first.
pub fn install_provider() {
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        // Racing another thread's install is fine: either one is ring.
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
}

/// The certificates of a PEM text.
pub fn certificates(pem: &str) -> Result<Vec<CertificateDer<'static>>, TlsConfigError> {
    CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsConfigError::CaPem(e.to_string()))
}

/// A root store holding the CA certificates of `ca_pem` only.
pub fn roots(ca_pem: &str) -> Result<rustls::RootCertStore, TlsConfigError> {
    let mut roots = rustls::RootCertStore::empty();
    let certs = certificates(ca_pem)?;
    if certs.is_empty() {
        return Err(TlsConfigError::NoCa);
    }
    for cert in certs {
        roots.add(cert)?;
    }
    Ok(roots)
}

/// A client configuration trusting the CA of `ca_pem` only, presenting `identity` when
/// given. HTTP/1.1 only (no ALPN): WebSocket upgrades and the servers' small RPCs need
/// nothing more.
pub fn client_config(
    ca_pem: &str,
    identity: Option<&ClientIdentity>,
) -> Result<rustls::ClientConfig, TlsConfigError> {
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots(ca_pem)?);
    Ok(match identity {
        Some(id) => {
            let chain = CertificateDer::pem_slice_iter(id.cert_pem.as_bytes())
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| TlsConfigError::CertPem(e.to_string()))?;
            let key = PrivateKeyDer::from_pem_slice(id.key_pem.as_bytes())
                .map_err(|e| TlsConfigError::KeyPem(e.to_string()))?;
            builder.with_client_auth_cert(chain, key)?
        }
        None => builder.with_no_client_auth(),
    })
}
