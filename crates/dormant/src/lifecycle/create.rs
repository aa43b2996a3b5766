//! Create: new containers, each started and answering, or none of them.
//!
//! Every name enters the table owned by this call (state `creating`) before
//! its row is written, so no other transition can act on a half-made
//! container and two creates of one name cannot both win. A batch either
//! fully succeeds or leaves nothing behind: no row, no Docker object.

use futures_util::{stream, StreamExt};
use tokio::time::Instant;

use super::context::{Change, Context};
use super::table::{Owner, RouteStatus};
use super::{bring_up, LifecycleError, NewContainers};
use crate::domain::{now_millis, ContainerRecord, ContainerSpec, ContainerState};
use crate::store::StoreError;

pub(super) async fn run(
    ctx: &Context,
    request: NewContainers,
) -> Result<Vec<ContainerRecord>, LifecycleError> {
    let spec = resolve_spec(ctx, &request).await?;
    if spec.memory_bytes > ctx.capacity.limits().memory_budget {
        return Err(LifecycleError::NeverFits(format!(
            "memory limit {} bytes is larger than this host's whole memory budget ({} bytes); ask for less memory",
            spec.memory_bytes,
            ctx.capacity.limits().memory_budget
        )));
    }
    let now = now_millis();
    let records: Vec<ContainerRecord> = request
        .names
        .iter()
        .map(|name| ContainerRecord {
            name: name.clone(),
            spec: spec.clone(),
            state: ContainerState::Creating,
            reason: None,
            docker_id: None,
            owner: request.owner.clone(),
            node: Some(ctx.config.node.clone()),
            created_at: now,
            last_active_at: now,
            wakes: 0,
            last_wake_ms: None,
            state_since: now,
            snapshot: None,
        })
        .collect();

    let owners = {
        let _admission = ctx
            .create_admission
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        check_quotas(ctx, &request, spec.memory_bytes)?;
        enter_table(ctx, &records)?
    };
    if let Err(e) = ctx.store.insert_all(records.clone()).await {
        for record in &records {
            ctx.table.remove(&record.name);
        }
        return Err(match e {
            StoreError::NameTaken(name) => LifecycleError::NameTaken(name),
            other => other.into(),
        });
    }
    for record in &records {
        ctx.announce_created(record);
    }

    // Each owner is let go as soon as its container runs: from then on it
    // may be evicted to make room for the rest of the batch.
    let results: Vec<Result<(), LifecycleError>> = stream::iter(owners)
        .map(|owner| async move {
            let deadline = Instant::now() + ctx.config.wake_timeout;
            let upstream = bring_up::run(ctx, &owner, deadline).await?;
            ctx.commit(&owner, RouteStatus::running(upstream), Change::default())
                .await?;
            tracing::info!(container = %owner.name(), image = %owner.record().spec.image, %upstream, "created");
            Ok(())
        })
        .buffered(ctx.config.create_concurrency.max(1))
        .collect()
        .await;

    if let Some(position) = results.iter().position(Result::is_err) {
        undo(ctx, &records).await;
        let mut results = results;
        return Err(results
            .swap_remove(position)
            .expect_err("position found an error"));
    }
    // Later members of a large batch may have put earlier ones to sleep.
    Ok(records
        .iter()
        .filter_map(|record| ctx.table.get(&record.name).map(|route| route.record()))
        .collect())
}

/// Refuses a batch that would take its tenant past `max_containers`, or a
/// container that alone is larger than its `max_memory_bytes` (it could
/// never run). The running quotas are kept when each one starts.
fn check_quotas(ctx: &Context, request: &NewContainers, memory: u64) -> Result<(), LifecycleError> {
    let tenant = &request.owner;
    let Some(quotas) = ctx.quotas.get(tenant) else {
        if tenant == crate::tenant::ADMIN {
            return Ok(());
        }
        // Checked here, under the lock a tenant's deletion takes too, so
        // no container is made for a tenant being deleted.
        return Err(LifecycleError::Invalid {
            field: "tenant",
            message: format!("names no tenant: `{tenant}` does not exist"),
        });
    };
    if let Some(max) = quotas.max_containers {
        let have = ctx
            .table
            .all()
            .iter()
            .filter(|route| route.owner() == *tenant)
            .count() as u64;
        let more = request.names.len() as u64;
        if have + more > max {
            return Err(LifecycleError::QuotaExceeded(format!(
                "tenant `{tenant}` has {have} containers and its quota max_containers is {max}; {more} more would pass it"
            )));
        }
    }
    if let Some(max) = quotas.max_memory_bytes.filter(|max| memory > *max) {
        return Err(LifecycleError::QuotaExceeded(format!(
            "memory limit {memory} bytes is larger than tenant `{tenant}`'s quota max_memory_bytes of {max}; ask for less memory"
        )));
    }
    if quotas.max_running == Some(0) {
        return Err(LifecycleError::QuotaExceeded(format!(
            "tenant `{tenant}`'s quota max_running is 0: none of its containers may run"
        )));
    }
    Ok(())
}

/// Puts every new name in the table, owned; none if one is taken.
fn enter_table(ctx: &Context, records: &[ContainerRecord]) -> Result<Vec<Owner>, LifecycleError> {
    let mut owners = Vec::with_capacity(records.len());
    for record in records {
        let status = RouteStatus::not_serving(ContainerState::Creating, None);
        match ctx
            .table
            .insert(record.clone(), ctx.route_config(&record.spec), status)
        {
            Some(owner) => {
                owner.set_nap_after(ctx.nap_after(&record.spec));
                owners.push(owner)
            }
            None => {
                for owner in owners {
                    ctx.table.remove(owner.name());
                }
                return Err(LifecycleError::NameTaken(record.name.clone()));
            }
        }
    }
    Ok(owners)
}

/// Removes whatever a failed batch made: Docker objects, rows, table entries.
pub(super) async fn undo(ctx: &Context, records: &[ContainerRecord]) {
    for record in records {
        let Some(route) = ctx.table.get(&record.name) else {
            continue;
        };
        let owner = route.own().await;
        let record = owner.record();
        if let Err(e) = ctx.remove_from_docker(&record).await {
            tracing::error!(container = %record.name, error = %e, "could not remove a container of a failed batch; it will be removed at the next start-up");
        }
        ctx.table.remove(&record.name);
        ctx.publish(
            &owner,
            RouteStatus::not_serving(ContainerState::Deleted, Some("its creation failed")),
        );
    }
    let names = records.iter().map(|r| r.name.clone()).collect();
    if let Err(e) = ctx.store.delete_all(names).await {
        tracing::error!(error = %e, "could not delete the rows of a failed batch; they will be cleaned at the next start-up");
    }
}

async fn resolve_spec(
    ctx: &Context,
    request: &NewContainers,
) -> Result<ContainerSpec, LifecycleError> {
    let image = ctx
        .runtime
        .image(&request.image)
        .await
        .map_err(|e| LifecycleError::runtime(&request.names[0], e))?
        .ok_or_else(|| LifecycleError::ImageNotPresent(request.image.clone()))?;
    let port = match (request.port, image.exposed_tcp_ports.as_slice()) {
        (Some(port), _) => port,
        (None, [only]) => *only,
        (None, []) => {
            return Err(LifecycleError::Invalid {
                field: "port",
                message: format!("is required: image `{}` exposes no port", request.image),
            })
        }
        (None, many) => {
            return Err(LifecycleError::Invalid {
                field: "port",
                message: format!(
                    "is required: image `{}` exposes several ports ({many:?})",
                    request.image
                ),
            })
        }
    };
    Ok(ContainerSpec {
        image: request.image.clone(),
        image_id: Some(image.id.clone()).filter(|id| !id.is_empty()),
        port,
        env: request.env.clone(),
        cmd: request.cmd.clone(),
        memory_bytes: request.memory_bytes,
        nano_cpus: request.nano_cpus,
        idle_timeout: request.idle_timeout,
        volumes: request.volumes.clone(),
        ready_path: request.ready_path.clone(),
        wake: request.wake,
        archive_after: request.archive_after,
        nap_after: request.nap_after,
        cap_add: request.cap_add.clone(),
        access: request.access,
    })
}
