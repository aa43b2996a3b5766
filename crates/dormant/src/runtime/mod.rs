//! The container engine as dormant needs it: a small trait in dormant's verbs.
//!
//! Docker (through bollard) is the implementation (`docker.rs`); lifecycle
//! unit tests use the fake in `fake.rs`. Every method names the container by
//! its Docker name or id, and every error says which call failed and why.

pub mod capabilities;
pub mod docker;
#[cfg(test)]
pub mod fake;
pub mod limited;
pub mod probe;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::SystemTime;

use async_trait::async_trait;
use futures_util::stream::BoxStream;

/// What dormant needs to know about a local image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageInfo {
    /// The image's content-addressed id (`sha256:...`).
    pub id: String,
    /// Container ports the image declares (`EXPOSE`), TCP only.
    pub exposed_tcp_ports: Vec<u16>,
}

/// Everything needed to create one container.
#[derive(Debug, Clone)]
pub struct CreateParams {
    /// The Docker container name.
    pub docker_name: String,
    pub image: String,
    pub port: u16,
    pub env: Vec<String>,
    pub cmd: Option<Vec<String>>,
    pub memory_bytes: u64,
    pub nano_cpus: Option<i64>,
    pub pids_limit: i64,
    /// Capabilities added back on top of Docker's defaults minus
    /// `capabilities::DROPPED`; canonical names, already allowed.
    pub cap_add: Vec<String>,
    pub labels: HashMap<String, String>,
    /// The tenant it belongs to: the admin's containers join dormant's
    /// network, each other tenant's containers a network of the tenant's own.
    pub tenant: String,
    /// (named volume, absolute path inside the container)
    pub volumes: Vec<(String, String)>,
}

/// What the engine says about one container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inspection {
    pub id: String,
    /// Docker counts a paused container as running.
    pub running: bool,
    /// Frozen by `pause` (cgroup freezer): it holds its memory, gets no CPU.
    pub paused: bool,
    /// Where the container's port is reachable from this host, when running.
    pub upstream: Option<SocketAddr>,
    /// Exit code and error of the last run, for a reason a person can read.
    pub exit_code: Option<i64>,
    pub error: Option<String>,
    /// The container's writable layer on the host (overlay's upper
    /// directory), when the storage driver has one.
    pub upper_dir: Option<PathBuf>,
}

/// How the engine stores container filesystems.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StorageInfo {
    /// `overlay2`, `fuse-overlayfs`, `vfs`, ...
    pub driver: String,
    /// The engine's data root, e.g. `/var/lib/docker`.
    pub root_dir: PathBuf,
}

/// One container the engine holds with dormant's labels.
#[derive(Debug, Clone)]
pub struct Managed {
    pub id: String,
    pub labels: HashMap<String, String>,
}

/// What the engine's event stream says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EngineEvent {
    /// The engine answered: every event from `since` on follows. Comes first
    /// on every stream, so a follower knows when a reconnect succeeded.
    Connected,
    Container(ContainerEvent),
}

/// Something that happened to a container, as the engine reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerEvent {
    /// The dormant name (from the `dormant.name` label).
    pub name: String,
    pub kind: ContainerEventKind,
    /// When it happened, by the engine's clock: where a resumed stream
    /// starts.
    pub at: SystemTime,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ContainerEventKind {
    Started,
    Died { exit_code: Option<i64> },
    Paused,
    Unpaused,
}

/// Why a runtime call failed. Every variant names the call (`call`, e.g.
/// `docker start dormant-alice`), so a log line or an API answer says which
/// step went wrong; the variant says what a caller can do about it.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// The container or volume the call was about does not exist.
    #[error("{call}: {what} not found")]
    NotFound { call: String, what: String },
    /// The image to create a container from is not on this host (dormant
    /// never pulls).
    #[error("{call}: image `{image}` is not present on this host")]
    ImageMissing { call: String, image: String },
    /// The engine refused because of the object's current state (HTTP 409,
    /// e.g. "removal already in progress", a name in use): retrying later
    /// may work.
    #[error("{call}: conflict: {message}")]
    Conflict { call: String, message: String },
    /// The engine could not be reached or did not answer in time.
    #[error(
        "{call}: the container engine is unreachable: {message}; is the Docker daemon running?"
    )]
    Unavailable { call: String, message: String },
    /// Anything else, with the engine's own error as the source.
    #[error("{call} failed: {source}")]
    Other {
        call: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl RuntimeError {
    /// The call that failed, as a person would type it.
    pub fn call(&self) -> &str {
        match self {
            Self::NotFound { call, .. }
            | Self::ImageMissing { call, .. }
            | Self::Conflict { call, .. }
            | Self::Unavailable { call, .. }
            | Self::Other { call, .. } => call,
        }
    }
}

pub type RuntimeResult<T> = Result<T, RuntimeError>;

#[async_trait]
pub trait Runtime: Send + Sync + 'static {
    /// The image as it is on this host, or `None` if it is not present.
    /// Never pulls.
    async fn image(&self, image: &str) -> RuntimeResult<Option<ImageInfo>>;
    /// Creates (does not start) a container and the named volumes it needs.
    async fn create(&self, params: &CreateParams) -> RuntimeResult<String>;
    async fn start(&self, id: &str) -> RuntimeResult<()>;
    /// SIGTERM, then SIGKILL after `grace_secs`.
    async fn stop(&self, id: &str, grace_secs: i64) -> RuntimeResult<()>;
    /// Freezes a running container's processes (cgroup freezer): no CPU,
    /// memory and connections kept.
    async fn pause(&self, id: &str) -> RuntimeResult<()>;
    /// Thaws a paused container: its processes go on where they stopped.
    async fn unpause(&self, id: &str) -> RuntimeResult<()>;
    /// Removes the container, running or not. A missing container is not an
    /// error: removal is idempotent.
    async fn remove(&self, id: &str) -> RuntimeResult<()>;
    /// Removes named volumes; missing ones are not an error.
    async fn remove_volumes(&self, volumes: &[String]) -> RuntimeResult<()>;
    /// Removes what was made for `tenant` alone (its network), once it has
    /// no container left; nothing there is not an error.
    async fn remove_tenant(&self, tenant: &str) -> RuntimeResult<()>;
    /// `None` if the container does not exist.
    async fn inspect(&self, id: &str) -> RuntimeResult<Option<Inspection>>;
    /// Containers carrying `label=value`, running or not.
    async fn list_labelled(&self, label: &str, value: &str) -> RuntimeResult<Vec<Managed>>;
    /// Starts, deaths, pauses and unpauses of containers carrying `label=value`: first
    /// `Connected`, then those since `since` (the engine replays what it
    /// still remembers), then new ones as they happen.
    /// The stream ends, or yields an error, if the engine's connection drops.
    fn events(
        &self,
        label: &str,
        value: &str,
        since: SystemTime,
    ) -> BoxStream<'static, RuntimeResult<EngineEvent>>;
    /// Where the named volume's data lives on the host; `None` if it does
    /// not exist.
    async fn volume_dir(&self, volume: &str) -> RuntimeResult<Option<PathBuf>>;
    /// The engine's storage driver and data root.
    async fn storage(&self) -> RuntimeResult<StorageInfo>;
    /// Named volumes carrying `label=value`.
    async fn list_labelled_volumes(&self, label: &str, value: &str) -> RuntimeResult<Vec<Managed>>;
    /// Asks the app at `upstream` whether it answers: `GET path` must get an
    /// HTTP status line (below 500 when `require_success`). Part of the
    /// runtime so that tests can script readiness without real sockets.
    async fn probe(&self, upstream: SocketAddr, path: &str, require_success: bool) -> ProbeOutcome;
    /// The TCP ports the container's processes listen on in its network
    /// namespace, at an address reachable from outside it (not loopback),
    /// sorted; `None` where this dormant cannot see them (a daemon on
    /// another host, not root) or the container does not run. Tells an app
    /// on the wrong port from a slow one.
    async fn listening_ports(&self, id: &str) -> RuntimeResult<Option<Vec<u16>>>;
}

/// What one readiness probe saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProbeOutcome {
    Ready,
    /// Not yet; the text says what was seen, for the error when time runs out.
    NotYet(String),
}
