//! The event stream: one event per container transition, numbered, kept in a
//! bounded ring for clients that reconnect (`Last-Event-ID`), and fanned out
//! live to subscribers without ever making the lifecycle wait.
//!
//! Lifecycle calls [`EventBus::publish`] from its one publishing path
//! (`Context::publish_at`); the API's `GET /v1/events` and the webhooks read
//! through [`EventBus::subscribe`].

mod bus;

pub use bus::{EventBus, Next, Subscription};

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::domain::{ContainerState, UnixMillis};

/// What happened to a container.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum EventKind {
    /// Made (its record exists; it is being created).
    Created,
    /// Docker is starting it; it is not answering yet.
    Starting,
    /// It answers; `wake_ms` says how long the wake took, when it was one;
    /// `unpause_ms` how long the unpause took, when it napped.
    Ready,
    /// Paused (no CPU, memory kept); its next request unpauses it.
    Napping,
    /// Being stopped.
    Sleeping,
    /// Stopped; `reason` says why (idle, asked, evicted).
    Asleep,
    /// Its changes are being written into a snapshot.
    Archiving,
    /// Its snapshot is written (`snapshot_bytes`) and its container removed.
    Archived,
    /// Being made again from its snapshot.
    Restoring,
    /// A start, wake or restore failed; `reason` says why.
    Failed,
    /// Gone, with everything it had.
    Deleted,
}

impl EventKind {
    /// The event a container entering `state` makes.
    pub fn entering(state: ContainerState) -> Self {
        match state {
            ContainerState::Creating => Self::Created,
            ContainerState::Starting => Self::Starting,
            ContainerState::Running => Self::Ready,
            ContainerState::Napping => Self::Napping,
            ContainerState::Stopping => Self::Sleeping,
            ContainerState::Asleep => Self::Asleep,
            ContainerState::Archiving => Self::Archiving,
            ContainerState::Archived => Self::Archived,
            ContainerState::Restoring => Self::Restoring,
            ContainerState::Failed => Self::Failed,
            ContainerState::Deleted => Self::Deleted,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Created => "created",
            Self::Starting => "starting",
            Self::Ready => "ready",
            Self::Napping => "napping",
            Self::Sleeping => "sleeping",
            Self::Asleep => "asleep",
            Self::Archiving => "archiving",
            Self::Archived => "archived",
            Self::Restoring => "restoring",
            Self::Failed => "failed",
            Self::Deleted => "deleted",
        }
    }
}

/// One transition of one container, as subscribers receive it.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Event {
    /// Increases by one with every event of this dormant process; resume
    /// after it with `Last-Event-ID`.
    pub id: u64,
    /// Unix milliseconds.
    pub at: UnixMillis,
    pub kind: EventKind,
    pub container: String,
    /// The tenant the container belongs to (`admin` for the admin's own).
    pub tenant: String,
    /// The state the container is now in.
    pub state: ContainerState,
    /// Why, when that needs saying (`failed`, `asleep`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// `ready` after a wake: how long it took.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wake_ms: Option<u64>,
    /// `ready` after a nap: how long Docker's unpause took.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unpause_ms: Option<u64>,
    /// `archived`: the snapshot's size.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub snapshot_bytes: Option<u64>,
}

/// What lifecycle says about a transition; the bus numbers and stamps it.
#[derive(Debug, Clone)]
pub struct Transition {
    pub container: String,
    pub tenant: String,
    pub state: ContainerState,
    pub reason: Option<String>,
    pub wake_ms: Option<u64>,
    pub unpause_ms: Option<u64>,
    pub snapshot_bytes: Option<u64>,
}
