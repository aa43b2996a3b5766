//! Start-up: bring Docker in line with the store.
//!
//! Docker is the truth about what exists, the store about what should. Rows
//! left `creating` by a crash are undone; containers this node labelled but
//! the store doesn't know are removed. Every other container gets its route
//! back in the state Docker shows: running ones serve at once, the rest are
//! `asleep` and wake on their next request, and one caught mid-wake finishes
//! its wake. Nothing is started at start-up that nobody asked for.

use std::collections::HashSet;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use crate::domain::{ContainerRecord, ContainerState, LABEL_NAME, LABEL_NODE};
use crate::proxy::routes::RouteStatus;

use super::{docker_ref, Lifecycle, LifecycleError};

impl Lifecycle {
    /// Reconciles the store with Docker. Returns once every route is in the
    /// table.
    pub async fn reconcile(self: &Arc<Self>) -> Result<(), LifecycleError> {
        let records = self.store.list().await?;

        // Rows a crash left half-made: the client never heard "created".
        let (unfinished, records): (Vec<_>, Vec<_>) = records
            .into_iter()
            .partition(|r| r.state == ContainerState::Creating);
        if !unfinished.is_empty() {
            tracing::warn!(
                count = unfinished.len(),
                "undoing creations interrupted by a crash"
            );
            self.undo_create(&unfinished).await;
        }
        let records = self.settle_interrupted_archives(records).await?;
        self.remove_orphans(&records).await;
        self.remove_orphan_snapshots(&records);

        let (mut running, mut asleep, mut finishing) = (0, 0, Vec::new());
        for record in records {
            // Archived: nothing in Docker to ask about. Cheap by design.
            if record.state == ContainerState::Archived && record.docker_id.is_none() {
                let config = self.route_config(&record.spec);
                let status = match &record.snapshot {
                    Some(s) if self.snapshot_path(&s.file).is_file() => {
                        RouteStatus::not_serving(ContainerState::Archived, None)
                    }
                    _ => {
                        let reason = "its snapshot file is missing from the data dir";
                        tracing::error!(container = %record.name, "{reason}");
                        RouteStatus::failed(reason, tokio::time::Instant::now())
                    }
                };
                let route =
                    self.routes
                        .insert(&record.name, config, status.clone(), record.last_active_at);
                if status.state != record.state {
                    self.transition(&route, status).await?;
                } else {
                    self.publish(&route, status);
                }
                asleep += 1;
                continue;
            }
            let inspection = match self.runtime.inspect(&docker_ref(&record)).await {
                Ok(inspection) => inspection,
                Err(e) => {
                    tracing::error!(container = %record.name, error = %e, "cannot inspect at start-up; treating it as asleep");
                    None
                }
            };
            let config = self.route_config(&record.spec);
            let upstream = inspection
                .as_ref()
                .filter(|i| i.running)
                .and_then(|i| i.upstream);
            let status = match (record.state, upstream) {
                // Caught mid-wake: the wake is finished below.
                (ContainerState::Starting, _) => {
                    RouteStatus::not_serving(ContainerState::Starting, None)
                }
                (_, Some(upstream)) => {
                    if record.state == ContainerState::Asleep {
                        tracing::info!(container = %record.name, "was started outside dormant; serving it");
                    }
                    RouteStatus::running(upstream)
                }
                (ContainerState::Running, None) => {
                    let reason = if inspection.is_none() {
                        "its Docker container was removed outside dormant; the next request recreates it"
                    } else {
                        "it was stopped outside dormant"
                    };
                    tracing::warn!(container = %record.name, "{reason}");
                    RouteStatus::not_serving(ContainerState::Asleep, Some(reason))
                }
                // Keep the reason; the next request tries again at once.
                (ContainerState::Failed, None) => RouteStatus::failed(
                    record.reason.as_deref().unwrap_or("it failed"),
                    tokio::time::Instant::now(),
                ),
                (_, None) => RouteStatus::not_serving(ContainerState::Asleep, None),
            };
            let state = status.state;
            let route =
                self.routes
                    .insert(&record.name, config, status.clone(), record.last_active_at);
            if state != record.state {
                self.transition(&route, status).await?;
            } else {
                self.publish(&route, status);
                if state == ContainerState::Asleep {
                    // Due `archive_after` from when it really fell asleep.
                    self.schedule_archive(&route, state, record.state_since);
                }
            }
            // A snapshot next to a live container is left over from a restore
            // that finished; one caught mid-wake is dropped when it ends.
            if let (Some(snapshot), Some(_), false) = (
                &record.snapshot,
                &inspection,
                state == ContainerState::Starting,
            ) {
                tracing::info!(container = %record.name, "dropping the snapshot of a finished restore");
                self.store.set_snapshot(&record.name, None).await?;
                self.delete_snapshot_file(&snapshot.file);
            }
            match state {
                ContainerState::Running => running += 1,
                ContainerState::Starting => finishing.push(route),
                _ => asleep += 1,
            }
        }
        tracing::info!(
            node = %self.config.node,
            running,
            asleep,
            finishing_wakes = finishing.len(),
            "reconciled with Docker"
        );
        for route in finishing {
            self.begin_wake(&route);
        }
        Ok(())
    }

    /// Finishes or undoes archives and restores that a crash cut short.
    /// Archiving with a recorded snapshot: the snapshot is complete, so the
    /// archive is finished. Archiving without one: undone (the container is
    /// still there). Restoring: the half-filled container is removed; the
    /// snapshot is still there.
    async fn settle_interrupted_archives(
        &self,
        records: Vec<ContainerRecord>,
    ) -> Result<Vec<ContainerRecord>, LifecycleError> {
        let mut settled = Vec::with_capacity(records.len());
        for mut record in records {
            let name = record.name.clone();
            let finish = match record.state {
                ContainerState::Archiving => record.snapshot.is_some(),
                ContainerState::Restoring => true,
                _ => {
                    settled.push(record);
                    continue;
                }
            };
            if finish {
                tracing::warn!(container = %name, state = %record.state, "settling an archive or restore cut short: archived");
                // The snapshot is complete and recorded, so the archive is
                // finished even if Docker cannot remove the container yet
                // (409: its removal is already in progress): what is left is
                // removed below by `remove_orphans`, or by the next restore.
                if let Err(e) = retry_transient(|| self.remove_from_docker(&record)).await {
                    tracing::error!(container = %name, error = %e, "cannot remove its Docker container yet; it is removed later");
                }
                self.store.set_docker_id(&name, None).await?;
                self.store
                    .set_state(&name, ContainerState::Archived, None)
                    .await?;
                record.docker_id = None;
                record.state = ContainerState::Archived;
            } else {
                tracing::warn!(container = %name, "undoing an archive cut short: asleep");
                self.store
                    .set_state(&name, ContainerState::Asleep, None)
                    .await?;
                record.state = ContainerState::Asleep;
            }
            settled.push(record);
        }
        Ok(settled)
    }

    /// Removes snapshot files no row refers to (written, but the crash came
    /// before they were recorded) and partial files of interrupted writes.
    fn remove_orphan_snapshots(&self, records: &[ContainerRecord]) {
        let dir = &self.config.snapshot_dir;
        match crate::snapshot::remove_partial_files(dir) {
            Ok(removed) if !removed.is_empty() => {
                tracing::warn!(?removed, "removed partly written snapshots")
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(dir = %dir.display(), error = %e, "cannot clean partial snapshots")
            }
        }
        let referenced: HashSet<&str> = records
            .iter()
            .filter_map(|r| r.snapshot.as_ref().map(|s| s.file.as_str()))
            .collect();
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let file = entry.file_name();
            let Some(file) = file.to_str() else { continue };
            if file.ends_with(".snap.zst") && !referenced.contains(file) {
                tracing::warn!(file, "removing a snapshot no container refers to");
                self.delete_snapshot_file(file);
            }
        }
    }

    /// Removes Docker containers and volumes this node labelled that no row
    /// accounts for: leftovers of a delete or a failed batch cut short, or
    /// of an archive whose removal failed.
    async fn remove_orphans(&self, records: &[ContainerRecord]) {
        let node = &self.config.node;
        // An archived container has no Docker objects: any still there are
        // left over from an archive whose clean-up failed.
        let known: HashSet<&str> = records
            .iter()
            .filter(|r| r.state != ContainerState::Archived)
            .map(|r| r.name.as_str())
            .collect();
        let is_orphan = |labels: &std::collections::HashMap<String, String>| {
            labels
                .get(LABEL_NAME)
                .is_none_or(|name| !known.contains(name.as_str()))
        };
        match self.runtime.list_labelled(LABEL_NODE, node).await {
            Ok(containers) => {
                for container in containers.iter().filter(|c| is_orphan(&c.labels)) {
                    tracing::warn!(id = %container.id, name = ?container.labels.get(LABEL_NAME), "removing an orphan container");
                    if let Err(e) = self.runtime.remove(&container.id).await {
                        tracing::error!(error = %e, "cannot remove orphan container");
                    }
                }
            }
            Err(e) => tracing::error!(error = %e, "cannot list this node's containers"),
        }
        match self.runtime.list_labelled_volumes(LABEL_NODE, node).await {
            Ok(volumes) => {
                let orphans: Vec<String> = volumes
                    .into_iter()
                    .filter(|v| is_orphan(&v.labels))
                    .map(|v| v.id)
                    .collect();
                if !orphans.is_empty() {
                    tracing::warn!(?orphans, "removing orphan volumes");
                    if let Err(e) = self.runtime.remove_volumes(&orphans).await {
                        tracing::error!(error = %e, "cannot remove orphan volumes");
                    }
                }
            }
            Err(e) => tracing::error!(error = %e, "cannot list this node's volumes"),
        }
    }
}

/// Pauses between tries of a start-up Docker call that failed: a removal
/// already in progress or a daemon still settling after a restart is over
/// within them.
const RETRY_PAUSES: [Duration; 4] = [
    Duration::from_millis(250),
    Duration::from_millis(500),
    Duration::from_secs(1),
    Duration::from_secs(2),
];

/// Runs `call`, again after each of `RETRY_PAUSES` while it fails; returns
/// the last error.
async fn retry_transient<T, E, Fut>(call: impl FnMut() -> Fut) -> Result<T, E>
where
    Fut: Future<Output = Result<T, E>>,
    E: std::fmt::Display,
{
    retry_with_pauses(&RETRY_PAUSES, call).await
}

async fn retry_with_pauses<T, E, Fut>(
    pauses: &[Duration],
    mut call: impl FnMut() -> Fut,
) -> Result<T, E>
where
    Fut: Future<Output = Result<T, E>>,
    E: std::fmt::Display,
{
    for pause in pauses {
        match call().await {
            Ok(done) => return Ok(done),
            Err(e) => {
                tracing::debug!(error = %e, retry_in = ?pause, "Docker call failed at start-up; trying again")
            }
        }
        tokio::time::sleep(*pause).await;
    }
    call().await
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[tokio::test]
    async fn a_failing_call_is_tried_a_bounded_number_of_times() {
        let pauses = [Duration::from_millis(1); 4];
        let tries = AtomicU32::new(0);
        let call = || async {
            let n = tries.fetch_add(1, Ordering::Relaxed) + 1;
            if n < 3 {
                Err(format!(
                    "409: removal of container is already in progress ({n})"
                ))
            } else {
                Ok(n)
            }
        };
        assert_eq!(retry_with_pauses(&pauses, call).await, Ok(3));

        tries.store(0, Ordering::Relaxed);
        let always = || async { Err::<(), _>(tries.fetch_add(1, Ordering::Relaxed) + 1) };
        assert_eq!(retry_with_pauses(&pauses, always).await, Err(5));
    }
}
