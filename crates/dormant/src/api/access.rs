//! Who may call the API and what they see: the bearer token resolved to a
//! `Caller` (in the request's extensions), the audit record of every call
//! that changes something, and the one visibility rule for containers.

use axum::extract::{Request, State};
use axum::http::{header, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::{ApiError, ApiState};
use crate::auth::{Caller, Principal};
use crate::domain::{now_millis, ContainerRecord};
use crate::lifecycle::LifecycleError;
use crate::store::audit::AuditEntry;

/// Longest request path kept in the audit log; longer ones are cut.
const MAX_AUDIT_PATH: usize = 256;

/// Resolves the bearer token (401 if unknown or revoked), hands the caller
/// to the handler and, for a call that may change something (any method
/// but GET, HEAD, OPTIONS), records it in the audit log once the handler
/// has answered. Heartbeats are not recorded: they change nothing but the
/// activity clock, and clients send them all the time.
pub(super) async fn require_token(
    State(state): State<ApiState>,
    mut request: Request,
    next: Next,
) -> Response {
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        // The scheme is case-insensitive (RFC 9110 §11.1).
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim());
    let Some(caller) = presented.and_then(|token| state.tokens.resolve(token)) else {
        return ApiError::unauthorized().into_response();
    };
    let audited = !matches!(
        *request.method(),
        Method::GET | Method::HEAD | Method::OPTIONS
    ) && !request.uri().path().ends_with("/heartbeat");
    if !audited {
        request.extensions_mut().insert(caller);
        return next.run(request).await;
    }
    let method = request.method().to_string();
    // Nesting strips the prefix from what the handlers see.
    let path = format!("{}{}", super::V1, request.uri().path());
    let path = bounded(&path, MAX_AUDIT_PATH);
    request.extensions_mut().insert(caller.clone());
    let response = next.run(request).await;
    let entry = AuditEntry {
        id: 0,
        at: now_millis(),
        token_id: caller.token_id,
        principal: caller.principal.owner().to_owned(),
        method,
        path,
        status: response.status().as_u16(),
    };
    // In a task of its own: the change is made, so its record must be
    // written even if the client hangs up now.
    let store = state.store.clone();
    let written = tokio::spawn(async move { store.record_audit(entry).await }).await;
    match written {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::error!(error = %e, "cannot write the audit log"),
        Err(e) => tracing::error!(error = %e, "the audit log's write task failed"),
    }
    response
}

/// At most `max` bytes of `text`, cut at a character boundary.
fn bounded(text: &str, max: usize) -> String {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_owned()
}

/// `name`'s record if `principal` may see it. Another tenant's container
/// is answered exactly as a missing one, so names never leak.
pub(super) async fn visible_container(
    state: &ApiState,
    principal: &Principal,
    name: &str,
) -> Result<ContainerRecord, ApiError> {
    let record = state.lifecycle.get(name).await?;
    if principal.sees(&record.owner) {
        Ok(record)
    } else {
        Err(LifecycleError::NotFound(name.to_owned()).into())
    }
}

/// 403 unless the caller is the admin.
pub(super) fn admin_only(caller: &Caller, what: &str) -> Result<(), ApiError> {
    if caller.principal.is_admin() {
        Ok(())
    } else {
        Err(ApiError::new(
            axum::http::StatusCode::FORBIDDEN,
            "forbidden",
            format!("only the admin token may {what}"),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn audit_paths_are_cut_at_a_character_boundary() {
        assert_eq!(bounded("/v1/containers", 256), "/v1/containers");
        assert_eq!(bounded("abcdef", 3), "abc");
        assert_eq!(bounded("aé", 2), "a");
    }
}
