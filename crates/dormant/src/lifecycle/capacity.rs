//! Capacity: how many containers may run at once (`--max-running`) and how
//! much memory their limits may add up to (`--memory-budget`). Every start
//! (wake, restore, create) is admitted here first. When a start would go past
//! a limit, napping containers (paused: they hold memory but serve nobody)
//! are put to sleep first, least recently active first; then the least
//! recently active running ones — one with an open connection only if no
//! other will do. When no
//! room can be made, starts wait in a fair (first come, first served) queue
//! until room appears or their deadline passes.
//!
//! A tenant's quotas (`max_running`, `max_memory_bytes`) are kept here too,
//! at the same moment as the host's limits: a start over them puts the
//! tenant's own least recently active container to sleep (never another
//! tenant's); when none can be, it is refused at once with 429 and
//! `Retry-After` rather than queued.

use std::collections::{HashMap, VecDeque};
use std::path::Path;
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;
use tokio::time::Instant;

use super::context::Context;
use super::sleep;
use super::table::Route;
use crate::domain::ContainerState;
use crate::proxy::waker::{WakeError, WakeErrorKind};
use crate::tenant::Quotas;

/// The limits every start must fit within.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_running: Option<usize>,
    pub memory_budget: u64,
}

/// Who holds room now, and who waits for it.
#[derive(Debug)]
pub(super) struct Capacity {
    limits: Limits,
    state: Mutex<Held>,
    /// Woken whenever room is released or the queue moves.
    changed: Notify,
}

/// A container holding room: whose it is and its memory limit.
#[derive(Debug, Clone)]
struct Holder {
    owner: String,
    memory: u64,
}

#[derive(Debug, Default)]
struct Held {
    /// Each container holding room (running, starting or stopping).
    running: HashMap<String, Holder>,
    memory: u64,
    /// Tickets of waiting starts, first come first served.
    queue: VecDeque<u64>,
    next_ticket: u64,
}

impl Held {
    fn fits(&self, limits: &Limits, memory: u64) -> bool {
        let count_ok = limits
            .max_running
            .is_none_or(|max| self.running.len() < max);
        count_ok && self.memory.saturating_add(memory) <= limits.memory_budget
    }

    fn hold(&mut self, name: &str, owner: &str, memory: u64) {
        let holder = Holder {
            owner: owner.to_owned(),
            memory,
        };
        if let Some(old) = self.running.insert(name.to_owned(), holder) {
            self.memory -= old.memory;
        }
        self.memory += memory;
    }

    /// What `owner` holds: containers and the sum of their memory limits.
    fn held_by(&self, owner: &str) -> (u64, u64) {
        self.running
            .values()
            .filter(|h| h.owner == owner)
            .fold((0, 0), |(count, memory), h| {
                (count + 1, memory.saturating_add(h.memory))
            })
    }

    /// Why one more container of `owner` with `memory` would go past its
    /// quotas, or `None` if it fits.
    fn over_quota(&self, owner: &str, quotas: &Quotas, memory: u64) -> Option<String> {
        let (running, used) = self.held_by(owner);
        if let Some(max) = quotas.max_running.filter(|max| running + 1 > *max) {
            return Some(format!(
                "tenant `{owner}` has {running} containers running and its quota max_running is {max}"
            ));
        }
        if let Some(max) = quotas
            .max_memory_bytes
            .filter(|max| used.saturating_add(memory) > *max)
        {
            return Some(format!(
                "tenant `{owner}` runs containers with {used} bytes of memory limits; {memory} more would pass its quota max_memory_bytes of {max}"
            ));
        }
        None
    }
}

/// How long a start refused for a tenant's running quota is told to wait.
pub(super) const QUOTA_RETRY: std::time::Duration = std::time::Duration::from_secs(10);

impl Capacity {
    pub(super) fn new(limits: Limits) -> Self {
        Self {
            limits,
            state: Mutex::new(Held::default()),
            changed: Notify::new(),
        }
    }

    pub(super) fn limits(&self) -> Limits {
        self.limits
    }

    fn held(&self) -> std::sync::MutexGuard<'_, Held> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records that `name` runs, without checking limits: what Docker shows
    /// at start-up, or a start already admitted.
    pub(super) fn note_running(&self, name: &str, owner: &str, memory: u64) {
        self.held().hold(name, owner, memory);
        // A running container is someone a waiting start may evict.
        self.changed.notify_waiters();
    }

    /// Gives back `name`'s room (it stopped, failed or went away).
    pub(super) fn release(&self, name: &str) {
        let mut held = self.held();
        if let Some(holder) = held.running.remove(name) {
            held.memory -= holder.memory;
            drop(held);
            self.changed.notify_waiters();
        }
    }

    /// Running containers and the memory their limits add up to.
    pub(super) fn usage(&self) -> (usize, u64) {
        let held = self.held();
        (held.running.len(), held.memory)
    }

    pub(super) fn queue_len(&self) -> usize {
        self.held().queue.len()
    }
}

/// Waits until `name` may start, making room by putting the least recently
/// active containers to sleep if needed. Gives up at `deadline` with a 503
/// and `Retry-After`. Idempotent: a container that holds room already is
/// admitted at once. `owner`'s quotas are kept as well (see the top).
pub(super) async fn admit(
    ctx: &Context,
    name: &str,
    owner: &str,
    memory: u64,
    deadline: Instant,
) -> Result<(), WakeError> {
    let capacity = &ctx.capacity;
    if memory > capacity.limits.memory_budget {
        return Err(WakeError {
            kind: WakeErrorKind::Failed,
            reason: format!(
                "its memory limit ({} bytes) is larger than the whole memory budget ({} bytes)",
                memory, capacity.limits.memory_budget
            ),
            retry_after: None,
        });
    }
    let ticket = {
        let mut held = capacity.held();
        if held.running.contains_key(name) {
            return Ok(());
        }
        let ticket = held.next_ticket;
        held.next_ticket += 1;
        held.queue.push_back(ticket);
        ctx.metrics.wake_queue.set(held.queue.len() as i64);
        ticket
    };
    let outcome = wait_for_room(ctx, name, owner, memory, ticket, deadline).await;
    let mut held = capacity.held();
    held.queue.retain(|t| *t != ticket);
    ctx.metrics.wake_queue.set(held.queue.len() as i64);
    drop(held);
    capacity.changed.notify_waiters();
    outcome
}

async fn wait_for_room(
    ctx: &Context,
    name: &str,
    owner: &str,
    memory: u64,
    ticket: u64,
    deadline: Instant,
) -> Result<(), WakeError> {
    let capacity = &ctx.capacity;
    loop {
        // Read each time round: the admin may change them meanwhile.
        let quotas = ctx.quotas.get(owner);
        // Listen before looking, so a release in between is not missed.
        let changed = capacity.changed.notified();
        tokio::pin!(changed);
        changed.as_mut().enable();
        let (first_in_line, over_quota) = {
            let mut held = capacity.held();
            let first = held.queue.front() == Some(&ticket);
            let over_quota = quotas.and_then(|q| held.over_quota(owner, &q, memory));
            if over_quota.is_none() && first && held.fits(&capacity.limits, memory) {
                held.hold(name, owner, memory);
                return Ok(());
            }
            (first, over_quota)
        };
        if let Some(why) = over_quota {
            // Only the tenant's own containers may make room for it.
            match tenant_eviction_candidate(ctx, owner, name) {
                Some(victim) if evict(ctx, &victim).await => continue,
                _ => {
                    return Err(WakeError {
                        kind: WakeErrorKind::QuotaFull,
                        reason: format!(
                            "{why}, and none of its containers could be put to sleep to make room"
                        ),
                        retry_after: Some(QUOTA_RETRY),
                    })
                }
            }
        }
        if first_in_line {
            if let Some(victim) = eviction_candidate(ctx, name) {
                if evict(ctx, &victim).await {
                    continue;
                }
                // It could not be put to sleep: wait for a change rather
                // than try the same one again at once.
            }
        }
        // Past the deadline, give up even if something just changed: a
        // victim that keeps refusing to stop must not keep us here.
        let timed_out =
            Instant::now() >= deadline || tokio::time::timeout_at(deadline, changed).await.is_err();
        if timed_out {
            let (running, used) = capacity.usage();
            return Err(WakeError {
                kind: WakeErrorKind::NoRoom,
                reason: format!(
                    "no room to start it: {running} containers run using {used} bytes of memory limits, and none could be put to sleep in time"
                ),
                retry_after: Some(std::time::Duration::from_secs(5)),
            });
        }
    }
}

/// The container to put to sleep first: a napping one before any running
/// one, then those with nothing open, then the least recently active.
fn eviction_candidate(ctx: &Context, except: &str) -> Option<Arc<Route>> {
    ctx.table
        .awake()
        .into_iter()
        .filter(|route| route.name() != except && holds_room(route))
        .min_by_key(eviction_order)
}

/// Running or napping: what eviction can make room from.
fn holds_room(route: &Route) -> bool {
    matches!(
        route.status().state,
        ContainerState::Running | ContainerState::Napping
    )
}

/// Smallest first: napping, nothing open, least recently active.
fn eviction_order(route: &Arc<Route>) -> (bool, bool, i64) {
    let napping = route.status().state == ContainerState::Napping;
    (!napping, route.in_use_count() > 0, route.last_active_ms())
}

/// The tenant's own running container to put to sleep first, chosen as
/// for the host.
fn tenant_eviction_candidate(ctx: &Context, owner: &str, except: &str) -> Option<Arc<Route>> {
    ctx.table
        .awake()
        .into_iter()
        .filter(|route| route.name() != except && holds_room(route) && route.owner() == owner)
        .min_by_key(eviction_order)
}

/// Puts `route` to sleep to make room; false if it could not be.
async fn evict(ctx: &Context, route: &Arc<Route>) -> bool {
    let owner = route.own().await;
    if !holds_room(&owner) {
        // Someone else changed it meanwhile: look again.
        return true;
    }
    match sleep::run(ctx, &owner, sleep::Why::Evicted).await {
        Ok(()) => {
            ctx.metrics.evictions.inc();
            tracing::info!(container = %owner.name(), "put to sleep to make room");
            true
        }
        Err(e) => {
            tracing::warn!(container = %owner.name(), error = %e, "could not evict");
            false
        }
    }
}

/// What runs against the limits, for `/v1/stats`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CapacityUsage {
    pub running: usize,
    pub max_running: Option<usize>,
    pub memory_bytes: u64,
    pub memory_budget_bytes: u64,
    pub wake_queue: usize,
}

pub(super) fn usage(ctx: &Context) -> CapacityUsage {
    let (running, memory_bytes) = ctx.capacity.usage();
    let limits = ctx.capacity.limits();
    CapacityUsage {
        running,
        max_running: limits.max_running,
        memory_bytes,
        memory_budget_bytes: limits.memory_budget,
        wake_queue: ctx.capacity.queue_len(),
    }
}

/// Snapshot files in `dir` and their total size.
pub(super) fn snapshot_disk_usage(dir: &Path) -> (u64, u64) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return (0, 0);
    };
    entries
        .flatten()
        .filter_map(|e| e.metadata().ok())
        .filter(|m| m.is_file())
        .fold((0, 0), |(count, bytes), m| (count + 1, bytes + m.len()))
}

/// This process's resident memory, from /proc/self/status.
pub fn own_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// The host's memory, from /proc/meminfo.
pub fn host_memory_bytes() -> Option<u64> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = meminfo.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fits_checks_both_limits() {
        let limits = Limits {
            max_running: Some(2),
            memory_budget: 100,
        };
        let mut held = Held::default();
        assert!(held.fits(&limits, 60));
        held.hold("a", "admin", 60);
        assert!(!held.fits(&limits, 50), "memory");
        assert!(held.fits(&limits, 40));
        held.hold("b", "admin", 10);
        assert!(!held.fits(&limits, 1), "count");
        held.hold("b", "admin", 30); // re-holding replaces
        assert_eq!(held.memory, 90);
    }

    #[test]
    fn a_tenants_quota_counts_only_its_own_containers() {
        let quotas = Quotas {
            max_running: Some(2),
            max_memory_bytes: Some(100),
            ..Quotas::default()
        };
        let mut held = Held::default();
        held.hold("x", "other", 1000);
        held.hold("y", "admin", 1000);
        assert_eq!(held.over_quota("acme", &quotas, 100), None);
        held.hold("a", "acme", 40);
        assert_eq!(held.held_by("acme"), (1, 40));
        let memory = held.over_quota("acme", &quotas, 61).unwrap();
        assert!(memory.contains("max_memory_bytes of 100"), "{memory}");
        assert_eq!(held.over_quota("acme", &quotas, 60), None);
        held.hold("b", "acme", 10);
        let count = held.over_quota("acme", &quotas, 1).unwrap();
        assert!(
            count.contains("2 containers running") && count.contains("max_running is 2"),
            "{count}"
        );
        let count_only = Quotas {
            max_running: Some(2),
            ..Quotas::default()
        };
        assert_eq!(held.over_quota("other", &count_only, 1), None, "its 1 of 2");
    }

    #[test]
    fn host_memory_is_read() {
        assert!(host_memory_bytes().unwrap() > 0);
    }
}
