//! A hand-built upper dir and volume holding every kind of entry, and what restoring them
//! must produce.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use rustix::fs::{makedev, mknodat, FileType, Mode, CWD};

use super::super::{self as snapshot, fsops};
use super::{describe, file, noise, Node};

pub(super) const T: i64 = 1_600_000_000;

pub(super) fn build_upper(u: &Path) {
    file(
        &u.join("etc/app.conf"),
        b"modified=true\n",
        0o644,
        (0, 0),
        T,
    );
    file(&u.join("etc/new.conf"), b"new\n", 0o640, (0, 42), T + 1);
    file(
        &u.join("home/user/notes.txt"),
        b"notes",
        0o600,
        (1000, 1000),
        T + 2,
    );
    file(&u.join("home/user/empty"), b"", 0o644, (1000, 1000), T + 3);
    let odd = "home/user/with space ü ñ 日本.txt";
    file(&u.join(odd), "ünïcödé".as_bytes(), 0o644, (1000, 1000), T);
    file(&u.join("home/user/line\nbreak"), b"nl", 0o644, (0, 0), T);
    let long = format!("long/{}/{}", "p".repeat(120), "n".repeat(200));
    file(&u.join(long), b"long name", 0o644, (0, 0), T);
    file(
        &u.join("data/big.bin"),
        &noise(10 << 20, 7),
        0o644,
        (0, 0),
        T,
    );
    file(&u.join("bin/suid"), b"#!/bin/sh\n", 0o4755, (0, 0), T);
    file(&u.join("secret"), b"s", 0o600, (0, 0), T);
    file(
        &u.join("was_a_dir"),
        b"a file where the image has a directory",
        0o644,
        (0, 0),
        T,
    );
    fs::create_dir_all(u.join("tmp")).unwrap();
    fsops::chmod(&u.join("tmp"), 0o1777).unwrap();
    fs::create_dir_all(u.join("emptydir")).unwrap();
    let deep: String = (0..40).map(|i| format!("d{i}/")).collect();
    file(&u.join(deep).join("leaf"), b"deep", 0o644, (0, 0), T);

    // Whiteouts in every form: a char device, fuse-overlayfs' `.wh.` file, and two devices
    // sharing one inode (kernel >= 5.8).
    fs::create_dir_all(u.join("var")).unwrap();
    fsops::mknod_whiteout(&u.join("var/deleted")).unwrap();
    file(&u.join("var/.wh.gone"), b"", 0o700, (0, 0), T);
    fsops::mknod_whiteout(&u.join("var/wh1")).unwrap();
    fs::hard_link(u.join("var/wh1"), u.join("var/wh2")).unwrap();

    // Opaque dirs in every form; opaque3 is what fuse-overlayfs 1.10 leaves (seen on this host).
    for (dir, xattr) in [
        ("opaque1", "trusted.overlay.opaque"),
        ("opaque2", "user.fuseoverlayfs.opaque"),
    ] {
        file(&u.join(dir).join("new"), b"new", 0o644, (0, 0), T);
        fsops::set_xattr(&u.join(dir), xattr.as_bytes(), b"y").unwrap();
    }
    file(&u.join("opaque3/.wh..wh..opq"), b"", 0o700, (0, 0), T);
    fsops::mknod_whiteout(&u.join("opaque3/.wh..opq")).unwrap();
    file(&u.join("opaque3/new"), b"new", 0o644, (0, 0), T);

    fs::create_dir_all(u.join("links")).unwrap();
    for (name, target) in [
        ("rel", "../etc/app.conf".to_string()),
        ("abs", "/etc/passwd".to_string()),
        ("dangling", "nowhere/./x//".to_string()),
        ("long", format!("/{}", "t".repeat(150))),
    ] {
        let at = u.join("links").join(name);
        std::os::unix::fs::symlink(target, &at).unwrap();
        fsops::lchown(&at, 7, 8).unwrap();
        fsops::set_mtime(&at, T + 5).unwrap();
    }
    file(&u.join("hard/a"), b"shared", 0o640, (3, 4), T);
    fs::create_dir_all(u.join("hard/sub")).unwrap();
    fs::hard_link(u.join("hard/a"), u.join("hard/b")).unwrap();
    fs::hard_link(u.join("hard/a"), u.join("hard/sub/c")).unwrap();

    fs::create_dir_all(u.join("run")).unwrap();
    fsops::mkfifo(&u.join("run/fifo"), 0o620).unwrap();
    fsops::chmod(&u.join("run/fifo"), 0o620).unwrap();
    fsops::lchown(&u.join("run/fifo"), 5, 6).unwrap();
    drop(std::os::unix::net::UnixListener::bind(u.join("run/sock")).unwrap());
    let dev = Mode::from_raw_mode(0o666);
    mknodat(
        CWD,
        u.join("run/null"),
        FileType::CharacterDevice,
        dev,
        makedev(1, 3),
    )
    .unwrap();
    mknodat(
        CWD,
        u.join("run/disk"),
        FileType::BlockDevice,
        dev,
        makedev(7, 0),
    )
    .unwrap();

    let conf = u.join("etc/app.conf");
    fsops::set_xattr(&conf, b"user.note", b"hello\nworld=\0bin").unwrap();
    fsops::set_xattr(&conf, b"trusted.app", b"t").unwrap();
    fsops::set_xattr(&conf, b"trusted.overlay.origin", b"internal").unwrap();
    fsops::set_xattr(&u.join("etc/new.conf"), b"user.fuseoverlayfs.origin", b"x").unwrap();
    fsops::set_xattr(&u.join("home"), b"user.dirnote", b"d").unwrap();
    // CAP_NET_BIND_SERVICE, effective (vfs_cap_data revision 2); chown would drop it.
    let mut cap = vec![0x01, 0, 0, 0x02, 0, 0x04, 0, 0];
    cap.resize(20, 0);
    fsops::set_xattr(&u.join("bin/suid"), b"security.capability", &cap).unwrap();
    fsops::lchown(&u.join("home/user"), 1000, 1000).unwrap();
    fsops::chmod(&u.join("home/user"), 0o750).unwrap();
    settle_dir_times(u);
}

pub(super) fn build_volume(v: &Path) {
    file(&v.join("pgdata/PG_VERSION"), b"16\n", 0o600, (999, 999), T);
    file(
        &v.join("pgdata/base/1/123"),
        &noise(100_000, 3),
        0o600,
        (999, 999),
        T,
    );
    file(&v.join("h1"), b"linked", 0o644, (0, 0), T);
    fs::hard_link(v.join("h1"), v.join("h2")).unwrap();
    std::os::unix::fs::symlink("pgdata", v.join("link")).unwrap();
    fs::create_dir_all(v.join("empty")).unwrap();
    fsops::lchown(v, 999, 999).unwrap();
    fsops::chmod(v, 0o700).unwrap();
    settle_dir_times(v);
}

/// Gives every directory a fixed mtime, children first.
fn settle_dir_times(root: &Path) {
    for (rel, node) in describe(root).iter().rev() {
        if node.kind == 'd' {
            fsops::set_mtime(&root.join(rel), T + 100).unwrap();
        }
    }
}

fn whiteout() -> Node {
    Node {
        kind: 'c',
        mode: 0,
        uid: 0,
        gid: 0,
        mtime: 0,
        nlink: 1,
        rdev: 0,
        data: String::new(),
        xattrs: BTreeMap::new(),
    }
}

/// What restoring `src` must produce: overlay markers in their restored form, internal xattrs
/// gone, sockets and devices skipped.
pub(super) fn expected(src: &BTreeMap<String, Node>, upper: bool) -> BTreeMap<String, Node> {
    let mut out = BTreeMap::new();
    for (path, node) in src {
        let (parent, name) = path.rsplit_once('/').unwrap_or(("", path));
        let child = |n: &str| {
            if parent.is_empty() {
                n.to_string()
            } else {
                format!("{parent}/{n}")
            }
        };
        let mut n = node.clone();
        let opaque = n
            .xattrs
            .iter()
            .any(|(k, v)| k.ends_with(".opaque") && v == b"y")
            || src.contains_key(&format!("{path}/.wh..wh..opq"));
        n.xattrs
            .retain(|k, _| !snapshot::format::is_internal_xattr(k.as_bytes()));
        if upper {
            if name == ".wh..wh..opq" || (n.kind == 'c' && n.rdev == 0 && name.starts_with(".wh."))
            {
                continue;
            }
            if n.kind == 'c' && n.rdev == 0 {
                out.insert(path.clone(), whiteout());
                continue;
            }
            if let Some(hidden) = name.strip_prefix(".wh.") {
                out.insert(child(hidden), whiteout());
                continue;
            }
            if n.kind == 'd' && opaque {
                n.xattrs
                    .insert("trusted.overlay.opaque".into(), b"y".to_vec());
            }
        }
        if !matches!(n.kind, 'c' | 'b' | 's') {
            out.insert(path.clone(), n);
        }
    }
    out
}

pub(super) fn assert_same(actual: BTreeMap<String, Node>, expected: BTreeMap<String, Node>) {
    let mut actual = actual;
    for n in actual.values_mut().filter(|n| n.kind == 'c') {
        n.mtime = 0; // whiteouts get the time of the restore
    }
    let a: Vec<_> = actual.keys().collect();
    let e: Vec<_> = expected.keys().collect();
    assert_eq!(a, e, "restored paths differ");
    for (k, v) in &expected {
        assert_eq!(&actual[k], v, "restored {k:?} differs");
    }
}
