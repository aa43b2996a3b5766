//! Docker's event stream: learn at once that a container died, instead of
//! finding out at a timeout or at the next request.
//!
//! A death during a wake fails that wake now. A death of a running container
//! that no transition expected (it crashed, or someone stopped it) makes it
//! `asleep`, so the next request starts it again.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;

use super::context::Context;
use super::table::RouteStatus;
use crate::domain::{ContainerState, LABEL_NODE};
use crate::runtime::{ContainerEvent, ContainerEventKind};

/// Follows Docker's events until `stopped`, reconnecting when the stream drops.
pub(super) async fn follow(ctx: Arc<Context>, stopped: impl Future<Output = ()>) {
    tokio::pin!(stopped);
    loop {
        let mut events = ctx.runtime.events(LABEL_NODE, &ctx.config.node);
        loop {
            tokio::select! {
                event = events.next() => match event {
                    Some(Ok(event)) => on_event(&ctx, event).await,
                    Some(Err(e)) => {
                        tracing::warn!(error = %e, "Docker event stream failed; reconnecting");
                        break;
                    }
                    None => break,
                },
                () = &mut stopped => return,
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            () = &mut stopped => return,
        }
    }
}

async fn on_event(ctx: &Context, event: ContainerEvent) {
    let ContainerEventKind::Died { exit_code } = event.kind else {
        return;
    };
    let Some(route) = ctx.table.get(&event.name) else {
        return;
    };
    // Whoever is starting it hears about it now.
    route.notify_died();
    if route.status().state != ContainerState::Running {
        return;
    }
    // Running and nobody is changing it: it died on its own.
    let Some(owner) = route.try_own() else {
        return;
    };
    if owner.status().state != ContainerState::Running {
        return;
    }
    let reason = match exit_code {
        Some(code) => format!("it stopped outside dormant (exit code {code})"),
        None => "it stopped outside dormant".to_owned(),
    };
    tracing::warn!(container = %event.name, %reason, "now asleep; the next request wakes it");
    let status = RouteStatus::not_serving(ContainerState::Asleep, Some(&reason));
    ctx.commit_or_publish(&owner, status).await;
}
