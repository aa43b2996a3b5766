//! Start-up's clean-up of what archives and restores cut short by a crash left: spool files,
//! downloads, unfinished multipart uploads (named by their marker files), and this node's
//! objects that no row records.

use std::collections::HashSet;

use futures_util::TryStreamExt;
use object_store::multipart::MultipartStore;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt};

use super::{chain, S3Snapshots, UploadMarker, UPLOAD_MARKER};
use crate::snapshot;

impl S3Snapshots {
    /// Removes leftovers in the spool dir: partial writes, spool files, downloads, and the
    /// unfinished uploads their markers name.
    pub(super) async fn clean_spool(
        &self,
        referenced: &HashSet<String>,
        removed: &mut Vec<String>,
    ) {
        match snapshot::remove_partial_files(&self.spool) {
            Ok(partial) => removed.extend(partial.iter().map(|p| p.display().to_string())),
            Err(e) => {
                tracing::warn!(dir = %self.spool.display(), error = %e, "cannot clean partial snapshots")
            }
        }
        let Ok(entries) = std::fs::read_dir(&self.spool) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let Some(file) = entry.file_name().to_str().map(str::to_owned) else {
                continue;
            };
            if file.ends_with(UPLOAD_MARKER) {
                let marker = std::fs::read(&path)
                    .ok()
                    .and_then(|raw| serde_json::from_slice::<UploadMarker>(&raw).ok());
                if let Some(marker) = marker {
                    let Ok(object) = ObjectPath::parse(&marker.key) else {
                        continue;
                    };
                    match self
                        .client
                        .abort_multipart(&object, &marker.upload_id)
                        .await
                    {
                        Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                        Err(e) => {
                            tracing::warn!(key = %marker.key, error = %chain(&e), "cannot abort an unfinished multipart upload yet; the next start-up tries again");
                            continue;
                        }
                    }
                    removed.push(format!(
                        "unfinished upload {} of {}",
                        marker.upload_id,
                        self.url(&marker.key)
                    ));
                }
                let _ = std::fs::remove_file(&path);
            } else if file.ends_with(".snap.zst") && !referenced.contains(&file) {
                // A spool file whose upload never finished: never recorded. (A snapshot
                // from before the object store is recorded under its plain name: kept.)
                if std::fs::remove_file(&path).is_ok() {
                    removed.push(path.display().to_string());
                }
            }
        }
    }

    /// Deletes this node's objects no name in `referenced` records.
    pub(super) async fn clean_objects(
        &self,
        referenced: &HashSet<String>,
        removed: &mut Vec<String>,
    ) {
        let mine = match ObjectPath::parse(self.key(&self.node)) {
            Ok(path) => path,
            Err(_) => return,
        };
        let listed: Result<Vec<_>, _> = self.client.list(Some(&mine)).try_collect().await;
        let objects = match listed {
            Ok(objects) => objects,
            Err(e) => {
                tracing::warn!(error = %self.remote("LIST", mine.as_ref(), &e), "cannot look for snapshots no container refers to; the next start-up tries again");
                return;
            }
        };
        let strip = if self.prefix.is_empty() {
            0
        } else {
            self.prefix.len() + 1
        };
        for object in objects {
            let key = object.location.as_ref();
            let Some(name) = key.get(strip..) else {
                continue;
            };
            if !name.ends_with(".snap.zst") || referenced.contains(name) {
                continue;
            }
            match self.client.delete(&object.location).await {
                Ok(()) => removed.push(self.url(key)),
                Err(e) => {
                    tracing::warn!(error = %self.remote("DELETE", key, &e), "cannot remove a snapshot no container refers to")
                }
            }
        }
    }
}
