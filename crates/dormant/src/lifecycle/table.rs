//! The container table: each container's record, route and state in one
//! place, owned by lifecycle.
//!
//! The proxy reads it on every request (a short read lock and an `Arc`
//! clone; activity is one atomic store) and never writes it. Lifecycle
//! changes a container only through `Context::commit` (see `context.rs`),
//! which writes the store and then calls [`ContainerTable::publish`]: the
//! status, the record and the indexes (awake containers, archive due times)
//! change together, so nothing is kept in step by hand. No await happens
//! under any of these locks.

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use tokio::sync::{watch, Notify};
use tokio::time::Instant;

use crate::domain::{
    now_millis, Access, ContainerRecord, ContainerState, UnixMillis, WakeStrategy,
};
use crate::proxy::waker::WakeError;

/// Where a container stands right now, as lifecycle last published it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteStatus {
    pub state: ContainerState,
    /// Where the container answers, when it is running.
    pub upstream: Option<SocketAddr>,
    /// Why the container is in this state, when that needs saying.
    pub reason: Option<Arc<str>>,
    /// For `failed`: no new wake before this instant (backoff).
    pub retry_at: Option<Instant>,
}

impl RouteStatus {
    pub fn running(upstream: SocketAddr) -> Self {
        Self {
            state: ContainerState::Running,
            upstream: Some(upstream),
            reason: None,
            retry_at: None,
        }
    }

    /// Paused at `upstream`: its next request unpauses it, and it answers
    /// there again.
    pub fn napping(upstream: SocketAddr) -> Self {
        Self {
            state: ContainerState::Napping,
            upstream: Some(upstream),
            reason: None,
            retry_at: None,
        }
    }

    pub fn not_serving(state: ContainerState, reason: Option<&str>) -> Self {
        Self {
            state,
            upstream: None,
            reason: reason.map(Arc::from),
            retry_at: None,
        }
    }

    /// `failed` with a reason; no wake is tried again before `retry_at`.
    pub fn failed(reason: &str, retry_at: Instant) -> Self {
        Self {
            state: ContainerState::Failed,
            upstream: None,
            reason: Some(Arc::from(reason)),
            retry_at: Some(retry_at),
        }
    }

    /// Whether the idle sweep must look at it.
    fn is_awake(&self) -> bool {
        matches!(
            self.state,
            ContainerState::Running
                | ContainerState::Napping
                | ContainerState::Starting
                | ContainerState::Stopping
        )
    }
}

/// A container's settings that don't change while it exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouteConfig {
    pub idle_timeout: Duration,
    pub wake: WakeStrategy,
    /// Time asleep before the container is archived.
    pub archive_after: Duration,
    /// Its memory limit: what it costs the memory budget while it runs.
    pub memory_bytes: u64,
}

/// What the waiters of one wake learn when it ends.
pub type WakeOutcome = Result<SocketAddr, WakeError>;

/// One container: its durable record, its published status and what the
/// proxy records about its use.
#[derive(Debug)]
pub struct Route {
    name: String,
    config: RouteConfig,
    /// When this container was made: tells it apart from an earlier one
    /// of the same name (a session or token of a deleted container must
    /// not open a new one).
    created_at: UnixMillis,
    /// Whether its URL is private (`Access::Private`): the proxy reads it
    /// on every request, so it is an atomic, not part of the record.
    private: AtomicBool,
    /// The record as last committed to the store. A std mutex: held only to
    /// clone or update it, never across an await.
    record: Mutex<ContainerRecord>,
    /// A watch channel so that, besides reading the current status, a task can
    /// wait for the next change.
    status: watch::Sender<RouteStatus>,
    /// The single owner of this container's transitions: held for the whole
    /// of a create, wake, sleep, archive or delete. See [`Route::own`].
    owner: Arc<tokio::sync::Mutex<()>>,
    /// The wake in flight (or the last one), so concurrent requests join it
    /// and hear its verdict instead of starting another.
    wake: Mutex<Option<watch::Receiver<Option<WakeOutcome>>>>,
    /// The flush of a restore's files in flight (or the last one): true once
    /// it ended. An archive waits for it (see `flush.rs`).
    flush: Mutex<Option<watch::Receiver<bool>>>,
    /// Unix milliseconds of the last request, connection or heartbeat.
    last_active_ms: AtomicI64,
    /// The activity time last handed to the store, so a flush writes only
    /// the routes that saw activity since.
    flushed_ms: AtomicI64,
    /// Requests in flight plus open upgraded connections and streaming
    /// responses: while above zero the container is in use, never idle.
    in_use: AtomicUsize,
    /// Milliseconds idle before it naps (`nap_after`); 0 never. An atomic:
    /// it may change while the container exists.
    nap_after_ms: AtomicU64,
    /// Consecutive failed wakes, for the backoff before the next.
    wake_failures: AtomicU32,
    /// Bytes an archive or restore in progress has processed.
    progress_bytes: AtomicU64,
    /// Woken when Docker reports that the container died, so a wake in
    /// progress fails at once instead of at its timeout.
    died: Notify,
}

impl Route {
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn config(&self) -> RouteConfig {
        self.config
    }

    /// Time idle before it is paused; zero: never.
    pub fn nap_after(&self) -> Duration {
        Duration::from_millis(self.nap_after_ms.load(Ordering::Relaxed))
    }

    pub(super) fn set_nap_after(&self, after: Duration) {
        let ms = u64::try_from(after.as_millis()).unwrap_or(u64::MAX);
        self.nap_after_ms.store(ms, Ordering::Relaxed);
    }

    /// When this container (not an earlier one of its name) was made.
    pub fn created_at(&self) -> UnixMillis {
        self.created_at
    }

    /// Who may reach its URL: one atomic load.
    #[inline]
    pub fn access(&self) -> Access {
        if self.private.load(Ordering::Acquire) {
            Access::Private
        } else {
            Access::Public
        }
    }

    /// Whether tenant `owner` owns it, without cloning the record.
    pub fn owned_by(&self, owner: &str) -> bool {
        self.record.lock().unwrap_or_else(|p| p.into_inner()).owner == owner
    }

    pub fn status(&self) -> RouteStatus {
        self.status.borrow().clone()
    }

    pub fn subscribe(&self) -> watch::Receiver<RouteStatus> {
        self.status.subscribe()
    }

    /// The tenant that owns it (`admin` for the admin's).
    pub fn owner(&self) -> String {
        self.record
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .owner
            .clone()
    }

    /// The record as last committed, with the freshest activity time.
    pub fn record(&self) -> ContainerRecord {
        let mut record = self
            .record
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        record.last_active_at = record.last_active_at.max(self.last_active_ms());
        record
    }

    /// Takes ownership of this container's transitions, waiting for the
    /// transition in flight to end.
    pub(super) async fn own(self: &Arc<Self>) -> Owner {
        Owner {
            _guard: self.owner.clone().lock_owned().await,
            route: self.clone(),
        }
    }

    /// Takes ownership only if nobody holds it now.
    pub(super) fn try_own(self: &Arc<Self>) -> Option<Owner> {
        let guard = self.owner.clone().try_lock_owned().ok()?;
        Some(Owner {
            _guard: guard,
            route: self.clone(),
        })
    }

    /// Records activity now: one atomic store. SeqCst pairs with the sleep
    /// path, which publishes `stopping` and then re-reads activity: either it
    /// sees this touch, or the toucher sees `stopping` and joins the wake.
    pub fn touch(&self) {
        self.last_active_ms.store(now_millis(), Ordering::SeqCst);
    }

    /// Marks the route in use until the guard is dropped (a request in
    /// flight, an open tunnel, a streaming response).
    pub fn in_use(self: &Arc<Self>) -> InUse {
        self.in_use.fetch_add(1, Ordering::SeqCst);
        InUse {
            route: self.clone(),
            activity: true,
        }
    }

    /// Like [`Route::in_use`], but its end is no activity: for requests that
    /// must not keep the container awake (an uptime monitor's).
    pub fn in_use_quietly(self: &Arc<Self>) -> InUse {
        self.in_use.fetch_add(1, Ordering::SeqCst);
        InUse {
            route: self.clone(),
            activity: false,
        }
    }

    pub fn in_use_count(&self) -> usize {
        self.in_use.load(Ordering::SeqCst)
    }

    /// Registers a new wake unless one is in flight. Returns the receiver
    /// to wait on, and the sender when the caller must run the wake.
    pub(super) fn join_or_start_wake(
        &self,
    ) -> (
        watch::Receiver<Option<WakeOutcome>>,
        Option<watch::Sender<Option<WakeOutcome>>>,
    ) {
        let mut slot = self.wake.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(rx) = slot.as_ref().filter(|rx| rx.borrow().is_none()) {
            return (rx.clone(), None);
        }
        let (tx, rx) = watch::channel(None);
        *slot = Some(rx.clone());
        (rx, Some(tx))
    }

    /// Whether a wake is under way (registered, no verdict yet): a request
    /// now joins it rather than starting one.
    pub fn wake_in_flight(&self) -> bool {
        let slot = self.wake.lock().unwrap_or_else(|p| p.into_inner());
        slot.as_ref().is_some_and(|rx| rx.borrow().is_none())
    }

    /// Counts a failed wake; returns how many in a row.
    pub(super) fn note_wake_failure(&self) -> u32 {
        self.wake_failures.fetch_add(1, Ordering::Relaxed) + 1
    }

    pub(super) fn reset_wake_failures(&self) {
        self.wake_failures.store(0, Ordering::Relaxed);
    }

    /// Records a restore's flush as in flight; the sender tells its end.
    pub(super) fn start_flush(&self) -> watch::Sender<bool> {
        let (ended, rx) = watch::channel(false);
        *self.flush.lock().unwrap_or_else(|p| p.into_inner()) = Some(rx);
        ended
    }

    /// The restore's flush still in flight, if any.
    pub(super) fn flush_in_flight(&self) -> Option<watch::Receiver<bool>> {
        let slot = self.flush.lock().unwrap_or_else(|p| p.into_inner());
        slot.as_ref().filter(|rx| !*rx.borrow()).cloned()
    }

    pub(super) fn set_progress(&self, bytes: u64) {
        self.progress_bytes.store(bytes, Ordering::Relaxed);
    }

    /// Bytes processed by the archive or restore in progress.
    pub fn progress(&self) -> u64 {
        self.progress_bytes.load(Ordering::Relaxed)
    }

    pub(super) fn notify_died(&self) {
        self.died.notify_waiters();
    }

    /// Completes when Docker next reports this container died.
    pub(super) fn died(&self) -> tokio::sync::futures::Notified<'_> {
        self.died.notified()
    }

    pub fn last_active_ms(&self) -> UnixMillis {
        self.last_active_ms.load(Ordering::SeqCst)
    }

    /// True once per change of the activity time: whether a flush should
    /// write this route.
    pub(super) fn take_unflushed(&self) -> bool {
        let last = self.last_active_ms();
        self.flushed_ms.swap(last, Ordering::Relaxed) != last
    }

    fn update_record(&self, update: impl FnOnce(&mut ContainerRecord)) {
        let mut record = self.record.lock().unwrap_or_else(|p| p.into_inner());
        update(&mut record);
    }
}

/// Proof that the holder owns a container's transitions: every transition
/// takes one, so two transitions of one container can never interleave.
pub(super) struct Owner {
    route: Arc<Route>,
    /// Held, never read: ownership ends when the `Owner` is dropped.
    _guard: tokio::sync::OwnedMutexGuard<()>,
}

impl std::ops::Deref for Owner {
    type Target = Arc<Route>;
    fn deref(&self) -> &Arc<Route> {
        &self.route
    }
}

/// Keeps its route in use, and (unless quiet) counts as activity, until
/// dropped.
#[derive(Debug)]
pub struct InUse {
    route: Arc<Route>,
    activity: bool,
}

impl Drop for InUse {
    fn drop(&mut self) {
        // The end of a long response or connection is activity too: the idle
        // clock starts when the last use ends.
        if self.activity {
            self.route.touch();
        }
        self.route.in_use.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Every container, by name, with the indexes lifecycle's sweeps use.
#[derive(Debug, Default)]
pub struct ContainerTable {
    /// A std lock: held only to clone an `Arc` out or to insert/remove.
    by_name: RwLock<HashMap<String, Arc<Route>>>,
    /// Containers that run or nap (or are starting or stopping): all the idle sweep
    /// looks at, so its cost grows with what runs, not with what exists.
    awake: Mutex<HashMap<String, Arc<Route>>>,
    /// Asleep containers by when they are due for archiving.
    archive_due: Mutex<ArchiveQueue>,
    /// Told of every publish and removal, for whoever mirrors the table
    /// elsewhere (the nginx map): one waiter, and changes made while it is
    /// busy fold into one wake-up.
    changed: Notify,
}

impl ContainerTable {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn get(&self, name: &str) -> Option<Arc<Route>> {
        self.read().get(name).cloned()
    }

    /// Adds a container from its record, unless the name is taken, and
    /// hands back its ownership: nobody else can act on it before the
    /// caller lets go. Its status is published by the caller (see
    /// `Context::publish`).
    pub(super) fn insert(
        &self,
        record: ContainerRecord,
        config: RouteConfig,
        status: RouteStatus,
    ) -> Option<Owner> {
        let last_active = record.last_active_at;
        let route = Arc::new(Route {
            name: record.name.clone(),
            config,
            created_at: record.created_at,
            private: AtomicBool::new(record.spec.access == Access::Private),
            record: Mutex::new(record),
            status: watch::Sender::new(status),
            owner: Arc::new(tokio::sync::Mutex::new(())),
            wake: Mutex::new(None),
            flush: Mutex::new(None),
            last_active_ms: AtomicI64::new(last_active),
            flushed_ms: AtomicI64::new(last_active),
            in_use: AtomicUsize::new(0),
            nap_after_ms: AtomicU64::new(0),
            wake_failures: AtomicU32::new(0),
            progress_bytes: AtomicU64::new(0),
            died: Notify::new(),
        });
        let owner = route.try_own().expect("a new route has no owner yet");
        let mut by_name = self.write();
        if by_name.contains_key(route.name()) {
            return None;
        }
        by_name.insert(route.name.clone(), route);
        Some(owner)
    }

    /// Takes the container out of the table and its indexes.
    pub(super) fn remove(&self, name: &str) -> Option<Arc<Route>> {
        let route = self.write().remove(name)?;
        self.lock_awake().remove(name);
        self.lock_archive_due().cancel(name);
        self.changed.notify_one();
        Some(route)
    }

    /// Completes after the next publish or removal (at once if one came
    /// since the last call). For a single follower of the table.
    pub async fn changed(&self) {
        self.changed.notified().await;
    }

    /// Name and upstream of each running public container: what a gateway
    /// beside dormant may serve without it. Private containers always go
    /// through dormant (it checks their credentials), napping ones too (a
    /// paused app needs its unpause). Costs what runs, not what exists.
    pub fn running_public_upstreams(&self) -> Vec<(String, SocketAddr)> {
        let awake = self.lock_awake();
        let mut running: Vec<_> = awake
            .values()
            .filter(|route| route.access() == Access::Public)
            .filter_map(|route| {
                let status = route.status.borrow();
                match (status.state, status.upstream) {
                    (ContainerState::Running, Some(upstream)) => {
                        Some((route.name().to_owned(), upstream))
                    }
                    _ => None,
                }
            })
            .collect();
        running.sort_unstable();
        running
    }

    /// Makes `status` (and the record changes that go with it) what every
    /// reader sees, and keeps the indexes in step. `since` is when the new
    /// state began, for the archive due time.
    pub(super) fn publish(
        &self,
        route: &Arc<Route>,
        status: RouteStatus,
        since: UnixMillis,
        update: impl FnOnce(&mut ContainerRecord),
    ) {
        route.update_record(|record| {
            update(record);
            route
                .private
                .store(record.spec.access == Access::Private, Ordering::Release);
            if record.state != status.state {
                record.state_since = since;
            }
            record.state = status.state;
            record.reason = status.reason.as_deref().map(str::to_owned);
        });
        {
            let mut awake = self.lock_awake();
            if status.is_awake() {
                awake.insert(route.name().to_owned(), route.clone());
            } else {
                awake.remove(route.name());
            }
        }
        {
            let mut due = self.lock_archive_due();
            if status.state == ContainerState::Asleep {
                let after = route.config().archive_after.as_millis() as i64;
                due.schedule(route.name(), since.saturating_add(after));
            } else {
                due.cancel(route.name());
            }
        }
        route.status.send_replace(status);
        self.changed.notify_one();
    }

    pub fn all(&self) -> Vec<Arc<Route>> {
        self.read().values().cloned().collect()
    }

    /// Containers that run, nap, start or stop.
    pub(super) fn awake(&self) -> Vec<Arc<Route>> {
        self.lock_awake().values().cloned().collect()
    }

    /// Removes and returns the asleep containers due for archiving by `now`.
    pub(super) fn take_archive_due(&self, now: UnixMillis) -> Vec<Arc<Route>> {
        let names = self.lock_archive_due().take_due(now);
        names.iter().filter_map(|name| self.get(name)).collect()
    }

    pub fn len(&self) -> usize {
        self.read().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<String, Arc<Route>>> {
        self.by_name.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<String, Arc<Route>>> {
        self.by_name.write().unwrap_or_else(|p| p.into_inner())
    }

    fn lock_awake(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Route>>> {
        self.awake.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn lock_archive_due(&self) -> std::sync::MutexGuard<'_, ArchiveQueue> {
        self.archive_due.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A route in no table, for tests of what reads routes (the proxy).
#[cfg(test)]
pub fn route_for_test(name: &str, config: RouteConfig, status: RouteStatus) -> Arc<Route> {
    route_for_test_from(crate::domain::sample_record(name, 0), config, status)
}

/// A route in no table made from `record`.
#[cfg(test)]
pub fn route_for_test_from(
    record: ContainerRecord,
    config: RouteConfig,
    status: RouteStatus,
) -> Arc<Route> {
    let table = ContainerTable::new();
    let owner = table
        .insert(record, config, status)
        .expect("an empty table");
    (*owner).clone()
}

/// Adds containers to a table as a test says, for tests of what reads the
/// table (the proxy).
#[cfg(test)]
impl ContainerTable {
    pub fn insert_for_test(
        &self,
        name: &str,
        config: RouteConfig,
        status: RouteStatus,
    ) -> Arc<Route> {
        self.insert_record_for_test(crate::domain::sample_record(name, 0), config, status)
    }

    /// Publishes `status` as lifecycle would, for tests of what follows
    /// the table.
    pub fn publish_for_test(&self, route: &Arc<Route>, status: RouteStatus) {
        self.publish(route, status, now_millis(), |_| {});
    }

    /// Adds a route made from `record`, for tests of what reads the table.
    pub fn insert_record_for_test(
        &self,
        record: ContainerRecord,
        config: RouteConfig,
        status: RouteStatus,
    ) -> Arc<Route> {
        let owner = self
            .insert(record, config, status)
            .expect("a name not in the table");
        (*owner).clone()
    }
}

/// Asleep containers by the time they are due for archiving: the archive
/// sweep takes only what is due, so its cost does not grow with everything
/// that sleeps.
#[derive(Debug, Default)]
struct ArchiveQueue {
    due: BTreeSet<(UnixMillis, String)>,
    by_name: HashMap<String, UnixMillis>,
}

impl ArchiveQueue {
    fn schedule(&mut self, name: &str, at: UnixMillis) {
        self.cancel(name);
        self.due.insert((at, name.to_owned()));
        self.by_name.insert(name.to_owned(), at);
    }

    fn cancel(&mut self, name: &str) {
        if let Some(at) = self.by_name.remove(name) {
            self.due.remove(&(at, name.to_owned()));
        }
    }

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

#[cfg(test)]
mod tests {
    use super::*;

    fn record(name: &str, last_active: UnixMillis) -> ContainerRecord {
        crate::domain::sample_record(name, last_active)
    }

    const CONFIG: RouteConfig = RouteConfig {
        idle_timeout: Duration::from_secs(1),
        wake: WakeStrategy::Hold,
        archive_after: Duration::from_millis(100),
        memory_bytes: 1 << 20,
    };

    #[tokio::test]
    async fn a_name_enters_once_owned_and_activity_is_seen_through_the_table() {
        let table = ContainerTable::new();
        let creating = RouteStatus::not_serving(ContainerState::Creating, None);
        let owner = table
            .insert(record("a", 5), CONFIG, creating.clone())
            .unwrap();
        assert!(table.insert(record("a", 5), CONFIG, creating).is_none());
        let route = table.get("a").unwrap();
        assert!(route.try_own().is_none(), "the inserter owns it");
        drop(owner);
        assert!(route.try_own().is_some());

        assert_eq!(route.last_active_ms(), 5);
        assert!(!route.take_unflushed());
        route.touch();
        assert!(route.take_unflushed());
        assert!(!route.take_unflushed());
        assert!(route.record().last_active_at > 5);
        let guard = route.in_use();
        assert_eq!(route.in_use_count(), 1);
        drop(guard);
        assert_eq!(route.in_use_count(), 0);
    }

    #[tokio::test]
    async fn publishing_keeps_record_status_and_indexes_in_step() {
        let table = ContainerTable::new();
        let creating = RouteStatus::not_serving(ContainerState::Creating, None);
        let route = (*table.insert(record("a", 5), CONFIG, creating).unwrap()).clone();
        let mut rx = route.subscribe();
        let upstream = "127.0.0.1:9".parse().unwrap();
        table.publish(&route, RouteStatus::running(upstream), 10, |r| {
            r.docker_id = Some("d1".into())
        });
        assert!(rx.has_changed().unwrap());
        assert_eq!(rx.borrow_and_update().state, ContainerState::Running);
        let record = route.record();
        assert_eq!(
            (record.state, record.state_since),
            (ContainerState::Running, 10)
        );
        assert_eq!(record.docker_id.as_deref(), Some("d1"));
        assert_eq!(table.awake().len(), 1);

        let asleep = RouteStatus::not_serving(ContainerState::Asleep, Some("tired"));
        table.publish(&route, asleep, 20, |_| {});
        assert!(table.awake().is_empty());
        assert_eq!(route.record().reason.as_deref(), Some("tired"));
        assert!(table.take_archive_due(119).is_empty(), "due at 20 + 100");
        assert_eq!(table.take_archive_due(120).len(), 1);
        assert!(table.take_archive_due(1000).is_empty(), "taken once");

        table.publish(
            &route,
            RouteStatus::not_serving(ContainerState::Asleep, None),
            30,
            |_| {},
        );
        assert!(table.remove("a").is_some());
        assert!(table.take_archive_due(1000).is_empty(), "removal cancels");
        assert!(table.get("a").is_none());
    }

    #[test]
    fn the_archive_queue_yields_what_is_due_in_order_once() {
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
