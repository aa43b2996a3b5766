//! Moving a snapshot's bytes: the upload of a spool file (one PUT, or a multipart upload of
//! bounded parts, a bounded number at once, each read from the file as it goes) and the
//! download of an object in ranges, each streamed to its offset of a private file.

use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use futures_util::{StreamExt, TryStreamExt};
use object_store::multipart::MultipartStore;
use object_store::path::Path as ObjectPath;
use object_store::{GetOptions, GetRange, MultipartId, ObjectStore, ObjectStoreExt, PutPayload};

use super::{chain, io, S3Snapshots, UploadMarker};
use crate::snapshot::{Progress, SnapshotError};

impl S3Snapshots {
    /// Uploads the spool file `file` of `size` bytes to `path`.
    pub(in crate::snapshot_store) async fn upload(
        &self,
        file: &Path,
        size: u64,
        path: &ObjectPath,
        name: &str,
    ) -> Result<(), SnapshotError> {
        let key = path.as_ref();
        let part = self.part_bytes(size);
        let source = Arc::new(std::fs::File::open(file).map_err(|e| io(file, e))?);
        if size <= part {
            let body = read_at(&source, file, 0, size).await?;
            self.client
                .put(path, PutPayload::from(body))
                .await
                .map_err(|e| self.remote("PUT", key, &e))?;
            return Ok(());
        }
        let id = self
            .client
            .create_multipart(path)
            .await
            .map_err(|e| self.remote("starting a multipart upload of", key, &e))?;
        let marker = self.marker_file(name);
        let noted = serde_json::to_vec(&UploadMarker {
            key: key.to_owned(),
            upload_id: id.clone(),
        })
        .expect("the marker serializes");
        if let Err(e) = std::fs::write(&marker, noted) {
            if !self.abort(path, &id).await {
                tracing::warn!(key, upload_id = %id, "an unfinished multipart upload with no marker: the bucket keeps its parts until a lifecycle rule (AbortIncompleteMultipartUpload) drops them");
            }
            return Err(io(&marker, e));
        }
        let parts = size.div_ceil(part);
        let uploaded = futures_util::stream::iter(0..parts)
            .map(|index| {
                let source = source.clone();
                let id = id.clone();
                async move {
                    let start = index * part;
                    let body = read_at(&source, file, start, part.min(size - start)).await?;
                    self.client
                        .put_part(path, &id, index as usize, PutPayload::from(body))
                        .await
                        .map_err(|e| self.remote(&format!("uploading part {index} of"), key, &e))
                }
            })
            .buffered(self.tuning.concurrency.max(1))
            .try_collect::<Vec<_>>()
            .await;
        let completed = match uploaded {
            Ok(parts) => self
                .client
                .complete_multipart(path, &id, parts)
                .await
                .map(|_| ())
                .map_err(|e| self.remote("completing the multipart upload of", key, &e)),
            Err(e) => Err(e),
        };
        // The marker stays while the upload may still hold parts: start-up aborts it.
        if completed.is_ok() || self.abort(path, &id).await {
            let _ = std::fs::remove_file(&marker);
        }
        completed
    }

    /// Aborts a multipart upload; whether it is gone. A failure is logged (start-up tries
    /// again while the marker is there).
    pub(super) async fn abort(&self, path: &ObjectPath, id: &MultipartId) -> bool {
        match self.client.abort_multipart(path, id).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => true,
            Err(e) => {
                tracing::warn!(key = %path, error = %chain(&e), "cannot abort an unfinished multipart upload; the next start-up tries again");
                false
            }
        }
    }

    /// Downloads `path` (`size` bytes) into the new file `into`: ranges of a part's size, a
    /// few at once, each streamed to its offset as it arrives (what is in memory is the
    /// chunks in flight, not the ranges).
    pub(super) async fn download(
        &self,
        path: &ObjectPath,
        size: u64,
        into: &Path,
        progress: Progress<'_>,
    ) -> Result<(), SnapshotError> {
        let key = path.as_ref();
        let downloaded = &AtomicU64::new(0);
        let part = self.part_bytes(size);
        let out = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(into)
            .map_err(|e| io(into, e))?;
        let out = Arc::new(out);
        futures_util::stream::iter(0..size.div_ceil(part))
            .map(|index| {
                let start = index * part;
                let end = (start + part).min(size);
                let out = out.clone();
                async move {
                    let failed = |e: &object_store::Error| {
                        self.remote(&format!("GET bytes {start}..{end} of"), key, e)
                    };
                    let options = GetOptions {
                        range: Some(GetRange::Bounded(start..end)),
                        ..GetOptions::default()
                    };
                    let got = self.client.get_opts(path, options).await.map_err(|e| failed(&e))?;
                    let mut body = got.into_stream();
                    let mut at = start;
                    while let Some(chunk) = body.next().await {
                        let chunk = chunk.map_err(|e| failed(&e))?;
                        if at + chunk.len() as u64 > end {
                            break;
                        }
                        let (out, into_path, offset) = (out.clone(), into.to_owned(), at);
                        let len = chunk.len() as u64;
                        at += len;
                        tokio::task::spawn_blocking(move || out.write_all_at(&chunk, offset))
                            .await
                            .map_err(|e| io(&into_path, std::io::Error::other(e)))?
                            .map_err(|e| io(&into_path, e))?;
                        progress(downloaded.fetch_add(len, Ordering::Relaxed) + len);
                    }
                    if at != end {
                        return Err(SnapshotError::Remote(format!(
                            "object store: GET bytes {start}..{end} of {} gave {} bytes; the object changed while it was read",
                            self.url(key),
                            at - start
                        )));
                    }
                    Ok(())
                }
            })
            .buffer_unordered(self.tuning.concurrency.max(1))
            .try_collect::<()>()
            .await
    }
}

/// Reads `len` bytes of `source` at `offset` off the async threads.
async fn read_at(
    source: &Arc<std::fs::File>,
    path: &Path,
    offset: u64,
    len: u64,
) -> Result<Bytes, SnapshotError> {
    let source = source.clone();
    let read = tokio::task::spawn_blocking(move || {
        let mut buf = vec![0u8; len as usize];
        source.read_exact_at(&mut buf, offset).map(|()| buf)
    })
    .await
    .map_err(|e| io(path, std::io::Error::other(e)))?;
    read.map(Bytes::from).map_err(|e| io(path, e))
}
