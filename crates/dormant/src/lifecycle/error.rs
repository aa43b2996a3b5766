//! Why a lifecycle operation failed, with what a person needs to act on it.

use crate::proxy::waker::WakeError;
use crate::runtime::RuntimeError;
use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum LifecycleError {
    #[error("no container named `{0}`")]
    NotFound(String),
    #[error("a container named `{0}` already exists; pick another name or delete it first")]
    NameTaken(String),
    #[error("image `{0}` is not present on this Docker host; build or load it first (dormant never pulls images)")]
    ImageNotPresent(String),
    #[error("{field}: {message}")]
    Invalid {
        field: &'static str,
        message: String,
    },
    #[error("container `{name}`: {source}")]
    Runtime {
        name: String,
        #[source]
        source: RuntimeError,
    },
    #[error("container `{name}` did not become ready: {reason}")]
    NotReady { name: String, reason: String },
    #[error("container `{name}` could not be woken: {}", error.reason)]
    Wake { name: String, error: WakeError },
    #[error("{0}")]
    NeverFits(String),
    #[error("archiving is not available here: {0}")]
    ArchiveUnsupported(String),
    #[error("{0}")]
    Conflict(String),
    #[error("container `{name}`: snapshot: {reason}")]
    Snapshot { name: String, reason: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl LifecycleError {
    pub fn runtime(name: &str, source: RuntimeError) -> Self {
        Self::Runtime {
            name: name.to_owned(),
            source,
        }
    }
}
