//! What went wrong, as a kind, and the one mapping from kind to HTTP status
//! and stable code. The API (JSON errors) and the proxy (a page for
//! browsers, text otherwise) both answer through it, so one kind of failure
//! never gets two statuses.

use http::StatusCode;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// No such container (or it was deleted meanwhile).
    NotFound,
    /// A field of the request is wrong; the message names it.
    Invalid,
    /// The request itself is malformed (no Host, an unreadable body).
    BadRequest,
    /// A request target dormant never forwards.
    MethodNotAllowed,
    /// Missing or wrong bearer token.
    Unauthorized,
    /// The hostname is not `<name>.<base-domain>`.
    NotOurHost,
    NameTaken,
    ImageNotPresent,
    /// The container could never fit this host's limits.
    NeverFits,
    /// The container's state does not allow the operation now.
    Conflict,
    ArchiveUnsupported,
    /// Docker refused because of a conflicting operation.
    DockerConflict,
    /// A Docker call failed.
    DockerFailed,
    /// The Docker daemon did not answer (down, restarting, overloaded).
    DockerUnavailable,
    /// The container started but its app never answered.
    NotReady,
    /// A wake was tried and failed.
    WakeFailed,
    /// An earlier wake failed and the next try waits for its backoff.
    BackingOff,
    /// The container did not become ready in time.
    TimedOut,
    /// No room to start it under the capacity limits.
    NoRoom,
    /// Writing or reading a snapshot failed.
    SnapshotFailed,
    /// Not enough free disk for a snapshot or a restore.
    NoSpace,
    /// The store (SQLite) failed.
    StoreFailed,
    /// The running container did not answer the proxied request.
    UpstreamFailed,
    /// The running container did not send its response head in time.
    UpstreamTimedOut,
    /// dormant holds as many waiting requests (or bytes) as it may, or
    /// starts as many wakes per second as it may.
    Overloaded,
    /// A tenant's quota refuses a create (or an archive).
    QuotaExceeded,
    /// A tenant runs as many containers (or as much memory) as its quota
    /// allows and none of its own could be put to sleep to make room.
    RunningQuotaFull,
    /// The token is valid but only the admin may do this.
    Forbidden,
    /// The client sent more requests of a limited kind than its rate allows.
    RateLimited,
}

impl ErrorKind {
    pub fn status(self) -> StatusCode {
        match self {
            Self::NotFound | Self::NotOurHost => StatusCode::NOT_FOUND,
            Self::Invalid | Self::BadRequest | Self::ImageNotPresent => StatusCode::BAD_REQUEST,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::Unauthorized => StatusCode::UNAUTHORIZED,
            Self::QuotaExceeded | Self::Forbidden => StatusCode::FORBIDDEN,
            Self::RunningQuotaFull => StatusCode::TOO_MANY_REQUESTS,
            Self::NameTaken | Self::Conflict | Self::ArchiveUnsupported | Self::DockerConflict => {
                StatusCode::CONFLICT
            }
            Self::NeverFits => StatusCode::UNPROCESSABLE_ENTITY,
            Self::DockerFailed | Self::NotReady | Self::WakeFailed | Self::UpstreamFailed => {
                StatusCode::BAD_GATEWAY
            }
            Self::BackingOff
            | Self::NoRoom
            | Self::NoSpace
            | Self::DockerUnavailable
            | Self::Overloaded => StatusCode::SERVICE_UNAVAILABLE,
            Self::TimedOut | Self::UpstreamTimedOut => StatusCode::GATEWAY_TIMEOUT,
            Self::RateLimited => StatusCode::TOO_MANY_REQUESTS,
            Self::SnapshotFailed | Self::StoreFailed => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// Stable, machine-readable: clients may match on it.
    pub fn code(self) -> &'static str {
        match self {
            Self::NotFound => "not_found",
            Self::Invalid => "invalid_field",
            Self::BadRequest => "bad_request",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::Unauthorized => "unauthorized",
            Self::NotOurHost => "not_our_host",
            Self::NameTaken => "name_taken",
            Self::ImageNotPresent => "image_not_present",
            Self::NeverFits => "never_fits",
            Self::Conflict => "conflict",
            Self::ArchiveUnsupported => "archive_unsupported",
            Self::DockerConflict => "docker_conflict",
            Self::DockerFailed => "docker_failed",
            Self::DockerUnavailable => "docker_unavailable",
            Self::NotReady => "not_ready",
            Self::WakeFailed => "wake_failed",
            Self::BackingOff => "wake_backing_off",
            Self::TimedOut => "wake_timed_out",
            Self::NoRoom => "no_room",
            Self::SnapshotFailed => "snapshot_failed",
            Self::NoSpace => "no_space",
            Self::StoreFailed => "store_failed",
            Self::UpstreamFailed => "upstream_failed",
            Self::UpstreamTimedOut => "upstream_timed_out",
            Self::Overloaded => "overloaded",
            Self::QuotaExceeded => "quota_exceeded",
            Self::RunningQuotaFull => "running_quota_full",
            Self::Forbidden => "forbidden",
            Self::RateLimited => "rate_limited",
        }
    }
}

/// A `Retry-After` value: whole seconds, rounded up, at least one, so a
/// client is never asked back too early.
pub fn whole_seconds(after: std::time::Duration) -> u64 {
    (after.as_secs() + u64::from(after.subsec_nanos() > 0)).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_the_readme_promises() {
        assert_eq!(ErrorKind::NoRoom.status(), 503);
        assert_eq!(ErrorKind::BackingOff.status(), 503);
        assert_eq!(ErrorKind::WakeFailed.status(), 502);
        assert_eq!(ErrorKind::TimedOut.status(), 504);
        assert_eq!(ErrorKind::NeverFits.status(), 422);
        assert_eq!(ErrorKind::ArchiveUnsupported.code(), "archive_unsupported");
        assert_eq!(ErrorKind::QuotaExceeded.status(), 403);
        assert_eq!(ErrorKind::RunningQuotaFull.status(), 429);
    }
}
