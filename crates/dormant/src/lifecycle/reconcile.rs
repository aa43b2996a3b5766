//! Start-up: bring Docker in line with the store.
//!
//! Docker is the truth about what exists, the store about what should. Rows
//! left `creating` by a crash are undone; containers this node labelled but
//! the store doesn't know are removed. Every other container gets its route
//! back in the state Docker shows: running ones serve at once, the rest are
//! `asleep` and wake on their next request, and one caught mid-wake finishes
//! its wake. Nothing is started at start-up that nobody asked for.

use std::collections::HashSet;
use std::sync::Arc;

use crate::domain::{ContainerRecord, ContainerState, LABEL_NAME, LABEL_NODE};
use crate::proxy::routes::RouteStatus;

use super::{docker_ref, Lifecycle, LifecycleError};

impl Lifecycle {
    /// Reconciles the store with Docker. Returns once every route is in the
    /// table.
    pub async fn reconcile(self: &Arc<Self>) -> Result<(), LifecycleError> {
        let records = self.store.list().await?;

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

        let (mut running, mut asleep, mut finishing) = (0, 0, Vec::new());
        for record in records {
            let inspection = match self.runtime.inspect(&docker_ref(&record)).await {
                Ok(inspection) => inspection,
                Err(e) => {
                    tracing::error!(container = %record.name, error = %e, "cannot inspect at start-up; treating it as asleep");
                    None
                }
            };
            let config = self.route_config(&record.spec);
            let upstream = inspection
                .as_ref()
                .filter(|i| i.running)
                .and_then(|i| i.upstream);
            let status = match (record.state, upstream) {
                // Caught mid-wake: the wake is finished below.
                (ContainerState::Starting, _) => {
                    RouteStatus::not_serving(ContainerState::Starting, None)
                }
                (_, Some(upstream)) => {
                    if record.state == ContainerState::Asleep {
                        tracing::info!(container = %record.name, "was started outside dormant; serving it");
                    }
                    RouteStatus::running(upstream)
                }
                (ContainerState::Running, None) => {
                    let reason = if inspection.is_none() {
                        "its Docker container was removed outside dormant; the next request recreates it"
                    } else {
                        "it was stopped outside dormant"
                    };
                    tracing::warn!(container = %record.name, "{reason}");
                    RouteStatus::not_serving(ContainerState::Asleep, Some(reason))
                }
                // Keep the reason; the next request tries again at once.
                (ContainerState::Failed, None) => RouteStatus::failed(
                    record.reason.as_deref().unwrap_or("it failed"),
                    tokio::time::Instant::now(),
                ),
                (_, None) => RouteStatus::not_serving(ContainerState::Asleep, None),
            };
            let state = status.state;
            let route =
                self.routes
                    .insert(&record.name, config, status.clone(), record.last_active_at);
            if state != record.state {
                self.transition(&route, status).await?;
            } else {
                self.publish(&route, status);
            }
            match state {
                ContainerState::Running => running += 1,
                ContainerState::Starting => finishing.push(route),
                _ => asleep += 1,
            }
        }
        tracing::info!(
            node = %self.config.node,
            running,
            asleep,
            finishing_wakes = finishing.len(),
            "reconciled with Docker"
        );
        for route in finishing {
            self.begin_wake(&route);
        }
        Ok(())
    }

    /// Removes Docker containers and volumes this node labelled that no row
    /// accounts for: leftovers of a delete or a failed batch cut short.
    async fn remove_orphans(&self, records: &[ContainerRecord]) {
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
