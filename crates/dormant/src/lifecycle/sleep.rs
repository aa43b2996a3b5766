//! Sleep: a running (or napping) container is stopped (SIGTERM, then
//! SIGKILL after `--stop-grace`) and costs only disk until the next request
//! wakes it.

use super::context::{docker_ref, Change, Context};
use super::table::{Owner, Route, RouteStatus};
use super::LifecycleError;
use std::time::Duration;

use crate::domain::{now_millis, ContainerState};
use crate::runtime::RuntimeError;

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

impl Why {
    /// Recorded as the reason of `asleep`, and told to the event stream.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Idle => "idle",
            Self::Asked => "asked",
            Self::Evicted => "evicted",
        }
    }
}

/// Puts the owned container to sleep; a no-op unless it runs or naps.
pub(super) async fn run(ctx: &Context, owner: &Owner, why: Why) -> Result<(), LifecycleError> {
    let name = owner.name();
    let status = owner.status();
    let (upstream, napping) = match (status.state, status.upstream) {
        (ContainerState::Running, Some(upstream)) => (upstream, false),
        (ContainerState::Napping, Some(upstream)) => (upstream, true),
        // Asleep already, or failed (its container was stopped then).
        _ => return Ok(()),
    };
    // Where it goes back to when it is not put to sleep after all.
    let awake = if napping {
        RouteStatus::napping(upstream)
    } else {
        RouteStatus::running(upstream)
    };
    // Publish `stopping` first, then look at activity again: a request
    // that touched the route before this point is seen here, and one that
    // touches it after sees `stopping` and waits for the wake.
    let stopping = RouteStatus::not_serving(ContainerState::Stopping, None);
    ctx.commit(owner, stopping, Change::default()).await?;
    if why == Why::Idle && !is_idle(owner, now_millis()) {
        ctx.commit_or_publish(owner, awake).await;
        return Ok(());
    }
    // A napping container has nothing in flight that could finish: those
    // waiting for it wait for its unpause, which this sleep now replaces.
    if why == Why::Evicted && !napping {
        // New requests wait for the next wake now; let those already in
        // flight finish (a container is only evicted in use when every
        // running one is), rather than cut them off mid-answer.
        let drained = drain(owner, EVICTION_DRAIN.min(ctx.config.stop_grace.max(POLL))).await;
        if !drained {
            tracing::info!(container = %name, in_use = owner.in_use_count(), "evicting with requests or connections still open");
        }
    }
    let grace = ctx.config.stop_grace.as_secs() as i64;
    let docker = docker_ref(&owner.record());
    let mut stopped = ctx.runtime.stop(&docker, grace).await;
    let mut thawed = false;
    if napping && matches!(stopped, Err(RuntimeError::Conflict { .. })) {
        // Docker sends a paused container its SIGTERM and thaws it to act
        // on it; a daemon that refuses instead gets it unpaused first, so
        // the app still shuts down cleanly.
        thawed = ctx.runtime.unpause(&docker).await.is_ok();
        if thawed {
            stopped = ctx.runtime.stop(&docker, grace).await;
        }
    }
    if let Err(e) = stopped {
        // Still there as far as we know: keep serving it.
        let back = if thawed {
            RouteStatus::running(upstream)
        } else {
            awake
        };
        ctx.commit_or_publish(owner, back).await;
        return Err(LifecycleError::runtime(name, e));
    }
    let asleep = RouteStatus::not_serving(ContainerState::Asleep, Some(why.as_str()));
    ctx.commit_or_publish(owner, asleep).await;
    ctx.metrics.sleeps.inc();
    tracing::info!(container = %name, ?why, "asleep");
    Ok(())
}

/// Longest an evicted container's requests in flight are waited for.
const EVICTION_DRAIN: Duration = Duration::from_secs(5);
/// How often the drain looks.
const POLL: Duration = Duration::from_millis(20);

/// Waits until nothing is in flight or open on `route`, at most `limit`;
/// whether it got there.
async fn drain(route: &Route, limit: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + limit;
    while route.in_use_count() > 0 {
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(POLL).await;
    }
    true
}

/// Idle: nothing in flight or open, and no activity for its idle timeout.
pub(super) fn is_idle(route: &Route, now_ms: i64) -> bool {
    let idle_ms = now_ms.saturating_sub(route.last_active_ms());
    route.in_use_count() == 0 && idle_ms >= route.config().idle_timeout.as_millis() as i64
}
