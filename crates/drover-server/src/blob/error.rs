//! What can go wrong storing or reading a blob.

/// A failure of the blob store, named by what was being done.
#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    /// A key that would escape the store or that the backends cannot all hold.
    #[error("{key:?} is not a blob key: {reason}")]
    BadKey { key: String, reason: &'static str },
    /// `--object-store` names no store we can open.
    #[error("--object-store {url:?}: {reason}")]
    BadUrl { url: String, reason: String },
    /// A local directory could not be read or written.
    #[error("the blob directory {path}: {source}")]
    Directory {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    /// The object store refused or failed a request. (Not a `#[source]`: its message
    /// already tells its whole chain, which a caller printing the chain would repeat.)
    #[error("the object store ({store}): {error}")]
    Object {
        store: String,
        error: object_store::Error,
    },
    /// The start-up check failed: the store cannot be used as configured.
    #[error(
        "cannot use the object store {store}: {error} (the bucket must exist, and the credentials in the environment must be accepted)"
    )]
    Unusable {
        store: String,
        error: object_store::Error,
    },
    /// The store did not answer in time.
    #[error("the object store ({store}) did not answer within {seconds} s")]
    Timeout { store: String, seconds: u64 },
    /// A blocking file task died (panicked or was cancelled).
    #[error("a blocking file task failed: {0}")]
    Join(#[from] tokio::task::JoinError),
}
