//! Archive: a container asleep for its `archive_after` becomes one
//! compressed snapshot of what its user changed (its writable layer and its
//! volumes), and its Docker container and volumes are removed.
//!
//! Durable before destructive: the snapshot is written to a temporary file,
//! fsynced, renamed into place and recorded in the store before anything is
//! removed, and the state reads `archived` only after the removal. A crash at
//! any point leaves either the container (`asleep`) or a complete, recorded
//! snapshot; `reconcile` finishes or undoes what was in flight.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;

use super::{docker_ref, volume_names, Lifecycle, LifecycleError};
use crate::domain::{now_millis, ContainerRecord, ContainerState, SnapshotRecord, UnixMillis};
use crate::fault;
use crate::proxy::routes::{Route, RouteStatus};
use crate::runtime::Runtime;
use crate::snapshot::{self, Tree, TreeKind};

/// Whether this host lets dormant archive, and if not, why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ArchiveSupport {
    Supported,
    Unsupported(String),
}

/// Storage drivers whose containers have an overlay upper directory we can
/// read and write on the host.
const OVERLAY_DRIVERS: [&str; 2] = ["overlay2", "fuse-overlayfs"];

/// Asleep containers by the time they are due for archiving: the archive
/// sweep takes only what is due, so its cost does not grow with everything
/// that sleeps.
#[derive(Debug, Default)]
pub(super) struct ArchiveQueue {
    due: BTreeSet<(UnixMillis, String)>,
    by_name: std::collections::HashMap<String, UnixMillis>,
}

impl ArchiveQueue {
    pub(super) fn schedule(&mut self, name: &str, at: UnixMillis) {
        self.cancel(name);
        self.due.insert((at, name.to_owned()));
        self.by_name.insert(name.to_owned(), at);
    }

    pub(super) fn cancel(&mut self, name: &str) {
        if let Some(at) = self.by_name.remove(name) {
            self.due.remove(&(at, name.to_owned()));
        }
    }

    /// Removes and returns the names due by `now`.
    fn take_due(&mut self, now: UnixMillis) -> Vec<String> {
        let mut taken = Vec::new();
        while let Some((at, _)) = self.due.first() {
            if *at > now {
                break;
            }
            let (_, name) = self.due.pop_first().expect("first exists");
            self.by_name.remove(&name);
            taken.push(name);
        }
        taken
    }
}

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

impl Lifecycle {
    /// Archives the container now (the API's `/archive`), putting it to
    /// sleep first if it runs.
    pub async fn archive(&self, name: &str) -> Result<(), LifecycleError> {
        let route = self
            .routes
            .get(name)
            .ok_or_else(|| LifecycleError::NotFound(name.to_owned()))?;
        self.archive_supported()?;
        let lock = self.lock(name);
        let _guard = lock.lock().await;
        if route.status().state == ContainerState::Running {
            self.sleep_locked(&route, super::sleep::Why::Asked).await?;
        }
        self.archive_locked(&route).await
    }

    pub(super) fn archive_supported(&self) -> Result<(), LifecycleError> {
        match &self.archive_support {
            ArchiveSupport::Supported => Ok(()),
            ArchiveSupport::Unsupported(why) => {
                Err(LifecycleError::ArchiveUnsupported(why.clone()))
            }
        }
    }

    /// Starts archiving every container whose time asleep has run out.
    pub(super) fn archive_due(self: &Arc<Self>) {
        if self.archive_supported().is_err() {
            return;
        }
        let due = self
            .archive_queue
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take_due(now_millis());
        for name in due {
            let Some(route) = self.routes.get(&name) else {
                continue;
            };
            let lifecycle = self.clone();
            tokio::spawn(async move {
                // One archive at a time: they are disk-bound, and requests
                // for running containers must not feel them.
                let _turn = lifecycle.archive_turns.acquire().await;
                let lock = lifecycle.lock(route.name());
                let _guard = lock.lock().await;
                if route.status().state != ContainerState::Asleep {
                    return;
                }
                if let Err(e) = lifecycle.archive_locked(&route).await {
                    tracing::error!(container = %route.name(), error = %e, "archive failed; it stays asleep");
                }
            });
        }
    }

    /// The archive itself. Caller holds the container's lock.
    async fn archive_locked(&self, route: &Arc<Route>) -> Result<(), LifecycleError> {
        let name = route.name();
        match route.status().state {
            ContainerState::Asleep | ContainerState::Failed => {}
            ContainerState::Archived => return Ok(()),
            other => {
                return Err(LifecycleError::Conflict(format!(
                    "container `{name}` is {other}; only an asleep container can be archived"
                )))
            }
        }
        let record = self.record(name).await?;
        let runtime_err = |e| LifecycleError::runtime(name, e);
        let inspection = self
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
        let trees = self.trees(&record, upper).await?;

        self.transition(
            route,
            RouteStatus::not_serving(ContainerState::Archiving, None),
        )
        .await?;
        let created_at = now_millis();
        let file = format!("{name}-{created_at}.snap.zst");
        let path = self.snapshot_path(&file);
        let started = std::time::Instant::now();
        let written = {
            let route = route.clone();
            let path = path.clone();
            route.set_progress(0);
            let options = snapshot::Options {
                min_free_disk: self.config.min_free_disk,
            };
            tokio::task::spawn_blocking(move || {
                snapshot::write(&trees, &path, &options, &|bytes| route.set_progress(bytes))
            })
            .await
        };
        let info = match written {
            Ok(Ok(info)) => info,
            failure => {
                let reason = match failure {
                    Ok(Err(e)) => e.to_string(),
                    Err(e) => format!("the snapshot task failed: {e}"),
                    Ok(Ok(_)) => unreachable!(),
                };
                self.transition(
                    route,
                    RouteStatus::not_serving(ContainerState::Asleep, None),
                )
                .await?;
                return Err(LifecycleError::Snapshot {
                    name: name.to_owned(),
                    reason,
                });
            }
        };
        fault::point("archive-after-snapshot-write");
        let snapshot = SnapshotRecord {
            file,
            bytes: info.bytes,
            files: info.files,
            sha256: info.sha256,
            created_at,
        };
        self.store
            .set_snapshot(name, Some(snapshot.clone()))
            .await?;
        fault::point("archive-after-snapshot-record");
        self.remove_from_docker(&record)
            .await
            .map_err(runtime_err)?;
        self.store.set_docker_id(name, None).await?;
        fault::point("archive-after-docker-remove");
        self.transition(
            route,
            RouteStatus::not_serving(ContainerState::Archived, None),
        )
        .await?;
        self.metrics.archives.inc();
        self.metrics
            .archive_duration
            .observe(started.elapsed().as_secs_f64());
        self.metrics.archived_bytes.inc_by(snapshot.bytes);
        if let Some(old) = record.snapshot.filter(|old| old.file != snapshot.file) {
            self.delete_snapshot_file(&old.file);
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

    /// What a snapshot of `record` holds: its writable layer (`upper`) as
    /// `rootfs` and each named volume as `volumes/<index>`.
    pub(super) async fn trees(
        &self,
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
            let dir = self
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

    pub(super) fn snapshot_path(&self, file: &str) -> PathBuf {
        self.config.snapshot_dir.join(file)
    }

    pub(super) fn delete_snapshot_file(&self, file: &str) {
        let path = self.snapshot_path(file);
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "cannot remove an old snapshot")
            }
        }
    }

    pub(super) async fn record(&self, name: &str) -> Result<ContainerRecord, LifecycleError> {
        self.store
            .get(name)
            .await?
            .ok_or_else(|| LifecycleError::NotFound(name.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_queue_yields_what_is_due_in_order_once() {
        let mut queue = ArchiveQueue::default();
        queue.schedule("b", 20);
        queue.schedule("a", 10);
        queue.schedule("c", 30);
        queue.schedule("c", 40); // rescheduled
        queue.cancel("b");
        assert_eq!(queue.take_due(35), vec!["a".to_owned()]);
        assert_eq!(queue.take_due(40), vec!["c".to_owned()]);
        assert!(queue.take_due(1000).is_empty());
    }
}
