//! Sleep: a running container idle for its `idle_timeout` is stopped
//! (SIGTERM, then SIGKILL after `--stop-grace`) and costs only disk until the
//! next request wakes it. The sweep looks only at awake containers.

use std::future::Future;
use std::sync::Arc;

use super::{Lifecycle, LifecycleError};
use crate::domain::{now_millis, ContainerState};
use crate::proxy::routes::{Route, RouteStatus};

/// Why a container is being put to sleep.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Why {
    /// The sweep found it idle: give up if it turns out to be in use.
    Idle,
    /// Someone asked: sleep even if in use.
    Asked,
    /// Room is needed for another container: sleep even if in use (the
    /// choice of whom already preferred those not in use).
    Evicted,
}

impl Lifecycle {
    /// Puts the container to sleep now (the API's `/sleep`), in use or not.
    pub async fn sleep(&self, name: &str) -> Result<(), LifecycleError> {
        let route = self
            .routes
            .get(name)
            .ok_or_else(|| LifecycleError::NotFound(name.to_owned()))?;
        let lock = self.lock(name);
        let _guard = lock.lock().await;
        self.sleep_locked(&route, Why::Asked).await
    }

    /// Runs the idle sweep every `sweep_interval` until `stopped` completes.
    pub async fn sweep_idle_periodically(self: Arc<Self>, stopped: impl Future<Output = ()>) {
        tokio::pin!(stopped);
        let mut tick = tokio::time::interval(self.config.sweep_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {
                    self.sweep_idle();
                    self.archive_due();
                }
                () = &mut stopped => return,
            }
        }
    }

    /// Starts a sleep for every running container idle past its timeout.
    fn sweep_idle(self: &Arc<Self>) {
        let now = now_millis();
        for route in self.awake_routes() {
            if route.status().state == ContainerState::Running && is_idle(&route, now) {
                let lifecycle = self.clone();
                tokio::spawn(async move {
                    let lock = lifecycle.lock(route.name());
                    let _guard = lock.lock().await;
                    if let Err(e) = lifecycle.sleep_locked(&route, Why::Idle).await {
                        tracing::error!(container = %route.name(), error = %e, "cannot put to sleep");
                    }
                });
            }
        }
    }

    /// The sleep itself. Caller holds the container's lock.
    pub(super) async fn sleep_locked(
        &self,
        route: &Arc<Route>,
        why: Why,
    ) -> Result<(), LifecycleError> {
        let name = route.name();
        let status = route.status();
        let upstream = match (status.state, status.upstream) {
            (ContainerState::Running, Some(upstream)) => upstream,
            // Asleep already, or failed (its container was stopped then).
            _ => return Ok(()),
        };
        // Publish `stopping` first, then look at activity again: a request
        // that touched the route before this point is seen here, and one that
        // touches it after sees `stopping` and waits for the wake.
        self.transition(
            route,
            RouteStatus::not_serving(ContainerState::Stopping, None),
        )
        .await?;
        if why == Why::Idle && !is_idle(route, now_millis()) {
            self.transition(route, RouteStatus::running(upstream))
                .await?;
            return Ok(());
        }
        let record = self
            .store
            .get(name)
            .await?
            .ok_or_else(|| LifecycleError::NotFound(name.to_owned()))?;
        let grace = self.config.stop_grace.as_secs() as i64;
        if let Err(e) = self.runtime.stop(&super::docker_ref(&record), grace).await {
            // Still running as far as we know: keep serving it.
            self.transition(route, RouteStatus::running(upstream))
                .await?;
            return Err(LifecycleError::runtime(name, e));
        }
        self.transition(
            route,
            RouteStatus::not_serving(ContainerState::Asleep, None),
        )
        .await?;
        self.metrics.sleeps.inc();
        tracing::info!(container = %name, ?why, "asleep");
        Ok(())
    }
}

/// Idle: nothing in flight or open, and no activity for its idle timeout.
fn is_idle(route: &Route, now_ms: i64) -> bool {
    let idle_ms = now_ms.saturating_sub(route.last_active_ms());
    route.in_use_count() == 0 && idle_ms >= route.config().idle_timeout.as_millis() as i64
}
