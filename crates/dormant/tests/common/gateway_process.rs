//! A gateway (Debian's nginx or HAProxy) run by a test as a plain process in
//! a temp dir of its own: found on the machine (or a failure saying what to
//! install), waited for until it listens, stopped and its dir removed when
//! dropped, even when the test fails.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// The path of a gateway's binary, or a failure saying what to install.
pub fn require(binary: &str, package: &str) -> PathBuf {
    let found = ["/usr/sbin", "/usr/bin", "/sbin", "/bin"]
        .iter()
        .map(|dir| Path::new(dir).join(binary))
        .chain(
            std::env::var_os("PATH")
                .iter()
                .flat_map(std::env::split_paths)
                .map(|dir| dir.join(binary)),
        )
        .find(|path| path.is_file());
    found.unwrap_or_else(|| {
        panic!(
            "`{binary}` is not installed: this test runs Debian's {package} beside dormant; \
             install it with `apt-get install {package}` (CI's .ci/run does)"
        )
    })
}

/// A free loopback port (the gateway binds it a moment later).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A gateway process, stopped when dropped (even when the test fails).
pub struct Gateway {
    pub child: Child,
    pub port: u16,
    pub dir: PathBuf,
    pub log: PathBuf,
}

impl Gateway {
    /// Its log, and what it wrote to stderr (where a bad configuration is
    /// told).
    pub fn log(&self) -> String {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let stderr = self.dir.join("stderr.log");
        match std::fs::read_to_string(&stderr) {
            Ok(text) if self.log != stderr && !text.trim().is_empty() => {
                format!("{log}\nstderr:\n{text}")
            }
            _ => log,
        }
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        // SIGTERM, so that nginx's master stops its workers too (SIGKILL
        // would leave them running); SIGKILL if it is still there after 5 s.
        let pid = rustix::process::Pid::from_child(&self.child);
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        for _ in 0..100 {
            if !matches!(self.child.try_wait(), Ok(None)) {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Waits until something accepts connections on the gateway's port, or
/// fails with its log.
pub fn wait_listening(gateway: &mut Gateway, what: &str) {
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", gateway.port)).is_ok() {
            return;
        }
        if let Ok(Some(status)) = gateway.child.try_wait() {
            panic!("{what} exited ({status}); its log:\n{}", gateway.log());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!(
        "{what} did not listen within 5 s; its log:\n{}",
        gateway.log()
    );
}

/// nginx's main configuration around `http_block` (what goes inside
/// `http { }`): everything nginx writes stays in `dir`, no system paths.
pub fn nginx_conf(dir: &Path, http_block: &str) -> String {
    let d = dir.display();
    format!(
        "worker_processes 1;\npid {d}/nginx.pid;\nerror_log {d}/error.log info;\n\
         events {{ worker_connections 128; }}\n\
         http {{\n  access_log off;\n  client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n  \
         fastcgi_temp_path {d}/fastcgi;\n  uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n\
         {http_block}}}\n"
    )
}

/// The command line that runs nginx on `dir`'s `nginx.conf` with `args`.
pub fn nginx_command(dir: &Path) -> Command {
    let mut command = Command::new(require("nginx", "nginx"));
    command
        .arg("-p")
        .arg(dir)
        .arg("-c")
        .arg(dir.join("nginx.conf"));
    command
}

/// Starts nginx in the foreground on `dir` (which holds its `nginx.conf`),
/// and waits until it listens on `port`.
pub fn start_nginx_in(dir: PathBuf, port: u16) -> Gateway {
    let child = nginx_command(&dir)
        .args(["-g", "daemon off;"])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("stderr.log")).unwrap())
        .spawn()
        .expect("start nginx");
    let mut gateway = Gateway {
        child,
        port,
        log: dir.join("error.log"),
        dir,
    };
    wait_listening(&mut gateway, "nginx");
    gateway
}
