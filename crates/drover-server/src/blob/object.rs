//! Blobs in an object store (S3, GCS, Azure) through the `object_store` crate.

use super::{BlobError, BlobKey, BlobMeta};
use bytes::Bytes;
use futures_util::TryStreamExt;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use std::sync::Arc;
use std::time::Duration;

/// Blobs as objects named `<prefix>/<key>` in one bucket or container. The client is
/// async all the way (no blocking work), with its own timeouts and retries.
#[derive(Clone)]
pub struct ObjectBlobs {
    store: Arc<dyn ObjectStore>,
    /// The path part of the URL (may be empty): every key lives under it.
    prefix: String,
    /// The URL as given, for messages.
    url: String,
}

/// A whole operation (retries included) gives up after this.
const OPERATION_TIMEOUT: Duration = Duration::from_secs(120);

impl std::fmt::Debug for ObjectBlobs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ObjectBlobs")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

impl ObjectBlobs {
    pub fn new(store: Arc<dyn ObjectStore>, prefix: String, url: String) -> ObjectBlobs {
        ObjectBlobs { store, prefix, url }
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    fn path(&self, key: &str) -> ObjectPath {
        if self.prefix.is_empty() {
            ObjectPath::from(key)
        } else {
            ObjectPath::from(format!("{}/{key}", self.prefix))
        }
    }

    fn err(&self) -> impl FnOnce(object_store::Error) -> BlobError + use<> {
        let store = self.url.clone();
        move |error| BlobError::Object { store, error }
    }

    async fn bounded<T>(
        &self,
        limit: Duration,
        op: impl Future<Output = Result<T, object_store::Error>>,
    ) -> Result<T, BlobError> {
        match tokio::time::timeout(limit, op).await {
            Ok(r) => r.map_err(self.err()),
            Err(_) => Err(BlobError::Timeout {
                store: self.url.clone(),
                seconds: limit.as_secs(),
            }),
        }
    }

    /// One listing under the prefix: fails when the bucket does not exist, the
    /// credentials are refused or the endpoint does not answer within `limit`.
    pub async fn check(&self, limit: Duration) -> Result<(), BlobError> {
        let prefix = (!self.prefix.is_empty()).then(|| ObjectPath::from(self.prefix.as_str()));
        match self
            .bounded(limit, self.store.list_with_delimiter(prefix.as_ref()))
            .await
        {
            Ok(_) => Ok(()),
            Err(BlobError::Object { store, error }) => Err(BlobError::Unusable { store, error }),
            Err(e) => Err(e),
        }
    }

    pub async fn put(&self, key: &BlobKey, data: Bytes) -> Result<(), BlobError> {
        let path = self.path(key.as_str());
        self.bounded(
            OPERATION_TIMEOUT,
            self.store.put(&path, PutPayload::from_bytes(data)),
        )
        .await
        .map(|_| ())
    }

    pub async fn size(&self, key: &BlobKey) -> Result<Option<u64>, BlobError> {
        let path = self.path(key.as_str());
        match tokio::time::timeout(OPERATION_TIMEOUT, self.store.head(&path)).await {
            Ok(Ok(meta)) => Ok(Some(meta.size)),
            Ok(Err(object_store::Error::NotFound { .. })) => Ok(None),
            Ok(Err(e)) => Err(self.err()(e)),
            Err(_) => Err(BlobError::Timeout {
                store: self.url.clone(),
                seconds: OPERATION_TIMEOUT.as_secs(),
            }),
        }
    }

    /// Up to `max` bytes from `offset`, and the object's size; `None` if there is none.
    pub async fn read(
        &self,
        key: &BlobKey,
        offset: u64,
        max: usize,
    ) -> Result<Option<(Vec<u8>, u64)>, BlobError> {
        // The size first: a range starting at or past the end is an error in S3.
        let Some(size) = self.size(key).await? else {
            return Ok(None);
        };
        if offset >= size || max == 0 {
            return Ok(Some((Vec::new(), size)));
        }
        let end = size.min(offset.saturating_add(max as u64));
        let path = self.path(key.as_str());
        let bytes = self
            .bounded(OPERATION_TIMEOUT, self.store.get_range(&path, offset..end))
            .await?;
        Ok(Some((bytes.to_vec(), size)))
    }

    /// Every object under the segments of `prefix`, sorted by key.
    pub async fn list(&self, prefix: &BlobKey) -> Result<Vec<BlobMeta>, BlobError> {
        let path = self.path(prefix.as_str());
        let strip = if self.prefix.is_empty() {
            String::new()
        } else {
            format!("{}/", self.prefix)
        };
        let metas: Vec<object_store::ObjectMeta> = self
            .bounded(
                OPERATION_TIMEOUT,
                self.store.list(Some(&path)).try_collect(),
            )
            .await?;
        let mut out = Vec::with_capacity(metas.len());
        for m in metas {
            let full = m.location.to_string();
            // Objects another program put under the prefix with names that are not
            // keys of ours are left out.
            let Some(key) = full.strip_prefix(&strip) else {
                continue;
            };
            if let Ok(key) = BlobKey::new(key) {
                out.push(BlobMeta { key, size: m.size });
            }
        }
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }

    /// Removes an object; one that is not there is not an error.
    pub async fn delete(&self, key: &BlobKey) -> Result<(), BlobError> {
        let path = self.path(key.as_str());
        match tokio::time::timeout(OPERATION_TIMEOUT, self.store.delete(&path)).await {
            Ok(Ok(())) | Ok(Err(object_store::Error::NotFound { .. })) => Ok(()),
            Ok(Err(e)) => Err(self.err()(e)),
            Err(_) => Err(BlobError::Timeout {
                store: self.url.clone(),
                seconds: OPERATION_TIMEOUT.as_secs(),
            }),
        }
    }
}
