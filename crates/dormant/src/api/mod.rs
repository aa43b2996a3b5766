//! The REST API under `/v1`: JSON in and out, bearer-token auth, errors in
//! one shape. Handlers only translate; lifecycle does the work.

mod access;
mod audit;
mod containers;
pub mod create_request;
mod error;
mod events;
mod image_ref;
pub mod model;
pub mod nodes;
mod openapi;
mod private_urls;
pub mod tenant_model;
mod tenants;
mod ui;
mod webhooks;

use std::sync::Arc;

use axum::extract::rejection::BytesRejection;
use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use utoipa::OpenApi;

use crate::access::AccessControl;
use crate::auth::{Caller, TokenIndex};
use crate::lifecycle::Lifecycle;
use crate::store::Store;
pub use create_request::{parse_nap_after, CreateDefaults};
pub use error::ApiError;
use model::PublicAddress;

/// Where the versioned API is nested.
const V1: &str = "/v1";

/// What every handler can reach.
#[derive(Clone)]
pub struct ApiState {
    pub lifecycle: Arc<Lifecycle>,
    /// Who each bearer token is: the admin or a tenant.
    pub tokens: Arc<TokenIndex>,
    /// Tenants, their tokens and the audit log.
    pub store: Store,
    pub public: Arc<PublicAddress>,
    pub create_defaults: Arc<CreateDefaults>,
    /// Private containers' tokens, login links and sessions.
    pub access: Arc<AccessControl>,
    /// Turns true when dormant begins to shut down: long-lived calls (the
    /// event stream) end then rather than hold up the drain.
    pub stopping: tokio::sync::watch::Receiver<bool>,
    /// The registered webhooks and their delivery workers.
    pub webhooks: Arc<crate::webhooks::Webhooks>,
    /// Gateways whose X-Forwarded-* headers shape the login links they ask
    /// for (`--trusted-proxies`).
    pub trusted_proxies: crate::proxy::forwarded::TrustedProxies,
    /// A node is live while its last heartbeat is younger than this
    /// (`--lease-ttl`).
    pub lease_ttl: std::time::Duration,
}

pub fn router(state: ApiState) -> Router {
    let v1 = Router::new()
        .route(
            "/containers",
            get(containers::list).post(containers::create),
        )
        .route(
            "/containers/{name}",
            get(containers::get)
                .patch(containers::patch)
                .delete(containers::delete),
        )
        .route("/containers/{name}/sleep", post(containers::sleep))
        .route("/containers/{name}/nap", post(containers::nap))
        .route("/containers/{name}/wake", post(containers::wake))
        .route("/containers/{name}/archive", post(containers::archive))
        .route("/containers/{name}/heartbeat", post(containers::heartbeat))
        .route("/containers/{name}/access", post(private_urls::set_access))
        .route(
            "/containers/{name}/tokens",
            get(private_urls::list_tokens).post(private_urls::create_token),
        )
        .route(
            "/containers/{name}/tokens/{id}",
            axum::routing::delete(private_urls::revoke_token),
        )
        .route(
            "/containers/{name}/login-link",
            post(private_urls::login_link),
        )
        .route("/tenants", get(tenants::list).post(tenants::create))
        .route(
            "/tenants/{id}",
            get(tenants::get)
                .patch(tenants::patch)
                .delete(tenants::delete),
        )
        .route(
            "/tenants/{id}/tokens",
            get(tenants::list_tokens).post(tenants::create_token),
        )
        .route(
            "/tenants/{id}/tokens/{token_id}",
            axum::routing::delete(tenants::revoke_token),
        )
        .route(
            "/tenants/{id}/tokens/{token_id}/rotate",
            post(tenants::rotate_token),
        )
        .route("/audit", get(audit::list))
        .route("/events", get(events::stream))
        .route("/webhooks", get(webhooks::list).post(webhooks::create))
        .route("/webhooks/{id}", axum::routing::delete(webhooks::delete))
        .route("/stats", get(stats))
        .route("/nodes", get(nodes::list))
        .route("/openapi.json", get(openapi_json))
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            access::require_token,
        ));
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .merge(ui::router())
        .nest(V1, v1)
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state)
}

async fn healthz() -> Json<serde_json::Value> {
    Json(serde_json::json!({ "status": "ok" }))
}

/// Prometheus text, without a token: it names no container.
async fn metrics(State(state): State<ApiState>) -> Response {
    let lifecycle = &state.lifecycle;
    let text = lifecycle.metrics().render(&lifecycle.count_by_state());
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        text,
    )
        .into_response()
}

/// Counts by state, running containers against the limits, snapshot disk
/// use and dormant's own memory (admin: it describes the whole host; a
/// tenant reads its own usage at `/v1/tenants/{id}`).
#[utoipa::path(get, path = "/v1/stats", responses((status = 200, body = model::Stats), (status = 403, body = error::ErrorBody)), security(("admin" = [])))]
pub(crate) async fn stats(
    State(state): State<ApiState>,
    Extension(caller): Extension<Caller>,
) -> Result<Json<model::Stats>, ApiError> {
    access::admin_only(
        &caller,
        "read host-wide stats; a tenant's own usage is at /v1/tenants/{id}",
    )?;
    let lifecycle = &state.lifecycle;
    let usage = lifecycle.capacity_usage();
    let (snapshot_files, snapshot_bytes) = lifecycle.snapshot_disk_usage();
    Ok(Json(model::Stats {
        containers: lifecycle
            .count_by_state()
            .into_iter()
            .map(|(state, count)| (state.as_str().to_owned(), count))
            .collect(),
        running: usage.running,
        max_running: usage.max_running,
        memory_bytes: usage.memory_bytes,
        memory_budget_bytes: usage.memory_budget_bytes,
        wake_queue: usage.wake_queue,
        snapshot_files,
        snapshot_bytes,
        dormant_rss_bytes: crate::lifecycle::own_rss_bytes().unwrap_or(0),
        wakes_last_hour: lifecycle
            .metrics()
            .wake_history
            .last_hour(crate::domain::now_millis())
            .into_iter()
            .map(model::WakeMinute::from)
            .collect(),
    }))
}

/// axum's own rejection of a body (too large, unreadable) is plain text;
/// every API error is JSON.
fn body_error(rejection: BytesRejection) -> ApiError {
    ApiError::new(rejection.status(), "bad_body", rejection.body_text())
}

async fn openapi_json() -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        openapi::ApiDoc::openapi().to_json().unwrap_or_default(),
    )
        .into_response()
}

async fn method_not_allowed(request: Request) -> ApiError {
    ApiError::new(
        axum::http::StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!(
            "{} is not allowed on {}; see /v1/openapi.json",
            request.method(),
            request.uri().path()
        ),
    )
}

async fn not_found(request: Request) -> ApiError {
    ApiError::new(
        axum::http::StatusCode::NOT_FOUND,
        "no_such_route",
        format!(
            "no API route {} {}; see /v1/openapi.json",
            request.method(),
            request.uri().path()
        ),
    )
}
