//! Tests of the snapshot module (run as root: they make whiteout devices, chown and set
//! `trusted.*` xattrs), with helpers to build trees by hand and describe them for comparison.

mod durable;
mod failures;
mod fixture;
mod hostile;
mod roundtrip;
mod space;
mod sparse;
mod throughput;

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::fsops;

/// A directory under the system temp dir, removed on drop.
pub(super) struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(label: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!(
            "dormant-snapshot-{label}-{}-{:08x}",
            std::process::id(),
            super::random_u64() as u32
        ));
        fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

pub(super) fn no_progress() -> super::Progress<'static> {
    &|_| {}
}

/// No free space kept: the tests' trees are small and the host's disk is not theirs to judge.
pub(super) const ANY_FREE: super::Options = super::Options { min_free_disk: 0 };

/// One filesystem object as the comparison sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Node {
    pub kind: char,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub mtime: i64,
    /// Hard link count (non-directories only; 0 for directories).
    pub nlink: u64,
    pub rdev: u64,
    /// SHA-256 of a regular file's content, a symlink's target.
    pub data: String,
    pub xattrs: BTreeMap<String, Vec<u8>>,
}

/// Every object under `root` (root itself as ""), by relative path.
pub(super) fn describe(root: &Path) -> BTreeMap<String, Node> {
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

fn walk(root: &Path, path: &Path, out: &mut BTreeMap<String, Node>) {
    let m = fs::symlink_metadata(path).unwrap();
    let ft = m.file_type();
    let kind = match () {
        _ if ft.is_dir() => 'd',
        _ if ft.is_file() => 'f',
        _ if ft.is_symlink() => 'l',
        _ if ft.is_char_device() => 'c',
        _ if ft.is_block_device() => 'b',
        _ if ft.is_fifo() => 'p',
        _ => 's',
    };
    let data = match kind {
        'f' => hex_sha(&fs::read(path).unwrap()),
        'l' => String::from_utf8_lossy(fs::read_link(path).unwrap().as_os_str().as_bytes()).into(),
        _ => String::new(),
    };
    let xattrs = fsops::list_xattrs(path)
        .unwrap()
        .into_iter()
        .map(|(n, v)| (String::from_utf8(n).unwrap(), v))
        .collect();
    let rel = path
        .strip_prefix(root)
        .unwrap()
        .to_string_lossy()
        .into_owned();
    out.insert(
        rel,
        Node {
            kind,
            mode: m.mode() & 0o7777,
            uid: m.uid(),
            gid: m.gid(),
            mtime: m.mtime(),
            nlink: if kind == 'd' { 0 } else { m.nlink() },
            rdev: m.rdev(),
            data,
            xattrs,
        },
    );
    if kind == 'd' {
        for e in fs::read_dir(path).unwrap() {
            walk(root, &e.unwrap().path(), out);
        }
    }
}

pub(super) fn hex_sha(bytes: &[u8]) -> String {
    super::hex(&Sha256::digest(bytes))
}

/// Writes a file with content, owner, mode and mtime.
pub(super) fn file(path: &Path, content: &[u8], mode: u32, owner: (u32, u32), mtime: i64) {
    if let Some(p) = path.parent() {
        fs::create_dir_all(p).unwrap();
    }
    fs::write(path, content).unwrap();
    fsops::lchown(path, owner.0, owner.1).unwrap();
    fsops::chmod(path, mode).unwrap();
    fsops::set_mtime(path, mtime).unwrap();
}

/// Deterministic bytes that do not compress (xorshift), so sizes and speeds are honest.
pub(super) fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}
