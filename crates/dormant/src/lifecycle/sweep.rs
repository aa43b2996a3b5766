//! The periodic sweeps: running containers idle for their `nap_after` are
//! paused (napping), running or napping ones idle past their timeout are put
//! to sleep, and asleep containers due for archiving are archived. Both look
//! only at their index in the table (awake containers, archive due times),
//! so their cost grows with what runs, not with what exists.

use std::future::Future;
use std::sync::Arc;

use super::context::Context;
use super::{archive, nap, sleep};
use crate::domain::{now_millis, ContainerState};

pub(super) async fn run_periodically(ctx: Arc<Context>, stopped: impl Future<Output = ()>) {
    tokio::pin!(stopped);
    let mut tick = tokio::time::interval(ctx.config.sweep_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {
                sleep_idle(&ctx);
                archive_due(&ctx);
            }
            () = &mut stopped => return,
        }
    }
}

/// Starts a sleep for every running or napping container idle past its
/// timeout, and a nap for every other running one idle for its `nap_after`.
pub(super) fn sleep_idle(ctx: &Arc<Context>) {
    let now = now_millis();
    for route in ctx.table.awake() {
        let state = route.status().state;
        let task_ctx = ctx.clone();
        match state {
            ContainerState::Running | ContainerState::Napping if sleep::is_idle(&route, now) => {
                ctx.spawn(async move {
                    let owner = route.own().await;
                    if let Err(e) = sleep::run(&task_ctx, &owner, sleep::Why::Idle).await {
                        tracing::error!(container = %owner.name(), error = %e, "cannot put to sleep");
                    }
                });
            }
            ContainerState::Running if nap::is_due(&route, now) => {
                ctx.spawn(async move {
                    let owner = route.own().await;
                    if let Err(e) = nap::run(&task_ctx, &owner, nap::Why::Idle).await {
                        tracing::error!(container = %owner.name(), error = %e, "cannot pause it; it keeps running");
                    }
                });
            }
            _ => {}
        }
    }
}

/// Starts archiving every container whose time asleep has run out.
pub(super) fn archive_due(ctx: &Arc<Context>) {
    if ctx.archive_supported().is_err() {
        return;
    }
    for route in ctx.table.take_archive_due(now_millis()) {
        let task_ctx = ctx.clone();
        ctx.spawn(async move {
            // One archive at a time: they are disk-bound, and requests for
            // running containers must not feel them.
            let _turn = task_ctx.archive_turns.acquire().await;
            let owner = route.own().await;
            if owner.status().state != ContainerState::Asleep {
                return;
            }
            match archive::run(&task_ctx, &owner).await {
                Ok(()) => {}
                Err(e @ super::LifecycleError::QuotaExceeded(_)) => {
                    tracing::info!(container = %owner.name(), reason = %e, "not archived");
                }
                Err(e) => {
                    tracing::error!(container = %owner.name(), error = %e, "archive failed; it stays asleep");
                }
            }
        });
    }
}
