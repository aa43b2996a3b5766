//! Restore: reads a verified snapshot entry by entry and recreates each entry beneath its
//! target dir, refusing anything that could write elsewhere.
//!
//! Every entry's path is checked (relative, no `..`, no NUL), every existing parent component
//! is lstat-ed and must be a real directory (a hostile `a -> /etc` then `a/passwd` stops here),
//! and leaves are created with create-new semantics that never follow a symlink. Directory
//! metadata is applied last, deepest first, so creating children does not bump their mtimes.
//! A sparse entry's file gets its apparent size first, then its data segments at their
//! offsets, so its holes stay holes and nothing lands past its end.

use std::collections::HashSet;
use std::ffi::OsStr;
use std::fs::{DirBuilder, File, FileTimes, Permissions};
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, FileExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, UNIX_EPOCH};

use tar::EntryType;

mod manifest;
mod place;

use place::components;

use super::format::{self, Pax, Xattr, WHITEOUT_PREFIX};
use super::space::Watch;
use super::sparse;
use super::stream::Meter;
use super::{fsops, io_err, Options, Progress, RestoreStats, SnapshotError, Tree, TreeKind};

/// Restores the (already verified) snapshot at `snapshot` into `targets`.
pub(super) fn run(
    snapshot: &Path,
    targets: &[Tree],
    options: &Options,
    progress: Progress,
) -> Result<RestoreStats, SnapshotError> {
    let file = File::open(snapshot).map_err(|e| io_err(snapshot, e))?;
    let snapshot_bytes = file.metadata().map_err(|e| io_err(snapshot, e))?.len();
    let mut x = Extract {
        snapshot,
        snapshot_bytes,
        targets,
        min_free_disk: options.min_free_disk,
        trees: Vec::new(),
        known: HashSet::new(),
        dirs: Vec::new(),
        stats: RestoreStats::default(),
        meter: Meter::new(progress, Watch::default()),
        buf: vec![0; 1 << 20],
    };
    let decoder = zstd::Decoder::new(file).map_err(|e| x.corrupt(e))?;
    let mut archive = tar::Archive::new(decoder);
    // Raw: we read PAX records ourselves (see `format`), and nothing is interpreted for us.
    let entries = archive.entries().map_err(|e| x.corrupt(e))?.raw(true);
    let mut pax: Option<Pax> = None;
    let mut manifest_seen = false;
    for entry in entries {
        let mut entry = entry.map_err(|e| x.corrupt(e))?;
        if entry.header().entry_type() == EntryType::XHeader {
            if pax.is_some() || entry.size() > format::MAX_META_BYTES {
                return Err(x.corrupt("a PAX header that is too large or follows another"));
            }
            let mut data = Vec::new();
            entry.read_to_end(&mut data).map_err(|e| x.corrupt(e))?;
            pax = Some(format::parse_pax(&data).map_err(|why| x.corrupt(why))?);
            continue;
        }
        let ext = pax.take().unwrap_or_default();
        let path = match (&ext.sparse, &ext.path) {
            (Some((name, _)), _) | (None, Some(name)) => name.clone(),
            (None, None) => entry.header().path_bytes().into_owned(),
        };
        if manifest_seen {
            x.entry(&mut entry, ext, &path)?;
        } else {
            x.manifest(&mut entry, &path)?;
            manifest_seen = true;
        }
    }
    if pax.is_some() || !manifest_seen {
        return Err(x.corrupt("the archive ends early"));
    }
    x.finish()
}

/// A tree of the manifest and where it goes.
struct Target {
    name: Vec<Vec<u8>>,
    root: PathBuf,
    kind: TreeKind,
}

/// Owner, permissions and time of one entry, as restored.
#[derive(Clone, Copy)]
struct Meta {
    mode: u32,
    uid: u32,
    gid: u32,
    mtime: u64,
}

struct Extract<'a, 'p> {
    snapshot: &'a Path,
    /// Size of the snapshot file: a version 1 snapshot's stand-in for the disk it needs.
    snapshot_bytes: u64,
    targets: &'a [Tree],
    min_free_disk: u64,
    trees: Vec<Target>,
    /// Directories verified (lstat: a real directory) or created by us; never replaced later.
    known: HashSet<PathBuf>,
    /// Directory metadata to apply at the end, in creation order.
    dirs: Vec<(PathBuf, Meta, Vec<Xattr>)>,
    stats: RestoreStats,
    meter: Meter<'p>,
    buf: Vec<u8>,
}

impl Extract<'_, '_> {
    fn corrupt(&self, why: impl std::fmt::Display) -> SnapshotError {
        SnapshotError::Corrupt(format!("snapshot {}: {why}", self.snapshot.display()))
    }

    fn refuse(&self, entry: &[u8], why: impl Into<String>) -> SnapshotError {
        SnapshotError::Unsafe {
            path: self.snapshot.to_path_buf(),
            entry: String::from_utf8_lossy(entry).into_owned(),
            why: why.into(),
        }
    }

    // Long but flat: one arm per kind of tar entry, each checked before it
    // writes; kept together so every kind's safety check is seen side by side.
    fn entry(
        &mut self,
        entry: &mut tar::Entry<impl Read>,
        pax: Pax,
        path: &[u8],
    ) -> Result<(), SnapshotError> {
        let comps = components(path).map_err(|why| self.refuse(path, why))?;
        let (t, rel) = self.route(&comps).ok_or_else(|| {
            self.corrupt(format!(
                "entry {:?} is outside the trees its manifest names",
                String::from_utf8_lossy(path)
            ))
        })?;
        let header = entry.header();
        let kind = header.entry_type();
        let meta = self.meta(header, path)?;
        if pax.sparse.is_some() && kind != EntryType::Regular {
            return Err(self.corrupt("a sparse entry that is not a regular file"));
        }
        if let Some((n, _)) = pax
            .xattrs
            .iter()
            .find(|(n, _)| format::is_internal_xattr(n))
        {
            let why = format!("overlay-internal xattr {:?}", String::from_utf8_lossy(n));
            return Err(self.refuse(path, why));
        }
        let root = self.trees[t].root.clone();
        self.stats.files += 1;
        let Some((name, parents)) = rel.split_last() else {
            if !kind.is_dir() {
                return Err(self.corrupt("a tree's root entry is not a directory"));
            }
            self.dirs.push((root, meta, pax.xattrs));
            return Ok(());
        };
        let parent = self.parent_dir(root, parents, path, true)?;
        let at = parent.join(OsStr::from_bytes(name));
        if name.starts_with(WHITEOUT_PREFIX) {
            return self.marker(t, kind, &parent, name, path);
        }
        let io = |e| io_err(&at, e);
        match kind {
            EntryType::Regular => {
                self.clear(&at, false, path)?;
                let file = fsops::create_new_file(&at).map_err(io)?;
                match pax.sparse {
                    Some((_, size)) => self.sparse_content(entry, &file, &at, size)?,
                    None => self.content(entry, &file, &at)?,
                }
                fsops::fchown(&file, meta.uid, meta.gid).map_err(io)?;
                file.set_permissions(Permissions::from_mode(meta.mode))
                    .map_err(io)?;
                for (n, v) in &pax.xattrs {
                    fsops::fset_xattr(&file, n, v).map_err(io)?;
                }
                let t = UNIX_EPOCH + Duration::from_secs(meta.mtime);
                file.set_times(FileTimes::new().set_accessed(t).set_modified(t))
                    .map_err(io)?;
            }
            EntryType::Directory => {
                if !self.clear(&at, true, path)? {
                    DirBuilder::new().mode(0o700).create(&at).map_err(io)?;
                }
                self.known.insert(at.clone());
                self.dirs.push((at, meta, pax.xattrs));
            }
            EntryType::Symlink | EntryType::Fifo => {
                self.clear(&at, false, path)?;
                if kind == EntryType::Fifo {
                    fsops::mkfifo(&at, meta.mode).map_err(io)?;
                } else {
                    let target = pax
                        .linkpath
                        .or_else(|| header.link_name_bytes().map(|c| c.into_owned()));
                    let target = target.filter(|t| !t.is_empty() && !t.contains(&0));
                    let target =
                        target.ok_or_else(|| self.corrupt("a symlink without a target"))?;
                    std::os::unix::fs::symlink(OsStr::from_bytes(&target), &at).map_err(io)?;
                }
                set_meta(&at, &meta, &pax.xattrs, kind == EntryType::Fifo)?;
            }
            EntryType::Link => {
                let target = pax
                    .linkpath
                    .or_else(|| header.link_name_bytes().map(|c| c.into_owned()));
                let target = target.ok_or_else(|| self.corrupt("a hard link without a target"))?;
                self.hard_link(t, &at, &target, path)?;
            }
            EntryType::Char | EntryType::Block => {
                return Err(self.refuse(path, "device files are never restored"))
            }
            other => return Err(self.corrupt(format!("unsupported tar entry type {other:?}"))),
        }
        Ok(())
    }

    /// `.wh.<name>` becomes a whiteout device, `.wh..wh..opq` the opaque xattr on its dir.
    fn content(
        &mut self,
        entry: &mut tar::Entry<impl Read>,
        mut file: &File,
        at: &Path,
    ) -> Result<(), SnapshotError> {
        let mut written = 0u64;
        loop {
            let n = match entry.read(&mut self.buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(self.corrupt(e)),
            };
            file.write_all(&self.buf[..n]).map_err(|e| io_err(at, e))?;
            written += n as u64;
            self.meter.add(n as u64)?;
        }
        if written != entry.size() {
            return Err(self.corrupt(format!("{} is truncated", at.display())));
        }
        self.stats.content_bytes += written;
        Ok(())
    }

    /// A sparse file: its map, checked against its apparent `size` and the entry's size, then
    /// the apparent size, then each data segment written at its offset (never past `size`).
    fn sparse_content(
        &mut self,
        entry: &mut tar::Entry<impl Read>,
        file: &File,
        at: &Path,
        size: u64,
    ) -> Result<(), SnapshotError> {
        let bad = |why: &str| format!("{}: {why}", at.display());
        let (segments, map_len) =
            sparse::read_map(entry, size).map_err(|why| self.corrupt(bad(&why)))?;
        let data = segments
            .iter()
            .try_fold(0u64, |sum, s| sum.checked_add(s.len))
            .filter(|data| data.checked_add(map_len) == Some(entry.size()))
            .ok_or_else(|| self.corrupt(bad("its sparse map does not match its size")))?;
        file.set_len(size).map_err(|e| io_err(at, e))?;
        for segment in segments {
            let mut done = 0u64;
            while done < segment.len {
                let want = self
                    .buf
                    .len()
                    .min(usize::try_from(segment.len - done).unwrap_or(usize::MAX));
                let n = match entry.read(&mut self.buf[..want]) {
                    Ok(0) => return Err(self.corrupt(bad("it is truncated"))),
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(self.corrupt(e)),
                };
                file.write_all_at(&self.buf[..n], segment.offset + done)
                    .map_err(|e| io_err(at, e))?;
                done += n as u64;
                self.meter.add(n as u64)?;
            }
        }
        self.stats.content_bytes += data;
        Ok(())
    }

    fn meta(&self, h: &tar::Header, path: &[u8]) -> Result<Meta, SnapshotError> {
        let bad = |what: &str| {
            self.corrupt(format!(
                "entry {:?} has a bad {what}",
                String::from_utf8_lossy(path)
            ))
        };
        let id = |v: io::Result<u64>, what| {
            v.ok()
                .and_then(|v| u32::try_from(v).ok())
                .ok_or_else(|| bad(what))
        };
        Ok(Meta {
            mode: h.mode().map_err(|_| bad("mode"))? & 0o7777,
            uid: id(h.uid(), "uid")?,
            gid: id(h.gid(), "gid")?,
            mtime: h
                .mtime()
                .ok()
                .filter(|t| *t < 1 << 40)
                .ok_or_else(|| bad("mtime"))?,
        })
    }

    /// Directory metadata, deepest first.
    fn finish(mut self) -> Result<RestoreStats, SnapshotError> {
        for (dir, meta, xattrs) in self.dirs.iter().rev() {
            set_meta(dir, meta, xattrs, true)?;
        }
        self.meter.finish();
        Ok(self.stats)
    }
}

/// Owner, mode (`chmod`: never on a symlink), xattrs, then times, on a path we created.
fn set_meta(at: &Path, meta: &Meta, xattrs: &[Xattr], chmod: bool) -> Result<(), SnapshotError> {
    let io = |e| io_err(at, e);
    fsops::lchown(at, meta.uid, meta.gid).map_err(io)?;
    if chmod {
        fsops::chmod(at, meta.mode).map_err(io)?;
    }
    for (n, v) in xattrs {
        fsops::set_xattr(at, n, v).map_err(io)?;
    }
    fsops::set_mtime(at, meta.mtime as i64).map_err(io)
}
