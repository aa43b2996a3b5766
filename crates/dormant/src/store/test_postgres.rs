//! A real PostgreSQL server for tests: Debian's binaries
//! (`/usr/lib/postgresql/*/bin`), a cluster in a temp dir on a free loopback
//! port, started once per test process and shared, one fresh database per
//! test. A watchdog shell stops it and removes its dir when the test
//! process exits, however it exits (its stdin is a pipe from this process).
//!
//! Uses only std and the `postgres` crate: the integration tests include
//! this same file (`tests/common`).

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// The password of the tests' superuser `dormant` (scram-sha-256 on every
/// connection, so the URL's password is really used).
pub const PASSWORD: &str = "pg-test-secret-7f3a";
const USER: &str = "dormant";

/// The shared server of this test process.
pub struct TestPostgres {
    pub port: u16,
    dir: PathBuf,
    /// Held until the process exits: closing it stops the server.
    _watchdog_stdin: Mutex<ChildStdin>,
    _watchdog: Mutex<Child>,
    databases: AtomicU32,
}

/// Starts the server the first time; the same one after.
pub fn server() -> &'static TestPostgres {
    static SERVER: OnceLock<TestPostgres> = OnceLock::new();
    SERVER.get_or_init(|| {
        // Off any async thread: the client blocks on a runtime of its own.
        std::thread::spawn(start)
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}

impl TestPostgres {
    /// A URL for `database` with the tests' user and password.
    pub fn url(&self, database: &str) -> String {
        format!(
            "postgres://{USER}:{PASSWORD}@127.0.0.1:{}/{database}",
            self.port
        )
    }

    /// A new, empty database for one test; its URL.
    pub fn create_database(&self) -> String {
        let n = self.databases.fetch_add(1, Ordering::Relaxed);
        let name = format!("t{}_{n}", std::process::id());
        let url = self.url("postgres");
        let sql = format!("CREATE DATABASE {name}");
        std::thread::spawn(move || {
            let mut client = postgres::Client::connect(&url, postgres::NoTls)
                .expect("connect to the test PostgreSQL");
            client.batch_execute(&sql).expect("create a test database");
        })
        .join()
        .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        self.url(&name)
    }

    /// Stops the server abruptly (SIGKILL, like a crash) and starts it again
    /// on the same port and data; returns once it accepts connections.
    #[allow(dead_code)] // the integration tests' (the unit tests share one server)
    pub fn restart(&self) {
        let data = self.dir.join("data");
        let pid = std::fs::read_to_string(data.join("postmaster.pid"))
            .ok()
            .and_then(|text| text.lines().next().map(str::to_owned))
            .expect("the test PostgreSQL's pid file");
        let _ = Command::new("kill").args(["-QUIT", &pid]).status();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Path::new(&format!("/proc/{pid}")).exists() {
            assert!(Instant::now() < deadline, "PostgreSQL {pid} did not stop");
            std::thread::sleep(Duration::from_millis(20));
        }
        // The watchdog's loop starts it again. Waiting connects with the
        // blocking client: off any async thread.
        let (url, dir) = (self.url("postgres"), self.dir.clone());
        std::thread::spawn(move || wait_ready(&url, &dir, None))
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
    }
}

fn start() -> TestPostgres {
    let bin = find_bin().unwrap_or_else(|| {
        panic!(
            "PostgreSQL's server binaries are missing (no /usr/lib/postgresql/*/bin/postgres): \
             apt-get install postgresql"
        )
    });
    let root = geteuid_is_root();
    let dir = std::env::temp_dir().join(format!(
        "dormant-pg-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos())
    ));
    std::fs::create_dir_all(&dir).expect("create the test PostgreSQL dir");
    std::fs::write(dir.join("pwfile"), PASSWORD).expect("write the password file");
    if root {
        // PostgreSQL refuses to run as root: its files belong to `postgres`.
        let status = Command::new("chown")
            .args(["-R", "postgres:postgres"])
            .arg(&dir)
            .status()
            .expect("run chown");
        assert!(status.success(), "chown postgres {}", dir.display());
    }
    let as_postgres = |program: &Path| {
        if root {
            let mut cmd = Command::new("runuser");
            cmd.args(["-u", "postgres", "--"]).arg(program);
            cmd
        } else {
            Command::new(program)
        }
    };
    let out = as_postgres(&bin.join("initdb"))
        .arg("-D")
        .arg(dir.join("data"))
        .args([
            "-U",
            USER,
            "--auth=scram-sha-256",
            "--no-locale",
            "-E",
            "UTF8",
            "--no-sync",
        ])
        .arg(format!("--pwfile={}", dir.join("pwfile").display()))
        .output()
        .expect("run initdb");
    assert!(
        out.status.success(),
        "initdb failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let port = free_port();
    // The watchdog: runs the server (again after a test kills it, see
    // `restart`) until this process's end closes its stdin, then stops it
    // and removes the dir.
    let server = format!(
        "{prefix}{postgres} -D {data} -p {port} -k {dir} -c listen_addresses=127.0.0.1 \
         -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=300",
        prefix = if root { "runuser -u postgres -- " } else { "" },
        postgres = bin.join("postgres").display(),
        data = dir.join("data").display(),
        dir = dir.display(),
    );
    let script = format!(
        r#"
        ( while [ ! -e {dir}/stop ]; do {server} >>{dir}/log 2>&1; sleep 0.1; done ) &
        read _ignored
        touch {dir}/stop
        pid=$(head -1 {dir}/data/postmaster.pid 2>/dev/null)
        [ -n "$pid" ] && kill -INT "$pid"
        wait
        rm -rf {dir}
        "#,
        dir = dir.display(),
    );
    let mut watchdog = Command::new("sh")
        .args(["-c", &script])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the test PostgreSQL");
    let stdin = watchdog.stdin.take().expect("a piped stdin");
    let server = TestPostgres {
        port,
        dir,
        _watchdog_stdin: Mutex::new(stdin),
        _watchdog: Mutex::new(watchdog),
        databases: AtomicU32::new(0),
    };
    wait_ready(
        &server.url("postgres"),
        &server.dir,
        Some(&server._watchdog),
    );
    server
}

/// Waits until the server accepts `url` (30 s at most).
fn wait_ready(url: &str, dir: &Path, watchdog: Option<&Mutex<Child>>) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match postgres::Client::connect(url, postgres::NoTls) {
            Ok(_) => return,
            Err(e) => {
                let exited = watchdog
                    .and_then(|w| w.lock().ok()?.try_wait().ok().flatten())
                    .is_some();
                if exited || Instant::now() > deadline {
                    panic!(
                        "the test PostgreSQL did not start ({e}); its log:\n{}",
                        read_log(dir)
                    );
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

fn read_log(dir: &Path) -> String {
    let mut text = String::new();
    if let Ok(mut file) = std::fs::File::open(dir.join("log")) {
        let _ = file.read_to_string(&mut text);
    }
    text
}

/// The newest `/usr/lib/postgresql/<version>/bin` with a server in it.
fn find_bin() -> Option<PathBuf> {
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let version = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            (bin.join("postgres").exists() && bin.join("initdb").exists()).then_some((version, bin))
        })
        .collect();
    found.sort();
    found.pop().map(|(_, bin)| bin)
}

fn geteuid_is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|out| String::from_utf8_lossy(&out.stdout).trim() == "0")
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port()
}
