//! A measurement run by hand: a big snapshot's upload and download, and the memory they take.

use super::*;

/// Peak resident memory of this process so far (VmHWM), in bytes.
fn peak_rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    line.split_whitespace()
        .nth(1)
        .unwrap()
        .parse::<u64>()
        .unwrap()
        * 1024
}

/// Measures a 512 MiB snapshot's upload and download with the default tuning (8 MiB
/// parts, 4 at once) and what they add to the process's peak memory. Run by hand:
/// `cargo test -p dormant --release --lib big_snapshot -- --ignored --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement: moves 1 GiB through a local S3 server"]
async fn big_snapshot_goes_up_and_down_in_bounded_memory() {
    use std::io::Write;
    let dir = temp_dir("big");
    let server = S3Server::start(&dir.join("s3"));
    let spool = dir.join("spool");
    std::fs::create_dir_all(&spool).unwrap();
    let store = S3Snapshots::new(
        server.builder(),
        BUCKET,
        "big",
        NODE,
        spool.clone(),
        S3Tuning::default(),
    )
    .unwrap();
    let size: u64 = 512 << 20;
    let file = store.new_name("big", 1);
    let mut hasher = <sha2::Sha256 as sha2::Digest>::new();
    {
        let mut out =
            std::io::BufWriter::new(std::fs::File::create(store.staging_path(&file)).unwrap());
        for chunk in 0..(size >> 20) {
            let block = content(1 << 20, chunk + 1);
            sha2::Digest::update(&mut hasher, &block);
            out.write_all(&block).unwrap();
        }
    }
    let sha256: String = sha2::Digest::finalize(hasher)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let record = SnapshotRecord {
        file: file.clone(),
        bytes: size,
        files: 1,
        sha256,
        created_at: 1,
    };
    let before = peak_rss();
    let started = std::time::Instant::now();
    store.keep(&file, &info(&record)).await.unwrap();
    let up = started.elapsed();
    let after_up = peak_rss();
    let started = std::time::Instant::now();
    let fetched = store.fetch(&record, &|_| {}).await.unwrap();
    let down = started.elapsed();
    let after_down = peak_rss();
    let mib = (size >> 20) as f64;
    println!(
        "512 MiB: upload {:.2} s ({:.0} MiB/s), download+verify {:.2} s ({:.0} MiB/s); peak RSS {} MiB before, +{} MiB after the upload, +{} MiB after the download",
        up.as_secs_f64(),
        mib / up.as_secs_f64(),
        down.as_secs_f64(),
        mib / down.as_secs_f64(),
        before >> 20,
        (after_up - before) >> 20,
        (after_down - before) >> 20,
    );
    assert!(
        after_down - before < 256 << 20,
        "more than the parts in flight"
    );
    drop(fetched);
    drop(server);
    std::fs::remove_dir_all(dir).unwrap();
}
