//! Unit tests of the snapshot stores: the data dir's, and the object store's against a real
//! S3 server (`s3s-fs`) started on a free loopback port with a temporary root. The helpers
//! here; the tests in `local`, `s3` and `measure`.

mod local;
mod measure;
mod s3;

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
