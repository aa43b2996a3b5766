//! Start-up: bring Docker in line with the store, and fill the table.
//!
//! Docker is the truth about what exists, the store about what should. Rows
//! left `creating` by a crash are undone; archives and restores cut short
//! are finished or undone (a restore's flush is done again); containers this node labelled but the store
//! doesn't know are removed. Every other container enters the table in the
//! state Docker shows: running ones serve at once, the rest are `asleep` (or
//! `archived`) and wake on their next request, and one caught mid-wake
//! finishes its wake. Nothing is started that nobody asked for, and a Docker
//! call that fails here is logged, never fatal: dormant always starts.

use std::collections::HashSet;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use super::context::{docker_ref, Change, Context};
use super::table::RouteStatus;
use super::{archive, flush, wake, LifecycleError};
use crate::domain::{ContainerRecord, ContainerState, LABEL_NAME, LABEL_NODE};
use crate::runtime::Inspection;

pub(super) async fn run(ctx: &Arc<Context>) -> Result<(), LifecycleError> {
    let records = ctx.store.list().await?;

    // Rows a crash left half-made: the client never heard "created".
    let (unfinished, records): (Vec<_>, Vec<_>) = records
        .into_iter()
        .partition(|r| r.state == ContainerState::Creating);
    undo_unfinished_creates(ctx, &unfinished).await?;
    let mut settled = Vec::with_capacity(records.len());
    for record in records {
        settled.push(settle_interrupted_archive(ctx, record).await?);
    }
    let records = settled;
    remove_orphans(ctx, &records).await;
    remove_orphan_snapshots(ctx, &records).await;

    let (mut running, mut asleep, mut finishing) = (0, 0, Vec::new());
    for record in records {
        let inspection = if holds_only_a_snapshot(&record) {
            None
        } else {
            match ctx.runtime.inspect(&docker_ref(&record)).await {
                Ok(inspection) => inspection,
                Err(e) => {
                    tracing::error!(container = %record.name, error = %e, "cannot inspect at start-up; treating it as asleep");
                    None
                }
            }
        };
        let status = status_at_start(ctx, &record, inspection.as_ref());
        let state = status.state;
        let config = ctx.route_config(&record.spec);
        let Some(owner) = ctx.table.insert(record.clone(), config, status.clone()) else {
            continue;
        };
        owner.set_nap_after(ctx.nap_after(&record.spec));
        if state != record.state {
            ctx.commit(&owner, status, Change::default()).await?;
        } else {
            // Due for archiving `archive_after` from when it really fell asleep.
            ctx.publish_as_of(&owner, status, record.state_since);
        }
        // A recorded Docker id means its container holds the user's files
        // (see restore.rs): a snapshot beside it waits for the restore's
        // flush, which a crash or restart cut short: flushed again, then the
        // snapshot is deleted (see flush.rs).
        if flush::pending(&record) {
            if let Some(upper) = inspection.as_ref().and_then(|i| i.upper_dir.clone()) {
                match archive::trees(ctx, &record, upper).await {
                    Ok(trees) => {
                        tracing::info!(container = %record.name, "flushing the files of a restore cut short, then dropping its snapshot");
                        let file = record.snapshot.as_ref().expect("pending").file.clone();
                        flush::spawn(ctx, &owner, trees, file);
                    }
                    Err(e) => {
                        tracing::error!(container = %record.name, error = %e, "cannot find a restored container's files to flush; its snapshot is kept")
                    }
                }
            }
        }
        match state {
            ContainerState::Running | ContainerState::Napping => running += 1,
            ContainerState::Starting => finishing.push(owner.clone()),
            _ => asleep += 1,
        }
    }
    tracing::info!(
        node = %ctx.config.node,
        running,
        asleep,
        finishing_wakes = finishing.len(),
        "reconciled with Docker"
    );
    for route in finishing {
        wake::begin(ctx, &route);
    }
    Ok(())
}

/// Archived, or a restore that failed: no Docker container holds its files.
fn holds_only_a_snapshot(record: &ContainerRecord) -> bool {
    record.docker_id.is_none() && record.snapshot.is_some()
}

/// The state a container starts in, from its row and what Docker shows.
fn status_at_start(
    ctx: &Context,
    record: &ContainerRecord,
    inspection: Option<&Inspection>,
) -> RouteStatus {
    let now = tokio::time::Instant::now();
    if holds_only_a_snapshot(record) {
        let snapshot = record.snapshot.as_ref().expect("checked above");
        if ctx.config.snapshots.known_missing(&snapshot.file) {
            let reason = "its snapshot file is missing from the data dir";
            tracing::error!(container = %record.name, "{reason}");
            return RouteStatus::failed(reason, now);
        }
        return match record.state {
            // Keep why the last restore failed; the next request tries again.
            ContainerState::Failed => {
                RouteStatus::failed(record.reason.as_deref().unwrap_or("it failed"), now)
            }
            _ => RouteStatus::not_serving(ContainerState::Archived, None),
        };
    }
    let upstream = inspection.filter(|i| i.running).and_then(|i| i.upstream);
    let paused = inspection.is_some_and(|i| i.paused);
    match (record.state, upstream) {
        // Caught mid-wake: the wake is finished once the table is full.
        (ContainerState::Starting, _) => RouteStatus::not_serving(ContainerState::Starting, None),
        // Paused, by dormant or by hand: its next request unpauses it.
        (_, Some(upstream)) if paused => {
            if record.state != ContainerState::Napping {
                tracing::info!(container = %record.name, "was paused outside dormant; napping");
            }
            RouteStatus::napping(upstream)
        }
        (_, Some(upstream)) => {
            if record.state != ContainerState::Running {
                tracing::info!(container = %record.name, "was started outside dormant; serving it");
            }
            RouteStatus::running(upstream)
        }
        (ContainerState::Running | ContainerState::Napping, None) => {
            let reason = if inspection.is_none() {
                "its Docker container was removed outside dormant; the next request recreates it"
            } else {
                "it was stopped outside dormant"
            };
            tracing::warn!(container = %record.name, "{reason}");
            RouteStatus::not_serving(ContainerState::Asleep, Some(reason))
        }
        // Keep the reason; the next request tries again at once.
        (ContainerState::Failed, None) => {
            RouteStatus::failed(record.reason.as_deref().unwrap_or("it failed"), now)
        }
        (_, None) => RouteStatus::not_serving(ContainerState::Asleep, None),
    }
}

/// Removes what creations cut short by a crash made, then their rows.
async fn undo_unfinished_creates(
    ctx: &Context,
    unfinished: &[ContainerRecord],
) -> Result<(), LifecycleError> {
    if unfinished.is_empty() {
        return Ok(());
    }
    tracing::warn!(
        count = unfinished.len(),
        "undoing creations interrupted by a crash"
    );
    for record in unfinished {
        if let Err(e) = ctx.remove_from_docker(record).await {
            tracing::error!(container = %record.name, error = %e, "cannot remove a container of an interrupted creation; it is removed at the next start-up");
        }
    }
    let names = unfinished.iter().map(|r| r.name.clone()).collect();
    ctx.store.delete_all(names).await?;
    Ok(())
}

/// Finishes or undoes an archive or restore that a crash cut short.
/// Archiving with a recorded snapshot: the snapshot is complete, so the
/// archive is finished. Archiving without one: undone. Restoring: the
/// half-filled container is removed; the snapshot, still recorded, is the
/// only copy.
async fn settle_interrupted_archive(
    ctx: &Context,
    mut record: ContainerRecord,
) -> Result<ContainerRecord, LifecycleError> {
    let name = record.name.clone();
    let archived = match record.state {
        ContainerState::Archiving if record.snapshot.is_some() => {
            // Finished even if Docker will not remove everything now: the
            // container may be gone already, and only the snapshot still
            // holds the user's files. What is left is removed below by
            // `remove_orphans`, or before the next restore.
            if let Err(e) = retry_transient(|| ctx.remove_from_docker(&record)).await {
                tracing::error!(container = %name, error = %e, "cannot remove its Docker container yet; it is removed later");
            }
            true
        }
        ContainerState::Archiving => false,
        ContainerState::Restoring => {
            record.docker_id = None;
            if let Err(e) = retry_transient(|| ctx.remove_from_docker(&record)).await {
                tracing::error!(container = %name, error = %e, "cannot remove an interrupted restore's container; it is removed before the next restore");
            }
            true
        }
        _ => return Ok(record),
    };
    let (state, docker_id) = if archived {
        (ContainerState::Archived, None)
    } else {
        (ContainerState::Asleep, record.docker_id.clone())
    };
    tracing::warn!(container = %name, from = %record.state, to = %state, "settling an archive or restore cut short");
    let change = crate::store::RowChange {
        state: Some((state, None)),
        docker_id: Some(docker_id.clone()),
        ..Default::default()
    };
    ctx.store.apply(&name, change).await?;
    record.state = state;
    record.docker_id = docker_id;
    Ok(record)
}

/// Removes snapshots no row refers to (written, but the crash came before
/// they were recorded) and what interrupted archives and restores left.
async fn remove_orphan_snapshots(ctx: &Context, records: &[ContainerRecord]) {
    let referenced: HashSet<String> = records
        .iter()
        .filter_map(|r| r.snapshot.as_ref().map(|s| s.file.clone()))
        .collect();
    let removed = ctx.config.snapshots.clean_up(&referenced).await;
    if !removed.is_empty() {
        tracing::warn!(
            ?removed,
            at = %ctx.config.snapshots.describe(),
            "removed snapshots no container refers to, partly written ones and unfinished uploads"
        );
    }
}

/// Removes Docker containers and volumes this node labelled that no row
/// accounts for: leftovers of a delete or a failed batch cut short, or of
/// an archive whose removal failed.
async fn remove_orphans(ctx: &Context, records: &[ContainerRecord]) {
    let node = &ctx.config.node;
    // An archived container has no Docker objects: any still there are
    // left over from a removal that failed.
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
    match ctx.runtime.list_labelled(LABEL_NODE, node).await {
        Ok(containers) => {
            for container in containers.iter().filter(|c| is_orphan(&c.labels)) {
                tracing::warn!(id = %container.id, name = ?container.labels.get(LABEL_NAME), "removing an orphan container");
                if let Err(e) = ctx.runtime.remove(&container.id).await {
                    tracing::error!(error = %e, "cannot remove orphan container");
                }
            }
        }
        Err(e) => tracing::error!(error = %e, "cannot list this node's containers"),
    }
    match ctx.runtime.list_labelled_volumes(LABEL_NODE, node).await {
        Ok(volumes) => {
            let orphans: Vec<String> = volumes
                .into_iter()
                .filter(|v| is_orphan(&v.labels))
                .map(|v| v.id)
                .collect();
            if !orphans.is_empty() {
                tracing::warn!(?orphans, "removing orphan volumes");
                if let Err(e) = ctx.runtime.remove_volumes(&orphans).await {
                    tracing::error!(error = %e, "cannot remove orphan volumes");
                }
            }
        }
        Err(e) => tracing::error!(error = %e, "cannot list this node's volumes"),
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
