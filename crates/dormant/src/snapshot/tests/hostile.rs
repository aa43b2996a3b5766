//! Hostile snapshots built by hand: restore must refuse them (or stay inside the target) and
//! must never create or change anything outside the target dir.

use std::fs;
use std::path::{Path, PathBuf};

use tar::{EntryType, Header};

use super::super::{self as snapshot, SnapshotError, Tree, TreeKind};
use super::{describe, no_progress, TempDir, ANY_FREE};

/// One tar member: kind, raw path, raw link name, content; `pax` (`key=value`) adds a PAX
/// record first.
struct Member<'a> {
    kind: EntryType,
    path: &'a [u8],
    link: &'a [u8],
    data: &'a [u8],
    pax: &'a [u8],
}

/// A snapshot file with a valid manifest (tree "rootfs") followed by `members`, written with
/// raw header fields so the tar crate's own path checks cannot save us.
fn hostile(dir: &Path, manifest: bool, members: &[Member]) -> (PathBuf, String) {
    let mut b = tar::Builder::new(Vec::new());
    if manifest {
        let json = br#"{"format":1,"trees":["rootfs"],"created_unix_ms":0}"#;
        let mut h = Header::new_ustar();
        h.set_path("dormant-snapshot.json").unwrap();
        h.set_size(json.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        b.append(&h, &json[..]).unwrap();
    }
    for mem in members {
        if let Some(eq) = mem.pax.iter().position(|b| *b == b'=') {
            let mut pax = Vec::new();
            snapshot::format::pax_record(&mut pax, &mem.pax[..eq], &mem.pax[eq + 1..]);
            let mut h = Header::new_ustar();
            h.set_entry_type(EntryType::XHeader);
            h.set_size(pax.len() as u64);
            h.set_cksum();
            b.append(&h, &pax[..]).unwrap();
        }
        let mut h = Header::new_ustar();
        h.as_old_mut().name[..mem.path.len()].copy_from_slice(mem.path);
        h.as_old_mut().linkname[..mem.link.len()].copy_from_slice(mem.link);
        h.set_entry_type(mem.kind);
        h.set_mode(0o755);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        h.set_size(mem.data.len() as u64);
        h.set_cksum();
        b.append(&h, mem.data).unwrap();
    }
    let tar = b.into_inner().unwrap();
    let path = dir.join("hostile.snap");
    fs::write(&path, zstd::encode_all(&tar[..], 3).unwrap()).unwrap();
    let sha = snapshot::sha256_file(&path).unwrap();
    (path, sha)
}

/// Restores `members` into `<base>/target` and checks that `<base>` outside the target is
/// exactly as before (it holds `outside/` with a file and the snapshot).
fn attempt(
    label: &str,
    manifest: bool,
    members: impl Fn(&str) -> Vec<u8>,
) -> Result<(), SnapshotError> {
    let tmp = TempDir::new(label);
    let base = tmp.path();
    let outside = base.join("outside");
    fs::create_dir_all(&outside).unwrap();
    fs::write(outside.join("keep"), b"original").unwrap();
    let target = base.join("target");
    fs::create_dir(&target).unwrap();
    let spec = members(&outside.to_string_lossy());
    let members = parse_spec(&spec);
    let (snap, sha) = hostile(base, manifest, &members);
    let before = describe(base);
    let result = snapshot::restore(&snap, &sha, &[tree(&target)], &ANY_FREE, no_progress());
    let mut after = describe(base);
    after.retain(|k, _| k != "target" && !k.starts_with("target/"));
    let mut before = before;
    before.retain(|k, _| k != "target" && !k.starts_with("target/"));
    assert_eq!(
        after, before,
        "{label}: something outside the target changed"
    );
    assert_eq!(fs::read(outside.join("keep")).unwrap(), b"original");
    // Absolute paths in members all point below `outside`, which is unchanged; and nothing
    // escaped above `base` either:
    assert!(!base.parent().unwrap().join("escape-dormant-test").exists());
    result.map(|_| ())
}

fn tree(dir: &Path) -> Tree {
    Tree {
        name: "rootfs".into(),
        dir: dir.to_path_buf(),
        kind: TreeKind::OverlayUpper,
    }
}

/// Members as lines `kind|path|link|data|pax` (kind: f d l h c b p x), so cases read as tables.
fn parse_spec(spec: &[u8]) -> Vec<Member<'_>> {
    spec.split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|line| {
            let f: Vec<&[u8]> = line.splitn(5, |b| *b == b'|').collect();
            let kind = match f[0] {
                b"f" => EntryType::Regular,
                b"d" => EntryType::Directory,
                b"l" => EntryType::Symlink,
                b"h" => EntryType::Link,
                b"c" => EntryType::Char,
                b"b" => EntryType::Block,
                b"p" => EntryType::Fifo,
                _ => EntryType::GNULongName,
            };
            Member {
                kind,
                path: f[1],
                link: f[2],
                data: f[3],
                pax: f.get(4).copied().unwrap_or(b""),
            }
        })
        .collect()
}

fn assert_unsafe(r: Result<(), SnapshotError>, label: &str) {
    match r {
        Err(SnapshotError::Unsafe {
            ref entry, ref why, ..
        }) => {
            eprintln!("{label}: refused {entry:?}: {why}");
        }
        other => panic!("{label}: expected Unsafe, got {other:?}"),
    }
}

#[test]
fn dot_dot_and_absolute_paths_are_refused() {
    assert_unsafe(
        attempt("dotdot", true, |_| {
            b"f|rootfs/../../escape-dormant-test|||\n".to_vec()
        }),
        "dotdot",
    );
    assert_unsafe(
        attempt("dotdot2", true, |_| {
            b"f|../escape-dormant-test|||\n".to_vec()
        }),
        "dotdot2",
    );
    assert_unsafe(
        attempt("abs", true, |o| format!("f|{o}/abs|||\n").into_bytes()),
        "absolute",
    );
    // A benign ustar name but a PAX path that escapes: the PAX path is the one checked.
    assert_unsafe(
        attempt("pax", true, |_| b"f|rootfs/ok|||path=../../../x\n".to_vec()),
        "pax path",
    );
}

#[test]
fn symlinked_parents_are_refused() {
    assert_unsafe(
        attempt("symlink-out", true, |o| {
            format!("l|rootfs/evil|{o}||\nf|rootfs/evil/file||pwned|\n").into_bytes()
        }),
        "symlink to outside dir, then a file beneath it",
    );
    assert_unsafe(
        attempt("symlink-in", true, |_| {
            b"d|rootfs/d/|||\nl|rootfs/s|d||\nf|rootfs/s/f||x|\n".to_vec()
        }),
        "symlink to a dir inside, then a file beneath it",
    );
    assert_unsafe(
        attempt("symlink-deep", true, |o| {
            format!("l|rootfs/a|{o}||\nd|rootfs/a/b/|||\n").into_bytes()
        }),
        "symlink then a dir beneath it",
    );
}

#[test]
fn a_file_over_a_symlink_replaces_the_symlink() {
    // Later entries win, as in a layer: the symlink is removed, its target is not written.
    attempt("replace", true, |o| {
        format!("l|rootfs/evil|{o}/keep||\nf|rootfs/evil||new|\n").into_bytes()
    })
    .unwrap();
}

#[test]
fn hard_links_and_devices_are_refused() {
    assert_unsafe(
        attempt("hl-up", true, |_| {
            b"h|rootfs/h|../../etc/passwd||\n".to_vec()
        }),
        "link up",
    );
    assert_unsafe(
        attempt("hl-abs", true, |o| {
            format!("h|rootfs/h|{o}/keep||\n").into_bytes()
        }),
        "link abs",
    );
    assert_unsafe(
        attempt("hl-via-symlink", true, |o| {
            format!("l|rootfs/out|{o}||\nh|rootfs/h|rootfs/out/keep||\n").into_bytes()
        }),
        "link through a symlink",
    );
    assert_unsafe(
        attempt("chr", true, |_| b"c|rootfs/null|||\n".to_vec()),
        "char device",
    );
    assert_unsafe(
        attempt("blk", true, |_| b"b|rootfs/sda|||\n".to_vec()),
        "block device",
    );
    assert_unsafe(
        attempt("wh-dotdot", true, |_| b"f|rootfs/.wh...|||\n".to_vec()),
        "whiteout of ..",
    );
    assert_unsafe(
        attempt("xattr", true, |_| {
            b"f|rootfs/f|||SCHILY.xattr.trusted.overlay.redirect=/x\n".to_vec()
        }),
        "overlay-internal xattr",
    );
}

#[test]
fn malformed_snapshots_are_corrupt() {
    for (label, manifest, spec) in [
        ("no-manifest", false, &b"f|rootfs/a||x|\n"[..]),
        ("foreign-tree", true, b"f|other/a||x|\n"),
        ("gnu-longname", true, b"x|rootfs/a||x|\n"),
        ("root-not-dir", true, b"f|rootfs||x|\n"),
        ("bad-pax", true, b"f|rootfs/a|||99 path=x\n"),
    ] {
        match attempt(label, manifest, |_| spec.to_vec()) {
            Err(SnapshotError::Corrupt(why)) => eprintln!("{label}: {why}"),
            other => panic!("{label}: expected Corrupt, got {other:?}"),
        }
    }
    let tmp = TempDir::new("not-zstd");
    let f = tmp.path().join("plain.snap");
    fs::write(&f, b"this is not a snapshot").unwrap();
    let sha = snapshot::sha256_file(&f).unwrap();
    let err = snapshot::restore(
        &f,
        &sha,
        &[tree(&tmp.path().join("t"))],
        &ANY_FREE,
        no_progress(),
    )
    .unwrap_err();
    assert!(matches!(err, SnapshotError::Corrupt(_)), "{err}");
}
