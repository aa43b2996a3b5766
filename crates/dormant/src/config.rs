//! `dormant serve`'s configuration: flags, `DORMANT_*` environment variables
//! and an optional TOML file, in that order of precedence, over defaults.

use std::ffi::OsString;
use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, CommandFactory};

use crate::domain::{Access, WakeStrategy};
use crate::proxy::forwarded::Cidr;
use crate::proxy::no_wake::AgentList;
use crate::proxy::rate_limit::Rate;
use crate::runtime::capabilities::AllowedCapabilities;
use crate::snapshot_store::SnapshotLocation;
use crate::units::parse_memory;

/// Every setting of `dormant serve`. Each flag `--some-flag` is also read from
/// `DORMANT_SOME_FLAG` and from the key `some-flag` (or `some_flag`) in the
/// `--config` file.
#[derive(Debug, Clone, Args)]
pub struct ServeConfig {
    /// TOML file with any of these settings as keys (`data-dir = "/srv/dormant"`).
    /// Flags and environment variables override it.
    #[arg(long, env = "DORMANT_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Where dormant keeps its database, admin token and node id.
    #[arg(long, env = "DORMANT_DATA_DIR", default_value = Self::DEFAULT_DATA_DIR, value_name = "DIR")]
    pub data_dir: PathBuf,

    /// Where the store lives: `sqlite://` (the default: `dormant.db` in the
    /// data dir) or `postgres://user:password@host:port/database`, which
    /// several nodes can share. Never logged with its password.
    #[arg(long, env = "DORMANT_STORE", default_value = "sqlite://", value_parser = StoreUrlParser, value_name = "URL", hide_env_values = true)]
    pub store: crate::store::StoreUrl,

    /// Address of the REST API.
    #[arg(
        long,
        env = "DORMANT_API_ADDR",
        default_value = "127.0.0.1:7070",
        value_name = "ADDR"
    )]
    pub api_addr: SocketAddr,

    /// Address of the reverse proxy that serves `<name>.<base-domain>`.
    #[arg(
        long,
        env = "DORMANT_PROXY_ADDR",
        default_value = "127.0.0.1:8080",
        value_name = "ADDR"
    )]
    pub proxy_addr: SocketAddr,

    /// Containers are reached at `<name>.<base-domain>`. The default works in
    /// browsers and curl with no DNS set-up (`http://alice.localhost:8080/`).
    #[arg(
        long,
        env = "DORMANT_BASE_DOMAIN",
        default_value = "localhost",
        value_name = "DOMAIN"
    )]
    pub base_domain: String,

    /// Docker daemon to use (`unix:///var/run/docker.sock`, `tcp://host:2375`).
    /// Default: `DOCKER_HOST`, else the local socket.
    #[arg(long, env = "DORMANT_DOCKER_HOST", value_name = "URL")]
    pub docker_host: Option<String>,

    /// How long start-up waits for a Docker daemon that does not answer yet
    /// (still starting after a reboot) before giving up.
    #[arg(long, env = "DORMANT_DOCKER_WAIT", default_value = "60s", value_parser = humantime::parse_duration, value_name = "DURATION")]
    pub docker_wait: Duration,

    /// Idle time after which a container is put to sleep, when its create
    /// request gives none.
    #[arg(long, env = "DORMANT_IDLE_TIMEOUT", default_value = "15m", value_parser = humantime::parse_duration, value_name = "DURATION")]
    pub idle_timeout: Duration,

    /// Memory limit of a container whose create request gives none.
    #[arg(long, env = "DORMANT_DEFAULT_MEMORY", default_value = "512m", value_parser = parse_memory, value_name = "SIZE")]
    pub default_memory: u64,

    /// Most processes one container may run.
    #[arg(
        long,
        env = "DORMANT_PIDS_LIMIT",
        default_value_t = 1024,
        value_name = "N"
    )]
    pub pids_limit: i64,

    /// Linux capabilities a create request may add back with `cap_add`
    /// (comma-separated, e.g. `NET_RAW,SYS_PTRACE`). Default: none; every
    /// container runs with Docker's defaults minus NET_RAW, MKNOD,
    /// AUDIT_WRITE, SETFCAP, SETPCAP and SYS_CHROOT.
    #[arg(
        long,
        env = "DORMANT_ALLOWED_CAPABILITIES",
        default_value = "",
        value_name = "LIST"
    )]
    pub allowed_capabilities: AllowedCapabilities,

    /// Size at which a container's log file is rotated (json-file and local
    /// log drivers).
    #[arg(long, env = "DORMANT_LOG_MAX_SIZE", default_value = "10m", value_parser = parse_log_size, value_name = "SIZE")]
    pub log_max_size: u64,

    /// Log files kept per container, the current one included.
    #[arg(long, env = "DORMANT_LOG_MAX_FILES", default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=100), value_name = "N")]
    pub log_max_files: u32,

    /// How long a container may take from start until its app answers;
    /// past it the wake fails and waiting requests get 502/504.
    #[arg(long, env = "DORMANT_WAKE_TIMEOUT", default_value = "60s", value_parser = humantime::parse_duration, value_name = "DURATION")]
    pub wake_timeout: Duration,

    /// How a request for a sleeping container is served, unless the
    /// container says: `hold` it until the container answers, `redirect`
    /// (307 to the same URL once it answers) or `page` ("waking up" page for
    /// browsers, hold for other clients).
    #[arg(
        long,
        env = "DORMANT_WAKE_STRATEGY",
        value_enum,
        default_value = "hold",
        value_name = "STRATEGY"
    )]
    pub wake_strategy: WakeStrategy,

    /// Request body bytes read ahead while a container wakes; the rest of a
    /// larger body is streamed once it answers.
    #[arg(long, env = "DORMANT_WAKE_BUFFER", default_value = "1m", value_parser = parse_memory, value_name = "SIZE")]
    pub wake_buffer: u64,

    /// Request body bytes all requests held for waking containers may read
    /// ahead together; past it such requests get 503 with `Retry-After`.
    #[arg(long, env = "DORMANT_WAKE_BUFFER_TOTAL", default_value = "256m", value_parser = parse_memory, value_name = "SIZE")]
    pub wake_buffer_total: u64,

    /// Most requests held at once for waking containers; past it such
    /// requests get 503 with `Retry-After`.
    #[arg(
        long,
        env = "DORMANT_MAX_HELD_REQUESTS",
        default_value_t = 10_000,
        value_name = "N"
    )]
    pub max_held_requests: usize,

    /// Time a client has to send a whole request head: from connecting, and
    /// from the first byte of each later request on the connection.
    #[arg(long, env = "DORMANT_HEADER_TIMEOUT", default_value = "10s", value_parser = positive_duration, value_name = "DURATION")]
    pub header_timeout: Duration,

    /// Time a kept-alive client connection may sit idle between requests.
    /// A request in flight, a streaming response or a WebSocket is never idle.
    #[arg(long, env = "DORMANT_IDLE_CONNECTION_TIMEOUT", default_value = "120s", value_parser = positive_duration, value_name = "DURATION")]
    pub idle_connection_timeout: Duration,

    /// Most client connections the proxy holds open; past it new ones are
    /// closed at once. Default: 10000, or what the open-file limit holds.
    #[arg(long, env = "DORMANT_MAX_CONNECTIONS", value_name = "N")]
    pub max_connections: Option<NonZeroUsize>,

    /// Most connections the API holds open; more wait to be accepted.
    #[arg(
        long,
        env = "DORMANT_API_MAX_CONNECTIONS",
        default_value = "256",
        value_name = "N"
    )]
    pub api_max_connections: NonZeroUsize,

    /// Time a running container has to send its response head; past it the
    /// client gets 504.
    #[arg(long, env = "DORMANT_UPSTREAM_TIMEOUT", default_value = "300s", value_parser = positive_duration, value_name = "DURATION")]
    pub upstream_timeout: Duration,

    /// Most header fields in a request; more get 431.
    #[arg(
        long,
        env = "DORMANT_MAX_REQUEST_HEADERS",
        default_value = "100",
        value_name = "N"
    )]
    pub max_request_headers: NonZeroUsize,

    /// Most bytes in a request head (request line and headers); more get 431.
    #[arg(long, env = "DORMANT_MAX_REQUEST_HEAD", default_value = "64k", value_parser = parse_memory, value_name = "SIZE")]
    pub max_request_head: u64,

    /// Comma-separated address blocks (`10.0.0.0/8,::1`) of proxies in front
    /// of dormant whose `X-Forwarded-*` headers are kept and extended. From
    /// anyone else they are replaced. Default: none.
    #[arg(
        long,
        env = "DORMANT_TRUSTED_PROXIES",
        value_delimiter = ',',
        value_name = "CIDRS"
    )]
    pub trusted_proxies: Vec<Cidr>,

    /// Time between SIGTERM and SIGKILL when a container is put to sleep.
    #[arg(long, env = "DORMANT_STOP_GRACE", default_value = "10s", value_parser = humantime::parse_duration, value_name = "DURATION")]
    pub stop_grace: Duration,

    /// Time asleep after which a container is archived (its changes kept in
    /// one compressed snapshot, its Docker container removed), unless the
    /// container says.
    #[arg(long, env = "DORMANT_ARCHIVE_AFTER", default_value = "24h", value_parser = humantime::parse_duration, value_name = "DURATION")]
    pub archive_after: Duration,

    /// Time idle after which a running container is paused (napping: no
    /// CPU, memory kept; its next request unpauses it in milliseconds, with
    /// no start), unless the container says. `0` never naps. It still
    /// sleeps (stops) after its idle timeout.
    #[arg(long, env = "DORMANT_NAP_AFTER", default_value = "60s", value_parser = nap_after, value_name = "DURATION")]
    pub nap_after: Duration,

    /// Where the other nodes sharing the store reach this node's proxy
    /// (`host:port`). Default: the proxy's own address (`--proxy-addr`).
    #[arg(long, env = "DORMANT_ADVERTISE_ADDR", value_parser = advertise_addr, value_name = "HOST:PORT")]
    pub advertise_addr: Option<String>,

    /// How long a node counts as live after its last heartbeat in the
    /// store (it sends one every third of this), 1s to 10m.
    #[arg(long, env = "DORMANT_LEASE_TTL", default_value = "10s", value_parser = lease_ttl, value_name = "DURATION")]
    pub lease_ttl: Duration,

    /// Most containers running at once. Starting one more first puts the
    /// least recently active to sleep. Default: no limit.
    #[arg(long, env = "DORMANT_MAX_RUNNING", value_name = "N")]
    pub max_running: Option<usize>,

    /// Most memory the running containers' limits may add up to, e.g. `16g`.
    /// Default: 80% of this host's memory.
    #[arg(long, env = "DORMANT_MEMORY_BUDGET", value_parser = parse_memory, value_name = "SIZE")]
    pub memory_budget: Option<u64>,

    /// Most Docker operations in flight at once, so a storm of wakes doesn't
    /// overload the daemon.
    #[arg(
        long,
        env = "DORMANT_DOCKER_CONCURRENCY",
        default_value_t = 8,
        value_name = "N"
    )]
    pub docker_concurrency: usize,

    /// Longest a Docker call may take (a stop gets `--stop-grace` on top);
    /// past it the call fails as "Docker unavailable" and the transition
    /// ends in a defined state instead of waiting on a stuck daemon.
    #[arg(long, env = "DORMANT_DOCKER_TIMEOUT", default_value = "60s", value_parser = humantime::parse_duration, value_name = "DURATION")]
    pub docker_timeout: Duration,

    /// How the proxy reaches containers: `network` at their own address on
    /// the Docker network `--network` (no published port, so no
    /// `docker-proxy` process per container; needs dormant on the Docker
    /// host), `published` at a port published on 127.0.0.1 (works anywhere),
    /// or `auto`: `network` when the daemon is local, else `published`.
    #[arg(
        long,
        env = "DORMANT_UPSTREAM",
        value_enum,
        default_value = "auto",
        value_name = "MODE"
    )]
    pub upstream: UpstreamMode,

    /// The Docker network containers join (in either `--upstream` mode).
    /// Made if missing, with traffic between containers disabled.
    #[arg(
        long,
        env = "DORMANT_NETWORK",
        default_value = "dormant",
        value_name = "NAME"
    )]
    pub network: String,

    /// Disk space an archive or a restore must leave free on each filesystem
    /// it writes to (the snapshot dir's; Docker's): one that would leave less
    /// is refused before it writes anything. `0` turns the check off.
    #[arg(long, env = "DORMANT_MIN_FREE_DISK", default_value = "2g", value_parser = parse_disk_size, value_name = "SIZE")]
    pub min_free_disk: u64,

    /// Where archived containers' snapshots are kept. Unset: the data dir's
    /// `snapshots/`. `s3://bucket/prefix`: an S3-compatible object store, reached
    /// through AWS_ENDPOINT_URL, AWS_REGION, AWS_ACCESS_KEY_ID and
    /// AWS_SECRET_ACCESS_KEY (AWS_ALLOW_HTTP=true for a plain-http endpoint);
    /// snapshots pass through the data dir's `snapshots/` on their way.
    #[arg(long, env = "DORMANT_SNAPSHOTS", value_name = "URL")]
    pub snapshots: Option<SnapshotLocation>,

    /// How long shutdown waits for in-flight requests.
    #[arg(long, env = "DORMANT_DRAIN_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration, value_name = "DURATION")]
    pub drain_timeout: Duration,

    /// Container transitions kept for event-stream clients that reconnect
    /// (`Last-Event-ID`); one that missed more starts over with `reset`.
    #[arg(long, env = "DORMANT_EVENT_BUFFER", default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..=1_000_000), value_name = "N")]
    pub event_buffer: u64,

    /// How long one webhook delivery is retried (backoff from 1 s, doubling,
    /// at most a minute apart) before that event is given up.
    #[arg(long, env = "DORMANT_WEBHOOK_RETRY_FOR", default_value = "10m", value_parser = positive_duration, value_name = "DURATION")]
    pub webhook_retry_for: Duration,

    /// Whether tenants' webhooks may reach private and local addresses
    /// (loopback, RFC 1918, link-local...). The admin's always may.
    #[arg(long, env = "DORMANT_WEBHOOK_ALLOW_PRIVATE", default_value_t = false, action = clap::ArgAction::Set, value_name = "BOOL")]
    pub webhook_allow_private: bool,

    /// PEM file of certificate authorities (one or more certificates)
    /// trusted for `https://` webhooks besides the public ones: a private CA,
    /// or a receiver's self-signed certificate.
    #[arg(long, env = "DORMANT_WEBHOOK_CA_FILE", value_name = "FILE")]
    pub webhook_ca_file: Option<PathBuf>,

    // Tenants and the audit log.
    /// How long the audit log keeps an entry (one per API call that changed
    /// something); older entries are pruned every hour.
    #[arg(long, env = "DORMANT_AUDIT_RETENTION", default_value = "30d", value_parser = positive_duration, value_name = "DURATION")]
    pub audit_retention: Duration,

    // What may wake a container: bots and monitors, floods.
    /// `User-Agent` substrings (comma-separated, any case) of crawlers, link
    /// previewers and uptime monitors: their requests never wake a container
    /// (dormant answers 503 with `Retry-After` while it sleeps). `default` is
    /// the built-in list (see the README), so `default,MyMonitor` extends it;
    /// `none` (or an empty value) turns this off.
    #[arg(
        long,
        env = "DORMANT_NO_WAKE_AGENTS",
        default_value = "default",
        value_name = "LIST"
    )]
    pub no_wake_agents: AgentList,

    /// Whether requests from `--no-wake-agents`, and for `/robots.txt` and
    /// `/favicon.ico`, leave a container's activity clock alone, so an
    /// uptime monitor does not keep it awake.
    #[arg(long, env = "DORMANT_ACTIVITY_IGNORES_AGENTS", default_value_t = true, action = clap::ArgAction::Set, value_name = "BOOL")]
    pub activity_ignores_agents: bool,

    /// Requests per client address (IPv6: per /64) that may wake or restore
    /// a container: `N/s`, `N/m` or `N/h`, or `off`. Past it (and
    /// `--wake-burst`) such requests get 429 with `Retry-After`.
    #[arg(
        long,
        env = "DORMANT_WAKE_RATE",
        default_value = "20/m",
        value_name = "RATE"
    )]
    pub wake_rate: Rate,

    /// Requests per client address that may wake containers at once before
    /// `--wake-rate` applies.
    #[arg(long, env = "DORMANT_WAKE_BURST", default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=100_000), value_name = "N")]
    pub wake_burst: u32,

    /// Requests per client address for hostnames with no container (`N/m`,
    /// or `off`); past it (and `--unknown-host-burst`) they get 429.
    #[arg(
        long,
        env = "DORMANT_UNKNOWN_HOST_RATE",
        default_value = "60/m",
        value_name = "RATE"
    )]
    pub unknown_host_rate: Rate,

    /// Requests per client address for unknown hostnames at once before
    /// `--unknown-host-rate` applies.
    #[arg(long, env = "DORMANT_UNKNOWN_HOST_BURST", default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=100_000), value_name = "N")]
    pub unknown_host_burst: u32,

    /// Wakes (and restores) the proxy may start per second, from all clients
    /// together (`N/s`, or `off`); past it requests that would start one get
    /// 503 with `Retry-After`.
    #[arg(
        long,
        env = "DORMANT_MAX_WAKE_RATE",
        default_value = "10/s",
        value_name = "RATE"
    )]
    pub max_wake_rate: Rate,
    // --- Private container URLs ---
    /// Who may reach a container's URL unless its create request says:
    /// `public` (anyone who knows the hostname) or `private` (a container
    /// access token, an API token, or a session cookie from a login link).
    #[arg(
        long,
        env = "DORMANT_DEFAULT_ACCESS",
        value_enum,
        default_value = "public",
        value_name = "ACCESS"
    )]
    pub default_access: Access,

    /// How long the session cookie a login link sets stays valid (1m..30d).
    #[arg(long, env = "DORMANT_SESSION_TTL", default_value = "12h", value_parser = session_ttl, value_name = "DURATION")]
    pub session_ttl: Duration,

    // --- Beside a gateway: running containers' traffic offloaded ---
    /// `nginx`: nginx serves running containers itself, from the map
    /// dormant writes to `--nginx-map`; every other host goes to dormant's
    /// wake endpoint (see the README, "Beside nginx"). Default: none.
    #[arg(long, env = "DORMANT_GATEWAY", value_enum, value_name = "GATEWAY")]
    pub gateway: Option<GatewayKind>,

    /// With `--gateway nginx`: the file dormant keeps the map entries in
    /// (`hostname "ip:port";` for each running public container), included
    /// by nginx's `map`.
    #[arg(long, env = "DORMANT_NGINX_MAP", value_name = "FILE")]
    pub nginx_map: Option<PathBuf>,

    /// With `--gateway nginx`: the command (run by `sh -c`) that makes nginx
    /// read the map again once it changed.
    #[arg(
        long,
        env = "DORMANT_NGINX_RELOAD",
        default_value = "nginx -s reload",
        value_name = "CMD"
    )]
    pub nginx_reload: String,

    /// With `--gateway nginx`: nginx's probe listener (the recipe's
    /// `return 200 $dormant_upstream;` server), which dormant asks where
    /// nginx sends a host before redirecting a woken request back.
    #[arg(
        long,
        env = "DORMANT_NGINX_PROBE",
        default_value = "127.0.0.1:8079",
        value_name = "ADDR"
    )]
    pub nginx_probe: SocketAddr,

    /// With `--gateway nginx`: the access log nginx writes each request's
    /// `$host` to (the recipe's `dormant_activity` log). dormant reads it
    /// every second, counts each host as its container's activity (the
    /// requests nginx serves never reach dormant) and empties it. Default:
    /// `nginx-activity.log` beside `--nginx-map`.
    #[arg(long, env = "DORMANT_NGINX_ACTIVITY", value_name = "FILE")]
    pub nginx_activity: Option<PathBuf>,
}

/// A gateway beside dormant that serves running containers itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum GatewayKind {
    Nginx,
}

/// How the proxy reaches containers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum UpstreamMode {
    Auto,
    Network,
    Published,
}

impl ServeConfig {
    pub const DEFAULT_DATA_DIR: &'static str = "./dormant-data";
}

/// Parses `--store` with an error that does not repeat the value, as
/// clap's own would: a PostgreSQL URL may hold a password.
#[derive(Clone)]
struct StoreUrlParser;

impl clap::builder::TypedValueParser for StoreUrlParser {
    type Value = crate::store::StoreUrl;

    fn parse_ref(
        &self,
        cmd: &clap::Command,
        _arg: Option<&clap::Arg>,
        value: &std::ffi::OsStr,
    ) -> Result<Self::Value, clap::Error> {
        let text = value.to_str().unwrap_or_default();
        crate::store::StoreUrl::parse(text).map_err(|why| {
            clap::Error::raw(
                clap::error::ErrorKind::ValueValidation,
                format!("invalid value for --store (DORMANT_STORE): {why}\n"),
            )
            .with_cmd(cmd)
        })
    }
}

/// A log file size: at least 1 KiB (Docker's json-file would otherwise
/// rotate on every line), at most 1 GiB.
fn parse_log_size(text: &str) -> Result<u64, String> {
    let bytes = parse_memory(text)?;
    if !(1 << 10..=1 << 30).contains(&bytes) {
        return Err(format!("`{text}` must be between 1k and 1g"));
    }
    Ok(bytes)
}

/// A size like `--default-memory`'s, or `0`.
fn parse_disk_size(text: &str) -> Result<u64, String> {
    if text.trim() == "0" {
        return Ok(0);
    }
    parse_memory(text)
}

/// A duration above zero: a zero timeout would refuse everything.
fn positive_duration(s: &str) -> Result<Duration, String> {
    match humantime::parse_duration(s) {
        Ok(d) if d.is_zero() => Err("must be more than zero".into()),
        Ok(d) => Ok(d),
        Err(e) => Err(e.to_string()),
    }
}

/// `--advertise-addr`: a host name or IP address and a port, as other
/// nodes will dial it.
fn advertise_addr(s: &str) -> Result<String, String> {
    const MAX_LEN: usize = 255;
    if s.len() > MAX_LEN {
        return Err(format!("at most {MAX_LEN} characters"));
    }
    let authority: http::uri::Authority = s
        .parse()
        .map_err(|_| "expected host:port, e.g. 10.0.0.5:8080".to_owned())?;
    let host_ok = !authority.host().is_empty()
        && authority.as_str().find('@').is_none()
        && authority.port_u16().is_some_and(|port| port != 0);
    if !host_ok {
        return Err("expected host:port with a port above 0, e.g. 10.0.0.5:8080".into());
    }
    Ok(authority.as_str().to_owned())
}

/// `--lease-ttl`: 1 s to 10 min; shorter would flap on a slow database,
/// longer would keep a dead node's containers unserved for too long.
fn lease_ttl(s: &str) -> Result<Duration, String> {
    let ttl = humantime::parse_duration(s).map_err(|e| e.to_string())?;
    if !(Duration::from_secs(1)..=Duration::from_secs(600)).contains(&ttl) {
        return Err("must be between 1s and 10m".into());
    }
    Ok(ttl)
}

/// `--nap-after`: `0` (never) or between 1s and 100 years, as a
/// container's own `nap_after`.
fn nap_after(s: &str) -> Result<Duration, String> {
    crate::api::parse_nap_after(s).map_err(|e| e.message)
}

/// A session lifetime: long enough to be of use, short enough that a
/// stolen cookie does not last for ever.
fn session_ttl(s: &str) -> Result<Duration, String> {
    let ttl = humantime::parse_duration(s).map_err(|e| e.to_string())?;
    if !(Duration::from_secs(60)..=Duration::from_secs(30 * 24 * 3600)).contains(&ttl) {
        return Err(format!("`{s}` must be between 1m and 30d"));
    }
    Ok(ttl)
}

/// Reads the `--config` file (named in `args` or `DORMANT_CONFIG`) and
/// exposes each of its keys as the matching `DORMANT_*` variable, unless that
/// variable is already set. Parsing the flags afterwards then gives
/// flag > env > file > default, with one parser and one set of error
/// messages for all three. Call before any thread starts.
pub fn apply_config_file(args: &[OsString]) -> anyhow::Result<()> {
    let Some(path) = config_path(args) else {
        return Ok(());
    };
    let text = std::fs::read_to_string(&path)
        .map_err(|e| anyhow::anyhow!("cannot read the config file {}: {e}", path.display()))?;
    let table: toml::Table = text.parse().map_err(|e| {
        anyhow::anyhow!("the config file {} is not valid TOML: {e}", path.display())
    })?;
    let command = ServeCommandForKeys::command();
    for (key, value) in table {
        let flag = key.replace('_', "-");
        let known = command
            .get_arguments()
            .any(|arg| arg.get_long() == Some(flag.as_str()) && flag != "config");
        if !known {
            anyhow::bail!(
                "the config file {} has the key `{key}`, which is not a setting of `dormant serve` (see `dormant serve --help`)",
                path.display()
            );
        }
        let value = match value {
            toml::Value::String(s) => s,
            toml::Value::Integer(i) => i.to_string(),
            toml::Value::Float(f) => f.to_string(),
            toml::Value::Boolean(b) => b.to_string(),
            other => anyhow::bail!(
                "the config file {} gives `{key}` a {}; use a string or a number",
                path.display(),
                other.type_str()
            ),
        };
        let var = format!("DORMANT_{}", flag.replace('-', "_").to_ascii_uppercase());
        if std::env::var_os(&var).is_none() {
            // Safe: called from `main` before the runtime or any thread starts.
            std::env::set_var(var, value);
        }
    }
    Ok(())
}

/// Only `serve` reads a config file; its path comes from `--config` or
/// `DORMANT_CONFIG`.
fn config_path(args: &[OsString]) -> Option<PathBuf> {
    let args: Vec<&str> = args.iter().filter_map(|a| a.to_str()).collect();
    if !args.contains(&"serve") {
        return None;
    }
    for (i, arg) in args.iter().enumerate() {
        if let Some(value) = arg.strip_prefix("--config=") {
            return Some(value.into());
        }
        if *arg == "--config" {
            return args.get(i + 1).map(PathBuf::from);
        }
    }
    std::env::var_os("DORMANT_CONFIG").map(PathBuf::from)
}

/// Lets `apply_config_file` list `ServeConfig`'s flags.
#[derive(clap::Parser)]
struct ServeCommandForKeys {
    #[command(flatten)]
    config: ServeConfig,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        config: ServeConfig,
    }

    #[test]
    fn the_store_is_sqlite_unless_a_postgres_url_is_given_and_bad_ones_are_not_echoed() {
        let cli = Cli::try_parse_from(["dormant"]).unwrap();
        assert!(matches!(cli.config.store, crate::store::StoreUrl::Sqlite));
        let url = "postgres://app:s3cret@db:5432/dormant";
        let cli = Cli::try_parse_from(["dormant", "--store", url]).unwrap();
        assert_eq!(
            cli.config.store.to_string(),
            "postgres://app@db:5432/dormant"
        );
        for bad in ["mysql://app:s3cret@db/x", "postgres://app:s3cret@db:port/x"] {
            let err = Cli::try_parse_from(["dormant", "--store", bad])
                .err()
                .expect("refused")
                .to_string();
            assert!(err.contains("--store"), "{err}");
            assert!(!err.contains("s3cret"), "{err}");
        }
    }

    #[test]
    fn defaults_are_the_documented_ones() {
        let cli = Cli::try_parse_from(["dormant"]).unwrap();
        let c = cli.config;
        assert_eq!(c.api_addr, "127.0.0.1:7070".parse().unwrap());
        assert_eq!(c.proxy_addr, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(c.base_domain, "localhost");
        assert_eq!(c.idle_timeout, Duration::from_secs(900));
        assert_eq!(c.default_memory, 512 << 20);
        assert_eq!(c.data_dir, PathBuf::from("./dormant-data"));
        assert_eq!(c.wake_strategy, WakeStrategy::Hold);
        assert_eq!(c.wake_buffer, 1 << 20);
        assert_eq!(c.stop_grace, Duration::from_secs(10));
        assert_eq!(c.archive_after, Duration::from_secs(24 * 3600));
        assert_eq!(c.lease_ttl, Duration::from_secs(10));
        assert_eq!(c.advertise_addr, None);
        assert_eq!(c.audit_retention, Duration::from_secs(30 * 24 * 3600));
        assert_eq!(c.upstream, UpstreamMode::Auto);
        assert_eq!(c.docker_concurrency, 8);
        assert_eq!(c.docker_timeout, Duration::from_secs(60));
        assert_eq!(c.max_running, None);
        assert_eq!(c.wake_timeout, Duration::from_secs(60));
        assert_eq!(c.min_free_disk, 2 << 30);
        let min = Cli::try_parse_from(["dormant", "--min-free-disk", "0"]).unwrap();
        assert_eq!(min.config.min_free_disk, 0);
        assert_eq!(c.snapshots, None, "the data dir's snapshots/");
        let s3 = Cli::try_parse_from(["dormant", "--snapshots", "s3://snaps/site-a"]).unwrap();
        assert_eq!(
            s3.config.snapshots,
            Some(SnapshotLocation::S3 {
                bucket: "snaps".into(),
                prefix: "site-a".into()
            })
        );
        assert_eq!(c.pids_limit, 1024);
        assert!(c.allowed_capabilities.is_empty());
        assert_eq!(c.log_max_size, 10 << 20);
        assert_eq!(c.log_max_files, 3);
        assert_eq!(c.docker_wait, Duration::from_secs(60));
        assert_eq!(c.wake_buffer_total, 256 << 20);
        assert_eq!(c.max_held_requests, 10_000);
        assert_eq!(c.header_timeout, Duration::from_secs(10));
        assert_eq!(c.idle_connection_timeout, Duration::from_secs(120));
        assert_eq!(c.max_connections, None);
        assert_eq!(c.api_max_connections.get(), 256);
        assert_eq!(c.upstream_timeout, Duration::from_secs(300));
        assert_eq!(c.max_request_headers.get(), 100);
        assert_eq!(c.max_request_head, 64 << 10);
        assert!(c.trusted_proxies.is_empty());
        assert_eq!(
            c.no_wake_agents.as_slice().len(),
            crate::proxy::no_wake::DEFAULT_NO_WAKE_AGENTS.len()
        );
        assert!(c.activity_ignores_agents);
        assert_eq!(c.wake_rate, Rate::per_minute(20));
        assert_eq!(c.wake_burst, 10);
        assert_eq!(c.unknown_host_rate, Rate::per_minute(60));
        assert_eq!(c.unknown_host_burst, 20);
        assert_eq!(c.max_wake_rate, Rate::per_second(10));
        assert_eq!(c.default_access, Access::Public);
        assert_eq!(c.session_ttl, Duration::from_secs(12 * 3600));
        assert_eq!(c.webhook_ca_file, None);
    }

    #[test]
    fn wake_filter_flags_parse_and_refuse_nonsense() {
        let c = Cli::try_parse_from([
            "dormant",
            "--no-wake-agents",
            "default,MyMonitor",
            "--activity-ignores-agents",
            "false",
            "--wake-rate",
            "off",
            "--max-wake-rate",
            "5/s",
        ])
        .unwrap()
        .config;
        assert!(c
            .no_wake_agents
            .as_slice()
            .contains(&"MyMonitor".to_owned()));
        assert!(!c.activity_ignores_agents);
        assert!(c.wake_rate.is_off());
        assert_eq!(c.max_wake_rate, Rate::per_second(5));
        let none = Cli::try_parse_from(["dormant", "--no-wake-agents", ""]).unwrap();
        assert!(none.config.no_wake_agents.as_slice().is_empty());
        for bad in [
            ["--wake-rate", "20"],
            ["--wake-burst", "0"],
            ["--unknown-host-rate", "1/d"],
            ["--activity-ignores-agents", "maybe"],
        ] {
            assert!(
                Cli::try_parse_from(["dormant", bad[0], bad[1]]).is_err(),
                "{bad:?} was accepted"
            );
        }
    }

    #[test]
    fn access_flags_parse_and_refuse_nonsense() {
        let parse = |args: &[&str]| Cli::try_parse_from(args).map(|cli| cli.config);
        let c = parse(&[
            "dormant",
            "--default-access",
            "private",
            "--session-ttl",
            "2h",
        ])
        .unwrap();
        assert_eq!(c.default_access, Access::Private);
        assert_eq!(c.session_ttl, Duration::from_secs(7200));
        for bad in [
            ["--default-access", "secret"],
            ["--session-ttl", "10s"],
            ["--session-ttl", "90d"],
        ] {
            assert!(parse(&["dormant", bad[0], bad[1]]).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn hardening_flags_are_checked() {
        let parse = |args: &[&str]| Cli::try_parse_from(args).map(|cli| cli.config);
        let c = parse(&["dormant", "--allowed-capabilities", "net_raw,SYS_PTRACE"]).unwrap();
        assert_eq!(c.allowed_capabilities.to_string(), "NET_RAW,SYS_PTRACE");
        assert!(parse(&["dormant", "--allowed-capabilities", "NET_RAW,GOD_MODE"]).is_err());
        assert!(parse(&["dormant", "--log-max-size", "10"]).is_err());
        assert!(parse(&["dormant", "--log-max-files", "0"]).is_err());
        assert_eq!(
            parse(&["dormant", "--log-max-size", "1m"])
                .unwrap()
                .log_max_size,
            1 << 20
        );
    }

    #[test]
    fn edge_limits_parse_and_refuse_nonsense() {
        let cli = Cli::try_parse_from([
            "dormant",
            "--trusted-proxies",
            "10.0.0.0/8, 127.0.0.1",
            "--max-connections",
            "5",
        ])
        .unwrap();
        assert_eq!(cli.config.trusted_proxies.len(), 2);
        assert_eq!(cli.config.max_connections.map(NonZeroUsize::get), Some(5));
        for bad in [
            ["--trusted-proxies", "10.0.0.0/40"],
            ["--max-connections", "0"],
            ["--header-timeout", "0s"],
        ] {
            assert!(
                Cli::try_parse_from(["dormant", bad[0], bad[1]]).is_err(),
                "{bad:?} was accepted"
            );
        }
    }

    #[test]
    fn node_flags_parse_and_refuse_nonsense() {
        let cli = Cli::try_parse_from([
            "dormant",
            "--advertise-addr",
            "node-a.internal:8080",
            "--lease-ttl",
            "30s",
        ])
        .unwrap();
        assert_eq!(
            cli.config.advertise_addr.as_deref(),
            Some("node-a.internal:8080")
        );
        assert_eq!(cli.config.lease_ttl, Duration::from_secs(30));
        for bad in [
            ["--advertise-addr", "node-a"],
            ["--advertise-addr", "node-a:0"],
            ["--advertise-addr", "user@node-a:80"],
            ["--advertise-addr", "node a:80"],
            ["--lease-ttl", "500ms"],
            ["--lease-ttl", "1h"],
        ] {
            assert!(
                Cli::try_parse_from(["dormant", bad[0], bad[1]]).is_err(),
                "{bad:?} was accepted"
            );
        }
    }

    #[test]
    fn the_config_path_is_found_only_for_serve() {
        let args = |v: &[&str]| v.iter().map(OsString::from).collect::<Vec<_>>();
        assert_eq!(
            config_path(&args(&["dormant", "serve", "--config", "a.toml"])),
            Some("a.toml".into())
        );
        assert_eq!(
            config_path(&args(&["dormant", "serve", "--config=b.toml"])),
            Some("b.toml".into())
        );
        assert_eq!(
            config_path(&args(&["dormant", "ls", "--config", "a.toml"])),
            None
        );
    }
}
