//! Write then restore a hand-built upper dir and volume; everything must come back.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::sync::Mutex;

use super::super::{self as snapshot, Tree, TreeKind};
use super::fixture::{assert_same, build_upper, build_volume, expected, T};
use super::{describe, no_progress, noise, TempDir, ANY_FREE};

#[test]
fn round_trip_upper_dir_and_volume() {
    let tmp = TempDir::new("roundtrip");
    let (upper, vol) = (
        tmp.path().join("src/upper"),
        tmp.path().join("src/vol/_data"),
    );
    build_upper(&upper);
    build_volume(&vol);
    let trees = [
        Tree {
            name: "rootfs".into(),
            dir: upper.clone(),
            kind: TreeKind::OverlayUpper,
        },
        Tree {
            name: "volumes/0".into(),
            dir: vol.clone(),
            kind: TreeKind::Plain,
        },
    ];
    let snap = tmp.path().join("c.snap");
    let seen = Mutex::new(Vec::new());
    let record = |n| seen.lock().unwrap().push(n);
    let info = snapshot::write(&trees, &snap, &ANY_FREE, &record).unwrap();
    assert_eq!(info.bytes, fs::metadata(&snap).unwrap().len());
    assert_eq!(fs::metadata(&snap).unwrap().mode() & 0o7777, 0o600);
    assert_eq!(info.sha256, snapshot::sha256_file(&snap).unwrap());
    let seen = seen.into_inner().unwrap();
    assert!(
        seen.windows(2).all(|w| w[0] < w[1]) && seen.len() > 5,
        "{seen:?}"
    );
    assert!(*seen.last().unwrap() > 10 << 20);
    let leftovers: Vec<_> = fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(
        leftovers.len(),
        2,
        "only src and the snapshot: {leftovers:?}"
    );

    let dst_upper = tmp.path().join("dst/upper");
    fs::create_dir_all(&dst_upper).unwrap();
    let dst_vol = tmp.path().join("dst/vol/_data"); // missing: restore creates it
    let targets = [
        Tree {
            dir: dst_upper.clone(),
            ..trees[0].clone()
        },
        Tree {
            dir: dst_vol.clone(),
            ..trees[1].clone()
        },
    ];
    let stats = snapshot::restore(
        &snap,
        &info.sha256.to_uppercase(),
        &targets,
        &ANY_FREE,
        no_progress(),
    )
    .unwrap();
    assert_eq!(stats.files, info.files);
    assert_eq!(stats.content_bytes, *seen.last().unwrap());

    assert_same(describe(&dst_upper), expected(&describe(&upper), true));
    assert_same(describe(&dst_vol), expected(&describe(&vol), false));

    // Spot checks of what matters most, in case `expected` shares a blind spot with the code.
    let d = describe(&dst_upper);
    assert_eq!(
        fs::read(dst_upper.join("data/big.bin")).unwrap(),
        noise(10 << 20, 7)
    );
    assert_eq!(d["hard/a"].nlink, 3);
    assert_eq!(d["bin/suid"].mode, 0o4755);
    assert_eq!(
        d["bin/suid"]
            .xattrs
            .get("security.capability")
            .map(Vec::len),
        Some(20)
    );
    assert_eq!(d["tmp"].mode, 0o1777);
    assert_eq!(
        d["etc/app.conf"].xattrs.get("user.note").unwrap(),
        b"hello\nworld=\0bin"
    );
    assert!(!d["etc/app.conf"]
        .xattrs
        .contains_key("trusted.overlay.origin"));
    assert_eq!(d["links/dangling"].data, "nowhere/./x//");
    assert_eq!((d["links/rel"].uid, d["links/rel"].mtime), (7, T + 5));
    assert_eq!(
        (d["run/fifo"].kind, d["run/fifo"].mode, d["run/fifo"].gid),
        ('p', 0o620, 6)
    );
    for wh in ["var/deleted", "var/gone", "var/wh1", "var/wh2"] {
        assert_eq!((d[wh].kind, d[wh].rdev, d[wh].nlink), ('c', 0, 1), "{wh}");
    }
    for dir in ["opaque1", "opaque2", "opaque3"] {
        assert_eq!(
            d[dir].xattrs.get("trusted.overlay.opaque").unwrap(),
            b"y",
            "{dir}"
        );
    }
    assert!(!d.contains_key("opaque3/.wh..wh..opq") && !d.contains_key("opaque3/.wh..opq"));
    assert!(
        !d.contains_key("run/sock") && !d.contains_key("run/null") && !d.contains_key("run/disk")
    );
    let v = describe(&dst_vol);
    assert_eq!((v[""].uid, v[""].mode), (999, 0o700));
    assert_eq!(v["h1"].nlink, 2);

    // GNU tar reads the format too (PAX names, links, xattrs).
    let listing = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "zstd -dc '{}' | tar --xattrs -tvf -",
            snap.display()
        ))
        .output()
        .unwrap();
    assert!(
        listing.status.success(),
        "{}",
        String::from_utf8_lossy(&listing.stderr)
    );
    let listing = String::from_utf8_lossy(&listing.stdout);
    assert!(
        listing.contains(&"n".repeat(200))
            && listing.contains("rootfs/hard/b link to rootfs/hard/a")
    );
}
