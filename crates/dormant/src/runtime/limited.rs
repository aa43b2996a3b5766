//! A `Runtime` that lets at most N Docker operations run at once
//! (`--docker-concurrency`), so a storm of wakes queues here instead of
//! overloading the daemon, and gives each one a deadline
//! (`--docker-timeout`, plus the stop grace for a stop), so a daemon that
//! hangs fails a transition instead of holding its container forever. The
//! event stream is not limited: it is one long-lived call. Readiness probes
//! are not limited either: they talk to the app, not to the daemon.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use futures_util::stream::BoxStream;
use tokio::sync::Semaphore;

use super::{
    CreateParams, EngineEvent, ImageInfo, Inspection, Managed, ProbeOutcome, Runtime, RuntimeError,
    RuntimeResult, StorageInfo,
};

pub struct Limited<R> {
    inner: R,
    permits: Semaphore,
    timeout: Duration,
}

impl<R: Runtime> Limited<R> {
    pub fn new(inner: R, concurrency: usize, timeout: Duration) -> Self {
        Self {
            inner,
            permits: Semaphore::new(concurrency.max(1)),
            timeout,
        }
    }
}

/// Runs `$call` on the inner runtime while holding a permit, within the
/// call timeout (plus `$extra`) once it has its permit.
macro_rules! limited {
    ($self:ident, $name:literal, $call:expr) => {
        limited!($self, $name, $call, Duration::ZERO)
    };
    ($self:ident, $name:literal, $call:expr, $extra:expr) => {{
        let _permit = $self
            .permits
            .acquire()
            .await
            .expect("the semaphore is never closed");
        let limit = $self.timeout + $extra;
        match tokio::time::timeout(limit, $call).await {
            Ok(outcome) => outcome,
            Err(_) => Err(RuntimeError::Unavailable {
                call: $name.to_owned(),
                message: format!(
                    "Docker did not answer within {limit:?} (--docker-timeout); is the daemon overloaded or stuck?"
                ),
            }),
        }
    }};
}

#[async_trait]
impl<R: Runtime> Runtime for Limited<R> {
    async fn image(&self, image: &str) -> RuntimeResult<Option<ImageInfo>> {
        limited!(self, "docker image inspect", self.inner.image(image))
    }
    async fn create(&self, params: &CreateParams) -> RuntimeResult<String> {
        limited!(self, "docker create", self.inner.create(params))
    }
    async fn start(&self, id: &str) -> RuntimeResult<()> {
        limited!(self, "docker start", self.inner.start(id))
    }
    async fn stop(&self, id: &str, grace_secs: i64) -> RuntimeResult<()> {
        limited!(
            self,
            "docker stop",
            self.inner.stop(id, grace_secs),
            Duration::from_secs(grace_secs.max(0) as u64)
        )
    }
    async fn pause(&self, id: &str) -> RuntimeResult<()> {
        limited!(self, "docker pause", self.inner.pause(id))
    }
    async fn unpause(&self, id: &str) -> RuntimeResult<()> {
        limited!(self, "docker unpause", self.inner.unpause(id))
    }
    async fn remove(&self, id: &str) -> RuntimeResult<()> {
        limited!(self, "docker rm", self.inner.remove(id))
    }
    async fn remove_volumes(&self, volumes: &[String]) -> RuntimeResult<()> {
        limited!(self, "docker volume rm", self.inner.remove_volumes(volumes))
    }
    async fn remove_tenant(&self, tenant: &str) -> RuntimeResult<()> {
        limited!(self, "docker network rm", self.inner.remove_tenant(tenant))
    }
    async fn inspect(&self, id: &str) -> RuntimeResult<Option<Inspection>> {
        limited!(self, "docker inspect", self.inner.inspect(id))
    }
    async fn list_labelled(&self, label: &str, value: &str) -> RuntimeResult<Vec<Managed>> {
        limited!(self, "docker ps", self.inner.list_labelled(label, value))
    }
    fn events(
        &self,
        label: &str,
        value: &str,
        since: SystemTime,
    ) -> BoxStream<'static, RuntimeResult<EngineEvent>> {
        self.inner.events(label, value, since)
    }
    async fn volume_dir(&self, volume: &str) -> RuntimeResult<Option<PathBuf>> {
        limited!(self, "docker volume inspect", self.inner.volume_dir(volume))
    }
    async fn storage(&self) -> RuntimeResult<StorageInfo> {
        limited!(self, "docker info", self.inner.storage())
    }
    async fn list_labelled_volumes(&self, label: &str, value: &str) -> RuntimeResult<Vec<Managed>> {
        limited!(
            self,
            "docker volume ls",
            self.inner.list_labelled_volumes(label, value)
        )
    }
    async fn probe(&self, upstream: SocketAddr, path: &str, require_success: bool) -> ProbeOutcome {
        self.inner.probe(upstream, path, require_success).await
    }

    async fn listening_ports(&self, id: &str) -> RuntimeResult<Option<Vec<u16>>> {
        limited!(self, "docker inspect", self.inner.listening_ports(id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::fake::{Call, FakeRuntime};

    #[tokio::test(start_paused = true)]
    async fn a_call_past_the_timeout_fails_as_unavailable_naming_the_call() {
        let fake = FakeRuntime::new();
        fake.delay(Call::Storage, Duration::from_secs(120));
        let limited = Limited::new(fake, 2, Duration::from_secs(60));
        match limited.storage().await {
            Err(RuntimeError::Unavailable { call, message }) => {
                assert_eq!(call, "docker info");
                assert!(message.contains("--docker-timeout"), "{message}");
            }
            other => panic!("expected Unavailable, got {other:?}"),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_stop_gets_its_grace_on_top_of_the_timeout() {
        let fake = FakeRuntime::new();
        fake.delay(Call::Stop, Duration::from_secs(65));
        let limited = Limited::new(fake, 2, Duration::from_secs(60));
        // Whatever the fake answers after its delay, it is not a timeout.
        let outcome = limited.stop("nobody", 10).await;
        assert!(
            !matches!(outcome, Err(RuntimeError::Unavailable { .. })),
            "{outcome:?}"
        );
    }
}
