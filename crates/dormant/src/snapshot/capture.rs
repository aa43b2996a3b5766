//! Capture: walks one tree (never following symlinks, parents before children, in byte order)
//! and appends its entries to the snapshot's tar stream, translating overlay markers into the
//! OCI layer conventions. A file with holes is stored as its data segments only (`sparse`).

use std::collections::{HashMap, HashSet};
use std::ffi::OsStr;
use std::fs::{self, File, Metadata};
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use tar::EntryType;

use super::format::{self, Head, Meta, Xattr, OPAQUE_MARKER, OPAQUE_XATTRS, WHITEOUT_PREFIX};
use super::sparse::{self, Segment};
use super::stream::Meter;
use super::{fsops, io_err, SnapshotError, Tree, TreeKind};

/// Appends trees to one tar stream; counts what it wrote.
pub(super) struct Capture<'m, 'p, W: Write> {
    pub out: tar::Builder<W>,
    /// The file being written, named in write errors.
    pub dest: PathBuf,
    pub meter: &'m mut Meter<'p>,
    /// Filesystem entries written (not PAX headers, not the manifest).
    pub entries: u64,
    /// Sockets and devices left out: they cannot be restored safely.
    pub skipped: u64,
}

/// Per-tree walk state.
struct Walk<'t> {
    tree: &'t Tree,
    upper: bool,
    /// (dev, ino) of multiply-linked non-directories -> the tar path written first.
    links: HashMap<(u64, u64), Vec<u8>>,
    /// Whiteout entries already written (a driver may hold both forms for one name).
    whiteouts: HashSet<Vec<u8>>,
}

impl<W: Write> Capture<'_, '_, W> {
    /// Appends `tree` under its name.
    pub fn tree(&mut self, tree: &Tree) -> Result<(), SnapshotError> {
        let meta = fs::symlink_metadata(&tree.dir).map_err(|e| io_err(&tree.dir, e))?;
        if !meta.is_dir() {
            return Err(SnapshotError::Unsupported {
                path: tree.dir.clone(),
                why: "a tree to capture must be a directory (not a symlink)".into(),
            });
        }
        let mut walk = Walk {
            tree,
            upper: tree.kind == TreeKind::OverlayUpper,
            links: HashMap::new(),
            whiteouts: HashSet::new(),
        };
        // Depth-first with an explicit stack: a directory is written, then its children.
        let mut stack: Vec<(PathBuf, Vec<u8>)> = vec![(tree.dir.clone(), Vec::new())];
        while let Some((path, rel)) = stack.pop() {
            let meta = fs::symlink_metadata(&path).map_err(|e| io_err(&path, e))?;
            if meta.is_dir() {
                let children = self.dir(&mut walk, &path, &rel, &meta)?;
                stack.extend(children.into_iter().rev());
            } else {
                self.non_dir(&mut walk, &path, &rel, &meta)?;
            }
        }
        Ok(())
    }

    /// Writes a directory entry (and its opaque marker); returns its children to visit.
    fn dir(
        &mut self,
        walk: &mut Walk,
        path: &Path,
        rel: &[u8],
        meta: &Metadata,
    ) -> Result<Vec<(PathBuf, Vec<u8>)>, SnapshotError> {
        if rel
            .rsplit(|b| *b == b'/')
            .next()
            .unwrap_or(rel)
            .starts_with(WHITEOUT_PREFIX)
        {
            return Err(wh_name(path));
        }
        let mut names: Vec<Vec<u8>> = Vec::new();
        for entry in fs::read_dir(path).map_err(|e| io_err(path, e))? {
            let entry = entry.map_err(|e| io_err(path, e))?;
            names.push(entry.file_name().as_bytes().to_vec());
        }
        names.sort();
        let xattrs = fsops::list_xattrs(path).map_err(|e| io_err(path, e))?;
        let by_xattr = xattrs
            .iter()
            .any(|(n, v)| OPAQUE_XATTRS.iter().any(|o| o.as_bytes() == n) && v == b"y");
        // fuse-overlayfs may also (or instead) keep a marker file; the layer's marker says so.
        let by_file = names.iter().any(|n| n == OPAQUE_MARKER);
        let opaque = walk.upper && (by_xattr || by_file);
        self.put(
            EntryType::Directory,
            &walk.tar_path(rel, true),
            None,
            meta_of(meta),
            &keep(xattrs),
        )?;
        if opaque {
            let marker = walk.tar_path(&join(rel, OPAQUE_MARKER), false);
            let m = Meta {
                mode: 0o644,
                ..meta_of(meta)
            };
            self.put(EntryType::Regular, &marker, None, m, &[])?;
        }
        Ok(names
            .into_iter()
            .filter(|n| !(walk.upper && n == OPAQUE_MARKER))
            .map(|n| (path.join(OsStr::from_bytes(&n)), join(rel, &n)))
            .collect())
    }

    fn non_dir(
        &mut self,
        walk: &mut Walk,
        path: &Path,
        rel: &[u8],
        meta: &Metadata,
    ) -> Result<(), SnapshotError> {
        let name = rel.rsplit(|b| *b == b'/').next().unwrap_or(rel);
        let ft = meta.file_type();
        // A whiteout device may share its inode with others (kernel >= 5.8): never a hard link.
        if walk.upper && ft.is_char_device() && meta.rdev() == 0 {
            // One hiding an overlay-internal name (fuse-overlayfs hides `.wh..opq` this way
            // next to an opaque marker) has no meaning in a layer.
            if !name.starts_with(WHITEOUT_PREFIX) {
                let parent = &rel[..rel.len() - name.len()];
                self.whiteout(walk, &[parent, WHITEOUT_PREFIX, name].concat(), meta)?;
            }
            return Ok(());
        }
        if name.starts_with(WHITEOUT_PREFIX) {
            if walk.upper && ft.is_file() {
                // fuse-overlayfs' fallback form: an empty `.wh.<name>` file.
                return self.whiteout(walk, rel, meta);
            }
            return Err(wh_name(path));
        }
        let kind = if ft.is_file() {
            EntryType::Regular
        } else if ft.is_symlink() {
            EntryType::Symlink
        } else if ft.is_fifo() {
            EntryType::Fifo
        } else {
            self.skipped += 1;
            tracing::warn!(path = %path.display(), "snapshot: skipping a socket or device file");
            return Ok(());
        };
        let tar_path = walk.tar_path(rel, false);
        if meta.nlink() > 1 {
            let key = (meta.dev(), meta.ino());
            if let Some(first) = walk.links.get(&key) {
                let first = first.clone();
                return self.put(EntryType::Link, &tar_path, Some(&first), meta_of(meta), &[]);
            }
            walk.links.insert(key, tar_path.clone());
        }
        let xattrs = keep(fsops::list_xattrs(path).map_err(|e| io_err(path, e))?);
        match kind {
            EntryType::Regular => self.file(path, &tar_path, meta_of(meta), &xattrs),
            EntryType::Symlink => {
                let target = fs::read_link(path).map_err(|e| io_err(path, e))?;
                let target = target.as_os_str().as_bytes();
                self.put(kind, &tar_path, Some(target), meta_of(meta), &xattrs)
            }
            _ => self.put(kind, &tar_path, None, meta_of(meta), &xattrs),
        }
    }

    fn file(
        &mut self,
        path: &Path,
        tar_path: &[u8],
        meta: Meta,
        xattrs: &[Xattr],
    ) -> Result<(), SnapshotError> {
        let file = fsops::open_nofollow(path).map_err(|e| io_err(path, e))?;
        let size = file.metadata().map_err(|e| io_err(path, e))?.len();
        let segments = sparse::data_segments(&file, size).map_err(|e| io_err(path, e))?;
        let data: u64 = segments.iter().map(|s| s.len).sum();
        let (map, segments, sparse) = if data < size {
            (sparse::encode_map(&segments, size), segments, Some(size))
        } else {
            (Vec::new(), sparse::whole(size), None)
        };
        let head = Head {
            kind: EntryType::Regular,
            path: tar_path,
            link: None,
            meta,
            xattrs,
            sparse,
        };
        let stored: u64 = segments.iter().map(|s| s.len).sum();
        let entry_size = map.len() as u64 + stored;
        let mut failed = None;
        let source = Source {
            map: io::Cursor::new(map),
            file,
            path,
            segments: &segments,
            done: 0,
            meter: &mut *self.meter,
            failed: &mut failed,
        };
        let result = format::append(&mut self.out, &head, entry_size, source);
        match (result, failed) {
            (Ok(()), _) => {
                self.entries += 1;
                Ok(())
            }
            (Err(_), Some(source_error)) => Err(source_error),
            (Err(e), None) => Err(io_err(&self.dest, e)),
        }
    }

    fn whiteout(
        &mut self,
        walk: &mut Walk,
        rel: &[u8],
        meta: &Metadata,
    ) -> Result<(), SnapshotError> {
        let tar_path = walk.tar_path(rel, false);
        if !walk.whiteouts.insert(tar_path.clone()) {
            return Ok(());
        }
        let m = Meta {
            mode: 0o644,
            uid: 0,
            gid: 0,
            ..meta_of(meta)
        };
        self.put(EntryType::Regular, &tar_path, None, m, &[])
    }

    /// Appends an entry without content.
    fn put(
        &mut self,
        kind: EntryType,
        path: &[u8],
        link: Option<&[u8]>,
        meta: Meta,
        xattrs: &[Xattr],
    ) -> Result<(), SnapshotError> {
        let head = Head {
            kind,
            path,
            link,
            meta,
            xattrs,
            sparse: None,
        };
        format::append(&mut self.out, &head, 0, io::empty()).map_err(|e| io_err(&self.dest, e))?;
        self.entries += 1;
        Ok(())
    }
}

/// A file's content on its way into the archive: its sparse map if it has one, then exactly
/// its data segments, counted by the meter; a failure to read it (or a filesystem running out
/// of room) is kept apart from a failure to write the snapshot.
struct Source<'a, 'p> {
    map: io::Cursor<Vec<u8>>,
    file: File,
    path: &'a Path,
    /// What is left to read; the first segment is read from its offset + `done`.
    segments: &'a [Segment],
    done: u64,
    meter: &'a mut Meter<'p>,
    failed: &'a mut Option<SnapshotError>,
}

impl Source<'_, '_> {
    fn read_data(&mut self, buf: &mut [u8]) -> Result<usize, SnapshotError> {
        let n = self.map.read(buf).map_err(|e| io_err(self.path, e))?;
        if n > 0 {
            return Ok(n);
        }
        while let Some(segment) = self.segments.first() {
            let left = segment.len - self.done;
            if left == 0 {
                self.segments = &self.segments[1..];
                self.done = 0;
                continue;
            }
            let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
            let n = match self
                .file
                .read_at(&mut buf[..want], segment.offset + self.done)
            {
                Ok(0) => {
                    let why = format!("the file shrank while being read ({left} bytes missing)");
                    return Err(io_err(
                        self.path,
                        io::Error::new(io::ErrorKind::UnexpectedEof, why),
                    ));
                }
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(io_err(self.path, e)),
            };
            self.done += n as u64;
            self.meter.add(n as u64)?;
            return Ok(n);
        }
        Ok(0)
    }
}

impl Read for Source<'_, '_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.read_data(buf).map_err(|e| {
            let kind = match &e {
                SnapshotError::Io { source, .. } => source.kind(),
                _ => io::ErrorKind::Other,
            };
            *self.failed = Some(e);
            kind.into()
        })
    }
}

impl Walk<'_> {
    /// `<tree name>/<rel>`, with a trailing `/` for directories.
    fn tar_path(&self, rel: &[u8], dir: bool) -> Vec<u8> {
        let mut p = self.tree.name.as_bytes().to_vec();
        p.push(b'/');
        p.extend_from_slice(rel);
        if dir && !rel.is_empty() {
            p.push(b'/');
        }
        p
    }
}

fn wh_name(path: &Path) -> SnapshotError {
    SnapshotError::Unsupported {
        path: path.to_path_buf(),
        why: "names starting with `.wh.` mark deletions in a snapshot; rename it to archive \
              this container"
            .into(),
    }
}

fn join(rel: &[u8], name: &[u8]) -> Vec<u8> {
    if rel.is_empty() {
        name.to_vec()
    } else {
        [rel, b"/", name].concat()
    }
}

/// Drops overlay-internal xattrs; the rest travel.
fn keep(all: Vec<Xattr>) -> Vec<Xattr> {
    all.into_iter()
        .filter(|(n, _)| !format::is_internal_xattr(n))
        .collect()
}

fn meta_of(m: &Metadata) -> Meta {
    Meta {
        mode: m.mode() & 0o7777,
        uid: u64::from(m.uid()),
        gid: u64::from(m.gid()),
        mtime: u64::try_from(m.mtime()).unwrap_or(0),
    }
}
