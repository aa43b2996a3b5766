//! The fake runtime's tables (images, containers, volumes, faults, event
//! subscribers) and the errors injected faults become.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;

use super::{Call, Fault, Script};
use crate::runtime::{ContainerEvent, ContainerEventKind, ImageInfo, RuntimeError, RuntimeResult};

#[derive(Default)]
pub(super) struct State {
    pub(super) images: Vec<(String, ImageInfo)>,
    pub(super) containers: Vec<Container>,
    pub(super) volumes: HashMap<String, Volume>,
    /// Everything this fake ever created, removed or not.
    pub(super) ever_created: Vec<String>,
    pub(super) next_id: u64,
    pub(super) next_port: u16,
    pub(super) scripts_by_name: HashMap<String, Script>,
    pub(super) scripts_by_image: HashMap<String, Script>,
    pub(super) faults: Vec<FaultRule>,
    pub(super) delays: HashMap<Call, Duration>,
    pub(super) calls: Vec<(Call, String)>,
    pub(super) subscribers: Vec<Subscriber>,
}

pub(super) struct Container {
    pub(super) id: String,
    pub(super) docker_name: String,
    /// Its dormant name (the `dormant.name` label).
    pub(super) name: String,
    pub(super) image: String,
    pub(super) labels: HashMap<String, String>,
    pub(super) volumes: Vec<String>,
    pub(super) running: bool,
    /// Frozen by `pause`: running to Docker, answering nothing.
    pub(super) paused: bool,
    pub(super) upstream: Option<SocketAddr>,
    /// When the app answers probes, while running; `None`: never.
    pub(super) answers_at: Option<Instant>,
    /// When it last started, while running.
    pub(super) started_at: Option<Instant>,
    pub(super) exit_code: Option<i64>,
    pub(super) upper_dir: PathBuf,
    /// Counts starts, so a crash planned for one run spares the next.
    pub(super) run: u64,
}

pub(super) struct Volume {
    pub(super) labels: HashMap<String, String>,
    pub(super) dir: PathBuf,
}

pub(super) struct FaultRule {
    pub(super) call: Call,
    pub(super) name: Option<String>,
    /// Calls that still succeed before this rule fails any.
    pub(super) skip: usize,
    pub(super) remaining: usize,
    pub(super) fault: Fault,
}

pub(super) struct Subscriber {
    pub(super) label: String,
    pub(super) value: String,
    pub(super) tx: mpsc::UnboundedSender<RuntimeResult<ContainerEvent>>,
}

pub(super) fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state.lock().unwrap_or_else(|p| p.into_inner())
}

pub(super) fn injected(fault: Fault, call: &str, about: &str) -> RuntimeError {
    let call = call.to_owned();
    match fault {
        Fault::NotFound => RuntimeError::NotFound {
            call,
            what: about.to_owned(),
        },
        Fault::ImageMissing => RuntimeError::ImageMissing {
            call,
            image: about.to_owned(),
        },
        Fault::Conflict => RuntimeError::Conflict {
            call,
            message: format!("removal of container {about} is already in progress (injected)"),
        },
        Fault::Unavailable => RuntimeError::Unavailable {
            call,
            message: "connection refused (injected)".into(),
        },
        Fault::Other => RuntimeError::Other {
            call,
            source: "the engine failed (injected)".into(),
        },
    }
}

pub(super) fn died(name: &str, exit_code: Option<i64>) -> ContainerEvent {
    ContainerEvent {
        name: name.to_owned(),
        kind: ContainerEventKind::Died { exit_code },
        at: std::time::SystemTime::now(),
    }
}

/// `Paused` or `Unpaused`, now.
pub(super) fn paused_event(name: &str, paused: bool) -> ContainerEvent {
    ContainerEvent {
        name: name.to_owned(),
        kind: if paused {
            ContainerEventKind::Paused
        } else {
            ContainerEventKind::Unpaused
        },
        at: std::time::SystemTime::now(),
    }
}

pub(super) fn remove_container_dir(upper_dir: &Path) {
    if let Some(layer) = upper_dir.parent() {
        let _ = std::fs::remove_dir_all(layer);
    }
}

// === impl State ===

impl State {
    pub(super) fn find(&self, id_or_name: &str) -> Option<&Container> {
        self.containers
            .iter()
            .find(|c| c.id == id_or_name || c.docker_name == id_or_name)
    }

    pub(super) fn find_mut(&mut self, id_or_name: &str) -> Option<&mut Container> {
        self.containers
            .iter_mut()
            .find(|c| c.id == id_or_name || c.docker_name == id_or_name)
    }

    pub(super) fn by_name(&self, name: &str) -> Option<&Container> {
        self.containers.iter().find(|c| c.name == name)
    }

    pub(super) fn by_name_mut(&mut self, name: &str) -> Option<&mut Container> {
        self.containers.iter_mut().find(|c| c.name == name)
    }

    /// The dormant name a call is about: from the container's label when
    /// the fake knows it, else from dormant's naming of Docker objects
    /// (`dormant-<name>`, volumes `dormant-<name>-v<i>`).
    pub(super) fn dormant_name(&self, about: &str) -> String {
        if let Some(container) = self.find(about) {
            return container.name.clone();
        }
        let bare = about
            .strip_prefix(crate::domain::DOCKER_NAME_PREFIX)
            .unwrap_or(about);
        match bare.rsplit_once("-v") {
            Some((name, index)) if index.bytes().all(|b| b.is_ascii_digit()) => name.to_owned(),
            _ => bare.to_owned(),
        }
    }

    pub(super) fn port(&mut self) -> SocketAddr {
        self.next_port += 1;
        SocketAddr::from(([127, 0, 0, 1], self.next_port))
    }

    pub(super) fn emit(&mut self, event: ContainerEvent) {
        let labels = self
            .by_name(&event.name)
            .map(|c| c.labels.clone())
            .unwrap_or_default();
        self.subscribers.retain(|subscriber| {
            let wanted = labels.get(&subscriber.label) == Some(&subscriber.value);
            !wanted || subscriber.tx.send(Ok(event.clone())).is_ok()
        });
    }

    pub(super) fn script_for(&self, container: &Container) -> Script {
        self.scripts_by_name
            .get(&container.name)
            .or_else(|| self.scripts_by_image.get(&container.image))
            .cloned()
            .unwrap_or_default()
    }

    pub(super) fn image(&self, reference: &str) -> Option<&ImageInfo> {
        self.images
            .iter()
            .find(|(name, info)| name == reference || info.id == reference)
            .map(|(_, info)| info)
    }
}

pub(super) fn image_name(state: &State, image: &ImageInfo) -> String {
    state
        .images
        .iter()
        .find(|(_, info)| info.id == image.id)
        .map_or_else(|| image.id.clone(), |(name, _)| name.clone())
}

/// A directory under the system's temp dir, removed when dropped.
#[derive(Debug)]
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(what: &str) -> Self {
        let path =
            std::env::temp_dir().join(format!("dormant-{what}-{}", crate::token::random_hex(6)));
        std::fs::create_dir_all(&path).expect("create a temp dir");
        Self(path)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
