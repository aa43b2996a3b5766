//! Snapshots as files in the data dir's `snapshots/` (the default): `snapshot::write` already
//! leaves each one fsynced and renamed into place, so keeping one is nothing more.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use super::{Fetched, SnapshotStore};
use crate::domain::{SnapshotRecord, UnixMillis};
use crate::snapshot::{self, Progress, SnapshotError, SnapshotInfo};

#[derive(Debug)]
pub struct LocalSnapshots {
    dir: PathBuf,
}

impl LocalSnapshots {
    pub fn new(dir: PathBuf) -> Self {
        LocalSnapshots { dir }
    }
}

#[async_trait::async_trait]
impl SnapshotStore for LocalSnapshots {
    fn describe(&self) -> String {
        self.dir.display().to_string()
    }

    fn local_dir(&self) -> &Path {
        &self.dir
    }

    fn new_name(&self, container: &str, created_at: UnixMillis) -> String {
        format!("{container}-{created_at}.snap.zst")
    }

    fn staging_path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    async fn keep(&self, _name: &str, _info: &SnapshotInfo) -> Result<(), SnapshotError> {
        Ok(())
    }

    async fn fetch(
        &self,
        snapshot: &SnapshotRecord,
        _progress: Progress<'_>,
    ) -> Result<Fetched, SnapshotError> {
        let path = self.dir.join(&snapshot.file);
        if !path.is_file() {
            return Err(SnapshotError::Missing {
                what: snapshot.file.clone(),
                why: format!("no such file in {}", self.dir.display()),
            });
        }
        Ok(Fetched::in_place(path))
    }

    async fn delete(&self, name: &str) -> Result<(), SnapshotError> {
        let path = self.dir.join(name);
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(SnapshotError::Io { path, source: e }),
        }
    }

    fn known_missing(&self, name: &str) -> bool {
        !self.dir.join(name).is_file()
    }

    async fn clean_up(&self, referenced: &HashSet<String>) -> Vec<String> {
        let mut removed = Vec::new();
        match snapshot::remove_partial_files(&self.dir) {
            Ok(partial) => removed.extend(partial.iter().map(|p| p.display().to_string())),
            Err(e) => {
                tracing::warn!(dir = %self.dir.display(), error = %e, "cannot clean partial snapshots")
            }
        }
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return removed;
        };
        for entry in entries.flatten() {
            let file = entry.file_name();
            let Some(file) = file.to_str() else { continue };
            if file.ends_with(".snap.zst") && !referenced.contains(file) {
                match self.delete(file).await {
                    Ok(()) => removed.push(file.to_owned()),
                    Err(e) => {
                        tracing::warn!(file, error = %e, "cannot remove a snapshot no container refers to")
                    }
                }
            }
        }
        removed
    }
}
