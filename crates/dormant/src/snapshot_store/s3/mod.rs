//! Snapshots as objects in an S3-compatible object store (`--snapshots s3://bucket/prefix`),
//! through `object_store`. Endpoint, region and credentials come from the usual `AWS_*`
//! environment variables (`AWS_ENDPOINT_URL`, `AWS_REGION`, `AWS_ACCESS_KEY_ID`,
//! `AWS_SECRET_ACCESS_KEY`, `AWS_ALLOW_HTTP` for a plain-http server).
//!
//! An archive writes its snapshot to a spool file in the local snapshot dir, uploads it (one
//! PUT, or a multipart upload of bounded parts, a bounded number at once, read from the file
//! as they go), checks the object's size, then deletes the spool file: no whole snapshot is
//! ever in memory. A restore downloads the object in ranges, a few at once, each streamed
//! into a private spool file at its offset, then hashes the file, and refuses it before any
//! container is made unless its size and SHA-256 are the record's. Every request has a
//! timeout and is retried a bounded number of times when the failure is transient
//! (object_store's retry policy).
//!
//! Objects are `<prefix>/<node>/<container>-<ms>.snap.zst`; the store row records
//! `<node>/<container>-<ms>.snap.zst`, so any node configured with the same URL finds it.
//! Crash safety: an upload in flight is noted in a marker file beside its spool file first;
//! start-up aborts the multipart uploads such markers name, deletes the spool files, and
//! deletes this node's objects that no row records (uploaded, but the crash came before they
//! were recorded). Only this node's own objects are ever listed or deleted at start-up.
//!
//! Snapshots archived before `--snapshots s3://` was set are recorded under a plain file name
//! (no node segment) and stay in the local snapshot dir: they are restored and deleted there.

mod cleanup;
mod transfer;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use object_store::aws::{AmazonS3, AmazonS3Builder, AmazonS3ConfigKey};
use object_store::client::ClientConfigKey;
use object_store::path::Path as ObjectPath;
use object_store::{BackoffConfig, ObjectStoreExt, RetryConfig};

use super::{random_suffix, Fetched, SnapshotStore};
use crate::domain::{SnapshotRecord, UnixMillis};
use crate::snapshot::{self, Progress, SnapshotError, SnapshotInfo};

/// S3 refuses more parts than this in one upload.
const MAX_PARTS: u64 = 10_000;
/// S3 refuses smaller parts (but the last).
const MIN_PART: u64 = 5 << 20;
/// Suffix of the marker file of an upload in flight, beside its spool file.
const UPLOAD_MARKER: &str = ".upload";

/// Sizes, concurrency and patience of the object store calls.
#[derive(Debug, Clone)]
pub struct S3Tuning {
    /// Bytes of one uploaded part and of one downloaded range (raised for a snapshot that
    /// would need more than 10,000 parts). An upload holds at most this times `concurrency`
    /// in memory; a download streams each range to the file as it comes.
    pub part_bytes: u64,
    /// Parts (or ranges) in flight at once.
    pub concurrency: usize,
    /// Longest one request may take, its body included.
    pub request_timeout: Duration,
    /// Longest connecting may take.
    pub connect_timeout: Duration,
    /// Tries after the first of a request that failed transiently (5xx, a dropped
    /// connection, a timeout).
    pub retries: usize,
    /// First pause between two tries; it doubles, up to 5 s.
    pub first_backoff: Duration,
    /// Bytes a download must leave free on the local disk (`--min-free-disk`).
    pub min_free_disk: u64,
}

impl Default for S3Tuning {
    fn default() -> Self {
        S3Tuning {
            part_bytes: 8 << 20,
            concurrency: 4,
            request_timeout: Duration::from_secs(120),
            connect_timeout: Duration::from_secs(5),
            retries: 4,
            first_backoff: Duration::from_millis(200),
            min_free_disk: 0,
        }
    }
}

#[derive(Debug)]
pub struct S3Snapshots {
    client: Arc<AmazonS3>,
    bucket: String,
    /// Without leading or trailing '/'; may be empty.
    prefix: String,
    node: String,
    /// Spool files, download files and upload markers.
    spool: PathBuf,
    tuning: S3Tuning,
}

/// An upload in flight, as its marker file records it.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct UploadMarker {
    key: String,
    upload_id: String,
}

impl S3Snapshots {
    /// A store in `bucket` under `prefix`, for node `node`, spooling in `spool`. `builder`
    /// holds the endpoint, region and credentials (from the environment in `serve`).
    pub fn new(
        builder: AmazonS3Builder,
        bucket: &str,
        prefix: &str,
        node: &str,
        spool: PathBuf,
        tuning: S3Tuning,
    ) -> Result<Self, String> {
        // reqwest's rustls takes the process's crypto provider: ring, like the rest of
        // dormant's TLS. Installing it twice is harmless (the first one stays).
        let _ = rustls::crypto::ring::default_provider().install_default();
        let retry = RetryConfig {
            backoff: BackoffConfig {
                init_backoff: tuning.first_backoff,
                max_backoff: Duration::from_secs(5),
                base: 2.0,
            },
            max_retries: tuning.retries,
            retry_timeout: tuning.request_timeout / 2,
        };
        let client = builder
            .with_bucket_name(bucket)
            .with_config(
                AmazonS3ConfigKey::Client(ClientConfigKey::Timeout),
                humantime::format_duration(tuning.request_timeout).to_string(),
            )
            .with_config(
                AmazonS3ConfigKey::Client(ClientConfigKey::ConnectTimeout),
                humantime::format_duration(tuning.connect_timeout).to_string(),
            )
            .with_retry(retry)
            .build()
            .map_err(|e| {
                format!(
                    "cannot set up the object store for s3://{bucket}/{prefix}: {}; set AWS_REGION (and AWS_ENDPOINT_URL for a server other than AWS), AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY",
                    chain(&e)
                )
            })?;
        Ok(S3Snapshots {
            client: Arc::new(client),
            bucket: bucket.to_owned(),
            prefix: prefix.trim_matches('/').to_owned(),
            node: node.to_owned(),
            spool,
            tuning,
        })
    }

    fn key(&self, name: &str) -> String {
        if self.prefix.is_empty() {
            name.to_owned()
        } else {
            format!("{}/{name}", self.prefix)
        }
    }

    pub(in crate::snapshot_store) fn object_path(
        &self,
        name: &str,
    ) -> Result<ObjectPath, SnapshotError> {
        let key = self.key(name);
        ObjectPath::parse(&key).map_err(|e| {
            SnapshotError::Remote(format!(
                "snapshot name {name:?} makes no valid object key {key:?}: {e}"
            ))
        })
    }

    fn url(&self, key: &str) -> String {
        format!("s3://{}/{key}", self.bucket)
    }

    /// A failed call, naming the bucket, the key and what to check.
    fn remote(&self, call: &str, key: &str, e: &object_store::Error) -> SnapshotError {
        SnapshotError::Remote(format!(
            "object store: {call} {} failed: {}; is the endpoint reachable (AWS_ENDPOINT_URL)? are the credentials set (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY) and allowed to read and write the bucket?",
            self.url(key),
            chain(e)
        ))
    }

    /// The spool file of `name` (its last segment, in the spool dir).
    fn spool_file(&self, name: &str) -> PathBuf {
        self.spool.join(name.rsplit('/').next().unwrap_or(name))
    }

    fn marker_file(&self, name: &str) -> PathBuf {
        let mut file = self.spool_file(name).into_os_string();
        file.push(UPLOAD_MARKER);
        PathBuf::from(file)
    }

    /// The local file of a snapshot archived before the object store was set (a name with no
    /// node segment).
    fn archived_before(&self, name: &str) -> Option<PathBuf> {
        (!name.contains('/')).then(|| self.spool.join(name))
    }

    /// Bytes per part for an object of `size`: at least the tuning's, and few enough parts.
    fn part_bytes(&self, size: u64) -> u64 {
        let fewest = size.div_ceil(MAX_PARTS).next_multiple_of(1 << 20);
        self.tuning.part_bytes.max(MIN_PART).max(fewest)
    }
}

#[async_trait::async_trait]
impl SnapshotStore for S3Snapshots {
    fn describe(&self) -> String {
        if self.prefix.is_empty() {
            format!("s3://{}", self.bucket)
        } else {
            format!("s3://{}/{}", self.bucket, self.prefix)
        }
    }

    fn local_dir(&self) -> &Path {
        &self.spool
    }

    fn new_name(&self, container: &str, created_at: UnixMillis) -> String {
        format!("{}/{container}-{created_at}.snap.zst", self.node)
    }

    fn staging_path(&self, name: &str) -> PathBuf {
        self.spool_file(name)
    }

    async fn keep(&self, name: &str, info: &SnapshotInfo) -> Result<(), SnapshotError> {
        let file = self.spool_file(name);
        let result = async {
            let path = self.object_path(name)?;
            let size = std::fs::metadata(&file).map_err(|e| io(&file, e))?.len();
            if size != info.bytes {
                return Err(SnapshotError::Remote(format!(
                    "the spool file {} holds {size} bytes, the snapshot written {}; not uploaded",
                    file.display(),
                    info.bytes
                )));
            }
            self.upload(&file, size, &path, name).await?;
            let stored = self
                .client
                .head(&path)
                .await
                .map_err(|e| self.remote("HEAD", path.as_ref(), &e))?;
            if stored.size != size {
                let _ = self.client.delete(&path).await;
                return Err(SnapshotError::Remote(format!(
                    "object store: {} holds {} bytes after its upload, not {size}; deleted, the container stays as it was",
                    self.url(path.as_ref()),
                    stored.size
                )));
            }
            Ok(())
        }
        .await;
        if let Err(e) = std::fs::remove_file(&file) {
            if e.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!(path = %file.display(), error = %e, "cannot remove a snapshot's spool file; start-up removes it");
            }
        }
        result
    }

    async fn fetch(
        &self,
        snapshot: &SnapshotRecord,
        progress: Progress<'_>,
    ) -> Result<Fetched, SnapshotError> {
        if let Some(local) = self.archived_before(&snapshot.file) {
            if local.is_file() {
                return Ok(Fetched::in_place(local));
            }
        }
        let path = self.object_path(&snapshot.file)?;
        let key = path.as_ref();
        let meta = match self.client.head(&path).await {
            Ok(meta) => meta,
            Err(object_store::Error::NotFound { .. }) => {
                return Err(SnapshotError::Missing {
                    what: self.url(key),
                    why: "no such object in the bucket: was it deleted, or does this node use another --snapshots URL than the one that archived it?".into(),
                })
            }
            Err(e) => return Err(self.remote("HEAD", key, &e)),
        };
        if meta.size != snapshot.bytes {
            return Err(SnapshotError::ChecksumMismatch {
                path: PathBuf::from(self.url(key)),
                expected: format!("{} ({} bytes)", snapshot.sha256, snapshot.bytes),
                actual: format!("unknown ({} bytes)", meta.size),
            });
        }
        snapshot::ensure_room(
            &self.spool,
            snapshot.bytes,
            self.tuning.min_free_disk,
            "the snapshot's download",
        )?;
        let last = snapshot.file.rsplit('/').next().unwrap_or(&snapshot.file);
        let into = self
            .spool
            .join(format!("{last}.download.tmp-{}", random_suffix()));
        // Deleted on every path out, a failed one too.
        let fetched = Fetched::downloaded(into.clone());
        self.download(&path, meta.size, &into, progress).await?;
        let hashed = into.clone();
        let actual = tokio::task::spawn_blocking(move || snapshot::sha256_of(&hashed))
            .await
            .map_err(|e| io(&into, std::io::Error::other(e)))??;
        if !actual.eq_ignore_ascii_case(snapshot.sha256.trim()) {
            return Err(SnapshotError::ChecksumMismatch {
                path: PathBuf::from(self.url(key)),
                expected: snapshot.sha256.clone(),
                actual,
            });
        }
        Ok(fetched)
    }

    async fn delete(&self, name: &str) -> Result<(), SnapshotError> {
        if let Some(local) = self.archived_before(name) {
            match std::fs::remove_file(&local) {
                Ok(()) => return Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io(&local, e)),
            }
        }
        let path = self.object_path(name)?;
        match self.client.delete(&path).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.remote("DELETE", path.as_ref(), &e)),
        }
    }

    fn known_missing(&self, name: &str) -> bool {
        if let Some(local) = self.archived_before(name) {
            return !local.is_file();
        }
        // Asking the bucket about every archived container would make start-up cost grow
        // with what exists; a missing object fails its restore, saying so.
        false
    }

    async fn clean_up(&self, referenced: &HashSet<String>) -> Vec<String> {
        let mut removed = Vec::new();
        self.clean_spool(referenced, &mut removed).await;
        self.clean_objects(referenced, &mut removed).await;
        removed
    }
}

fn io(path: &Path, source: std::io::Error) -> SnapshotError {
    SnapshotError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// An error and its causes, on one line.
fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let told = cause.to_string();
        if !text.contains(&told) {
            text.push_str(": ");
            text.push_str(&told);
        }
        source = cause.source();
    }
    text
}
