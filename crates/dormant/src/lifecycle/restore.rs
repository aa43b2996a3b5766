//! Restore: an archived container comes back as a new container from the
//! same image and settings, with its snapshot written into the new
//! container's writable layer and volumes before it first starts. The
//! snapshot's checksum is verified first; a snapshot that fails it is kept
//! for inspection and the wake fails with the reason.

use std::sync::Arc;

use super::{Lifecycle, LifecycleError};
use crate::domain::{ContainerRecord, ContainerState};
use crate::fault;
use crate::proxy::routes::{Route, RouteStatus};
use crate::snapshot;

impl Lifecycle {
    /// Creates the container again and restores its snapshot into it; returns
    /// the record with its new Docker id, ready to be started. Caller holds
    /// the container's lock.
    pub(super) async fn restore_locked(
        &self,
        route: &Arc<Route>,
        mut record: ContainerRecord,
    ) -> Result<ContainerRecord, LifecycleError> {
        let name = record.name.clone();
        let snapshot = record.snapshot.clone().ok_or_else(|| {
            LifecycleError::Conflict(format!("container `{name}` has no snapshot to restore"))
        })?;
        self.archive_supported()?;
        let path = self.snapshot_path(&snapshot.file);
        if !path.is_file() {
            return Err(LifecycleError::Snapshot {
                name,
                reason: format!("its snapshot {} is missing", path.display()),
            });
        }
        self.transition(
            route,
            RouteStatus::not_serving(ContainerState::Restoring, None),
        )
        .await?;
        // A restore cut short leaves a half-filled container: start clean.
        self.remove_from_docker(&record)
            .await
            .map_err(|e| LifecycleError::runtime(&name, e))?;
        let started = std::time::Instant::now();
        let outcome = self
            .restore_into_new_container(route, &record, &path, &snapshot.sha256)
            .await;
        match outcome {
            Ok(id) => {
                self.metrics.restores.inc();
                self.metrics
                    .restore_duration
                    .observe(started.elapsed().as_secs_f64());
                self.metrics.restored_bytes.inc_by(snapshot.bytes);
                record.docker_id = Some(id);
                Ok(record)
            }
            Err(e) => {
                // Nothing half-restored stays behind; the snapshot does.
                record.docker_id = None;
                if let Err(cleanup) = self.remove_from_docker(&record).await {
                    tracing::warn!(container = %name, error = %cleanup, "cannot remove a failed restore's container");
                }
                let _ = self.store.set_docker_id(&name, None).await;
                Err(e)
            }
        }
    }

    async fn restore_into_new_container(
        &self,
        route: &Arc<Route>,
        record: &ContainerRecord,
        path: &std::path::Path,
        sha256: &str,
    ) -> Result<String, LifecycleError> {
        let name = record.name.as_str();
        let runtime_err = |e| LifecycleError::runtime(name, e);
        let id = self.create_container(record).await?;
        self.store.set_docker_id(name, Some(id.clone())).await?;
        fault::point("restore-after-create");
        let upper = self
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
        let trees = self.trees(record, upper).await?;
        let restored = {
            let route = route.clone();
            let path = path.to_owned();
            let sha256 = sha256.to_owned();
            route.set_progress(0);
            let options = snapshot::Options {
                min_free_disk: self.config.min_free_disk,
            };
            tokio::task::spawn_blocking(move || {
                snapshot::restore(&path, &sha256, &trees, &options, &|bytes| {
                    route.set_progress(bytes)
                })
            })
            .await
        };
        match restored {
            Ok(Ok(_)) => {
                fault::point("restore-after-write");
                Ok(id)
            }
            Ok(Err(e)) => Err(LifecycleError::Snapshot {
                name: name.to_owned(),
                reason: e.to_string(),
            }),
            Err(e) => Err(LifecycleError::Snapshot {
                name: name.to_owned(),
                reason: format!("the restore task failed: {e}"),
            }),
        }
    }
}
