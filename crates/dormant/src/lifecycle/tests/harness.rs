//! The one place lifecycle tests build a `Lifecycle`: an in-memory store, the
//! fake runtime, short timeouts, a temporary snapshot dir, and the background
//! tasks `serve` runs (idle sweep, Docker events). Tests talk to the
//! lifecycle only through its public API and the helpers here, so a change
//! of lifecycle internals is adapted here once.

use std::collections::HashMap;
use std::net::SocketAddr;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

use crate::domain::{ContainerRecord, ContainerState, LABEL_MANAGED, LABEL_NAME};
use crate::domain::{LABEL_NODE, LABEL_PORT};
use crate::lifecycle::table::InUse;
use crate::lifecycle::{
    check_archive_support, ArchiveSupport, Lifecycle, LifecycleConfig, LifecycleError, Limits,
    NewContainers,
};
use crate::metrics::Metrics;
use crate::proxy::waker::{WakeError, WakeErrorKind, Waker};
use crate::runtime::fake::{FakeRuntime, TempDir};
use crate::store::{RowChange, Store};

pub use super::store_fault::StoreFault;
pub use crate::domain::ContainerState::*;
pub use crate::runtime::fake::{Call, Crash, Fault, Readiness, Script, ALWAYS};

/// The node id every test lifecycle runs as.
pub const NODE: &str = "test-node";
/// The image every test container is made from, unless a test says.
pub const IMAGE: &str = "demo";
/// Each test container's memory limit.
pub const MEMORY: u64 = 64 << 20;
pub const WAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// What the lifecycle adds to `WAKE_TIMEOUT` before a waiter gives up.
const WAIT_MARGIN: Duration = Duration::from_secs(5);
const SWEEP_INTERVAL: Duration = Duration::from_millis(100);

/// Settings a test may change before the lifecycle is built.
#[derive(Debug, Clone)]
pub struct Options {
    pub max_running: Option<usize>,
    pub memory_budget: u64,
    /// The store in a file, so that `fail_store` can reach it from a second
    /// connection; in memory otherwise.
    pub store_faults: bool,
    /// `--min-free-disk`: past any real disk's size, every snapshot write
    /// and restore is refused for lack of space.
    pub min_free_disk: u64,
    /// `--nap-after`; zero (never) unless a test says, so that only the
    /// nap tests see naps.
    pub nap_after: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            max_running: None,
            memory_budget: u64::MAX,
            store_faults: false,
            min_free_disk: 0,
            nap_after: Duration::ZERO,
        }
    }
}

pub struct Harness {
    lifecycle: Arc<Lifecycle>,
    fake: Arc<FakeRuntime>,
    store: Store,
    options: Options,
    archive_support: ArchiveSupport,
    /// Stops the background tasks of the current lifecycle.
    stop: watch::Sender<bool>,
    dir: TempDir,
}

impl Harness {
    pub async fn new() -> Self {
        Self::with(Options::default()).await
    }

    pub async fn with(options: Options) -> Self {
        let dir = TempDir::new("lifecycle-test");
        std::fs::create_dir_all(dir.path().join("snapshots")).expect("create the snapshot dir");
        let store = if options.store_faults {
            Store::open(&dir.path().join("dormant.db")).expect("open the store")
        } else if std::env::var("DORMANT_TEST_STORE").as_deref() == Ok("postgres") {
            // The lifecycle suite again on PostgreSQL (see .ci/run).
            crate::store::test_backend::TestDb::postgres().open()
        } else {
            Store::open_in_memory().expect("open the store")
        };
        let fake = Arc::new(FakeRuntime::new());
        fake.add_image(IMAGE, &[8080]);
        let archive_support = check_archive_support(fake.as_ref()).await;
        let (lifecycle, stop) = boot(&store, &fake, &options, &archive_support, dir.path());
        lifecycle
            .reconcile()
            .await
            .expect("an empty store reconciles");
        Self {
            lifecycle,
            fake,
            store,
            options,
            archive_support,
            stop,
            dir,
        }
    }

    pub fn lifecycle(&self) -> &Arc<Lifecycle> {
        &self.lifecycle
    }

    pub fn fake(&self) -> &FakeRuntime {
        &self.fake
    }

    /// The data dir: the store's file (with `store_faults`) and snapshots.
    pub(super) fn data_dir(&self) -> &std::path::Path {
        self.dir.path()
    }

    pub(super) fn options(&self) -> &Options {
        &self.options
    }

    /// Writes `state` into `name`'s row, as a crash would have left it.
    pub async fn store_state(&self, name: &str, state: ContainerState) {
        let change = RowChange {
            state: Some((state, None)),
            ..RowChange::default()
        };
        self.store.apply(name, change).await.expect("write the row");
    }

    /// Records `snapshot` in `name`'s row, as a crash would have left it.
    pub async fn store_snapshot(&self, name: &str, snapshot: crate::domain::SnapshotRecord) {
        let change = RowChange {
            snapshot: Some(Some(snapshot)),
            ..RowChange::default()
        };
        self.store.apply(name, change).await.expect("write the row");
    }

    /// A request for `names` as the API would make it: image `demo`, one
    /// volume at `/data`, an idle timeout no test reaches by accident.
    pub fn spec(&self, names: &[&str]) -> NewContainers {
        NewContainers {
            names: names.iter().map(|n| (*n).to_owned()).collect(),
            image: IMAGE.into(),
            port: None,
            env: Default::default(),
            cmd: None,
            memory_bytes: MEMORY,
            nano_cpus: None,
            idle_timeout: Duration::from_secs(3600),
            volumes: vec!["/data".into()],
            ready_path: None,
            wake: None,
            archive_after: None,
            nap_after: None,
            cap_add: Vec::new(),
            access: crate::domain::Access::Public,
            owner: "admin".into(),
        }
    }

    pub async fn create(&self, names: &[&str]) -> Result<Vec<ContainerRecord>, LifecycleError> {
        self.lifecycle.create(self.spec(names)).await
    }

    pub async fn create_with(
        &self,
        names: &[&str],
        change: impl FnOnce(&mut NewContainers),
    ) -> Result<Vec<ContainerRecord>, LifecycleError> {
        let mut spec = self.spec(names);
        change(&mut spec);
        self.lifecycle.create(spec).await
    }

    /// `name` created and running.
    pub async fn running(&self, name: &str) {
        self.create(&[name]).await.expect("create");
        assert_eq!(self.state(name), Running);
    }

    /// `name` created and put to sleep.
    pub async fn asleep(&self, name: &str) {
        self.running(name).await;
        self.lifecycle.sleep(name).await.expect("sleep");
        assert_eq!(self.state(name), Asleep);
    }

    /// `name` created with `files` written in its writable layer and its
    /// volume, then archived. `None` when this host cannot archive (the
    /// reason is printed): the test should return.
    pub async fn archived(&self, name: &str, files: &[(&str, &str)]) -> Option<()> {
        if !self.can_archive() {
            return None;
        }
        self.running(name).await;
        for (path, content) in files {
            self.write_file(name, path, content);
        }
        self.lifecycle.archive(name).await.expect("archive");
        assert_eq!(self.state(name), Archived);
        Some(())
    }

    /// Whether archive tests can run here; prints why not.
    pub fn can_archive(&self) -> bool {
        match &self.archive_support {
            ArchiveSupport::Supported => true,
            ArchiveSupport::Unsupported(why) => {
                println!("skipped: archiving is not supported here: {why}");
                false
            }
        }
    }

    /// Where the proxy would find `name` now (`Deleted` when it has no route).
    pub fn state(&self, name: &str) -> ContainerState {
        self.lifecycle
            .table()
            .get(name)
            .map_or(Deleted, |route| route.status().state)
    }

    /// Why the container is in its state, as the proxy would say.
    pub fn reason(&self, name: &str) -> Option<String> {
        let route = self.lifecycle.table().get(name)?;
        route.status().reason.as_deref().map(str::to_owned)
    }

    /// The container's durable record, if it has one.
    pub async fn record(&self, name: &str) -> Option<ContainerRecord> {
        match self.lifecycle.get(name).await {
            Ok(record) => Some(record),
            Err(LifecycleError::NotFound(_)) => None,
            Err(e) => panic!("get {name}: {e}"),
        }
    }

    /// Waits (in virtual time) until the proxy sees `name` in `state`.
    pub async fn wait_state(&self, name: &str, state: ContainerState) {
        let deadline = Instant::now() + Duration::from_secs(120);
        while self.state(name) != state {
            assert!(
                Instant::now() < deadline,
                "`{name}` is {} ({:?}), not {state}, after 120 s",
                self.state(name),
                self.reason(name)
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Waits (in virtual time) until `done` holds: for what a transition
    /// finishes after it has answered its waiters.
    pub async fn eventually(&self, what: &str, mut done: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(120);
        while !done() {
            assert!(Instant::now() < deadline, "not within 120 s: {what}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Asserts that `name` rests in a state a request can act on, and that
    /// the store says the same: nothing left `starting`, `stopping`,
    /// `archiving`, `restoring` or `creating`.
    pub async fn assert_settled(&self, name: &str) -> ContainerState {
        let state = self.state(name);
        assert!(
            matches!(
                state,
                Running | Napping | Asleep | Archived | Failed | Deleted
            ),
            "`{name}` was left {state}"
        );
        let stored = self.record(name).await.map(|r| r.state);
        let expected = (state != Deleted).then_some(state);
        assert_eq!(
            stored, expected,
            "the store disagrees with the route of `{name}`"
        );
        state
    }

    /// What the proxy does for one request: activity, in use while it
    /// waits, a ready upstream. Panics if it waits longer than a wake may.
    pub async fn request(&self, name: &str) -> Result<SocketAddr, WakeError> {
        let Some(route) = self.lifecycle.table().get(name) else {
            return Err(WakeError {
                kind: WakeErrorKind::Deleted,
                reason: format!("no route for `{name}`: the proxy answers 404"),
                retry_after: None,
            });
        };
        route.touch();
        let _in_use = route.in_use();
        let limit = WAKE_TIMEOUT + WAIT_MARGIN + Duration::from_secs(1);
        match tokio::time::timeout(limit, self.lifecycle.ready_upstream(&route)).await {
            Ok(outcome) => outcome,
            Err(_) => panic!("a request for `{name}` hung for {limit:?}"),
        }
    }

    /// `request` in a task of its own, as the proxy serves each request.
    pub fn spawn_request(
        self: &Arc<Self>,
        name: &str,
    ) -> tokio::task::JoinHandle<Result<SocketAddr, WakeError>> {
        let harness = self.clone();
        let name = name.to_owned();
        tokio::spawn(async move { harness.request(&name).await })
    }

    /// A request that is served and answered: the upstream the container
    /// answers at, or a panic naming what went wrong.
    pub async fn served(&self, name: &str) -> SocketAddr {
        let upstream = self
            .request(name)
            .await
            .unwrap_or_else(|e| panic!("request for `{name}` refused: {e:?}"));
        assert_eq!(
            self.fake.container(name).and_then(|c| c.upstream),
            Some(upstream),
            "served at an address where `{name}` does not answer"
        );
        upstream
    }

    /// An open connection (a WebSocket, a long download) to `name`.
    pub fn open_connection(&self, name: &str) -> InUse {
        let route = self.lifecycle.table().get(name).expect("a route");
        route.touch();
        route.in_use()
    }

    /// Lets `by` of virtual time pass, running everything due meanwhile.
    pub async fn advance(&self, by: Duration) {
        tokio::time::sleep(by).await;
    }

    /// Lets a little real time pass. Lifecycle stamps activity with the
    /// wall clock (`domain::now_millis`), which the paused clock does not
    /// move: tests that need one container to be "less recently active"
    /// than another call this between their requests.
    pub fn tick_wall_clock(&self) {
        std::thread::sleep(Duration::from_millis(3));
    }

    /// Changes a setting for the next `restart`.
    pub fn set_options(&mut self, change: impl FnOnce(&mut Options)) {
        change(&mut self.options);
    }

    /// dormant stops (its background tasks end) and starts again on the
    /// same store, Docker and data dir, then reconciles.
    pub async fn restart(&mut self) -> Result<(), LifecycleError> {
        let _ = self.stop.send(true);
        let (lifecycle, stop) = boot(
            &self.store,
            &self.fake,
            &self.options,
            &self.archive_support,
            self.dir.path(),
        );
        self.lifecycle = lifecycle;
        self.stop = stop;
        self.lifecycle.reconcile().await
    }

    /// Labels dormant puts on `name`'s Docker objects.
    pub fn labels(name: &str) -> HashMap<String, String> {
        HashMap::from([
            (LABEL_MANAGED.to_owned(), "true".to_owned()),
            (LABEL_NAME.to_owned(), name.to_owned()),
            (LABEL_NODE.to_owned(), NODE.to_owned()),
            (LABEL_PORT.to_owned(), "8080".to_owned()),
        ])
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

/// A lifecycle on `store` and `fake`, with the background tasks `serve`
/// runs: the idle (and archive) sweep, and Docker's events.
fn boot(
    store: &Store,
    fake: &Arc<FakeRuntime>,
    options: &Options,
    archive_support: &ArchiveSupport,
    dir: &std::path::Path,
) -> (Arc<Lifecycle>, watch::Sender<bool>) {
    let config = LifecycleConfig {
        node: NODE.into(),
        pids_limit: 100,
        wake_timeout: WAKE_TIMEOUT,
        stop_grace: Duration::from_secs(1),
        default_wake: crate::domain::WakeStrategy::Hold,
        create_concurrency: 4,
        sweep_interval: SWEEP_INTERVAL,
        default_archive_after: Duration::from_secs(24 * 3600),
        default_nap_after: options.nap_after,
        snapshots: Arc::new(crate::snapshot_store::LocalSnapshots::new(
            dir.join("snapshots"),
        )),
        min_free_disk: options.min_free_disk,
        limits: Limits {
            max_running: options.max_running,
            memory_budget: options.memory_budget,
        },
        event_buffer: 1000,
    };
    let lifecycle = Arc::new(Lifecycle::new(
        store.clone(),
        fake.clone(),
        config,
        archive_support.clone(),
        Arc::new(Metrics::new()),
    ));
    let (stop, stopped) = watch::channel(false);
    let until_stopped = move || {
        let mut stopped = stopped.clone();
        async move {
            let _ = stopped.wait_for(|stop| *stop).await;
        }
    };
    tokio::spawn(lifecycle.sweep_periodically(until_stopped()));
    tokio::spawn(lifecycle.follow_docker_events(until_stopped()));
    (lifecycle, stop)
}
