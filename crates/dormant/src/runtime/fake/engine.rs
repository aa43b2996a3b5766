//! The `Runtime` calls of the fake, answered as Docker would: a missing
//! container is `None` or `NotFound`, removal is idempotent, a name in use
//! or a volume in use is a conflict, a missing image is `ImageMissing`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use futures_util::stream::BoxStream;
use futures_util::StreamExt;
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::state::{
    died, image_name, lock, paused_event, remove_container_dir, Container, Subscriber, Volume,
};
use super::{Call, Crash, FakeRuntime, Readiness};
use crate::domain::{LABEL_NAME, LABEL_PORT};
use crate::runtime::{
    ContainerEvent, ContainerEventKind, CreateParams, EngineEvent, ImageInfo, Inspection, Managed,
    ProbeOutcome, Runtime, RuntimeError, RuntimeResult, StorageInfo,
};

#[async_trait]
impl Runtime for FakeRuntime {
    async fn image(&self, image: &str) -> RuntimeResult<Option<ImageInfo>> {
        self.call(Call::Image, &format!("docker image inspect {image}"), image)
            .await?;
        Ok(self.state().image(image).cloned())
    }

    async fn create(&self, params: &CreateParams) -> RuntimeResult<String> {
        let call = format!("docker create --name {}", params.docker_name);
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
            paused: false,
            upstream: None,
            answers_at: None,
            started_at: None,
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
        container.started_at = Some(Instant::now());
        container.answers_at = match script.ready {
            Readiness::After(after) => Some(Instant::now() + after),
            Readiness::Never => None,
        };
        let event = ContainerEvent {
            name: container.name.clone(),
            kind: ContainerEventKind::Started,
            at: SystemTime::now(),
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
        // As this Docker daemon does: a paused container gets its SIGTERM
        // and is thawed to act on it.
        if container.running {
            container.running = false;
            container.paused = false;
            container.upstream = None;
            container.exit_code = Some(0);
            let event = died(&container.name.clone(), Some(0));
            state.emit(event);
        }
        Ok(())
    }

    /// Answers as Docker does: a 409 for a container not running or
    /// already paused.
    async fn pause(&self, id: &str) -> RuntimeResult<()> {
        let call = format!("docker pause {id}");
        self.call(Call::Pause, &call, id).await?;
        self.set_paused(&call, id, true)
    }

    async fn unpause(&self, id: &str) -> RuntimeResult<()> {
        let call = format!("docker unpause {id}");
        self.call(Call::Unpause, &call, id).await?;
        self.set_paused(&call, id, false)
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
            state.containers[position].paused = false;
            // Docker reports a forced removal of a running container as a death.
            let name = state.containers[position].name.clone();
            state.emit(died(&name, Some(137)));
        }
        let container = state.containers.remove(position);
        drop(state);
        remove_container_dir(&container.upper_dir);
        Ok(())
    }

    async fn remove_tenant(&self, tenant: &str) -> RuntimeResult<()> {
        let call = format!("docker network rm dormant-t-{tenant}");
        self.call(Call::RemoveTenant, &call, tenant).await
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
            paused: c.paused,
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

    /// `Connected`, then events as they happen. The fake keeps no history:
    /// `since` replays nothing, as if no event was missed.
    fn events(
        &self,
        label: &str,
        value: &str,
        _since: SystemTime,
    ) -> BoxStream<'static, RuntimeResult<EngineEvent>> {
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
        let connected = futures_util::stream::once(async { Ok(EngineEvent::Connected) });
        let events = futures_util::stream::unfold(rx, |mut rx| async move {
            let event = rx.recv().await?;
            Some((event.map(EngineEvent::Container), rx))
        });
        connected.chain(events).boxed()
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

    async fn listening_ports(&self, id: &str) -> RuntimeResult<Option<Vec<u16>>> {
        self.call(Call::ListeningPorts, &format!("/proc of {id}"), id)
            .await?;
        let state = self.state();
        let Some(container) = state.find(id).filter(|c| c.running) else {
            return Ok(None);
        };
        let Some(listens) = state.script_for(container).listens else {
            return Ok(None);
        };
        let now = Instant::now();
        let started = container.started_at.unwrap_or(now);
        let mut ports: Vec<u16> = listens
            .iter()
            .filter(|(_, after)| started + *after <= now)
            .map(|(port, _)| *port)
            .collect();
        let configured = container
            .labels
            .get(LABEL_PORT)
            .and_then(|p| p.parse().ok());
        if let (Some(port), true) = (configured, container.answers_at.is_some_and(|at| at <= now)) {
            ports.push(port);
        }
        ports.sort_unstable();
        ports.dedup();
        Ok(Some(ports))
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
                && !c.paused
                && c.upstream == Some(upstream)
                && c.answers_at.is_some_and(|at| at <= Instant::now())
        });
        match answering {
            Some(_) => ProbeOutcome::Ready,
            None => ProbeOutcome::NotYet(format!("connection to {upstream} refused (fake)")),
        }
    }
}

impl FakeRuntime {
    fn set_paused(&self, call: &str, id: &str, paused: bool) -> RuntimeResult<()> {
        let mut state = self.state();
        let Some(container) = state.find_mut(id) else {
            return Err(RuntimeError::NotFound {
                call: call.to_owned(),
                what: format!("container {id}"),
            });
        };
        let refusal = match (container.running, container.paused, paused) {
            (false, _, _) => Some(format!("Container {id} is not running")),
            (true, true, true) => Some(format!("Container {id} is already paused")),
            (true, false, false) => Some(format!("Container {id} is not paused")),
            _ => None,
        };
        if let Some(message) = refusal {
            return Err(RuntimeError::Conflict {
                call: call.to_owned(),
                message,
            });
        }
        container.paused = paused;
        let event = paused_event(&container.name.clone(), paused);
        state.emit(event);
        Ok(())
    }
}
