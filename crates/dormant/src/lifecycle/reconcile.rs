//! Start-up: bring Docker in line with the store.
//!
//! Docker is the truth about what exists, the store about what should. Rows
//! left `creating` by a crash are undone; containers this node labelled but
//! the store doesn't know are removed; every other container gets its route
//! back, running ones at once and the rest brought up in the background.

use std::collections::HashSet;
use std::sync::Arc;

use crate::domain::{ContainerState, LABEL_NAME, LABEL_NODE};
use crate::proxy::routes::RouteStatus;

use super::{Lifecycle, LifecycleError};

impl Lifecycle {
    /// Reconciles the store with Docker. Returns once every route is in the
    /// table; containers that must be started come up in the background.
    pub async fn reconcile(self: &Arc<Self>) -> Result<(), LifecycleError> {
        let records = self.store.list().await?;
        let node = self.config.node.clone();

        // Rows a crash left half-made: the client never heard "created".
        let (unfinished, records): (Vec<_>, Vec<_>) = records
            .into_iter()
            .partition(|r| r.state == ContainerState::Creating);
        if !unfinished.is_empty() {
            tracing::warn!(
                count = unfinished.len(),
                "undoing creations interrupted by a crash"
            );
            self.undo_create(&unfinished).await;
        }

        self.remove_orphans(&records).await;

        let mut to_bring_up = Vec::new();
        for record in records {
            let docker_ref = record
                .docker_id
                .clone()
                .unwrap_or_else(|| record.docker_name());
            let inspection = match self.runtime.inspect(&docker_ref).await {
                Ok(inspection) => inspection,
                Err(e) => {
                    tracing::error!(container = %record.name, error = %e, "cannot inspect at start-up");
                    None
                }
            };
            match inspection {
                Some(i)
                    if i.running
                        && i.upstream.is_some()
                        && record.state == ContainerState::Running =>
                {
                    let upstream = i.upstream.expect("checked above");
                    self.routes.insert(
                        &record.name,
                        RouteStatus::running(upstream),
                        record.last_active_at,
                    );
                }
                _ => {
                    let status = RouteStatus::not_serving(ContainerState::Starting, None);
                    self.routes
                        .insert(&record.name, status, record.last_active_at);
                    to_bring_up.push(record);
                }
            }
        }
        tracing::info!(node = %node, routes = self.routes.len(), starting = to_bring_up.len(), "reconciled with Docker");

        for record in to_bring_up {
            let lifecycle = self.clone();
            tokio::spawn(async move {
                let lock = lifecycle.lock(&record.name);
                let _guard = lock.lock().await;
                lifecycle.bring_up_and_publish(&record).await;
            });
        }
        Ok(())
    }

    /// Brings a known container up and publishes the outcome to the store and
    /// the route. Caller holds the lock.
    async fn bring_up_and_publish(&self, record: &crate::domain::ContainerRecord) {
        let name = &record.name;
        let outcome = self.bring_up(record).await;
        let Some(route) = self.routes.get(name) else {
            return;
        };
        match outcome {
            Ok(upstream) => {
                if let Err(e) = self
                    .store
                    .set_state(name, ContainerState::Running, None)
                    .await
                {
                    tracing::error!(container = %name, error = %e, "cannot record state");
                }
                route.set_status(RouteStatus::running(upstream));
                tracing::info!(container = %name, %upstream, "running again");
            }
            Err(e) => {
                let reason = e.to_string();
                tracing::error!(container = %name, %reason, "failed to start");
                if let Err(e) = self
                    .store
                    .set_state(name, ContainerState::Failed, Some(reason.clone()))
                    .await
                {
                    tracing::error!(container = %name, error = %e, "cannot record state");
                }
                route.set_status(RouteStatus::not_serving(
                    ContainerState::Failed,
                    Some(&reason),
                ));
            }
        }
    }

    /// Removes Docker containers and volumes this node labelled that no row
    /// accounts for: leftovers of a delete or a failed batch cut short.
    async fn remove_orphans(&self, records: &[crate::domain::ContainerRecord]) {
        let node = &self.config.node;
        let known: HashSet<&str> = records.iter().map(|r| r.name.as_str()).collect();
        let is_orphan = |labels: &std::collections::HashMap<String, String>| {
            labels
                .get(LABEL_NAME)
                .is_none_or(|name| !known.contains(name.as_str()))
        };
        match self.runtime.list_labelled(LABEL_NODE, node).await {
            Ok(containers) => {
                for container in containers.iter().filter(|c| is_orphan(&c.labels)) {
                    tracing::warn!(id = %container.id, name = ?container.labels.get(LABEL_NAME), "removing an orphan container");
                    if let Err(e) = self.runtime.remove(&container.id).await {
                        tracing::error!(error = %e, "cannot remove orphan container");
                    }
                }
            }
            Err(e) => tracing::error!(error = %e, "cannot list this node's containers"),
        }
        match self.runtime.list_labelled_volumes(LABEL_NODE, node).await {
            Ok(volumes) => {
                let orphans: Vec<String> = volumes
                    .into_iter()
                    .filter(|v| is_orphan(&v.labels))
                    .map(|v| v.id)
                    .collect();
                if !orphans.is_empty() {
                    tracing::warn!(?orphans, "removing orphan volumes");
                    if let Err(e) = self.runtime.remove_volumes(&orphans).await {
                        tracing::error!(error = %e, "cannot remove orphan volumes");
                    }
                }
            }
            Err(e) => tracing::error!(error = %e, "cannot list this node's volumes"),
        }
    }
}
