//! The blob store: immutable objects under keys, on a local directory or in an object
//! store (S3, GCS, Azure). Task output of ended attempts is archived in it
//! (`crate::output_archive`); anything else stored "like task output" (checkpoints)
//! can use the same seam: a [`BlobKey`] under its own first segment.
//!
//! The two kinds are an enum rather than a trait object: there are exactly two, and
//! async methods on an enum need no boxing. Directory work runs on the blocking pool;
//! the object store client is async.

mod config;
mod directory;
mod error;
mod key;
mod object;

pub use config::ObjectStoreConfig;
pub use directory::DirectoryBlobs;
pub use error::BlobError;
pub use key::BlobKey;
pub use object::ObjectBlobs;

use bytes::Bytes;
use std::time::Duration;

/// One stored blob, as a listing tells it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlobMeta {
    pub key: BlobKey,
    pub size: u64,
}

/// Where blobs go.
#[derive(Clone, Debug)]
pub enum BlobStore {
    Directory(DirectoryBlobs),
    Object(ObjectBlobs),
}

impl BlobStore {
    /// For messages: the directory or the URL.
    pub fn describe(&self) -> String {
        match self {
            BlobStore::Directory(d) => d.root().display().to_string(),
            BlobStore::Object(o) => o.url().to_string(),
        }
    }

    /// Whether the store answers (and, for a directory, can be written).
    pub async fn check(&self, limit: Duration) -> Result<(), BlobError> {
        match self {
            BlobStore::Directory(d) => {
                let d = d.clone();
                tokio::task::spawn_blocking(move || d.check()).await?
            }
            BlobStore::Object(o) => o.check(limit).await,
        }
    }

    /// Stores `data` under `key`, replacing any blob there whole.
    pub async fn put(&self, key: &BlobKey, data: Bytes) -> Result<(), BlobError> {
        match self {
            BlobStore::Directory(d) => {
                let (d, key) = (d.clone(), key.clone());
                tokio::task::spawn_blocking(move || d.put(&key, &data)).await?
            }
            BlobStore::Object(o) => o.put(key, data).await,
        }
    }

    /// Up to `max` bytes from `offset`, and the blob's size; `None` if there is none.
    pub async fn read(
        &self,
        key: &BlobKey,
        offset: u64,
        max: usize,
    ) -> Result<Option<(Vec<u8>, u64)>, BlobError> {
        match self {
            BlobStore::Directory(d) => {
                let (d, key) = (d.clone(), key.clone());
                tokio::task::spawn_blocking(move || d.read(&key, offset, max)).await?
            }
            BlobStore::Object(o) => o.read(key, offset, max).await,
        }
    }

    /// The blob's size, or `None` if there is none.
    pub async fn size(&self, key: &BlobKey) -> Result<Option<u64>, BlobError> {
        match self {
            BlobStore::Directory(d) => {
                let (d, key) = (d.clone(), key.clone());
                tokio::task::spawn_blocking(move || d.size(&key)).await?
            }
            BlobStore::Object(o) => o.size(key).await,
        }
    }

    /// Every blob under the segments of `prefix` (`output/1` holds `output/1/…`, not
    /// `output/12/…`), sorted by key.
    pub async fn list(&self, prefix: &BlobKey) -> Result<Vec<BlobMeta>, BlobError> {
        match self {
            BlobStore::Directory(d) => {
                let (d, prefix) = (d.clone(), prefix.clone());
                tokio::task::spawn_blocking(move || d.list(&prefix)).await?
            }
            BlobStore::Object(o) => o.list(prefix).await,
        }
    }

    /// Removes a blob; one that is not there is not an error.
    pub async fn delete(&self, key: &BlobKey) -> Result<(), BlobError> {
        match self {
            BlobStore::Directory(d) => {
                let (d, key) = (d.clone(), key.clone());
                tokio::task::spawn_blocking(move || d.delete(&key)).await?
            }
            BlobStore::Object(o) => o.delete(key).await,
        }
    }
}
