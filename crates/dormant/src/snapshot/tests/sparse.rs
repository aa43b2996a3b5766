//! Sparse files: stored as their data only, restored with their holes (and read by GNU tar);
//! hostile sparse maps refused.

use std::fs::{self, File};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use tar::{EntryType, Header};

use super::super::sparse::{self, Segment};
use super::super::{self as snapshot, format, SnapshotError, Tree, TreeKind};
use super::{no_progress, noise, TempDir, ANY_FREE};

/// Makes a file of apparent size `size` holding `islands` (offset, bytes) and nothing else.
fn sparse_file(path: &Path, size: u64, islands: &[(u64, Vec<u8>)]) {
    let f = File::create(path).unwrap();
    f.set_len(size).unwrap();
    for (offset, data) in islands {
        f.write_all_at(data, *offset).unwrap();
    }
}

/// The largest apparent size this filesystem gives a file: 16 TiB, else a little less
/// (ext4 with 4 KiB blocks stops 4 KiB short), else halves of it.
fn largest_size(dir: &Path) -> u64 {
    let probe = dir.join("probe");
    let f = File::create(&probe).unwrap();
    let mut candidates = vec![16u64 << 40, (16 << 40) - 4096];
    candidates.extend((1..12).map(|i| (16u64 << 40) >> i));
    let size = candidates
        .into_iter()
        .find(|s| f.set_len(*s).is_ok())
        .expect("a sparse file of 8 GiB at least");
    fs::remove_file(probe).unwrap();
    size
}

/// Data segments and their bytes.
fn data_of(path: &Path) -> Vec<(Segment, Vec<u8>)> {
    let f = File::open(path).unwrap();
    let size = f.metadata().unwrap().len();
    sparse::data_segments(&f, size)
        .unwrap()
        .into_iter()
        .map(|s| {
            let mut buf = vec![0; s.len as usize];
            f.read_exact_at(&mut buf, s.offset).unwrap();
            (s, buf)
        })
        .collect()
}

/// Same apparent size, same data segments (so the same holes), the same bytes in them, and
/// no more blocks than the original plus a little.
fn assert_same_sparse(original: &Path, restored: &Path) {
    let (a, b) = (
        fs::metadata(original).unwrap(),
        fs::metadata(restored).unwrap(),
    );
    assert_eq!(a.len(), b.len(), "{}: apparent size", restored.display());
    assert_eq!(
        (a.mode(), a.mtime()),
        (b.mode(), b.mtime()),
        "{}",
        restored.display()
    );
    assert!(
        b.blocks() <= a.blocks() + 16,
        "{}: {} blocks allocated, the original has {}",
        restored.display(),
        b.blocks(),
        a.blocks()
    );
    assert!(
        data_of(original) == data_of(restored),
        "{}: data differs",
        restored.display()
    );
}

#[test]
fn sparse_files_keep_their_holes() {
    let tmp = TempDir::new("sparse");
    let src = tmp.path().join("src");
    fs::create_dir_all(&src).unwrap();
    let huge = largest_size(&src);
    eprintln!(
        "largest sparse file on {}: {huge} bytes ({} GiB)",
        src.display(),
        huge >> 30
    );
    let block = |seed| noise(4096, seed);
    sparse_file(
        &src.join("huge"),
        huge,
        &[(0, block(1)), (huge / 2, block(2)), (huge - 4096, block(3))],
    );
    let mib = 1u64 << 20;
    sparse_file(
        &src.join("islands"),
        64 * mib,
        &[
            (0, noise(10_000, 4)),
            (3 * mib, block(5)),
            (3 * mib + 8192, block(6)),
            (20 * mib, noise(300_000, 7)),
            (63 * mib, block(8)),
        ],
    );
    sparse_file(&src.join("all-hole"), 5 * mib, &[]);
    sparse_file(&src.join("ends-in-hole"), 9 * mib, &[(mib, block(9))]);
    fs::write(src.join("dense"), noise(100_000, 10)).unwrap();
    // The huge file alone: a few KiB.
    let alone = tmp.path().join("alone");
    fs::create_dir_all(&alone).unwrap();
    fs::hard_link(src.join("huge"), alone.join("huge")).unwrap();
    let one = [Tree {
        name: "volumes/0".into(),
        dir: alone,
        kind: TreeKind::Plain,
    }];
    let info =
        snapshot::write(&one, &tmp.path().join("one.snap"), &ANY_FREE, no_progress()).unwrap();
    eprintln!(
        "snapshot of a {huge}-byte file holding 12 KiB: {} bytes",
        info.bytes
    );
    assert!(info.bytes < 16 << 10, "{} bytes", info.bytes);

    let trees = [Tree {
        name: "volumes/0".into(),
        dir: src.clone(),
        kind: TreeKind::Plain,
    }];
    let snap = tmp.path().join("s.snap");
    let info = snapshot::write(&trees, &snap, &ANY_FREE, no_progress()).unwrap();
    eprintln!(
        "snapshot of {huge} + 78 MiB of sparse files: {} bytes",
        info.bytes
    );
    // 4 x 4 KiB + 310 KB + 100 KB of noise, headers and maps.
    assert!(info.bytes < 512 << 10, "{} bytes", info.bytes);

    let dst = tmp.path().join("dst");
    let targets = [Tree {
        dir: dst.clone(),
        ..trees[0].clone()
    }];
    let stats = snapshot::restore(&snap, &info.sha256, &targets, &ANY_FREE, no_progress()).unwrap();
    let names = ["huge", "islands", "all-hole", "ends-in-hole", "dense"];
    let data: u64 = names
        .iter()
        .flat_map(|n| data_of(&src.join(n)))
        .map(|(s, _)| s.len)
        .sum();
    assert_eq!(stats.content_bytes, data, "only data is written");
    for name in names {
        assert_same_sparse(&src.join(name), &dst.join(name));
    }
    assert!(data_of(&dst.join("all-hole")).is_empty());
    assert_eq!(fs::metadata(dst.join("all-hole")).unwrap().blocks(), 0);

    // The representation is GNU tar's own: it extracts the same files, holes included.
    let out = tmp.path().join("gnu");
    fs::create_dir_all(&out).unwrap();
    let status = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "zstd -dc '{}' | tar -xf - -C '{}'",
            snap.display(),
            out.display()
        ))
        .status()
        .unwrap();
    assert!(status.success());
    for name in names {
        assert_same_sparse(&src.join(name), &out.join("volumes/0").join(name));
    }
}

/// A snapshot of tree "rootfs" whose second entry is a sparse file: PAX `records` (key, value),
/// the ustar `kind`, and `content` (map and data) as is.
fn sparse_snapshot(
    dir: &Path,
    records: &[(&str, &str)],
    kind: EntryType,
    content: &[u8],
) -> (PathBuf, String) {
    let mut b = tar::Builder::new(Vec::new());
    let json = br#"{"format":2,"trees":["rootfs"],"created_unix_ms":0}"#;
    let mut h = Header::new_ustar();
    h.set_path("dormant-snapshot.json").unwrap();
    h.set_size(json.len() as u64);
    h.set_cksum();
    b.append(&h, &json[..]).unwrap();
    let mut pax = Vec::new();
    for (k, v) in records {
        format::pax_record(&mut pax, k.as_bytes(), v.as_bytes());
    }
    let mut h = Header::new_ustar();
    h.set_entry_type(EntryType::XHeader);
    h.set_size(pax.len() as u64);
    h.set_cksum();
    b.append(&h, &pax[..]).unwrap();
    let mut h = Header::new_ustar();
    h.set_path("rootfs/GNUSparseFile.0/f").unwrap();
    h.set_entry_type(kind);
    h.set_mode(0o644);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h.set_size(content.len() as u64);
    h.set_cksum();
    b.append(&h, content).unwrap();
    let path = dir.join("s.snap");
    fs::write(
        &path,
        zstd::encode_all(&b.into_inner().unwrap()[..], 3).unwrap(),
    )
    .unwrap();
    let sha = snapshot::sha256_file(&path).unwrap();
    (path, sha)
}

/// PAX records of a sparse entry, as (key, value).
type Records = Vec<(&'static str, &'static str)>;

fn map(text: &str, data: &[u8]) -> Vec<u8> {
    let mut m = text.as_bytes().to_vec();
    m.resize(m.len().div_ceil(512) * 512, 0);
    m.extend_from_slice(data);
    m
}

#[test]
fn hostile_sparse_entries_are_refused() {
    let good = |size: &'static str| {
        vec![
            ("GNU.sparse.major", "1"),
            ("GNU.sparse.minor", "0"),
            ("GNU.sparse.name", "rootfs/f"),
            ("GNU.sparse.realsize", size),
        ]
    };
    let with = |size, extra: (&'static str, &'static str)| {
        let mut r: Vec<(&str, &str)> = good(size);
        r.push(extra);
        r
    };
    let without = |key: &str| {
        let mut r = good("100");
        r.retain(|(k, _)| *k != key);
        r
    };
    let reg = EntryType::Regular;
    let cases: Vec<(&str, Records, EntryType, Vec<u8>)> = vec![
        (
            "past the end",
            good("100"),
            reg,
            map("1\n95\n10\n", &[1; 10]),
        ),
        (
            "overlap",
            good("100"),
            reg,
            map("2\n0\n10\n5\n10\n", &[1; 20]),
        ),
        (
            "data longer than the map says",
            good("100"),
            reg,
            map("1\n0\n10\n", &[1; 11]),
        ),
        (
            "data shorter than the map says",
            good("100"),
            reg,
            map("1\n0\n10\n", &[1; 9]),
        ),
        ("too many segments", good("100"), reg, map("100000\n", &[])),
        (
            "size past i64",
            good("9223372036854775808"),
            reg,
            map("0\n", &[]),
        ),
        ("size not a number", good("1e3"), reg, map("0\n", &[])),
        (
            "sparse symlink",
            good("100"),
            EntryType::Symlink,
            map("0\n", &[]),
        ),
        (
            "version 0.1",
            with("100", ("GNU.sparse.minor", "1")),
            reg,
            map("0\n", &[]),
        ),
        ("no name", without("GNU.sparse.name"), reg, map("0\n", &[])),
        (
            "no size",
            without("GNU.sparse.realsize"),
            reg,
            map("0\n", &[]),
        ),
        (
            "path and name",
            with("100", ("path", "rootfs/g")),
            reg,
            map("0\n", &[]),
        ),
        (
            "old format's map",
            with("100", ("GNU.sparse.map", "0,10")),
            reg,
            map("0\n", &[]),
        ),
    ];
    for (label, records, kind, content) in cases {
        let tmp = TempDir::new("sparse-hostile");
        let (snap, sha) = sparse_snapshot(tmp.path(), &records, kind, &content);
        let target = tmp.path().join("target");
        let targets = [Tree {
            name: "rootfs".into(),
            dir: target.clone(),
            kind: TreeKind::OverlayUpper,
        }];
        match snapshot::restore(&snap, &sha, &targets, &ANY_FREE, no_progress()) {
            Err(SnapshotError::Corrupt(why)) => eprintln!("{label}: {why}"),
            other => panic!("{label}: expected Corrupt, got {other:?}"),
        }
        // Whatever was created is inside the target and no longer than the entry says.
        if let Ok(m) = fs::metadata(target.join("f")) {
            assert!(m.len() <= 100 && m.blocks() <= 8, "{label}: {m:?}");
        }
    }

    // A sparse name is checked like any path.
    let tmp = TempDir::new("sparse-escape");
    let mut records = good("100");
    records[2] = ("GNU.sparse.name", "rootfs/../../escape-dormant-test");
    let (snap, sha) = sparse_snapshot(tmp.path(), &records, EntryType::Regular, &map("0\n", &[]));
    let targets = [Tree {
        name: "rootfs".into(),
        dir: tmp.path().join("target"),
        kind: TreeKind::OverlayUpper,
    }];
    let err = snapshot::restore(&snap, &sha, &targets, &ANY_FREE, no_progress()).unwrap_err();
    assert!(matches!(err, SnapshotError::Unsafe { .. }), "{err}");
    assert!(!tmp
        .path()
        .parent()
        .unwrap()
        .join("escape-dormant-test")
        .exists());

    // And a well-formed one restores: apparent size, data at its offset, the rest a hole.
    let tmp = TempDir::new("sparse-ok");
    let (snap, sha) = sparse_snapshot(
        tmp.path(),
        &good("100000"),
        EntryType::Regular,
        &map("2\n90000\n3\n100000\n0\n", b"abc"),
    );
    let target = tmp.path().join("target");
    let targets = [Tree {
        name: "rootfs".into(),
        dir: target.clone(),
        kind: TreeKind::OverlayUpper,
    }];
    snapshot::restore(&snap, &sha, &targets, &ANY_FREE, no_progress()).unwrap();
    let f = target.join("f");
    assert_eq!(fs::metadata(&f).unwrap().len(), 100_000);
    let data = data_of(&f);
    assert_eq!(data.len(), 1);
    assert_eq!(
        &data[0].1[90_000 - data[0].0.offset as usize..][..3],
        b"abc"
    );
}
