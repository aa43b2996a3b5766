//! A `Runtime` that lets at most N Docker operations run at once
//! (`--docker-concurrency`), so a storm of wakes queues here instead of
//! overloading the daemon. The event stream is not limited: it is one
//! long-lived call.

use std::path::PathBuf;
use std::time::SystemTime;

use async_trait::async_trait;
use futures_util::stream::BoxStream;
use tokio::sync::Semaphore;

use super::{
    CreateParams, EngineEvent, ImageInfo, Inspection, Managed, Runtime, RuntimeResult, StorageInfo,
};

pub struct Limited<R> {
    inner: R,
    permits: Semaphore,
}

impl<R: Runtime> Limited<R> {
    pub fn new(inner: R, concurrency: usize) -> Self {
        Self {
            inner,
            permits: Semaphore::new(concurrency.max(1)),
        }
    }
}

/// Runs `$call` on the inner runtime while holding a permit.
macro_rules! limited {
    ($self:ident, $call:expr) => {{
        let _permit = $self
            .permits
            .acquire()
            .await
            .expect("the semaphore is never closed");
        $call.await
    }};
}

#[async_trait]
impl<R: Runtime> Runtime for Limited<R> {
    async fn image(&self, image: &str) -> RuntimeResult<Option<ImageInfo>> {
        limited!(self, self.inner.image(image))
    }
    async fn create(&self, params: &CreateParams) -> RuntimeResult<String> {
        limited!(self, self.inner.create(params))
    }
    async fn start(&self, id: &str) -> RuntimeResult<()> {
        limited!(self, self.inner.start(id))
    }
    async fn stop(&self, id: &str, grace_secs: i64) -> RuntimeResult<()> {
        limited!(self, self.inner.stop(id, grace_secs))
    }
    async fn remove(&self, id: &str) -> RuntimeResult<()> {
        limited!(self, self.inner.remove(id))
    }
    async fn remove_volumes(&self, volumes: &[String]) -> RuntimeResult<()> {
        limited!(self, self.inner.remove_volumes(volumes))
    }
    async fn inspect(&self, id: &str) -> RuntimeResult<Option<Inspection>> {
        limited!(self, self.inner.inspect(id))
    }
    async fn list_labelled(&self, label: &str, value: &str) -> RuntimeResult<Vec<Managed>> {
        limited!(self, self.inner.list_labelled(label, value))
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
        limited!(self, self.inner.volume_dir(volume))
    }
    async fn storage(&self) -> RuntimeResult<StorageInfo> {
        limited!(self, self.inner.storage())
    }
    async fn list_labelled_volumes(&self, label: &str, value: &str) -> RuntimeResult<Vec<Managed>> {
        limited!(self, self.inner.list_labelled_volumes(label, value))
    }
}
