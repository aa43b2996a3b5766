//! Nap: a running container idle for its `nap_after` is paused through
//! Docker (cgroup freezer: no CPU, memory and connections kept), and its
//! next request unpauses it: no start and no readiness probe, since the app
//! never stopped. A napping container still holds its room (memory,
//! `--max-running`); it sleeps (stops) after its `idle_timeout` as a running
//! one does, and is the first evicted when room is needed.

use std::net::SocketAddr;

use tokio::time::Instant;

use super::context::{docker_ref, Change, Context};
use super::table::{Owner, Route, RouteStatus};
use super::LifecycleError;
use crate::domain::{now_millis, ContainerState};
use crate::proxy::waker::{WakeError, WakeErrorKind};

/// Something beside dormant that sends requests straight to running
/// containers (nginx with `--gateway nginx`): a paused app would leave
/// them hanging, so a nap first waits until it no longer does.
#[async_trait::async_trait]
pub trait PauseGuard: Send + Sync + 'static {
    /// Waits (bounded) until nothing but dormant sends container `name`
    /// requests at `upstream` any more; false if that did not happen.
    async fn withdrawn(&self, name: &str, upstream: SocketAddr) -> bool;
}

/// Why a container is being paused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Why {
    /// The sweep found it idle for `nap_after`: give up if it is not.
    Idle,
    /// Someone asked (`POST /nap`): pause it now unless it is in use.
    Asked,
}

/// Pauses the owned container; a no-op if it naps already.
pub(super) async fn run(ctx: &Context, owner: &Owner, why: Why) -> Result<(), LifecycleError> {
    let name = owner.name();
    let status = owner.status();
    let upstream = match (status.state, status.upstream) {
        (ContainerState::Running, Some(upstream)) => upstream,
        (ContainerState::Napping, _) => return Ok(()),
        (state, _) => {
            return Err(LifecycleError::Conflict(format!(
                "container `{name}` is {state}; only a running container can nap"
            )))
        }
    };
    match why {
        // The sweep saw it due; a request may have come since.
        Why::Idle if !is_due(owner, now_millis()) => return Ok(()),
        Why::Asked if owner.in_use_count() > 0 => return Err(in_use(owner)),
        _ => {}
    }
    // Publish `napping` first, then look at use again, as a sleep does: a
    // request that marked the route in use before this point is seen here,
    // and one that marks it after sees `napping` and joins an unpause. A
    // paused app never answers, so nothing may be in flight when it pauses.
    ctx.commit(owner, RouteStatus::napping(upstream), Change::default())
        .await?;
    if let Some(guard) = ctx.pause_guard.get() {
        if !guard.withdrawn(name, upstream).await {
            ctx.commit_or_publish(owner, RouteStatus::running(upstream))
                .await;
            return Err(LifecycleError::Conflict(format!(
                "container `{name}` is still served by the gateway beside dormant (its map did not drop it in time); it naps later"
            )));
        }
    }
    let still_due = match why {
        Why::Idle => is_due(owner, now_millis()),
        Why::Asked => owner.in_use_count() == 0,
    };
    if !still_due {
        ctx.commit_or_publish(owner, RouteStatus::running(upstream))
            .await;
        return match why {
            Why::Idle => Ok(()),
            Why::Asked => Err(in_use(owner)),
        };
    }
    if let Err(e) = ctx.runtime.pause(&docker_ref(&owner.record())).await {
        // Not paused as far as we know: keep serving it.
        ctx.commit_or_publish(owner, RouteStatus::running(upstream))
            .await;
        return Err(LifecycleError::runtime(name, e));
    }
    ctx.metrics.naps.inc();
    tracing::info!(container = %name, ?why, "napping");
    Ok(())
}

/// Due for a nap: napping enabled, nothing in flight or open, and no
/// activity for its `nap_after`.
pub(super) fn is_due(route: &Route, now_ms: i64) -> bool {
    let after = route.nap_after();
    let idle_ms = now_ms.saturating_sub(route.last_active_ms());
    !after.is_zero() && route.in_use_count() == 0 && idle_ms >= after.as_millis() as i64
}

fn in_use(route: &Route) -> LifecycleError {
    LifecycleError::Conflict(format!(
        "container `{}` is in use ({} requests or connections open); a paused app would leave them hanging, so it naps once they end",
        route.name(),
        route.in_use_count()
    ))
}

/// What an unpause came to.
pub(super) enum Unpaused {
    /// It answers at its upstream again.
    Serving(SocketAddr),
    /// Docker no longer runs it (stopped or removed behind dormant's
    /// back): it is `asleep` now, and a normal wake must start it.
    NotRunning,
}

/// Thaws the owned napping container for a request: Docker's unpause, then
/// `running` with the time it took. When the unpause fails, what Docker
/// shows decides: running after all (unpaused by hand), not running (a
/// wake starts it), or still paused (the request gets the error and the
/// container stays `napping`, for the next request to try again).
///
/// `thawed` is called with the upstream as soon as the table says
/// `running`, before the store is written: the waiting requests go on
/// without waiting for an fsync (a restart trusts Docker's paused flag, not
/// the row).
pub(super) async fn unpause(
    ctx: &Context,
    owner: &Owner,
    upstream: SocketAddr,
    thawed: impl FnOnce(SocketAddr),
) -> Result<Unpaused, WakeError> {
    let name = owner.name();
    let started = Instant::now();
    let docker = docker_ref(&owner.record());
    let failure = match ctx.runtime.unpause(&docker).await {
        Ok(()) => {
            let took = started.elapsed();
            ctx.metrics.unpauses.inc();
            ctx.metrics.unpause_duration.observe(took.as_secs_f64());
            owner.touch();
            let change = Change {
                unpause_ms: Some(took.as_millis() as u64),
                ..Change::default()
            };
            let running = RouteStatus::running(upstream);
            let told = || thawed(upstream);
            if let Err(e) = ctx.publish_then_commit(owner, running, change, told).await {
                tracing::error!(container = %name, error = %e, "cannot record state running; serving it anyway");
            }
            tracing::debug!(container = %name, took_us = took.as_micros() as u64, "unpaused");
            return Ok(Unpaused::Serving(upstream));
        }
        Err(e) => e,
    };
    match ctx.runtime.inspect(&docker).await {
        Ok(Some(seen)) if seen.running && !seen.paused => {
            let upstream = seen.upstream.unwrap_or(upstream);
            tracing::warn!(container = %name, error = %failure, "unpause failed, but Docker shows it running; serving it");
            ctx.commit_or_publish(owner, RouteStatus::running(upstream))
                .await;
            Ok(Unpaused::Serving(upstream))
        }
        Ok(Some(seen)) if !seen.running => {
            let reason = "it stopped outside dormant while napping";
            tracing::warn!(container = %name, error = %failure, "{reason}; starting it");
            let asleep = RouteStatus::not_serving(ContainerState::Asleep, Some(reason));
            ctx.commit_or_publish(owner, asleep).await;
            Ok(Unpaused::NotRunning)
        }
        Ok(None) => {
            let reason = "its Docker container was removed outside dormant while napping";
            tracing::warn!(container = %name, "{reason}; recreating it");
            let asleep = RouteStatus::not_serving(ContainerState::Asleep, Some(reason));
            ctx.commit_or_publish(owner, asleep).await;
            Ok(Unpaused::NotRunning)
        }
        // Still paused, or Docker cannot say: it stays napping.
        _ => {
            tracing::error!(container = %name, error = %failure, "cannot unpause it; it stays napping");
            Err(WakeError {
                kind: WakeErrorKind::Failed,
                reason: format!("{failure}; it stays napping and the next request tries again"),
                retry_after: Some(std::time::Duration::from_secs(1)),
            })
        }
    }
}
