//! `drover tls`: the cluster's CA and certificates for a real cluster (`drover up`
//! makes its own), and how the CLI and workers find the CA to trust.

use crate::Global;
use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use drover_client::discovery;
use drover_server::tls::{CertRole, CertificateAuthority, TlsPaths};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

#[derive(Debug, Args)]
pub struct TlsArgs {
    #[command(subcommand)]
    command: TlsCmd,
}

#[derive(Debug, Subcommand)]
enum TlsCmd {
    /// The cluster's certificate authority
    Ca {
        #[command(subcommand)]
        command: CaCmd,
    },
    /// Certificates signed by the cluster's CA
    Cert {
        #[command(subcommand)]
        command: CertCmd,
    },
}

#[derive(Debug, Subcommand)]
enum CaCmd {
    /// Create a CA: ca.crt (give it to every server, worker and client) and ca.key
    /// (keep it private: whoever holds it can make server certificates)
    Create(CaCreateArgs),
}

#[derive(Debug, Subcommand)]
enum CertCmd {
    /// Create a certificate and its key signed by the CA: `drover tls cert create server
    /// --host HOST --out DIR` (or `worker`, `client`)
    Create(CertCreateArgs),
}

#[derive(Debug, Args)]
struct CaCreateArgs {
    /// Directory to write ca.crt and ca.key into [default: the data directory's tls/]
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
}

/// What a certificate is for. (A positional value, not `--server`: the global
/// `--server URL` flag of every command takes that name.)
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum RoleArg {
    /// A server's certificate (also used by it to authenticate to the other servers)
    Server,
    /// A worker's certificate (client authentication only)
    Worker,
    /// A client's certificate (client authentication only)
    Client,
}

#[derive(Debug, Args)]
struct CertCreateArgs {
    /// What the certificate is for
    #[arg(value_enum)]
    role: RoleArg,
    /// The certificate's common name [default: the host name]
    #[arg(long)]
    name: Option<String>,
    /// A DNS name or IP address clients reach the server by (repeatable; a server
    /// certificate needs at least one) [default for a server: localhost, 127.0.0.1,
    /// ::1 and the host name]
    #[arg(long = "host", value_name = "HOST")]
    hosts: Vec<String>,
    /// Directory holding ca.crt and ca.key [default: the data directory's tls/]
    #[arg(long, value_name = "DIR")]
    ca_dir: Option<PathBuf>,
    /// Directory to write ROLE.crt and ROLE.key (server.crt, worker.crt, client.crt)
    /// into, with a copy of ca.crt: for a server, its TLS directory
    /// (`drover server --tls-dir`, by default the server's data directory's tls/)
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
}

/// The CA directory `drover tls` uses without `--out`/`--ca-dir`.
fn default_ca_dir(g: &Global) -> PathBuf {
    g.data_dir().join("tls")
}

pub fn tls(g: &Global, a: TlsArgs) -> Result<ExitCode> {
    match a.command {
        TlsCmd::Ca {
            command: CaCmd::Create(c),
        } => {
            let dir = c.out.unwrap_or_else(|| default_ca_dir(g));
            let ca = CertificateAuthority::create()?;
            ca.write(&dir)?;
            print_written(
                g,
                &[
                    CertificateAuthority::cert_path(&dir),
                    CertificateAuthority::key_path(&dir),
                ],
            );
        }
        TlsCmd::Cert {
            command: CertCmd::Create(c),
        } => {
            let role = match c.role {
                RoleArg::Server => CertRole::Server,
                RoleArg::Worker => CertRole::Worker,
                RoleArg::Client => CertRole::Client,
            };
            let ca_dir = c.ca_dir.unwrap_or_else(|| default_ca_dir(g));
            let ca = CertificateAuthority::load(&ca_dir).with_context(|| {
                format!(
                    "no CA in {} (create one with `drover tls ca create`, or pass --ca-dir)",
                    ca_dir.display()
                )
            })?;
            let hosts = if c.hosts.is_empty() && role == CertRole::Server {
                drover_server::tls::local_hosts(None)
            } else {
                c.hosts
            };
            let name = c.name.unwrap_or_else(crate::daemons::hostname);
            let issued = ca.issue(role, &name, &hosts)?;
            let (cert, key) = issued.write(&c.out, role)?;
            let ca_copy = CertificateAuthority::cert_path(&c.out);
            if ca_copy != CertificateAuthority::cert_path(&ca_dir) {
                copy_ca(&CertificateAuthority::cert_path(&ca_dir), &ca_copy)?;
            }
            print_written(g, &[cert, key, ca_copy]);
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Copies the CA certificate beside a new certificate, unless the same is there.
fn copy_ca(from: &Path, to: &Path) -> Result<()> {
    let pem =
        std::fs::read_to_string(from).with_context(|| format!("cannot read {}", from.display()))?;
    match std::fs::read_to_string(to) {
        Ok(existing) if existing == pem => Ok(()),
        Ok(_) => bail!(
            "{} holds another CA certificate: remove it first if you mean to replace it",
            to.display()
        ),
        Err(_) => std::fs::write(to, pem).with_context(|| format!("cannot write {}", to.display())),
    }
}

fn print_written(g: &Global, files: &[PathBuf]) {
    if g.json {
        println!("{}", serde_json::json!({ "files": files }));
    } else {
        for f in files {
            println!("wrote {}", f.display());
        }
    }
}

/// The CA certificate a client or worker trusts: `--ca`/`DROVER_CA`, else the local
/// server's (in the data directory, as its token), if there is one.
pub fn ca_file(g: &Global) -> Option<PathBuf> {
    g.ca.clone().or_else(|| {
        let local = TlsPaths::in_data_dir(&discovery::server_dir(&g.data_dir())).ca();
        local.is_file().then_some(local)
    })
}

/// The TLS configuration of a client or worker: the cluster's CA only, and a
/// certificate of its own when given (`cert`, `key`); `None` without a CA file (the
/// system's roots then check an `https://` server).
pub fn client_config(
    g: &Global,
    identity: Option<(&Path, &Path)>,
) -> Result<Option<Arc<rustls::ClientConfig>>> {
    let Some(ca) = ca_file(g) else {
        if identity.is_some() {
            bail!("a client certificate needs the cluster's CA: pass --ca FILE (or set DROVER_CA)");
        }
        return Ok(None);
    };
    let read = |p: &Path| {
        std::fs::read_to_string(p).with_context(|| format!("cannot read {}", p.display()))
    };
    let ca_pem = read(&ca)?;
    let identity = match identity {
        Some((cert, key)) => Some(drover_client::tls::ClientIdentity {
            cert_pem: read(cert)?,
            key_pem: read(key)?,
        }),
        None => None,
    };
    let config = drover_client::tls::client_config(&ca_pem, identity.as_ref())
        .with_context(|| format!("the CA file {}", ca.display()))?;
    Ok(Some(Arc::new(config)))
}
