//! dormant's vocabulary, defined once: container states, the labels that link
//! Docker objects to dormant, and the durable record of one container.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// Label on every Docker object dormant manages.
pub const LABEL_MANAGED: &str = "dormant.managed";
/// Label carrying the container's dormant name (the hostname's first label).
pub const LABEL_NAME: &str = "dormant.name";
/// Label carrying the id of the dormant node that owns the object. Lets several
/// dormant instances share one Docker daemon without touching each other's
/// containers (and is the seed of the multi-host design).
pub const LABEL_NODE: &str = "dormant.node";

/// Label carrying the tenant a container belongs to (`admin` for the
/// admin's own); each tenant's containers share a Docker network of their own.
pub const LABEL_TENANT: &str = "dormant.tenant";

/// The tenant id of containers made with the admin token.
pub const ADMIN_TENANT: &str = "admin";

/// Label carrying the container port the app listens on.
pub const LABEL_PORT: &str = "dormant.port";

/// Prefix of the Docker container name: `dormant-<name>`.
pub const DOCKER_NAME_PREFIX: &str = "dormant-";

/// Where a container is in its life. See DESIGN.md for the transitions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ContainerState {
    Creating,
    Running,
    /// Paused through Docker (cgroup freezer): no CPU, memory kept; its
    /// next request unpauses it, with no start and no readiness probe.
    Napping,
    Starting,
    Stopping,
    Asleep,
    Archiving,
    Archived,
    Restoring,
    Failed,
    /// Only ever seen in memory, by requests that were waiting on a container
    /// when it was deleted; the store has no row for it any more.
    Deleted,
}

impl ContainerState {
    pub const ALL: [ContainerState; 11] = [
        Self::Creating,
        Self::Running,
        Self::Napping,
        Self::Starting,
        Self::Stopping,
        Self::Asleep,
        Self::Archiving,
        Self::Archived,
        Self::Restoring,
        Self::Failed,
        Self::Deleted,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Creating => "creating",
            Self::Running => "running",
            Self::Napping => "napping",
            Self::Starting => "starting",
            Self::Stopping => "stopping",
            Self::Asleep => "asleep",
            Self::Archiving => "archiving",
            Self::Archived => "archived",
            Self::Restoring => "restoring",
            Self::Failed => "failed",
            Self::Deleted => "deleted",
        }
    }
}

impl fmt::Display for ContainerState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ContainerState {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|state| state.as_str() == s)
            .ok_or_else(|| format!("unknown container state `{s}`"))
    }
}

/// What a container is made from: everything needed to create it again.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ContainerSpec {
    /// The image as the user named it.
    pub image: String,
    /// The image's id when the container was first made: containers made
    /// again (after removal, on restore) use this very image, so a user's
    /// changes always apply to the files they were made against, even if the
    /// tag has moved since.
    #[serde(default)]
    pub image_id: Option<String>,
    /// The port the app listens on inside the container.
    pub port: u16,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    #[serde(default)]
    pub cmd: Option<Vec<String>>,
    pub memory_bytes: u64,
    #[serde(default)]
    pub nano_cpus: Option<i64>,
    #[serde(with = "duration_ms")]
    pub idle_timeout: Duration,
    /// Absolute paths inside the container, each kept in a named volume.
    #[serde(default)]
    pub volumes: Vec<String>,
    /// Path that must answer below 500 for the app to count as ready; when
    /// absent, any HTTP answer on `/` will do.
    #[serde(default)]
    pub ready_path: Option<String>,
    /// How a request for this container is served while it wakes; `None`
    /// follows the server's `--wake-strategy`.
    #[serde(default)]
    pub wake: Option<WakeStrategy>,
    /// Time asleep before it is archived; `None` follows `--archive-after`.
    #[serde(default, with = "opt_duration_ms")]
    pub archive_after: Option<Duration>,
    /// Time idle before it is paused (napping); `None` follows
    /// `--nap-after`, zero never naps it.
    #[serde(default, with = "opt_duration_ms")]
    pub nap_after: Option<Duration>,
    /// Capabilities added back on top of the hardened default set, as
    /// allowed by `--allowed-capabilities` when it was created; canonical
    /// names (`NET_RAW`).
    #[serde(default)]
    pub cap_add: Vec<String>,
    /// Who may reach its URL. Rows written before access existed are public.
    #[serde(default)]
    pub access: Access,
}

/// Who may reach a container's URL through the proxy.
#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    Hash,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
    clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum Access {
    /// Anyone who knows the hostname.
    #[default]
    Public,
    /// Only requests with a container access token, an API token of its
    /// tenant (or the admin's), or a session cookie from a login link.
    Private,
}

impl Access {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Public => "public",
            Self::Private => "private",
        }
    }
}

/// A snapshot of what a user changed in a container: one compressed file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotRecord {
    /// File name inside the data dir's `snapshots/` directory.
    pub file: String,
    /// Size of the compressed file.
    pub bytes: u64,
    /// Entries (files, directories, links, deletions) it holds.
    pub files: u64,
    /// SHA-256 of the compressed file, hex.
    pub sha256: String,
    pub created_at: UnixMillis,
}

/// How the proxy serves a request that arrives while its container sleeps.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
    clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum WakeStrategy {
    /// Hold the request until the container is ready, then serve it.
    Hold,
    /// Wake the container, then answer 307 to the same URL once it is ready.
    Redirect,
    /// Browsers get a "waking up" page at once (503, refreshes itself);
    /// other clients are held.
    Page,
}

impl WakeStrategy {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Hold => "hold",
            Self::Redirect => "redirect",
            Self::Page => "page",
        }
    }
}

/// The durable record of one container, as the store keeps it.
#[derive(Debug, Clone, PartialEq)]
pub struct ContainerRecord {
    pub name: String,
    pub spec: ContainerSpec,
    pub state: ContainerState,
    /// Why the container is in its state, when that needs explaining (`failed`).
    pub reason: Option<String>,
    /// The Docker container id, once created.
    pub docker_id: Option<String>,
    /// Who asked for it; every row has one so tenants can come later.
    pub owner: String,
    /// The dormant node that runs it; `None` when no node holds it (an
    /// archived container, once several nodes share a store).
    pub node: Option<String>,
    pub created_at: UnixMillis,
    pub last_active_at: UnixMillis,
    /// How many times it has been woken (from asleep or failed).
    pub wakes: u64,
    /// Milliseconds from the start of its last wake until it was ready.
    pub last_wake_ms: Option<u64>,
    /// When it entered its current state.
    pub state_since: UnixMillis,
    /// Its snapshot, while it is archived (or being archived or restored).
    pub snapshot: Option<SnapshotRecord>,
}

impl ContainerRecord {
    /// The Docker container name for this record.
    pub fn docker_name(&self) -> String {
        docker_name(&self.name)
    }
}

pub fn docker_name(name: &str) -> String {
    format!("{DOCKER_NAME_PREFIX}{name}")
}

/// The named volume that keeps `path` of container `name`.
pub fn volume_name(name: &str, index: usize) -> String {
    format!("{DOCKER_NAME_PREFIX}{name}-v{index}")
}

/// Milliseconds since the Unix epoch: how the store and the API keep time.
pub type UnixMillis = i64;

pub fn now_millis() -> UnixMillis {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Formats Unix milliseconds as RFC 3339 (UTC, millisecond precision).
pub fn rfc3339(ms: UnixMillis) -> String {
    let time = UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64);
    humantime::format_rfc3339_millis(time).to_string()
}

mod opt_duration_ms {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_some(&(d.as_millis() as u64)),
            None => s.serialize_none(),
        }
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        Ok(Option::<u64>::deserialize(d)?.map(Duration::from_millis))
    }
}

mod duration_ms {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_millis() as u64)
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        Ok(Duration::from_millis(u64::deserialize(d)?))
    }
}

/// A record as a test needs one: `name`, image `demo` on port 8080, 1 MiB,
/// one volume at `/data`, state `creating`, last active at `at`.
#[cfg(test)]
pub fn sample_record(name: &str, at: UnixMillis) -> ContainerRecord {
    ContainerRecord {
        name: name.into(),
        spec: ContainerSpec {
            image: "demo".into(),
            image_id: None,
            port: 8080,
            env: Default::default(),
            cmd: None,
            memory_bytes: 1 << 20,
            nano_cpus: None,
            idle_timeout: Duration::from_secs(60),
            volumes: vec!["/data".into()],
            ready_path: None,
            wake: None,
            archive_after: None,
            nap_after: None,
            cap_add: Vec::new(),
            access: Access::Public,
        },
        state: ContainerState::Creating,
        reason: None,
        docker_id: None,
        owner: "admin".into(),
        node: Some("n1".into()),
        created_at: at,
        last_active_at: at,
        wakes: 0,
        last_wake_ms: None,
        state_since: at,
        snapshot: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_round_trip_through_their_names() {
        for state in ContainerState::ALL {
            assert_eq!(state.as_str().parse::<ContainerState>(), Ok(state));
        }
        assert!("sleeping".parse::<ContainerState>().is_err());
    }

    #[test]
    fn a_spec_written_before_access_existed_is_public() {
        let mut json = serde_json::to_value(sample_record("a", 0).spec).unwrap();
        json.as_object_mut().unwrap().remove("access");
        let spec: ContainerSpec = serde_json::from_value(json).unwrap();
        assert_eq!(spec.access, Access::Public);
        let private = ContainerSpec {
            access: Access::Private,
            ..spec
        };
        let text = serde_json::to_string(&private).unwrap();
        assert!(text.contains(r#""access":"private""#), "{text}");
    }

    #[test]
    fn rfc3339_formats_milliseconds_in_utc() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(1_700_000_000_123), "2023-11-14T22:13:20.123Z");
    }
}
