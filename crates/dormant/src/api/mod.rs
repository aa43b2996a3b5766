//! The REST API under `/v1`: JSON in and out, bearer-token auth, errors in
//! one shape. Handlers only translate; lifecycle does the work.

mod access;
mod containers;
pub mod create_request;
mod error;
mod image_ref;
pub mod model;
mod openapi;

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use utoipa::OpenApi;

use crate::access::AccessControl;
use crate::lifecycle::Lifecycle;
use crate::token::constant_time_eq;
pub use create_request::CreateDefaults;
pub use error::ApiError;
use model::PublicAddress;

/// What every handler can reach.
#[derive(Clone)]
pub struct ApiState {
    pub lifecycle: Arc<Lifecycle>,
    pub admin_token: Arc<str>,
    pub public: Arc<PublicAddress>,
    pub create_defaults: Arc<CreateDefaults>,
    /// Private containers' tokens, login links and sessions.
    pub access: Arc<AccessControl>,
}

pub fn router(state: ApiState) -> Router {
    let v1 = Router::new()
        .route(
            "/containers",
            get(containers::list).post(containers::create),
        )
        .route(
            "/containers/{name}",
            get(containers::get).delete(containers::delete),
        )
        .route("/containers/{name}/sleep", post(containers::sleep))
        .route("/containers/{name}/wake", post(containers::wake))
        .route("/containers/{name}/archive", post(containers::archive))
        .route("/containers/{name}/heartbeat", post(containers::heartbeat))
        .route("/containers/{name}/access", post(access::set_access))
        .route(
            "/containers/{name}/tokens",
            get(access::list_tokens).post(access::create_token),
        )
        .route(
            "/containers/{name}/tokens/{id}",
            axum::routing::delete(access::revoke_token),
        )
        .route("/containers/{name}/login-link", post(access::login_link))
        .route("/stats", get(stats))
        .route("/openapi.json", get(openapi_json))
        .route_layer(middleware::from_fn_with_state(state.clone(), require_token));
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .nest("/v1", v1)
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state)
}

async fn require_token(State(state): State<ApiState>, request: Request, next: Next) -> Response {
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        // The scheme is case-insensitive (RFC 9110 §11.1).
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim());
    match presented {
        Some(token) if constant_time_eq(token.as_bytes(), state.admin_token.as_bytes()) => {
            next.run(request).await
        }
        _ => ApiError::unauthorized().into_response(),
    }
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
/// use and dormant's own memory.
#[utoipa::path(get, path = "/v1/stats", responses((status = 200, body = model::Stats)), security(("bearer" = [])))]
pub(crate) async fn stats(State(state): State<ApiState>) -> Json<model::Stats> {
    let lifecycle = &state.lifecycle;
    let usage = lifecycle.capacity_usage();
    let (snapshot_files, snapshot_bytes) = lifecycle.snapshot_disk_usage();
    Json(model::Stats {
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
    })
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
