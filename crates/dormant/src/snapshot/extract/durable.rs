//! Making a restore durable without flushing whole filesystems: each file's writeback starts as
//! soon as it is complete, files are fsynced in batches (by then their data is mostly written,
//! so one journal commit covers a batch), then every directory that gained an entry.
//!
//! `syncfs` would be simpler, but its latency grows with every dirty page on Docker's
//! filesystem, including other containers' and unrelated programs'.

use std::fs::File;
use std::path::{Path, PathBuf};

use rustix::fs::{fadvise, Advice};

use super::super::{io_err, SnapshotError};

/// Files kept open for the next batch of fsyncs.
const BATCH: usize = 256;

/// Written files not yet fsynced.
#[derive(Default)]
pub(super) struct Pending {
    files: Vec<(PathBuf, File)>,
}

impl Pending {
    /// Starts writing `file` back now and fsyncs it with its batch.
    pub(super) fn push(&mut self, path: &Path, file: File) -> Result<(), SnapshotError> {
        // POSIX_FADV_DONTNEED starts writeback of the dirty pages (and drops clean ones, which
        // a file just written has none of). A refusal only costs speed: fsync still follows.
        let _ = fadvise(&file, 0, None, Advice::DontNeed);
        self.files.push((path.to_path_buf(), file));
        if self.files.len() >= BATCH {
            self.flush()?;
        }
        Ok(())
    }

    /// Fsyncs every pending file.
    pub(super) fn flush(&mut self) -> Result<(), SnapshotError> {
        for (path, file) in self.files.drain(..) {
            file.sync_all().map_err(|e| io_err(&path, e))?;
        }
        Ok(())
    }
}

/// Fsyncs a directory, making its entries durable.
pub(super) fn sync_dir(dir: &Path) -> Result<(), SnapshotError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io_err(dir, e))
}
