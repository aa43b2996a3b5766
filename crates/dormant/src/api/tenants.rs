//! `/v1/tenants`: the admin makes tenants with quotas; a tenant reads
//! itself and manages its own tokens. Every change goes to the store first
//! and then, at once, to the token index and lifecycle's quota book.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::{Extension, Json};

use super::access::admin_only;
use super::error::ErrorBody;
use super::tenant_model::{
    merge_quotas, object, tenant_view, token_view, NewTokenView, TenantCreated, TenantList,
    TenantView, TokenList,
};
use super::{body_error, ApiError, ApiState};
use crate::auth::{new_tenant_token, Caller};
use crate::domain::{now_millis, rfc3339};
use crate::store::tenants::{TenantRow, TokenAdded, TokenRow};
use crate::store::StoreError;
use crate::tenant::{check_id, Quotas};

/// Most tenants one dormant keeps.
const MAX_TENANTS: usize = 10_000;
/// Most live tokens one tenant may have (rotation keeps the count).
const MAX_LIVE_TOKENS: usize = 10;

/// Create a tenant (admin). Its first API token is in the answer, once.
#[utoipa::path(
    post,
    path = "/v1/tenants",
    request_body = super::tenant_model::CreateTenant,
    responses(
        (status = 201, description = "Created; `token.token` is shown only now", body = TenantCreated),
        (status = 400, description = "A field is invalid", body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 403, description = "Not the admin token", body = ErrorBody),
        (status = 409, description = "The id is taken, or there are as many tenants as dormant keeps", body = ErrorBody),
    ),
    security(("admin" = []))
)]
pub async fn create(
    State(state): State<ApiState>,
    Extension(caller): Extension<Caller>,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<TenantCreated>), ApiError> {
    admin_only(&caller, "create tenants")?;
    let mut fields = object(&body.map_err(body_error)?)?;
    let id = match fields.remove("id") {
        Some(serde_json::Value::String(id)) => id,
        Some(_) => return Err(ApiError::invalid("id", "must be a string")),
        None => return Err(ApiError::invalid("id", "is required")),
    };
    check_id(&id).map_err(|why| ApiError::invalid("id", why))?;
    let quotas = match fields.remove("quotas") {
        None | Some(serde_json::Value::Null) => Quotas::default(),
        Some(serde_json::Value::Object(quotas)) => {
            merge_quotas(Quotas::default(), &quotas, "quotas.")?
        }
        Some(_) => return Err(ApiError::invalid("quotas", "must be an object")),
    };
    if let Some(unknown) = fields.keys().next() {
        return Err(ApiError::invalid(
            unknown,
            "is not a tenant field (id, quotas)",
        ));
    }
    if state.store.tenants().await.map_err(store_error)?.len() >= MAX_TENANTS {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "too_many_tenants",
            format!("dormant keeps at most {MAX_TENANTS} tenants; delete one first"),
        ));
    }
    let now = now_millis();
    let row = TenantRow {
        id: id.clone(),
        created_at: now,
        quotas,
    };
    let (token, secret) = new_token(&id, now);
    match state.store.insert_tenant(row.clone(), token.clone()).await {
        Ok(()) => {}
        Err(StoreError::TenantTaken(id)) => {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "tenant_taken",
                format!("a tenant `{id}` already exists"),
            ))
        }
        Err(e) => return Err(store_error(e)),
    }
    state.lifecycle.quotas().set(&id, quotas);
    state.tokens.insert(&token);
    tracing::info!(tenant = %id, token = %token.id, "tenant created");
    let created = TenantCreated {
        tenant: tenant_view(&row, state.lifecycle.tenant_usage(&id)),
        token: shown_once(&token, secret),
    };
    Ok((StatusCode::CREATED, Json(created)))
}

/// List every tenant with its quotas and usage (admin).
#[utoipa::path(
    get,
    path = "/v1/tenants",
    responses((status = 200, body = TenantList), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)),
    security(("admin" = []))
)]
pub async fn list(
    State(state): State<ApiState>,
    Extension(caller): Extension<Caller>,
) -> Result<Json<TenantList>, ApiError> {
    admin_only(&caller, "list tenants")?;
    let rows = state.store.tenants().await.map_err(store_error)?;
    let mut usage = state.lifecycle.usage_by_tenant();
    let tenants = rows
        .iter()
        .map(|row| tenant_view(row, usage.remove(&row.id).unwrap_or_default()))
        .collect();
    Ok(Json(TenantList { tenants }))
}

/// Show a tenant with its quotas and usage (the admin, or the tenant itself).
#[utoipa::path(
    get,
    path = "/v1/tenants/{id}",
    params(("id" = String, Path, description = "Tenant id")),
    responses((status = 200, body = TenantView), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("admin" = []), ("tenant" = []))
)]
pub async fn get(
    State(state): State<ApiState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Json<TenantView>, ApiError> {
    let row = visible_tenant(&state, &caller, &id).await?;
    Ok(Json(tenant_view(&row, state.lifecycle.tenant_usage(&id))))
}

/// Change a tenant's quotas (admin): a field sets that quota, `null`
/// removes it, an absent one stays. They apply from the next create or start.
#[utoipa::path(
    patch,
    path = "/v1/tenants/{id}",
    params(("id" = String, Path, description = "Tenant id")),
    request_body = super::tenant_model::QuotasBody,
    responses((status = 200, body = TenantView), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("admin" = []))
)]
pub async fn patch(
    State(state): State<ApiState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<TenantView>, ApiError> {
    admin_only(&caller, "change quotas")?;
    let fields = object(&body.map_err(body_error)?)?;
    let mut row = visible_tenant(&state, &caller, &id).await?;
    row.quotas = merge_quotas(row.quotas, &fields, "")?;
    if !state
        .store
        .set_quotas(&id, row.quotas)
        .await
        .map_err(store_error)?
    {
        return Err(no_tenant(&id));
    }
    state.lifecycle.quotas().set(&id, row.quotas);
    Ok(Json(tenant_view(&row, state.lifecycle.tenant_usage(&id))))
}

/// Delete a tenant and its tokens (admin). Refused while it has containers.
#[utoipa::path(
    delete,
    path = "/v1/tenants/{id}",
    params(("id" = String, Path, description = "Tenant id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 409, description = "It still has containers", body = ErrorBody),
    ),
    security(("admin" = []))
)]
pub async fn delete(
    State(state): State<ApiState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    admin_only(&caller, "delete tenants")?;
    visible_tenant(&state, &caller, &id).await?;
    let quotas = state.lifecycle.retire_tenant(&id).map_err(|containers| {
        ApiError::new(
            StatusCode::CONFLICT,
            "tenant_has_containers",
            format!("tenant `{id}` still has {containers} containers; delete them first"),
        )
    })?;
    match state.store.delete_tenant(&id).await {
        Ok(true) => {}
        Ok(false) => return Err(no_tenant(&id)),
        Err(e) => {
            if let Some(quotas) = quotas {
                state.lifecycle.quotas().set(&id, quotas);
            }
            return Err(store_error(e));
        }
    }
    state.tokens.remove_tenant(&id);
    state.lifecycle.remove_tenant_resources(&id).await;
    match state.store.delete_webhooks_of(&id).await {
        Ok(ids) => ids.iter().for_each(|hook| state.webhooks.stop(hook)),
        Err(e) => {
            tracing::warn!(tenant = %id, error = %e, "cannot delete a deleted tenant's webhooks")
        }
    }
    tracing::info!(tenant = %id, "tenant deleted");
    Ok(StatusCode::NO_CONTENT)
}

/// List a tenant's live tokens, without secrets (the admin, or the tenant).
#[utoipa::path(
    get,
    path = "/v1/tenants/{id}/tokens",
    params(("id" = String, Path, description = "Tenant id")),
    responses((status = 200, body = TokenList), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("admin" = []), ("tenant" = []))
)]
pub async fn list_tokens(
    State(state): State<ApiState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Json<TokenList>, ApiError> {
    visible_tenant(&state, &caller, &id).await?;
    let rows = state.store.tenant_tokens(&id).await.map_err(store_error)?;
    Ok(Json(TokenList {
        tokens: rows.iter().map(token_view).collect(),
    }))
}

/// Make another token for the tenant (the admin, or the tenant); shown once.
#[utoipa::path(
    post,
    path = "/v1/tenants/{id}/tokens",
    params(("id" = String, Path, description = "Tenant id")),
    responses(
        (status = 201, description = "Made; `token` is shown only now", body = NewTokenView),
        (status = 404, body = ErrorBody),
        (status = 409, description = "It has as many live tokens as it may (10)", body = ErrorBody),
    ),
    security(("admin" = []), ("tenant" = []))
)]
pub async fn create_token(
    State(state): State<ApiState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<NewTokenView>), ApiError> {
    visible_tenant(&state, &caller, &id).await?;
    let (token, secret) = new_token(&id, now_millis());
    let added = state
        .store
        .add_token(token.clone(), MAX_LIVE_TOKENS)
        .await
        .map_err(store_error)?;
    token_added(&state, &id, added, &token)?;
    Ok((StatusCode::CREATED, Json(shown_once(&token, secret))))
}

/// Replace a token by a new one (the admin, or the tenant): the new one is
/// in the answer, once, and the old one stops working at once.
#[utoipa::path(
    post,
    path = "/v1/tenants/{id}/tokens/{token_id}/rotate",
    params(("id" = String, Path, description = "Tenant id"), ("token_id" = String, Path, description = "The token's public id, e.g. tok_1a2b3c4d")),
    responses(
        (status = 201, description = "The new token; the old one is revoked", body = NewTokenView),
        (status = 404, description = "No such tenant or live token", body = ErrorBody),
    ),
    security(("admin" = []), ("tenant" = []))
)]
pub async fn rotate_token(
    State(state): State<ApiState>,
    Extension(caller): Extension<Caller>,
    Path((id, token_id)): Path<(String, String)>,
) -> Result<(StatusCode, Json<NewTokenView>), ApiError> {
    visible_tenant(&state, &caller, &id).await?;
    let (token, secret) = new_token(&id, now_millis());
    let added = state
        .store
        .rotate_token(&token_id, token.clone())
        .await
        .map_err(store_error)?;
    if added == TokenAdded::NotFound {
        return Err(no_token(&id, &token_id));
    }
    state.tokens.revoke(&id, &token_id);
    token_added(&state, &id, added, &token)?;
    tracing::info!(tenant = %id, old = %token_id, new = %token.id, "token rotated");
    Ok((StatusCode::CREATED, Json(shown_once(&token, secret))))
}

/// Revoke a token (the admin, or the tenant); it stops working at once.
#[utoipa::path(
    delete,
    path = "/v1/tenants/{id}/tokens/{token_id}",
    params(("id" = String, Path, description = "Tenant id"), ("token_id" = String, Path, description = "The token's public id")),
    responses((status = 204, description = "Revoked"), (status = 404, description = "No such tenant or live token", body = ErrorBody)),
    security(("admin" = []), ("tenant" = []))
)]
pub async fn revoke_token(
    State(state): State<ApiState>,
    Extension(caller): Extension<Caller>,
    Path((id, token_id)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    visible_tenant(&state, &caller, &id).await?;
    let revoked = state
        .store
        .revoke_token(&id, &token_id, now_millis())
        .await
        .map_err(store_error)?;
    if !revoked {
        return Err(no_token(&id, &token_id));
    }
    state.tokens.revoke(&id, &token_id);
    tracing::info!(tenant = %id, token = %token_id, "token revoked");
    Ok(StatusCode::NO_CONTENT)
}

/// The tenant `id` if the caller may see it (the admin, or itself): 404
/// otherwise, as for a missing one.
async fn visible_tenant(
    state: &ApiState,
    caller: &Caller,
    id: &str,
) -> Result<TenantRow, ApiError> {
    if !caller.principal.sees(id) {
        return Err(no_tenant(id));
    }
    state
        .store
        .tenant(id)
        .await
        .map_err(store_error)?
        .ok_or_else(|| no_tenant(id))
}

fn token_added(
    state: &ApiState,
    id: &str,
    added: TokenAdded,
    token: &TokenRow,
) -> Result<(), ApiError> {
    match added {
        TokenAdded::Added => {
            state.tokens.insert(token);
            Ok(())
        }
        TokenAdded::TooMany => Err(ApiError::new(
            StatusCode::CONFLICT,
            "too_many_tokens",
            format!("tenant `{id}` has {MAX_LIVE_TOKENS} live tokens, as many as it may; revoke or rotate one"),
        )),
        TokenAdded::NotFound => Err(no_tenant(id)),
    }
}

fn new_token(tenant: &str, now: i64) -> (TokenRow, String) {
    let made = new_tenant_token();
    let row = TokenRow {
        id: made.id,
        tenant: tenant.to_owned(),
        sha256: made.sha256,
        created_at: now,
        revoked_at: None,
    };
    (row, made.secret)
}

fn shown_once(token: &TokenRow, secret: String) -> NewTokenView {
    NewTokenView {
        id: token.id.clone(),
        token: secret,
        created_at: rfc3339(token.created_at),
    }
}

fn no_tenant(id: &str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        format!("no tenant `{id}`"),
    )
}

fn no_token(id: &str, token_id: &str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        format!("tenant `{id}` has no live token `{token_id}`"),
    )
}

fn store_error(e: StoreError) -> ApiError {
    crate::lifecycle::LifecycleError::from(e).into()
}
