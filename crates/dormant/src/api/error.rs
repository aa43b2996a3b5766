//! API errors and the one place they become `{"error": {code, message}}`.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::lifecycle::LifecycleError;
use crate::proxy::waker::WakeErrorKind;
use crate::runtime::RuntimeError;

/// An error the API answers with: a status, a stable machine-readable code and
/// a message that says what went wrong and what to do.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct ErrorDetail {
    /// Stable code, e.g. `invalid_field`, `not_found`, `name_taken`, `docker_failed`.
    pub code: String,
    /// What went wrong, for a person.
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }

    /// 400 naming the field at fault.
    pub fn invalid(field: &str, why: impl std::fmt::Display) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "invalid_field",
            format!("field `{field}` {why}"),
        )
    }

    pub fn unauthorized() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "missing or wrong bearer token; send `Authorization: Bearer <token>` (the admin token is in DORMANT_ADMIN_TOKEN or <data-dir>/admin-token)",
        )
    }
}

impl From<LifecycleError> for ApiError {
    fn from(err: LifecycleError) -> Self {
        let message = err.to_string();
        let (status, code) = match &err {
            LifecycleError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            LifecycleError::NameTaken(_) => (StatusCode::CONFLICT, "name_taken"),
            LifecycleError::ImageNotPresent(_) => (StatusCode::BAD_REQUEST, "image_not_present"),
            LifecycleError::Invalid { field, message } => {
                return ApiError::invalid(field, message);
            }
            LifecycleError::Runtime {
                source: RuntimeError::Conflict { .. },
                ..
            } => (StatusCode::CONFLICT, "docker_conflict"),
            LifecycleError::Runtime { .. } => (StatusCode::BAD_GATEWAY, "docker_failed"),
            LifecycleError::NotReady { .. } => (StatusCode::BAD_GATEWAY, "not_ready"),
            LifecycleError::Wake { error, .. } => match error.kind {
                WakeErrorKind::Failed => (StatusCode::BAD_GATEWAY, "wake_failed"),
                WakeErrorKind::BackingOff => (StatusCode::SERVICE_UNAVAILABLE, "wake_backing_off"),
                WakeErrorKind::TimedOut => (StatusCode::GATEWAY_TIMEOUT, "wake_timed_out"),
                WakeErrorKind::Deleted => (StatusCode::NOT_FOUND, "not_found"),
                WakeErrorKind::NoRoom => (StatusCode::SERVICE_UNAVAILABLE, "no_room"),
            },
            LifecycleError::ArchiveUnsupported(_) => (StatusCode::CONFLICT, "archive_unsupported"),
            LifecycleError::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
            LifecycleError::Snapshot { .. } => {
                (StatusCode::INTERNAL_SERVER_ERROR, "snapshot_failed")
            }
            LifecycleError::Store(_) => (StatusCode::INTERNAL_SERVER_ERROR, "store_failed"),
        };
        if status.is_server_error() {
            tracing::error!(%status, %message, "API call failed");
        }
        ApiError::new(status, code, message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code.to_owned(),
                message: self.message,
            },
        };
        let mut response = (self.status, axum::Json(body)).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}
