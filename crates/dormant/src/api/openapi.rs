//! The OpenAPI document, generated from the handlers and types so it cannot drift.

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::error::{ErrorBody, ErrorDetail};
use super::model::{
    ContainerList, ContainerTokenCreated, ContainerTokenList, ContainerTokenView, ContainerView,
    CreateContainers, LoginLink, LoginLinkRequest, SetAccess, SnapshotView, Stats,
};
use super::{access, containers};
use crate::domain::{Access, ContainerState, WakeStrategy};

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
        access::set_access,
        access::create_token,
        access::list_tokens,
        access::revoke_token,
        access::login_link,
        super::stats
    ),
    components(schemas(CreateContainers, ContainerView, SnapshotView, Stats, ContainerList, ContainerState, WakeStrategy, Access, SetAccess, ContainerTokenCreated, ContainerTokenView, ContainerTokenList, LoginLinkRequest, LoginLink, ErrorBody, ErrorDetail)),
    modifiers(&BearerAuth)
)]
pub struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
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
            "/v1/containers/{name}/access",
            "/v1/containers/{name}/tokens",
            "/v1/containers/{name}/tokens/{id}",
            "/v1/containers/{name}/login-link",
        ] {
            assert!(
                paths.iter().any(|p| *p == path),
                "{path} missing: {paths:?}"
            );
        }
        let json = doc.to_json().unwrap();
        assert!(json.contains("idle_timeout") && json.contains("bearer"));
        assert!(json.contains("\"private\"") && json.contains("LoginLink"));
        assert!(json.contains("container_token") && json.contains("dormant_session"));
    }
}
