//! Snapshots: what a user changed in a container (its overlay upper dir) and its volumes,
//! kept in one compressed, checksummed file while the container is archived.
//!
//! # Format
//!
//! A zstd-compressed tar. The first entry is `dormant-snapshot.json` (format version, tree
//! names, creation time). Every other entry is `<tree name>/<relative path>`, the tree's own
//! root being `<tree name>/`. Inside a tree the OCI layer conventions hold: a deleted path
//! `d/x` is an empty file `d/.wh.x`, a directory `d` hiding its lower contents holds an empty
//! file `d/.wh..wh..opq`. Long or non-ASCII names and xattrs (`SCHILY.xattr.<name>`) are PAX
//! records. Hard links are tar hard-link entries naming the first path of the inode. A file
//! with holes is a GNU PAX sparse 1.0 entry holding only its data (see `sparse`); GNU tar reads
//! and extracts all of it.
//!
//! # Disk
//!
//! Before writing, an archive checks that the snapshot dir's filesystem has room for the trees'
//! allocated blocks (the most the snapshot can take) plus `min_free_disk`; a restore checks each
//! target filesystem for the disk space its trees took when captured (recorded in the
//! manifest) plus `min_free_disk`. Both check again every 64 MiB of content. Short of room:
//! [`SnapshotError::NoSpace`], and nothing is kept.
//!
//! # Safety of restore
//!
//! Restore writes only beneath the target dirs, whatever the file holds: paths are checked,
//! no existing symlink is ever followed, devices are refused. The checksum is verified over the
//! whole file before anything is written. Sparse maps are bounded and checked: segments in
//! order, none overlapping, none past the file's apparent size.
//!
//! # Durability
//!
//! [`write`] returns once the snapshot is fsynced, renamed into place and its directory
//! fsynced. [`restore`] returns once everything is written, not yet durable: the snapshot
//! still holds it all, so the caller makes the trees durable with [`make_durable`] off its
//! request's path and deletes the snapshot only after that.

mod capture;
mod durable;
mod extract;
mod format;
mod fsops;
mod space;
mod sparse;
mod stream;
#[cfg(test)]
mod tests;

use std::fs::{self, File};
use std::io::{self, BufWriter};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

pub use durable::{make_durable, DurableStats};
use stream::{hex, sha256_file, Hashing, Meter};

/// One directory tree to capture or restore into, under a name in the snapshot
/// (`"rootfs"`, `"volumes/0"`, ...).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tree {
    pub name: String,
    pub dir: PathBuf,
    pub kind: TreeKind,
}

/// How a tree's contents are read and written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TreeKind {
    /// A container's overlay upper dir: whiteouts and opaque markers are translated.
    OverlayUpper,
    /// A volume's `_data` dir: copied as is.
    Plain,
}

/// What [`write`] produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotInfo {
    /// Size of the compressed file.
    pub bytes: u64,
    /// Filesystem entries written (directories, files, links, whiteouts, ...).
    pub files: u64,
    /// Lower-case hex SHA-256 of the compressed file.
    pub sha256: String,
}

/// What [`restore`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RestoreStats {
    /// Filesystem entries restored (directories, files, links, whiteouts, ...).
    pub files: u64,
    /// Bytes of file content written.
    pub content_bytes: u64,
}

/// Progress callback: bytes of file content processed so far.
pub type Progress<'a> = &'a (dyn Fn(u64) + Sync);

/// Settings of a [`write`] or [`restore`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Options {
    /// Bytes that must stay free on every filesystem written to, besides what the snapshot
    /// needs (`--min-free-disk`).
    pub min_free_disk: u64,
}

/// Why a snapshot could not be written or restored.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: io::Error },
    #[error(
        "snapshot {} is damaged: its SHA-256 is {actual}, expected {expected}; \
         restore it from a backup or discard it",
        path.display()
    )]
    ChecksumMismatch {
        path: PathBuf,
        expected: String,
        actual: String,
    },
    #[error("{0}")]
    Corrupt(String),
    #[error(
        "snapshot {}: refusing entry {entry:?}: {why}; nothing is written outside the target",
        path.display()
    )]
    Unsafe {
        path: PathBuf,
        entry: String,
        why: String,
    },
    #[error(
        "snapshot {} holds tree {tree:?} but no target of that name was given",
        path.display()
    )]
    NoTarget { path: PathBuf, tree: String },
    #[error("{}: {why}", path.display())]
    Unsupported { path: PathBuf, why: String },
    #[error("invalid tree list: {0}")]
    InvalidTrees(String),
    /// The snapshot is missing where it is kept (a file, an object).
    #[error("its snapshot {what} is missing; it cannot be restored from there ({why})")]
    Missing { what: String, why: String },
    /// The object store holding snapshots failed a call; the message names the bucket, the
    /// key and what to check.
    #[error("{0}")]
    Remote(String),
    #[error(
        "not enough free disk on the filesystem of {}: {} available, {} needed ({why}); \
         free some space there or lower --min-free-disk",
        path.display(),
        space::human(*available),
        space::human(*needed)
    )]
    NoSpace {
        path: PathBuf,
        /// Bytes needed, `min_free_disk` included.
        needed: u64,
        available: u64,
        /// What the bytes needed are made of.
        why: String,
    },
}

fn io_err(path: &Path, source: io::Error) -> SnapshotError {
    SnapshotError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Writes the trees into `final_path` atomically: to `<final_path>.tmp-<random>`,
/// zstd-compressed tar, fsync file, rename, fsync dir. Refuses with [`SnapshotError::NoSpace`],
/// before writing anything, unless the filesystem of `final_path` has room for the trees'
/// allocated blocks plus `options.min_free_disk`. Returns size, count, checksum.
pub fn write(
    trees: &[Tree],
    final_path: &Path,
    options: &Options,
    progress: Progress,
) -> Result<SnapshotInfo, SnapshotError> {
    check_tree_names(trees.iter().map(|t| t.name.as_str())).map_err(SnapshotError::InvalidTrees)?;
    let dir = match final_path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let mut disk_bytes = Vec::with_capacity(trees.len());
    let mut entries = 0;
    for tree in trees {
        let (bytes, count) = space::allocated(tree)?;
        disk_bytes.push(bytes);
        entries += count;
    }
    let estimate = space::archive_estimate(disk_bytes.iter().sum(), entries);
    space::ensure(
        dir,
        estimate,
        options.min_free_disk,
        "the snapshot at its largest",
    )?;
    let mut name = final_path.as_os_str().to_owned();
    name.push(format!(".tmp-{:016x}", random_u64()));
    let tmp = PathBuf::from(name);
    let watch = space::Watch::new(vec![dir.to_path_buf()], options.min_free_disk);
    let result = write_tmp(trees, &tmp, disk_bytes, Meter::new(progress, watch)).and_then(|info| {
        fs::rename(&tmp, final_path).map_err(|e| io_err(final_path, e))?;
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| io_err(dir, e))?;
        Ok(info)
    });
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

fn write_tmp(
    trees: &[Tree],
    tmp: &Path,
    disk_bytes: Vec<u64>,
    mut meter: Meter,
) -> Result<SnapshotInfo, SnapshotError> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(tmp)
        .map_err(|e| io_err(tmp, e))?;
    let hashing = Hashing {
        inner: BufWriter::with_capacity(1 << 20, file),
        hasher: Sha256::new(),
        bytes: 0,
    };
    let encoder = zstd::Encoder::new(hashing, 3).map_err(|e| io_err(tmp, e))?;
    let mut capture = capture::Capture {
        out: tar::Builder::new(encoder),
        dest: tmp.to_path_buf(),
        meter: &mut meter,
        entries: 0,
        skipped: 0,
    };
    let created_unix_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let manifest = format::Manifest {
        format: format::FORMAT_VERSION,
        trees: trees.iter().map(|t| t.name.clone()).collect(),
        created_unix_ms,
        disk_bytes,
    };
    let json = serde_json::to_vec(&manifest).expect("manifest serializes");
    let head = format::Head {
        kind: tar::EntryType::Regular,
        path: format::MANIFEST_NAME.as_bytes(),
        link: None,
        meta: format::Meta {
            mode: 0o644,
            mtime: created_unix_ms / 1000,
            ..Default::default()
        },
        xattrs: &[],
        sparse: None,
    };
    format::append(&mut capture.out, &head, json.len() as u64, json.as_slice())
        .map_err(|e| io_err(tmp, e))?;
    for tree in trees {
        capture.tree(tree)?;
    }
    let (files, skipped) = (capture.entries, capture.skipped);
    let encoder = capture.out.into_inner().map_err(|e| io_err(tmp, e))?;
    let hashing = encoder.finish().map_err(|e| io_err(tmp, e))?;
    let file = hashing
        .inner
        .into_inner()
        .map_err(|e| io_err(tmp, e.into_error()))?;
    file.sync_all().map_err(|e| io_err(tmp, e))?;
    meter.finish();
    if skipped > 0 {
        tracing::warn!(
            skipped,
            "snapshot: sockets and device files were not archived"
        );
    }
    Ok(SnapshotInfo {
        bytes: hashing.bytes,
        files,
        sha256: hex(&hashing.hasher.finalize()),
    })
}

/// Verifies the checksum FIRST (whole file), then restores each tree named in the snapshot into
/// the [`Tree`] with that name. A tree in the snapshot with no matching target is an error; a
/// target the snapshot does not name is left alone. Before anything is written, each target's
/// filesystem must have room for the disk space its trees took when captured (for a version 1
/// snapshot, which does not record it: the snapshot's own size) plus `options.min_free_disk`,
/// else [`SnapshotError::NoSpace`]. Targets should be empty dirs (created if missing); where a
/// path exists already, the snapshot's entry replaces it (a directory is never replaced). On
/// success everything is written but nothing is fsynced: keep the snapshot until
/// [`make_durable`] has made the targets durable. A failed restore leaves the targets partly
/// written: discard them.
pub fn restore(
    path: &Path,
    expected_sha256: &str,
    trees: &[Tree],
    options: &Options,
    progress: Progress,
) -> Result<RestoreStats, SnapshotError> {
    check_tree_names(trees.iter().map(|t| t.name.as_str())).map_err(SnapshotError::InvalidTrees)?;
    let actual = sha256_file(path)?;
    if !actual.eq_ignore_ascii_case(expected_sha256.trim()) {
        return Err(SnapshotError::ChecksumMismatch {
            path: path.to_path_buf(),
            expected: expected_sha256.to_string(),
            actual,
        });
    }
    extract::run(path, trees, options, progress)
}

/// [`restore`] of a snapshot whose checksum the caller verified as it made `path` (a private
/// download of it), without reading the whole file once more first.
pub fn restore_verified(
    path: &Path,
    trees: &[Tree],
    options: &Options,
    progress: Progress,
) -> Result<RestoreStats, SnapshotError> {
    check_tree_names(trees.iter().map(|t| t.name.as_str())).map_err(SnapshotError::InvalidTrees)?;
    extract::run(path, trees, options, progress)
}

/// The lower-case hex SHA-256 of the file at `path`.
pub fn sha256_of(path: &Path) -> Result<String, SnapshotError> {
    sha256_file(path)
}

/// Refuses with [`SnapshotError::NoSpace`] unless the filesystem of `dir` has `bytes` free
/// besides `min_free` (`what` says what the bytes are for).
pub fn ensure_room(dir: &Path, bytes: u64, min_free: u64, what: &str) -> Result<(), SnapshotError> {
    space::ensure(dir, bytes, min_free, what)
}

/// Removes leftover `*.tmp-*` files in a dir (called at start-up: a crash mid-write).
pub fn remove_partial_files(dir: &Path) -> io::Result<Vec<PathBuf>> {
    let mut removed = Vec::new();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let partial = name
            .to_str()
            .and_then(|n| n.rsplit_once(".tmp-"))
            .is_some_and(|(base, suffix)| !base.is_empty() && !suffix.is_empty());
        if partial && entry.file_type()?.is_file() {
            let path = entry.path();
            fs::remove_file(&path)?;
            removed.push(path);
        }
    }
    removed.sort();
    Ok(removed)
}

/// Tree names are relative paths of normal components, unique, none inside another.
fn check_tree_names<'a>(names: impl IntoIterator<Item = &'a str>) -> Result<(), String> {
    let names: Vec<&str> = names.into_iter().collect();
    let inside =
        |a: &str, b: &str| b.len() > a.len() && b.starts_with(a) && b.as_bytes()[a.len()] == b'/';
    for (i, name) in names.iter().enumerate() {
        let ok = !name.is_empty()
            && *name != format::MANIFEST_NAME
            && name
                .split('/')
                .all(|c| !c.is_empty() && c != "." && c != ".." && !c.contains('\0'));
        if !ok {
            return Err(format!(
                "tree name {name:?} must be a relative path like \"rootfs\" or \"volumes/0\""
            ));
        }
        for other in &names[i + 1..] {
            if name == other || inside(name, other) || inside(other, name) {
                return Err(format!("tree names {name:?} and {other:?} overlap"));
            }
        }
    }
    Ok(())
}

fn random_u64() -> u64 {
    let mut b = [0u8; 8];
    getrandom::fill(&mut b).expect("the OS random number generator failed");
    u64::from_le_bytes(b)
}
