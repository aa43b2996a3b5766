//! Beside a gateway (`--gateway nginx`): nginx serves running containers
//! itself and dormant only sees what is asleep, napping, private or
//! unknown. dormant keeps nginx's map of running containers
//! ([`map_writer`]), reads nginx's access log as activity ([`activity`]),
//! and, at its wake endpoint, asks nginx ([`probe`]) whether a woken
//! container is routed before redirecting the client back.

pub mod activity;
pub mod map_writer;
pub mod nginx_map;
pub mod probe;
pub mod reload;

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

pub use probe::NginxProbe;

use crate::domain::now_millis;

/// The path prefix of dormant's wake endpoint on its proxy: the recipe's
/// map sends every host nginx does not serve itself to
/// `http://<dormant>/.dormant/wake<original URI>`. Only requests from
/// `--trusted-proxies` are taken as such.
pub const WAKE_PREFIX: &str = "/.dormant/wake";

/// How long a woken request waits for nginx to route its host to the
/// container (the map written, nginx reloaded) before dormant serves it
/// itself instead of redirecting.
pub const ROUTE_WAIT: Duration = Duration::from_secs(10);

/// How long nginx's old workers may still accept connections after the
/// probe first sees the new map: nginx's master starts the new workers,
/// waits 100 ms, and only then tells the old ones to stop accepting.
const OLD_WORKERS_RETIRE: Duration = Duration::from_millis(150);

/// After a wait for nginx's route failed, how long later wakes ask nginx
/// once instead of waiting: a failing reload costs each of them one probe,
/// not [`ROUTE_WAIT`].
const NOT_ROUTING_FOR: Duration = Duration::from_secs(10);

/// What the proxy needs in offload mode.
#[derive(Debug)]
pub struct Offload {
    probe: NginxProbe,
    /// `<base-domain>`, lowercase, as the map's hostnames end.
    base_domain: String,
    /// Unix ms until which nginx is taken not to be reloading.
    not_routing_until: AtomicI64,
}

impl Offload {
    pub fn new(probe: NginxProbe, base_domain: &str) -> Self {
        Self {
            probe,
            base_domain: base_domain.trim_matches('.').to_ascii_lowercase(),
            not_routing_until: AtomicI64::new(0),
        }
    }

    /// The path a wake endpoint request asks for: the rest after
    /// [`WAKE_PREFIX`], when it is a path.
    pub fn original_path(path: &str) -> Option<&str> {
        path.strip_prefix(WAKE_PREFIX)
            .filter(|rest| rest.starts_with('/'))
    }

    /// Whether nginx sends container `name`'s host to `upstream`, waiting
    /// up to [`ROUTE_WAIT`] for a reload (asking once only, shortly after
    /// such a wait failed).
    pub async fn routed(&self, name: &str, upstream: std::net::SocketAddr) -> bool {
        let host = format!("{name}.{}", self.base_domain);
        let block = nginx_map::upstream_name(name, upstream);
        let now = now_millis();
        let wait = if now < self.not_routing_until.load(Ordering::Relaxed) {
            Duration::ZERO
        } else {
            ROUTE_WAIT
        };
        let routed = self.probe.wait_routed(&host, &block, wait).await;
        if routed {
            // A client's next connection might still land on an old worker.
            tokio::time::sleep(OLD_WORKERS_RETIRE).await;
        }
        if !routed && !wait.is_zero() {
            let until = now_millis().saturating_add(NOT_ROUTING_FOR.as_millis() as i64);
            self.not_routing_until.store(until, Ordering::Relaxed);
            tracing::warn!(%host, %upstream, "nginx did not route a woken container within {ROUTE_WAIT:?} (is --nginx-reload working, and --nginx-probe nginx's probe server?); serving through dormant meanwhile");
        }
        routed
    }
}

/// Longest a nap waits for nginx to stop sending the container requests.
const WITHDRAW_WAIT: Duration = Duration::from_secs(5);

#[async_trait::async_trait]
impl crate::lifecycle::PauseGuard for Offload {
    async fn withdrawn(&self, name: &str, upstream: std::net::SocketAddr) -> bool {
        let host = format!("{name}.{}", self.base_domain);
        let block = nginx_map::upstream_name(name, upstream);
        let withdrawn = self.probe.wait_unrouted(&host, &block, WITHDRAW_WAIT).await;
        if withdrawn {
            tokio::time::sleep(OLD_WORKERS_RETIRE).await;
        }
        withdrawn
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_original_path_follows_the_prefix() {
        assert_eq!(
            Offload::original_path("/.dormant/wake/a?b=1"),
            Some("/a?b=1")
        );
        assert_eq!(Offload::original_path("/.dormant/wake/"), Some("/"));
        assert_eq!(Offload::original_path("/.dormant/wakeful"), None);
        assert_eq!(Offload::original_path("/.dormant/wake"), None);
        assert_eq!(Offload::original_path("/x"), None);
    }
}
