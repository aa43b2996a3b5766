//! The only place that changes a container's state.
//!
//! Every transition of one container (create, bring up, delete) runs under
//! that container's own lock, so two calls for one container are serialised
//! while different containers never wait for each other. The store is written
//! before the route table is, so what the proxy serves is always backed by a
//! durable record.

mod error;
pub mod names;
mod readiness;
mod reconcile;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{stream, StreamExt};
use tokio::time::Instant;

use crate::domain::{
    docker_name, now_millis, volume_name, ContainerRecord, ContainerSpec, ContainerState,
    LABEL_MANAGED, LABEL_NAME, LABEL_NODE,
};
use crate::proxy::routes::{RouteStatus, Routes};
use crate::runtime::{CreateParams, Runtime};
use crate::store::{Store, StoreError};
pub use error::LifecycleError;

/// Settings lifecycle needs from the configuration.
#[derive(Debug, Clone)]
pub struct LifecycleConfig {
    /// This dormant's node id; every Docker object it makes is labelled with it.
    pub node: String,
    /// Limit on processes in each container (fork bombs stay inside).
    pub pids_limit: i64,
    /// How long a container may take from start to answering.
    pub ready_timeout: Duration,
    /// How many containers of one batch are created at once.
    pub create_concurrency: usize,
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
}

// === impl Lifecycle ===

impl Lifecycle {
    pub fn new(
        store: Store,
        runtime: Arc<dyn Runtime>,
        routes: Arc<Routes>,
        config: LifecycleConfig,
    ) -> Self {
        Self {
            store,
            runtime,
            routes,
            config,
            locks: Mutex::new(HashMap::new()),
        }
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
            })
            .collect();

        // Hold every new name's lock before the rows exist, so no other call
        // can act on a half-made container.
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

        let results: Vec<Result<SocketAddr, LifecycleError>> = stream::iter(records.clone())
            .map(|record| async move { self.bring_up(&record).await })
            .buffered(self.config.create_concurrency.max(1))
            .collect()
            .await;

        if let Some(position) = results.iter().position(Result::is_err) {
            self.undo_create(&records).await;
            drop(guards);
            self.forget_locks(records.iter().map(|r| r.name.as_str()));
            let mut results = results;
            return Err(results
                .swap_remove(position)
                .expect_err("position found an error"));
        }

        let mut created = Vec::with_capacity(records.len());
        for (mut record, upstream) in records.into_iter().zip(results) {
            let upstream = upstream.expect("all results are Ok here");
            self.store
                .set_state(&record.name, ContainerState::Running, None)
                .await?;
            record.state = ContainerState::Running;
            self.routes.insert(
                &record.name,
                RouteStatus::running(upstream),
                record.last_active_at,
            );
            tracing::info!(container = %record.name, image = %record.spec.image, %upstream, "created");
            created.push(record);
        }
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
        self.routes.remove(name);
        let removed = self.remove_from_docker(&record).await;
        self.forget_locks([name]);
        removed.map_err(|e| LifecycleError::runtime(name, e))?;
        tracing::info!(container = %name, "deleted");
        Ok(())
    }

    /// Writes the activity the proxy recorded in memory to the store, for the
    /// routes that saw activity since their row was last written.
    pub async fn flush_activity(&self) -> Result<(), LifecycleError> {
        let times: Vec<(String, i64)> = self
            .routes
            .all()
            .iter()
            .filter(|route| route.take_unflushed())
            .map(|route| (route.name().to_owned(), route.last_active_ms()))
            .collect();
        self.store.record_activity(times).await?;
        Ok(())
    }

    /// Starts the container (creating it from its spec if Docker no longer
    /// has it) and waits until the app answers. Caller holds the lock.
    async fn bring_up(&self, record: &ContainerRecord) -> Result<SocketAddr, LifecycleError> {
        let name = record.name.as_str();
        let runtime_err = |e| LifecycleError::runtime(name, e);
        let docker_ref = record
            .docker_id
            .clone()
            .unwrap_or_else(|| record.docker_name());
        let existing = self
            .runtime
            .inspect(&docker_ref)
            .await
            .map_err(runtime_err)?;
        let (id, running) = match existing {
            Some(inspection) => (inspection.id, inspection.running),
            None => {
                if record.docker_id.is_some() {
                    tracing::warn!(container = %name, "its Docker container was removed behind dormant's back; recreating it from image {}", record.spec.image);
                }
                let id = self
                    .runtime
                    .create(&self.create_params(record))
                    .await
                    .map_err(runtime_err)?;
                self.store.set_docker_id(name, Some(id.clone())).await?;
                (id, false)
            }
        };
        if !running {
            self.runtime.start(&id).await.map_err(runtime_err)?;
        }
        let inspection = self
            .runtime
            .inspect(&id)
            .await
            .map_err(runtime_err)?
            .ok_or_else(|| {
                not_ready(
                    name,
                    "its Docker container disappeared right after starting".into(),
                )
            })?;
        if !inspection.running {
            return Err(not_ready(name, exit_reason(&inspection)));
        }
        let upstream = inspection.upstream.ok_or_else(|| {
            not_ready(
                name,
                format!(
                    "Docker shows no published port for container port {}",
                    record.spec.port
                ),
            )
        })?;
        let deadline = Instant::now() + self.config.ready_timeout;
        let runtime = self.runtime.clone();
        let still_running = || {
            let runtime = runtime.clone();
            let id = id.clone();
            async move {
                match runtime.inspect(&id).await {
                    Ok(Some(i)) if i.running => Ok(()),
                    Ok(Some(i)) => Err(exit_reason(&i)),
                    Ok(None) => Err("its Docker container was removed".into()),
                    Err(e) => Err(e.to_string()),
                }
            }
        };
        let took = readiness::wait_ready(upstream, "/", false, deadline, still_running)
            .await
            .map_err(|reason| not_ready(name, reason))?;
        tracing::debug!(container = %name, ?took, "ready");
        Ok(upstream)
    }

    /// Removes whatever a failed batch left in Docker, then its rows.
    async fn undo_create(&self, records: &[ContainerRecord]) {
        for record in records {
            self.routes.remove(&record.name);
            if let Err(e) = self.remove_from_docker(record).await {
                tracing::error!(container = %record.name, error = %e, "could not remove a container of a failed batch; it will be removed at the next start-up");
            }
        }
        let names = records.iter().map(|r| r.name.clone()).collect();
        if let Err(e) = self.store.delete_all(names).await {
            tracing::error!(error = %e, "could not delete the rows of a failed batch; they will be cleaned at the next start-up");
        }
    }

    /// Removes the record's Docker container and then its volumes.
    async fn remove_from_docker(
        &self,
        record: &ContainerRecord,
    ) -> Result<(), crate::runtime::RuntimeError> {
        let docker_ref = record
            .docker_id
            .clone()
            .unwrap_or_else(|| record.docker_name());
        self.runtime.remove(&docker_ref).await?;
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
            port,
            env: request.env.clone(),
            cmd: request.cmd.clone(),
            memory_bytes: request.memory_bytes,
            nano_cpus: request.nano_cpus,
            idle_timeout: request.idle_timeout,
            volumes: request.volumes.clone(),
        })
    }

    fn create_params(&self, record: &ContainerRecord) -> CreateParams {
        let labels = HashMap::from([
            (LABEL_MANAGED.to_owned(), "true".to_owned()),
            (LABEL_NAME.to_owned(), record.name.clone()),
            (LABEL_NODE.to_owned(), self.config.node.clone()),
        ]);
        let spec = &record.spec;
        CreateParams {
            docker_name: docker_name(&record.name),
            image: spec.image.clone(),
            port: spec.port,
            env: spec.env.iter().map(|(k, v)| format!("{k}={v}")).collect(),
            cmd: spec.cmd.clone(),
            memory_bytes: spec.memory_bytes,
            nano_cpus: spec.nano_cpus,
            pids_limit: self.config.pids_limit,
            labels,
            volumes: volume_names(record)
                .into_iter()
                .zip(spec.volumes.iter().cloned())
                .collect(),
        }
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

fn volume_names(record: &ContainerRecord) -> Vec<String> {
    (0..record.spec.volumes.len())
        .map(|i| volume_name(&record.name, i))
        .collect()
}

fn not_ready(name: &str, reason: String) -> LifecycleError {
    LifecycleError::NotReady {
        name: name.to_owned(),
        reason,
    }
}

/// Why a container is not running, in words.
fn exit_reason(inspection: &crate::runtime::Inspection) -> String {
    match (&inspection.error, inspection.exit_code) {
        (Some(error), _) => format!("it failed to run: {error}"),
        (None, Some(code)) => format!("it exited with code {code} right after starting"),
        (None, None) => "it is not running".into(),
    }
}
