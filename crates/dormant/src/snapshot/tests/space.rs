//! Free disk: an archive or a restore that would leave less than `min_free_disk` is refused
//! before anything is written; what a restore needs is recorded in the manifest.

use std::fs;

use super::super::{self as snapshot, space, Options, SnapshotError, Tree, TreeKind};
use super::fixture::T;
use super::{file, no_progress, noise, TempDir, ANY_FREE};

#[test]
fn no_room_refuses_before_writing() {
    let tmp = TempDir::new("space");
    let src = tmp.path().join("src");
    file(&src.join("a"), &noise(200_000, 1), 0o644, (0, 0), T);
    file(&src.join("b/c"), b"c", 0o644, (0, 0), T);
    let trees = [Tree {
        name: "rootfs".into(),
        dir: src,
        kind: TreeKind::OverlayUpper,
    }];
    let out = tmp.path().join("out");
    fs::create_dir_all(&out).unwrap();
    let free = space::available(&out).unwrap();
    // More than the filesystem has: refused, whatever the snapshot needs.
    let greedy = Options {
        min_free_disk: free + (1 << 40),
    };
    let snap = out.join("s.snap");
    let err = snapshot::write(&trees, &snap, &greedy, no_progress()).unwrap_err();
    match &err {
        SnapshotError::NoSpace {
            path,
            needed,
            available,
            ..
        } => {
            assert_eq!(path, &out);
            assert!(needed > available && *needed > greedy.min_free_disk);
        }
        other => panic!("expected NoSpace, got {other:?}"),
    }
    let message = err.to_string();
    assert!(
        message.contains(&out.display().to_string()) && message.contains("--min-free-disk"),
        "{message}"
    );
    assert_eq!(fs::read_dir(&out).unwrap().count(), 0, "nothing written");

    let info = snapshot::write(&trees, &snap, &ANY_FREE, no_progress()).unwrap();
    let dst = tmp.path().join("dst");
    let targets = [Tree {
        dir: dst.join("upper"),
        ..trees[0].clone()
    }];
    let err = snapshot::restore(&snap, &info.sha256, &targets, &greedy, no_progress()).unwrap_err();
    assert!(matches!(err, SnapshotError::NoSpace { .. }), "{err}");
    assert!(!dst.exists(), "nothing written: {err}");
    snapshot::restore(&snap, &info.sha256, &targets, &ANY_FREE, no_progress()).unwrap();
    assert_eq!(fs::read(dst.join("upper/b/c")).unwrap(), b"c");
}

#[test]
fn the_manifest_records_what_a_restore_needs() {
    let tmp = TempDir::new("space-manifest");
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    file(&a.join("big"), &noise(1 << 20, 2), 0o644, (0, 0), T);
    file(&b.join("small"), b"s", 0o644, (0, 0), T);
    fs::hard_link(a.join("big"), a.join("again")).unwrap();
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
    snapshot::write(&trees, &snap, &ANY_FREE, no_progress()).unwrap();
    let listing = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "zstd -dc '{}' | tar -xOf - dormant-snapshot.json",
            snap.display()
        ))
        .output()
        .unwrap();
    let manifest: serde_json::Value = serde_json::from_slice(&listing.stdout).unwrap();
    assert_eq!(manifest["format"], 2);
    let bytes: Vec<u64> = manifest["disk_bytes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect();
    assert_eq!(bytes.len(), 2);
    // The big file once (a hard link takes no more room), its directory's block; one block and
    // a directory for the small one.
    assert!(
        bytes[0] >= 1 << 20 && bytes[0] < (1 << 20) + (64 << 10),
        "{bytes:?}"
    );
    assert!(bytes[1] > 0 && bytes[1] < 64 << 10, "{bytes:?}");
}
