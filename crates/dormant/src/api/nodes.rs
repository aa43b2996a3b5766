//! `GET /v1/nodes`: the dormant nodes sharing this store (one per Docker
//! host), whether each is live by its heartbeats, and what it holds.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::access::admin_only;
use super::{ApiError, ApiState};
use crate::auth::Caller;
use crate::domain::rfc3339;

/// One node as it last reported itself to the store.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct NodeView {
    /// Its node id (labels its Docker objects).
    pub name: String,
    /// Where other nodes reach its proxy (`--advertise-addr`); absent for
    /// a node that holds containers but never sent a heartbeat.
    pub advertise_addr: Option<String>,
    /// RFC 3339 time of its last heartbeat, by the store's clock.
    pub last_heartbeat: Option<String>,
    /// Seconds since then, by the store's clock.
    pub seconds_since_heartbeat: Option<f64>,
    /// Whether that heartbeat is younger than `--lease-ttl`.
    pub live: bool,
    /// Whether this is the node that answered.
    pub this_node: bool,
    /// Its containers by state.
    pub containers: BTreeMap<String, i64>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct NodeList {
    /// By name.
    pub nodes: Vec<NodeView>,
    /// Containers no node holds (archived on another node's behalf, or
    /// lost with their node), by state.
    pub unassigned: BTreeMap<String, i64>,
}

/// The nodes sharing this store, and their containers (admin).
#[utoipa::path(
    get,
    path = "/v1/nodes",
    responses((status = 200, body = NodeList), (status = 401, body = super::error::ErrorBody), (status = 403, body = super::error::ErrorBody)),
    security(("admin" = []))
)]
pub async fn list(
    State(state): State<ApiState>,
    Extension(caller): Extension<Caller>,
) -> Result<Json<NodeList>, ApiError> {
    admin_only(&caller, "list the nodes")?;
    let (rows, counts) = tokio::try_join!(state.store.list_nodes(), state.store.count_by_node())
        .map_err(|e| ApiError::from(crate::lifecycle::LifecycleError::from(e)))?;
    let mut by_node: BTreeMap<Option<String>, BTreeMap<String, i64>> = BTreeMap::new();
    for (node, container_state, count) in counts {
        by_node
            .entry(node)
            .or_default()
            .insert(container_state, count);
    }
    let this = state.lifecycle.node();
    let unassigned = by_node.remove(&None).unwrap_or_default();
    let mut nodes: Vec<NodeView> = rows
        .into_iter()
        .map(|row| NodeView {
            this_node: row.name == this,
            live: row.since_heartbeat < state.lease_ttl,
            containers: by_node.remove(&Some(row.name.clone())).unwrap_or_default(),
            last_heartbeat: Some(rfc3339(row.last_heartbeat)),
            seconds_since_heartbeat: Some(row.since_heartbeat.as_secs_f64()),
            advertise_addr: Some(row.advertise_addr),
            name: row.name,
        })
        .collect();
    // Nodes whose rows outlived their heartbeats (or never sent one).
    nodes.extend(by_node.into_iter().filter_map(|(name, containers)| {
        let name = name?;
        Some(NodeView {
            this_node: name == this,
            live: false,
            containers,
            last_heartbeat: None,
            seconds_since_heartbeat: None,
            advertise_addr: None,
            name,
        })
    }));
    nodes.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(Json(NodeList { nodes, unassigned }))
}
