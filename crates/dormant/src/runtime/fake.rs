//! A container runtime in memory, for lifecycle tests under tokio's paused
//! clock: images, containers and volumes are entries in a table, and every
//! delay is a `tokio::time::sleep`, so it costs nothing under a paused clock.
//!
//! Scriptable per container or per image (`Script`): start latency, when the
//! app starts answering probes (or never), a crash at start or after a
//! while. Any call can be made to fail (`fail`, `fail_for`), calls are
//! counted (`calls`), and tests can act behind dormant's back (`kill`,
//! `remove_outside`, `add_orphan`, ...). Writable layers and volumes are real
//! directories under a temporary root, so archive and restore run for real.
//!
//! It panics where only a test bug can lead: starting a container it has
//! never created. What dormant legitimately asks about missing containers
//! (inspect, stop, remove) answers as Docker would.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use futures_util::stream::BoxStream;
use futures_util::StreamExt;
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::{
    ContainerEvent, ContainerEventKind, CreateParams, ImageInfo, Inspection, Managed, ProbeOutcome,
    Runtime, RuntimeError, RuntimeResult, StorageInfo,
};
use crate::domain::LABEL_NAME;

/// Each runtime call, for faults, delays and counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Call {
    Image,
    Create,
    Start,
    Stop,
    Remove,
    RemoveVolumes,
    Inspect,
    ListLabelled,
    ListLabelledVolumes,
    Events,
    VolumeDir,
    Storage,
    Probe,
}

/// The kind of error an injected failure returns (see `RuntimeError`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    NotFound,
    ImageMissing,
    /// A 409, e.g. "removal already in progress".
    Conflict,
    /// The daemon is unreachable.
    Unavailable,
    Other,
}

/// How a container behaves when started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Script {
    /// How long `start` takes.
    pub start_latency: Duration,
    /// When, after a start, the app answers probes.
    pub ready: Readiness,
    pub crash: Option<Crash>,
}

impl Default for Script {
    fn default() -> Self {
        Self {
            start_latency: Duration::ZERO,
            ready: Readiness::After(Duration::ZERO),
            crash: None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Readiness {
    After(Duration),
    Never,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Crash {
    /// The process exits at once: `start` succeeds, the container is dead.
    AtStart { exit_code: i64 },
    /// The process exits this long after the start.
    After { after: Duration, exit_code: i64 },
}

/// Use as `times` for a failure that never wears off.
pub const ALWAYS: usize = usize::MAX;

/// What a test can see of one container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    pub id: String,
    pub running: bool,
    pub upstream: Option<SocketAddr>,
    pub upper_dir: PathBuf,
}

pub struct FakeRuntime {
    state: Arc<Mutex<State>>,
    root: TempDir,
}

#[derive(Default)]
struct State {
    images: Vec<(String, ImageInfo)>,
    containers: Vec<Container>,
    volumes: HashMap<String, Volume>,
    /// Everything this fake ever created, removed or not.
    ever_created: Vec<String>,
    next_id: u64,
    next_port: u16,
    scripts_by_name: HashMap<String, Script>,
    scripts_by_image: HashMap<String, Script>,
    faults: Vec<FaultRule>,
    delays: HashMap<Call, Duration>,
    calls: Vec<(Call, String)>,
    subscribers: Vec<Subscriber>,
}

struct Container {
    id: String,
    docker_name: String,
    /// Its dormant name (the `dormant.name` label).
    name: String,
    image: String,
    labels: HashMap<String, String>,
    volumes: Vec<String>,
    running: bool,
    upstream: Option<SocketAddr>,
    /// When the app answers probes, while running; `None`: never.
    answers_at: Option<Instant>,
    exit_code: Option<i64>,
    upper_dir: PathBuf,
    /// Counts starts, so a crash planned for one run spares the next.
    run: u64,
}

struct Volume {
    labels: HashMap<String, String>,
    dir: PathBuf,
}

struct FaultRule {
    call: Call,
    name: Option<String>,
    /// Calls that still succeed before this rule fails any.
    skip: usize,
    remaining: usize,
    fault: Fault,
}

struct Subscriber {
    label: String,
    value: String,
    tx: mpsc::UnboundedSender<RuntimeResult<ContainerEvent>>,
}

// === impl FakeRuntime: what tests set up and look at ===

impl FakeRuntime {
    pub fn new() -> Self {
        let root = TempDir::new("fake-docker");
        std::fs::create_dir_all(root.path().join("overlay2")).expect("create the fake data root");
        std::fs::create_dir_all(root.path().join("volumes")).expect("create the fake data root");
        Self {
            state: Arc::new(Mutex::new(State {
                next_port: 20_000,
                ..State::default()
            })),
            root,
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }

    /// Adds a local image exposing `ports`; returns its id.
    pub fn add_image(&self, name: &str, ports: &[u16]) -> String {
        let mut state = self.state();
        state.next_id += 1;
        let id = format!("sha256:{name}-{}", state.next_id);
        state.images.retain(|(n, _)| n != name);
        state.images.push((
            name.to_owned(),
            ImageInfo {
                id: id.clone(),
                exposed_tcp_ports: ports.to_vec(),
            },
        ));
        id
    }

    /// Removes the image (`docker rmi`): containers made from it stay.
    pub fn remove_image(&self, name: &str) {
        self.state().images.retain(|(n, _)| n != name);
    }

    /// How containers named `name` (dormant's name) behave from their next start.
    pub fn script(&self, name: &str, script: Script) {
        self.state().scripts_by_name.insert(name.to_owned(), script);
    }

    /// How containers made from `image` behave, unless scripted by name.
    pub fn script_image(&self, image: &str, script: Script) {
        self.state()
            .scripts_by_image
            .insert(image.to_owned(), script);
    }

    /// The next `times` calls of `call`, for any container, fail with `fault`.
    pub fn fail(&self, call: Call, times: usize, fault: Fault) {
        self.add_fault(call, None, times, fault);
    }

    /// The next `times` calls of `call` about container `name` fail.
    pub fn fail_for(&self, name: &str, call: Call, times: usize, fault: Fault) {
        self.add_fault(call, Some(name.to_owned()), times, fault);
    }

    /// Like `fail_for`, but the first `skip` calls succeed.
    pub fn fail_later(&self, name: &str, call: Call, skip: usize, times: usize, fault: Fault) {
        self.state().faults.push(FaultRule {
            call,
            name: Some(name.to_owned()),
            skip,
            remaining: times,
            fault,
        });
    }

    fn add_fault(&self, call: Call, name: Option<String>, times: usize, fault: Fault) {
        self.state().faults.push(FaultRule {
            call,
            name,
            skip: 0,
            remaining: times,
            fault,
        });
    }

    /// Every injected failure stops.
    pub fn heal(&self) {
        self.state().faults.clear();
    }

    /// Every call of `call` takes this long (under the paused clock: no time).
    pub fn delay(&self, call: Call, by: Duration) {
        self.state().delays.insert(call, by);
    }

    /// How many times `call` was made.
    pub fn calls(&self, call: Call) -> usize {
        self.state()
            .calls
            .iter()
            .filter(|(c, _)| *c == call)
            .count()
    }

    /// How many times `call` was made about container `name`.
    pub fn calls_for(&self, name: &str, call: Call) -> usize {
        self.state()
            .calls
            .iter()
            .filter(|(c, n)| *c == call && n == name)
            .count()
    }

    /// The containers (dormant's names) `call` was made about, in order.
    pub fn call_log(&self, call: Call) -> Vec<String> {
        self.state()
            .calls
            .iter()
            .filter(|(c, _)| *c == call)
            .map(|(_, name)| name.clone())
            .collect()
    }

    /// The container dormant calls `name`, if Docker has it.
    pub fn container(&self, name: &str) -> Option<Seen> {
        let state = self.state();
        state.by_name(name).map(|c| Seen {
            id: c.id.clone(),
            running: c.running,
            upstream: c.upstream,
            upper_dir: c.upper_dir.clone(),
        })
    }

    pub fn running(&self, name: &str) -> bool {
        self.container(name).is_some_and(|c| c.running)
    }

    /// How many containers run.
    pub fn running_count(&self) -> usize {
        self.state().containers.iter().filter(|c| c.running).count()
    }

    /// Where a named volume's data lives, if it exists.
    pub fn volume(&self, volume: &str) -> Option<PathBuf> {
        self.state().volumes.get(volume).map(|v| v.dir.clone())
    }

    pub fn volume_names(&self) -> Vec<String> {
        let mut names: Vec<_> = self.state().volumes.keys().cloned().collect();
        names.sort();
        names
    }

    /// The container's process exits on its own (a crash, an OOM kill).
    pub fn kill(&self, name: &str, exit_code: i64) {
        let mut state = self.state();
        let container = state.by_name_mut(name).expect("kill: no such container");
        container.running = false;
        container.upstream = None;
        container.exit_code = Some(exit_code);
        let event = died(name, Some(exit_code));
        state.emit(event);
    }

    /// The container stopped while nobody listened (dormant was down).
    pub fn stop_quietly(&self, name: &str) {
        let mut state = self.state();
        let container = state
            .by_name_mut(name)
            .expect("stop_quietly: no such container");
        container.running = false;
        container.upstream = None;
        container.exit_code = Some(0);
    }

    /// Someone ran `docker start` by hand; the app answers at once.
    pub fn start_outside(&self, name: &str) {
        let mut state = self.state();
        let port = state.port();
        let container = state
            .by_name_mut(name)
            .expect("start_outside: no such container");
        container.running = true;
        container.run += 1;
        container.upstream = Some(port);
        container.answers_at = Some(Instant::now());
        container.exit_code = None;
    }

    /// Someone ran `docker rm -f` by hand (no event: dormant was down).
    pub fn remove_outside(&self, name: &str) {
        let mut state = self.state();
        let gone: Vec<PathBuf> = state
            .containers
            .iter()
            .filter(|c| c.name == name)
            .map(|c| c.upper_dir.clone())
            .collect();
        state.containers.retain(|c| c.name != name);
        drop(state);
        for dir in gone {
            remove_container_dir(&dir);
        }
    }

    /// A container and volume with `labels` that no row accounts for.
    pub fn add_orphan(&self, docker_name: &str, labels: HashMap<String, String>) {
        let mut state = self.state();
        state.next_id += 1;
        let id = format!("fake{:04}", state.next_id);
        let upper_dir = self.root.path().join("overlay2").join(&id).join("diff");
        std::fs::create_dir_all(&upper_dir).expect("create an upper dir");
        let volume = format!("{docker_name}-v0");
        let dir = self.root.path().join("volumes").join(&volume).join("_data");
        std::fs::create_dir_all(&dir).expect("create a volume dir");
        state.volumes.insert(
            volume,
            Volume {
                labels: labels.clone(),
                dir,
            },
        );
        state.ever_created.push(id.clone());
        state.containers.push(Container {
            name: labels.get(LABEL_NAME).cloned().unwrap_or_default(),
            id,
            docker_name: docker_name.to_owned(),
            image: "orphan".into(),
            labels,
            volumes: Vec::new(),
            running: false,
            upstream: None,
            answers_at: None,
            exit_code: Some(0),
            upper_dir,
            run: 0,
        });
    }

    /// Every event stream ends with an error, as when the daemon restarts.
    pub fn break_events(&self) {
        let mut state = self.state();
        for subscriber in state.subscribers.drain(..) {
            let _ = subscriber.tx.send(Err(RuntimeError::Unavailable {
                call: "docker events".into(),
                message: "the connection was reset (fake)".into(),
            }));
        }
    }

    /// How many event streams are open.
    pub fn event_subscribers(&self) -> usize {
        let mut state = self.state();
        state.subscribers.retain(|s| !s.tx.is_closed());
        state.subscribers.len()
    }

    /// Records the call; says how long it takes and whether a fault fails it.
    fn enter(&self, call: Call, call_line: &str, about: &str) -> (Duration, RuntimeResult<()>) {
        let mut state = self.state();
        let name = state.dormant_name(about);
        state.calls.push((call, name.clone()));
        let delay = state.delays.get(&call).copied().unwrap_or_default();
        let position = state
            .faults
            .iter()
            .position(|rule| rule.call == call && rule.name.as_ref().is_none_or(|n| *n == name));
        let Some(position) = position else {
            return (delay, Ok(()));
        };
        if state.faults[position].skip > 0 {
            state.faults[position].skip -= 1;
            return (delay, Ok(()));
        }
        let fault = state.faults[position].fault;
        state.faults[position].remaining -= 1;
        if state.faults[position].remaining == 0 {
            state.faults.remove(position);
        }
        (delay, Err(injected(fault, call_line, about)))
    }

    /// `enter`, then the call's delay (a failing call takes time too).
    async fn call(&self, call: Call, call_line: &str, about: &str) -> RuntimeResult<()> {
        let (delay, outcome) = self.enter(call, call_line, about);
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        outcome
    }
}

impl Default for FakeRuntime {
    fn default() -> Self {
        Self::new()
    }
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state.lock().unwrap_or_else(|p| p.into_inner())
}

fn injected(fault: Fault, call: &str, about: &str) -> RuntimeError {
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

fn died(name: &str, exit_code: Option<i64>) -> ContainerEvent {
    ContainerEvent {
        name: name.to_owned(),
        kind: ContainerEventKind::Died { exit_code },
    }
}

fn remove_container_dir(upper_dir: &Path) {
    if let Some(layer) = upper_dir.parent() {
        let _ = std::fs::remove_dir_all(layer);
    }
}

// === impl State ===

impl State {
    fn find(&self, id_or_name: &str) -> Option<&Container> {
        self.containers
            .iter()
            .find(|c| c.id == id_or_name || c.docker_name == id_or_name)
    }

    fn find_mut(&mut self, id_or_name: &str) -> Option<&mut Container> {
        self.containers
            .iter_mut()
            .find(|c| c.id == id_or_name || c.docker_name == id_or_name)
    }

    fn by_name(&self, name: &str) -> Option<&Container> {
        self.containers.iter().find(|c| c.name == name)
    }

    fn by_name_mut(&mut self, name: &str) -> Option<&mut Container> {
        self.containers.iter_mut().find(|c| c.name == name)
    }

    /// The dormant name a call is about: from the container's label when
    /// the fake knows it, else from dormant's naming of Docker objects
    /// (`dormant-<name>`, volumes `dormant-<name>-v<i>`).
    fn dormant_name(&self, about: &str) -> String {
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

    fn port(&mut self) -> SocketAddr {
        self.next_port += 1;
        SocketAddr::from(([127, 0, 0, 1], self.next_port))
    }

    fn emit(&mut self, event: ContainerEvent) {
        let labels = self
            .by_name(&event.name)
            .map(|c| c.labels.clone())
            .unwrap_or_default();
        self.subscribers.retain(|subscriber| {
            let wanted = labels.get(&subscriber.label) == Some(&subscriber.value);
            !wanted || subscriber.tx.send(Ok(event.clone())).is_ok()
        });
    }

    fn script_for(&self, container: &Container) -> Script {
        self.scripts_by_name
            .get(&container.name)
            .or_else(|| self.scripts_by_image.get(&container.image))
            .cloned()
            .unwrap_or_default()
    }

    fn image(&self, reference: &str) -> Option<&ImageInfo> {
        self.images
            .iter()
            .find(|(name, info)| name == reference || info.id == reference)
            .map(|(_, info)| info)
    }
}

// === impl Runtime for FakeRuntime ===

#[async_trait]
impl Runtime for FakeRuntime {
    async fn image(&self, image: &str) -> RuntimeResult<Option<ImageInfo>> {
        self.call(Call::Image, &format!("docker image inspect {image}"), image)
            .await?;
        Ok(self.state().image(image).cloned())
    }

    async fn create(&self, params: &CreateParams) -> RuntimeResult<String> {
        let call = format!("docker create {}", params.docker_name);
        self.call(Call::Create, &call, &params.docker_name).await?;
        let mut state = self.state();
        let Some(image) = state.image(&params.image).cloned() else {
            return Err(RuntimeError::ImageMissing {
                call,
                image: params.image.clone(),
            });
        };
        if state.find(&params.docker_name).is_some() {
            return Err(RuntimeError::Conflict {
                call,
                message: format!("the name {} is already in use", params.docker_name),
            });
        }
        for (volume, _) in &params.volumes {
            if !state.volumes.contains_key(volume) {
                let dir = self.root.path().join("volumes").join(volume).join("_data");
                std::fs::create_dir_all(&dir).expect("create a volume dir");
                let labels = params.labels.clone();
                state.volumes.insert(volume.clone(), Volume { labels, dir });
            }
        }
        state.next_id += 1;
        let id = format!("fake{:04}", state.next_id);
        let upper_dir = self.root.path().join("overlay2").join(&id).join("diff");
        std::fs::create_dir_all(&upper_dir).expect("create an upper dir");
        state.ever_created.push(id.clone());
        let image = image_name(&state, &image);
        state.containers.push(Container {
            id: id.clone(),
            docker_name: params.docker_name.clone(),
            name: params.labels.get(LABEL_NAME).cloned().unwrap_or_default(),
            image,
            labels: params.labels.clone(),
            volumes: params.volumes.iter().map(|(v, _)| v.clone()).collect(),
            running: false,
            upstream: None,
            answers_at: None,
            exit_code: None,
            upper_dir,
            run: 0,
        });
        Ok(id)
    }

    async fn start(&self, id: &str) -> RuntimeResult<()> {
        let call = format!("docker start {id}");
        self.call(Call::Start, &call, id).await?;
        let latency = {
            let state = self.state();
            match state.find(id) {
                Some(container) => state.script_for(container).start_latency,
                None if state.ever_created.iter().any(|known| known == id) => Duration::ZERO,
                None => panic!("test bug: start of `{id}`, which the fake never created"),
            }
        };
        tokio::time::sleep(latency).await;
        let mut state = self.state();
        let port = state.port();
        let Some(container) = state.find(id) else {
            return Err(RuntimeError::NotFound {
                call,
                what: format!("container {id}"),
            });
        };
        if container.running {
            return Ok(());
        }
        let script = state.script_for(container);
        let container = state.find_mut(id).expect("found above");
        container.run += 1;
        let (name, run) = (container.name.clone(), container.run);
        match script.crash {
            Some(Crash::AtStart { exit_code }) => {
                container.exit_code = Some(exit_code);
                state.emit(died(&name, Some(exit_code)));
                return Ok(());
            }
            Some(Crash::After { after, exit_code }) => {
                let state = self.state.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(after).await;
                    let mut state = lock(&state);
                    if let Some(c) = state.by_name_mut(&name) {
                        if c.run == run && c.running {
                            c.running = false;
                            c.upstream = None;
                            c.exit_code = Some(exit_code);
                            state.emit(died(&name, Some(exit_code)));
                        }
                    }
                });
            }
            None => {}
        }
        let container = state.find_mut(id).expect("found above");
        container.running = true;
        container.upstream = Some(port);
        container.exit_code = None;
        container.answers_at = match script.ready {
            Readiness::After(after) => Some(Instant::now() + after),
            Readiness::Never => None,
        };
        let event = ContainerEvent {
            name: container.name.clone(),
            kind: ContainerEventKind::Started,
        };
        state.emit(event);
        Ok(())
    }

    async fn stop(&self, id: &str, _grace_secs: i64) -> RuntimeResult<()> {
        let call = format!("docker stop {id}");
        self.call(Call::Stop, &call, id).await?;
        let mut state = self.state();
        let Some(container) = state.find_mut(id) else {
            return Err(RuntimeError::NotFound {
                call,
                what: format!("container {id}"),
            });
        };
        if container.running {
            container.running = false;
            container.upstream = None;
            container.exit_code = Some(0);
            let event = died(&container.name.clone(), Some(0));
            state.emit(event);
        }
        Ok(())
    }

    async fn remove(&self, id: &str) -> RuntimeResult<()> {
        self.call(Call::Remove, &format!("docker rm -f {id}"), id)
            .await?;
        let mut state = self.state();
        let Some(position) = state
            .containers
            .iter()
            .position(|c| c.id == id || c.docker_name == id)
        else {
            return Ok(());
        };
        if state.containers[position].running {
            // Docker reports a forced removal of a running container as a death.
            let name = state.containers[position].name.clone();
            state.emit(died(&name, Some(137)));
        }
        let container = state.containers.remove(position);
        drop(state);
        remove_container_dir(&container.upper_dir);
        Ok(())
    }

    async fn remove_volumes(&self, volumes: &[String]) -> RuntimeResult<()> {
        let Some(first) = volumes.first() else {
            return Ok(());
        };
        let call = format!("docker volume rm {}", volumes.join(" "));
        self.call(Call::RemoveVolumes, &call, first).await?;
        let mut state = self.state();
        for volume in volumes {
            if state.containers.iter().any(|c| c.volumes.contains(volume)) {
                return Err(RuntimeError::Conflict {
                    call,
                    message: format!("volume {volume} is in use"),
                });
            }
            if let Some(removed) = state.volumes.remove(volume) {
                if let Some(volume_dir) = removed.dir.parent() {
                    let _ = std::fs::remove_dir_all(volume_dir);
                }
            }
        }
        Ok(())
    }

    async fn inspect(&self, id: &str) -> RuntimeResult<Option<Inspection>> {
        self.call(Call::Inspect, &format!("docker inspect {id}"), id)
            .await?;
        Ok(self.state().find(id).map(|c| Inspection {
            id: c.id.clone(),
            running: c.running,
            upstream: c.upstream,
            exit_code: c.exit_code,
            error: None,
            upper_dir: Some(c.upper_dir.clone()),
        }))
    }

    async fn list_labelled(&self, label: &str, value: &str) -> RuntimeResult<Vec<Managed>> {
        let call = format!("docker ps --all --filter label={label}={value}");
        self.call(Call::ListLabelled, &call, "").await?;
        Ok(self
            .state()
            .containers
            .iter()
            .filter(|c| c.labels.get(label).is_some_and(|v| v == value))
            .map(|c| Managed {
                id: c.id.clone(),
                labels: c.labels.clone(),
            })
            .collect())
    }

    fn events(
        &self,
        label: &str,
        value: &str,
    ) -> BoxStream<'static, RuntimeResult<ContainerEvent>> {
        let (tx, rx) = mpsc::unbounded_channel();
        if let (_, Err(e)) = self.enter(Call::Events, "docker events", "") {
            let _ = tx.send(Err(e));
        } else {
            self.state().subscribers.push(Subscriber {
                label: label.to_owned(),
                value: value.to_owned(),
                tx,
            });
        }
        futures_util::stream::unfold(rx, |mut rx| async move {
            let event = rx.recv().await?;
            Some((event, rx))
        })
        .boxed()
    }

    async fn volume_dir(&self, volume: &str) -> RuntimeResult<Option<PathBuf>> {
        let call = format!("docker volume inspect {volume}");
        self.call(Call::VolumeDir, &call, volume).await?;
        Ok(self.state().volumes.get(volume).map(|v| v.dir.clone()))
    }

    async fn storage(&self) -> RuntimeResult<StorageInfo> {
        self.call(Call::Storage, "docker info", "").await?;
        Ok(StorageInfo {
            driver: "overlay2".into(),
            root_dir: self.root.path().to_owned(),
        })
    }

    async fn list_labelled_volumes(&self, label: &str, value: &str) -> RuntimeResult<Vec<Managed>> {
        let call = format!("docker volume ls --filter label={label}={value}");
        self.call(Call::ListLabelledVolumes, &call, "").await?;
        Ok(self
            .state()
            .volumes
            .iter()
            .filter(|(_, v)| v.labels.get(label).is_some_and(|v| v == value))
            .map(|(name, v)| Managed {
                id: name.clone(),
                labels: v.labels.clone(),
            })
            .collect())
    }

    async fn probe(&self, upstream: SocketAddr, _path: &str, _require: bool) -> ProbeOutcome {
        let about = {
            let state = self.state();
            let owner = state
                .containers
                .iter()
                .find(|c| c.upstream == Some(upstream));
            owner.map_or_else(String::new, |c| c.id.clone())
        };
        if let Err(e) = self
            .call(Call::Probe, &format!("GET http://{upstream}/"), &about)
            .await
        {
            return ProbeOutcome::NotYet(e.to_string());
        }
        let state = self.state();
        let answering = state.containers.iter().find(|c| {
            c.running
                && c.upstream == Some(upstream)
                && c.answers_at.is_some_and(|at| at <= Instant::now())
        });
        match answering {
            Some(_) => ProbeOutcome::Ready,
            None => ProbeOutcome::NotYet(format!("connection to {upstream} refused (fake)")),
        }
    }
}

fn image_name(state: &State, image: &ImageInfo) -> String {
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
