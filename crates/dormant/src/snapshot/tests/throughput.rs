//! Throughput of write and restore on a 200 MB tree of mixed files, what making a restore
//! durable costs afterwards, and how either depends on other data waiting to be written.
//! Ignored by default; run
//! `cargo test --release -p dormant snapshot::tests::throughput -- --ignored --nocapture`.

use std::fs;
use std::time::Instant;

use super::super::{self as snapshot, Tree, TreeKind};
use super::{no_progress, noise, TempDir, ANY_FREE};

#[test]
#[ignore = "a measurement, not a check: run in release with --ignored --nocapture"]
fn write_and_restore_200_mb() {
    let tmp = TempDir::new("throughput");
    let src = tmp.path().join("src");
    // Mixed: a few big files, many small ones; half noise (incompressible), half text.
    let text: Vec<u8> = (0..)
        .flat_map(|i: u32| {
            format!("line {i} of some log or source file, fairly repetitive\n").into_bytes()
        })
        .take(64 << 10)
        .collect();
    let mut total = 0u64;
    let mut files = 0u64;
    let mut put = |rel: String, data: &[u8]| {
        let p = src.join(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, data).unwrap();
        total += data.len() as u64;
        files += 1;
    };
    for i in 0..8 {
        put(format!("big/blob{i}"), &noise(10 << 20, i + 1)); // 80 MB noise
    }
    for i in 0..4 {
        let log: Vec<u8> = text.iter().copied().cycle().take(10 << 20).collect();
        put(format!("var/log/app{i}.log"), &log); // 40 MB text
    }
    let small = noise(16 << 10, 99);
    for i in 0..2_500u64 {
        let d = format!("lib/pkg{}/mod{}", i % 50, i % 7);
        put(
            format!("{d}/noise{i}.bin"),
            &small[..(i as usize * 37) % small.len()],
        ); // ~20 MB
        put(
            format!("{d}/text{i}.txt"),
            &text[..(i as usize * 53) % (24 << 10)],
        ); // ~30 MB
    }
    for i in 0..20_000u64 {
        put(
            format!("etc/many{}/f{i}", i % 100),
            &text[..(i as usize % 2048)],
        ); // ~20 MB, tiny files
    }
    let mb = total as f64 / 1e6;
    let trees = [Tree {
        name: "rootfs".into(),
        dir: src,
        kind: TreeKind::OverlayUpper,
    }];
    let snap = tmp.path().join("s.snap");
    // Start from a clean page cache state: the setup's dirty data is not the restore's cost.
    rustix::fs::syncfs(fs::File::open(tmp.path()).unwrap()).unwrap();
    let t = Instant::now();
    let info = snapshot::write(&trees, &snap, &ANY_FREE, no_progress()).unwrap();
    let w = t.elapsed().as_secs_f64();
    let t = Instant::now();
    assert_eq!(snapshot::sha256_file(&snap).unwrap(), info.sha256);
    let c = t.elapsed().as_secs_f64();
    // The restore (what a wake waits for), then its flush (off the wake's path).
    let restore_into = |dir: &str| {
        let target = Tree {
            dir: tmp.path().join(dir),
            ..trees[0].clone()
        };
        let t = Instant::now();
        let stats = snapshot::restore(
            &snap,
            &info.sha256,
            std::slice::from_ref(&target),
            &ANY_FREE,
            no_progress(),
        )
        .unwrap();
        assert_eq!(stats.content_bytes, total);
        let restored = t.elapsed().as_secs_f64();
        let t = Instant::now();
        snapshot::make_durable(&[target]).unwrap();
        (restored, t.elapsed().as_secs_f64())
    };
    let (r, f) = restore_into("dst");
    // The same restore while 1 GB that has nothing to do with it waits to be written back on
    // the same filesystem: the restore should not care; its flush pays for the disk it shares.
    fs::write(tmp.path().join("unrelated"), vec![7u8; 1 << 30]).unwrap();
    let (busy, busy_flush) = restore_into("dst-busy");
    eprintln!(
        "snapshot throughput: {mb:.0} MB in {files} files -> {:.0} MB compressed ({:.0}%)\n  \
         write:   {w:.2} s = {:.0} MB/s, {:.0} files/s\n  \
         restore: {r:.2} s = {:.0} MB/s, {:.0} files/s (incl. checksum {c:.2} s; what a wake waits for)\n  \
         flush:   {f:.2} s after it (off the wake's path); restore + flush {:.2} s = {:.0} MB/s\n  \
         with 1 GB of unrelated dirty data: restore {busy:.2} s, flush {busy_flush:.2} s",
        info.bytes as f64 / 1e6,
        info.bytes as f64 * 100.0 / total as f64,
        mb / w,
        files as f64 / w,
        mb / r,
        files as f64 / r,
        r + f,
        mb / (r + f),
    );
}

#[test]
#[ignore = "a measurement, not a check: run in release with --ignored --nocapture"]
fn restore_with_and_without_unrelated_dirty_data() {
    let tmp = TempDir::new("sync-cost");
    let src = tmp.path().join("src");
    for i in 0..2_000u64 {
        let p = src.join(format!("d{}/f{i}", i % 40));
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, noise(16 << 10, i + 1)).unwrap();
    }
    let trees = [Tree {
        name: "rootfs".into(),
        dir: src,
        kind: TreeKind::OverlayUpper,
    }];
    let snap = tmp.path().join("s.snap");
    let info = snapshot::write(&trees, &snap, &ANY_FREE, no_progress()).unwrap();
    let sync_all = || rustix::fs::syncfs(fs::File::open(tmp.path()).unwrap()).unwrap();
    let mut times: [Vec<f64>; 2] = [Vec::new(), Vec::new()];
    let mut flushes: [Vec<f64>; 2] = [Vec::new(), Vec::new()];
    for round in 0..5 {
        for (dirty, seen) in times.iter_mut().enumerate() {
            sync_all();
            let unrelated = tmp.path().join("unrelated");
            if dirty == 1 {
                fs::write(&unrelated, vec![7u8; 1 << 30]).unwrap();
            }
            let dst = tmp.path().join(format!("dst-{round}-{dirty}"));
            let target = Tree {
                dir: dst.clone(),
                ..trees[0].clone()
            };
            let t = Instant::now();
            snapshot::restore(
                &snap,
                &info.sha256,
                std::slice::from_ref(&target),
                &ANY_FREE,
                no_progress(),
            )
            .unwrap();
            seen.push(t.elapsed().as_secs_f64());
            let t = Instant::now();
            snapshot::make_durable(&[target]).unwrap();
            flushes[dirty].push(t.elapsed().as_secs_f64());
            // Deleting drops the unrelated pages unwritten: each round starts clean.
            let _ = fs::remove_file(&unrelated);
            fs::remove_dir_all(&dst).unwrap();
        }
    }
    let labels = ["clean", "with 1 GB of unrelated dirty data"];
    for ((label, seen), flushed) in labels.iter().zip(&mut times).zip(&mut flushes) {
        for v in [&mut *seen, &mut *flushed] {
            v.sort_by(f64::total_cmp);
        }
        eprintln!(
            "restore of 2,000 files (32 MB), {label}: median {:.3} s, min {:.3} s, max {:.3} s; \
             its flush after: median {:.2} s",
            seen[seen.len() / 2],
            seen[0],
            seen[seen.len() - 1],
            flushed[flushed.len() / 2],
        );
    }
}
