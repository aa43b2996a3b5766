//! The API's wire types: what clients send and what they get back.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::domain::{rfc3339, Access, ContainerRecord, ContainerState, WakeStrategy};
use crate::units::format_memory;

/// Body of `POST /v1/containers`. Unknown fields are rejected.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateContainers {
    /// Image to run; must already be present on the Docker host (never pulled).
    #[schema(example = "dormant-demo:latest")]
    pub image: String,
    /// Port the app listens on inside the container. Optional when the image
    /// exposes exactly one port.
    pub port: Option<u16>,
    /// DNS label `[a-z0-9]([a-z0-9-]*[a-z0-9])?`, at most 40 characters; the
    /// container is reached at `<name>.<base-domain>`. Generated when absent.
    pub name: Option<String>,
    /// How many containers to create (1..100). With `name`, they are named
    /// `name-1` .. `name-N`. All or none are created.
    pub count: Option<u32>,
    /// Environment variables.
    pub env: Option<BTreeMap<String, String>>,
    /// Command (replaces the image's CMD).
    pub cmd: Option<Vec<String>>,
    /// Memory limit, e.g. `"256m"`; default from `--default-memory`.
    #[schema(example = "256m")]
    pub memory: Option<String>,
    /// CPU limit in cores, e.g. 0.5.
    pub cpus: Option<f64>,
    /// Idle time before the container is put to sleep, e.g. `"10m"`; default
    /// from `--idle-timeout`.
    #[schema(example = "10m")]
    pub idle_timeout: Option<String>,
    /// Absolute paths inside the container, each kept in a named volume.
    pub volumes: Option<Vec<String>>,
    /// Path that must answer with a status below 500 before the container
    /// counts as ready, e.g. `"/healthz"`. Default: any HTTP answer on `/`.
    #[schema(example = "/healthz")]
    pub ready_path: Option<String>,
    /// How requests are served while it wakes: `hold`, `redirect` or `page`.
    /// Default: `--wake-strategy`.
    pub wake: Option<WakeStrategy>,
    /// Time asleep before it is archived, e.g. `"7d"`; default from
    /// `--archive-after`.
    #[schema(example = "7d")]
    pub archive_after: Option<String>,
    /// Time idle before it is paused (napping: no CPU, memory kept; its next
    /// request unpauses it in milliseconds), e.g. `"60s"`; `"0"` never naps
    /// it; 1s..100 years otherwise. Default from `--nap-after`.
    #[schema(example = "60s")]
    pub nap_after: Option<String>,
    /// Linux capabilities to add back (e.g. `["NET_RAW"]`), each one the
    /// server's `--allowed-capabilities` allows. Containers otherwise run
    /// with Docker's defaults minus NET_RAW, MKNOD, AUDIT_WRITE, SETFCAP,
    /// SETPCAP and SYS_CHROOT.
    #[schema(example = json!(["NET_RAW"]))]
    pub cap_add: Option<Vec<String>>,
    /// Who may reach its URL: `public` (anyone) or `private` (a container
    /// access token, an API token, or a login link's session cookie).
    /// Default: `--default-access`.
    pub access: Option<Access>,
    /// Admin only: the tenant the containers are for (default: the caller;
    /// with a tenant token, the tenant itself).
    pub tenant: Option<String>,
}

/// A container as the API shows it.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ContainerView {
    pub name: String,
    /// Hostname the proxy routes to this container.
    pub host: String,
    /// URL of the container through the proxy.
    pub url: String,
    pub state: ContainerState,
    /// Who may reach its URL.
    pub access: Access,
    /// Why the container is in its state (set when `failed`).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub reason: Option<String>,
    pub image: String,
    pub port: u16,
    /// Memory limit, e.g. `512m`.
    pub memory: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub cpus: Option<f64>,
    /// Idle time before sleep, e.g. `15m`.
    pub idle_timeout: String,
    pub volumes: Vec<String>,
    pub env: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub cmd: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub ready_path: Option<String>,
    /// Wake strategy; absent when it follows the server's default.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub wake: Option<WakeStrategy>,
    /// Time asleep before it is archived; absent when it follows the
    /// server's default.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub archive_after: Option<String>,
    /// Time idle before it naps (`0`: never); absent when it follows the
    /// server's `--nap-after`.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub nap_after: Option<String>,
    /// Capabilities added back at create.
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub cap_add: Vec<String>,
    /// Its snapshot, while archived, and after a restore until the restored
    /// files are flushed to disk.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub snapshot: Option<SnapshotView>,
    /// Bytes processed so far by the archive or restore in progress.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub progress_bytes: Option<u64>,
    /// How many times it has been woken.
    pub wakes: u64,
    /// Milliseconds from the start of its last wake until it answered.
    pub last_wake_ms: Option<u64>,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339: the last request, open connection or heartbeat.
    pub last_active_at: String,
    /// The tenant it belongs to (`admin` for the admin's).
    #[serde(default = "admin_owner")]
    pub tenant: String,
}

fn admin_owner() -> String {
    crate::tenant::ADMIN.to_owned()
}

/// What an archived container's snapshot holds.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SnapshotView {
    /// Size of the compressed snapshot on disk.
    pub bytes: u64,
    /// Entries: files, directories, links and deletions.
    pub files: u64,
    /// RFC 3339.
    pub created_at: String,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ContainerList {
    pub containers: Vec<ContainerView>,
}

/// How the API spells hostnames and URLs.
#[derive(Debug, Clone)]
pub struct PublicAddress {
    pub base_domain: String,
    /// `:8080`, or empty when the proxy is on port 80.
    pub port_suffix: String,
}

impl PublicAddress {
    pub fn new(base_domain: &str, proxy_port: u16) -> Self {
        Self {
            base_domain: base_domain.trim_matches('.').to_ascii_lowercase(),
            port_suffix: if proxy_port == 80 {
                String::new()
            } else {
                format!(":{proxy_port}")
            },
        }
    }

    pub fn view(&self, record: &ContainerRecord) -> ContainerView {
        let host = format!("{}.{}", record.name, self.base_domain);
        let spec = &record.spec;
        ContainerView {
            url: format!("http://{host}{}/", self.port_suffix),
            host,
            name: record.name.clone(),
            state: record.state,
            access: spec.access,
            reason: record.reason.clone(),
            image: spec.image.clone(),
            port: spec.port,
            memory: format_memory(spec.memory_bytes),
            cpus: spec.nano_cpus.map(|n| n as f64 / 1e9),
            idle_timeout: humantime::format_duration(spec.idle_timeout).to_string(),
            volumes: spec.volumes.clone(),
            env: spec.env.clone(),
            cmd: spec.cmd.clone(),
            ready_path: spec.ready_path.clone(),
            wake: spec.wake,
            archive_after: spec
                .archive_after
                .map(|d| humantime::format_duration(d).to_string()),
            nap_after: spec
                .nap_after
                .map(|d| humantime::format_duration(d).to_string()),
            cap_add: spec.cap_add.clone(),
            snapshot: record.snapshot.as_ref().map(|s| SnapshotView {
                bytes: s.bytes,
                files: s.files,
                created_at: rfc3339(s.created_at),
            }),
            progress_bytes: None,
            wakes: record.wakes,
            last_wake_ms: record.last_wake_ms,
            created_at: rfc3339(record.created_at),
            last_active_at: rfc3339(record.last_active_at),
            tenant: record.owner.clone(),
        }
    }
}

/// `GET /v1/stats`: what exists, what runs against the limits, what it costs.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Stats {
    /// Containers by state.
    pub containers: BTreeMap<String, i64>,
    pub running: usize,
    /// `--max-running`, if set.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub max_running: Option<usize>,
    /// Sum of the running containers' memory limits.
    pub memory_bytes: u64,
    /// `--memory-budget`.
    pub memory_budget_bytes: u64,
    /// Starts waiting for room.
    pub wake_queue: usize,
    pub snapshot_files: u64,
    /// Disk used by snapshots.
    pub snapshot_bytes: u64,
    /// dormant's own resident memory.
    pub dormant_rss_bytes: u64,
    /// Finished wakes in each of the last 60 minutes, oldest first.
    #[serde(default)]
    pub wakes_last_hour: Vec<WakeMinute>,
}

/// One minute of wakes.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct WakeMinute {
    /// RFC 3339: the start of the minute.
    pub minute_start: String,
    pub wakes: u64,
    /// Mean wake duration in milliseconds (0 without wakes).
    pub avg_ms: u64,
    pub max_ms: u64,
}

impl From<crate::wake_history::WakeMinute> for WakeMinute {
    fn from(minute: crate::wake_history::WakeMinute) -> Self {
        Self {
            minute_start: rfc3339(minute.minute_start),
            wakes: minute.wakes,
            avg_ms: minute.avg_ms,
            max_ms: minute.max_ms,
        }
    }
}

/// A container access token just made: the secret is shown this once.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ContainerTokenCreated {
    /// Public id, for listings and revoking.
    #[schema(example = "tok_1a2b3c4d")]
    pub id: String,
    /// Send as `Authorization: Bearer <token>` to the container's URL.
    #[schema(example = "dmc_5f0c...")]
    pub token: String,
    pub container: String,
    /// RFC 3339.
    pub created_at: String,
}

/// A container access token as listings show it (never the secret).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ContainerTokenView {
    pub id: String,
    /// RFC 3339.
    pub created_at: String,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ContainerTokenList {
    pub tokens: Vec<ContainerTokenView>,
}

/// Body of `POST /v1/containers/{name}/login-link`; every field optional.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginLinkRequest {
    /// How long the link may be used, e.g. `"5m"` (1s..10m, default 60s).
    /// It works once.
    #[schema(example = "60s")]
    pub ttl: Option<String>,
    /// Where the browser goes once signed in: a path on the container's
    /// hostname (default `/`).
    #[schema(example = "/dashboard")]
    pub path: Option<String>,
}

/// A one-time login link.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct LoginLink {
    /// Open it in a browser: it signs in to this container's hostname only
    /// and goes on to the requested path.
    pub url: String,
    /// RFC 3339: unused after this, it no longer works.
    pub expires_at: String,
}

/// Body of `PATCH /v1/containers/{name}`: the settings that change in
/// place. An absent field stays as it is.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ContainerPatch {
    /// Time idle before it naps, e.g. `"30s"`; `"0"` never; `null` follows
    /// the server's `--nap-after` again.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>, example = "30s")]
    pub nap_after: Option<Option<String>>,
}

/// Tells a field sent as `null` (`Some(None)`) from one left out (`None`).
fn present<'de, D, T>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(deserializer).map(Some)
}

/// Body of `POST /v1/containers/{name}/access`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetAccess {
    pub access: Access,
}
