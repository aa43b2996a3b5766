//! What restore and write refuse: a damaged file, a tree without a target, bad tree names,
//! names a volume cannot hold; and start-up cleanup of partial files.

use std::fs;

use super::super::{self as snapshot, SnapshotError, Tree, TreeKind};
use super::fixture::T;
use super::{file, no_progress, noise, TempDir, ANY_FREE};

#[test]
fn checksum_mismatch_restores_nothing() {
    let tmp = TempDir::new("checksum");
    let src = tmp.path().join("src");
    file(&src.join("f"), &noise(50_000, 1), 0o644, (0, 0), T);
    let trees = [Tree {
        name: "rootfs".into(),
        dir: src,
        kind: TreeKind::OverlayUpper,
    }];
    let snap = tmp.path().join("s.snap");
    let info = snapshot::write(&trees, &snap, &ANY_FREE, no_progress()).unwrap();
    let mut bytes = fs::read(&snap).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x40;
    fs::write(&snap, bytes).unwrap();
    let dst = tmp.path().join("dst");
    let targets = [Tree {
        dir: dst.clone(),
        ..trees[0].clone()
    }];
    let err =
        snapshot::restore(&snap, &info.sha256, &targets, &ANY_FREE, no_progress()).unwrap_err();
    assert!(
        matches!(err, SnapshotError::ChecksumMismatch { .. }),
        "{err}"
    );
    assert!(err.to_string().contains("s.snap"), "{err}");
    assert!(!dst.exists());
}

#[test]
fn restore_needs_a_target_for_every_tree() {
    let tmp = TempDir::new("targets");
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    file(&a.join("x"), b"x", 0o644, (0, 0), T);
    file(&b.join("y"), b"y", 0o644, (0, 0), T);
    let trees = [
        Tree {
            name: "rootfs".into(),
            dir: a,
            kind: TreeKind::OverlayUpper,
        },
        Tree {
            name: "volumes/0".into(),
            dir: b,
            kind: TreeKind::Plain,
        },
    ];
    let snap = tmp.path().join("s.snap");
    let info = snapshot::write(&trees, &snap, &ANY_FREE, no_progress()).unwrap();
    let dst = tmp.path().join("dst");
    let only_root = [Tree {
        dir: dst.clone(),
        ..trees[0].clone()
    }];
    let err =
        snapshot::restore(&snap, &info.sha256, &only_root, &ANY_FREE, no_progress()).unwrap_err();
    assert!(
        matches!(&err, SnapshotError::NoTarget { tree, .. } if tree == "volumes/0"),
        "{err}"
    );
    assert!(
        !dst.exists(),
        "nothing is written before the manifest is checked"
    );

    for bad in [
        &["volumes", "volumes/0"][..],
        &["../x"],
        &["a", "a"],
        &[""],
        &["a//b"],
    ] {
        let trees: Vec<Tree> = bad
            .iter()
            .map(|n| Tree {
                name: n.to_string(),
                dir: tmp.path().into(),
                kind: TreeKind::Plain,
            })
            .collect();
        let err = snapshot::write(
            &trees,
            &tmp.path().join("bad.snap"),
            &ANY_FREE,
            no_progress(),
        )
        .unwrap_err();
        assert!(
            matches!(err, SnapshotError::InvalidTrees(_)),
            "{bad:?}: {err}"
        );
    }
}

#[test]
fn failed_write_leaves_nothing_and_partial_files_are_removed() {
    let tmp = TempDir::new("partial");
    let vol = tmp.path().join("vol");
    file(
        &vol.join(".wh.not-a-whiteout"),
        b"user data",
        0o644,
        (0, 0),
        T,
    );
    let trees = [Tree {
        name: "volumes/0".into(),
        dir: vol,
        kind: TreeKind::Plain,
    }];
    let snap = tmp.path().join("out/s.snap");
    fs::create_dir_all(tmp.path().join("out")).unwrap();
    let err = snapshot::write(&trees, &snap, &ANY_FREE, no_progress()).unwrap_err();
    assert!(matches!(err, SnapshotError::Unsupported { .. }), "{err}");
    assert_eq!(fs::read_dir(tmp.path().join("out")).unwrap().count(), 0);
    // A directory so named cannot be written into a layer either, not even in an upper dir.
    let upper = tmp.path().join("upper");
    fs::create_dir_all(upper.join("a/.wh.dir")).unwrap();
    let trees = [Tree {
        name: "rootfs".into(),
        dir: upper,
        kind: TreeKind::OverlayUpper,
    }];
    let err = snapshot::write(&trees, &snap, &ANY_FREE, no_progress()).unwrap_err();
    assert!(
        err.to_string().contains("a/.wh.dir: names starting"),
        "{err}"
    );
    assert_eq!(fs::read_dir(tmp.path().join("out")).unwrap().count(), 0);

    let out = tmp.path().join("out");
    for name in ["a.snap.tmp-0123abcd", "b.snap", "c.tmp-", "notes.txt"] {
        fs::write(out.join(name), b"x").unwrap();
    }
    fs::create_dir(out.join("d.snap.tmp-1")).unwrap();
    let removed = snapshot::remove_partial_files(&out).unwrap();
    assert_eq!(removed, vec![out.join("a.snap.tmp-0123abcd")]);
    let mut left: Vec<_> = fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    left.sort();
    assert_eq!(left, ["b.snap", "c.tmp-", "d.snap.tmp-1", "notes.txt"]);
}
