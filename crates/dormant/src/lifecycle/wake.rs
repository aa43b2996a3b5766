//! Waking: a request (or the API) for a container that is not running gets
//! it started and waits until the app answers. One wake per container at a
//! time: concurrent callers join the wake in flight and Docker sees one start.
//! A wake runs in a task of its own, so a client hanging up never cuts a
//! start short. A failed wake backs off before the next try, so a container
//! that crashes at start is not restarted in a tight loop.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::time::Instant;

use super::Lifecycle;
use crate::domain::ContainerState;
use crate::proxy::routes::{Route, RouteStatus};
use crate::proxy::waker::{WakeError, WakeErrorKind, Waker};

/// Waiters give a wake this much longer than `--wake-timeout`, so they see
/// its own verdict rather than a timeout of their own.
const WAIT_MARGIN: Duration = Duration::from_secs(5);
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(60);

impl Lifecycle {
    /// Wakes the container (the API's `/wake`) and returns once it answers.
    pub async fn wake(self: &Arc<Self>, name: &str) -> Result<(), super::LifecycleError> {
        let route = self
            .routes
            .get(name)
            .ok_or_else(|| super::LifecycleError::NotFound(name.to_owned()))?;
        route.touch();
        let _in_use = route.in_use();
        self.ready_upstream(&route)
            .await
            .map(drop)
            .map_err(|error| super::LifecycleError::Wake {
                name: name.to_owned(),
                error,
            })
    }

    /// Where the container answers, waking it first if needed.
    pub async fn ready_upstream(
        self: &Arc<Self>,
        route: &Arc<Route>,
    ) -> Result<SocketAddr, WakeError> {
        let deadline = Instant::now() + self.config.wake_timeout + WAIT_MARGIN;
        let mut status_rx = route.subscribe();
        // Whether this caller has seen a wake under way; a failure seen after
        // that is this wake's failure (502), not an earlier one's (503).
        let mut waited = false;
        loop {
            let status = status_rx.borrow_and_update().clone();
            match status.state {
                ContainerState::Running => {
                    if let Some(upstream) = status.upstream {
                        return Ok(upstream);
                    }
                }
                ContainerState::Failed => {
                    let now = Instant::now();
                    match status.retry_at {
                        Some(retry_at) if retry_at > now => {
                            return Err(WakeError {
                                kind: if waited {
                                    WakeErrorKind::Failed
                                } else {
                                    WakeErrorKind::BackingOff
                                },
                                reason: status.reason.as_deref().unwrap_or("it failed").to_owned(),
                                retry_after: Some(retry_at - now),
                            });
                        }
                        _ => self.begin_wake(route),
                    }
                }
                ContainerState::Asleep | ContainerState::Archived => self.begin_wake(route),
                ContainerState::Deleted => return Err(deleted()),
                ContainerState::Creating
                | ContainerState::Starting
                | ContainerState::Stopping
                | ContainerState::Archiving
                | ContainerState::Restoring => {}
            }
            waited = true;
            match tokio::time::timeout_at(deadline, status_rx.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => return Err(deleted()),
                Err(_) => {
                    return Err(WakeError {
                        kind: WakeErrorKind::TimedOut,
                        reason: format!(
                            "it did not become ready within {:?}",
                            self.config.wake_timeout
                        ),
                        retry_after: None,
                    })
                }
            }
        }
    }

    /// Starts a wake task unless one is running for this route.
    pub fn begin_wake(self: &Arc<Self>, route: &Arc<Route>) {
        if !route.claim_wake() {
            return;
        }
        let lifecycle = self.clone();
        let route = route.clone();
        self.background.spawn(async move {
            // Released however the task ends, panics included.
            let _claim = WakeClaim(&route);
            let lock = lifecycle.lock(route.name());
            let _guard = lock.lock().await;
            lifecycle.wake_locked(&route).await;
        });
    }

    /// The wake itself. Caller holds the container's lock.
    async fn wake_locked(&self, route: &Arc<Route>) {
        let name = route.name();
        let status = route.status();
        let needs_wake = match status.state {
            ContainerState::Asleep | ContainerState::Archived | ContainerState::Starting => true,
            ContainerState::Failed => status.retry_at.is_none_or(|at| at <= Instant::now()),
            _ => false,
        };
        if !needs_wake {
            return;
        }
        let record = match self.store.get(name).await {
            Ok(Some(record)) => record,
            Ok(None) => return,
            Err(e) => {
                self.fail_wake(route, format!("the store failed: {e}"))
                    .await;
                return;
            }
        };
        let started = Instant::now();
        // Archived: no Docker container, a snapshot. Make the container first.
        let record = if record.snapshot.is_some() && record.docker_id.is_none() {
            match self.restore_locked(route, record).await {
                Ok(record) => record,
                Err(e) => {
                    self.fail_wake(route, e.to_string()).await;
                    return;
                }
            }
        } else {
            record
        };
        if let Err(e) = self
            .transition(
                route,
                RouteStatus::not_serving(ContainerState::Starting, None),
            )
            .await
        {
            self.fail_wake(route, e.to_string()).await;
            return;
        }
        match self.bring_up(&record, Some(route)).await {
            Ok(upstream) => {
                let took_ms = started.elapsed().as_millis() as u64;
                self.metrics.wakes.inc();
                self.metrics
                    .wake_duration
                    .observe(started.elapsed().as_secs_f64());
                route.reset_wake_failures();
                route.touch();
                if let Err(e) = self.store.record_wake(name, took_ms).await {
                    tracing::warn!(container = %name, error = %e, "cannot record the wake");
                }
                if let Err(e) = self.transition(route, RouteStatus::running(upstream)).await {
                    tracing::error!(container = %name, error = %e, "cannot record state running");
                    // The container does answer: serve it even so.
                    self.publish(route, RouteStatus::running(upstream));
                }
                // The container holds the user's files again: the snapshot
                // has done its job.
                if let Some(snapshot) = &record.snapshot {
                    match self.store.set_snapshot(name, None).await {
                        Ok(()) => self.delete_snapshot_file(&snapshot.file),
                        Err(e) => {
                            tracing::warn!(container = %name, error = %e, "cannot forget the restored snapshot")
                        }
                    }
                }
                tracing::info!(container = %name, took_ms, %upstream, "woke");
            }
            Err(e) => {
                let reason = match e {
                    super::LifecycleError::NotReady { reason, .. } => reason,
                    other => other.to_string(),
                };
                // Leave nothing half-started: a container whose app never
                // answered is stopped until the next try.
                if let Err(e) = self.runtime.stop(&record.docker_name(), 0).await {
                    tracing::debug!(container = %name, error = %e, "stop after a failed wake");
                }
                self.fail_wake(route, reason).await;
            }
        }
    }

    /// Records a failed wake and when the next may be tried.
    async fn fail_wake(&self, route: &Arc<Route>, reason: String) {
        self.metrics.wake_failures.inc();
        let failures = route.note_wake_failure();
        let backoff = backoff_after(failures);
        tracing::error!(container = %route.name(), %reason, failures, retry_in = ?backoff, "wake failed");
        let status = RouteStatus::failed(&reason, Instant::now() + backoff);
        if let Err(e) = self.transition(route, status.clone()).await {
            tracing::error!(container = %route.name(), error = %e, "cannot record state failed");
            self.publish(route, status);
        }
    }
}

/// 1 s after the first failure, doubling up to a minute.
fn backoff_after(failures: u32) -> Duration {
    let doublings = failures.saturating_sub(1).min(16);
    (FIRST_BACKOFF * 2u32.pow(doublings)).min(MAX_BACKOFF)
}

fn deleted() -> WakeError {
    WakeError {
        kind: WakeErrorKind::Deleted,
        reason: "it was deleted".into(),
        retry_after: None,
    }
}

struct WakeClaim<'a>(&'a Arc<Route>);

impl Drop for WakeClaim<'_> {
    fn drop(&mut self) {
        self.0.release_wake();
    }
}

#[async_trait]
impl Waker for Arc<Lifecycle> {
    async fn ready_upstream(&self, route: &Arc<Route>) -> Result<SocketAddr, WakeError> {
        Lifecycle::ready_upstream(self, route).await
    }

    fn begin_wake(&self, route: &Arc<Route>) {
        Lifecycle::begin_wake(self, route)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_a_minute() {
        assert_eq!(backoff_after(1), Duration::from_secs(1));
        assert_eq!(backoff_after(2), Duration::from_secs(2));
        assert_eq!(backoff_after(4), Duration::from_secs(8));
        assert_eq!(backoff_after(7), Duration::from_secs(60));
        assert_eq!(backoff_after(1000), Duration::from_secs(60));
    }
}
