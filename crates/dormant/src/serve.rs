//! `dormant serve`: wires store, runtime, lifecycle, API and proxy together
//! and runs them until shutdown.

use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_util::task::TaskTracker;

use crate::access::key::KeySource;
use crate::access::login::LoginCodes;
use crate::access::session::SessionSigner;
use crate::access::tokens::ContainerTokens;
use crate::access::{self, AccessControl};
use crate::api::{self, ApiState, CreateDefaults};
use crate::auth::TokenIndex;
use crate::config::{GatewayKind, ServeConfig, UpstreamMode};
use crate::data_dir;
use crate::domain::LABEL_MANAGED;
use crate::lifecycle::{
    check_archive_support, host_memory_bytes, ArchiveSupport, Lifecycle, LifecycleConfig, Limits,
};
use crate::listen::{size_connections, CappedListener};
use crate::metrics::Metrics;
use crate::offload::map_writer::MapWriter;
use crate::offload::{self, NginxProbe, Offload};
use crate::proxy::forwarded::TrustedProxies;
use crate::proxy::wake_filter::{WakeFilter, WakeFilterConfig};
use crate::proxy::{self, ConnectionLimit, EdgeLimits, HoldBudget, ProxyParts};
use crate::runtime::docker::{DockerRuntime, LogRotation, Reach};
use crate::runtime::limited::Limited;
use crate::runtime::Runtime;
use crate::snapshot_store::{self, SnapshotLocation, SnapshotStore};
use crate::store::{Store, StoreUrl};
use crate::token::{self, TokenSource};
use crate::webhooks::{self, Webhooks};
use std::collections::HashMap;

/// How often in-memory activity is written to the store.
const ACTIVITY_FLUSH_INTERVAL: Duration = Duration::from_secs(5);
/// How often audit entries past `--audit-retention` are deleted.
const AUDIT_PRUNE_INTERVAL: Duration = Duration::from_secs(3600);
/// Most audit entries kept, whatever their age: the oldest go first.
const AUDIT_MAX_ENTRIES: u64 = 1_000_000;
/// How often idle containers are looked for. Sleep happens at most this long
/// after a container's idle timeout.
const SWEEP_INTERVAL: Duration = Duration::from_millis(500);

/// Connects to the Docker daemon the configuration names (waiting up to
/// `--docker-wait` for one that does not answer yet), sets log rotation,
/// joins the containers' network, and bounds concurrent Docker calls: the
/// runtime `run` is given in production.
pub async fn docker_runtime(config: &ServeConfig) -> anyhow::Result<Arc<dyn Runtime>> {
    let mut runtime =
        DockerRuntime::connect_waiting(config.docker_host.as_deref(), config.docker_wait).await?;
    runtime
        .rotate_logs(LogRotation {
            max_size_bytes: config.log_max_size,
            max_files: config.log_max_files,
        })
        .await;
    let docker_is_local = config
        .docker_host
        .clone()
        .or_else(|| std::env::var("DOCKER_HOST").ok())
        .is_none_or(|host| host.starts_with("unix://"));
    let on_network = match config.upstream {
        UpstreamMode::Network => true,
        UpstreamMode::Published => false,
        UpstreamMode::Auto => docker_is_local,
    };
    // Containers join dormant's network in either mode: on it they cannot
    // reach each other (Docker's default bridge lets them).
    let labels = HashMap::from([(LABEL_MANAGED.to_owned(), "true".to_owned())]);
    if on_network {
        runtime
            .use_network(&config.network, labels, Reach::Address)
            .await?;
        tracing::info!(network = %config.network, "the proxy reaches containers on their Docker network");
    } else {
        runtime
            .use_network(&config.network, labels, Reach::PublishedPort)
            .await?;
        tracing::info!(network = %config.network, "the proxy reaches containers at ports published on 127.0.0.1");
    }
    Ok(Arc::new(Limited::new(
        runtime,
        config.docker_concurrency,
        config.docker_timeout,
    )))
}

/// Runs dormant on `runtime` until `shutdown` completes; then stops
/// accepting, lets requests and transitions in flight finish within
/// `--drain-timeout`, flushes activity and returns.
pub async fn run(
    config: ServeConfig,
    runtime: Arc<dyn Runtime>,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let max_connections = size_connections(
        config.max_connections.map(|n| n.get()),
        config.api_max_connections.get(),
    )?;
    let webhook_tls = webhooks::tls::client_config(config.webhook_ca_file.as_deref())
        .map_err(|why| anyhow::anyhow!("--webhook-ca-file: {why}"))?;
    let data_dir = &config.data_dir;
    data_dir::prepare(data_dir)?;
    let admin_token = admin_token(data_dir)?;
    let node = node_id(data_dir)?;
    let metrics = Arc::new(Metrics::new());
    let store = Store::open_url(&config.store, data_dir)
        .await
        .with_context(|| match &config.store {
            StoreUrl::Sqlite => format!(
                "cannot open the store {}",
                data_dir.join("dormant.db").display()
            ),
            StoreUrl::Postgres(target) => format!("cannot open the store {target}"),
        })?;
    tracing::info!(store = %config.store, "store open");
    let lifecycle = build_lifecycle(
        &config,
        store.clone(),
        runtime,
        node.clone(),
        metrics.clone(),
    )
    .await?;
    let tokens = load_tenants(&store, &lifecycle, &admin_token).await?;

    let (stop_tx, stop_rx) = watch::channel(false);
    let stopped = move || {
        let mut rx = stop_rx.clone();
        async move {
            let _ = rx.wait_for(|stop| *stop).await;
        }
    };
    let tasks = TaskTracker::new();
    // Webhooks follow lifecycle's events from before reconciling, so they
    // hear what start-up settles too.
    let webhooks = Webhooks::new(webhooks::Settings {
        retry_for: config.webhook_retry_for,
        allow_private: config.webhook_allow_private,
        tls: webhook_tls,
    });
    for row in store
        .webhooks()
        .await
        .context("cannot read the webhooks from the store")?
    {
        webhooks.start(row);
    }
    tasks.spawn(
        webhooks
            .clone()
            .run(lifecycle.events().clone(), stop_tx.subscribe()),
    );
    // Follow Docker's events from before reconciling, so no death goes unheard.
    tasks.spawn(lifecycle.follow_docker_events(stopped()));
    lifecycle.reconcile().await?;
    let access = access_control(&config, &store, &tokens).await?;

    let api_listener = TcpListener::bind(config.api_addr).await.with_context(|| {
        format!(
            "cannot listen for the API on {} (is another dormant running?)",
            config.api_addr
        )
    })?;
    let proxy_listener = crate::listen::bind_proxy(config.proxy_addr)
        .with_context(|| format!("cannot listen for the proxy on {}", config.proxy_addr))?;
    let api_addr = api_listener.local_addr()?;
    if api_addr.ip().is_unspecified() {
        tracing::warn!(%api_addr, "the API listens on every address of this host, so containers reach it through their network's gateway (it still asks for the admin token); listen on 127.0.0.1 unless other hosts must call it");
    }
    let proxy_addr = proxy_listener.local_addr()?;

    let state = api_state(
        &config,
        &lifecycle,
        tokens.clone(),
        store.clone(),
        access.clone(),
        proxy_addr.port(),
        stop_tx.subscribe(),
        webhooks,
    );
    let api_listener = CappedListener::new(api_listener, config.api_max_connections.get());
    let api_server =
        // The peer's address tells whether a login link may follow a trusted
        // gateway's X-Forwarded-* headers.
        axum::serve(
            api_listener,
            api::router(state).into_make_service_with_connect_info::<crate::listen::ApiPeer>(),
        )
        .with_graceful_shutdown(stopped());
    let api_task = tasks.spawn(async move { api_server.await });
    tasks.spawn(lifecycle.sweep_periodically(stopped()));
    tasks.spawn(flush_activity_periodically(lifecycle.clone(), stopped()));
    let advertise_addr = config
        .advertise_addr
        .clone()
        .unwrap_or_else(|| proxy_addr.to_string());
    tasks.spawn(heartbeat_periodically(
        store.clone(),
        node.clone(),
        advertise_addr,
        config.lease_ttl,
        stopped(),
    ));
    tasks.spawn(prune_audit_periodically(
        store,
        config.audit_retention,
        stopped(),
    ));
    let offload = start_offload(&config, &lifecycle, proxy_addr, &tasks, &stopped).await?;
    let mut proxy = proxy_parts(&config, &lifecycle, metrics, max_connections, access);
    proxy.offload = offload;
    let proxy_threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let proxy_task = proxy::serve_per_core(
        proxy,
        proxy_listener,
        proxy_threads,
        stop_tx.subscribe(),
        config.drain_timeout,
    )?;

    // A stable line on stdout for scripts and tests; the rest goes to the log.
    println!("dormant listening: api=http://{api_addr} proxy=http://{proxy_addr} node={node}");
    tracing::info!(%api_addr, %proxy_addr, base_domain = %config.base_domain, %node, "dormant is ready");

    shutdown.await;
    tracing::info!("shutting down: draining requests and transitions");
    let _ = stop_tx.send(true);
    let drain = config.drain_timeout + Duration::from_secs(1);
    tasks.close();
    if tokio::time::timeout(drain, api_task).await.is_err() {
        tracing::warn!("API requests still running after the drain period");
    }
    if tokio::time::timeout(drain, proxy_task).await.is_err() {
        tracing::warn!("proxy connections still open after the drain period");
    }
    if !lifecycle.drain(drain).await {
        tracing::warn!(
            "transitions still running after the drain period; the next start-up settles them"
        );
    }
    if tokio::time::timeout(drain, tasks.wait()).await.is_err() {
        tracing::warn!("background tasks still running after the drain period");
    }
    lifecycle.flush_activity().await?;
    tracing::info!("stopped");
    Ok(())
}

/// With `--gateway nginx`: keeps nginx's map and hears its access log in
/// the background, and returns what the proxy's wake endpoint needs.
async fn start_offload<S, F>(
    config: &ServeConfig,
    lifecycle: &Lifecycle,
    proxy_addr: std::net::SocketAddr,
    tasks: &TaskTracker,
    stopped: &S,
) -> anyhow::Result<Option<Arc<Offload>>>
where
    S: Fn() -> F,
    F: Future<Output = ()> + Send + 'static,
{
    let Some(GatewayKind::Nginx) = config.gateway else {
        return Ok(None);
    };
    let map = config
        .nginx_map
        .clone()
        .context("--gateway nginx needs --nginx-map FILE: the map file nginx's recipe includes")?;
    let map_dir = match map.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_owned(),
        _ => std::path::PathBuf::from("."),
    };
    anyhow::ensure!(
        map_dir.is_dir(),
        "--nginx-map {}: the directory {} does not exist",
        map.display(),
        map_dir.display()
    );
    let trusted = TrustedProxies::new(config.trusted_proxies.clone());
    if !trusted.trusts(config.nginx_probe.ip()) {
        anyhow::bail!(
            "--gateway nginx: nginx's address {} is not in --trusted-proxies, so dormant would not take its requests for the wake endpoint; add it (e.g. --trusted-proxies 127.0.0.1)",
            config.nginx_probe.ip()
        );
    }
    let activity = config
        .nginx_activity
        .clone()
        .unwrap_or_else(|| map_dir.join("nginx-activity.log"));
    tracing::info!(activity = %activity.display(), probe = %config.nginx_probe, "beside nginx: running containers are served by nginx");
    tasks.spawn(
        MapWriter {
            table: lifecycle.table().clone(),
            base_domain: config.base_domain.clone(),
            path: map,
            reload: config.nginx_reload.clone(),
            wake: wake_addr(proxy_addr),
            metrics: lifecycle.metrics().clone(),
        }
        .run(stopped()),
    );
    tasks.spawn(offload::activity::follow(
        activity,
        lifecycle.table().clone(),
        config.base_domain.clone(),
        stopped(),
    ));
    let offload = Arc::new(Offload::new(
        NginxProbe::new(config.nginx_probe),
        &config.base_domain,
    ));
    // A paused app would leave nginx's requests hanging: naps wait until
    // nginx sends the host to dormant.
    lifecycle.guard_pauses(offload.clone());
    Ok(Some(offload))
}

/// dormant's proxy as nginx on the same host reaches it: its address, or
/// loopback when it listens on every address.
fn wake_addr(proxy_addr: std::net::SocketAddr) -> std::net::SocketAddr {
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
    let ip = match proxy_addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    std::net::SocketAddr::new(ip, proxy_addr.port())
}

/// The store, the snapshot dir, archive support and capacity, as lifecycle
/// needs them.
async fn build_lifecycle(
    config: &ServeConfig,
    store: Store,
    runtime: Arc<dyn Runtime>,
    node: String,
    metrics: Arc<Metrics>,
) -> anyhow::Result<Lifecycle> {
    let snapshot_dir = config.data_dir.join("snapshots");
    data_dir::create_private_dir(&snapshot_dir)
        .with_context(|| format!("cannot create the snapshot dir {}", snapshot_dir.display()))?;
    let location = config
        .snapshots
        .clone()
        .unwrap_or(SnapshotLocation::DataDir);
    let snapshots = snapshot_store::open(&location, snapshot_dir, &node, config.min_free_disk)
        .map_err(anyhow::Error::msg)?;
    let archive_support = check_archive_support(runtime.as_ref()).await;
    match &archive_support {
        ArchiveSupport::Supported => tracing::info!(snapshots = %snapshots.describe(), "archiving enabled"),
        ArchiveSupport::Unsupported(why) => tracing::error!(
            "archiving is DISABLED: {why}. Containers still sleep; none will be archived, and /archive answers 409"
        ),
    }
    let limits = Limits {
        max_running: config.max_running,
        memory_budget: config.memory_budget.unwrap_or_else(|| {
            // 80% of the host, leaving room for dormant, Docker and the kernel.
            host_memory_bytes().map_or(u64::MAX, |total| total / 10 * 8)
        }),
    };
    tracing::info!(max_running = ?limits.max_running, memory_budget = limits.memory_budget, "capacity");
    Ok(Lifecycle::new(
        store,
        runtime,
        lifecycle_config(config, node, snapshots, limits),
        archive_support,
        metrics,
    ))
}

/// The session key, the container access tokens and the login codes.
async fn access_control(
    config: &ServeConfig,
    store: &Store,
    api_tokens: &Arc<TokenIndex>,
) -> anyhow::Result<Arc<AccessControl>> {
    let (key, source) = access::key::load_or_create(&config.data_dir)?;
    match source {
        KeySource::File(path) => tracing::info!(path = %path.display(), "session key from file"),
        KeySource::Generated(path) => {
            tracing::info!(path = %path.display(), "generated a session key")
        }
    }
    let tokens = ContainerTokens::load(store.clone())
        .await
        .context("cannot load the container access tokens")?;
    Ok(Arc::new(AccessControl {
        sessions: SessionSigner::new(&key),
        tokens,
        logins: LoginCodes::new(),
        session_ttl: config.session_ttl,
        api_tokens: {
            let index = api_tokens.clone();
            Arc::new(move |presented: &str| index.owner_of(presented))
        },
    }))
}

/// Gives lifecycle every tenant's quotas and returns the index of every
/// live API token, the admin's included.
async fn load_tenants(
    store: &Store,
    lifecycle: &Lifecycle,
    admin_token: &str,
) -> anyhow::Result<Arc<TokenIndex>> {
    let tenants = store.tenants().await.context("cannot read the tenants")?;
    for tenant in &tenants {
        lifecycle.quotas().set(&tenant.id, tenant.quotas);
    }
    let live = store
        .live_tokens()
        .await
        .context("cannot read the tenants' tokens")?;
    tracing::info!(
        tenants = tenants.len(),
        tokens = live.len(),
        "tenants loaded"
    );
    Ok(Arc::new(TokenIndex::new(admin_token, live)))
}

/// Deletes audit entries older than `retention`, at start and every hour.
/// Tells the store this node is alive, and where its proxy is, every third
/// of `--lease-ttl`: `GET /v1/nodes` counts a node live while its last
/// heartbeat is younger than that.
async fn heartbeat_periodically(
    store: Store,
    node: String,
    advertise_addr: String,
    lease_ttl: Duration,
    stopped: impl Future<Output = ()>,
) {
    tokio::pin!(stopped);
    let mut tick = tokio::time::interval(lease_ttl / 3);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failing = false;
    loop {
        tokio::select! {
            _ = tick.tick() => match store.heartbeat(&node, &advertise_addr).await {
                Ok(()) if failing => {
                    failing = false;
                    tracing::info!(%node, "heartbeats reach the store again");
                }
                Ok(()) => {}
                Err(e) => {
                    if !failing {
                        tracing::warn!(%node, error = %e, "cannot record this node's heartbeat in the store; other nodes will count it dead after --lease-ttl");
                    }
                    failing = true;
                }
            },
            () = &mut stopped => return,
        }
    }
}

async fn prune_audit_periodically(
    store: Store,
    retention: Duration,
    stopped: impl Future<Output = ()>,
) {
    tokio::pin!(stopped);
    let mut tick = tokio::time::interval(AUDIT_PRUNE_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let retention_ms = i64::try_from(retention.as_millis()).unwrap_or(i64::MAX);
    loop {
        tokio::select! {
            _ = tick.tick() => {
                let cutoff = crate::domain::now_millis().saturating_sub(retention_ms);
                match store.prune_audit(cutoff, AUDIT_MAX_ENTRIES).await {
                    Ok(0) => {}
                    Ok(pruned) => tracing::info!(pruned, "audit entries past the retention deleted"),
                    Err(e) => tracing::warn!(error = %e, "cannot prune the audit log"),
                }
            }
            () = &mut stopped => return,
        }
    }
}

// One argument per part the API shares with the rest of `serve`.
#[allow(clippy::too_many_arguments)]
fn api_state(
    config: &ServeConfig,
    lifecycle: &Lifecycle,
    tokens: Arc<TokenIndex>,
    store: Store,
    access: Arc<AccessControl>,
    proxy_port: u16,
    stopping: watch::Receiver<bool>,
    webhooks: Arc<Webhooks>,
) -> ApiState {
    ApiState {
        stopping,
        webhooks,
        lifecycle: Arc::new(lifecycle.clone()),
        tokens,
        store,
        access,
        trusted_proxies: TrustedProxies::new(config.trusted_proxies.clone()),
        lease_ttl: config.lease_ttl,
        public: Arc::new(api::model::PublicAddress::new(
            &config.base_domain,
            proxy_port,
        )),
        create_defaults: Arc::new(CreateDefaults {
            memory_bytes: config.default_memory,
            idle_timeout: config.idle_timeout,
            max_cpus: std::thread::available_parallelism()
                .map(|n| n.get() as f64)
                .unwrap_or(1.0),
            allowed_capabilities: config.allowed_capabilities.clone(),
            default_access: config.default_access,
        }),
    }
}

fn proxy_parts(
    config: &ServeConfig,
    lifecycle: &Lifecycle,
    metrics: Arc<Metrics>,
    max_connections: usize,
    access: Arc<AccessControl>,
) -> ProxyParts {
    let bytes = |size: u64| usize::try_from(size).unwrap_or(usize::MAX);
    let connections = ConnectionLimit::new(max_connections, metrics.open_connections.clone());
    tracing::info!(max_connections, "proxy limits");
    let wake_filter = wake_filter(config, &metrics);
    ProxyParts {
        routes: lifecycle.table().clone(),
        waker: Arc::new(lifecycle.clone()),
        base_domain: config.base_domain.clone(),
        // One request never reserves more than all of them may.
        read_ahead_limit: bytes(config.wake_buffer.min(config.wake_buffer_total)),
        metrics,
        limits: EdgeLimits {
            header_timeout: config.header_timeout,
            idle_connection_timeout: config.idle_connection_timeout,
            max_request_headers: config.max_request_headers.get(),
            max_request_head: bytes(config.max_request_head),
            upstream_timeout: config.upstream_timeout,
            trusted_proxies: TrustedProxies::new(config.trusted_proxies.clone()),
        },
        connections,
        holds: HoldBudget::new(config.max_held_requests, bytes(config.wake_buffer_total)),
        wake_filter,
        access,
        offload: None,
    }
}

/// What may wake a container: the no-wake agents and the rate limits.
fn wake_filter(config: &ServeConfig, metrics: &Metrics) -> Arc<WakeFilter> {
    tracing::info!(
        no_wake_agents = config.no_wake_agents.as_slice().len(),
        activity_ignores_agents = config.activity_ignores_agents,
        wake_rate = %config.wake_rate,
        wake_burst = config.wake_burst,
        unknown_host_rate = %config.unknown_host_rate,
        max_wake_rate = %config.max_wake_rate,
        "wake filter"
    );
    Arc::new(WakeFilter::new(
        WakeFilterConfig {
            no_wake_agents: config.no_wake_agents.clone(),
            activity_ignores_agents: config.activity_ignores_agents,
            wake_rate: config.wake_rate,
            wake_burst: config.wake_burst,
            unknown_host_rate: config.unknown_host_rate,
            unknown_host_burst: config.unknown_host_burst,
            max_wake_rate: config.max_wake_rate,
            trusted_proxies: TrustedProxies::new(config.trusted_proxies.clone()),
        },
        metrics,
    ))
}

fn lifecycle_config(
    config: &ServeConfig,
    node: String,
    snapshots: Arc<dyn SnapshotStore>,
    limits: Limits,
) -> LifecycleConfig {
    LifecycleConfig {
        node,
        pids_limit: config.pids_limit,
        wake_timeout: config.wake_timeout,
        stop_grace: config.stop_grace,
        default_wake: config.wake_strategy,
        create_concurrency: 4,
        sweep_interval: SWEEP_INTERVAL,
        default_archive_after: config.archive_after,
        default_nap_after: config.nap_after,
        snapshots,
        min_free_disk: config.min_free_disk,
        limits,
        event_buffer: config.event_buffer as usize,
    }
}

/// The admin token: from DORMANT_ADMIN_TOKEN, the data dir, or made now.
fn admin_token(data_dir: &Path) -> anyhow::Result<String> {
    let (token, source) =
        token::load_or_create_admin_token(std::env::var("DORMANT_ADMIN_TOKEN").ok(), data_dir)?;
    match source {
        TokenSource::Env => tracing::info!("admin token from DORMANT_ADMIN_TOKEN"),
        TokenSource::File(path) => tracing::info!(path = %path.display(), "admin token from file"),
        TokenSource::Generated(path) => {
            tracing::info!(path = %path.display(), "generated an admin token")
        }
    }
    Ok(token)
}

async fn flush_activity_periodically(lifecycle: Lifecycle, stopped: impl Future<Output = ()>) {
    tokio::pin!(stopped);
    let mut tick = tokio::time::interval(ACTIVITY_FLUSH_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {
                if let Err(e) = lifecycle.flush_activity().await {
                    tracing::warn!(error = %e, "cannot write activity to the store");
                }
            }
            () = &mut stopped => return,
        }
    }
}

/// This node's id: made once, kept in the data dir. It labels every Docker
/// object this dormant makes, so it only ever touches its own.
fn node_id(data_dir: &Path) -> anyhow::Result<String> {
    let path = data_dir.join("node-id");
    match std::fs::read_to_string(&path) {
        Ok(id) if !id.trim().is_empty() => return Ok(id.trim().to_owned()),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => anyhow::bail!("cannot read {}: {e}", path.display()),
    }
    let id = token::random_hex(6);
    data_dir::write_private(&path, format!("{id}\n").as_bytes())
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(id)
}

/// Completes on Ctrl-C or SIGTERM. The handlers are installed when this is
/// called, not when the future is first polled, so a signal that arrives
/// while dormant is still starting is not lost (nor fatal). Call it inside
/// the runtime.
pub fn shutdown_signal() -> impl Future<Output = ()> {
    use tokio::signal::unix::{signal, SignalKind};
    let interrupt = signal(SignalKind::interrupt());
    let terminate = signal(SignalKind::terminate());
    async move {
        match (interrupt, terminate) {
            (Ok(mut interrupt), Ok(mut terminate)) => {
                tokio::select! {
                    _ = interrupt.recv() => {}
                    _ = terminate.recv() => {}
                }
            }
            (Ok(mut only), Err(e)) | (Err(e), Ok(mut only)) => {
                tracing::warn!(error = %e, "cannot listen for one of SIGINT/SIGTERM");
                only.recv().await;
            }
            (Err(e), Err(_)) => {
                tracing::error!(error = %e, "cannot listen for signals; stop dormant with SIGKILL");
                std::future::pending::<()>().await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::fake::FakeRuntime;
    use clap::Parser;
    use http_body_util::{BodyExt, Full};
    use hyper_util::client::legacy::Client;
    use hyper_util::rt::TokioExecutor;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        config: ServeConfig,
    }

    fn free_port() -> u16 {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    }

    /// The whole server wired on the fake runtime: the API creates, lists
    /// and deletes, and shutdown drains and returns.
    #[tokio::test]
    async fn the_whole_server_runs_on_the_fake_runtime_and_shuts_down() {
        let data_dir = std::env::temp_dir().join(format!("dormant-serve-{}", token::random_hex(6)));
        let (api, proxy) = (free_port(), free_port());
        let cli = Cli::try_parse_from([
            "dormant",
            "--data-dir",
            data_dir.to_str().unwrap(),
            "--api-addr",
            &format!("127.0.0.1:{api}"),
            "--proxy-addr",
            &format!("127.0.0.1:{proxy}"),
            "--drain-timeout",
            "1s",
        ])
        .unwrap();
        let fake = FakeRuntime::new();
        fake.add_image("demo", &[8080]);
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(run(cli.config, Arc::new(fake), async move {
            let _ = stopped.await;
        }));
        let token = loop {
            match std::fs::read_to_string(data_dir.join("admin-token")) {
                Ok(token) if !token.trim().is_empty() => break token.trim().to_owned(),
                _ => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        };
        let client = Client::builder(TokioExecutor::new()).build_http::<Full<bytes::Bytes>>();
        let call = |method: &str, path: &str, body: &str| {
            http::Request::builder()
                .method(method)
                .uri(format!("http://127.0.0.1:{api}{path}"))
                .header("authorization", format!("Bearer {token}"))
                .body(Full::new(bytes::Bytes::from(body.to_owned())))
                .unwrap()
        };
        let mut created = None;
        for _ in 0..250 {
            match client
                .request(call(
                    "POST",
                    "/v1/containers",
                    r#"{"image":"demo","name":"a"}"#,
                ))
                .await
            {
                Ok(response) => {
                    created = Some(response);
                    break;
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
        let created = created.expect("the API answers");
        assert_eq!(created.status(), http::StatusCode::CREATED);
        let listed = client
            .request(call("GET", "/v1/containers", ""))
            .await
            .unwrap();
        let body = listed.into_body().collect().await.unwrap().to_bytes();
        assert!(String::from_utf8_lossy(&body).contains(r#""state":"running""#));
        let deleted = client
            .request(call("DELETE", "/v1/containers/a", ""))
            .await
            .unwrap();
        assert_eq!(deleted.status(), http::StatusCode::NO_CONTENT);
        stop.send(()).unwrap();
        tokio::time::timeout(Duration::from_secs(10), server)
            .await
            .expect("shutdown is bounded")
            .unwrap()
            .expect("serve ends cleanly");
        std::fs::remove_dir_all(&data_dir).unwrap();
    }
}
