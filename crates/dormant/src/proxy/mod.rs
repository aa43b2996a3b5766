//! The reverse proxy: routes each request by its Host header (a trusted
//! gateway's X-Forwarded-Host, when it sends one) to the
//! container's upstream and forwards it.
//!
//! It knows nothing of Docker or SQL. For a running container the hot path is:
//! classify the target, look the route up in memory, record activity (an
//! atomic store), forward over a pooled connection. It faces the internet,
//! so every input is bounded (see [`EdgeLimits`]).

mod accept;
mod body;
mod budget;
mod error;
mod forward;
pub mod forwarded;
mod gate;
mod head_timer;
pub mod host;
pub mod no_wake;
mod offloaded;
pub mod public_url;
pub mod rate_limit;
mod spread;
pub mod target;
mod upstream_pool;
pub mod wake_filter;
#[cfg(test)]
mod wake_filter_tests;
pub mod waker;
mod waking;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{header, HeaderValue, Request, Response, StatusCode};
use http_body_util::{Either, Full};
use hyper::body::Incoming;
use tokio::sync::watch;

use crate::access::AccessControl;
use crate::domain::{Access, ContainerState, WakeStrategy};
use crate::lifecycle::table::ContainerTable;
use crate::metrics::Metrics;
use crate::offload::Offload;
use body::{RequestBody, TrackedBody};
pub use budget::{ConnectionLimit, HoldBudget};
use error::ALLOWED_METHODS;
pub use error::{NotAdmitted, ProxyError};
use forward::{forward, Hop};
use forwarded::TrustedProxies;
use target::{classify_behind, RouteTarget};
use upstream_pool::UpstreamPool;
use wake_filter::WakeFilter;
use waker::Waker;

/// What the proxy answers with: the upstream's streamed body, or dormant's own
/// short answer.
pub type ProxyBody = Either<TrackedBody, Full<Bytes>>;

/// The limits of the proxy's edge, from `dormant serve`'s flags.
#[derive(Debug, Clone)]
pub struct EdgeLimits {
    /// Longest time to send a request head (`--header-timeout`).
    pub header_timeout: Duration,
    /// Longest idle time between requests (`--idle-connection-timeout`).
    pub idle_connection_timeout: Duration,
    /// Most header fields in a request head (`--max-request-headers`).
    pub max_request_headers: usize,
    /// Most bytes in a request head (`--max-request-head`).
    pub max_request_head: usize,
    /// Longest wait for a container's response head (`--upstream-timeout`).
    pub upstream_timeout: Duration,
    /// Peers whose `X-Forwarded-*` headers are kept (`--trusted-proxies`).
    pub trusted_proxies: TrustedProxies,
}

/// What every proxy thread shares.
#[derive(Clone)]
pub struct ProxyParts {
    pub routes: Arc<ContainerTable>,
    pub waker: Arc<dyn Waker>,
    pub base_domain: String,
    pub read_ahead_limit: usize,
    pub metrics: Arc<Metrics>,
    pub limits: EdgeLimits,
    /// Open connections of all threads together (`--max-connections`).
    pub connections: Arc<ConnectionLimit>,
    /// What held requests of all threads may keep (`--max-held-requests`,
    /// `--wake-buffer-total`).
    pub holds: Arc<HoldBudget>,
    /// Which requests may wake a container or count as activity; its rate
    /// limits are shared by all threads.
    pub wake_filter: Arc<WakeFilter>,
    /// Who may reach private containers.
    pub access: Arc<AccessControl>,
    /// Beside nginx (`--gateway nginx`): the wake endpoint's probe.
    pub offload: Option<Arc<Offload>>,
}

/// Serves the proxy on `threads` threads, each with a single-threaded
/// runtime and its own upstream connection pool, until `stopped` turns true.
/// One accept loop, on the caller's runtime, hands each connection to the
/// thread with the fewest open (see `spread`).
///
/// Why not the shared multi-threaded runtime: a proxied request hops between
/// the client's connection task and the upstream connection's task; on a
/// work-stealing runtime those hops often cross threads (a futex wake-up
/// each). Keeping a connection's whole path on one thread is how nginx
/// works, and it measured faster here (see bench/RESULTS.md).
pub fn serve_per_core(
    parts: ProxyParts,
    listener: std::net::TcpListener,
    threads: usize,
    stopped: watch::Receiver<bool>,
    drain: Duration,
) -> std::io::Result<tokio::task::JoinHandle<()>> {
    let mut handles = Vec::with_capacity(threads);
    let mut inboxes = Vec::with_capacity(threads);
    for index in 0..threads.max(1) {
        let (inbox, handed) = spread::inbox();
        inboxes.push(inbox);
        let parts = parts.clone();
        let mut stopped = stopped.clone();
        let handle = std::thread::Builder::new()
            .name(format!("dormant-proxy-{index}"))
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(runtime) => runtime,
                    Err(e) => {
                        tracing::error!(error = %e, "cannot start a proxy thread's runtime");
                        return;
                    }
                };
                runtime.block_on(async move {
                    let proxy = Arc::new(Proxy::new(parts));
                    let stop = async move {
                        let _ = stopped.wait_for(|stop| *stop).await;
                    };
                    proxy.run(handed, stop, drain).await;
                });
            })?;
        handles.push(handle);
    }
    let mut stop_accepting = stopped;
    let accepting = tokio::spawn(spread::spread(
        listener,
        inboxes,
        parts.connections.clone(),
        parts.metrics.refused_connections.clone(),
        async move {
            let _ = stop_accepting.wait_for(|stop| *stop).await;
        },
    ));
    Ok(tokio::spawn(async move {
        match accepting.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::error!(error = %e, "the proxy stopped accepting connections"),
            Err(e) => tracing::error!(error = %e, "the proxy's accept loop failed"),
        }
        let _ = tokio::task::spawn_blocking(move || {
            for handle in handles {
                let _ = handle.join();
            }
        })
        .await;
    }))
}

/// Shared by every connection one proxy thread serves.
pub struct Proxy {
    routes: Arc<ContainerTable>,
    waker: Arc<dyn Waker>,
    base_domain: String,
    /// This thread's keep-alive connections to containers.
    upstreams: UpstreamPool,
    /// Request body bytes read ahead while a container wakes (`--wake-buffer`).
    read_ahead_limit: usize,
    limits: EdgeLimits,
    holds: Arc<HoldBudget>,
    wake_filter: Arc<WakeFilter>,
    access: Arc<AccessControl>,
    offload: Option<Arc<Offload>>,
    metrics: Arc<Metrics>,
    /// Requests answered, by status class (`1xx` at 0 .. `5xx` at 4).
    answered: [prometheus_client::metrics::counter::Counter; 5],
}

impl Proxy {
    pub fn new(parts: ProxyParts) -> Self {
        Self {
            routes: parts.routes,
            waker: parts.waker,
            base_domain: parts.base_domain.trim_matches('.').to_ascii_lowercase(),
            upstreams: UpstreamPool::new(Default::default()),
            read_ahead_limit: parts.read_ahead_limit,
            limits: parts.limits,
            holds: parts.holds,
            wake_filter: parts.wake_filter,
            access: parts.access,
            offload: parts.offload,
            answered: parts.metrics.proxy_request_counters(),
            metrics: parts.metrics,
        }
    }

    /// Answers one request from `client_addr`; `trusted` when that peer is
    /// in `--trusted-proxies`.
    async fn handle(
        &self,
        client: &Client,
        req: Request<Incoming>,
    ) -> Result<Response<ProxyBody>, Infallible> {
        let client_addr = client.addr;
        let arrived = std::time::Instant::now();
        let html = waking::accepts_html(req.headers());
        let response = match self.route_and_forward(client, req).await {
            Ok(response) => response,
            Err(error) => {
                if matches!(error, ProxyError::HoldFull { .. }) {
                    self.metrics.refused_holds.inc();
                }
                // The person sees the name and a reason (`Display`); the log
                // keeps upstream addresses and causes (`Debug`).
                if matches!(
                    error.status(),
                    StatusCode::BAD_GATEWAY | StatusCode::GATEWAY_TIMEOUT
                ) {
                    tracing::warn!(client = %client_addr, ?error, "proxy answered with an error");
                } else {
                    tracing::debug!(client = %client_addr, ?error, "proxy answered with an error");
                }
                error.into_response(html).map(Either::Right)
            }
        };
        let class = (response.status().as_u16() / 100).clamp(1, 5) as usize - 1;
        self.answered[class].inc();
        self.metrics
            .proxy_duration
            .observe(arrived.elapsed().as_secs_f64());
        Ok(response)
    }

    async fn route_and_forward(
        &self,
        client: &Client,
        req: Request<Incoming>,
    ) -> Result<Response<ProxyBody>, ProxyError> {
        let (client_addr, trusted) = (client.addr, client.trusted);
        let (mut parts, body) = req.into_parts();
        // Only a trusted gateway may say which host the client asked for.
        let forwarded_host = if trusted {
            public_url::forwarded_host(&parts.headers)
        } else {
            Ok(None)
        };
        let found = forwarded_host
            .and_then(|forwarded_host| {
                classify_behind(
                    &parts.method,
                    &parts.uri,
                    parts.headers.get_all(header::HOST),
                    forwarded_host,
                    &self.base_domain,
                )
            })
            .and_then(|target| match target {
                RouteTarget::ServerOptions => Ok(None),
                RouteTarget::Container { name, path } => match self.routes.get(&name) {
                    Some(route) => Ok(Some((route, path))),
                    None => Err(ProxyError::UnknownContainer {
                        name: name.into_owned(),
                    }),
                },
            })
            .map_err(|error| {
                self.wake_filter
                    .unknown_host(error, client_addr, trusted, &parts.headers)
            })?;
        let Some((route, path)) = found else {
            return Ok(server_options().map(Either::Right));
        };
        // nginx sends every host it does not serve itself to the wake
        // endpoint, with the original path after its prefix.
        let (offload, path) = match self.offload.as_deref().filter(|_| trusted) {
            Some(offload) => offloaded::wake_endpoint(offload, path)?,
            None => (None, path),
        };
        // Before anything wakes it or counts as activity.
        if let Some(answer) = gate::admit(&self.access, &route, &mut parts, &path, trusted)? {
            return Ok(answer.map(Either::Right));
        }
        let visitor = self
            .wake_filter
            .visitor(&parts.method, path.path(), &parts.headers);
        // Activity first, then the state: see `Route::touch`. Bots and
        // monitors don't keep a container awake.
        let in_use = if visitor.counts_as_activity() {
            route.touch();
            route.in_use()
        } else {
            route.in_use_quietly()
        };
        let status = route.status();
        // A bot's answer, or a rate limit's refusal, instead of a wake.
        if let Some(answer) =
            self.wake_filter
                .before_wake(&route, &status, visitor, &parts, client_addr, trusted)?
        {
            return Ok(answer.map(Either::Right));
        }
        let (upstream, body) = match (status.state, status.upstream) {
            // At the wake endpoint, a public container is woken (or
            // unpaused) and the client sent back to nginx once nginx routes
            // it there; a private one is served here, as always, and so is
            // a WebSocket handshake (clients do not follow its redirects).
            _ if offload.is_some()
                && route.access() == Access::Public
                && !parts.headers.contains_key(header::UPGRADE) =>
            {
                let offload = offload.expect("checked");
                let upstream =
                    offloaded::wake_and_route(offload, self.waker.as_ref(), &route, &self.holds)
                        .await?;
                match upstream {
                    offloaded::Woken::Routed => {
                        return Ok(
                            waking::redirect_to(&parts, path.as_str(), trusted).map(Either::Right)
                        )
                    }
                    offloaded::Woken::NotRouted(upstream) => {
                        (upstream, RequestBody::streaming(body))
                    }
                }
            }
            (ContainerState::Running, Some(upstream)) => (upstream, RequestBody::streaming(body)),
            // Paused, not stopped: served like a running container, once its
            // first request has paid the unpause (joined by any other
            // request meanwhile), whatever its wake strategy.
            (ContainerState::Napping, _) => {
                let upstream =
                    self.waker
                        .ready_upstream(&route)
                        .await
                        .map_err(|error| ProxyError::Wake {
                            name: route.name().to_owned(),
                            error,
                        })?;
                (upstream, RequestBody::streaming(body))
            }
            (state, _) => match route.config().wake {
                WakeStrategy::Redirect => {
                    waking::wait_for_upstream(self.waker.as_ref(), &route, &self.holds).await?;
                    return Ok(waking::redirect_to_same_url(&parts, trusted).map(Either::Right));
                }
                WakeStrategy::Page
                    if state != ContainerState::Failed && waking::wants_html(&parts) =>
                {
                    self.waker.begin_wake(&route);
                    return Ok(waking::waking_page(route.name()).map(Either::Right));
                }
                WakeStrategy::Hold | WakeStrategy::Page => {
                    waking::hold(
                        self.waker.as_ref(),
                        &route,
                        body,
                        self.read_ahead_limit,
                        &self.holds,
                    )
                    .await?
                }
            },
        };
        let hop = Hop {
            name: route.name(),
            upstream,
            path,
            client_ip: &client.ip_header,
            trusted,
            timeout: self.limits.upstream_timeout,
        };
        let req = Request::from_parts(parts, body);
        let response = forward(&self.upstreams, hop, req, in_use).await?;
        Ok(response.map(Either::Left))
    }
}

/// Who is on the other end of a client connection, worked out once per
/// connection.
pub(crate) struct Client {
    addr: SocketAddr,
    /// Whether it is in `--trusted-proxies`.
    trusted: bool,
    /// Its address as an `X-Forwarded-For` entry.
    ip_header: HeaderValue,
}

impl Client {
    fn new(addr: SocketAddr, trusted: bool) -> Self {
        Self {
            addr,
            trusted,
            ip_header: forwarded::client_ip_header(addr),
        }
    }
}

/// dormant's answer to `OPTIONS *`: what the proxy forwards, for any host.
fn server_options() -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::new()));
    *response.status_mut() = StatusCode::OK;
    response
        .headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static(ALLOWED_METHODS));
    response
}
