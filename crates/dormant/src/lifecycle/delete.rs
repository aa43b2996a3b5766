//! Delete: the container, its volumes and its snapshot are removed.
//!
//! The row goes first: the store says what should exist, so a crash half-way
//! leaves an orphan that the next start-up removes, never a deleted
//! container coming back. Requests waiting on it hear "deleted" (404).

use std::sync::Arc;

use super::context::Context;
use super::table::{Route, RouteStatus};
use super::LifecycleError;
use crate::domain::ContainerState;

pub(super) async fn run(ctx: &Context, route: Arc<Route>) -> Result<(), LifecycleError> {
    let owner = route.own().await;
    let name = owner.name();
    if owner.status().state == ContainerState::Deleted {
        return Err(LifecycleError::NotFound(name.to_owned()));
    }
    let record = owner.record();
    ctx.store.delete_all(vec![name.to_owned()]).await?;
    ctx.table.remove(name);
    ctx.publish(
        &owner,
        RouteStatus::not_serving(ContainerState::Deleted, Some("it was deleted")),
    );
    ctx.remove_from_docker(&record)
        .await
        .map_err(|e| LifecycleError::runtime(name, e))?;
    if let Some(snapshot) = &record.snapshot {
        ctx.delete_snapshot(&snapshot.file).await;
    }
    tracing::info!(container = %name, "deleted");
    Ok(())
}
