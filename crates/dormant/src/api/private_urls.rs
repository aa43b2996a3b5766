//! Private container URLs in the API: a container's access (public or
//! private), its access tokens, and one-time login links.

use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::HeaderMap;
use axum::http::StatusCode;
use axum::{Extension, Json};
use serde::de::DeserializeOwned;

use super::access::visible_container;
use super::error::{ApiError, ErrorBody};
use super::model::{
    ContainerTokenCreated, ContainerTokenList, ContainerTokenView, ContainerView, LoginLink,
    LoginLinkRequest, SetAccess,
};
use super::ApiState;
use crate::access::login::{check_redirect_path, TooManyPending, LOGIN_PATH};
use crate::access::tokens::TokenError;
use crate::auth::Caller;
use crate::domain::{now_millis, rfc3339, Access};
use crate::listen::ApiPeer;
use crate::proxy::public_url::PublicOrigin;

/// A login link's lifetime when the request gives none.
pub const DEFAULT_LINK_TTL: Duration = Duration::from_secs(60);
/// The longest a login link may wait to be used.
pub const MAX_LINK_TTL: Duration = Duration::from_secs(600);
/// How long to wait when too many links are pending.
const PENDING_FULL_RETRY: Duration = Duration::from_secs(60);

/// Make a container's URL public or private. Takes effect at once: a
/// private container's URL then answers only requests with a container
/// access token, an API token or a login link's session cookie.
#[utoipa::path(
    post,
    path = "/v1/containers/{name}/access",
    params(("name" = String, Path, description = "Container name")),
    request_body = SetAccess,
    responses(
        (status = 200, description = "Changed", body = ContainerView),
        (status = 400, description = "`access` is missing or not `public`/`private`", body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody),
    ),
    security(("admin" = []), ("tenant" = []))
)]
pub async fn set_access(
    State(state): State<ApiState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<ContainerView>, ApiError> {
    let request: SetAccess = parse_body(&body.map_err(super::body_error)?)?.ok_or_else(|| {
        ApiError::invalid(
            "access",
            "is missing; send {\"access\": \"private\"} or \"public\"",
        )
    })?;
    visible_container(&state, &caller.principal, &name).await?;
    state.lifecycle.set_access(&name, request.access).await?;
    let record = visible_container(&state, &caller.principal, &name).await?;
    Ok(Json(state.public.view(&record)))
}

/// Make a container access token: send it as `Authorization: Bearer
/// <token>` to the container's URL. The secret is shown only in this answer.
#[utoipa::path(
    post,
    path = "/v1/containers/{name}/tokens",
    params(("name" = String, Path, description = "Container name")),
    responses(
        (status = 201, description = "Made; the secret is shown this once", body = ContainerTokenCreated),
        (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 409, description = "The container has as many tokens as it may (100)", body = ErrorBody),
    ),
    security(("admin" = []), ("tenant" = []))
)]
pub async fn create_token(
    State(state): State<ApiState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
) -> Result<(StatusCode, Json<ContainerTokenCreated>), ApiError> {
    let record = visible_container(&state, &caller.principal, &name).await?;
    let issued = state
        .access
        .tokens
        .issue(&name, record.created_at)
        .await
        .map_err(|e| match e {
            TokenError::TooMany(_) => {
                ApiError::new(StatusCode::CONFLICT, "too_many_tokens", e.to_string())
            }
            TokenError::Store(e) => crate::lifecycle::LifecycleError::from(e).into(),
        })?;
    tracing::info!(container = %name, id = %issued.id, "container access token made");
    Ok((
        StatusCode::CREATED,
        Json(ContainerTokenCreated {
            id: issued.id,
            token: issued.token,
            container: name,
            created_at: rfc3339(issued.created_at),
        }),
    ))
}

/// List a container's access tokens (ids only, never the secrets).
#[utoipa::path(
    get,
    path = "/v1/containers/{name}/tokens",
    params(("name" = String, Path, description = "Container name")),
    responses((status = 200, body = ContainerTokenList), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("admin" = []), ("tenant" = []))
)]
pub async fn list_tokens(
    State(state): State<ApiState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
) -> Result<Json<ContainerTokenList>, ApiError> {
    let record = visible_container(&state, &caller.principal, &name).await?;
    let tokens = state
        .access
        .tokens
        .list(&name, record.created_at)
        .into_iter()
        .map(|t| ContainerTokenView {
            id: t.id,
            created_at: rfc3339(t.created_at),
        })
        .collect();
    Ok(Json(ContainerTokenList { tokens }))
}

/// Revoke a container access token; it stops working at once.
#[utoipa::path(
    delete,
    path = "/v1/containers/{name}/tokens/{id}",
    params(
        ("name" = String, Path, description = "Container name"),
        ("id" = String, Path, description = "Token id, `tok_...`"),
    ),
    responses((status = 204, description = "Revoked"), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("admin" = []), ("tenant" = []))
)]
pub async fn revoke_token(
    State(state): State<ApiState>,
    Extension(caller): Extension<Caller>,
    Path((name, id)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    visible_container(&state, &caller.principal, &name).await?;
    let revoked = state
        .access
        .tokens
        .revoke(&name, &id)
        .await
        .map_err(crate::lifecycle::LifecycleError::from)?;
    if !revoked {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("container `{name}` has no access token `{id}`; see GET /v1/containers/{name}/tokens"),
        ));
    }
    tracing::info!(container = %name, %id, "container access token revoked");
    Ok(StatusCode::NO_CONTENT)
}

/// Make a one-time login link for a private container: opened in a browser
/// within its time, it signs in to that container's hostname (a session
/// cookie for `--session-ttl`) and goes on to `path`. It works once; links
/// are kept in memory, so a restart of dormant voids those not yet used.
#[utoipa::path(
    post,
    path = "/v1/containers/{name}/login-link",
    params(("name" = String, Path, description = "Container name")),
    request_body(content = Option<LoginLinkRequest>, description = "Optional"),
    responses(
        (status = 200, description = "The link", body = LoginLink),
        (status = 400, description = "`ttl` or `path` is invalid", body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 409, description = "The container is public: its URL needs no login", body = ErrorBody),
        (status = 503, description = "Too many links wait to be used; retry later", body = ErrorBody),
    ),
    security(("admin" = []), ("tenant" = []))
)]
pub async fn login_link(
    State(state): State<ApiState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    peer: Option<Extension<ConnectInfo<ApiPeer>>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<LoginLink>, ApiError> {
    let request: LoginLinkRequest =
        parse_body(&body.map_err(super::body_error)?)?.unwrap_or_default();
    let ttl = match &request.ttl {
        None => DEFAULT_LINK_TTL,
        Some(text) => humantime::parse_duration(text).map_err(|e| {
            ApiError::invalid(
                "ttl",
                format!("`{text}` is not a duration ({e}); write e.g. `60s` or `5m`"),
            )
        })?,
    };
    if ttl < Duration::from_secs(1) || ttl > MAX_LINK_TTL {
        return Err(ApiError::invalid("ttl", "must be between 1s and 10m"));
    }
    let path = request.path.as_deref().unwrap_or("/");
    check_redirect_path(path).map_err(|why| ApiError::invalid("path", why))?;
    let record = visible_container(&state, &caller.principal, &name).await?;
    if record.spec.access != Access::Private {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "conflict",
            format!("container `{name}` is public: its URL needs no login; make it private first (POST /v1/containers/{name}/access)"),
        ));
    }
    let code = state
        .access
        .logins
        .issue(&name, record.created_at, path, ttl, Instant::now())
        .map_err(|e: TooManyPending| ApiError {
            retry_after: Some(PENDING_FULL_RETRY),
            ..ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "overloaded", e.to_string())
        })?;
    let public = &state.public;
    let host = format!("{name}.{}", public.base_domain);
    let login = format!("{LOGIN_PATH}?code={code}");
    let trusted = peer.is_some_and(|Extension(ConnectInfo(ApiPeer(peer)))| {
        state.trusted_proxies.trusts(peer.ip())
    });
    let url = match trusted
        .then(|| PublicOrigin::gateway_for(&headers, &host))
        .flatten()
    {
        Some(origin) => origin.url(&login),
        None => format!("http://{host}{}{login}", public.port_suffix),
    };
    Ok(Json(LoginLink {
        url,
        expires_at: rfc3339(now_millis().saturating_add(ttl.as_millis() as i64)),
    }))
}

/// An optional JSON body: `None` when empty; unknown or invalid fields
/// refused by name.
pub(super) fn parse_body<T: DeserializeOwned>(body: &[u8]) -> Result<Option<T>, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(&mut deserializer)
        .map(Some)
        .map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner();
            if path == "." {
                ApiError::new(StatusCode::BAD_REQUEST, "invalid_field", inner.to_string())
            } else {
                ApiError::invalid(&path, inner)
            }
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_are_optional_and_bad_fields_are_named() {
        let empty: Option<LoginLinkRequest> = parse_body(b"").unwrap();
        assert!(empty.is_none());
        let given: LoginLinkRequest = parse_body(br#"{"ttl":"5m","path":"/x"}"#).unwrap().unwrap();
        assert_eq!(
            (given.ttl.as_deref(), given.path.as_deref()),
            (Some("5m"), Some("/x"))
        );
        let err = parse_body::<LoginLinkRequest>(br#"{"ttl":5}"#).unwrap_err();
        assert!(err.message.contains("`ttl`"), "{}", err.message);
        let err = parse_body::<LoginLinkRequest>(br#"{"where":"/"}"#).unwrap_err();
        assert!(
            err.message.contains("unknown field `where`"),
            "{}",
            err.message
        );
        let err = parse_body::<SetAccess>(br#"{"access":"secret"}"#).unwrap_err();
        assert!(err.message.contains("`access`"), "{}", err.message);
        assert!(parse_body::<SetAccess>(b"not json").is_err());
    }
}
