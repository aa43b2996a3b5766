//! The only place that changes a container's state.
//!
//! Every transition of one container (create, wake, sleep, delete) runs under
//! that container's own lock, so two calls for one container are serialised
//! while different containers never wait for each other. A transition writes
//! the store first and the route table second, so what the proxy sees is
//! always backed by a durable record.
//!
//! - `bring_up.rs`: start (or recreate) a container and wait until it answers.
//! - `wake.rs`: the proxy's way in: a ready upstream, waking if needed, once.
//! - `sleep.rs`: stopping idle containers, and the sweep that finds them.
//! - `events.rs`: Docker's event stream: containers that die.
//! - `reconcile.rs`: start-up, bringing Docker and the store together.

mod archive;
mod bring_up;
mod capacity;
mod error;
mod events;
pub mod names;
mod readiness;
mod reconcile;
mod restore;
mod sleep;
mod wake;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{stream, StreamExt};

use crate::domain::{
    now_millis, volume_name, ContainerRecord, ContainerSpec, ContainerState, WakeStrategy,
};
use crate::metrics::Metrics;
use crate::proxy::routes::{Route, RouteConfig, RouteStatus, Routes};
use crate::runtime::Runtime;
use crate::store::{Store, StoreError};
pub use archive::{check_support as check_archive_support, ArchiveSupport};
pub use capacity::{host_memory_bytes, own_rss_bytes, CapacityUsage, Limits};
pub use error::LifecycleError;

/// Settings lifecycle needs from the configuration.
#[derive(Debug, Clone)]
pub struct LifecycleConfig {
    /// This dormant's node id; every Docker object it makes is labelled with it.
    pub node: String,
    /// Limit on processes in each container (fork bombs stay inside).
    pub pids_limit: i64,
    /// How long a container may take from start until its app answers.
    pub wake_timeout: Duration,
    /// Time between SIGTERM and SIGKILL when a container is put to sleep.
    pub stop_grace: Duration,
    /// How a sleeping container's requests are served, unless it says.
    pub default_wake: WakeStrategy,
    /// How many containers of one batch are created at once.
    pub create_concurrency: usize,
    /// How often the idle sweep runs.
    pub sweep_interval: Duration,
    /// Time asleep before archiving, unless the container says.
    pub default_archive_after: Duration,
    /// Where snapshots are kept.
    pub snapshot_dir: std::path::PathBuf,
    /// Bytes an archive or a restore must leave free on the filesystems it
    /// writes to (`--min-free-disk`).
    pub min_free_disk: u64,
    /// How much may run at once.
    pub limits: Limits,
}

/// A validated request for one or more containers of the same image.
#[derive(Debug, Clone)]
pub struct NewContainers {
    pub names: Vec<String>,
    pub image: String,
    /// `None`: use the one port the image exposes.
    pub port: Option<u16>,
    pub env: BTreeMap<String, String>,
    pub cmd: Option<Vec<String>>,
    pub memory_bytes: u64,
    pub nano_cpus: Option<i64>,
    pub idle_timeout: Duration,
    pub volumes: Vec<String>,
    pub ready_path: Option<String>,
    pub wake: Option<WakeStrategy>,
    pub archive_after: Option<Duration>,
    pub owner: String,
}

pub struct Lifecycle {
    store: Store,
    runtime: Arc<dyn Runtime>,
    routes: Arc<Routes>,
    config: LifecycleConfig,
    /// One async lock per container: its transitions' single owner. The outer
    /// std mutex is held only to find or insert an entry.
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// Routes of containers that run (or are starting or stopping): all the
    /// idle sweep looks at, so its cost grows with what runs, not with what
    /// exists.
    awake: Mutex<HashMap<String, Arc<Route>>>,
    /// Asleep containers by when they are due for archiving.
    archive_queue: Mutex<archive::ArchiveQueue>,
    /// Archives run one at a time.
    archive_turns: tokio::sync::Semaphore,
    archive_support: ArchiveSupport,
    metrics: Arc<Metrics>,
    capacity: capacity::Capacity,
    /// The main runtime: background work started from a proxy thread (a
    /// wake) runs here, not on that thread's own runtime.
    background: tokio::runtime::Handle,
}

// === impl Lifecycle ===

impl Lifecycle {
    pub fn new(
        store: Store,
        runtime: Arc<dyn Runtime>,
        routes: Arc<Routes>,
        config: LifecycleConfig,
        archive_support: ArchiveSupport,
        metrics: Arc<Metrics>,
    ) -> Self {
        let capacity = capacity::Capacity::new(config.limits);
        Self {
            store,
            runtime,
            routes,
            config,
            locks: Mutex::new(HashMap::new()),
            awake: Mutex::new(HashMap::new()),
            archive_queue: Mutex::new(archive::ArchiveQueue::default()),
            archive_turns: tokio::sync::Semaphore::new(1),
            archive_support,
            metrics,
            capacity,
            background: tokio::runtime::Handle::current(),
        }
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// How many containers are in each state, for metrics and stats.
    pub fn count_by_state(&self) -> Vec<(ContainerState, i64)> {
        let mut counts: HashMap<ContainerState, i64> =
            ContainerState::ALL.iter().map(|s| (*s, 0)).collect();
        for route in self.routes.all() {
            *counts.entry(route.status().state).or_default() += 1;
        }
        counts.remove(&ContainerState::Deleted);
        let mut counts: Vec<_> = counts.into_iter().collect();
        counts.sort_by_key(|(state, _)| state.as_str());
        counts
    }

    /// Whether this host supports archiving, and if not, why.
    pub fn archive_support(&self) -> &ArchiveSupport {
        &self.archive_support
    }

    /// Bytes an archive or restore of `name` has processed so far.
    pub fn progress(&self, name: &str) -> Option<u64> {
        self.routes.get(name).map(|route| route.progress())
    }

    pub fn routes(&self) -> &Arc<Routes> {
        &self.routes
    }

    /// Creates every container of `request`, started and answering, or none.
    pub async fn create(
        &self,
        request: NewContainers,
    ) -> Result<Vec<ContainerRecord>, LifecycleError> {
        let spec = self.resolve_spec(&request).await?;
        let now = now_millis();
        let records: Vec<ContainerRecord> = request
            .names
            .iter()
            .map(|name| ContainerRecord {
                name: name.clone(),
                spec: spec.clone(),
                state: ContainerState::Creating,
                reason: None,
                docker_id: None,
                owner: request.owner.clone(),
                node: self.config.node.clone(),
                created_at: now,
                last_active_at: now,
                wakes: 0,
                last_wake_ms: None,
                state_since: now,
                snapshot: None,
            })
            .collect();

        // Hold every new name's lock before the rows exist, so no other call
        // can act on a half-made container. Each is let go as soon as its
        // container runs: from then on it may be evicted to make room for
        // the rest of the batch.
        let mut guards = Vec::with_capacity(records.len());
        for record in &records {
            guards.push(self.lock(&record.name).lock_owned().await);
        }
        self.store
            .insert_all(records.clone())
            .await
            .map_err(|e| match e {
                StoreError::NameTaken(name) => LifecycleError::NameTaken(name),
                other => other.into(),
            })?;

        let results: Vec<Result<(), LifecycleError>> = stream::iter(records.iter().cloned().zip(guards))
            .map(|(record, guard)| async move {
                let upstream = self.bring_up(&record, None).await?;
                self.store
                    .set_state(&record.name, ContainerState::Running, None)
                    .await?;
                let status = RouteStatus::running(upstream);
                let config = self.route_config(&record.spec);
                let route = self
                    .routes
                    .insert(&record.name, config, status.clone(), record.last_active_at);
                self.publish(&route, status);
                tracing::info!(container = %record.name, image = %record.spec.image, %upstream, "created");
                drop(guard);
                Ok(())
            })
            .buffered(self.config.create_concurrency.max(1))
            .collect()
            .await;

        if let Some(position) = results.iter().position(Result::is_err) {
            let mut guards = Vec::with_capacity(records.len());
            for record in &records {
                guards.push(self.lock(&record.name).lock_owned().await);
            }
            self.undo_create(&records).await;
            drop(guards);
            self.forget_locks(records.iter().map(|r| r.name.as_str()));
            let mut results = results;
            return Err(results
                .swap_remove(position)
                .expect_err("position found an error"));
        }
        // Later members of a large batch may have put earlier ones to sleep.
        let created = records
            .into_iter()
            .map(|mut record| {
                record.state = self
                    .routes
                    .get(&record.name)
                    .map_or(ContainerState::Running, |route| route.status().state);
                record
            })
            .collect();
        Ok(created)
    }

    /// The container's record, with the freshest activity time.
    pub async fn get(&self, name: &str) -> Result<ContainerRecord, LifecycleError> {
        let record = self
            .store
            .get(name)
            .await?
            .ok_or_else(|| LifecycleError::NotFound(name.to_owned()))?;
        Ok(self.with_live_activity(record))
    }

    pub async fn list(&self) -> Result<Vec<ContainerRecord>, LifecycleError> {
        let records = self.store.list().await?;
        Ok(records
            .into_iter()
            .map(|r| self.with_live_activity(r))
            .collect())
    }

    /// Removes the container and its volumes. The row goes first: the store
    /// says what should exist, so a crash half-way leaves an orphan that the
    /// next start-up removes, never a deleted container coming back.
    pub async fn delete(&self, name: &str) -> Result<(), LifecycleError> {
        let lock = self.lock(name);
        let _guard = lock.lock().await;
        let record = self
            .store
            .get(name)
            .await?
            .ok_or_else(|| LifecycleError::NotFound(name.to_owned()))?;
        self.store.delete_all(vec![name.to_owned()]).await?;
        if let Some(route) = self.routes.remove(name) {
            self.publish(
                &route,
                RouteStatus::not_serving(ContainerState::Deleted, Some("it was deleted")),
            );
        }
        let removed = self.forget(&record).await;
        self.forget_locks([name]);
        removed.map_err(|e| LifecycleError::runtime(name, e))?;
        tracing::info!(container = %name, "deleted");
        Ok(())
    }

    /// Counts as activity for `name`, as a request would.
    pub fn heartbeat(&self, name: &str) -> Result<(), LifecycleError> {
        let route = self
            .routes
            .get(name)
            .ok_or_else(|| LifecycleError::NotFound(name.to_owned()))?;
        route.touch();
        Ok(())
    }

    /// Writes the activity the proxy recorded in memory to the store, for the
    /// routes that saw activity since their row was last written. Only awake
    /// containers can have new activity.
    pub async fn flush_activity(&self) -> Result<(), LifecycleError> {
        let times: Vec<(String, i64)> = self
            .awake_routes()
            .iter()
            .filter(|route| route.take_unflushed())
            .map(|route| (route.name().to_owned(), route.last_active_ms()))
            .collect();
        self.store.record_activity(times).await?;
        Ok(())
    }

    /// Publishes a route's new status and keeps the awake index in step.
    /// Callers write the store first.
    fn publish(&self, route: &Arc<Route>, status: RouteStatus) {
        let awake = matches!(
            status.state,
            ContainerState::Running | ContainerState::Starting | ContainerState::Stopping
        );
        {
            let mut index = self.awake.lock().unwrap_or_else(|p| p.into_inner());
            if awake {
                index.insert(route.name().to_owned(), route.clone());
            } else {
                index.remove(route.name());
            }
        }
        self.schedule_archive(route, status.state, now_millis());
        match status.state {
            // Starting is admitted (or not) by `admit`, before Docker starts it.
            ContainerState::Running | ContainerState::Stopping => self
                .capacity
                .note_running(route.name(), route.config().memory_bytes),
            ContainerState::Starting => {}
            _ => self.capacity.release(route.name()),
        }
        route.set_status(status);
    }

    /// Keeps the archive queue in step with a route's state: an asleep
    /// container is due `archive_after` after it fell asleep (`since`).
    fn schedule_archive(&self, route: &Route, state: ContainerState, since: i64) {
        let mut queue = self.archive_queue.lock().unwrap_or_else(|p| p.into_inner());
        if state == ContainerState::Asleep {
            let after = route.config().archive_after.as_millis() as i64;
            queue.schedule(route.name(), since.saturating_add(after));
        } else {
            queue.cancel(route.name());
        }
    }

    /// Writes `status` to the store, then publishes it.
    async fn transition(
        &self,
        route: &Arc<Route>,
        status: RouteStatus,
    ) -> Result<(), LifecycleError> {
        let reason = status.reason.as_deref().map(str::to_owned);
        self.store
            .set_state(route.name(), status.state, reason)
            .await?;
        self.publish(route, status);
        Ok(())
    }

    fn awake_routes(&self) -> Vec<Arc<Route>> {
        let index = self.awake.lock().unwrap_or_else(|p| p.into_inner());
        index.values().cloned().collect()
    }

    fn route_config(&self, spec: &ContainerSpec) -> RouteConfig {
        RouteConfig {
            idle_timeout: spec.idle_timeout,
            wake: spec.wake.unwrap_or(self.config.default_wake),
            archive_after: spec
                .archive_after
                .unwrap_or(self.config.default_archive_after),
            memory_bytes: spec.memory_bytes,
        }
    }

    /// Removes whatever a failed batch left in Docker, then its rows.
    async fn undo_create(&self, records: &[ContainerRecord]) {
        for record in records {
            self.capacity.release(&record.name);
            if let Some(route) = self.routes.remove(&record.name) {
                self.publish(
                    &route,
                    RouteStatus::not_serving(ContainerState::Deleted, None),
                );
            }
            if let Err(e) = self.remove_from_docker(record).await {
                tracing::error!(container = %record.name, error = %e, "could not remove a container of a failed batch; it will be removed at the next start-up");
            }
        }
        let names = records.iter().map(|r| r.name.clone()).collect();
        if let Err(e) = self.store.delete_all(names).await {
            tracing::error!(error = %e, "could not delete the rows of a failed batch; they will be cleaned at the next start-up");
        }
    }

    /// Removes everything the record has: its Docker container, its volumes
    /// and its snapshot.
    async fn forget(&self, record: &ContainerRecord) -> Result<(), crate::runtime::RuntimeError> {
        self.remove_from_docker(record).await?;
        if let Some(snapshot) = &record.snapshot {
            self.delete_snapshot_file(&snapshot.file);
        }
        Ok(())
    }

    /// Removes the record's Docker container and then its volumes.
    async fn remove_from_docker(
        &self,
        record: &ContainerRecord,
    ) -> Result<(), crate::runtime::RuntimeError> {
        self.runtime.remove(&docker_ref(record)).await?;
        self.runtime.remove_volumes(&volume_names(record)).await
    }

    async fn resolve_spec(&self, request: &NewContainers) -> Result<ContainerSpec, LifecycleError> {
        let image = self
            .runtime
            .image(&request.image)
            .await
            .map_err(|e| LifecycleError::runtime(&request.names[0], e))?
            .ok_or_else(|| LifecycleError::ImageNotPresent(request.image.clone()))?;
        let port = match (request.port, image.exposed_tcp_ports.as_slice()) {
            (Some(port), _) => port,
            (None, [only]) => *only,
            (None, []) => {
                return Err(LifecycleError::Invalid {
                    field: "port",
                    message: format!("is required: image `{}` exposes no port", request.image),
                })
            }
            (None, many) => {
                return Err(LifecycleError::Invalid {
                    field: "port",
                    message: format!(
                        "is required: image `{}` exposes several ports ({many:?})",
                        request.image
                    ),
                })
            }
        };
        Ok(ContainerSpec {
            image: request.image.clone(),
            image_id: Some(image.id.clone()).filter(|id| !id.is_empty()),
            port,
            env: request.env.clone(),
            cmd: request.cmd.clone(),
            memory_bytes: request.memory_bytes,
            nano_cpus: request.nano_cpus,
            idle_timeout: request.idle_timeout,
            volumes: request.volumes.clone(),
            ready_path: request.ready_path.clone(),
            wake: request.wake,
            archive_after: request.archive_after,
        })
    }

    fn with_live_activity(&self, mut record: ContainerRecord) -> ContainerRecord {
        if let Some(route) = self.routes.get(&record.name) {
            record.last_active_at = record.last_active_at.max(route.last_active_ms());
        }
        record
    }

    fn lock(&self, name: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self.locks.lock().unwrap_or_else(|p| p.into_inner());
        locks.entry(name.to_owned()).or_default().clone()
    }

    fn forget_locks<'a>(&self, names: impl IntoIterator<Item = &'a str>) {
        let mut locks = self.locks.lock().unwrap_or_else(|p| p.into_inner());
        for name in names {
            locks.remove(name);
        }
    }
}

/// How to name the record's container to Docker: its id once known.
fn docker_ref(record: &ContainerRecord) -> String {
    record
        .docker_id
        .clone()
        .unwrap_or_else(|| record.docker_name())
}

fn volume_names(record: &ContainerRecord) -> Vec<String> {
    (0..record.spec.volumes.len())
        .map(|i| volume_name(&record.name, i))
        .collect()
}
