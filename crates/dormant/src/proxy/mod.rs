//! The reverse proxy: routes each request by its Host header to the
//! container's upstream and forwards it.
//!
//! It knows nothing of Docker or SQL. For a running container the hot path is:
//! parse Host, look the route up in memory, record activity (an atomic store),
//! forward over a pooled connection.

mod body;
mod error;
mod forward;
pub mod host;
pub mod waker;
mod waking;

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{header, Request, Response};
use http_body_util::{Either, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};

use crate::domain::{ContainerState, WakeStrategy};
use crate::lifecycle::table::ContainerTable;
use crate::metrics::Metrics;
use body::{RequestBody, TrackedBody};
pub use error::ProxyError;
use forward::{forward, upstream_client, UpstreamClient};
use host::name_from_host;
use waker::Waker;

/// What the proxy answers with: the upstream's streamed body, or dormant's own
/// short answer.
pub type ProxyBody = Either<TrackedBody, Full<Bytes>>;

/// What every proxy thread shares.
#[derive(Clone)]
pub struct ProxyParts {
    pub routes: Arc<ContainerTable>,
    pub waker: Arc<dyn Waker>,
    pub base_domain: String,
    pub read_ahead_limit: usize,
    pub metrics: Arc<Metrics>,
}

/// Serves the proxy on `threads` threads, each with a single-threaded
/// runtime, its own accept loop on the shared listener and its own upstream
/// connection pool, until `stopped` turns true.
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
    listener.set_nonblocking(true)?;
    let mut handles = Vec::with_capacity(threads);
    for index in 0..threads.max(1) {
        let listener = listener.try_clone()?;
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
                    let listener = match TcpListener::from_std(listener) {
                        Ok(listener) => listener,
                        Err(e) => {
                            tracing::error!(error = %e, "cannot use the proxy listener");
                            return;
                        }
                    };
                    let proxy = Arc::new(Proxy::new(
                        parts.routes,
                        parts.waker,
                        &parts.base_domain,
                        parts.read_ahead_limit,
                        parts.metrics,
                    ));
                    let stop = async move {
                        let _ = stopped.wait_for(|stop| *stop).await;
                    };
                    proxy.run(listener, stop, drain).await;
                });
            })?;
        handles.push(handle);
    }
    Ok(tokio::task::spawn_blocking(move || {
        for handle in handles {
            let _ = handle.join();
        }
    }))
}

/// Shared by every connection one proxy thread serves.
pub struct Proxy {
    routes: Arc<ContainerTable>,
    waker: Arc<dyn Waker>,
    base_domain: String,
    client: UpstreamClient,
    /// Request body bytes read ahead while a container wakes (`--wake-buffer`).
    read_ahead_limit: usize,
    metrics: Arc<Metrics>,
    /// Requests answered, by status class (`1xx` at 0 .. `5xx` at 4).
    answered: [prometheus_client::metrics::counter::Counter; 5],
}

impl Proxy {
    pub fn new(
        routes: Arc<ContainerTable>,
        waker: Arc<dyn Waker>,
        base_domain: &str,
        read_ahead_limit: usize,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            routes,
            waker,
            base_domain: base_domain.trim_matches('.').to_ascii_lowercase(),
            client: upstream_client(),
            read_ahead_limit,
            answered: metrics.proxy_request_counters(),
            metrics,
        }
    }

    /// Serves connections from `listener` until `shutdown` completes, then
    /// lets in-flight requests finish for up to `drain`.
    pub async fn run(
        self: Arc<Self>,
        listener: TcpListener,
        shutdown: impl Future<Output = ()>,
        drain: Duration,
    ) {
        // Every connection task holds a clone of `open_tx`; when all are
        // dropped, `open_rx` says the drain is over.
        let (open_tx, mut open_rx) = mpsc::channel::<()>(1);
        let (stop_tx, stop_rx) = watch::channel(false);
        tokio::pin!(shutdown);
        loop {
            let (stream, client_addr) = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        // Usually EMFILE: back off instead of spinning.
                        tracing::warn!(error = %e, "proxy accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
                () = &mut shutdown => break,
            };
            let _ = stream.set_nodelay(true);
            let proxy = self.clone();
            let service = service_fn(move |req| {
                let proxy = proxy.clone();
                async move { Ok::<_, Infallible>(proxy.handle(client_addr, req).await) }
            });
            let connection = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .with_upgrades();
            let mut stop_rx = stop_rx.clone();
            let open = open_tx.clone();
            let open_connections = self.metrics.open_connections.clone();
            open_connections.inc();
            tokio::spawn(async move {
                let _open = open;
                let _counted = DecOnDrop(open_connections);
                tokio::pin!(connection);
                let result = tokio::select! {
                    result = connection.as_mut() => result,
                    () = async { let _ = stop_rx.wait_for(|stop| *stop).await; } => {
                        // Finish the request in flight, then close.
                        connection.as_mut().graceful_shutdown();
                        connection.await
                    }
                };
                if let Err(e) = result {
                    tracing::debug!(client = %client_addr, error = %e, "proxy connection ended with an error");
                }
            });
        }
        drop(listener);
        let _ = stop_tx.send(true);
        drop(open_tx);
        if tokio::time::timeout(drain, open_rx.recv()).await.is_err() {
            tracing::warn!(
                ?drain,
                "proxy: some connections were still open after the drain period"
            );
        }
    }

    async fn handle(&self, client_addr: SocketAddr, req: Request<Incoming>) -> Response<ProxyBody> {
        let arrived = std::time::Instant::now();
        let response = match self.route_and_forward(client_addr, req).await {
            Ok(response) => response,
            Err(error) => {
                tracing::debug!(%error, "proxy answered with an error");
                error.into_response().map(Either::Right)
            }
        };
        let class = (response.status().as_u16() / 100).clamp(1, 5) as usize - 1;
        self.answered[class].inc();
        self.metrics
            .proxy_duration
            .observe(arrived.elapsed().as_secs_f64());
        response
    }

    async fn route_and_forward(
        &self,
        client_addr: SocketAddr,
        req: Request<Incoming>,
    ) -> Result<Response<ProxyBody>, ProxyError> {
        // An absolute-form target names the host and wins over `Host`
        // (RFC 9112 §3.2.2).
        let host = req
            .uri()
            .authority()
            .map(|authority| authority.as_str())
            .or_else(|| {
                req.headers()
                    .get(header::HOST)
                    .and_then(|h| h.to_str().ok())
            })
            .ok_or_else(|| ProxyError::MissingHost {
                base_domain: self.base_domain.clone(),
            })?;
        let name =
            name_from_host(host, &self.base_domain).ok_or_else(|| ProxyError::NotOurHost {
                host: host.to_owned(),
                base_domain: self.base_domain.clone(),
            })?;
        let route = self
            .routes
            .get(&name)
            .ok_or_else(|| ProxyError::UnknownContainer {
                name: name.clone().into_owned(),
            })?;
        // Activity first, then the state: see `Route::touch`.
        route.touch();
        let in_use = route.in_use();
        let status = route.status();
        let (parts, body) = req.into_parts();
        let (upstream, body) = match (status.state, status.upstream) {
            (ContainerState::Running, Some(upstream)) => (upstream, RequestBody::streaming(body)),
            (state, _) => match route.config().wake {
                WakeStrategy::Redirect => {
                    self.waker
                        .ready_upstream(&route)
                        .await
                        .map_err(|error| ProxyError::Wake {
                            name: route.name().to_owned(),
                            error,
                        })?;
                    return Ok(waking::redirect_to_same_url(&parts).map(Either::Right));
                }
                WakeStrategy::Page
                    if state != ContainerState::Failed && waking::wants_html(&parts) =>
                {
                    self.waker.begin_wake(&route);
                    return Ok(waking::waking_page(route.name()).map(Either::Right));
                }
                WakeStrategy::Hold | WakeStrategy::Page => {
                    waking::hold(self.waker.as_ref(), &route, body, self.read_ahead_limit).await?
                }
            },
        };
        let req = Request::from_parts(parts, body);
        let response = forward(
            &self.client,
            route.name(),
            upstream,
            client_addr,
            req,
            in_use,
        )
        .await?;
        Ok(response.map(Either::Left))
    }
}

/// Takes one off a gauge when dropped, however the task holding it ends.
struct DecOnDrop(prometheus_client::metrics::gauge::Gauge);

impl Drop for DecOnDrop {
    fn drop(&mut self) {
        self.0.dec();
    }
}
