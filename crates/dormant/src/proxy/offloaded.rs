//! The wake endpoint beside nginx (`--gateway nginx`): nginx sends every
//! host it does not serve itself to `/.dormant/wake<original URI>` on
//! dormant's proxy. A public container is woken (or unpaused) there, and
//! once nginx routes its host to it (asked of nginx, never assumed) the
//! client gets `307` back to its original URL: same method, same body, now
//! served by nginx alone. If nginx does not route it in time, dormant
//! serves the request itself, so a failing reload never loops a client.

use std::net::SocketAddr;
use std::sync::Arc;

use http::uri::PathAndQuery;

use super::budget::HoldBudget;
use super::error::ProxyError;
use super::waker::Waker;
use crate::lifecycle::table::Route;
use crate::offload::Offload;

/// Whether `path` came through the wake endpoint; if so, the original path.
pub fn wake_endpoint(
    offload: &Offload,
    path: PathAndQuery,
) -> Result<(Option<&Offload>, PathAndQuery), ProxyError> {
    match Offload::original_path(path.as_str()) {
        None => Ok((None, path)),
        Some(original) => {
            let original = PathAndQuery::try_from(original).map_err(|_| ProxyError::BadTarget {
                reason: "the wake endpoint's original path is not a valid path",
            })?;
            Ok((Some(offload), original))
        }
    }
}

/// What a wake at the endpoint came to.
pub enum Woken {
    /// Awake, and nginx now sends its host to it: redirect the client.
    Routed,
    /// Awake at this upstream, but nginx did not route it in time: serve
    /// the request here.
    NotRouted(SocketAddr),
}

/// Wakes the route's container (joining a wake in flight) and waits for
/// nginx to route it. The whole wait counts against the hold budget
/// (`--max-held-requests`), and is bounded by `--wake-timeout` plus
/// [`crate::offload::ROUTE_WAIT`].
pub async fn wake_and_route(
    offload: &Offload,
    waker: &dyn Waker,
    route: &Arc<Route>,
    budget: &Arc<HoldBudget>,
) -> Result<Woken, ProxyError> {
    let _ticket = budget.try_hold(0).map_err(|refused| ProxyError::HoldFull {
        name: route.name().to_owned(),
        refused,
    })?;
    let upstream = waker
        .ready_upstream(route)
        .await
        .map_err(|error| ProxyError::Wake {
            name: route.name().to_owned(),
            error,
        })?;
    Ok(if offload.routed(route.name(), upstream).await {
        Woken::Routed
    } else {
        tracing::info!(container = %route.name(), %upstream, "nginx does not route it yet: served through dormant");
        Woken::NotRouted(upstream)
    })
}
