//! Where the servers archive ended attempts' output (`drover_server::blob`,
//! `drover_server::output_archive`), on the command line and in the `[server]` section
//! of the configuration file. See README, "Cloud storage".

use crate::config::{Layers, Printer, parse_bool};
use anyhow::{Result, bail};
use clap::Args;
use drover_server::blob::ObjectStoreConfig;

#[derive(Debug, Args)]
pub struct ObjectStoreArgs {
    /// Archive the output of every ended attempt in an object store, and read it from
    /// there when a server's own copy is missing or short: s3://BUCKET[/PREFIX],
    /// gs://BUCKET[/PREFIX], az://CONTAINER[/PREFIX] or file:///PATH. Credentials come
    /// from the provider's environment variables (AWS_ACCESS_KEY_ID,
    /// AWS_SECRET_ACCESS_KEY, GOOGLE_SERVICE_ACCOUNT, AZURE_STORAGE_ACCOUNT_NAME, …). The
    /// bucket must exist: the server checks that it answers before starting [default:
    /// none, output stays on the servers' disks only]
    #[arg(long, value_name = "URL")]
    object_store: Option<String>,
    /// The object store's endpoint, for an S3-compatible server (MinIO, moto, …) or an
    /// Azure emulator, e.g. http://127.0.0.1:9000 [default: the provider's]
    #[arg(long, value_name = "URL")]
    object_store_endpoint: Option<String>,
    /// Allow an http:// endpoint (credentials and output then cross the network
    /// unencrypted): only for a local test server
    #[arg(long)]
    object_store_allow_http: bool,
    /// The S3 region [default: AWS_REGION or AWS_DEFAULT_REGION, else us-east-1]
    #[arg(long, value_name = "REGION")]
    object_store_region: Option<String>,
}

/// The layered settings (flag < environment < file < default, as every other key);
/// `None` when no store is configured. Options without a store are refused rather
/// than ignored.
pub fn settings(l: &Layers, a: &ObjectStoreArgs) -> Result<Option<ObjectStoreConfig>> {
    let text = |t: &str| Ok(t.trim().to_string());
    let url = l.value(
        a.object_store.as_deref(),
        "--object-store",
        "server",
        "object_store",
        None,
        text,
    )?;
    let endpoint = l.value(
        a.object_store_endpoint.as_deref(),
        "--object-store-endpoint",
        "server",
        "object_store_endpoint",
        None,
        text,
    )?;
    let allow_http = l
        .value(
            a.object_store_allow_http.then_some("true"),
            "--object-store-allow-http",
            "server",
            "object_store_allow_http",
            Some("false"),
            parse_bool,
        )?
        .unwrap_or(false);
    let region = l.value(
        a.object_store_region.as_deref(),
        "--object-store-region",
        "server",
        "object_store_region",
        None,
        text,
    )?;
    let Some(url) = url.filter(|u| !u.is_empty()) else {
        if endpoint.is_some() || allow_http || region.is_some() {
            bail!(
                "--object-store-endpoint, --object-store-allow-http and --object-store-region need --object-store (server.object_store)"
            );
        }
        return Ok(None);
    };
    Ok(Some(ObjectStoreConfig {
        url,
        endpoint,
        allow_http,
        region,
    }))
}

pub fn print(p: &mut Printer, store: Option<&ObjectStoreConfig>) {
    let Some(store) = store else { return };
    let t = p.section("server");
    t.insert(
        "object_store".into(),
        toml::Value::String(store.url.clone()),
    );
    if let Some(e) = &store.endpoint {
        t.insert(
            "object_store_endpoint".into(),
            toml::Value::String(e.clone()),
        );
    }
    t.insert(
        "object_store_allow_http".into(),
        toml::Value::Boolean(store.allow_http),
    );
    if let Some(r) = &store.region {
        t.insert("object_store_region".into(), toml::Value::String(r.clone()));
    }
}
