//! Why a lifecycle operation failed, with what a person needs to act on it.

use crate::error_kind::ErrorKind;
use crate::snapshot::SnapshotError;

/// When a request refused for lack of disk is worth trying again.
pub const NO_SPACE_RETRY: std::time::Duration = std::time::Duration::from_secs(60);
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
    /// A tenant's quota refuses it; the message names the quota and the numbers.
    #[error("{0}")]
    QuotaExceeded(String),
    #[error("container `{name}`: snapshot: {reason}")]
    Snapshot { name: String, reason: String },
    /// Not enough free disk to write a snapshot or restore one; nothing
    /// was written or deleted.
    #[error("container `{name}`: {reason}")]
    NoSpace { name: String, reason: String },
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
            Self::QuotaExceeded(_) => ErrorKind::QuotaExceeded,
            Self::Snapshot { .. } => ErrorKind::SnapshotFailed,
            Self::NoSpace { .. } => ErrorKind::NoSpace,
            Self::Store(_) => ErrorKind::StoreFailed,
        }
    }

    /// When it is worth trying again, if the failure says.
    pub fn retry_after(&self) -> Option<std::time::Duration> {
        match self {
            Self::Wake { error, .. } => error.retry_after,
            Self::NoSpace { .. } => Some(NO_SPACE_RETRY),
            _ => None,
        }
    }

    /// A snapshot's failure for container `name`; running out of disk is
    /// its own kind (503), told without the host's paths.
    pub fn from_snapshot(name: &str, error: SnapshotError) -> Self {
        match error {
            SnapshotError::NoSpace {
                needed, available, ..
            } => Self::NoSpace {
                name: name.to_owned(),
                reason: format!(
                    "not enough free disk on this host ({} available, {} needed with --min-free-disk); nothing was changed",
                    gib(available),
                    gib(needed)
                ),
            },
            other => Self::Snapshot {
                name: name.to_owned(),
                reason: other.to_string(),
            },
        }
    }

    pub fn runtime(name: &str, source: RuntimeError) -> Self {
        Self::Runtime {
            name: name.to_owned(),
            source,
        }
    }
}

fn gib(bytes: u64) -> String {
    format!("{:.1} GiB", bytes as f64 / (1u64 << 30) as f64)
}
