//! Docker's event stream: learn at once that a container died, instead of
//! finding out at a timeout or at the next request.
//!
//! A death during a wake fails that wake now. A death of a running container
//! that no transition expected (it crashed, or someone stopped it) makes it
//! `asleep`, so the next request starts it again. A container paused or
//! unpaused by hand becomes `napping` or `running`, as Docker shows it.
//!
//! The stream outlives the daemon's hiccups: it reconnects with backoff and
//! resumes just after the last event seen (Docker's `since`), so deaths while
//! it was down are replayed. A restarted daemon remembers no event from before
//! its restart (and stops its containers without telling), so after every
//! reconnect each container believed running is inspected again as well.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures_util::{stream, StreamExt};
use tokio::time::Instant;

use super::bring_up::exit_reason;
use super::context::Context;
use super::table::{Route, RouteStatus};
use crate::domain::{docker_name, ContainerState, LABEL_NODE};
use crate::runtime::{ContainerEvent, ContainerEventKind, EngineEvent};

/// First pause before reconnecting; doubles up to `MAX_RECONNECT_DELAY`,
/// which bounds how long after the daemon is back dormant notices.
const FIRST_RECONNECT_DELAY: Duration = Duration::from_millis(250);
const MAX_RECONNECT_DELAY: Duration = Duration::from_secs(2);
/// Containers inspected at once after a reconnect.
const RECHECK_CONCURRENCY: usize = 8;

/// Follows Docker's events until `stopped`, reconnecting when the stream drops.
pub(super) async fn follow(ctx: Arc<Context>, stopped: impl Future<Output = ()>) {
    tokio::pin!(stopped);
    // From before reconcile runs: a death while the first stream is still
    // connecting is replayed, not missed.
    let mut since = SystemTime::now();
    let mut delay = FIRST_RECONNECT_DELAY;
    // When the stream last went down, until it is back.
    let mut down_since: Option<Instant> = None;
    loop {
        let mut events = ctx.runtime.events(LABEL_NODE, &ctx.config.node, since);
        loop {
            tokio::select! {
                event = events.next() => match event {
                    Some(Ok(EngineEvent::Connected)) => {
                        delay = FIRST_RECONNECT_DELAY;
                        if let Some(down) = down_since.take() {
                            tracing::info!(down_for = ?down.elapsed(), "Docker's event stream is back; checking every running container");
                            recheck_running(&ctx).await;
                        }
                    }
                    Some(Ok(EngineEvent::Container(event))) => {
                        // Resume just after it: seen once is enough.
                        since = event.at + Duration::from_nanos(1);
                        on_event(&ctx, event).await;
                    }
                    Some(Err(e)) => {
                        if down_since.is_none() {
                            tracing::warn!(error = %e, "Docker's event stream failed; reconnecting");
                        } else {
                            tracing::debug!(error = %e, "Docker still does not answer");
                        }
                        break;
                    }
                    None => break,
                },
                () = &mut stopped => return,
            }
        }
        down_since.get_or_insert_with(Instant::now);
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            () = &mut stopped => return,
        }
        delay = (delay * 2).min(MAX_RECONNECT_DELAY);
    }
}

async fn on_event(ctx: &Context, event: ContainerEvent) {
    let exit_code = match event.kind {
        ContainerEventKind::Died { exit_code } => exit_code,
        ContainerEventKind::Paused | ContainerEventKind::Unpaused => {
            if let Some(route) = ctx.table.get(&event.name) {
                follow_pause(ctx, &route).await;
            }
            return;
        }
        ContainerEventKind::Started => return,
    };
    let Some(route) = ctx.table.get(&event.name) else {
        return;
    };
    // Only a running, napping or starting container's death is news: a
    // stop that dormant asked for ends in a death too.
    if !matches!(
        route.status().state,
        ContainerState::Running | ContainerState::Napping | ContainerState::Starting
    ) {
        return;
    }
    // A replayed death may be stale: the container has been started again
    // since. What Docker says now decides.
    if let Ok(Some(inspection)) = ctx.runtime.inspect(&docker_name(&event.name)).await {
        if inspection.running {
            return;
        }
    }
    // Whoever is starting it hears about it now.
    route.notify_died();
    let reason = match exit_code {
        Some(code) => format!("it stopped outside dormant (exit code {code})"),
        None => "it stopped outside dormant".to_owned(),
    };
    asleep_if_running(ctx, &route, reason).await;
}

/// A pause or unpause that dormant did not make (its own happen while it
/// owns the container, and leave the state Docker shows): `napping` for a
/// running container Docker shows paused, `running` for a napping one it
/// shows thawed. What Docker says now decides, not the (maybe replayed)
/// event.
async fn follow_pause(ctx: &Context, route: &Arc<Route>) {
    let Some(owner) = route.try_own() else {
        return;
    };
    let status = owner.status();
    let (ContainerState::Running | ContainerState::Napping, Some(upstream)) =
        (status.state, status.upstream)
    else {
        return;
    };
    let Ok(Some(seen)) = ctx.runtime.inspect(&docker_name(route.name())).await else {
        return;
    };
    let now = match (status.state, seen.running, seen.paused) {
        (ContainerState::Running, true, true) => RouteStatus::napping(upstream),
        (ContainerState::Napping, true, false) => RouteStatus::running(upstream),
        _ => return,
    };
    tracing::info!(container = %route.name(), state = %now.state, "paused or unpaused outside dormant");
    ctx.commit_or_publish(&owner, now).await;
}

/// Inspects every container believed running or napping; those Docker no
/// longer runs become asleep, and a pause or unpause missed while the stream
/// was down is followed. Starting and stopping ones are left to the
/// transition in flight, which watches Docker itself.
async fn recheck_running(ctx: &Context) {
    let running: Vec<Arc<Route>> = ctx
        .table
        .awake()
        .into_iter()
        .filter(|route| {
            matches!(
                route.status().state,
                ContainerState::Running | ContainerState::Napping
            )
        })
        .collect();
    stream::iter(running)
        .for_each_concurrent(RECHECK_CONCURRENCY, |route| async move {
            let reason = match ctx.runtime.inspect(&docker_name(route.name())).await {
                Ok(Some(inspection)) if inspection.running => {
                    follow_pause(ctx, &route).await;
                    return;
                }
                Ok(Some(inspection)) => format!(
                    "it stopped while Docker was unreachable ({})",
                    exit_reason(&inspection)
                ),
                Ok(None) => "its Docker container was removed outside dormant; the next request recreates it".to_owned(),
                Err(e) => {
                    tracing::warn!(container = %route.name(), error = %e, "cannot inspect it after Docker came back");
                    return;
                }
            };
            asleep_if_running(ctx, &route, reason).await;
        })
        .await;
}

/// A container believed running (or napping) that Docker says is not:
/// `asleep`, so the next request starts it again. Only if it is still
/// running and nobody owns it; an owner's transition already knows.
async fn asleep_if_running(ctx: &Context, route: &Arc<Route>, reason: String) {
    let running = |route: &Route| {
        matches!(
            route.status().state,
            ContainerState::Running | ContainerState::Napping
        )
    };
    if !running(route) {
        return;
    }
    let Some(owner) = route.try_own() else {
        return;
    };
    if !running(&owner) {
        return;
    }
    tracing::warn!(container = %route.name(), %reason, "now asleep; the next request wakes it");
    let status = RouteStatus::not_serving(ContainerState::Asleep, Some(&reason));
    ctx.commit_or_publish(&owner, status).await;
}
