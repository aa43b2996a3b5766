//! The in-memory route table: hostname label -> route (state, upstream, activity).
//!
//! Shared by the proxy (reads, on every request) and lifecycle (writes, on
//! every transition). Reading a route is a short read lock and a clone of an
//! `Arc`; recording activity is one atomic store. No await happens under a lock.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::sync::{watch, Notify};
use tokio::time::Instant;

use crate::domain::{now_millis, ContainerState, UnixMillis, WakeStrategy};

/// Where a route stands right now, as lifecycle last published it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteStatus {
    pub state: ContainerState,
    /// Where the container answers, when it is running.
    pub upstream: Option<SocketAddr>,
    /// Why the container is not serving (`failed`), for the proxy's answer.
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
}

/// A route's settings that don't change while it exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouteConfig {
    pub idle_timeout: Duration,
    pub wake: WakeStrategy,
    /// Time asleep before the container is archived.
    pub archive_after: Duration,
    /// Its memory limit: what it costs the memory budget while it runs.
    pub memory_bytes: u64,
}

/// One container's route.
#[derive(Debug)]
pub struct Route {
    name: String,
    config: RouteConfig,
    /// A watch channel so that, besides reading the current status, a task can
    /// wait for the next change (a wake finishing, say).
    status: watch::Sender<RouteStatus>,
    /// Unix milliseconds of the last request, connection or heartbeat.
    last_active_ms: AtomicI64,
    /// The activity time last handed to the store, so a flush writes only
    /// the routes that saw activity since.
    flushed_ms: AtomicI64,
    /// Requests in flight plus open upgraded connections and streaming
    /// responses: while above zero the container is in use, never idle.
    in_use: AtomicUsize,
    /// Set while a wake task runs, so concurrent requests join it instead
    /// of starting another.
    waking: AtomicBool,
    /// Consecutive failed wakes, for the backoff before the next.
    wake_failures: AtomicU32,
    /// Bytes an archive or restore in progress has processed.
    progress_bytes: std::sync::atomic::AtomicU64,
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

    pub fn status(&self) -> RouteStatus {
        self.status.borrow().clone()
    }

    pub fn subscribe(&self) -> watch::Receiver<RouteStatus> {
        self.status.subscribe()
    }

    pub fn set_status(&self, status: RouteStatus) {
        self.status.send_replace(status);
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
        InUse(self.clone())
    }

    pub fn in_use_count(&self) -> usize {
        self.in_use.load(Ordering::SeqCst)
    }

    /// Claims the right to run a wake; false if one is already running.
    pub fn claim_wake(&self) -> bool {
        self.waking
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }

    pub fn release_wake(&self) {
        self.waking.store(false, Ordering::Release);
    }

    /// Counts a failed wake; returns how many in a row.
    pub fn note_wake_failure(&self) -> u32 {
        self.wake_failures.fetch_add(1, Ordering::Relaxed) + 1
    }

    pub fn reset_wake_failures(&self) {
        self.wake_failures.store(0, Ordering::Relaxed);
    }

    pub fn set_progress(&self, bytes: u64) {
        self.progress_bytes.store(bytes, Ordering::Relaxed);
    }

    /// Bytes processed by the archive or restore in progress.
    pub fn progress(&self) -> u64 {
        self.progress_bytes.load(Ordering::Relaxed)
    }

    pub fn notify_died(&self) {
        self.died.notify_waiters();
    }

    /// Completes when Docker next reports this container died.
    pub fn died(&self) -> tokio::sync::futures::Notified<'_> {
        self.died.notified()
    }

    pub fn last_active_ms(&self) -> UnixMillis {
        self.last_active_ms.load(Ordering::SeqCst)
    }

    /// True once per change of the activity time: whether a flush should
    /// write this route.
    pub fn take_unflushed(&self) -> bool {
        let last = self.last_active_ms();
        self.flushed_ms.swap(last, Ordering::Relaxed) != last
    }
}

/// Keeps its route in use, and counts as activity, until dropped.
#[derive(Debug)]
pub struct InUse(Arc<Route>);

impl Drop for InUse {
    fn drop(&mut self) {
        // The end of a long response or connection is activity too: the idle
        // clock starts when the last use ends.
        self.0.touch();
        self.0.in_use.fetch_sub(1, Ordering::SeqCst);
    }
}

/// All routes, by container name.
#[derive(Debug, Default)]
pub struct Routes {
    /// A std lock: held only to clone an `Arc` out or to insert/remove.
    by_name: RwLock<HashMap<String, Arc<Route>>>,
}

impl Routes {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn get(&self, name: &str) -> Option<Arc<Route>> {
        self.read().get(name).cloned()
    }

    /// Adds or replaces the route for `name`; activity starts at `last_active`.
    pub fn insert(
        &self,
        name: &str,
        config: RouteConfig,
        status: RouteStatus,
        last_active: UnixMillis,
    ) -> Arc<Route> {
        let route = Arc::new(Route {
            name: name.to_owned(),
            config,
            in_use: AtomicUsize::new(0),
            waking: AtomicBool::new(false),
            wake_failures: AtomicU32::new(0),
            progress_bytes: std::sync::atomic::AtomicU64::new(0),
            died: Notify::new(),
            status: watch::Sender::new(status),
            last_active_ms: AtomicI64::new(last_active),
            flushed_ms: AtomicI64::new(last_active),
        });
        self.write().insert(name.to_owned(), route.clone());
        route
    }

    pub fn remove(&self, name: &str) -> Option<Arc<Route>> {
        self.write().remove(name)
    }

    pub fn all(&self) -> Vec<Arc<Route>> {
        self.read().values().cloned().collect()
    }

    pub fn len(&self) -> usize {
        self.read().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<String, Arc<Route>>> {
        self.by_name
            .read()
            .unwrap_or_else(|poison| poison.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<String, Arc<Route>>> {
        self.by_name
            .write()
            .unwrap_or_else(|poison| poison.into_inner())
    }
}

/// Finds the container name in a Host header value: `alice.example.com:8080`
/// with base domain `example.com` gives `alice`. Case-insensitive; the port
/// and a trailing dot are ignored; only one label may precede the base domain.
pub fn name_from_host<'h>(host: &'h str, base_domain: &str) -> Option<std::borrow::Cow<'h, str>> {
    let host = strip_port(host);
    let host = host.strip_suffix('.').unwrap_or(host);
    let split = host.len().checked_sub(base_domain.len() + 1)?;
    if !host.is_char_boundary(split) {
        return None;
    }
    let (name, suffix) = host.split_at(split);
    if !suffix.starts_with('.') || !suffix[1..].eq_ignore_ascii_case(base_domain) {
        return None;
    }
    if name.is_empty() || name.contains('.') {
        return None;
    }
    Some(if name.bytes().any(|b| b.is_ascii_uppercase()) {
        std::borrow::Cow::Owned(name.to_ascii_lowercase())
    } else {
        std::borrow::Cow::Borrowed(name)
    })
}

fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        // An IPv6 literal never names a container; keep it whole so it fails.
        return host;
    }
    match host.rsplit_once(':') {
        Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => host,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_come_from_the_first_label_of_the_base_domain() {
        let name = |h| name_from_host(h, "localhost").map(|n| n.into_owned());
        assert_eq!(name("alice.localhost").as_deref(), Some("alice"));
        assert_eq!(name("alice.localhost:8080").as_deref(), Some("alice"));
        assert_eq!(name("ALICE.LocalHost.").as_deref(), Some("alice"));
        assert_eq!(name("localhost"), None);
        assert_eq!(name(".localhost"), None);
        assert_eq!(name("a.b.localhost"), None);
        assert_eq!(name("alicelocalhost"), None);
        assert_eq!(name("alice.otherhost"), None);
        assert_eq!(name("[::1]:8080"), None);
        let name = |h| name_from_host(h, "dev.example.com").map(|n| n.into_owned());
        assert_eq!(name("bob.dev.example.com").as_deref(), Some("bob"));
        assert_eq!(name("bob.example.com"), None);
    }

    #[test]
    fn activity_and_status_are_visible_through_the_table() {
        let routes = Routes::new();
        let config = RouteConfig {
            idle_timeout: Duration::from_secs(1),
            wake: WakeStrategy::Hold,
            archive_after: Duration::from_secs(60),
            memory_bytes: 1 << 20,
        };
        let status = RouteStatus::not_serving(ContainerState::Creating, None);
        routes.insert("a", config, status, 5);
        let route = routes.get("a").unwrap();
        assert_eq!(route.last_active_ms(), 5);
        assert!(!route.take_unflushed());
        route.touch();
        assert!(route.take_unflushed());
        assert!(!route.take_unflushed());
        assert!(routes.get("a").unwrap().last_active_ms() > 5);
        let mut rx = route.subscribe();
        route.set_status(RouteStatus::not_serving(
            ContainerState::Failed,
            Some("boom"),
        ));
        assert!(rx.has_changed().unwrap());
        assert_eq!(rx.borrow_and_update().state, ContainerState::Failed);
        let guard = route.in_use();
        assert_eq!(route.in_use_count(), 1);
        drop(guard);
        assert_eq!(route.in_use_count(), 0);
        assert!(route.claim_wake());
        assert!(!route.claim_wake());
        route.release_wake();
        assert!(route.claim_wake());
        assert!(routes.remove("a").is_some());
        assert!(routes.get("a").is_none());
    }
}
