//! Where archived snapshots are kept, behind one small trait: the data dir's `snapshots/`
//! (the default) or an S3-compatible object store (`--snapshots s3://bucket/prefix`).
//!
//! Either way an archive first writes its snapshot to a local file with `snapshot::write`
//! (at [`SnapshotStore::staging_path`]), then [`SnapshotStore::keep`]s it: in place for the
//! data dir, uploaded (and the local spool file deleted) for an object store. A restore reads
//! a local file that [`SnapshotStore::fetch`] made available and, for an object store,
//! checksum-verified while downloading, before anything is written into the container. The
//! name a snapshot is recorded under (the store row's `snapshot_file`) is all any node needs
//! to find it again.

mod local;
mod s3;
#[cfg(test)]
mod tests;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use local::LocalSnapshots;
pub use s3::{S3Snapshots, S3Tuning};

use crate::domain::{SnapshotRecord, UnixMillis};
use crate::snapshot::{Progress, SnapshotError, SnapshotInfo};

/// Where `--snapshots` says snapshots go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SnapshotLocation {
    /// `<data-dir>/snapshots/` (no `--snapshots`).
    DataDir,
    /// `s3://bucket/prefix`: objects `<prefix>/<node>/<container>-<ms>.snap.zst`.
    S3 { bucket: String, prefix: String },
}

impl std::str::FromStr for SnapshotLocation {
    type Err = String;

    /// `s3://bucket` or `s3://bucket/some/prefix`.
    fn from_str(url: &str) -> Result<Self, String> {
        let usage = "expected s3://bucket or s3://bucket/prefix (leave --snapshots unset to keep snapshots in the data dir)";
        let Some(rest) = url.strip_prefix("s3://") else {
            return Err(format!("{url:?}: {usage}"));
        };
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        let bucket_ok = (3..=63).contains(&bucket.len())
            && bucket
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.');
        if !bucket_ok {
            return Err(format!(
                "{url:?}: bucket {bucket:?} must be 3 to 63 lower-case letters, digits, '-' or '.'; {usage}"
            ));
        }
        let prefix = prefix.trim_matches('/');
        let prefix_ok = prefix.len() <= 512
            && prefix.split('/').all(|segment| {
                prefix.is_empty()
                    || (!segment.is_empty()
                        && segment != "."
                        && segment != ".."
                        && segment.bytes().all(|b| b.is_ascii_graphic() && b != b'\\'))
            });
        if !prefix_ok {
            return Err(format!(
                "{url:?}: the prefix must be up to 512 printable ASCII characters in segments separated by single '/', none of them '.' or '..'; {usage}"
            ));
        }
        Ok(SnapshotLocation::S3 {
            bucket: bucket.to_owned(),
            prefix: prefix.to_owned(),
        })
    }
}

/// Where snapshots are kept. Every call is bounded in time; errors name the file or the
/// bucket and key, and what to check.
#[async_trait::async_trait]
pub trait SnapshotStore: Send + Sync + std::fmt::Debug {
    /// Where snapshots go, for logs: a directory, or `s3://bucket/prefix`.
    fn describe(&self) -> String;

    /// The local directory archives write their snapshots in: the snapshots themselves, or
    /// spool files on their way to (or from) the object store.
    fn local_dir(&self) -> &Path;

    /// The name a new snapshot of `container` made at `created_at` is recorded under.
    fn new_name(&self, container: &str, created_at: UnixMillis) -> String;

    /// Where `snapshot::write` writes the snapshot to be recorded as `name`.
    fn staging_path(&self, name: &str) -> PathBuf;

    /// Keeps the snapshot written at [`Self::staging_path`]: once this returns, it is durable
    /// where snapshots are kept and may be recorded. On an error nothing is kept (the staging
    /// file is gone too).
    async fn keep(&self, name: &str, info: &SnapshotInfo) -> Result<(), SnapshotError>;

    /// A local file holding the recorded snapshot, ready to restore. Refuses a snapshot that
    /// is missing, or (when it is downloaded) whose size or SHA-256 differs from the record.
    /// `progress` is told the bytes downloaded so far.
    async fn fetch(
        &self,
        snapshot: &SnapshotRecord,
        progress: Progress<'_>,
    ) -> Result<Fetched, SnapshotError>;

    /// Deletes the snapshot recorded as `name`; one already gone is no error.
    async fn delete(&self, name: &str) -> Result<(), SnapshotError>;

    /// Whether the snapshot is known to be missing without a network call (start-up marks
    /// such a container failed); `false` when only a network call could tell.
    fn known_missing(&self, name: &str) -> bool;

    /// Start-up: removes what interrupted archives and restores left behind (partial and spool
    /// files, unfinished uploads) and this node's snapshots that no name in `referenced`
    /// records. Returns what it removed, for the log; failures are logged, never fatal.
    async fn clean_up(&self, referenced: &HashSet<String>) -> Vec<String>;
}

/// A snapshot as a local file, for as long as a restore reads it.
#[derive(Debug)]
pub struct Fetched {
    pub path: PathBuf,
    /// Its SHA-256 was checked against the record as it was downloaded: the restore need not
    /// read it once more first.
    pub verified: bool,
    /// A private download, deleted when this is dropped.
    download: bool,
}

impl Fetched {
    /// The kept file itself, to be checked by the restore.
    fn in_place(path: PathBuf) -> Self {
        Fetched {
            path,
            verified: false,
            download: false,
        }
    }

    /// A download whose checksum was verified, deleted when dropped.
    fn downloaded(path: PathBuf) -> Self {
        Fetched {
            path,
            verified: true,
            download: true,
        }
    }
}

impl Drop for Fetched {
    fn drop(&mut self) {
        if self.download {
            if let Err(e) = std::fs::remove_file(&self.path) {
                if e.kind() != std::io::ErrorKind::NotFound {
                    tracing::warn!(path = %self.path.display(), error = %e, "cannot remove a downloaded snapshot; start-up removes it");
                }
            }
        }
    }
}

/// Opens the snapshot store `location` says, with `local_dir` for local files (created
/// before) and `node` naming this node's objects.
pub fn open(
    location: &SnapshotLocation,
    local_dir: PathBuf,
    node: &str,
    min_free_disk: u64,
) -> Result<Arc<dyn SnapshotStore>, String> {
    Ok(match location {
        SnapshotLocation::DataDir => Arc::new(LocalSnapshots::new(local_dir)),
        SnapshotLocation::S3 { bucket, prefix } => {
            let builder = object_store::aws::AmazonS3Builder::from_env();
            let tuning = S3Tuning {
                min_free_disk,
                ..S3Tuning::default()
            };
            Arc::new(S3Snapshots::new(
                builder, bucket, prefix, node, local_dir, tuning,
            )?)
        }
    })
}

fn random_suffix() -> String {
    crate::token::random_hex(8)
}
