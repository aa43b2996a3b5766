//! The manifest, the first entry: which trees the snapshot holds, where each goes, and
//! whether their filesystems have room, all settled before anything is written.

use std::fs;
use std::io::{self, Read};
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;

use super::super::format::{self, Manifest};
use super::super::space::{self, Watch};
use super::super::{io_err, SnapshotError, Tree};
use super::{Extract, Target};

impl Extract<'_, '_> {
    pub(super) fn manifest(
        &mut self,
        entry: &mut tar::Entry<impl Read>,
        path: &[u8],
    ) -> Result<(), SnapshotError> {
        let header = entry.header();
        if !header.entry_type().is_file()
            || path != format::MANIFEST_NAME.as_bytes()
            || entry.size() > format::MAX_META_BYTES
        {
            return Err(self.corrupt(format!(
                "it does not start with {}: not a dormant snapshot",
                format::MANIFEST_NAME
            )));
        }
        let mut json = Vec::new();
        entry.read_to_end(&mut json).map_err(|e| self.corrupt(e))?;
        let m: Manifest = serde_json::from_slice(&json)
            .map_err(|e| self.corrupt(format!("{}: {e}", format::MANIFEST_NAME)))?;
        if !format::READABLE_VERSIONS.contains(&m.format) {
            return Err(self.corrupt(format!(
                "format version {} (this dormant reads versions {:?})",
                m.format,
                format::READABLE_VERSIONS
            )));
        }
        super::super::check_tree_names(m.trees.iter().map(String::as_str))
            .map_err(|e| self.corrupt(e))?;
        // Every tree needs a target before anything is written.
        let given = self.targets;
        let mut targets = Vec::new();
        for name in &m.trees {
            match given.iter().find(|t| &t.name == name) {
                Some(t) => targets.push(t),
                None => {
                    return Err(SnapshotError::NoTarget {
                        path: self.snapshot.to_path_buf(),
                        tree: name.clone(),
                    })
                }
            }
        }
        self.check_space(&m, &targets)?;
        for t in targets {
            match fs::symlink_metadata(&t.dir) {
                Ok(md) if md.is_dir() => {}
                Ok(_) => {
                    return Err(SnapshotError::Unsupported {
                        path: t.dir.clone(),
                        why: "a restore target must be a directory, not a symlink or file".into(),
                    })
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    fs::create_dir_all(&t.dir).map_err(|e| io_err(&t.dir, e))?
                }
                Err(e) => return Err(io_err(&t.dir, e)),
            }
            self.known.insert(t.dir.clone());
            self.trees.push(Target {
                name: t.name.split('/').map(|c| c.as_bytes().to_vec()).collect(),
                root: t.dir.clone(),
                kind: t.kind,
            });
        }
        Ok(())
    }

    /// Refuses unless each target's filesystem has room for its trees (as the manifest
    /// records them) plus `min_free_disk`; then watches those filesystems as content flows.
    fn check_space(&mut self, m: &Manifest, targets: &[&Tree]) -> Result<(), SnapshotError> {
        let recorded = !m.disk_bytes.is_empty();
        if recorded && m.disk_bytes.len() != m.trees.len() {
            return Err(self.corrupt("its manifest's disk_bytes do not match its trees"));
        }
        // (device, a path on it, bytes needed there)
        let mut filesystems: Vec<(u64, PathBuf, u64)> = Vec::new();
        for (i, t) in targets.iter().enumerate() {
            let at = space::existing_ancestor(&t.dir);
            let dev = fs::metadata(at).map_err(|e| io_err(at, e))?.dev();
            let need = if recorded {
                m.disk_bytes[i]
            } else {
                self.snapshot_bytes
            };
            match filesystems.iter_mut().find(|(d, _, _)| *d == dev) {
                Some(fs) if recorded => fs.2 = fs.2.saturating_add(need),
                Some(_) => {}
                None => filesystems.push((dev, at.to_path_buf(), need)),
            }
        }
        for (_, path, need) in &filesystems {
            let what = if recorded {
                "the snapshot's files"
            } else {
                "the snapshot's files (at least its compressed size)"
            };
            space::ensure(path, *need, self.min_free_disk, what)?;
        }
        let paths = filesystems.into_iter().map(|(_, p, _)| p).collect();
        self.meter.watch(Watch::new(paths, self.min_free_disk));
        Ok(())
    }
}
