//! A real S3 server for the tests: `s3s-fs` on a free loopback port, its buckets directories
//! in a temporary root; killed and removed when dropped.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub const ACCESS_KEY: &str = "dormant-test";
pub const SECRET_KEY: &str = "dormant-test-secret";

/// How to get the S3 server the tests run.
pub const S3S_FS_MISSING: &str = "these tests need the S3 server `s3s-fs` on the PATH or in ~/.cargo/bin: install it with `cargo install s3s-fs --version 0.14.1 --features binary --locked` (.ci/run does)";

pub struct S3Server {
    child: Child,
    pub endpoint: String,
    pub root: PathBuf,
}

impl S3Server {
    /// Starts a server with `bucket` made.
    pub fn start(bucket: &str) -> S3Server {
        let root = std::env::temp_dir().join(super::unique("dormant-s3"));
        std::fs::create_dir_all(root.join(bucket)).unwrap();
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(binary())
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args(["--access-key", ACCESS_KEY, "--secret-key", SECRET_KEY])
            .arg(&root)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect(S3S_FS_MISSING);
        let server = S3Server {
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
            root,
        };
        for _ in 0..500 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return server;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!("s3s-fs did not listen on 127.0.0.1:{port} within 5 s");
    }

    /// The environment dormant reaches this server with.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ENDPOINT_URL", self.endpoint.clone()),
            ("AWS_REGION", "us-east-1".into()),
            ("AWS_ACCESS_KEY_ID", ACCESS_KEY.into()),
            ("AWS_SECRET_ACCESS_KEY", SECRET_KEY.into()),
            ("AWS_ALLOW_HTTP", "true".into()),
        ]
    }

    /// Every object under `dir` of `bucket` (recursively), as keys relative to the bucket.
    pub fn objects(&self, bucket: &str) -> Vec<String> {
        let top = self.root.join(bucket);
        let mut found = Vec::new();
        let mut stack = vec![top.clone()];
        while let Some(dir) = stack.pop() {
            for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
                let path = entry.path();
                if path.is_dir() {
                    stack.push(path);
                } else if let Ok(key) = path.strip_prefix(&top) {
                    found.push(key.to_string_lossy().into_owned());
                }
            }
        }
        found.sort();
        found
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

fn binary() -> PathBuf {
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("s3s-fs"))
            .find(|p| p.is_file())
    });
    let in_cargo = std::env::var_os("HOME")
        .map(|home| Path::new(&home).join(".cargo/bin/s3s-fs"))
        .filter(|p| p.is_file());
    on_path.or(in_cargo).expect(S3S_FS_MISSING)
}
