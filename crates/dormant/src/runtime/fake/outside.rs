//! What happens to containers behind dormant's back: crashes, hand-made
//! starts and removals, orphans, a daemon that drops its event streams.

use std::collections::HashMap;
use std::path::PathBuf;

use tokio::time::Instant;

use super::state::{died, paused_event, remove_container_dir, Container, Volume};
use super::FakeRuntime;
use crate::domain::LABEL_NAME;
use crate::runtime::RuntimeError;

impl FakeRuntime {
    /// The container's process exits on its own (a crash, an OOM kill).
    pub fn kill(&self, name: &str, exit_code: i64) {
        let mut state = self.state();
        let container = state.by_name_mut(name).expect("kill: no such container");
        container.running = false;
        container.paused = false;
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
        container.paused = false;
        container.upstream = None;
        container.exit_code = Some(0);
    }

    /// Someone ran `docker pause` (`true`) or `docker unpause` by hand;
    /// `tell`: whether Docker's event stream says so (false: dormant was
    /// down and hears nothing).
    pub fn pause_outside(&self, name: &str, paused: bool, tell: bool) {
        let mut state = self.state();
        let container = state
            .by_name_mut(name)
            .expect("pause_outside: no such container");
        assert!(container.running, "pause_outside: `{name}` is not running");
        container.paused = paused;
        if tell {
            state.emit(paused_event(name, paused));
        }
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
            paused: false,
            upstream: None,
            answers_at: None,
            started_at: None,
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
}
