//! The Docker networks containers join: dormant's own for the admin's
//! containers, and one per tenant, made on first use, so a tenant's
//! containers can never reach another tenant's.

use std::collections::HashMap;
use std::sync::Mutex;

use bollard::errors::Error as BollardError;
use bollard::models::NetworkCreateRequest;
use bollard::Docker;

use super::is_not_found;
use crate::domain::{ADMIN_TENANT, LABEL_NODE, LABEL_TENANT};

/// Dormant's network and the tenants' networks it has made or found.
pub struct Networks {
    /// `--network`: the admin's containers join it; tenants' networks are
    /// named after it (`<base>-t-<tenant>`).
    base_name: String,
    base_id: String,
    /// Labels every network dormant makes carries.
    labels: HashMap<String, String>,
    /// Tenant id -> network id, for the tenants seen since start-up.
    tenants: Mutex<HashMap<String, String>>,
    /// One network creation at a time: two first containers of a new tenant
    /// made at once must not make two networks.
    creating: tokio::sync::Mutex<()>,
}

impl Networks {
    /// Makes (or finds) dormant's own network `name`.
    pub async fn new(
        docker: &Docker,
        name: &str,
        labels: HashMap<String, String>,
    ) -> anyhow::Result<Self> {
        let base_id = ensure(docker, name, labels.clone()).await?;
        Ok(Self {
            base_name: name.to_owned(),
            base_id,
            labels,
            tenants: Mutex::new(HashMap::new()),
            creating: tokio::sync::Mutex::new(()),
        })
    }

    /// The network name of `tenant`'s containers.
    pub fn name_for(&self, tenant: &str) -> String {
        if tenant == ADMIN_TENANT {
            self.base_name.clone()
        } else {
            format!("{}-t-{tenant}", self.base_name)
        }
    }

    /// The id of the network `tenant`'s containers join, made if missing
    /// and then labelled with the `node` that made it.
    pub async fn id_for(
        &self,
        docker: &Docker,
        tenant: &str,
        node: Option<&str>,
    ) -> anyhow::Result<String> {
        if tenant == ADMIN_TENANT {
            return Ok(self.base_id.clone());
        }
        if let Some(id) = self.known(tenant) {
            return Ok(id);
        }
        let _one_at_a_time = self.creating.lock().await;
        if let Some(id) = self.known(tenant) {
            return Ok(id);
        }
        let mut labels = self.labels.clone();
        labels.insert(LABEL_TENANT.to_owned(), tenant.to_owned());
        if let Some(node) = node {
            labels.insert(LABEL_NODE.to_owned(), node.to_owned());
        }
        let id = ensure(docker, &self.name_for(tenant), labels).await?;
        self.tenants
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
            .insert(tenant.to_owned(), id.clone());
        Ok(id)
    }

    fn known(&self, tenant: &str) -> Option<String> {
        self.tenants
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
            .get(tenant)
            .cloned()
    }

    /// Removes `tenant`'s network (a tenant that is gone); a missing one is
    /// not an error.
    pub async fn remove(&self, docker: &Docker, tenant: &str) -> Result<(), BollardError> {
        let _one_at_a_time = self.creating.lock().await;
        self.tenants
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
            .remove(tenant);
        match docker.remove_network(&self.name_for(tenant)).await {
            Err(e) if is_not_found(&e) => Ok(()),
            other => other,
        }
    }

    /// Whether `id` is one of the networks dormant put containers on.
    pub fn is_ours(&self, id: &str) -> bool {
        id == self.base_id
            || self
                .tenants
                .lock()
                .unwrap_or_else(|poison| poison.into_inner())
                .values()
                .any(|known| known == id)
    }
}

/// Makes the bridge network `name` if missing (containers on it cannot
/// talk to each other) and returns its id.
async fn ensure(
    docker: &Docker,
    name: &str,
    labels: HashMap<String, String>,
) -> anyhow::Result<String> {
    if named(docker, name).await?.is_empty() {
        let request = NetworkCreateRequest {
            name: name.to_owned(),
            driver: Some("bridge".into()),
            labels: Some(labels),
            options: Some(HashMap::from([(
                // Users' containers never reach each other.
                "com.docker.network.bridge.enable_icc".to_owned(),
                "false".to_owned(),
            )])),
            ..Default::default()
        };
        docker.create_network(request).await.map_err(|e| {
            let hint = if e.to_string().contains("address pool") {
                "; Docker has no address range left for another network: give it more \
                 (`default-address-pools` in daemon.json) or remove unused networks"
            } else {
                ""
            };
            anyhow::anyhow!("docker network create {name} failed: {e}{hint}")
        })?;
    }
    // Docker lets two dormants starting at once both create `name`. Every
    // one of them keeps the network with the lowest id and removes the
    // others, so they all end up on the same one.
    let mut ids = named(docker, name).await?;
    ids.sort();
    for duplicate in ids.iter().skip(1) {
        match docker.remove_network(duplicate).await {
            Ok(()) => {}
            Err(e) if is_not_found(&e) => {}
            Err(e) => {
                tracing::warn!(network = %duplicate, error = %e, "cannot remove a duplicate network")
            }
        }
    }
    // By id: a name another dormant is still deduplicating is ambiguous.
    ids.into_iter()
        .next()
        .ok_or_else(|| anyhow::anyhow!("docker network {name} vanished right after it was made"))
}

/// Ids of the networks whose name is exactly `name`.
async fn named(docker: &Docker, name: &str) -> anyhow::Result<Vec<String>> {
    let options = bollard::query_parameters::ListNetworksOptions {
        filters: Some(HashMap::from([("name".to_owned(), vec![name.to_owned()])])),
    };
    let networks = docker
        .list_networks(Some(options))
        .await
        .map_err(|e| anyhow::anyhow!("docker network ls failed: {e}"))?;
    // The name filter matches substrings.
    Ok(networks
        .into_iter()
        .filter(|n| n.name.as_deref() == Some(name))
        .filter_map(|n| n.id)
        .collect())
}
