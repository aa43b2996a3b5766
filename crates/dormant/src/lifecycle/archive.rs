//! Archive: a container asleep for its `archive_after` becomes one
//! compressed snapshot of what its user changed (its writable layer and its
//! volumes), and its Docker container and volumes are removed.
//!
//! Durable before destructive: the snapshot is written to a temporary file,
//! fsynced, renamed into place and recorded in the store before anything is
//! removed, and the state reads `archived` only after the removal. A crash at
//! any point leaves either the container (`asleep`) or a complete, recorded
//! snapshot; `reconcile` finishes or undoes what was in flight. An error at
//! any step ends the same way, at once: `asleep` until the snapshot is
//! recorded, `archived` after (a recorded snapshot holds everything).

use std::path::PathBuf;

use super::context::{docker_ref, volume_names, Change, Context};
use super::table::{Owner, RouteStatus};
use super::{flush, LifecycleError};
use crate::domain::{now_millis, ContainerRecord, ContainerState, SnapshotRecord};
use crate::fault;
use crate::runtime::Runtime;
use crate::snapshot::{self, Tree, TreeKind};

/// Whether this host lets dormant archive, and if not, why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ArchiveSupport {
    Supported,
    Unsupported(String),
}

/// A tenant whose snapshots take its `max_snapshot_bytes` or more keeps its
/// containers asleep instead of archiving more of them: nothing is lost,
/// they only keep their Docker containers (and disk) until it deletes some.
fn snapshot_quota_allows(ctx: &Context, tenant: &str) -> Result<(), LifecycleError> {
    let Some(max) = ctx.quotas.get(tenant).and_then(|q| q.max_snapshot_bytes) else {
        return Ok(());
    };
    let used: u64 = ctx
        .table
        .all()
        .iter()
        .filter(|route| route.owner() == tenant)
        .filter_map(|route| route.record().snapshot.map(|s| s.bytes))
        .sum();
    if used >= max {
        return Err(LifecycleError::QuotaExceeded(format!(
            "tenant `{tenant}`'s snapshots take {used} bytes, at or past its quota max_snapshot_bytes of {max}; the container stays asleep"
        )));
    }
    Ok(())
}

/// Storage drivers whose containers have an overlay upper directory we can
/// read and write on the host.
const OVERLAY_DRIVERS: [&str; 2] = ["overlay2", "fuse-overlayfs"];

/// Checks that this dormant can read and write containers' writable layers
/// on the host: an overlay storage driver, root, and the engine's data root
/// visible from here (dormant runs on the Docker host).
pub async fn check_support(runtime: &dyn Runtime) -> ArchiveSupport {
    let storage = match runtime.storage().await {
        Ok(storage) => storage,
        Err(e) => {
            return ArchiveSupport::Unsupported(format!(
                "cannot ask Docker for its storage driver: {e}"
            ))
        }
    };
    if !OVERLAY_DRIVERS.contains(&storage.driver.as_str()) {
        return ArchiveSupport::Unsupported(format!(
            "Docker's storage driver is `{}`; archiving needs overlay2 or fuse-overlayfs",
            storage.driver
        ));
    }
    if !rustix::process::geteuid().is_root() {
        return ArchiveSupport::Unsupported(
            "dormant does not run as root; archiving reads and writes containers' layers on the host".into(),
        );
    }
    let layers = storage.root_dir.join(&storage.driver);
    if !layers.is_dir() {
        return ArchiveSupport::Unsupported(format!(
            "Docker's data root {} is not visible here; archiving needs dormant on the Docker host itself",
            layers.display()
        ));
    }
    ArchiveSupport::Supported
}

/// Archives the owned container: asleep (or failed) to archived.
pub(super) async fn run(ctx: &Context, owner: &Owner) -> Result<(), LifecycleError> {
    let name = owner.name();
    match owner.status().state {
        ContainerState::Asleep | ContainerState::Failed => {}
        ContainerState::Archived => return Ok(()),
        other => {
            return Err(LifecycleError::Conflict(format!(
                "container `{name}` is {other}; only an asleep container can be archived"
            )))
        }
    }
    // The snapshot a restore left is deleted once its files are flushed:
    // this archive replaces it only after that.
    flush::wait(owner).await;
    let record = owner.record();
    if record.docker_id.is_some() {
        snapshot_quota_allows(ctx, &record.owner)?;
    }
    if record.docker_id.is_none() && record.snapshot.is_some() {
        // A failed restore: its snapshot is still the only copy.
        let archived = RouteStatus::not_serving(ContainerState::Archived, None);
        return ctx.commit(owner, archived, Change::default()).await;
    }
    let runtime_err = |e| LifecycleError::runtime(name, e);
    let inspection = ctx
        .runtime
        .inspect(&docker_ref(&record))
        .await
        .map_err(runtime_err)?
        .ok_or_else(|| {
            LifecycleError::Conflict(format!(
                "container `{name}` has no Docker container to archive"
            ))
        })?;
    if inspection.running {
        return Err(LifecycleError::Conflict(format!(
            "container `{name}` runs (started outside dormant?); it must be asleep to be archived"
        )));
    }
    let upper = inspection.upper_dir.ok_or_else(|| {
        LifecycleError::ArchiveUnsupported(format!(
            "Docker shows no writable layer directory for `{name}`"
        ))
    })?;
    let trees = trees(ctx, &record, upper).await?;

    let archiving = RouteStatus::not_serving(ContainerState::Archiving, None);
    ctx.commit(owner, archiving, Change::default()).await?;
    let started = std::time::Instant::now();
    match write_and_remove(ctx, owner, &record, trees).await {
        Ok(snapshot) => {
            ctx.metrics.archives.inc();
            ctx.metrics
                .archive_duration
                .observe(started.elapsed().as_secs_f64());
            ctx.metrics.archived_bytes.inc_by(snapshot.bytes);
            if let Some(old) = record.snapshot.filter(|old| old.file != snapshot.file) {
                ctx.delete_snapshot(&old.file).await;
            }
            tracing::info!(
                container = %name,
                bytes = snapshot.bytes,
                files = snapshot.files,
                took_ms = started.elapsed().as_millis() as u64,
                "archived"
            );
            Ok(())
        }
        Err(e) => {
            settle_failed(ctx, owner, record.snapshot.as_ref(), &e).await;
            Err(e)
        }
    }
}

/// The destructive half: snapshot written and recorded, then the Docker
/// container and volumes removed, then `archived` committed.
async fn write_and_remove(
    ctx: &Context,
    owner: &Owner,
    record: &ContainerRecord,
    trees: Vec<Tree>,
) -> Result<SnapshotRecord, LifecycleError> {
    let name = owner.name();
    let created_at = now_millis();
    let file = ctx.config.snapshots.new_name(name, created_at);
    let path = ctx.config.snapshots.staging_path(&file);
    let written = {
        let route = (*owner).clone();
        let path = path.clone();
        let options = snapshot::Options {
            min_free_disk: ctx.config.min_free_disk,
        };
        route.set_progress(0);
        tokio::task::spawn_blocking(move || {
            snapshot::write(&trees, &path, &options, &|bytes| route.set_progress(bytes))
        })
        .await
    };
    let info = match written {
        Ok(Ok(info)) => info,
        Ok(Err(e)) => return Err(LifecycleError::from_snapshot(name, e)),
        Err(e) => {
            return Err(snapshot_error(
                name,
                format!("the snapshot task failed: {e}"),
            ))
        }
    };
    fault::point("archive-after-snapshot-write");
    // Uploaded, for an object store: durable where snapshots are kept before it is recorded.
    ctx.config
        .snapshots
        .keep(&file, &info)
        .await
        .map_err(|e| LifecycleError::from_snapshot(name, e))?;
    fault::point("archive-after-snapshot-keep");
    let snapshot = SnapshotRecord {
        file,
        bytes: info.bytes,
        files: info.files,
        sha256: info.sha256,
        created_at,
    };
    let record_it = Change {
        snapshot: Some(Some(snapshot.clone())),
        ..Change::default()
    };
    if let Err(e) = ctx.commit_record(owner, record_it).await {
        ctx.delete_snapshot(&snapshot.file).await;
        return Err(e);
    }
    fault::point("archive-after-snapshot-record");
    ctx.remove_from_docker(record)
        .await
        .map_err(|e| LifecycleError::runtime(name, e))?;
    fault::point("archive-after-docker-remove");
    let archived = RouteStatus::not_serving(ContainerState::Archived, None);
    let forget_container = Change {
        docker_id: Some(None),
        ..Change::default()
    };
    if let Err(e) = ctx.commit(owner, archived.clone(), forget_container).await {
        // The store still says `archiving` with the snapshot recorded, which
        // start-up finishes as archived: serve that now.
        tracing::error!(container = %name, error = %e, "cannot record state archived; serving it from memory");
        ctx.publish(owner, archived);
    }
    Ok(snapshot)
}

/// After an error mid-archive: `archived` once this archive's snapshot is
/// recorded (it holds everything: whatever Docker failed to remove is a
/// leftover, removed before the next restore and at start-up), else back to
/// `asleep` with the container as it was. `before` is the snapshot the
/// record held before this archive began.
async fn settle_failed(
    ctx: &Context,
    owner: &Owner,
    before: Option<&SnapshotRecord>,
    error: &LifecycleError,
) {
    let recorded = owner.record().snapshot;
    let snapshot_recorded = recorded.is_some() && recorded.as_ref() != before;
    let reason = format!("archive failed: {error}");
    if snapshot_recorded {
        let archived = RouteStatus::not_serving(ContainerState::Archived, None);
        let forget_container = Change {
            docker_id: Some(None),
            ..Change::default()
        };
        if ctx
            .commit(owner, archived.clone(), forget_container)
            .await
            .is_err()
        {
            ctx.publish(owner, archived);
        }
    } else {
        let asleep = RouteStatus::not_serving(ContainerState::Asleep, Some(&reason));
        ctx.commit_or_publish(owner, asleep).await;
    }
    tracing::error!(container = %owner.name(), %reason, archived = snapshot_recorded, "archive failed");
}

fn snapshot_error(name: &str, reason: String) -> LifecycleError {
    LifecycleError::Snapshot {
        name: name.to_owned(),
        reason,
    }
}

/// What a snapshot of `record` holds: its writable layer (`upper`) as
/// `rootfs` and each named volume as `volumes/<index>`.
pub(super) async fn trees(
    ctx: &Context,
    record: &ContainerRecord,
    upper: PathBuf,
) -> Result<Vec<Tree>, LifecycleError> {
    let name = record.name.as_str();
    let mut trees = vec![Tree {
        name: "rootfs".into(),
        dir: upper,
        kind: TreeKind::OverlayUpper,
    }];
    for (index, volume) in volume_names(record).iter().enumerate() {
        let dir = ctx
            .runtime
            .volume_dir(volume)
            .await
            .map_err(|e| LifecycleError::runtime(name, e))?
            .ok_or_else(|| {
                LifecycleError::Conflict(format!("volume {volume} of `{name}` is missing"))
            })?;
        trees.push(Tree {
            name: format!("volumes/{index}"),
            dir,
            kind: TreeKind::Plain,
        });
    }
    Ok(trees)
}
