//! The cluster's certificate authority: creating it, and signing certificates with it.

use super::TlsError;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// What a certificate of the cluster is for, written as the organizational unit of its
/// subject so that a server can tell a peer server from a worker or a client.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CertRole {
    Server,
    Worker,
    Client,
}

impl CertRole {
    /// The file stem of this role's certificate and key (`server.crt`, `server.key`).
    pub fn as_str(self) -> &'static str {
        match self {
            CertRole::Server => "server",
            CertRole::Worker => "worker",
            CertRole::Client => "client",
        }
    }

    fn unit(self) -> &'static str {
        match self {
            CertRole::Server => "drover-server",
            CertRole::Worker => "drover-worker",
            CertRole::Client => "drover-client",
        }
    }

    /// The role an organizational unit names, if any.
    pub fn from_unit(unit: &str) -> Option<CertRole> {
        [CertRole::Server, CertRole::Worker, CertRole::Client]
            .into_iter()
            .find(|r| r.unit() == unit)
    }
}

/// The CA's common name: the same for every cluster (each has its own key).
const CA_NAME: &str = "Drover cluster CA";
const CA_CERT: &str = "ca.crt";
const CA_KEY: &str = "ca.key";
/// How long a CA and a leaf certificate are valid. Leaves are re-issued with
/// `drover tls cert create`; there is no rotation without a restart yet.
const CA_YEARS: i32 = 20;
const LEAF_YEARS: i32 = 5;

/// A certificate and its private key, both PEM.
#[derive(Clone)]
pub struct IssuedCertificate {
    pub cert_pem: String,
    pub key_pem: String,
}

impl std::fmt::Debug for IssuedCertificate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("IssuedCertificate(…)")
    }
}

impl IssuedCertificate {
    /// Writes `<role>.crt` (mode 0644) and `<role>.key` (mode 0600) into `dir`;
    /// refuses to replace existing files.
    pub fn write(&self, dir: &Path, role: CertRole) -> Result<(PathBuf, PathBuf), TlsError> {
        create_dir(dir)?;
        let cert = dir.join(format!("{}.crt", role.as_str()));
        let key = dir.join(format!("{}.key", role.as_str()));
        refuse_existing(&[&cert, &key])?;
        write_file(&key, &self.key_pem, 0o600)?;
        write_file(&cert, &self.cert_pem, 0o644)?;
        Ok((cert, key))
    }
}

/// The cluster's CA: its certificate and signing key.
pub struct CertificateAuthority {
    cert_pem: String,
    key: KeyPair,
}

impl std::fmt::Debug for CertificateAuthority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CertificateAuthority(…)")
    }
}

impl CertificateAuthority {
    /// A new CA with a fresh ECDSA P-256 key.
    pub fn create() -> Result<CertificateAuthority, TlsError> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.distinguished_name = DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, CA_NAME);
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        set_validity(&mut params, CA_YEARS);
        let cert = params.self_signed(&key)?;
        Ok(CertificateAuthority {
            cert_pem: cert.pem(),
            key,
        })
    }

    /// The CA certificate, PEM: what clients, workers and servers trust.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The CA certificate file of a directory.
    pub fn cert_path(dir: &Path) -> PathBuf {
        dir.join(CA_CERT)
    }

    /// The CA key file of a directory.
    pub fn key_path(dir: &Path) -> PathBuf {
        dir.join(CA_KEY)
    }

    /// Reads `ca.crt` and `ca.key` from `dir`.
    pub fn load(dir: &Path) -> Result<CertificateAuthority, TlsError> {
        let cert_pem = read(&CertificateAuthority::cert_path(dir))?;
        let key_path = CertificateAuthority::key_path(dir);
        let key = KeyPair::from_pem(&read(&key_path)?).map_err(|e| TlsError::BadPem {
            path: key_path,
            message: e.to_string(),
        })?;
        Ok(CertificateAuthority { cert_pem, key })
    }

    /// Writes `ca.crt` (0644) and `ca.key` (0600) into `dir`; refuses to replace them.
    pub fn write(&self, dir: &Path) -> Result<(), TlsError> {
        create_dir(dir)?;
        let cert = CertificateAuthority::cert_path(dir);
        let key = CertificateAuthority::key_path(dir);
        refuse_existing(&[&cert, &key])?;
        write_file(&key, &self.key.serialize_pem(), 0o600)?;
        write_file(&cert, &self.cert_pem, 0o644)
    }

    /// Signs a certificate for `role`. `name` becomes the common name; `hosts` (DNS
    /// names or IP addresses) the subject alternative names, which a server
    /// certificate needs: clients check the address they dialled against them.
    pub fn issue(
        &self,
        role: CertRole,
        name: &str,
        hosts: &[String],
    ) -> Result<IssuedCertificate, TlsError> {
        if role == CertRole::Server && hosts.is_empty() {
            return Err(TlsError::NoHosts);
        }
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(hosts.to_vec())?;
        params.distinguished_name = DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, name);
        params
            .distinguished_name
            .push(DnType::OrganizationalUnitName, role.unit());
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        // A server is also a client of the other servers (mutual TLS).
        params.extended_key_usages = match role {
            CertRole::Server => vec![
                ExtendedKeyUsagePurpose::ServerAuth,
                ExtendedKeyUsagePurpose::ClientAuth,
            ],
            CertRole::Worker | CertRole::Client => vec![ExtendedKeyUsagePurpose::ClientAuth],
        };
        params.use_authority_key_identifier_extension = true;
        set_validity(&mut params, LEAF_YEARS);
        let issuer = Issuer::from_ca_cert_pem(&self.cert_pem, &self.key)?;
        let cert = params.signed_by(&key, &issuer)?;
        Ok(IssuedCertificate {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }
}

/// The host names and addresses a server certificate made on this machine covers
/// without being told: loopback, `localhost`, the host name, and the listen address
/// when it is a specific one.
pub fn local_hosts(listen: Option<std::net::IpAddr>) -> Vec<String> {
    let mut hosts = vec!["localhost".to_string(), "127.0.0.1".into(), "::1".into()];
    if let Ok(name) = std::fs::read_to_string("/proc/sys/kernel/hostname") {
        let name = name.trim();
        if !name.is_empty() && !hosts.iter().any(|h| h == name) {
            hosts.push(name.to_string());
        }
    }
    if let Some(ip) = listen.filter(|ip| !ip.is_unspecified() && !ip.is_loopback()) {
        hosts.push(ip.to_string());
    }
    hosts
}

/// Valid from a year before now (clocks disagree) for `years`.
fn set_validity(params: &mut CertificateParams, years: i32) {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    // Whole years are enough here: a year is 365.2425 days.
    let year = 1970 + (secs / 31_556_952) as i32;
    params.not_before = rcgen::date_time_ymd(year - 1, 1, 1);
    params.not_after = rcgen::date_time_ymd(year + years, 1, 1);
}

fn read(path: &Path) -> Result<String, TlsError> {
    std::fs::read_to_string(path).map_err(|source| TlsError::Read {
        path: path.to_path_buf(),
        source,
    })
}

fn create_dir(dir: &Path) -> Result<(), TlsError> {
    std::fs::create_dir_all(dir).map_err(|source| TlsError::Write {
        path: dir.to_path_buf(),
        source,
    })
}

fn refuse_existing(paths: &[&Path]) -> Result<(), TlsError> {
    match paths.iter().find(|p| p.exists()) {
        Some(p) => Err(TlsError::Exists {
            path: p.to_path_buf(),
        }),
        None => Ok(()),
    }
}

/// Writes through a temporary file and a rename, so a crash leaves the old file or the
/// new one; a key file is created with its final mode (never readable by others).
pub(crate) fn write_file(path: &Path, text: &str, mode: u32) -> Result<(), TlsError> {
    let err = |source| TlsError::Write {
        path: path.to_path_buf(),
        source,
    };
    let tmp = path.with_extension("tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)
        .map_err(err)?;
    f.write_all(text.as_bytes()).map_err(err)?;
    f.sync_all().map_err(err)?;
    std::fs::rename(&tmp, path).map_err(err)
}
