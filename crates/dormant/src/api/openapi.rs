//! The OpenAPI document, generated from the handlers and types so it cannot drift.

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::audit::{AuditPage, AuditView};
use super::error::{ErrorBody, ErrorDetail};
use super::model::{
    ContainerList, ContainerPatch, ContainerTokenCreated, ContainerTokenList, ContainerTokenView,
    ContainerView, CreateContainers, LoginLink, LoginLinkRequest, SetAccess, SnapshotView, Stats,
    WakeMinute,
};
use super::tenant_model::{
    CreateTenant, NewTokenView, QuotasBody, QuotasView, TenantCreated, TenantList, TenantView,
    TokenList, TokenView, UsageView,
};
use super::{audit, containers, events, nodes, private_urls, tenants, webhooks};
use crate::domain::{Access, ContainerState, WakeStrategy};

#[derive(OpenApi)]
#[openapi(
    info(title = "dormant", description = "Containers that seem to live forever: create them, reach them at <name>.<base-domain>, and let dormant put idle ones to sleep."),
    paths(
        containers::create,
        containers::list,
        containers::get,
        containers::patch,
        containers::delete,
        containers::sleep,
        containers::nap,
        containers::wake,
        containers::heartbeat,
        containers::archive,
        private_urls::set_access,
        private_urls::create_token,
        private_urls::list_tokens,
        private_urls::revoke_token,
        private_urls::login_link,
        super::stats,
        nodes::list,
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
        nodes::NodeView, nodes::NodeList,
        crate::events::Event, crate::events::EventKind,
        webhooks::CreateWebhook, webhooks::WebhookView, webhooks::WebhookCreated, webhooks::WebhookList,
        Access, SetAccess, ContainerTokenCreated, ContainerTokenView, ContainerTokenList, LoginLinkRequest, LoginLink, ContainerPatch)),
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
        // Not for this API: what a private container's URL on the proxy takes.
        components.add_security_scheme(
            "container_token",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("dmc_...")
                    .description(Some(
                        "For a private container's URL on the proxy, not for this API: a container access token from POST /v1/containers/{name}/tokens (or an API token of its tenant). Browsers use a one-time login link instead (POST /v1/containers/{name}/login-link), which sets the `dormant_session` cookie for that hostname.",
                    ))
                    .build(),
            ),
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
            "/v1/nodes",
            "/v1/containers/{name}/access",
            "/v1/containers/{name}/tokens",
            "/v1/containers/{name}/tokens/{id}",
            "/v1/containers/{name}/login-link",
        ] {
            assert!(paths.iter().any(|p| *p == path), "{path}: {paths:?}");
        }
        let json = doc.to_json().unwrap();
        assert!(json.contains("idle_timeout") && json.contains("bearer"));
        let schemes = &doc.components.as_ref().unwrap().security_schemes;
        assert!(schemes.contains_key("admin") && schemes.contains_key("tenant"));
        assert!(schemes.contains_key("container_token"));
        assert!(json.contains("\"private\"") && json.contains("LoginLink"));
        assert!(json.contains("dormant_session"));
    }
}
