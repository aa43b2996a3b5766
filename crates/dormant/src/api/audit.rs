//! `GET /v1/audit`: who changed what, newest first, in pages. The admin
//! sees every entry; a tenant sees its own.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::error::ErrorBody;
use super::{ApiError, ApiState};
use crate::auth::{Caller, Principal};
use crate::domain::rfc3339;

const DEFAULT_LIMIT: usize = 100;
const MAX_LIMIT: usize = 1000;

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    /// Entries per page, 1 to 1000 (default 100).
    pub limit: Option<usize>,
    /// Only entries older than this entry id: the previous page's `next_before`.
    pub before: Option<i64>,
}

/// One API call that changed something (or tried to).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct AuditView {
    pub id: i64,
    /// RFC 3339.
    pub at: String,
    /// The public id of the token used, or `admin`.
    pub token_id: String,
    /// The tenant id, or `admin`.
    pub principal: String,
    pub method: String,
    pub path: String,
    /// The status the API answered.
    pub status: u16,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct AuditPage {
    pub entries: Vec<AuditView>,
    /// Pass as `before` for the next (older) page; absent on the last.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub next_before: Option<i64>,
}

/// The audit log, newest first (the admin sees all, a tenant its own).
#[utoipa::path(
    get,
    path = "/v1/audit",
    params(AuditQuery),
    responses((status = 200, body = AuditPage), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)),
    security(("admin" = []), ("tenant" = []))
)]
pub async fn list(
    State(state): State<ApiState>,
    Extension(caller): Extension<Caller>,
    query: Result<Query<AuditQuery>, QueryRejection>,
) -> Result<Json<AuditPage>, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::invalid("limit/before", e.body_text()))?;
    let limit = query.limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(ApiError::invalid(
            "limit",
            format!("is {limit}; it must be between 1 and {MAX_LIMIT}"),
        ));
    }
    let principal = match &caller.principal {
        Principal::Admin => None,
        Principal::Tenant(id) => Some(id.clone()),
    };
    let entries = state
        .store
        .audit_page(principal, query.before, limit)
        .await
        .map_err(|e| ApiError::from(crate::lifecycle::LifecycleError::from(e)))?;
    let next_before = (entries.len() == limit)
        .then(|| entries.last().map(|e| e.id))
        .flatten();
    let entries = entries
        .into_iter()
        .map(|e| AuditView {
            id: e.id,
            at: rfc3339(e.at),
            token_id: e.token_id,
            principal: e.principal,
            method: e.method,
            path: e.path,
            status: e.status,
        })
        .collect();
    Ok(Json(AuditPage {
        entries,
        next_before,
    }))
}
