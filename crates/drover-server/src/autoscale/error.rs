//! What can go wrong talking to a provider.

/// An error of a [`super::Provider`].
#[derive(Debug, thiserror::Error)]
pub enum ProviderError {
    #[error("the Docker engine is unreachable: {0}")]
    DockerUnreachable(#[source] bollard::errors::Error),
    #[error("the Docker engine refused to {action}: {source}")]
    Docker {
        action: &'static str,
        #[source]
        source: bollard::errors::Error,
    },
    #[error(
        "the worker image {image} is not in the local Docker engine; build it with scripts/build-worker-image.sh"
    )]
    NoImage { image: String },
}
