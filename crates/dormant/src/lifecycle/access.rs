//! Changing who may reach a container's URL (public or private): a setting
//! of its record, committed like any change, seen by the proxy at once.

use super::context::{Change, Context};
use super::table::Owner;
use super::LifecycleError;
use crate::domain::{Access, ContainerState};

pub(super) async fn set(
    ctx: &Context,
    owner: &Owner,
    access: Access,
) -> Result<(), LifecycleError> {
    if owner.status().state == ContainerState::Deleted {
        return Err(LifecycleError::NotFound(owner.name().to_owned()));
    }
    let mut spec = owner.record().spec;
    if spec.access == access {
        return Ok(());
    }
    spec.access = access;
    ctx.commit_record(
        owner,
        Change {
            spec: Some(spec),
            ..Change::default()
        },
    )
    .await?;
    tracing::info!(container = %owner.name(), access = access.as_str(), "access changed");
    Ok(())
}
