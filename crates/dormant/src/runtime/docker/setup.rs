//! Connecting to the daemon (waiting for it at start-up if need be) and what
//! dormant sets on it once: log rotation and its own network.

use std::collections::HashMap;
use std::time::Duration;

use bollard::errors::Error as BollardError;
use std::sync::Arc;

use bollard::models::HostConfigLogConfig;
use bollard::Docker;
use tokio::time::Instant;

use super::networks::Networks;
use super::DockerRuntime;

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
                        networks: None,
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
    /// the proxy reaches them), or, for a tenant's, on that tenant's own
    /// network `<name>-t-<tenant>`. `Reach::Address`: the proxy reaches them
    /// at their address there, with no published port and so no
    /// `docker-proxy`; `Reach::PublishedPort`: at a port published on
    /// 127.0.0.1.
    pub async fn use_network(
        &mut self,
        name: &str,
        labels: HashMap<String, String>,
        reach: Reach,
    ) -> anyhow::Result<()> {
        self.publish_ports = reach == Reach::PublishedPort;
        self.networks = Some(Arc::new(Networks::new(&self.docker, name, labels).await?));
        Ok(())
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
