//! The filesystem calls std lacks (xattrs, mknod, owner and times without following symlinks),
//! as thin safe wrappers over rustix.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use rustix::fs::{self as rfs, AtFlags, FileType, Gid, Mode, OFlags, Timestamps, Uid, CWD};
use rustix::io::Errno;

use super::format::Xattr;

/// All xattrs of `path` itself (a symlink's own, not its target's). A filesystem without
/// xattr support has none.
pub(super) fn list_xattrs(path: &Path) -> io::Result<Vec<Xattr>> {
    let names = loop {
        let size = match rfs::llistxattr_query(path) {
            Ok(0) => return Ok(Vec::new()),
            Ok(n) => n,
            Err(Errno::NOTSUP) => return Ok(Vec::new()),
            Err(e) => return Err(e.into()),
        };
        let mut buf = vec![0u8; size];
        match rfs::llistxattr(path, &mut buf[..]) {
            Ok(n) => {
                buf.truncate(n);
                break buf;
            }
            // Grew between the two calls: ask again.
            Err(Errno::RANGE) => continue,
            Err(e) => return Err(e.into()),
        }
    };
    let mut out = Vec::new();
    for name in names.split(|b| *b == 0).filter(|n| !n.is_empty()) {
        if let Some(value) = get_xattr(path, name)? {
            out.push((name.to_vec(), value));
        }
    }
    Ok(out)
}

fn get_xattr(path: &Path, name: &[u8]) -> io::Result<Option<Vec<u8>>> {
    loop {
        let size = match rfs::lgetxattr_query(path, name) {
            Ok(n) => n,
            Err(Errno::NODATA) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        if size == 0 {
            return Ok(Some(Vec::new()));
        }
        let mut buf = vec![0u8; size];
        match rfs::lgetxattr(path, name, &mut buf[..]) {
            Ok(n) => {
                buf.truncate(n);
                return Ok(Some(buf));
            }
            Err(Errno::RANGE) => continue,
            Err(Errno::NODATA) => return Ok(None),
            Err(e) => return Err(e.into()),
        }
    }
}

/// Sets one xattr on `path` itself (not following a symlink).
pub(super) fn set_xattr(path: &Path, name: &[u8], value: &[u8]) -> io::Result<()> {
    rfs::lsetxattr(path, name, value, rfs::XattrFlags::empty()).map_err(|e| {
        io::Error::new(
            io::Error::from(e).kind(),
            format!(
                "setting xattr {}: {e}",
                String::from_utf8_lossy(name).escape_debug()
            ),
        )
    })
}

/// Sets one xattr on an open file.
pub(super) fn fset_xattr(file: &File, name: &[u8], value: &[u8]) -> io::Result<()> {
    rfs::fsetxattr(file, name, value, rfs::XattrFlags::empty()).map_err(|e| {
        io::Error::new(
            io::Error::from(e).kind(),
            format!(
                "setting xattr {}: {e}",
                String::from_utf8_lossy(name).escape_debug()
            ),
        )
    })
}

/// Owner of `path` itself (`lchown`).
pub(super) fn lchown(path: &Path, uid: u32, gid: u32) -> io::Result<()> {
    let (u, g) = (Uid::from_raw(uid), Gid::from_raw(gid));
    Ok(rfs::chownat(
        CWD,
        path,
        Some(u),
        Some(g),
        AtFlags::SYMLINK_NOFOLLOW,
    )?)
}

/// Owner of an open file (`fchown`).
pub(super) fn fchown(file: &File, uid: u32, gid: u32) -> io::Result<()> {
    Ok(rfs::fchown(
        file,
        Some(Uid::from_raw(uid)),
        Some(Gid::from_raw(gid)),
    )?)
}

/// Permission bits, setuid/setgid/sticky included. Only for paths known not to be symlinks
/// (Linux has no chmod that refuses to follow one on older kernels).
pub(super) fn chmod(path: &Path, mode: u32) -> io::Result<()> {
    Ok(rfs::chmodat(
        CWD,
        path,
        Mode::from_raw_mode(mode & 0o7777),
        AtFlags::empty(),
    )?)
}

/// Access and modification time of `path` itself, whole seconds.
pub(super) fn set_mtime(path: &Path, secs: i64) -> io::Result<()> {
    let t = rfs::Timespec {
        tv_sec: secs,
        tv_nsec: 0,
    };
    let times = Timestamps {
        last_access: t,
        last_modification: t,
    };
    Ok(rfs::utimensat(
        CWD,
        path,
        &times,
        AtFlags::SYMLINK_NOFOLLOW,
    )?)
}

/// An overlay whiteout: a character device 0/0 (needs CAP_MKNOD).
pub(super) fn mknod_whiteout(path: &Path) -> io::Result<()> {
    Ok(rfs::mknodat(
        CWD,
        path,
        FileType::CharacterDevice,
        Mode::empty(),
        0,
    )?)
}

/// A FIFO with the given permission bits (before umask; callers chmod afterwards).
pub(super) fn mkfifo(path: &Path, mode: u32) -> io::Result<()> {
    Ok(rfs::mknodat(
        CWD,
        path,
        FileType::Fifo,
        Mode::from_raw_mode(mode & 0o777),
        0,
    )?)
}

/// Creates a new regular file; fails if anything exists at `path`, a symlink included.
pub(super) fn create_new_file(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags((OFlags::NOFOLLOW | OFlags::CLOEXEC).bits() as i32)
        .open(path)
}

/// Opens an existing regular file for reading, refusing a symlink.
pub(super) fn open_nofollow(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .custom_flags((OFlags::NOFOLLOW | OFlags::CLOEXEC).bits() as i32)
        .open(path)
}
