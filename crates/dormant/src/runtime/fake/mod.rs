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

//!
//! - `state.rs`: the tables behind the fake, and what a fault turns into.
//! - `engine.rs`: the `Runtime` calls, as Docker would answer them.
//! - `outside.rs`: what happens behind dormant's back (crashes, removals).

mod engine;
mod outside;
mod state;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use super::{ImageInfo, RuntimeResult};
pub use state::TempDir;
use state::{injected, lock, FaultRule, State};

/// Each runtime call, for faults, delays and counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Call {
    Image,
    Create,
    Start,
    Stop,
    Pause,
    Unpause,
    Remove,
    RemoveVolumes,
    RemoveTenant,
    Inspect,
    ListLabelled,
    ListLabelledVolumes,
    Events,
    VolumeDir,
    Storage,
    Probe,
    ListeningPorts,
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
    /// The ports the app opens besides its configured one (which counts as
    /// open once it answers), each this long after the start. `None`: the
    /// runtime cannot tell which ports a container listens on.
    pub listens: Option<Vec<(u16, Duration)>>,
}

impl Default for Script {
    fn default() -> Self {
        Self {
            start_latency: Duration::ZERO,
            ready: Readiness::After(Duration::ZERO),
            crash: None,
            listens: None,
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
    pub paused: bool,
    pub upstream: Option<SocketAddr>,
    pub upper_dir: PathBuf,
    /// Its `dormant.tenant` label: the tenant whose network it was made on.
    pub tenant: Option<String>,
}

pub struct FakeRuntime {
    state: Arc<Mutex<State>>,
    root: TempDir,
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
            paused: c.paused,
            upstream: c.upstream,
            upper_dir: c.upper_dir.clone(),
            tenant: c.labels.get(crate::domain::LABEL_TENANT).cloned(),
        })
    }

    pub fn running(&self, name: &str) -> bool {
        self.container(name).is_some_and(|c| c.running)
    }

    /// Whether Docker shows `name` paused.
    pub fn paused(&self, name: &str) -> bool {
        self.container(name).is_some_and(|c| c.paused)
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
