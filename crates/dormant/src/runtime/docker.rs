//! The `Runtime` on the Docker Engine API, through bollard.
//!
//! The API version is negotiated at connect time: the daemon may be older than
//! bollard's default. Nothing here ever pulls an image.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use bollard::errors::Error as BollardError;
use bollard::models::{
    ContainerCreateBody, HostConfig, HostConfigLogConfig, Mount, MountType, NetworkCreateRequest,
    PortBinding, VolumeCreateRequest,
};
use bollard::query_parameters::{
    CreateContainerOptions, EventsOptions, InspectContainerOptions, ListContainersOptions,
    ListVolumesOptions, RemoveContainerOptions, RemoveVolumeOptions, StopContainerOptions,
};
use bollard::Docker;

use super::{
    capabilities, ContainerEvent, ContainerEventKind, CreateParams, EngineEvent, ImageInfo,
    Inspection, Managed, Runtime, RuntimeError, RuntimeResult, StorageInfo,
};
use crate::domain::{LABEL_NAME, LABEL_PORT};
use futures_util::stream::{self, BoxStream};
use futures_util::StreamExt;
use tokio::time::Instant;

/// Docker as dormant's container runtime.
#[derive(Clone)]
pub struct DockerRuntime {
    docker: Docker,
    /// The Docker network containers join when the proxy reaches them at
    /// their own address (`--upstream network`); `None` publishes a port on
    /// loopback instead.
    network: Option<String>,
    /// Whether the proxy reaches containers at a port published on
    /// 127.0.0.1 rather than at their address on `network`.
    publish_ports: bool,
    /// The log driver and its rotation, given to every container made.
    log_config: Option<HostConfigLogConfig>,
}

/// How the proxy reaches a container.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reach {
    /// At its own address on dormant's network.
    Address,
    /// At a port published on 127.0.0.1.
    PublishedPort,
}

/// How containers' log files rotate (`--log-max-size`, `--log-max-files`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogRotation {
    pub max_size_bytes: u64,
    pub max_files: u32,
}

/// Why an attempt to connect failed.
enum ConnectError {
    /// Worth waiting for: the daemon may be starting.
    NotAnswering(String),
    /// No use waiting: the address itself is wrong.
    Unusable(anyhow::Error),
}

/// How long one attempt to reach the daemon at start-up may take.
const CONNECT_ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);
/// Pause between attempts while waiting for the daemon at start-up.
const CONNECT_RETRY: Duration = Duration::from_secs(1);

impl DockerRuntime {
    /// Connects to `docker_host` (`unix://...` or `tcp://...`), or to
    /// `DOCKER_HOST` / the local socket when `None`, and negotiates the API
    /// version.
    pub async fn connect(docker_host: Option<&str>) -> anyhow::Result<Self> {
        Self::connect_waiting(docker_host, Duration::ZERO).await
    }

    /// Connects like `connect`, but waits up to `wait` for a daemon that
    /// does not answer yet (Docker still starting after a reboot, or being
    /// restarted), asking again every second and saying so in the log.
    pub async fn connect_waiting(
        docker_host: Option<&str>,
        wait: Duration,
    ) -> anyhow::Result<Self> {
        let deadline = Instant::now() + wait;
        let mut waited = false;
        loop {
            let error = match Self::try_connect(docker_host).await {
                Ok(docker) => {
                    if waited {
                        tracing::info!(docker = %describe_host(docker_host), "Docker answers now");
                    }
                    return Ok(Self {
                        docker,
                        network: None,
                        publish_ports: true,
                        log_config: None,
                    });
                }
                Err(ConnectError::Unusable(e)) => return Err(e),
                Err(ConnectError::NotAnswering(error)) => error,
            };
            let now = Instant::now();
            if now >= deadline {
                let waited = if waited {
                    format!(" after waiting {wait:?} (--docker-wait)")
                } else {
                    String::new()
                };
                anyhow::bail!(
                    "Docker at {} does not answer ({error}){waited}; is the daemon running and may this user use its socket?",
                    describe_host(docker_host)
                );
            }
            if !waited {
                tracing::warn!(docker = %describe_host(docker_host), %error, ?wait, "Docker does not answer yet; waiting for it");
                waited = true;
            }
            tokio::time::sleep(CONNECT_RETRY.min(deadline - now)).await;
        }
    }

    /// One attempt: a client for `docker_host`, with the API version the
    /// daemon speaks.
    async fn try_connect(docker_host: Option<&str>) -> Result<Docker, ConnectError> {
        let docker = match docker_host {
            Some(host) => Docker::connect_with_host(host),
            None => Docker::connect_with_defaults(),
        };
        let docker = match docker {
            Ok(docker) => docker,
            // The daemon makes its socket when it starts.
            Err(BollardError::SocketNotFoundError(path)) => {
                return Err(ConnectError::NotAnswering(format!("no socket at {path}")))
            }
            Err(e) => {
                return Err(ConnectError::Unusable(anyhow::anyhow!(
                    "cannot connect to Docker at {}: {e}",
                    describe_host(docker_host)
                )))
            }
        };
        match tokio::time::timeout(CONNECT_ATTEMPT_TIMEOUT, docker.negotiate_version()).await {
            Ok(Ok(docker)) => Ok(docker),
            Ok(Err(e)) => Err(ConnectError::NotAnswering(e.to_string())),
            Err(_) => Err(ConnectError::NotAnswering(format!(
                "no answer within {CONNECT_ATTEMPT_TIMEOUT:?}"
            ))),
        }
    }

    /// From now on, containers' logs rotate: at most `rotation.max_files`
    /// files of `rotation.max_size_bytes` each, when the daemon logs
    /// containers to files (`json-file`, its default, or `local`). Another
    /// default driver (journald, syslog, ...) is the admin's choice and is
    /// left alone.
    pub async fn rotate_logs(&mut self, rotation: LogRotation) {
        let driver = match self.docker.info().await {
            Ok(info) => info.logging_driver.unwrap_or_default(),
            Err(e) => {
                tracing::warn!(error = %e, "cannot ask Docker for its log driver; containers log to json-file");
                "json-file".to_owned()
            }
        };
        if !matches!(driver.as_str(), "json-file" | "local") {
            tracing::info!(%driver, "containers log through Docker's default driver; --log-max-size and --log-max-files apply to json-file and local only");
            return;
        }
        self.log_config = Some(HostConfigLogConfig {
            typ: Some(driver),
            config: Some(HashMap::from([
                ("max-size".to_owned(), rotation.max_size_bytes.to_string()),
                ("max-file".to_owned(), rotation.max_files.to_string()),
            ])),
        });
    }

    /// From now on, containers are created on the network `name` (made if
    /// missing; containers on it cannot talk to each other, whichever way
    /// the proxy reaches them). `Reach::Address`: the proxy reaches them at
    /// their address there, with no published port and so no `docker-proxy`;
    /// `Reach::PublishedPort`: at a port published on 127.0.0.1.
    pub async fn use_network(
        &mut self,
        name: &str,
        labels: HashMap<String, String>,
        reach: Reach,
    ) -> anyhow::Result<()> {
        self.publish_ports = reach == Reach::PublishedPort;
        if self.networks_named(name).await?.is_empty() {
            let request = NetworkCreateRequest {
                name: name.to_owned(),
                driver: Some("bridge".into()),
                labels: Some(labels),
                options: Some(HashMap::from([(
                    // Users' containers never reach each other.
                    "com.docker.network.bridge.enable_icc".to_owned(),
                    "false".to_owned(),
                )])),
                ..Default::default()
            };
            self.docker
                .create_network(request)
                .await
                .map_err(|e| anyhow::anyhow!("docker network create {name} failed: {e}"))?;
        }
        // Docker lets two dormants starting at once both create `name`.
        // Every one of them keeps the network with the lowest id and removes
        // the others, so they all end up on the same one.
        let mut ids = self.networks_named(name).await?;
        ids.sort();
        for duplicate in ids.iter().skip(1) {
            match self.docker.remove_network(duplicate).await {
                Ok(()) => {}
                Err(e) if is_not_found(&e) => {}
                Err(e) => {
                    tracing::warn!(network = %duplicate, error = %e, "cannot remove a duplicate network")
                }
            }
        }
        let id = ids.into_iter().next().ok_or_else(|| {
            anyhow::anyhow!("docker network {name} vanished right after it was made")
        })?;
        // By id: a name another dormant is still deduplicating is ambiguous.
        self.network = Some(id);
        Ok(())
    }

    /// Ids of the networks whose name is exactly `name`.
    async fn networks_named(&self, name: &str) -> anyhow::Result<Vec<String>> {
        let options = bollard::query_parameters::ListNetworksOptions {
            filters: Some(HashMap::from([("name".to_owned(), vec![name.to_owned()])])),
        };
        let networks = self
            .docker
            .list_networks(Some(options))
            .await
            .map_err(|e| anyhow::anyhow!("docker network ls failed: {e}"))?;
        // The name filter matches substrings.
        Ok(networks
            .into_iter()
            .filter(|n| n.name.as_deref() == Some(name))
            .filter_map(|n| n.id)
            .collect())
    }

    /// The bollard client, for the few callers that need Docker itself
    /// (building the demo image).
    pub fn client(&self) -> &Docker {
        &self.docker
    }
}

fn describe_host(docker_host: Option<&str>) -> String {
    docker_host
        .map(str::to_owned)
        .or_else(|| std::env::var("DOCKER_HOST").ok())
        .unwrap_or_else(|| "unix:///var/run/docker.sock".into())
}

/// Turns bollard's error into one that names the call and the object.
fn failed(call: &str, object: &str, err: BollardError) -> RuntimeError {
    match err {
        BollardError::DockerResponseServerError {
            status_code: 404,
            message,
        } => RuntimeError::NotFound(format!("docker {call} {object}: {message}")),
        BollardError::DockerResponseServerError {
            status_code: 409,
            message,
        } => RuntimeError::Conflict(format!("docker {call} {object}: {message}")),
        BollardError::DockerResponseServerError {
            status_code,
            message,
        } => RuntimeError::Failed(format!(
            "docker {call} {object} failed ({status_code}): {message}"
        )),
        other => RuntimeError::Failed(format!("docker {call} {object} failed: {other}")),
    }
}

/// `since` as Docker's events filter takes it: seconds.nanoseconds.
fn docker_timestamp(time: SystemTime) -> String {
    let since_epoch = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    format!(
        "{}.{:09}",
        since_epoch.as_secs(),
        since_epoch.subsec_nanos()
    )
}

/// An event's time from Docker's nanoseconds (or, from an older daemon,
/// seconds); now if it sent neither.
fn event_time(nanos: Option<i64>, secs: Option<i64>) -> SystemTime {
    let since_epoch = match (nanos, secs) {
        (Some(nanos), _) if nanos > 0 => Duration::from_nanos(nanos as u64),
        (_, Some(secs)) if secs > 0 => Duration::from_secs(secs as u64),
        _ => return SystemTime::now(),
    };
    UNIX_EPOCH + since_epoch
}

fn is_not_found(err: &BollardError) -> bool {
    matches!(
        err,
        BollardError::DockerResponseServerError {
            status_code: 404,
            ..
        }
    )
}

#[async_trait]
impl Runtime for DockerRuntime {
    async fn image(&self, image: &str) -> RuntimeResult<Option<ImageInfo>> {
        match self.docker.inspect_image(image).await {
            Ok(inspect) => {
                let id = inspect.id.clone().unwrap_or_default();
                let exposed = inspect
                    .config
                    .and_then(|config| config.exposed_ports)
                    .unwrap_or_default();
                let mut exposed_tcp_ports: Vec<u16> = exposed
                    .iter()
                    .filter_map(|spec| {
                        let (port, proto) = spec.split_once('/').unwrap_or((spec, "tcp"));
                        (proto == "tcp").then(|| port.parse().ok()).flatten()
                    })
                    .collect();
                exposed_tcp_ports.sort_unstable();
                Ok(Some(ImageInfo {
                    id,
                    exposed_tcp_ports,
                }))
            }
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(failed("image inspect", image, e)),
        }
    }

    async fn create(&self, params: &CreateParams) -> RuntimeResult<String> {
        for (volume, _) in &params.volumes {
            let request = VolumeCreateRequest {
                name: Some(volume.clone()),
                labels: Some(params.labels.clone()),
                ..Default::default()
            };
            self.docker
                .create_volume(request)
                .await
                .map_err(|e| failed("volume create", volume, e))?;
        }
        let port_key = format!("{}/tcp", params.port);
        // On dormant's network the proxy reaches the container at its own
        // address; otherwise at an ephemeral port on loopback only.
        let port_bindings = match self.publish_ports {
            false => None,
            true => Some(HashMap::from([(
                port_key.clone(),
                Some(vec![PortBinding {
                    host_ip: Some("127.0.0.1".into()),
                    host_port: Some(String::new()),
                }]),
            )])),
        };
        // Hardened by default: fewer capabilities, no privilege gain through
        // setuid files, bounded processes, bounded logs.
        let cap_drop = capabilities::DROPPED
            .iter()
            .filter(|dropped| !params.cap_add.iter().any(|added| added == *dropped))
            .map(|dropped| (*dropped).to_owned())
            .collect();
        let host_config = HostConfig {
            port_bindings,
            network_mode: self.network.clone(),
            memory: Some(params.memory_bytes as i64),
            // Swap equal to the memory limit means no swap at all: a
            // container's memory use stays what dormant's budget counts, and
            // a busy container never drags the host into swapping.
            memory_swap: Some(params.memory_bytes as i64),
            nano_cpus: params.nano_cpus,
            pids_limit: Some(params.pids_limit),
            security_opt: Some(vec!["no-new-privileges".into()]),
            cap_drop: Some(cap_drop),
            cap_add: Some(params.cap_add.clone()).filter(|added| !added.is_empty()),
            log_config: self.log_config.clone(),
            mounts: Some(
                params
                    .volumes
                    .iter()
                    .map(|(volume, path)| Mount {
                        target: Some(path.clone()),
                        source: Some(volume.clone()),
                        typ: Some(MountType::VOLUME),
                        ..Default::default()
                    })
                    .collect(),
            ),
            ..Default::default()
        };
        let body = ContainerCreateBody {
            image: Some(params.image.clone()),
            cmd: params.cmd.clone(),
            env: Some(params.env.clone()),
            labels: Some(params.labels.clone()),
            exposed_ports: Some(vec![port_key]),
            host_config: Some(host_config),
            ..Default::default()
        };
        let options = CreateContainerOptions {
            name: Some(params.docker_name.clone()),
            ..Default::default()
        };
        let created = self
            .docker
            .create_container(Some(options), body)
            .await
            .map_err(|e| failed("create", &params.docker_name, e))?;
        Ok(created.id)
    }

    async fn start(&self, id: &str) -> RuntimeResult<()> {
        self.docker
            .start_container(id, None)
            .await
            .map_err(|e| failed("start", id, e))
    }

    async fn stop(&self, id: &str, grace_secs: i64) -> RuntimeResult<()> {
        let options = StopContainerOptions {
            t: Some(grace_secs.clamp(0, i32::MAX as i64) as i32),
            ..Default::default()
        };
        match self.docker.stop_container(id, Some(options)).await {
            // 304: already stopped.
            Ok(())
            | Err(BollardError::DockerResponseServerError {
                status_code: 304, ..
            }) => Ok(()),
            Err(e) => Err(failed("stop", id, e)),
        }
    }

    async fn remove(&self, id: &str) -> RuntimeResult<()> {
        let options = RemoveContainerOptions {
            force: true,
            v: true,
            ..Default::default()
        };
        match self.docker.remove_container(id, Some(options)).await {
            Ok(()) => Ok(()),
            Err(e) if is_not_found(&e) => Ok(()),
            Err(e) => Err(failed("rm", id, e)),
        }
    }

    async fn remove_volumes(&self, volumes: &[String]) -> RuntimeResult<()> {
        for volume in volumes {
            let options = RemoveVolumeOptions { force: true };
            match self.docker.remove_volume(volume, Some(options)).await {
                Ok(()) => {}
                Err(e) if is_not_found(&e) => {}
                Err(e) => return Err(failed("volume rm", volume, e)),
            }
        }
        Ok(())
    }

    async fn inspect(&self, id: &str) -> RuntimeResult<Option<Inspection>> {
        let inspect = match self
            .docker
            .inspect_container(id, None::<InspectContainerOptions>)
            .await
        {
            Ok(inspect) => inspect,
            Err(e) if is_not_found(&e) => return Ok(None),
            Err(e) => return Err(failed("inspect", id, e)),
        };
        let state = inspect.state.unwrap_or_default();
        let running = state.running.unwrap_or(false);
        let port: Option<u16> = inspect
            .config
            .as_ref()
            .and_then(|c| c.labels.as_ref())
            .and_then(|labels| labels.get(LABEL_PORT))
            .and_then(|p| p.parse().ok());
        let settings = inspect.network_settings.unwrap_or_default();
        let on_network = self
            .network
            .as_ref()
            .and_then(|network| {
                settings
                    .networks
                    .as_ref()?
                    .values()
                    .find(|endpoint| endpoint.network_id.as_deref() == Some(network.as_str()))
            })
            .and_then(|endpoint| endpoint.ip_address.as_deref()?.parse::<IpAddr>().ok())
            .zip(port)
            .map(|(ip, port)| SocketAddr::new(ip, port));
        let published = settings.ports.and_then(|ports| {
            ports.into_values().flatten().flatten().find_map(|binding| {
                let port: u16 = binding.host_port?.parse().ok()?;
                let ip: IpAddr = match binding.host_ip.as_deref() {
                    None | Some("") | Some("0.0.0.0") => IpAddr::V4(Ipv4Addr::LOCALHOST),
                    Some(ip) => ip.parse().ok()?,
                };
                Some(SocketAddr::new(ip, port))
            })
        });
        let upstream = if self.publish_ports {
            published
        } else {
            on_network.or(published)
        };
        let upper_dir = inspect
            .graph_driver
            .and_then(|driver| driver.data.get("UpperDir").cloned())
            .map(std::path::PathBuf::from);
        Ok(Some(Inspection {
            upper_dir,
            id: inspect.id.unwrap_or_else(|| id.to_owned()),
            running,
            upstream: if running { upstream } else { None },
            exit_code: state.exit_code,
            error: state.error.filter(|e| !e.is_empty()),
        }))
    }

    async fn list_labelled(&self, label: &str, value: &str) -> RuntimeResult<Vec<Managed>> {
        let options = ListContainersOptions {
            all: true,
            filters: Some(HashMap::from([(
                "label".to_owned(),
                vec![format!("{label}={value}")],
            )])),
            ..Default::default()
        };
        let containers = self
            .docker
            .list_containers(Some(options))
            .await
            .map_err(|e| failed("ps", &format!("--filter label={label}={value}"), e))?;
        Ok(containers
            .into_iter()
            .filter_map(|c| {
                Some(Managed {
                    id: c.id?,
                    labels: c.labels.unwrap_or_default(),
                })
            })
            .collect())
    }

    async fn list_labelled_volumes(&self, label: &str, value: &str) -> RuntimeResult<Vec<Managed>> {
        let options = ListVolumesOptions {
            filters: Some(HashMap::from([(
                "label".to_owned(),
                vec![format!("{label}={value}")],
            )])),
        };
        let listed = self
            .docker
            .list_volumes(Some(options))
            .await
            .map_err(|e| failed("volume ls", &format!("--filter label={label}={value}"), e))?;
        Ok(listed
            .volumes
            .unwrap_or_default()
            .into_iter()
            .map(|v| Managed {
                id: v.name,
                labels: v.labels,
            })
            .collect())
    }

    fn events(
        &self,
        label: &str,
        value: &str,
        since: SystemTime,
    ) -> BoxStream<'static, RuntimeResult<EngineEvent>> {
        let options = EventsOptions {
            since: Some(docker_timestamp(since)),
            filters: Some(HashMap::from([
                ("type".to_owned(), vec!["container".to_owned()]),
                ("label".to_owned(), vec![format!("{label}={value}")]),
                (
                    "event".to_owned(),
                    vec!["start".to_owned(), "die".to_owned()],
                ),
            ])),
            ..Default::default()
        };
        // The events call says nothing until an event comes; a ping first
        // tells the follower at once that the daemon is back.
        let docker = self.docker.clone();
        let connected = stream::once(async move {
            docker
                .ping()
                .await
                .map(|_| EngineEvent::Connected)
                .map_err(|e| failed("events", "", e))
        });
        let events = self
            .docker
            .events(Some(options))
            .filter_map(|message| async move {
                let message = match message {
                    Ok(message) => message,
                    Err(e) => return Some(Err(failed("events", "", e))),
                };
                let at = event_time(message.time_nano, message.time);
                let attributes = message.actor?.attributes.unwrap_or_default();
                let name = attributes.get(LABEL_NAME)?.clone();
                let kind = match message.action.as_deref()? {
                    "start" => ContainerEventKind::Started,
                    "die" => ContainerEventKind::Died {
                        exit_code: attributes.get("exitCode").and_then(|c| c.parse().ok()),
                    },
                    _ => return None,
                };
                Some(Ok(EngineEvent::Container(ContainerEvent {
                    name,
                    kind,
                    at,
                })))
            });
        connected.chain(events).boxed()
    }

    async fn volume_dir(&self, volume: &str) -> RuntimeResult<Option<std::path::PathBuf>> {
        match self.docker.inspect_volume(volume).await {
            Ok(v) => Ok(Some(v.mountpoint.into())),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(failed("volume inspect", volume, e)),
        }
    }

    async fn storage(&self) -> RuntimeResult<StorageInfo> {
        let info = self
            .docker
            .info()
            .await
            .map_err(|e| failed("info", "", e))?;
        Ok(StorageInfo {
            driver: info.driver.unwrap_or_default(),
            root_dir: info.docker_root_dir.unwrap_or_default().into(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_times_round_trip_through_docker_timestamps() {
        let at = event_time(Some(1_700_000_000_123_456_789), Some(1_700_000_000));
        assert_eq!(docker_timestamp(at), "1700000000.123456789");
        let older_daemon = event_time(None, Some(1_700_000_000));
        assert_eq!(docker_timestamp(older_daemon), "1700000000.000000000");
    }
}
