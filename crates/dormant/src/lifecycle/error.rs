//! Why a lifecycle operation failed, with what a person needs to act on it.

use crate::error_kind::ErrorKind;
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
    /// What kind of failure this is; `ErrorKind` says how it is answered.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::NotFound(_) => ErrorKind::NotFound,
            Self::NameTaken(_) => ErrorKind::NameTaken,
            Self::ImageNotPresent(_) => ErrorKind::ImageNotPresent,
            Self::Invalid { .. } => ErrorKind::Invalid,
            Self::Runtime {
                source: RuntimeError::Conflict { .. },
                ..
            } => ErrorKind::DockerConflict,
            Self::Runtime {
                source: RuntimeError::Unavailable { .. },
                ..
            } => ErrorKind::DockerUnavailable,
            Self::Runtime { .. } => ErrorKind::DockerFailed,
            Self::NotReady { .. } => ErrorKind::NotReady,
            Self::Wake { error, .. } => error.kind.error_kind(),
            Self::NeverFits(_) => ErrorKind::NeverFits,
            Self::ArchiveUnsupported(_) => ErrorKind::ArchiveUnsupported,
            Self::Conflict(_) => ErrorKind::Conflict,
            Self::Snapshot { .. } => ErrorKind::SnapshotFailed,
            Self::Store(_) => ErrorKind::StoreFailed,
        }
    }

    /// When it is worth trying again, if the failure says.
    pub fn retry_after(&self) -> Option<std::time::Duration> {
        match self {
            Self::Wake { error, .. } => error.retry_after,
            _ => None,
        }
    }

    pub fn runtime(name: &str, source: RuntimeError) -> Self {
        Self::Runtime {
            name: name.to_owned(),
            source,
        }
    }
}
