//! The only place that changes a container's state.
//!
//! Each container lives in the container table (`table.rs`): its record, its
//! route and its state in one place. Every transition of one container runs
//! while owning it (`Route::own`), so two transitions of one container are
//! serialised while different containers never wait for each other; and
//! every transition changes it through `Context::commit` (`context.rs`),
//! which writes the store and then publishes to the table.
//!
//! One file per transition, each reading top to bottom over the shared
//! `Context`:
//! - `create.rs`: new containers, started and answering, or none.
//! - `wake.rs`: the proxy's way in: a ready upstream, waking once if needed.
//! - `bring_up.rs`: the step create and wake share: start, wait until ready.
//! - `restore.rs`: an archived container made again from its snapshot.
//! - `flush.rs`: a restore's files made durable off the request's path.
//! - `nap.rs`: pausing an idle container, and unpausing it for a request.
//! - `sleep.rs`: stopping a container; `sweep.rs` finds the idle and the due.
//! - `archive.rs`: an asleep container becomes one snapshot file.
//! - `delete.rs`: everything of a container removed.
//! - `reconcile.rs`: start-up, bringing Docker and the store together.
//! - `events.rs`: Docker's event stream: containers that die.
//! - `access.rs`: a container's URL made public or private.
//! - `capacity.rs`: limits, eviction and the wake queue every start passes.

mod access;
mod archive;
mod bring_up;
mod capacity;
mod context;
mod create;
mod delete;
mod error;
mod events;
mod flush;
pub mod names;
mod nap;
mod readiness;
mod reconcile;
mod restore;
mod sleep;
mod sweep;
pub mod table;
#[cfg(test)]
mod tests;
mod wake;

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use crate::domain::{Access, ContainerRecord, ContainerState, WakeStrategy};
use crate::events::EventBus;
use crate::metrics::Metrics;
use crate::proxy::waker::{WakeError, Waker};
use crate::runtime::Runtime;
use crate::store::Store;
use crate::tenant::QuotaBook;
pub use archive::{check_support as check_archive_support, ArchiveSupport};
pub use capacity::{host_memory_bytes, own_rss_bytes, CapacityUsage, Limits};
use context::Context;
pub use error::LifecycleError;
pub use nap::PauseGuard;
use table::{ContainerTable, Route};

/// How far one event-stream reader may fall behind the live stream before
/// it is told to start over: a slow reader never slows the lifecycle.
const EVENTS_PER_SUBSCRIBER: usize = 4096;

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
    /// Time idle before a running container is paused, unless the
    /// container says; zero: never (`--nap-after`).
    pub default_nap_after: Duration,
    /// Where snapshots are kept (`--snapshots`).
    pub snapshots: Arc<dyn crate::snapshot_store::SnapshotStore>,
    /// Bytes an archive or a restore must leave free on the filesystems it
    /// writes to (`--min-free-disk`).
    pub min_free_disk: u64,
    /// How much may run at once.
    pub limits: Limits,
    /// Transitions kept for event-stream clients that reconnect
    /// (`--event-buffer`).
    pub event_buffer: usize,
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
    /// Time idle before it naps; `None`: `--nap-after`; zero: never.
    pub nap_after: Option<Duration>,
    /// Capabilities to add back, already checked against the allow-list.
    pub cap_add: Vec<String>,
    /// Who may reach its URL.
    pub access: Access,
    pub owner: String,
}

/// What one tenant's containers use now.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TenantUsage {
    pub containers: u64,
    /// Running, napping, starting or stopping.
    pub running: u64,
    /// Sum of the memory limits of those running.
    pub memory_bytes: u64,
    /// Size of its recorded snapshots.
    pub snapshot_bytes: u64,
}

/// Lifecycle's face to the API, the proxy and `serve`. Cheap to clone.
#[derive(Clone)]
pub struct Lifecycle {
    ctx: Arc<Context>,
}

// === impl Lifecycle ===

impl Lifecycle {
    pub fn new(
        store: Store,
        runtime: Arc<dyn Runtime>,
        config: LifecycleConfig,
        archive_support: ArchiveSupport,
        metrics: Arc<Metrics>,
    ) -> Self {
        let event_buffer = config.event_buffer;
        let ctx = Context {
            store,
            runtime,
            table: Arc::new(ContainerTable::new()),
            capacity: capacity::Capacity::new(config.limits),
            metrics,
            config,
            archive_support,
            archive_turns: tokio::sync::Semaphore::new(1),
            background: tokio::runtime::Handle::current(),
            tasks: tokio_util::task::TaskTracker::new(),
            quotas: QuotaBook::default(),
            create_admission: std::sync::Mutex::new(()),
            pause_guard: std::sync::OnceLock::new(),
            events: Arc::new(EventBus::new(event_buffer, EVENTS_PER_SUBSCRIBER)),
        };
        Self { ctx: Arc::new(ctx) }
    }

    /// Makes every nap wait for `guard` before Docker's pause (a gateway
    /// beside dormant must stop sending the container requests first). Set
    /// once, at start-up.
    pub fn guard_pauses(&self, guard: Arc<dyn nap::PauseGuard>) {
        let _ = self.ctx.pause_guard.set(guard);
    }

    /// Every transition of every container, as it happens.
    pub fn events(&self) -> &Arc<EventBus> {
        &self.ctx.events
    }

    /// Each tenant's quotas, as lifecycle keeps them; whoever changes a
    /// tenant's quotas in the store changes them here too.
    pub fn quotas(&self) -> &QuotaBook {
        &self.ctx.quotas
    }

    /// Forgets tenant `id`'s quotas, so that no container can be made for it
    /// any more, unless it still has containers: then `Err` with how many.
    /// Returns the quotas it had, for the caller to put back should
    /// deleting the tenant from the store fail.
    pub fn retire_tenant(&self, id: &str) -> Result<Option<crate::tenant::Quotas>, u64> {
        let _admission = self
            .ctx
            .create_admission
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let containers = self.tenant_usage(id).containers;
        if containers > 0 {
            return Err(containers);
        }
        let quotas = self.ctx.quotas.get(id);
        self.ctx.quotas.remove(id);
        Ok(quotas)
    }

    /// Removes what Docker holds for a deleted tenant alone (its network).
    /// A failure is logged, not returned: the tenant is gone either way,
    /// and an empty network costs nothing but an address range.
    pub async fn remove_tenant_resources(&self, id: &str) {
        if let Err(e) = self.ctx.runtime.remove_tenant(id).await {
            tracing::warn!(tenant = %id, error = %e, "cannot remove a deleted tenant's network; remove it by hand");
        }
    }

    /// What `owner`'s containers use now, against its quotas.
    pub fn tenant_usage(&self, owner: &str) -> TenantUsage {
        self.usage_where(|o| o == owner)
            .remove(owner)
            .unwrap_or_default()
    }

    /// What each owner's containers use now, in one pass over the table.
    pub fn usage_by_tenant(&self) -> HashMap<String, TenantUsage> {
        self.usage_where(|_| true)
    }

    fn usage_where(&self, counted: impl Fn(&str) -> bool) -> HashMap<String, TenantUsage> {
        let mut by_owner: HashMap<String, TenantUsage> = HashMap::new();
        for route in self.ctx.table.all() {
            let owner = route.owner();
            if !counted(&owner) {
                continue;
            }
            let record = route.record();
            let usage = by_owner.entry(owner).or_default();
            usage.containers += 1;
            if let Some(snapshot) = &record.snapshot {
                usage.snapshot_bytes += snapshot.bytes;
            }
            if matches!(
                route.status().state,
                ContainerState::Running
                    | ContainerState::Napping
                    | ContainerState::Starting
                    | ContainerState::Stopping
            ) {
                usage.running += 1;
                usage.memory_bytes += record.spec.memory_bytes;
            }
        }
        by_owner
    }

    /// The container table, for the proxy to read.
    pub fn table(&self) -> &Arc<ContainerTable> {
        &self.ctx.table
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.ctx.metrics
    }

    /// This dormant's node id.
    pub fn node(&self) -> &str {
        &self.ctx.config.node
    }

    /// Whether this host supports archiving, and if not, why.
    pub fn archive_support(&self) -> &ArchiveSupport {
        &self.ctx.archive_support
    }

    /// Reconciles the store with Docker at start-up; returns once every
    /// container is in the table.
    pub async fn reconcile(&self) -> Result<(), LifecycleError> {
        reconcile::run(&self.ctx).await
    }

    /// Creates every container of `request`, started and answering, or none.
    pub async fn create(
        &self,
        request: NewContainers,
    ) -> Result<Vec<ContainerRecord>, LifecycleError> {
        create::run(&self.ctx, request).await
    }

    /// The container's record, with the freshest activity time.
    pub async fn get(&self, name: &str) -> Result<ContainerRecord, LifecycleError> {
        Ok(self.route(name)?.record())
    }

    /// Every container's record, ordered by name. Read from the table: the
    /// store is written by every transition but read only at start-up.
    pub async fn list(&self) -> Result<Vec<ContainerRecord>, LifecycleError> {
        let mut records: Vec<_> = self.ctx.table.all().iter().map(|r| r.record()).collect();
        records.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(records)
    }

    /// Removes the container, its volumes and its snapshot.
    pub async fn delete(&self, name: &str) -> Result<(), LifecycleError> {
        delete::run(&self.ctx, self.route(name)?).await
    }

    /// Wakes the container (the API's `/wake`) and returns once it answers.
    pub async fn wake(&self, name: &str) -> Result<(), LifecycleError> {
        let route = self.route(name)?;
        route.touch();
        let _in_use = route.in_use();
        wake::ready_upstream(&self.ctx, &route)
            .await
            .map(drop)
            .map_err(|error| LifecycleError::Wake {
                name: name.to_owned(),
                error,
            })
    }

    /// Puts the container to sleep now (the API's `/sleep`), in use or not.
    pub async fn sleep(&self, name: &str) -> Result<(), LifecycleError> {
        let owner = self.route(name)?.own().await;
        sleep::run(&self.ctx, &owner, sleep::Why::Asked).await
    }

    /// Pauses the container now (the API's `/nap`): it must be running and
    /// have nothing in flight. Napping already is fine.
    pub async fn nap(&self, name: &str) -> Result<(), LifecycleError> {
        let owner = self.route(name)?.own().await;
        nap::run(&self.ctx, &owner, nap::Why::Asked).await
    }

    /// Changes how long the container idles before it naps (`None`: the
    /// server's `--nap-after`; zero: never); the sweep follows at once.
    pub async fn set_nap_after(
        &self,
        name: &str,
        nap_after: Option<Duration>,
    ) -> Result<(), LifecycleError> {
        let owner = self.route(name)?.own().await;
        if owner.status().state == ContainerState::Deleted {
            return Err(LifecycleError::NotFound(name.to_owned()));
        }
        let mut spec = owner.record().spec;
        spec.nap_after = nap_after;
        let after = self.ctx.nap_after(&spec);
        let change = context::Change {
            spec: Some(spec),
            ..context::Change::default()
        };
        self.ctx.commit_record(&owner, change).await?;
        owner.set_nap_after(after);
        Ok(())
    }

    /// Archives the container now (the API's `/archive`), putting it to
    /// sleep first if it runs.
    pub async fn archive(&self, name: &str) -> Result<(), LifecycleError> {
        let route = self.route(name)?;
        self.ctx.archive_supported()?;
        let owner = route.own().await;
        if matches!(
            owner.status().state,
            ContainerState::Running | ContainerState::Napping
        ) {
            sleep::run(&self.ctx, &owner, sleep::Why::Asked).await?;
        }
        archive::run(&self.ctx, &owner).await
    }

    /// Makes the container's URL public or private; the proxy follows at
    /// once. Waits for a transition in flight (a wake) to end first.
    pub async fn set_access(&self, name: &str, access: Access) -> Result<(), LifecycleError> {
        let owner = self.route(name)?.own().await;
        access::set(&self.ctx, &owner, access).await
    }

    /// Counts as activity for `name`, as a request would.
    pub fn heartbeat(&self, name: &str) -> Result<(), LifecycleError> {
        self.route(name)?.touch();
        Ok(())
    }

    /// Bytes an archive or restore of `name` has processed so far.
    pub fn progress(&self, name: &str) -> Option<u64> {
        self.ctx.table.get(name).map(|route| route.progress())
    }

    /// Writes the activity the proxy recorded in memory to the store, for the
    /// containers that saw activity since their row was last written. Only
    /// awake containers can have new activity.
    pub async fn flush_activity(&self) -> Result<(), LifecycleError> {
        let times: Vec<(String, i64)> = self
            .ctx
            .table
            .awake()
            .iter()
            .filter(|route| route.take_unflushed())
            .map(|route| (route.name().to_owned(), route.last_active_ms()))
            .collect();
        self.ctx.store.record_activity(times).await?;
        Ok(())
    }

    /// How many containers are in each state, for metrics and stats.
    pub fn count_by_state(&self) -> Vec<(ContainerState, i64)> {
        let mut counts: HashMap<ContainerState, i64> =
            ContainerState::ALL.iter().map(|s| (*s, 0)).collect();
        for route in self.ctx.table.all() {
            *counts.entry(route.status().state).or_default() += 1;
        }
        counts.remove(&ContainerState::Deleted);
        let mut counts: Vec<_> = counts.into_iter().collect();
        counts.sort_by_key(|(state, _)| state.as_str());
        counts
    }

    pub fn capacity_usage(&self) -> CapacityUsage {
        capacity::usage(&self.ctx)
    }

    /// Snapshot files on the local disk and their total size (with an object store: spool
    /// files on their way).
    pub fn snapshot_disk_usage(&self) -> (u64, u64) {
        capacity::snapshot_disk_usage(self.ctx.config.snapshots.local_dir())
    }

    /// Runs the idle and archive sweeps until `stopped` completes.
    pub fn sweep_periodically(
        &self,
        stopped: impl Future<Output = ()> + Send + 'static,
    ) -> impl Future<Output = ()> + Send + 'static {
        sweep::run_periodically(self.ctx.clone(), stopped)
    }

    /// Follows Docker's events until `stopped`, reconnecting when the stream drops.
    pub fn follow_docker_events(
        &self,
        stopped: impl Future<Output = ()> + Send + 'static,
    ) -> impl Future<Output = ()> + Send + 'static {
        events::follow(self.ctx.clone(), stopped)
    }

    /// Waits (up to `grace`) for the transitions lifecycle runs in the
    /// background (wakes, sleeps, archives) to end. No new ones start after.
    pub async fn drain(&self, grace: Duration) -> bool {
        self.ctx.tasks.close();
        tokio::time::timeout(grace, self.ctx.tasks.wait())
            .await
            .is_ok()
    }

    fn route(&self, name: &str) -> Result<Arc<Route>, LifecycleError> {
        self.ctx
            .table
            .get(name)
            .ok_or_else(|| LifecycleError::NotFound(name.to_owned()))
    }
}

#[async_trait]
impl Waker for Lifecycle {
    async fn ready_upstream(&self, route: &Arc<Route>) -> Result<SocketAddr, WakeError> {
        wake::ready_upstream(&self.ctx, route).await
    }

    fn begin_wake(&self, route: &Arc<Route>) {
        wake::begin(&self.ctx, route);
    }
}
