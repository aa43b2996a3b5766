//! The OpenAPI document, generated from the handlers and types so it cannot drift.

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::audit::{AuditPage, AuditView};
use super::error::{ErrorBody, ErrorDetail};
use super::model::{
    ContainerList, ContainerView, CreateContainers, SnapshotView, Stats, WakeMinute,
};
use super::tenant_model::{
    CreateTenant, NewTokenView, QuotasBody, QuotasView, TenantCreated, TenantList, TenantView,
    TokenList, TokenView, UsageView,
};
use super::{audit, containers, events, tenants, webhooks};
use crate::domain::{ContainerState, WakeStrategy};

#[derive(OpenApi)]
#[openapi(
    info(title = "dormant", description = "Containers that seem to live forever: create them, reach them at <name>.<base-domain>, and let dormant put idle ones to sleep."),
    paths(
        containers::create,
        containers::list,
        containers::get,
        containers::delete,
        containers::sleep,
        containers::wake,
        containers::heartbeat,
        containers::archive,
        super::stats,
        tenants::create,
        tenants::list,
        tenants::get,
        tenants::patch,
        tenants::delete,
        tenants::list_tokens,
        tenants::create_token,
        tenants::rotate_token,
        tenants::revoke_token,
        audit::list,
        events::stream,
        webhooks::create,
        webhooks::list,
        webhooks::delete
    ),
    components(schemas(CreateContainers, ContainerView, SnapshotView, Stats, WakeMinute, ContainerList, ContainerState, WakeStrategy, ErrorBody, ErrorDetail,
        CreateTenant, QuotasBody, QuotasView, UsageView, TenantView, TenantList, TenantCreated, TokenView, TokenList, NewTokenView, AuditView, AuditPage,
        crate::events::Event, crate::events::EventKind,
        webhooks::CreateWebhook, webhooks::WebhookView, webhooks::WebhookCreated, webhooks::WebhookList)),
    modifiers(&BearerAuth)
)]
pub struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        let bearer = |what: &str| {
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(what))
                    .build(),
            )
        };
        components.add_security_scheme(
            "admin",
            bearer("The admin token (DORMANT_ADMIN_TOKEN or <data-dir>/admin-token): sees and manages everything."),
        );
        components.add_security_scheme(
            "tenant",
            bearer("A tenant's API token (`dmt_...`, from POST /v1/tenants or its tokens): sees and manages only the tenant's own containers; another tenant's are 404."),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_document_lists_every_route() {
        let doc = ApiDoc::openapi();
        let paths: Vec<&String> = doc.paths.paths.keys().collect();
        assert!(paths.iter().any(|p| *p == "/v1/containers"), "{paths:?}");
        assert!(
            paths.iter().any(|p| *p == "/v1/containers/{name}"),
            "{paths:?}"
        );
        for path in [
            "/v1/tenants",
            "/v1/tenants/{id}/tokens/{token_id}/rotate",
            "/v1/audit",
        ] {
            assert!(paths.iter().any(|p| *p == path), "{path}: {paths:?}");
        }
        let json = doc.to_json().unwrap();
        assert!(json.contains("idle_timeout") && json.contains("bearer"));
        let schemes = &doc.components.as_ref().unwrap().security_schemes;
        assert!(schemes.contains_key("admin") && schemes.contains_key("tenant"));
    }
}
