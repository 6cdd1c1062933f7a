//! A server's TLS files, and the rustls configurations made from them.

use super::authority::{CertRole, CertificateAuthority, local_hosts};
use super::{Opaque, TlsError};
use drover_client::tls::{ClientIdentity, client_config, provider, roots};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::PrivateKeyDer;
use rustls::pki_types::pem::PemObject;
use rustls::server::WebPkiClientVerifier;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Where a server's TLS files are: `ca.crt`, `server.crt`, `server.key` in one
/// directory (`ca.key` too when this server made the CA).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsPaths {
    pub dir: PathBuf,
}

impl TlsPaths {
    /// The default: `<data_dir>/tls`.
    pub fn in_data_dir(data_dir: &Path) -> TlsPaths {
        TlsPaths {
            dir: data_dir.join("tls"),
        }
    }

    pub fn ca(&self) -> PathBuf {
        CertificateAuthority::cert_path(&self.dir)
    }

    pub fn cert(&self) -> PathBuf {
        self.dir.join("server.crt")
    }

    pub fn key(&self) -> PathBuf {
        self.dir.join("server.key")
    }

    /// Whether the server's certificate is there (then TLS is on).
    pub fn exist(&self) -> bool {
        self.cert().is_file()
    }

    /// Creates a CA and a server certificate for this machine in the directory, unless
    /// a server certificate is there already (`drover up`, first start).
    pub fn ensure_local(&self, listen: Option<std::net::IpAddr>) -> Result<(), TlsError> {
        if self.exist() {
            return Ok(());
        }
        let ca = if CertificateAuthority::key_path(&self.dir).is_file() {
            CertificateAuthority::load(&self.dir)?
        } else {
            let ca = CertificateAuthority::create()?;
            ca.write(&self.dir)?;
            ca
        };
        ca.issue(CertRole::Server, "drover-server", &local_hosts(listen))?
            .write(&self.dir, CertRole::Server)?;
        Ok(())
    }
}

/// What the server's TLS listener checked about a connection's client certificate,
/// attached to every request of that connection. Absent on a plain-HTTP listener.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerCertificate {
    /// The role of a certificate signed by the cluster's CA; `None` without a client
    /// certificate (a certificate from another CA fails the handshake).
    pub role: Option<CertRole>,
}

impl PeerCertificate {
    /// Reads the role from the organizational unit of the verified leaf certificate.
    pub fn from_chain(chain: Option<&[CertificateDer<'_>]>) -> PeerCertificate {
        let role = chain.and_then(|c| c.first()).and_then(|leaf| {
            let (_, cert) = x509_parser::parse_x509_certificate(leaf.as_ref()).ok()?;
            cert.subject()
                .iter_organizational_unit()
                .filter_map(|ou| ou.as_str().ok())
                .find_map(CertRole::from_unit)
        });
        PeerCertificate { role }
    }
}

/// A server's TLS configurations: for its listener and for its calls to other servers.
#[derive(Clone, Debug)]
pub struct TlsSettings {
    server: Opaque<Arc<rustls::ServerConfig>>,
    peer: Opaque<rustls::ClientConfig>,
    pub paths: TlsPaths,
}

impl TlsSettings {
    /// Reads the files of `paths` (blocking file reads: call off the async threads).
    pub fn load(paths: &TlsPaths) -> Result<TlsSettings, TlsError> {
        let read = |path: PathBuf| {
            std::fs::read_to_string(&path).map_err(|source| TlsError::Read { path, source })
        };
        let ca_pem = read(paths.ca())?;
        let cert_pem = read(paths.cert())?;
        let key_pem = read(paths.key())?;
        let bad = |path: PathBuf| {
            move |e: drover_client::tls::TlsConfigError| TlsError::BadPem {
                path,
                message: e.to_string(),
            }
        };
        let roots = Arc::new(roots(&ca_pem).map_err(bad(paths.ca()))?);
        let chain = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| TlsError::BadPem {
                path: paths.cert(),
                message: e.to_string(),
            })?;
        if chain.is_empty() {
            return Err(TlsError::NoPem {
                path: paths.cert(),
                what: "certificate",
            });
        }
        let key =
            PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).map_err(|e| TlsError::BadPem {
                path: paths.key(),
                message: e.to_string(),
            })?;
        // A client certificate is asked for but not required: clients and workers
        // authenticate with their token; one that presents a certificate must present
        // one of the cluster's CA, and servers must (the auth layer checks the role).
        let verifier = WebPkiClientVerifier::builder_with_provider(roots, provider())
            .allow_unauthenticated()
            .build()?;
        let mut server = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?
            .with_client_cert_verifier(verifier)
            .with_single_cert(chain, key)?;
        server.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        let identity = ClientIdentity { cert_pem, key_pem };
        let peer = client_config(&ca_pem, Some(&identity)).map_err(bad(paths.cert()))?;
        Ok(TlsSettings {
            server: Opaque(Arc::new(server)),
            peer: Opaque(peer),
            paths: paths.clone(),
        })
    }

    /// The listener's configuration.
    pub fn server_config(&self) -> Arc<rustls::ServerConfig> {
        self.server.0.clone()
    }

    /// For calls to other servers: trusts the cluster's CA only, presents this
    /// server's certificate.
    pub fn peer_client(&self) -> rustls::ClientConfig {
        self.peer.0.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::pki_types::pem::PemObject;

    fn role_of(pem: &str) -> Option<CertRole> {
        let der = CertificateDer::from_pem_slice(pem.as_bytes()).unwrap();
        PeerCertificate::from_chain(Some(&[der])).role
    }

    #[test]
    fn each_role_reads_back_from_its_certificate_and_a_server_needs_a_host() {
        let ca = CertificateAuthority::create().unwrap();
        let hosts = vec!["127.0.0.1".to_string(), "localhost".to_string()];
        for role in [CertRole::Server, CertRole::Worker, CertRole::Client] {
            let issued = ca.issue(role, "n", &hosts).unwrap();
            assert_eq!(role_of(&issued.cert_pem), Some(role));
        }
        assert_eq!(role_of(ca.cert_pem()), None, "the CA has no role");
        assert_eq!(PeerCertificate::from_chain(None).role, None);
        assert!(matches!(
            ca.issue(CertRole::Server, "n", &[]),
            Err(TlsError::NoHosts)
        ));
    }

    #[test]
    fn local_files_are_made_once_and_load_into_configurations() {
        let dir = std::env::temp_dir().join(format!("drover-tls-{}", std::process::id()));
        let paths = TlsPaths::in_data_dir(&dir);
        paths.ensure_local(None).unwrap();
        let first = std::fs::read(paths.cert()).unwrap();
        paths.ensure_local(None).unwrap();
        assert_eq!(std::fs::read(paths.cert()).unwrap(), first, "not re-issued");
        TlsSettings::load(&paths).unwrap();
        // Writing over an existing CA is refused.
        assert!(matches!(
            CertificateAuthority::create().unwrap().write(&paths.dir),
            Err(TlsError::Exists { .. })
        ));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
