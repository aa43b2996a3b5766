//! The data dir on disk: private to dormant's user. It holds users' secrets (containers' env in
//! the database, the admin token, snapshots of what users wrote), so it is created 0700, files
//! in it are created 0600, and looser modes left by older versions are tightened at start-up.

use std::fs::{self, DirBuilder, OpenOptions, Permissions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::Context;

/// Mode of every file dormant creates in the data dir.
pub const FILE_MODE: u32 = 0o600;
/// Mode of the data dir and the directories in it.
pub const DIR_MODE: u32 = 0o700;

/// One mode tightened at start-up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tightened {
    pub path: PathBuf,
    pub from: u32,
    pub to: u32,
}

/// Creates `dir` 0700 if missing, takes group and other permissions away from what is already
/// in it (see [`tighten`]), and logs what changed.
pub fn prepare(dir: &Path) -> anyhow::Result<()> {
    create_private_dir(dir)
        .with_context(|| format!("cannot create the data dir {}", dir.display()))?;
    let tightened = tighten(dir).with_context(|| {
        format!(
            "cannot make the data dir {} private (chmod go-rwx)",
            dir.display()
        )
    })?;
    for t in &tightened {
        tracing::warn!(
            path = %t.path.display(),
            from = format!("{:o}", t.from),
            to = format!("{:o}", t.to),
            "the data dir holds secrets: took group and other permissions away"
        );
    }
    Ok(())
}

/// Creates `dir` and its missing parents with mode 0700.
pub fn create_private_dir(dir: &Path) -> io::Result<()> {
    DirBuilder::new().recursive(true).mode(DIR_MODE).create(dir)
}

/// Takes group and other permissions away from `dir`, everything directly in it and every
/// file in its `snapshots/`. Symlinks are left alone (never followed).
pub fn tighten(dir: &Path) -> io::Result<Vec<Tightened>> {
    let mut changed = Vec::new();
    let mut paths = vec![dir.to_path_buf()];
    for entry in fs::read_dir(dir)? {
        paths.push(entry?.path());
    }
    let snapshots = dir.join("snapshots");
    if fs::symlink_metadata(&snapshots).is_ok_and(|m| m.is_dir()) {
        for entry in fs::read_dir(&snapshots)? {
            paths.push(entry?.path());
        }
    }
    for path in paths {
        let meta = fs::symlink_metadata(&path)?;
        let from = meta.permissions().mode() & 0o7777;
        if meta.file_type().is_symlink() || from & 0o077 == 0 {
            continue;
        }
        let to = from & !0o077;
        fs::set_permissions(&path, Permissions::from_mode(to))?;
        changed.push(Tightened { path, from, to });
    }
    Ok(changed)
}

/// Writes `contents` to a new file at `path` with mode 0600 and syncs it.
pub fn write_private(path: &Path, contents: &[u8]) -> io::Result<()> {
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(FILE_MODE)
        .open(path)?;
    file.write_all(contents)?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(path: &Path) -> u32 {
        fs::symlink_metadata(path).unwrap().permissions().mode() & 0o7777
    }

    #[test]
    fn a_new_data_dir_is_private() {
        let base =
            std::env::temp_dir().join(format!("dormant-datadir-{}", crate::token::random_hex(6)));
        let dir = base.join("a/b");
        prepare(&dir).unwrap();
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&base.join("a")), 0o700);
        write_private(&dir.join("node-id"), b"x\n").unwrap();
        assert_eq!(mode(&dir.join("node-id")), 0o600);
        fs::remove_dir_all(base).unwrap();
    }

    #[test]
    fn looser_modes_are_tightened_and_reported() {
        let dir =
            std::env::temp_dir().join(format!("dormant-datadir-{}", crate::token::random_hex(6)));
        fs::create_dir_all(dir.join("snapshots")).unwrap();
        let set = |p: &Path, m: u32| fs::set_permissions(p, Permissions::from_mode(m)).unwrap();
        for (name, m) in [
            ("dormant.db", 0o644),
            ("dormant.db-wal", 0o664),
            ("admin-token", 0o600),
            ("snapshots/a.snap.zst", 0o604),
        ] {
            fs::write(dir.join(name), b"x").unwrap();
            set(&dir.join(name), m);
        }
        std::os::unix::fs::symlink("/etc/passwd", dir.join("link")).unwrap();
        set(&dir, 0o755);
        set(&dir.join("snapshots"), 0o2775);
        let passwd_mode = mode(Path::new("/etc/passwd"));
        let mut changed = tighten(&dir).unwrap();
        changed.sort_by(|a, b| a.path.cmp(&b.path));
        let seen: Vec<(PathBuf, u32, u32)> = changed
            .into_iter()
            .map(|t| (t.path, t.from, t.to))
            .collect();
        assert_eq!(
            seen,
            vec![
                (dir.clone(), 0o755, 0o700),
                (dir.join("dormant.db"), 0o644, 0o600),
                (dir.join("dormant.db-wal"), 0o664, 0o600),
                (dir.join("snapshots"), 0o2775, 0o2700),
                (dir.join("snapshots/a.snap.zst"), 0o604, 0o600),
            ]
        );
        assert_eq!(
            mode(Path::new("/etc/passwd")),
            passwd_mode,
            "symlinks are never followed"
        );
        assert!(
            tighten(&dir).unwrap().is_empty(),
            "a second start changes nothing"
        );
        fs::remove_dir_all(dir).unwrap();
    }
}
