//! Where an entry may go: path checks, parents that must be real directories, making room
//! for an entry, and the entries that name other paths (whiteouts, hard links).

use std::ffi::OsStr;
use std::fs::{self, DirBuilder};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use tar::EntryType;

use super::super::format::{OPAQUE_MARKER, OPAQUE_XATTR, WHITEOUT_PREFIX};
use super::super::{fsops, io_err, SnapshotError, TreeKind};
use super::Extract;

impl Extract<'_, '_> {
    pub(super) fn marker(
        &mut self,
        t: usize,
        kind: EntryType,
        parent: &Path,
        name: &[u8],
        path: &[u8],
    ) -> Result<(), SnapshotError> {
        if self.trees[t].kind != TreeKind::OverlayUpper {
            return Err(self.corrupt(format!(
                "entry {:?}: names starting with `.wh.` never occur in a volume",
                String::from_utf8_lossy(path)
            )));
        }
        if !kind.is_file() {
            return Err(self.corrupt("a whiteout marker that is not a plain file"));
        }
        if name == OPAQUE_MARKER {
            return fsops::set_xattr(parent, OPAQUE_XATTR.as_bytes(), b"y")
                .map_err(|e| io_err(parent, e));
        }
        let hidden = &name[WHITEOUT_PREFIX.len()..];
        if hidden.is_empty() || hidden == b"." || hidden == b".." {
            return Err(self.refuse(path, "a whiteout of an invalid name"));
        }
        let at = parent.join(OsStr::from_bytes(hidden));
        self.clear(&at, false, path)?;
        fsops::mknod_whiteout(&at).map_err(|e| io_err(&at, e))
    }

    pub(super) fn hard_link(
        &mut self,
        t: usize,
        at: &Path,
        target: &[u8],
        path: &[u8],
    ) -> Result<(), SnapshotError> {
        let comps = components(target)
            .map_err(|why| self.refuse(path, format!("hard link target: {why}")))?;
        let (lt, rel) = self
            .route(&comps)
            .ok_or_else(|| self.refuse(path, "hard link target outside the snapshot's trees"))?;
        if lt != t {
            return Err(self.refuse(path, "hard link into another tree"));
        }
        let Some((name, parents)) = rel.split_last() else {
            return Err(self.refuse(path, "hard link to a tree's root"));
        };
        let src = self.parent_dir(self.trees[t].root.clone(), parents, path, false)?;
        let src = src.join(OsStr::from_bytes(name));
        match fs::symlink_metadata(&src) {
            Ok(m) if m.is_dir() => return Err(self.refuse(path, "hard link to a directory")),
            Ok(_) if src != at => {}
            _ => {
                return Err(self.corrupt(format!(
                    "hard link {:?} to a path not restored before it",
                    String::from_utf8_lossy(path)
                )))
            }
        }
        self.clear(at, false, path)?;
        // linkat without AT_SYMLINK_FOLLOW: a symlink source is linked itself, never followed.
        fs::hard_link(&src, at).map_err(|e| io_err(at, e))
    }

    /// The tree and tree-relative components of an entry path.
    pub(super) fn route<'c>(&self, comps: &'c [&'c [u8]]) -> Option<(usize, &'c [&'c [u8]])> {
        self.trees
            .iter()
            .position(|t| {
                comps.len() >= t.name.len()
                    && t.name.iter().zip(comps).all(|(a, b)| a.as_slice() == *b)
            })
            .map(|i| (i, &comps[self.trees[i].name.len()..]))
    }

    /// The directory `root/parents...`, each component a real directory (created if missing
    /// and `create`); a symlink or file on the way is refused.
    pub(super) fn parent_dir(
        &mut self,
        root: PathBuf,
        parents: &[&[u8]],
        path: &[u8],
        create: bool,
    ) -> Result<PathBuf, SnapshotError> {
        let mut dir = root;
        for (i, c) in parents.iter().enumerate() {
            dir.push(OsStr::from_bytes(c));
            if self.known.contains(&dir) {
                continue;
            }
            match fs::symlink_metadata(&dir) {
                Ok(m) if m.is_dir() => {}
                Ok(m) => {
                    let what = if m.file_type().is_symlink() {
                        "a symlink"
                    } else {
                        "not a directory"
                    };
                    let parent = String::from_utf8_lossy(&parents[..=i].join(&b'/')).into_owned();
                    return Err(self.refuse(path, format!("its parent {parent:?} is {what}")));
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound && create => DirBuilder::new()
                    .mode(0o755)
                    .create(&dir)
                    .map_err(|e| io_err(&dir, e))?,
                Err(e) => return Err(io_err(&dir, e)),
            }
            self.known.insert(dir.clone());
        }
        Ok(dir)
    }

    /// Makes room at `at`: a file or symlink there is removed (later entries win, as in a
    /// layer); an existing directory stays if `dir`, else it is an error. True if a dir stays.
    pub(super) fn clear(&self, at: &Path, dir: bool, path: &[u8]) -> Result<bool, SnapshotError> {
        match fs::symlink_metadata(at) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(io_err(at, e)),
            Ok(m) if m.is_dir() && dir => Ok(true),
            Ok(m) if m.is_dir() => Err(self.refuse(path, "it would replace a directory")),
            Ok(_) => fs::remove_file(at)
                .map(|()| false)
                .map_err(|e| io_err(at, e)),
        }
    }
}

/// The normal components of a snapshot path: relative, no `..`, no NUL.
pub(super) fn components(path: &[u8]) -> Result<Vec<&[u8]>, &'static str> {
    if path.contains(&0) {
        return Err("a NUL byte in its name");
    }
    if path.first() == Some(&b'/') {
        return Err("an absolute path");
    }
    let comps: Vec<&[u8]> = path
        .split(|b| *b == b'/')
        .filter(|c| !c.is_empty() && *c != b".")
        .collect();
    if comps.iter().any(|c| *c == b"..") {
        return Err("a `..` component");
    }
    if comps.is_empty() {
        return Err("an empty path");
    }
    Ok(comps)
}
