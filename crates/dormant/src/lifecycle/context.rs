//! What every transition works with: the runtime, the store, the container
//! table, capacity, metrics and settings; and `commit`, the one way a
//! transition changes a container.
//!
//! `commit` writes the store first and then publishes to the table, so what
//! the proxy sees is always backed by a durable record. When the store itself
//! fails on an error path, `publish` alone still reopens the route: a request
//! must never wait on a state nobody will leave.

use std::sync::Arc;

use super::capacity::Capacity;
use super::table::{ContainerTable, Route, RouteConfig, RouteStatus};
use super::{ArchiveSupport, LifecycleConfig, LifecycleError};
use crate::domain::{
    now_millis, volume_name, ContainerRecord, ContainerSpec, SnapshotRecord, UnixMillis,
};
use crate::events::{EventBus, Transition};
use crate::metrics::Metrics;
use crate::runtime::{Runtime, RuntimeError};
use crate::store::{RowChange, Store};
use crate::tenant::QuotaBook;

pub(super) struct Context {
    pub store: Store,
    pub runtime: Arc<dyn Runtime>,
    pub table: Arc<ContainerTable>,
    pub capacity: Capacity,
    pub metrics: Arc<Metrics>,
    pub config: LifecycleConfig,
    pub archive_support: ArchiveSupport,
    /// Archives run one at a time: they are disk-bound, and requests for
    /// running containers must not feel them.
    pub archive_turns: tokio::sync::Semaphore,
    /// The main runtime: background work started from a proxy thread (a
    /// wake) runs here, not on that thread's own runtime.
    pub background: tokio::runtime::Handle,
    /// Every background task lifecycle starts, so shutdown can wait for them.
    pub tasks: tokio_util::task::TaskTracker,
    /// Where every transition is told, as it is published.
    pub events: Arc<EventBus>,
    /// Each tenant's quotas, kept in step with the store by the API.
    pub quotas: QuotaBook,
    /// Held while a create checks `max_containers` and enters its names in
    /// the table, so two creates of one tenant cannot both squeeze in.
    pub create_admission: std::sync::Mutex<()>,
    /// Asked before a pause whether a gateway beside dormant still sends
    /// the container requests (see [`super::nap::PauseGuard`]).
    pub pause_guard: std::sync::OnceLock<Arc<dyn super::nap::PauseGuard>>,
}

/// What one transition changes about a container besides its status.
#[derive(Debug, Clone, Default)]
pub(super) struct Change {
    /// `Some(id)` records the Docker container that holds the user's files;
    /// `Some(None)` forgets it.
    pub docker_id: Option<Option<String>>,
    /// `Some(snapshot)` records a snapshot; `Some(None)` forgets it.
    pub snapshot: Option<Option<SnapshotRecord>>,
    /// A finished wake that took this many milliseconds.
    pub wake_ms: Option<u64>,
    /// A finished unpause (the end of a nap) that took this many
    /// milliseconds: told to the event stream, not counted as a wake.
    pub unpause_ms: Option<u64>,
    /// A changed setting (access): the whole spec.
    pub spec: Option<ContainerSpec>,
}

impl Context {
    /// Writes `status` (and `change`) to the store, then publishes them.
    pub async fn commit(
        &self,
        route: &Arc<Route>,
        status: RouteStatus,
        change: Change,
    ) -> Result<(), LifecycleError> {
        let row = RowChange {
            state: Some((status.state, status.reason.as_deref().map(str::to_owned))),
            docker_id: change.docker_id.clone(),
            snapshot: change.snapshot.clone(),
            wake_ms: change.wake_ms,
            spec: change.spec.clone(),
        };
        self.store.apply(route.name(), row).await?;
        self.publish_with(route, status, change);
        Ok(())
    }

    /// Publishes `status` (and `change`) first, calls `published`, then
    /// writes them to the store. Only for a transition whose row matters
    /// to nobody until the next start-up, where Docker is trusted instead:
    /// an unpause (reconcile reads Docker's paused flag), whose waiters
    /// should not wait for an fsync. A store failure is returned; the
    /// table is not rolled back.
    pub async fn publish_then_commit(
        &self,
        route: &Arc<Route>,
        status: RouteStatus,
        change: Change,
        published: impl FnOnce(),
    ) -> Result<(), LifecycleError> {
        let row = RowChange {
            state: Some((status.state, status.reason.as_deref().map(str::to_owned))),
            docker_id: change.docker_id.clone(),
            snapshot: change.snapshot.clone(),
            wake_ms: change.wake_ms,
            spec: change.spec.clone(),
        };
        self.publish_with(route, status, change);
        published();
        self.store.apply(route.name(), row).await?;
        Ok(())
    }

    /// Commits a change of the record alone; the status stays as it is.
    pub async fn commit_record(
        &self,
        route: &Arc<Route>,
        change: Change,
    ) -> Result<(), LifecycleError> {
        let row = RowChange {
            state: None,
            docker_id: change.docker_id.clone(),
            snapshot: change.snapshot.clone(),
            wake_ms: change.wake_ms,
            spec: change.spec.clone(),
        };
        self.store.apply(route.name(), row).await?;
        self.publish_with(route, route.status(), change);
        Ok(())
    }

    /// Commits `status`; if the store fails, publishes it anyway and logs
    /// why. For error paths: the route must reopen whatever the store says.
    pub async fn commit_or_publish(&self, route: &Arc<Route>, status: RouteStatus) {
        if let Err(e) = self.commit(route, status.clone(), Change::default()).await {
            tracing::error!(container = %route.name(), state = %status.state, error = %e, "cannot record the state; serving it from memory until the store recovers");
            self.publish(route, status);
        }
    }

    /// Publishes `status` without writing the store (what the store already
    /// says, or an error path where it cannot be written).
    pub fn publish(&self, route: &Arc<Route>, status: RouteStatus) {
        self.publish_with(route, status, Change::default());
    }

    /// Publishes what the store already says, with the state begun at
    /// `since` (start-up: an asleep container is due for archiving
    /// `archive_after` from when it really fell asleep).
    pub fn publish_as_of(&self, route: &Arc<Route>, status: RouteStatus, since: UnixMillis) {
        self.publish_at(route, status, Change::default(), since);
    }

    fn publish_with(&self, route: &Arc<Route>, status: RouteStatus, change: Change) {
        self.publish_at(route, status, change, now_millis());
    }

    fn publish_at(
        &self,
        route: &Arc<Route>,
        status: RouteStatus,
        change: Change,
        since: UnixMillis,
    ) {
        // A start is admitted by `capacity::admit` before Docker starts it,
        // so the states on the way up (creating, restoring, starting) keep
        // whatever room was admitted; running ones hold room; the rest give
        // it back.
        use crate::domain::ContainerState::*;
        let before = route.status().state;
        let told = (before != status.state).then(|| Transition {
            container: route.name().to_owned(),
            tenant: route.owner(),
            state: status.state,
            reason: status.reason.as_deref().map(str::to_owned),
            wake_ms: change.wake_ms,
            unpause_ms: change.unpause_ms,
            snapshot_bytes: match (status.state, &change.snapshot) {
                (Archived, Some(Some(snapshot))) => Some(snapshot.bytes),
                (Archived, _) => route.record().snapshot.map(|s| s.bytes),
                _ => None,
            },
        });
        match status.state {
            // A napping container still holds its memory.
            Running | Napping | Stopping => self.capacity.note_running(
                route.name(),
                &route.owner(),
                route.config().memory_bytes,
            ),
            Creating | Restoring | Starting => {}
            Asleep | Archiving | Archived | Failed | Deleted => self.capacity.release(route.name()),
        }
        self.table.publish(route, status, since, |record| {
            if let Some(docker_id) = change.docker_id {
                record.docker_id = docker_id;
            }
            if let Some(snapshot) = change.snapshot {
                record.snapshot = snapshot;
            }
            if let Some(ms) = change.wake_ms {
                record.wakes += 1;
                record.last_wake_ms = Some(ms);
            }
            if let Some(spec) = change.spec {
                record.spec = spec;
            }
        });
        if let Some(ms) = change.wake_ms {
            self.metrics.wake_history.record(since, ms);
        }
        if let Some(transition) = told {
            self.events.publish(transition);
        }
    }

    /// Tells the event stream about a container that was just made (it
    /// enters the table as `creating`, without a publish).
    pub fn announce_created(&self, record: &ContainerRecord) {
        self.events.publish(Transition {
            container: record.name.clone(),
            tenant: record.owner.clone(),
            state: record.state,
            reason: None,
            wake_ms: None,
            unpause_ms: None,
            snapshot_bytes: None,
        });
    }

    pub fn route_config(&self, spec: &ContainerSpec) -> RouteConfig {
        RouteConfig {
            idle_timeout: spec.idle_timeout,
            wake: spec.wake.unwrap_or(self.config.default_wake),
            archive_after: spec
                .archive_after
                .unwrap_or(self.config.default_archive_after),
            memory_bytes: spec.memory_bytes,
        }
    }

    /// Time idle before a container of `spec` naps; zero: never.
    pub fn nap_after(&self, spec: &ContainerSpec) -> std::time::Duration {
        spec.nap_after.unwrap_or(self.config.default_nap_after)
    }

    pub fn archive_supported(&self) -> Result<(), LifecycleError> {
        match &self.archive_support {
            ArchiveSupport::Supported => Ok(()),
            ArchiveSupport::Unsupported(why) => {
                Err(LifecycleError::ArchiveUnsupported(why.clone()))
            }
        }
    }

    /// Removes the record's Docker container and then its volumes.
    pub async fn remove_from_docker(&self, record: &ContainerRecord) -> Result<(), RuntimeError> {
        self.runtime.remove(&docker_ref(record)).await?;
        self.runtime.remove_volumes(&volume_names(record)).await
    }

    /// Deletes the snapshot recorded as `file` where snapshots are kept; a failure is
    /// logged (start-up removes snapshots no container refers to).
    pub async fn delete_snapshot(&self, file: &str) {
        if let Err(e) = self.config.snapshots.delete(file).await {
            tracing::warn!(file, error = %e, "cannot remove an old snapshot; the next start-up removes it");
        }
    }

    /// Starts `task` on the main runtime, tracked for shutdown.
    pub fn spawn<F>(&self, task: F)
    where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        self.background.spawn(self.tasks.track_future(task));
    }
}

/// How to name the record's container to Docker: its id once known.
pub(super) fn docker_ref(record: &ContainerRecord) -> String {
    record
        .docker_id
        .clone()
        .unwrap_or_else(|| record.docker_name())
}

pub(super) fn volume_names(record: &ContainerRecord) -> Vec<String> {
    (0..record.spec.volumes.len())
        .map(|i| volume_name(&record.name, i))
        .collect()
}
