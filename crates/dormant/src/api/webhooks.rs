//! `/v1/webhooks`: register a URL to be told of container events (signed
//! deliveries, retried), list them with how delivery goes, delete them. A
//! tenant's webhooks receive only its own containers' events and may not
//! point into the host's private network.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::error::ErrorBody;
use super::{body_error, ApiError, ApiState};
use crate::auth::Caller;
use crate::domain::{now_millis, rfc3339};
use crate::events::EventKind;
use crate::store::webhooks::{WebhookAdded, WebhookRow};
use crate::webhooks::target::Target;
use crate::webhooks::Status;

/// Most webhooks one owner (a tenant, or the admin) may have.
pub const MAX_PER_OWNER: usize = 20;

/// Body of `POST /v1/webhooks`. Unknown fields are rejected.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateWebhook {
    /// `http://` or `https://` URL each event is POSTed to (for `https`,
    /// the receiver's certificate must be valid for the URL's host and
    /// issued by a public certificate authority or one the server was given
    /// with `--webhook-ca-file`). A tenant's may not resolve to a private or
    /// local address (unless the server allows it).
    #[schema(example = "https://hooks.example.com/dormant")]
    pub url: String,
    /// Event kinds to receive; all when absent or empty.
    pub events: Option<Vec<EventKind>>,
    /// Only this container's events.
    pub container: Option<String>,
}

/// A webhook as the API shows it.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct WebhookView {
    #[schema(example = "wh_1a2b3c4d")]
    pub id: String,
    pub url: String,
    /// Event kinds it receives; empty: all.
    pub events: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub container: Option<String>,
    /// The tenant whose events it receives (`admin`: every container's).
    pub owner: String,
    /// RFC 3339.
    pub created_at: String,
    pub delivered: u64,
    /// Events given up after their retries, or refused for good by the receiver.
    pub failed: u64,
    /// Events dropped because its queue was full.
    pub dropped: u64,
    /// Events waiting to be delivered.
    pub queued: usize,
    /// The receiver's last HTTP status.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub last_status: Option<u16>,
    /// What went wrong with the last attempt, if it failed (a refused
    /// answer, no connection, or a TLS certificate that is not trusted or
    /// not valid for the URL's host).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub last_error: Option<String>,
    /// RFC 3339.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub last_attempt_at: Option<String>,
}

/// `POST /v1/webhooks`: the webhook and its signing secret, shown once.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct WebhookCreated {
    pub webhook: WebhookView,
    /// Key of the `Dormant-Signature` header: `t=<unix seconds>,v1=<hex
    /// HMAC-SHA256 of "<t>.<body>" with this secret>`. Shown only now.
    pub secret: String,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct WebhookList {
    pub webhooks: Vec<WebhookView>,
}

/// Register a webhook.
#[utoipa::path(
    post,
    path = "/v1/webhooks",
    request_body = CreateWebhook,
    responses(
        (status = 201, description = "Registered; `secret` is shown only now", body = WebhookCreated),
        (status = 400, description = "A field is invalid", body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 409, description = "As many webhooks as allowed already", body = ErrorBody),
    ),
    security(("admin" = []), ("tenant" = []))
)]
pub async fn create(
    State(state): State<ApiState>,
    Extension(caller): Extension<Caller>,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<WebhookCreated>), ApiError> {
    let body = body.map_err(body_error)?;
    let request: CreateWebhook = {
        let mut de = serde_json::Deserializer::from_slice(&body);
        serde_path_to_error::deserialize(&mut de).map_err(|e| {
            let field = e.path().to_string();
            ApiError::invalid(if field == "." { "body" } else { &field }, e.inner())
        })?
    };
    let target = Target::parse(&request.url).map_err(|why| ApiError::invalid("url", why))?;
    let owner = caller.principal.owner().to_owned();
    // A literal address is checked now; a name is checked at each delivery
    // (what it resolves to may change).
    if let Ok(ip) = target.host.parse::<std::net::IpAddr>() {
        if !state.webhooks.policy_for(&owner).allows(ip) {
            return Err(ApiError::invalid(
                "url",
                format!("points at {ip}, a private or local address; a tenant's webhook must reach a public one"),
            ));
        }
    }
    if let Some(container) = &request.container {
        if container.is_empty() || container.len() > 63 {
            return Err(ApiError::invalid("container", "must be a container name"));
        }
    }
    let mut events: Vec<String> = request
        .events
        .unwrap_or_default()
        .into_iter()
        .map(|kind| kind.as_str().to_owned())
        .collect();
    events.sort();
    events.dedup();
    let secret = crate::token::random_hex(32);
    let row = WebhookRow {
        id: format!("wh_{}", crate::token::random_hex(4)),
        owner,
        url: request.url,
        events,
        container: request.container,
        secret: secret.clone(),
        created_at: now_millis(),
    };
    match state.store.add_webhook(row.clone(), MAX_PER_OWNER).await {
        Ok(WebhookAdded::Added) => {}
        Ok(WebhookAdded::TooMany) => {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "too_many_webhooks",
                format!(
                    "`{}` has {MAX_PER_OWNER} webhooks already; delete one first",
                    row.owner
                ),
            ))
        }
        Err(e) => return Err(crate::lifecycle::LifecycleError::from(e).into()),
    }
    state.webhooks.start(row.clone());
    let webhook = view(&row, &Status::default());
    Ok((
        StatusCode::CREATED,
        Json(WebhookCreated { webhook, secret }),
    ))
}

/// List webhooks (a tenant's own; the admin's sees all) with how delivery goes.
#[utoipa::path(
    get,
    path = "/v1/webhooks",
    responses((status = 200, body = WebhookList), (status = 401, body = ErrorBody)),
    security(("admin" = []), ("tenant" = []))
)]
pub async fn list(
    State(state): State<ApiState>,
    Extension(caller): Extension<Caller>,
) -> Json<WebhookList> {
    let webhooks = state
        .webhooks
        .list()
        .iter()
        .filter(|(row, _)| caller.principal.sees(&row.owner))
        .map(|(row, status)| view(row, status))
        .collect();
    Json(WebhookList { webhooks })
}

/// Delete a webhook; what it had queued is not sent.
#[utoipa::path(
    delete,
    path = "/v1/webhooks/{id}",
    params(("id" = String, Path, description = "Webhook id")),
    responses((status = 204, description = "Deleted"), (status = 404, body = ErrorBody), (status = 401, body = ErrorBody)),
    security(("admin" = []), ("tenant" = []))
)]
pub async fn delete(
    State(state): State<ApiState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let visible = state
        .webhooks
        .list()
        .into_iter()
        .any(|(row, _)| row.id == id && caller.principal.sees(&row.owner));
    if !visible {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no webhook `{id}`"),
        ));
    }
    state
        .store
        .delete_webhook(&id)
        .await
        .map_err(|e| ApiError::from(crate::lifecycle::LifecycleError::from(e)))?;
    state.webhooks.stop(&id);
    Ok(StatusCode::NO_CONTENT)
}

fn view(row: &WebhookRow, status: &Status) -> WebhookView {
    WebhookView {
        id: row.id.clone(),
        url: row.url.clone(),
        events: row.events.clone(),
        container: row.container.clone(),
        owner: row.owner.clone(),
        created_at: rfc3339(row.created_at),
        delivered: status.delivered,
        failed: status.failed,
        dropped: status.dropped,
        queued: status.queued,
        last_status: status.last_status,
        last_error: status.last_error.clone(),
        last_attempt_at: status.last_attempt_at.map(rfc3339),
    }
}
