//! Restore: an archived container comes back as a new container from the
//! same image and settings, with its snapshot written into the new
//! container's writable layer and volumes before it first starts.
//!
//! The new container's id is committed only once the snapshot is fully
//! written into it: a recorded Docker id always means "this container holds
//! the user's files". Until then the snapshot is the only copy, and a crash
//! or an error leaves it recorded and the half-filled container to be
//! removed. A snapshot that fails its checksum is kept for inspection. One
//! kept in an object store is downloaded and its checksum verified before
//! the new container is even made.
//! Once written, nothing is flushed here: the snapshot still holds it all,
//! and `flush.rs` makes it durable after the wake went on.

use super::context::{Change, Context};
use super::table::{Owner, RouteStatus};
use super::{archive, bring_up, LifecycleError};
use crate::domain::ContainerState;
use crate::fault;
use crate::snapshot::{self, Tree};
use crate::snapshot_store::Fetched;

/// What a restore wrote: the trees to flush, and the snapshot to delete after.
pub(super) struct Restored {
    pub trees: Vec<Tree>,
    pub snapshot_file: String,
}

/// Makes the owned, archived container again from its snapshot, ready to
/// be started. The caller commits the state that follows, or fails the
/// wake, and hands what was written to `flush::spawn`.
pub(super) async fn run(ctx: &Context, owner: &Owner) -> Result<Restored, LifecycleError> {
    let mut record = owner.record();
    let name = record.name.clone();
    let snapshot = record.snapshot.clone().ok_or_else(|| {
        LifecycleError::Conflict(format!("container `{name}` has no snapshot to restore"))
    })?;
    ctx.archive_supported()?;
    if ctx.config.snapshots.known_missing(&snapshot.file) {
        return Err(LifecycleError::Snapshot {
            name,
            reason: format!("its snapshot {} is missing", snapshot.file),
        });
    }
    let restoring = RouteStatus::not_serving(ContainerState::Restoring, None);
    ctx.commit(owner, restoring, Change::default()).await?;
    // A restore cut short leaves a half-filled container: start clean.
    record.docker_id = None;
    ctx.remove_from_docker(&record)
        .await
        .map_err(|e| LifecycleError::runtime(&name, e))?;
    let started = std::time::Instant::now();
    let route = (*owner).clone();
    route.set_progress(0);
    let fetched = ctx
        .config
        .snapshots
        .fetch(&snapshot, &|bytes| route.set_progress(bytes))
        .await
        .map_err(|e| LifecycleError::from_snapshot(&name, e))?;
    fault::point("restore-after-fetch");
    let filled = fill_new_container(ctx, owner, &fetched, &snapshot.sha256).await;
    // A download is not needed once written into the container.
    drop(fetched);
    match filled {
        Ok((id, trees)) => {
            let change = Change {
                docker_id: Some(Some(id)),
                ..Change::default()
            };
            ctx.commit_record(owner, change).await?;
            ctx.metrics.restores.inc();
            ctx.metrics
                .restore_duration
                .observe(started.elapsed().as_secs_f64());
            ctx.metrics.restored_bytes.inc_by(snapshot.bytes);
            Ok(Restored {
                trees,
                snapshot_file: snapshot.file,
            })
        }
        Err(e) => {
            // Nothing half-restored stays behind; the snapshot does. If the
            // removal fails too, the next restore (or start-up) removes it:
            // no Docker id was recorded for it.
            if let Err(cleanup) = ctx.remove_from_docker(&record).await {
                tracing::warn!(container = %name, error = %cleanup, "cannot remove a failed restore's container; it is removed before the next restore");
            }
            Err(e)
        }
    }
}

/// Creates the container and writes the snapshot into it; returns its id
/// and the trees written.
async fn fill_new_container(
    ctx: &Context,
    owner: &Owner,
    fetched: &Fetched,
    sha256: &str,
) -> Result<(String, Vec<Tree>), LifecycleError> {
    let record = owner.record();
    let name = record.name.as_str();
    let runtime_err = |e| LifecycleError::runtime(name, e);
    let id = bring_up::create_container(ctx, &record).await?;
    fault::point("restore-after-create");
    let upper = ctx
        .runtime
        .inspect(&id)
        .await
        .map_err(runtime_err)?
        .and_then(|i| i.upper_dir)
        .ok_or_else(|| {
            LifecycleError::ArchiveUnsupported(format!(
                "Docker shows no writable layer directory for `{name}`"
            ))
        })?;
    let trees = archive::trees(ctx, &record, upper).await?;
    let restored = {
        let route = (*owner).clone();
        let path = fetched.path.clone();
        let verified = fetched.verified;
        let sha256 = sha256.to_owned();
        let trees = trees.clone();
        let options = snapshot::Options {
            min_free_disk: ctx.config.min_free_disk,
        };
        route.set_progress(0);
        tokio::task::spawn_blocking(move || {
            let progress = |bytes| route.set_progress(bytes);
            if verified {
                snapshot::restore_verified(&path, &trees, &options, &progress)
            } else {
                snapshot::restore(&path, &sha256, &trees, &options, &progress)
            }
        })
        .await
    };
    match restored {
        Ok(Ok(_)) => {
            fault::point("restore-after-write");
            Ok((id, trees))
        }
        Ok(Err(e)) => Err(LifecycleError::from_snapshot(name, e)),
        Err(e) => Err(LifecycleError::Snapshot {
            name: name.to_owned(),
            reason: format!("the restore task failed: {e}"),
        }),
    }
}
