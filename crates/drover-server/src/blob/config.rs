//! `--object-store URL` and its options: which store, and how to reach it.

use super::{BlobError, BlobStore, DirectoryBlobs, ObjectBlobs};
use std::sync::Arc;
use std::time::Duration;

/// Where the servers keep blobs beside their own disks (task output of ended
/// attempts): `s3://bucket/prefix`, `gs://bucket/prefix`, `az://container/prefix` or
/// `file:///absolute/path`. Credentials come from each provider's standard environment
/// variables (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`,
/// `GOOGLE_SERVICE_ACCOUNT`, `AZURE_STORAGE_ACCOUNT_NAME`, `AZURE_STORAGE_ACCOUNT_KEY`,
/// …), never from the command line.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ObjectStoreConfig {
    pub url: String,
    /// Another endpoint than the provider's (an S3-compatible server such as MinIO or
    /// moto, an Azure emulator).
    pub endpoint: Option<String>,
    /// Allow `http://` endpoints (credentials and output then cross the network in the
    /// clear): only for a local test server.
    pub allow_http: bool,
    /// The S3 region (else `AWS_REGION`/`AWS_DEFAULT_REGION`, else us-east-1).
    pub region: Option<String>,
}

/// How long the start-up check waits for the store to answer.
const CHECK_TIMEOUT: Duration = Duration::from_secs(20);

impl ObjectStoreConfig {
    /// Builds the store the URL names (no request is made yet: see
    /// [`ObjectStoreConfig::open_checked`]).
    pub fn open(&self) -> Result<BlobStore, BlobError> {
        let url = self.url.trim();
        let bad = |reason: String| BlobError::BadUrl {
            url: url.to_string(),
            reason,
        };
        let (scheme, rest) = url.split_once("://").ok_or_else(|| {
            bad("expected s3://BUCKET[/PREFIX], gs://BUCKET[/PREFIX], az://CONTAINER[/PREFIX] or file:///PATH".into())
        })?;
        if scheme == "file" {
            if !rest.starts_with('/') {
                return Err(bad(
                    "a file:// URL takes an absolute path: file:///PATH".into()
                ));
            }
            if self.endpoint.is_some() || self.region.is_some() {
                return Err(bad(
                    "--object-store-endpoint and --object-store-region do not apply to file://"
                        .into(),
                ));
            }
            return Ok(BlobStore::Directory(DirectoryBlobs::new(rest.into())));
        }
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(bad("no bucket (or container) name".into()));
        }
        let prefix = prefix.trim_matches('/');
        if !prefix.is_empty() {
            super::BlobKey::new(prefix).map_err(|e| bad(format!("the prefix: {e}")))?;
        }
        // The stores' HTTP clients need a process-wide rustls provider (ring: see
        // DEPENDENCIES); installing it twice is harmless.
        drover_client::tls::install_provider();
        let base = format!("{scheme}://{bucket}");
        let retry = object_store::RetryConfig {
            max_retries: 3,
            retry_timeout: Duration::from_secs(30),
            ..Default::default()
        };
        let client = object_store::ClientOptions::new()
            .with_connect_timeout(Duration::from_secs(5))
            .with_timeout(Duration::from_secs(60))
            .with_allow_http(self.allow_http);
        let built: Result<Arc<dyn object_store::ObjectStore>, object_store::Error> = match scheme {
            "s3" | "s3a" => {
                let mut b = object_store::aws::AmazonS3Builder::from_env()
                    .with_url(base)
                    .with_retry(retry)
                    .with_client_options(client)
                    .with_allow_http(self.allow_http);
                if let Some(endpoint) = &self.endpoint {
                    b = b.with_endpoint(endpoint);
                }
                if let Some(region) = &self.region {
                    b = b.with_region(region);
                }
                b.build().map(|s| Arc::new(s) as _)
            }
            "gs" => {
                if self.endpoint.is_some() || self.region.is_some() {
                    return Err(bad(
                        "--object-store-endpoint and --object-store-region are for s3:// and az:// (GCS reads GOOGLE_* variables)".into(),
                    ));
                }
                object_store::gcp::GoogleCloudStorageBuilder::from_env()
                    .with_url(base)
                    .with_retry(retry)
                    .with_client_options(client)
                    .build()
                    .map(|s| Arc::new(s) as _)
            }
            "az" | "azure" | "abfs" | "abfss" => {
                if self.region.is_some() {
                    return Err(bad("--object-store-region is for s3://".into()));
                }
                let mut b = object_store::azure::MicrosoftAzureBuilder::from_env()
                    .with_url(base)
                    .with_retry(retry)
                    .with_client_options(client)
                    .with_allow_http(self.allow_http);
                if let Some(endpoint) = &self.endpoint {
                    b = b.with_endpoint(endpoint.clone());
                }
                b.build().map(|s| Arc::new(s) as _)
            }
            other => {
                return Err(bad(format!(
                    "unknown scheme {other:?}: use s3://, gs://, az:// or file://"
                )));
            }
        };
        let store = built.map_err(|e| bad(e.to_string()))?;
        Ok(BlobStore::Object(ObjectBlobs::new(
            store,
            prefix.to_string(),
            url.to_string(),
        )))
    }

    /// Builds the store and checks it answers (the bucket exists, the credentials are
    /// accepted), so a mistake stops the server at start rather than at the first
    /// upload.
    pub async fn open_checked(&self) -> Result<BlobStore, BlobError> {
        let store = self.open()?;
        store.check(CHECK_TIMEOUT).await?;
        Ok(store)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(url: &str) -> ObjectStoreConfig {
        ObjectStoreConfig {
            url: url.into(),
            ..Default::default()
        }
    }

    #[test]
    fn urls_are_checked_before_any_request() {
        for bad in [
            "bucket",
            "s3://",
            "s3:///prefix",
            "ftp://x/y",
            "file://relative/path",
            "s3://bucket/../up",
        ] {
            let err = config(bad).open().unwrap_err();
            assert!(matches!(err, BlobError::BadUrl { .. }), "{bad}: {err}");
            assert!(err.to_string().contains("--object-store"), "{err}");
        }
        assert!(matches!(
            config("file:///tmp/x").open().unwrap(),
            BlobStore::Directory(_)
        ));
        let mut s3 = config("s3://bucket/some/prefix");
        s3.endpoint = Some("http://127.0.0.1:1".into());
        s3.allow_http = true;
        s3.region = Some("us-east-1".into());
        assert!(matches!(s3.open().unwrap(), BlobStore::Object(_)));
    }
}
