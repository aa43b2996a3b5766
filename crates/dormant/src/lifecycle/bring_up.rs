//! The step create and wake share: get room, start the container (creating
//! it from its spec when Docker no longer has it) and wait until the app
//! inside answers.

use std::collections::HashMap;
use std::net::SocketAddr;

use tokio::time::Instant;

use super::context::{docker_ref, volume_names, Change, Context};
use super::table::Owner;
use super::{capacity, readiness, LifecycleError};
use crate::domain::{
    docker_name, ContainerRecord, LABEL_MANAGED, LABEL_NAME, LABEL_NODE, LABEL_PORT, LABEL_TENANT,
};
use crate::runtime::{CreateParams, Inspection, RuntimeError};

/// Starts the owned container and waits until its app answers, by
/// `deadline`. Does not publish a state: the caller commits `running`, or
/// its own error path.
pub(super) async fn run(
    ctx: &Context,
    owner: &Owner,
    deadline: Instant,
) -> Result<SocketAddr, LifecycleError> {
    let name = owner.name();
    let runtime_err = |e| LifecycleError::runtime(name, e);
    let record = owner.record();
    let mut existing = ctx
        .runtime
        .inspect(&docker_ref(&record))
        .await
        .map_err(runtime_err)?;
    if existing.is_none() && record.docker_id.is_some() {
        // Made again by an earlier wake whose id could not be recorded: the
        // container under its name is ours, from its spec.
        existing = ctx
            .runtime
            .inspect(&record.docker_name())
            .await
            .map_err(runtime_err)?;
        if let Some(found) = &existing {
            let change = Change {
                docker_id: Some(Some(found.id.clone())),
                ..Change::default()
            };
            ctx.commit_record(owner, change).await?;
        }
    }
    let (id, running) = match existing {
        Some(inspection) => (inspection.id, inspection.running),
        None => {
            if record.docker_id.is_some() {
                tracing::warn!(container = %name, image = %record.spec.image, "its Docker container was removed behind dormant's back; recreating it from its image");
            }
            let id = create_container(ctx, &record).await?;
            let change = Change {
                docker_id: Some(Some(id.clone())),
                ..Change::default()
            };
            ctx.commit_record(owner, change).await?;
            (id, false)
        }
    };
    // Listen for "died" before starting, so a crash at start is never missed.
    let died = owner.died();
    if running {
        ctx.capacity
            .note_running(name, &record.owner, record.spec.memory_bytes);
    } else {
        capacity::admit(ctx, name, &record.owner, record.spec.memory_bytes, deadline)
            .await
            .map_err(|error| LifecycleError::Wake {
                name: name.to_owned(),
                error,
            })?;
        if let Err(e) = ctx.runtime.start(&id).await {
            ctx.capacity.release(name);
            return Err(runtime_err(e));
        }
    }
    let upstream = running_upstream(ctx, &record, &id).await?;
    let outcome = tokio::select! {
        outcome = wait_until_ready(ctx, &record, &id, upstream, deadline) => outcome,
        () = died => Err(died_reason(ctx, &id).await),
    };
    let took = outcome.map_err(|reason| not_ready(name, reason))?;
    tracing::debug!(container = %name, ?took, "ready");
    Ok(upstream)
}

/// Probes the app until it answers (its `ready_path`, or any HTTP answer
/// on `/`), `deadline`, or Docker shows the container stopped.
async fn wait_until_ready(
    ctx: &Context,
    record: &ContainerRecord,
    id: &str,
    upstream: SocketAddr,
    deadline: Instant,
) -> Result<std::time::Duration, String> {
    let (path, require_success) = match &record.spec.ready_path {
        Some(path) => (path.as_str(), true),
        None => ("/", false),
    };
    let still_running = || async {
        match ctx.runtime.inspect(id).await {
            Ok(Some(i)) if i.running => Ok(()),
            Ok(Some(i)) => Err(exit_reason(&i)),
            Ok(None) => Err("its Docker container was removed".into()),
            Err(e) => Err(e.to_string()),
        }
    };
    let listening = || async {
        match ctx.runtime.listening_ports(id).await {
            Ok(ports) => ports,
            Err(e) => {
                tracing::debug!(container = %record.name, error = %e, "cannot see the ports it listens on");
                None
            }
        }
    };
    let target = readiness::Target {
        upstream,
        path,
        require_success,
        port: record.spec.port,
    };
    readiness::wait_ready(
        ctx.runtime.as_ref(),
        &target,
        deadline,
        still_running,
        listening,
    )
    .await
}

/// Where the just-started container answers, or why it does not run.
async fn running_upstream(
    ctx: &Context,
    record: &ContainerRecord,
    id: &str,
) -> Result<SocketAddr, LifecycleError> {
    let name = record.name.as_str();
    let inspection = ctx
        .runtime
        .inspect(id)
        .await
        .map_err(|e| LifecycleError::runtime(name, e))?
        .ok_or_else(|| {
            not_ready(
                name,
                "its Docker container disappeared right after starting".into(),
            )
        })?;
    if !inspection.running {
        return Err(not_ready(name, exit_reason(&inspection)));
    }
    inspection.upstream.ok_or_else(|| {
        not_ready(
            name,
            format!(
                "Docker shows no address for container port {}",
                record.spec.port
            ),
        )
    })
}

/// Why a container Docker reported dead stopped, as well as Docker says.
async fn died_reason(ctx: &Context, id: &str) -> String {
    match ctx.runtime.inspect(id).await {
        Ok(Some(inspection)) => exit_reason(&inspection),
        _ => "it stopped while starting".into(),
    }
}

/// Creates the record's Docker container from the image it was first made
/// from; if that image is gone, from the image's name, with a warning (the
/// user's changes may then meet different files).
pub(super) async fn create_container(
    ctx: &Context,
    record: &ContainerRecord,
) -> Result<String, LifecycleError> {
    let name = record.name.as_str();
    let mut params = create_params(ctx, record);
    if let Some(image_id) = &record.spec.image_id {
        let original = std::mem::replace(&mut params.image, image_id.clone());
        match ctx.runtime.create(&params).await {
            Err(RuntimeError::ImageMissing { .. }) => {
                tracing::warn!(container = %name, image = %original, %image_id, "the image it was made from is gone; using what `{original}` names now");
                params.image = original;
            }
            other => return other.map_err(|e| LifecycleError::runtime(name, e)),
        }
    }
    ctx.runtime
        .create(&params)
        .await
        .map_err(|e| LifecycleError::runtime(name, e))
}

fn create_params(ctx: &Context, record: &ContainerRecord) -> CreateParams {
    let labels = HashMap::from([
        (LABEL_MANAGED.to_owned(), "true".to_owned()),
        (LABEL_NAME.to_owned(), record.name.clone()),
        (LABEL_NODE.to_owned(), ctx.config.node.clone()),
        (LABEL_PORT.to_owned(), record.spec.port.to_string()),
        (LABEL_TENANT.to_owned(), record.owner.clone()),
    ]);
    let spec = &record.spec;
    CreateParams {
        docker_name: docker_name(&record.name),
        image: spec.image.clone(),
        port: spec.port,
        env: spec.env.iter().map(|(k, v)| format!("{k}={v}")).collect(),
        cmd: spec.cmd.clone(),
        memory_bytes: spec.memory_bytes,
        nano_cpus: spec.nano_cpus,
        pids_limit: ctx.config.pids_limit,
        cap_add: spec.cap_add.clone(),
        labels,
        tenant: record.owner.clone(),
        volumes: volume_names(record)
            .into_iter()
            .zip(spec.volumes.iter().cloned())
            .collect(),
    }
}

fn not_ready(name: &str, reason: String) -> LifecycleError {
    LifecycleError::NotReady {
        name: name.to_owned(),
        reason,
    }
}

/// Why a container is not running, in words.
pub(super) fn exit_reason(inspection: &Inspection) -> String {
    match (&inspection.error, inspection.exit_code) {
        (Some(error), _) => format!("it failed to run: {error}"),
        (None, Some(code)) => format!("it exited with code {code}"),
        (None, None) => "it is not running".into(),
    }
}
