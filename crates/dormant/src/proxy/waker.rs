//! What the proxy needs from lifecycle: "a ready upstream for this route".
//! How lifecycle gets there (start, recreate, restore) is its own business.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use crate::error_kind::ErrorKind;
use crate::lifecycle::table::Route;

/// Why no upstream could be had.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WakeError {
    pub kind: WakeErrorKind,
    /// Short, for a person: what went wrong.
    pub reason: String,
    /// When it is worth trying again, if known.
    pub retry_after: Option<Duration>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WakeErrorKind {
    /// The wake was tried and failed.
    Failed,
    /// An earlier wake failed and the next try waits for its backoff.
    BackingOff,
    /// The container did not become ready in time.
    TimedOut,
    /// The container was deleted meanwhile.
    Deleted,
    /// No room to start it under the capacity limits.
    NoRoom,
    /// Not enough free disk to restore it.
    NoSpace,
    /// Its tenant's running quota is full and none of the tenant's own
    /// containers could be put to sleep.
    QuotaFull,
}

impl WakeErrorKind {
    pub fn error_kind(self) -> ErrorKind {
        match self {
            Self::Failed => ErrorKind::WakeFailed,
            Self::BackingOff => ErrorKind::BackingOff,
            Self::TimedOut => ErrorKind::TimedOut,
            Self::Deleted => ErrorKind::NotFound,
            Self::NoRoom => ErrorKind::NoRoom,
            Self::NoSpace => ErrorKind::NoSpace,
            Self::QuotaFull => ErrorKind::RunningQuotaFull,
        }
    }
}

#[async_trait]
pub trait Waker: Send + Sync + 'static {
    /// Where the route's container answers, waking it first if needed.
    /// Concurrent callers for one route share one wake.
    async fn ready_upstream(&self, route: &Arc<Route>) -> Result<SocketAddr, WakeError>;

    /// Starts waking the route's container in the background, unless it is
    /// awake or already waking.
    fn begin_wake(&self, route: &Arc<Route>);
}
