//! The `Runtime` on the Docker Engine API, through bollard.
//!
//! The API version is negotiated at connect time: the daemon may be older than
//! bollard's default. Nothing here ever pulls an image. Containers are created
//! hardened (see `create`).
//!
//! - `docker/setup.rs`: connecting (waiting for a daemon still starting), log
//!   rotation and dormant's network.
//! - `docker/events.rs`: the event stream, resumable from a point in time.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::SystemTime;

use async_trait::async_trait;
use bollard::errors::Error as BollardError;
use bollard::models::{
    ContainerCreateBody, HostConfig, HostConfigLogConfig, Mount, MountType, PortBinding,
    VolumeCreateRequest,
};
use bollard::query_parameters::{
    CreateContainerOptions, InspectContainerOptions, ListContainersOptions, ListVolumesOptions,
    RemoveContainerOptions, RemoveVolumeOptions, StopContainerOptions,
};
use bollard::Docker;

use super::{
    capabilities, probe, CreateParams, EngineEvent, ImageInfo, Inspection, Managed, ProbeOutcome,
    Runtime, RuntimeError, RuntimeResult, StorageInfo,
};
use crate::domain::LABEL_PORT;
use futures_util::stream::BoxStream;

mod events;
mod networks;
mod ports;
mod setup;

use networks::Networks;

pub use setup::{LogRotation, Reach};

/// Docker as dormant's container runtime.
#[derive(Clone)]
pub struct DockerRuntime {
    docker: Docker,
    /// The Docker networks containers join (`use_network`): dormant's own
    /// and one per tenant. `None`: Docker's default bridge.
    networks: Option<Arc<Networks>>,
    /// Whether the proxy reaches containers at a port published on
    /// 127.0.0.1 rather than at their address on `network`.
    publish_ports: bool,
    /// The log driver and its rotation, given to every container made.
    log_config: Option<HostConfigLogConfig>,
}

/// A Docker call as a person would type it; also says what a 404 from it
/// means.
#[derive(Debug, Clone, Copy)]
enum Op<'a> {
    ImageInspect(&'a str),
    VolumeCreate(&'a str),
    /// Creating container `name`: a 404 means its image (or network) is missing.
    Create {
        name: &'a str,
        image: &'a str,
    },
    Start(&'a str),
    Stop(&'a str),
    Pause(&'a str),
    Unpause(&'a str),
    Remove(&'a str),
    VolumeRemove(&'a str),
    NetworkRemove(&'a str),
    Inspect(&'a str),
    VolumeInspect(&'a str),
    /// `docker ps` or `docker volume ls` filtered by `label=value`.
    List {
        volumes: bool,
        label: &'a str,
        value: &'a str,
    },
    Events,
    Info,
}

impl Op<'_> {
    fn command(&self) -> String {
        match self {
            Op::ImageInspect(image) => format!("docker image inspect {image}"),
            Op::VolumeCreate(volume) => format!("docker volume create {volume}"),
            Op::Create { name, .. } => format!("docker create --name {name}"),
            Op::Start(id) => format!("docker start {id}"),
            Op::Stop(id) => format!("docker stop {id}"),
            Op::Pause(id) => format!("docker pause {id}"),
            Op::Unpause(id) => format!("docker unpause {id}"),
            Op::Remove(id) => format!("docker rm -f {id}"),
            Op::VolumeRemove(volume) => format!("docker volume rm {volume}"),
            Op::NetworkRemove(network) => format!("docker network rm {network}"),
            Op::Inspect(id) => format!("docker inspect {id}"),
            Op::VolumeInspect(volume) => format!("docker volume inspect {volume}"),
            Op::List {
                volumes: false,
                label,
                value,
            } => {
                format!("docker ps --all --filter label={label}={value}")
            }
            Op::List {
                volumes: true,
                label,
                value,
            } => {
                format!("docker volume ls --filter label={label}={value}")
            }
            Op::Events => "docker events".into(),
            Op::Info => "docker info".into(),
        }
    }

    /// What a 404 from this call says is missing.
    fn not_found(&self, message: String) -> RuntimeError {
        let call = self.command();
        let what = match self {
            // Docker says "No such image: <ref>"; a missing network is the
            // other 404 a create can get.
            Op::Create { image, .. } if message.contains("No such image") => {
                return RuntimeError::ImageMissing {
                    call,
                    image: (*image).to_owned(),
                }
            }
            Op::Start(id)
            | Op::Stop(id)
            | Op::Pause(id)
            | Op::Unpause(id)
            | Op::Remove(id)
            | Op::Inspect(id) => {
                format!("container {id}")
            }
            Op::VolumeCreate(volume) | Op::VolumeRemove(volume) | Op::VolumeInspect(volume) => {
                format!("volume {volume}")
            }
            _ => message,
        };
        RuntimeError::NotFound { call, what }
    }
}

/// Turns bollard's error into dormant's: the one place where Docker's
/// failures are classified.
fn runtime_error(op: Op<'_>, err: BollardError) -> RuntimeError {
    let call = op.command();
    match err {
        BollardError::DockerResponseServerError {
            status_code: 404,
            message,
        } => op.not_found(message),
        BollardError::DockerResponseServerError {
            status_code: 409,
            message,
        } => RuntimeError::Conflict { call, message },
        BollardError::DockerResponseServerError {
            status_code: 503,
            message,
        } => RuntimeError::Unavailable { call, message },
        err if is_unreachable(&err) => RuntimeError::Unavailable {
            call,
            message: err.to_string(),
        },
        other => RuntimeError::Other {
            call,
            source: Box::new(other),
        },
    }
}

/// Whether the daemon could not be reached or stopped answering: no
/// socket, connection refused or reset, a timeout.
fn is_unreachable(err: &BollardError) -> bool {
    match err {
        BollardError::RequestTimeoutError
        | BollardError::SocketNotFoundError(_)
        | BollardError::IOError { .. } => true,
        BollardError::HyperLegacyError { err } => err.is_connect(),
        BollardError::HyperResponseError { err } => {
            err.is_closed() || err.is_incomplete_message() || err.is_canceled() || err.is_timeout()
        }
        _ => false,
    }
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
            Err(e) => Err(runtime_error(Op::ImageInspect(image), e)),
        }
    }

    // Long but flat: it fills Docker's create body one setting at a time
    // (limits, hardening, labels, mounts, network), in the order Docker's
    // documentation lists them.
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
                .map_err(|e| runtime_error(Op::VolumeCreate(volume), e))?;
        }
        let network_mode = match &self.networks {
            Some(networks) => Some(
                networks
                    .id_for(
                        &self.docker,
                        &params.tenant,
                        params
                            .labels
                            .get(crate::domain::LABEL_NODE)
                            .map(String::as_str),
                    )
                    .await
                    .map_err(|e| RuntimeError::Other {
                        call: format!("preparing tenant `{}`'s network", params.tenant),
                        source: e.into(),
                    })?,
            ),
            None => None,
        };
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
            network_mode,
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
        let create = Op::Create {
            name: &params.docker_name,
            image: &params.image,
        };
        let created = self
            .docker
            .create_container(Some(options), body)
            .await
            .map_err(|e| runtime_error(create, e))?;
        Ok(created.id)
    }

    async fn start(&self, id: &str) -> RuntimeResult<()> {
        self.docker
            .start_container(id, None)
            .await
            .map_err(|e| runtime_error(Op::Start(id), e))
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
            Err(e) => Err(runtime_error(Op::Stop(id), e)),
        }
    }

    async fn pause(&self, id: &str) -> RuntimeResult<()> {
        self.docker
            .pause_container(id)
            .await
            .map_err(|e| runtime_error(Op::Pause(id), e))
    }

    async fn unpause(&self, id: &str) -> RuntimeResult<()> {
        self.docker
            .unpause_container(id)
            .await
            .map_err(|e| runtime_error(Op::Unpause(id), e))
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
            Err(e) => Err(runtime_error(Op::Remove(id), e)),
        }
    }

    async fn remove_volumes(&self, volumes: &[String]) -> RuntimeResult<()> {
        for volume in volumes {
            let options = RemoveVolumeOptions { force: true };
            match self.docker.remove_volume(volume, Some(options)).await {
                Ok(()) => {}
                Err(e) if is_not_found(&e) => {}
                Err(e) => return Err(runtime_error(Op::VolumeRemove(volume), e)),
            }
        }
        Ok(())
    }

    async fn remove_tenant(&self, tenant: &str) -> RuntimeResult<()> {
        match &self.networks {
            Some(networks) if tenant != crate::domain::ADMIN_TENANT => networks
                .remove(&self.docker, tenant)
                .await
                .map_err(|e| runtime_error(Op::NetworkRemove(&networks.name_for(tenant)), e)),
            _ => Ok(()),
        }
    }

    async fn inspect(&self, id: &str) -> RuntimeResult<Option<Inspection>> {
        let inspect = match self
            .docker
            .inspect_container(id, None::<InspectContainerOptions>)
            .await
        {
            Ok(inspect) => inspect,
            Err(e) if is_not_found(&e) => return Ok(None),
            Err(e) => return Err(runtime_error(Op::Inspect(id), e)),
        };
        let state = inspect.state.unwrap_or_default();
        let running = state.running.unwrap_or(false);
        let paused = running && state.paused.unwrap_or(false);
        let port: Option<u16> = inspect
            .config
            .as_ref()
            .and_then(|c| c.labels.as_ref())
            .and_then(|labels| labels.get(LABEL_PORT))
            .and_then(|p| p.parse().ok());
        let settings = inspect.network_settings.unwrap_or_default();
        // Its address on the network dormant put it on; on any network if
        // that one is not known yet (a tenant's network made by an earlier
        // run, before this one made a container there).
        let endpoints: Vec<_> = settings
            .networks
            .as_ref()
            .map(|networks| networks.values().collect())
            .unwrap_or_default();
        let ours = |endpoint: &&bollard::models::EndpointSettings| {
            let networks = self.networks.as_ref();
            match (networks, endpoint.network_id.as_deref()) {
                (Some(networks), Some(id)) => networks.is_ours(id),
                _ => false,
            }
        };
        let address = |endpoint: &bollard::models::EndpointSettings| {
            endpoint
                .ip_address
                .as_deref()
                .filter(|ip| !ip.is_empty())?
                .parse::<IpAddr>()
                .ok()
        };
        let on_network = self
            .networks
            .as_ref()
            .and_then(|_| {
                endpoints
                    .iter()
                    .copied()
                    .filter(ours)
                    .find_map(address)
                    .or_else(|| endpoints.iter().copied().find_map(address))
            })
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
            paused,
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
        let list = Op::List {
            volumes: false,
            label,
            value,
        };
        let containers = self
            .docker
            .list_containers(Some(options))
            .await
            .map_err(|e| runtime_error(list, e))?;
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
        let list = Op::List {
            volumes: true,
            label,
            value,
        };
        let listed = self
            .docker
            .list_volumes(Some(options))
            .await
            .map_err(|e| runtime_error(list, e))?;
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
        events::stream(&self.docker, label, value, since)
    }

    async fn volume_dir(&self, volume: &str) -> RuntimeResult<Option<std::path::PathBuf>> {
        match self.docker.inspect_volume(volume).await {
            Ok(v) => Ok(Some(v.mountpoint.into())),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(runtime_error(Op::VolumeInspect(volume), e)),
        }
    }

    async fn storage(&self) -> RuntimeResult<StorageInfo> {
        let info = self
            .docker
            .info()
            .await
            .map_err(|e| runtime_error(Op::Info, e))?;
        Ok(StorageInfo {
            driver: info.driver.unwrap_or_default(),
            root_dir: info.docker_root_dir.unwrap_or_default().into(),
        })
    }

    async fn probe(&self, upstream: SocketAddr, path: &str, require_success: bool) -> ProbeOutcome {
        probe::http(upstream, path, require_success).await
    }

    async fn listening_ports(&self, id: &str) -> RuntimeResult<Option<Vec<u16>>> {
        let inspect = match self
            .docker
            .inspect_container(id, None::<InspectContainerOptions>)
            .await
        {
            Ok(inspect) => inspect,
            Err(e) if is_not_found(&e) => return Ok(None),
            Err(e) => return Err(runtime_error(Op::Inspect(id), e)),
        };
        let state = inspect.state.unwrap_or_default();
        if state.running != Some(true) {
            return Ok(None);
        }
        let full_id = inspect.id.unwrap_or_default();
        Ok(ports::listening(state.pid.unwrap_or(0), &full_id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server(status_code: u16, message: &str) -> BollardError {
        BollardError::DockerResponseServerError {
            status_code,
            message: message.to_owned(),
        }
    }

    #[test]
    fn docker_errors_map_to_what_a_caller_can_act_on() {
        let start = Op::Start("dormant-a");
        let create = Op::Create {
            name: "dormant-a",
            image: "demo",
        };
        let refused = || std::io::Error::from(std::io::ErrorKind::ConnectionRefused).into();
        let cases: Vec<(Op<'_>, BollardError, &str)> = vec![
            (
                start,
                server(404, "No such container: dormant-a"),
                "NotFound",
            ),
            (
                create,
                server(404, "No such image: demo:latest"),
                "ImageMissing",
            ),
            (create, server(404, "network dormant not found"), "NotFound"),
            (
                Op::VolumeInspect("v"),
                server(404, "no such volume"),
                "NotFound",
            ),
            (
                Op::Remove("dormant-a"),
                server(409, "removal of container dormant-a is already in progress"),
                "Conflict",
            ),
            (start, server(503, "daemon shutting down"), "Unavailable"),
            (start, server(500, "driver failed programming"), "Other"),
            (start, BollardError::RequestTimeoutError, "Unavailable"),
            (
                Op::Info,
                BollardError::SocketNotFoundError("/var/run/docker.sock".into()),
                "Unavailable",
            ),
            (Op::Events, refused(), "Unavailable"),
        ];
        for (op, err, want) in cases {
            let shown = format!("{err}");
            let mapped = runtime_error(op, err);
            let got = match &mapped {
                RuntimeError::NotFound { .. } => "NotFound",
                RuntimeError::ImageMissing { .. } => "ImageMissing",
                RuntimeError::Conflict { .. } => "Conflict",
                RuntimeError::Unavailable { .. } => "Unavailable",
                RuntimeError::Other { .. } => "Other",
            };
            assert_eq!(got, want, "{op:?}: {shown}");
            assert_eq!(mapped.call(), op.command());
            assert!(
                mapped.to_string().starts_with(&op.command()),
                "the message names the call: {mapped}"
            );
        }
    }

    #[tokio::test]
    async fn an_unreachable_daemon_is_unavailable_and_names_the_call() {
        // A socket file nobody listens on: connection refused.
        let dir = std::env::temp_dir().join(format!(
            "dormant-docker-test-{}",
            crate::token::random_hex(6)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let socket = dir.join("docker.sock");
        drop(std::os::unix::net::UnixListener::bind(&socket).unwrap());
        let docker =
            Docker::connect_with_unix(socket.to_str().unwrap(), 5, bollard::API_DEFAULT_VERSION)
                .unwrap();
        let runtime = DockerRuntime {
            docker,
            networks: None,
            publish_ports: true,
            log_config: None,
        };
        let err = runtime.start("dormant-a").await.unwrap_err();
        assert!(
            matches!(&err, RuntimeError::Unavailable { call, .. } if call == "docker start dormant-a"),
            "{err:?}"
        );
        assert!(
            err.to_string().contains("is the Docker daemon running?"),
            "{err}"
        );
        std::fs::remove_dir_all(dir).unwrap();
    }
}
