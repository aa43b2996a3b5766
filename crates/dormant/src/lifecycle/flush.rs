//! Flush: what a restore wrote is made durable after the wake went on, off
//! the request's path, and only then is the snapshot deleted.
//!
//! Until then the snapshot, already durable, holds everything, and it stays
//! recorded beside the new container's Docker id: in the store that pair
//! means "a flush is pending". A crash or restart before the flush ended
//! leaves the pair, and start-up flushes again, then deletes the snapshot
//! (`reconcile.rs`). An archive waits for a flush in flight. A delete while
//! one runs is harmless: the flush skips what vanished, then finds no record
//! to change. A flush that fails keeps the snapshot; the next start-up tries
//! again, and the next archive replaces it.

use std::sync::Arc;

use super::context::{Change, Context};
use super::table::{Owner, Route};
use crate::domain::{ContainerRecord, ContainerState};
use crate::fault;
use crate::snapshot::{self, Tree};

/// Makes `trees` durable in a task of its own, then forgets and deletes the
/// snapshot `file` if the container still records it.
pub(super) fn spawn(ctx: &Arc<Context>, route: &Arc<Route>, trees: Vec<Tree>, file: String) {
    let ended = route.start_flush();
    let (ctx, route) = (ctx.clone(), route.clone());
    ctx.clone().spawn(async move {
        fault::point("restore-before-flush");
        let name = route.name().to_owned();
        let started = std::time::Instant::now();
        let flushed = tokio::task::spawn_blocking(move || snapshot::make_durable(&trees)).await;
        ended.send_replace(true);
        let took_ms = started.elapsed().as_millis() as u64;
        match flushed {
            Ok(Ok(stats)) => {
                ctx.metrics.restore_flush_duration.observe(took_ms as f64 / 1e3);
                tracing::info!(container = %name, files = stats.files, dirs = stats.dirs, took_ms, "the restored files are on disk");
                fault::point("restore-after-flush");
                let owner = route.own().await;
                forget_snapshot(&ctx, &owner, &file).await;
            }
            Ok(Err(e)) if route.status().state == ContainerState::Deleted => {
                tracing::debug!(container = %name, error = %e, "flush of a deleted container's files cut short");
            }
            Ok(Err(e)) => {
                tracing::error!(container = %name, error = %e, "cannot make the restored files durable; the snapshot is kept (the next start-up tries again)");
            }
            Err(e) => {
                tracing::error!(container = %name, error = %e, "the flush task failed; the snapshot is kept (the next start-up tries again)");
            }
        }
    });
}

/// Whether the record holds a restore whose flush has not ended: a
/// snapshot beside a Docker id.
pub(super) fn pending(record: &ContainerRecord) -> bool {
    record.docker_id.is_some() && record.snapshot.is_some()
}

/// Waits for the owned container's flush in flight, if any: an archive
/// starts only after it.
pub(super) async fn wait(owner: &Owner) {
    if let Some(mut ended) = owner.flush_in_flight() {
        let _ = ended.wait_for(|ended| *ended).await;
    }
}

/// Forgets and deletes the snapshot `file` unless the owned container was
/// deleted, archived again, or no longer records it. Never while the store
/// still says `restoring` (its commits failed since): start-up would undo
/// that restore, and the snapshot would be the only copy.
async fn forget_snapshot(ctx: &Context, owner: &Owner, file: &str) {
    let record = owner.record();
    let still_pending = pending(&record)
        && record.snapshot.as_ref().is_some_and(|s| s.file == file)
        && owner.status().state != ContainerState::Deleted;
    if !still_pending {
        return;
    }
    // The table may show a state the store could not record.
    match ctx.store.get(owner.name()).await {
        Ok(Some(stored)) if stored.state != ContainerState::Restoring => {}
        Ok(_) => return,
        Err(e) => {
            tracing::warn!(container = %owner.name(), error = %e, "cannot read its row; the restored snapshot is kept (the next start-up tries again)");
            return;
        }
    }
    let forget = Change {
        snapshot: Some(None),
        ..Change::default()
    };
    match ctx.commit_record(owner, forget).await {
        Ok(()) => ctx.delete_snapshot(file).await,
        Err(e) => {
            tracing::warn!(container = %owner.name(), error = %e, "cannot forget the restored snapshot; it is kept (the next start-up tries again)")
        }
    }
}
