//! Unit tests of the snapshot stores: the data dir's, and the object store's against a real
//! S3 server (`s3s-fs`) started on a free loopback port with a temporary root.

use std::collections::HashSet;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use object_store::aws::AmazonS3Builder;
use object_store::multipart::MultipartStore;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStoreExt, PutPayload};

use super::{LocalSnapshots, S3Snapshots, S3Tuning, SnapshotLocation, SnapshotStore};
use crate::domain::SnapshotRecord;
use crate::snapshot::{SnapshotError, SnapshotInfo};

const BUCKET: &str = "snaps";
const ACCESS_KEY: &str = "dormant-test";
const SECRET_KEY: &str = "dormant-test-secret";
const NODE: &str = "node0a1b2c";

/// How to get the S3 server the tests run.
pub const S3S_FS_MISSING: &str = "the object-store tests need the S3 server `s3s-fs` on the PATH or in ~/.cargo/bin: install it with `cargo install s3s-fs --version 0.14.1 --features binary --locked` (.ci/run does)";

/// The `s3s-fs` binary, or a panic saying how to install it.
pub fn s3s_fs_binary() -> PathBuf {
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("s3s-fs"))
            .find(|p| p.is_file())
    });
    let in_cargo = std::env::var_os("HOME")
        .map(|home| PathBuf::from(home).join(".cargo/bin/s3s-fs"))
        .filter(|p| p.is_file());
    on_path.or(in_cargo).expect(S3S_FS_MISSING)
}

/// A real S3 server on a free loopback port, its data in a temporary dir; killed on drop.
struct S3Server {
    child: Child,
    endpoint: String,
    root: PathBuf,
}

impl S3Server {
    fn start(root: &Path) -> S3Server {
        std::fs::create_dir_all(root.join(BUCKET)).unwrap();
        let port = free_port();
        let child = Command::new(s3s_fs_binary())
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args(["--access-key", ACCESS_KEY, "--secret-key", SECRET_KEY])
            .arg(root)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect(S3S_FS_MISSING);
        let server = S3Server {
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
            root: root.to_owned(),
        };
        for _ in 0..500 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return server;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!("s3s-fs did not listen on 127.0.0.1:{port} within 5 s");
    }

    fn builder(&self) -> AmazonS3Builder {
        builder_for(&self.endpoint)
    }

    /// Multipart uploads the server still holds parts of.
    fn unfinished_parts(&self) -> Vec<String> {
        std::fs::read_dir(&self.root)
            .unwrap()
            .flatten()
            .filter_map(|e| e.file_name().to_str().map(str::to_owned))
            .filter(|name| name.starts_with(".upload_id-"))
            .collect()
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn builder_for(endpoint: &str) -> AmazonS3Builder {
    AmazonS3Builder::new()
        .with_endpoint(endpoint)
        .with_region("us-east-1")
        .with_access_key_id(ACCESS_KEY)
        .with_secret_access_key(SECRET_KEY)
        .with_allow_http(true)
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn temp_dir(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "dormant-snapstore-{test}-{}",
        crate::token::random_hex(6)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Small parts and quick retries, so a few MiB make a multipart upload.
fn tuning() -> S3Tuning {
    S3Tuning {
        part_bytes: 5 << 20,
        concurrency: 2,
        request_timeout: Duration::from_secs(30),
        connect_timeout: Duration::from_secs(2),
        retries: 2,
        first_backoff: Duration::from_millis(20),
        min_free_disk: 0,
    }
}

fn s3_store(builder: AmazonS3Builder, spool: &Path, prefix: &str) -> S3Snapshots {
    std::fs::create_dir_all(spool).unwrap();
    S3Snapshots::new(builder, BUCKET, prefix, NODE, spool.to_owned(), tuning()).unwrap()
}

/// Pseudo-random bytes (incompressible, reproducible).
fn content(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Writes `bytes` where the store wants a new snapshot of `container`, as `snapshot::write`
/// would; returns its name and record.
fn stage(store: &dyn SnapshotStore, container: &str, bytes: &[u8]) -> SnapshotRecord {
    let created_at = 1_764_669_600_000;
    let file = store.new_name(container, created_at);
    std::fs::write(store.staging_path(&file), bytes).unwrap();
    SnapshotRecord {
        file,
        bytes: bytes.len() as u64,
        files: 1,
        sha256: sha256_hex(bytes),
        created_at,
    }
}

fn info(record: &SnapshotRecord) -> SnapshotInfo {
    SnapshotInfo {
        bytes: record.bytes,
        files: record.files,
        sha256: record.sha256.clone(),
    }
}

fn dir_entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str().map(str::to_owned))
        .collect();
    names.sort();
    names
}

#[test]
fn snapshots_urls_parse_and_bad_ones_say_what_is_expected() {
    assert_eq!(
        "s3://my-bucket/dormant/prod/".parse::<SnapshotLocation>(),
        Ok(SnapshotLocation::S3 {
            bucket: "my-bucket".into(),
            prefix: "dormant/prod".into()
        })
    );
    assert_eq!(
        "s3://my-bucket".parse::<SnapshotLocation>(),
        Ok(SnapshotLocation::S3 {
            bucket: "my-bucket".into(),
            prefix: String::new()
        })
    );
    for bad in [
        "/srv/snapshots",
        "s3://",
        "s3://B/x",
        "s3://ok-bucket/a//b",
        "s3://ok-bucket/../x",
    ] {
        let error = bad.parse::<SnapshotLocation>().unwrap_err();
        assert!(error.contains("s3://bucket"), "{bad}: {error}");
    }
}

#[tokio::test]
async fn the_local_store_keeps_in_place_and_cleans_what_no_row_records() {
    let dir = temp_dir("local");
    let store = LocalSnapshots::new(dir.clone());
    let record = stage(&store, "alice", b"snapshot bytes");
    store.keep(&record.file, &info(&record)).await.unwrap();
    let fetched = store.fetch(&record).await.unwrap();
    assert_eq!(fetched.path, dir.join(&record.file));
    assert!(!fetched.verified, "the restore checks a local file itself");
    drop(fetched);
    assert!(
        dir.join(&record.file).is_file(),
        "a kept file outlives its fetch"
    );

    std::fs::write(dir.join("bob-1.snap.zst"), b"orphan").unwrap();
    std::fs::write(dir.join("carol-2.snap.zst.tmp-0123"), b"partial").unwrap();
    let referenced = HashSet::from([record.file.clone()]);
    let removed = store.clean_up(&referenced).await;
    assert_eq!(removed.len(), 2, "{removed:?}");
    assert_eq!(dir_entries(&dir), vec![record.file.clone()]);

    store.delete(&record.file).await.unwrap();
    store.delete(&record.file).await.unwrap();
    assert!(store.known_missing(&record.file));
    match store.fetch(&record).await {
        Err(SnapshotError::Missing { what, .. }) => assert_eq!(what, record.file),
        other => panic!("expected Missing, got {other:?}"),
    }
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_goes_up_in_parts_and_comes_back_verified() {
    let dir = temp_dir("roundtrip");
    let server = S3Server::start(&dir.join("s3"));
    let spool = dir.join("spool");
    let store = s3_store(server.builder(), &spool, "dormant/test");
    assert_eq!(store.describe(), "s3://snaps/dormant/test");

    // 12 MiB and a bit: three parts of 5 MiB (the last one short).
    let big = content((12 << 20) + 12_345, 7);
    let record = stage(&store, "alice", &big);
    assert_eq!(record.file, format!("{NODE}/alice-1764669600000.snap.zst"));
    store.keep(&record.file, &info(&record)).await.unwrap();
    assert!(
        dir_entries(&spool).is_empty(),
        "the spool file is deleted once uploaded"
    );
    assert!(server.unfinished_parts().is_empty());
    let object = server
        .root
        .join(BUCKET)
        .join("dormant/test")
        .join(&record.file);
    assert_eq!(
        std::fs::read(&object).unwrap(),
        big,
        "the object is the file"
    );

    // A small one goes up in one PUT.
    let small = stage(&store, "bob", b"tiny snapshot");
    store.keep(&small.file, &info(&small)).await.unwrap();

    let fetched = store.fetch(&record).await.unwrap();
    assert!(fetched.verified);
    assert!(fetched.path.starts_with(&spool));
    assert_eq!(std::fs::read(&fetched.path).unwrap(), big);
    let downloaded = fetched.path.clone();
    drop(fetched);
    assert!(
        !downloaded.exists(),
        "a download is deleted once restored from"
    );
    assert!(!store.known_missing(&record.file));

    store.delete(&record.file).await.unwrap();
    store.delete(&record.file).await.unwrap();
    assert!(!object.exists());
    match store.fetch(&record).await {
        Err(SnapshotError::Missing { what, why }) => {
            assert_eq!(what, format!("s3://snaps/dormant/test/{}", record.file));
            assert!(why.contains("no such object"), "{why}");
        }
        other => panic!("expected Missing, got {other:?}"),
    }
    assert!(dir_entries(&spool).is_empty());
    drop(server);
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_object_is_refused_and_nothing_is_left_to_restore_from() {
    let dir = temp_dir("damaged");
    let server = S3Server::start(&dir.join("s3"));
    let spool = dir.join("spool");
    let store = s3_store(server.builder(), &spool, "");
    let bytes = content(6 << 20, 11);
    let record = stage(&store, "alice", &bytes);
    store.keep(&record.file, &info(&record)).await.unwrap();

    // Same size, one byte changed: only the checksum tells.
    let mut damaged = bytes.clone();
    damaged[3 << 20] ^= 0x40;
    let client = server.builder().with_bucket_name(BUCKET).build().unwrap();
    let key = ObjectPath::parse(&record.file).unwrap();
    client.put(&key, PutPayload::from(damaged)).await.unwrap();
    match store.fetch(&record).await {
        Err(SnapshotError::ChecksumMismatch { path, expected, .. }) => {
            assert_eq!(path, PathBuf::from(format!("s3://snaps/{}", record.file)));
            assert_eq!(expected, record.sha256);
        }
        other => panic!("expected ChecksumMismatch, got {other:?}"),
    }
    assert!(
        dir_entries(&spool).is_empty(),
        "no download is left to restore from"
    );

    // A different size is refused before downloading anything.
    client
        .put(&key, PutPayload::from(b"short".to_vec()))
        .await
        .unwrap();
    let error = store.fetch(&record).await.unwrap_err();
    assert!(
        matches!(error, SnapshotError::ChecksumMismatch { .. }),
        "{error}"
    );
    assert!(error.to_string().contains("5 bytes"), "{error}");
    drop(server);
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_does_not_answer_is_named_with_what_to_check() {
    let dir = temp_dir("down");
    let spool = dir.join("spool");
    // Nothing listens there.
    let endpoint = format!("http://127.0.0.1:{}", free_port());
    let store = s3_store(builder_for(&endpoint), &spool, "p");
    let record = stage(&store, "alice", &content(1 << 20, 3));
    let error = store.keep(&record.file, &info(&record)).await.unwrap_err();
    let message = error.to_string();
    assert!(
        message.contains(&format!("s3://snaps/p/{}", record.file)),
        "{message}"
    );
    assert!(message.contains("is the endpoint reachable"), "{message}");
    assert!(message.contains("AWS_ACCESS_KEY_ID"), "{message}");
    assert!(
        dir_entries(&spool).is_empty(),
        "nothing kept after a failed upload"
    );

    let error = store.fetch(&record).await.unwrap_err();
    assert!(matches!(error, SnapshotError::Remote(_)), "{error}");
    assert!(error.to_string().contains("HEAD s3://snaps/p/"), "{error}");
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_up_removes_orphans_of_this_node_and_aborts_unfinished_uploads() {
    let dir = temp_dir("cleanup");
    let server = S3Server::start(&dir.join("s3"));
    let spool = dir.join("spool");
    let store = s3_store(server.builder(), &spool, "pre");
    let kept = stage(&store, "alice", b"recorded");
    store.keep(&kept.file, &info(&kept)).await.unwrap();
    let orphan = stage(&store, "bob", b"uploaded, never recorded");
    store.keep(&orphan.file, &info(&orphan)).await.unwrap();
    let client = server.builder().with_bucket_name(BUCKET).build().unwrap();
    let theirs = ObjectPath::parse("pre/othernode/carol-1.snap.zst").unwrap();
    client
        .put(&theirs, PutPayload::from(b"another node's".to_vec()))
        .await
        .unwrap();

    // A crash mid-upload: a spool file, a part uploaded, the marker beside them.
    let cut = stage(&store, "dave", &content(6 << 20, 5));
    let cut_key = ObjectPath::parse(format!("pre/{}", cut.file)).unwrap();
    let id = client.create_multipart(&cut_key).await.unwrap();
    client
        .put_part(&cut_key, &id, 0, PutPayload::from(content(5 << 20, 9)))
        .await
        .unwrap();
    assert_eq!(server.unfinished_parts().len(), 1);
    let marker = serde_json::json!({"key": cut_key.as_ref(), "upload_id": id});
    std::fs::write(
        spool.join("dave-1764669600000.snap.zst.upload"),
        marker.to_string(),
    )
    .unwrap();
    std::fs::write(spool.join("erin-5.snap.zst.download.tmp-77"), b"half").unwrap();

    let referenced = HashSet::from([kept.file.clone()]);
    let removed = store.clean_up(&referenced).await;
    assert_eq!(removed.len(), 4, "{removed:?}");
    assert!(dir_entries(&spool).is_empty(), "{:?}", dir_entries(&spool));
    assert!(
        server.unfinished_parts().is_empty(),
        "the upload was aborted"
    );
    assert!(
        client.head(&theirs).await.is_ok(),
        "another node's object is not touched"
    );
    let kept_key = ObjectPath::parse(format!("pre/{}", kept.file)).unwrap();
    assert!(client.head(&kept_key).await.is_ok());
    let orphan_key = ObjectPath::parse(format!("pre/{}", orphan.file)).unwrap();
    assert!(matches!(
        client.head(&orphan_key).await,
        Err(object_store::Error::NotFound { .. })
    ));
    drop(server);
    std::fs::remove_dir_all(dir).unwrap();
}

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
    let fetched = store.fetch(&record).await.unwrap();
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshots_from_before_the_object_store_stay_local_and_are_kept() {
    let dir = temp_dir("before");
    let server = S3Server::start(&dir.join("s3"));
    let spool = dir.join("spool");
    // Archived while snapshots were kept in the data dir.
    std::fs::create_dir_all(&spool).unwrap();
    let local = LocalSnapshots::new(spool.clone());
    let old = stage(&local, "alice", b"archived before --snapshots s3://");
    let store = s3_store(server.builder(), &spool, "");
    assert!(!store.known_missing(&old.file));
    let removed = store.clean_up(&HashSet::from([old.file.clone()])).await;
    assert_eq!(
        removed,
        Vec::<String>::new(),
        "a recorded local snapshot stays"
    );
    let fetched = store.fetch(&old).await.unwrap();
    assert_eq!(fetched.path, spool.join(&old.file));
    assert!(!fetched.verified, "the restore checks it, as before");
    drop(fetched);
    assert!(spool.join(&old.file).is_file(), "not a download: kept");
    store.delete(&old.file).await.unwrap();
    assert!(store.known_missing(&old.file));
    drop(server);
    std::fs::remove_dir_all(dir).unwrap();
}
