//! Free disk: what a snapshot needs on the filesystems it writes to, checked before the first
//! byte is written and again as content flows, so that neither an archive nor a restore fills
//! a filesystem past `--min-free-disk`.

use std::collections::HashSet;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::{io_err, SnapshotError, Tree};

/// Content bytes between two checks of the free space while writing.
const CHECK_EVERY: u64 = 64 << 20;
/// What one entry adds to an archive beyond its content: a header, often a PAX header.
const ENTRY_OVERHEAD: u64 = 1024;

/// Bytes an unprivileged writer may still use on the filesystem holding `path` (or, if `path`
/// does not exist yet, its nearest existing ancestor).
pub(super) fn available(path: &Path) -> Result<u64, SnapshotError> {
    let at = existing_ancestor(path);
    let st = rustix::fs::statvfs(at).map_err(|e| io_err(at, e.into()))?;
    Ok(st.f_bavail.saturating_mul(st.f_frsize))
}

/// `path` or the nearest ancestor that exists.
pub(super) fn existing_ancestor(path: &Path) -> &Path {
    path.ancestors()
        .find(|p| !p.as_os_str().is_empty() && fs::symlink_metadata(p).is_ok())
        .unwrap_or(Path::new("."))
}

/// Refuses unless the filesystem of `path` has `needed` bytes free besides `min_free`.
pub(super) fn ensure(
    path: &Path,
    needed: u64,
    min_free: u64,
    what: &str,
) -> Result<(), SnapshotError> {
    let available = available(path)?;
    let total = needed.saturating_add(min_free);
    if available < total {
        return Err(SnapshotError::NoSpace {
            path: path.to_path_buf(),
            needed: total,
            available,
            why: if needed == 0 {
                format!("{} kept free by --min-free-disk", human(min_free))
            } else {
                format!(
                    "{what}, {}, plus {} kept free by --min-free-disk",
                    human(needed),
                    human(min_free)
                )
            },
        });
    }
    Ok(())
}

/// Disk space a tree takes: the blocks allocated to its entries (each inode once, however many
/// names it has) and the number of entries.
pub(super) fn allocated(tree: &Tree) -> Result<(u64, u64), SnapshotError> {
    let mut bytes = 0u64;
    let mut entries = 0u64;
    let mut seen = HashSet::new();
    let mut stack = vec![tree.dir.clone()];
    while let Some(path) = stack.pop() {
        let meta = fs::symlink_metadata(&path).map_err(|e| io_err(&path, e))?;
        entries += 1;
        if meta.nlink() > 1 && !meta.is_dir() && !seen.insert((meta.dev(), meta.ino())) {
            continue;
        }
        bytes = bytes.saturating_add(meta.blocks().saturating_mul(512));
        if meta.is_dir() {
            for entry in fs::read_dir(&path).map_err(|e| io_err(&path, e))? {
                stack.push(entry.map_err(|e| io_err(&path, e))?.path());
            }
        }
    }
    Ok((bytes, entries))
}

/// The most an archive of trees this size can take: their blocks and a header per entry (zstd
/// adds a few bytes per 128 KiB even to data it cannot compress).
pub(super) fn archive_estimate(bytes: u64, entries: u64) -> u64 {
    bytes
        .saturating_add(entries.saturating_mul(ENTRY_OVERHEAD))
        .saturating_add(bytes / 1024)
}

/// Keeps checking, as content is written, that each watched filesystem keeps `min_free`.
#[derive(Debug, Default)]
pub(super) struct Watch {
    /// One path on each filesystem written to.
    paths: Vec<PathBuf>,
    min_free: u64,
    since_check: u64,
}

impl Watch {
    pub(super) fn new(paths: Vec<PathBuf>, min_free: u64) -> Self {
        Watch {
            paths,
            min_free,
            since_check: 0,
        }
    }

    /// Counts `n` more bytes written; every [`CHECK_EVERY`] bytes, asks the filesystems.
    pub(super) fn wrote(&mut self, n: u64) -> Result<(), SnapshotError> {
        self.since_check += n;
        if self.since_check < CHECK_EVERY || self.paths.is_empty() {
            return Ok(());
        }
        self.since_check = 0;
        for path in &self.paths {
            ensure(path, 0, self.min_free, "")?;
        }
        Ok(())
    }
}

/// A byte count for people: `1.5 GiB`, `12.0 MiB`, `512 bytes`.
pub(super) fn human(bytes: u64) -> String {
    const UNITS: [(&str, u64); 4] = [
        ("TiB", 1 << 40),
        ("GiB", 1 << 30),
        ("MiB", 1 << 20),
        ("KiB", 1 << 10),
    ];
    for (unit, size) in UNITS {
        if bytes >= size {
            return format!("{:.1} {unit}", bytes as f64 / size as f64);
        }
    }
    format!("{bytes} bytes")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_watch_asks_every_64_mib_and_refuses_past_the_reserve() {
        let dir = std::env::temp_dir();
        let free = available(&dir).unwrap();
        let mut watch = Watch::new(vec![dir.clone()], free + (1 << 40));
        watch.wrote(CHECK_EVERY - 1).unwrap();
        match watch.wrote(1) {
            Err(SnapshotError::NoSpace { path, needed, .. }) => {
                assert_eq!((path, needed), (dir.clone(), free + (1 << 40)));
            }
            other => panic!("expected NoSpace, got {other:?}"),
        }
        let mut roomy = Watch::new(vec![dir], 0);
        roomy.wrote(3 * CHECK_EVERY).unwrap();
    }

    #[test]
    fn sizes_read_like_people_write_them() {
        assert_eq!(human(512), "512 bytes");
        assert_eq!(human(3 << 29), "1.5 GiB");
        assert_eq!(human(2 << 40), "2.0 TiB");
    }
}
