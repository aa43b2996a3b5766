//! Byte streams around the archive: the SHA-256 of the compressed file (while writing it, and
//! over the whole file before a restore) and the meter of file content (progress reports and
//! free-space checks).

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::Path;

use sha2::{Digest, Sha256};

use super::space::Watch;
use super::{io_err, Progress, SnapshotError};

pub(super) fn sha256_file(path: &Path) -> Result<String, SnapshotError> {
    let mut file = File::open(path).map_err(|e| io_err(path, e))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => hasher.update(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(io_err(path, e)),
        }
    }
    Ok(hex(&hasher.finalize()))
}

pub(super) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Counts the compressed bytes on their way to the file and hashes them.
pub(super) struct Hashing<W> {
    pub inner: W,
    pub hasher: Sha256,
    pub bytes: u64,
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Content bytes processed: reported to the progress callback at most once per MiB, and the
/// free space of the filesystems written to checked as they grow.
pub(super) struct Meter<'a> {
    progress: Progress<'a>,
    watch: Watch,
    done: u64,
    reported: u64,
}

impl<'a> Meter<'a> {
    pub(super) fn new(progress: Progress<'a>, watch: Watch) -> Self {
        Meter {
            progress,
            watch,
            done: 0,
            reported: 0,
        }
    }
    /// Checks these filesystems from now on.
    pub(super) fn watch(&mut self, watch: Watch) {
        self.watch = watch;
    }
    pub(super) fn add(&mut self, n: u64) -> Result<(), SnapshotError> {
        self.done += n;
        if self.done - self.reported >= 1 << 20 {
            self.reported = self.done;
            (self.progress)(self.done);
        }
        self.watch.wrote(n)
    }
    pub(super) fn finish(&mut self) {
        if self.done != self.reported {
            self.reported = self.done;
            (self.progress)(self.done);
        }
    }
}
