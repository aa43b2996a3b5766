//! `/v1/containers`: create, list, show, change and delete containers, and
//! put them to sleep, wake them, nap them or archive them by hand.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::{Extension, Json};

use super::access::visible_container;
use super::error::{ApiError, ErrorBody};
use super::model::{ContainerList, ContainerPatch, ContainerView, CreateContainers};
use super::{body_error, create_request, ApiState};
use crate::auth::Caller;
use crate::domain::ContainerState;

/// Create one or more containers (all or none), started and answering. With
/// a tenant token they are the tenant's, within its quotas.
#[utoipa::path(
    post,
    path = "/v1/containers",
    request_body = CreateContainers,
    responses(
        (status = 201, description = "Created and answering", body = ContainerList),
        (status = 400, description = "A field is invalid, or the image is not present", body = ErrorBody),
        (status = 401, description = "Missing or wrong token", body = ErrorBody),
        (status = 403, description = "A quota of the tenant refuses it (`quota_exceeded`), or `tenant` was sent with a tenant token", body = ErrorBody),
        (status = 409, description = "A name is taken", body = ErrorBody),
        (status = 413, description = "The body is larger than the API accepts", body = ErrorBody),
        (status = 422, description = "The container could never fit this host's limits", body = ErrorBody),
        (status = 502, description = "Docker failed, or the container did not start", body = ErrorBody),
    ),
    security(("admin" = []), ("tenant" = []))
)]
pub async fn create(
    State(state): State<ApiState>,
    Extension(caller): Extension<Caller>,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<ContainerList>), ApiError> {
    let body = body.map_err(body_error)?;
    let request = create_request::parse(&body, &state.create_defaults, caller.principal.owner())?;
    let created = state.lifecycle.create(request).await?;
    let containers = created.iter().map(|r| view(&state, r)).collect();
    Ok((StatusCode::CREATED, Json(ContainerList { containers })))
}

/// List the containers the caller may see: all for the admin, its own for a tenant.
#[utoipa::path(
    get,
    path = "/v1/containers",
    responses((status = 200, body = ContainerList), (status = 401, body = ErrorBody)),
    security(("admin" = []), ("tenant" = []))
)]
pub async fn list(
    State(state): State<ApiState>,
    Extension(caller): Extension<Caller>,
) -> Result<Json<ContainerList>, ApiError> {
    let records = state.lifecycle.list().await?;
    let containers = records
        .iter()
        .filter(|r| caller.principal.sees(&r.owner))
        .map(|r| view(&state, r))
        .collect();
    Ok(Json(ContainerList { containers }))
}

/// Show one container.
#[utoipa::path(
    get,
    path = "/v1/containers/{name}",
    params(("name" = String, Path, description = "Container name")),
    responses((status = 200, body = ContainerView), (status = 404, description = "No such container, or another tenant's", body = ErrorBody), (status = 401, body = ErrorBody)),
    security(("admin" = []), ("tenant" = []))
)]
pub async fn get(
    State(state): State<ApiState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
) -> Result<Json<ContainerView>, ApiError> {
    let record = visible_container(&state, &caller.principal, &name).await?;
    Ok(Json(view(&state, &record)))
}

/// Delete a container, its volumes and its access tokens.
#[utoipa::path(
    delete,
    path = "/v1/containers/{name}",
    params(("name" = String, Path, description = "Container name")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "No such container, or another tenant's", body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 502, description = "Docker failed to remove it", body = ErrorBody),
    ),
    security(("admin" = []), ("tenant" = []))
)]
pub async fn delete(
    State(state): State<ApiState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    visible_container(&state, &caller.principal, &name).await?;
    state.lifecycle.delete(&name).await?;
    // The store's rows went with the container's; a token of it could
    // never open a later container of the name anyway (see `tokens.rs`).
    state.access.tokens.forget_container(&name);
    Ok(StatusCode::NO_CONTENT)
}

/// Put a container to sleep now (stopped; woken by its next request).
#[utoipa::path(
    post,
    path = "/v1/containers/{name}/sleep",
    params(("name" = String, Path, description = "Container name")),
    responses(
        (status = 200, description = "Asleep", body = ContainerView),
        (status = 404, description = "No such container, or another tenant's", body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 502, description = "Docker failed to stop it", body = ErrorBody),
    ),
    security(("admin" = []), ("tenant" = []))
)]
pub async fn sleep(
    State(state): State<ApiState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
) -> Result<Json<ContainerView>, ApiError> {
    visible_container(&state, &caller.principal, &name).await?;
    state.lifecycle.sleep(&name).await?;
    let record = state.lifecycle.get(&name).await?;
    Ok(Json(view(&state, &record)))
}

/// Wake a container and answer once it is ready.
#[utoipa::path(
    post,
    path = "/v1/containers/{name}/wake",
    params(("name" = String, Path, description = "Container name")),
    responses(
        (status = 200, description = "Running and answering", body = ContainerView),
        (status = 404, description = "No such container, or another tenant's", body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 502, description = "The wake failed; the message says why", body = ErrorBody),
        (status = 503, description = "A recent wake failed; retry later", body = ErrorBody),
        (status = 504, description = "Not ready within the wake timeout", body = ErrorBody),
    ),
    security(("admin" = []), ("tenant" = []))
)]
pub async fn wake(
    State(state): State<ApiState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
) -> Result<Json<ContainerView>, ApiError> {
    visible_container(&state, &caller.principal, &name).await?;
    state.lifecycle.wake(&name).await?;
    let record = state.lifecycle.get(&name).await?;
    Ok(Json(view(&state, &record)))
}

/// Count as activity, as a request would: keeps the container awake.
#[utoipa::path(
    post,
    path = "/v1/containers/{name}/heartbeat",
    params(("name" = String, Path, description = "Container name")),
    responses((status = 204, description = "Recorded"), (status = 404, description = "No such container, or another tenant's", body = ErrorBody), (status = 401, body = ErrorBody)),
    security(("admin" = []), ("tenant" = []))
)]
pub async fn heartbeat(
    State(state): State<ApiState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    visible_container(&state, &caller.principal, &name).await?;
    state.lifecycle.heartbeat(&name)?;
    Ok(StatusCode::NO_CONTENT)
}

/// Pause a running container now (napping: no CPU, memory kept); its next
/// request unpauses it. Refused while requests or connections are open.
#[utoipa::path(
    post,
    path = "/v1/containers/{name}/nap",
    params(("name" = String, Path, description = "Container name")),
    responses(
        (status = 200, description = "Napping", body = ContainerView),
        (status = 404, description = "No such container, or another tenant's", body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 409, description = "It is not running, or requests or connections are open on it", body = ErrorBody),
        (status = 502, description = "Docker failed to pause it; it keeps running", body = ErrorBody),
    ),
    security(("admin" = []), ("tenant" = []))
)]
pub async fn nap(
    State(state): State<ApiState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
) -> Result<Json<ContainerView>, ApiError> {
    visible_container(&state, &caller.principal, &name).await?;
    state.lifecycle.nap(&name).await?;
    let record = state.lifecycle.get(&name).await?;
    Ok(Json(view(&state, &record)))
}

/// Change a container's settings in place: `nap_after` (an absent field
/// stays as it is; `null` follows the server's default again).
#[utoipa::path(
    patch,
    path = "/v1/containers/{name}",
    params(("name" = String, Path, description = "Container name")),
    request_body = ContainerPatch,
    responses(
        (status = 200, description = "Changed", body = ContainerView),
        (status = 400, description = "A field is invalid or cannot be changed; the message names it", body = ErrorBody),
        (status = 404, description = "No such container, or another tenant's", body = ErrorBody),
        (status = 401, body = ErrorBody),
    ),
    security(("admin" = []), ("tenant" = []))
)]
pub async fn patch(
    State(state): State<ApiState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<ContainerView>, ApiError> {
    let body = body.map_err(body_error)?;
    let patch: ContainerPatch = super::private_urls::parse_body(&body)?.unwrap_or_default();
    let nap_after = patch
        .nap_after
        .map(|text| {
            text.as_deref()
                .map(create_request::parse_nap_after)
                .transpose()
        })
        .transpose()?;
    visible_container(&state, &caller.principal, &name).await?;
    if let Some(nap_after) = nap_after {
        state.lifecycle.set_nap_after(&name, nap_after).await?;
    }
    let record = state.lifecycle.get(&name).await?;
    Ok(Json(view(&state, &record)))
}

/// Archive a container now: its changes go into one compressed snapshot and
/// its Docker container and volumes are removed. A running container is put
/// to sleep first.
#[utoipa::path(
    post,
    path = "/v1/containers/{name}/archive",
    params(("name" = String, Path, description = "Container name")),
    responses(
        (status = 200, description = "Archived", body = ContainerView),
        (status = 404, description = "No such container, or another tenant's", body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 409, description = "Archiving is not available on this host, or the container is mid-transition", body = ErrorBody),
        (status = 500, description = "Writing the snapshot failed; the container stays asleep", body = ErrorBody),
        (status = 502, description = "Docker failed", body = ErrorBody),
    ),
    security(("admin" = []), ("tenant" = []))
)]
pub async fn archive(
    State(state): State<ApiState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
) -> Result<Json<ContainerView>, ApiError> {
    visible_container(&state, &caller.principal, &name).await?;
    state.lifecycle.archive(&name).await?;
    let record = state.lifecycle.get(&name).await?;
    Ok(Json(view(&state, &record)))
}

/// The API's view of a record, with live progress while it is archived or restored.
fn view(state: &ApiState, record: &crate::domain::ContainerRecord) -> ContainerView {
    let mut view = state.public.view(record);
    if matches!(
        record.state,
        ContainerState::Archiving | ContainerState::Restoring
    ) {
        view.progress_bytes = state.lifecycle.progress(&record.name);
    }
    view
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::extract::FromRequest;

    #[tokio::test]
    async fn a_body_over_the_cap_is_a_json_413() {
        let request = axum::http::Request::builder()
            .uri("/v1/containers")
            .body(axum::body::Body::from(vec![b' '; 3 << 20]))
            .unwrap();
        let rejection = Bytes::from_request(request, &()).await.unwrap_err();
        let error = body_error(rejection);
        assert_eq!(error.status, StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(error.code, "bad_body");
        let response = axum::response::IntoResponse::into_response(error);
        let body = axum::body::to_bytes(response.into_body(), 4096)
            .await
            .unwrap();
        let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(json["error"]["code"], "bad_body");
    }
}
