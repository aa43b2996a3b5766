//! Test harness: runs the real `dormant` binary against the real Docker
//! daemon, each instance with its own data dir and node id, and removes every
//! Docker object that node made when the test ends, even when it fails.

#![allow(dead_code)]

pub mod hosts;
mod lab_slot;
pub mod processes;
pub mod s3;

use std::ffi::OsString;
use std::io::{BufRead, BufReader};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use rustix::process::Signal;
use serde_json::Value;

pub mod gateway_process;
/// The test process's own PostgreSQL (the same helper as the unit tests').
#[path = "../../src/store/test_postgres.rs"]
pub mod postgres;

pub const DEMO_IMAGE: &str = "dormant-demo:latest";

/// Builds the demo image once per test binary.
pub fn demo_image() -> &'static str {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        let status = Command::new(env!("CARGO_BIN_EXE_dormant"))
            .args(["demo-image", "--tag", DEMO_IMAGE])
            .stdout(Stdio::null())
            .status()
            .expect("run dormant demo-image");
        assert!(status.success(), "dormant demo-image failed");
    });
    DEMO_IMAGE
}

/// A unique name for this test's containers, so parallel tests never collide
/// on Docker container names.
pub fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    static COUNTER: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("{prefix}-{:x}{n}", (nanos ^ std::process::id()) & 0xffffff)
}

/// One running `dormant serve`.
pub struct Dormant {
    child: Option<Child>,
    pub api: SocketAddr,
    pub proxy: SocketAddr,
    pub node: String,
    pub token: String,
    pub data_dir: PathBuf,
    extra_args: Vec<String>,
    extra_env: Vec<(String, String)>,
    http: Client<HttpConnector, Full<Bytes>>,
    /// The program (and its arguments) that runs the binary: empty runs it
    /// directly; `nsenter ...` runs it inside a lab host (see `hosts`).
    launcher: Vec<OsString>,
    /// The address the API and the proxy listen on.
    listen: IpAddr,
    /// The Docker daemon dormant uses when not the machine's own: a lab
    /// host's, which the lab removes with everything in it.
    docker_host: Option<String>,
    /// dormant's own process: `child` itself, or (through `nsenter`) its child.
    pid: u32,
}

impl Dormant {
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    /// Starts dormant with extra `serve` flags, on ephemeral ports.
    pub fn start_with(extra_args: &[&str]) -> Self {
        Self::start_with_env(extra_args, &[])
    }

    /// Starts dormant with extra `serve` flags and extra environment
    /// variables (set after the harness's own, so they may override them).
    pub fn start_with_env(extra_args: &[&str], extra_env: &[(&str, &str)]) -> Self {
        let data_dir = std::env::temp_dir().join(unique("dormant-test"));
        let mut dormant = Self::prepare(data_dir, extra_args, extra_env);
        dormant.spawn();
        dormant
    }

    /// A dormant not started yet: `spawn` starts it.
    fn prepare(data_dir: PathBuf, extra_args: &[&str], extra_env: &[(&str, &str)]) -> Self {
        std::fs::create_dir_all(&data_dir).unwrap();
        Self {
            child: None,
            api: "0.0.0.0:0".parse().unwrap(),
            proxy: "0.0.0.0:0".parse().unwrap(),
            node: String::new(),
            token: "test-token".into(),
            data_dir,
            extra_args: extra_args.iter().map(|s| s.to_string()).collect(),
            extra_env: extra_env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            http: Client::builder(TokioExecutor::new()).build_http(),
            launcher: Vec::new(),
            listen: IpAddr::V4(Ipv4Addr::LOCALHOST),
            docker_host: None,
            pid: 0,
        }
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.data_dir.join("dormant.log"))
            .unwrap();
        let mut command = match self.launcher.split_first() {
            Some((program, args)) => {
                let mut command = Command::new(program);
                command.args(args).arg(env!("CARGO_BIN_EXE_dormant"));
                command
            }
            None => Command::new(env!("CARGO_BIN_EXE_dormant")),
        };
        let listen = SocketAddr::new(self.listen, 0).to_string();
        command
            .arg("serve")
            .args(["--data-dir".as_ref(), self.data_dir.as_os_str()])
            .args(["--api-addr", &listen, "--proxy-addr", &listen]);
        if let Some(docker_host) = &self.docker_host {
            command.args(["--docker-host", docker_host]);
        }
        let mut child = command
            .args(&self.extra_args)
            .env("DORMANT_ADMIN_TOKEN", &self.token)
            .env("DORMANT_LOG", "dormant=debug,info")
            // Tests drive many wakes, and some unknown hostnames, from one
            // loopback address: what the rate limits exist to refuse. They
            // are off unless a test turns them on (flags beat these).
            .env("DORMANT_WAKE_RATE", "off")
            .env("DORMANT_UNKNOWN_HOST_RATE", "off")
            .env("DORMANT_MAX_WAKE_RATE", "off")
            .env_remove("DORMANT_CONFIG")
            .envs(self.extra_env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("start dormant");
        let stdout = child.stdout.take().unwrap();
        let launcher = child.id();
        self.child = Some(child);
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).unwrap();
        // Through a launcher, dormant is its only child (alive: it printed).
        self.pid = if self.launcher.is_empty() {
            launcher
        } else {
            processes::children(launcher)
                .first()
                .copied()
                .unwrap_or_else(|| panic!("dormant did not start: `{line}`"))
        };
        let log = self.log();
        let field = |key: &str| {
            line.split_whitespace()
                .find_map(|part| part.strip_prefix(key))
                .unwrap_or_else(|| panic!("dormant did not start: `{line}`; log:\n{log}"))
                .to_owned()
        };
        self.api = field("api=http://").parse().unwrap();
        self.proxy = field("proxy=http://").parse().unwrap();
        self.node = field("node=");
    }

    /// Kills dormant with SIGKILL (no chance to clean up) and starts it again
    /// on the same data dir.
    pub fn kill_and_restart(&mut self) {
        self.kill();
        self.restart();
    }

    /// Kills dormant with SIGKILL and waits for it to be gone; `restart`
    /// starts it again on the same data dir.
    pub fn kill(&mut self) {
        let mut child = self.child.take().unwrap();
        self.signal(Signal::KILL);
        child.wait().unwrap();
    }

    /// Sends `signal` to dormant's own process (not to a launcher).
    fn signal(&self, signal: Signal) {
        if let Some(pid) = rustix::process::Pid::from_raw(self.pid as i32) {
            let _ = rustix::process::kill_process(pid, signal);
        }
    }

    /// Starts dormant again (after `kill` or `stop`) on the same data dir
    /// and flags; the API and proxy get new ephemeral ports.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "dormant is still running");
        self.spawn();
    }

    /// Sets (or, with `None`, removes) an environment variable for the
    /// next `restart`.
    pub fn set_env(&mut self, key: &str, value: Option<&str>) {
        self.extra_env.retain(|(k, _)| k != key);
        if let Some(value) = value {
            self.extra_env.push((key.to_owned(), value.to_owned()));
        }
    }

    /// Waits for dormant to exit by itself (a fault point aborted it).
    pub fn wait_aborted(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("dormant is running");
        child.wait().unwrap()
    }

    /// Sends SIGTERM without waiting.
    pub fn terminate(&self) {
        assert!(self.child.is_some(), "dormant is running");
        let pid = rustix::process::Pid::from_raw(self.pid as i32).expect("dormant's pid");
        rustix::process::kill_process(pid, Signal::TERM).expect("SIGTERM to dormant");
    }

    /// Waits for dormant to exit on its own; `None` (and dormant killed)
    /// when it is still running after `limit`, which only guards against a
    /// hang.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let mut child = self.child.take().expect("dormant is running");
        let deadline = std::time::Instant::now() + limit;
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return Some(status);
            }
            if std::time::Instant::now() >= deadline {
                self.signal(Signal::KILL);
                let _ = child.wait();
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops dormant with SIGTERM and waits for it to exit.
    pub fn stop(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().unwrap();
        self.signal(Signal::TERM);
        child.wait().unwrap()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.data_dir.join("dormant.log")).unwrap_or_default()
    }

    /// Calls the API with the admin token; returns status and JSON (Null when empty).
    pub async fn api(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        self.api_raw(method, path, Some(&self.token), body.into())
            .await
    }

    pub async fn api_raw(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Bytes,
    ) -> (StatusCode, Value) {
        let mut request = Request::builder()
            .method(method)
            .uri(format!("http://{}{path}", self.api))
            .header("content-type", "application/json");
        if let Some(token) = token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        let response = self
            .http
            .request(request.body(Full::new(body)).unwrap())
            .await
            .unwrap();
        let status = response.status();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        let json = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()))
        };
        (status, json)
    }

    /// Creates containers and asserts 201; returns the created objects.
    pub async fn create(&self, body: Value) -> Vec<Value> {
        let (status, json) = self.api(Method::POST, "/v1/containers", Some(body)).await;
        assert_eq!(
            status,
            StatusCode::CREATED,
            "create failed: {json}\nlog:\n{}",
            self.log()
        );
        json["containers"].as_array().unwrap().clone()
    }

    /// A request through the proxy to container `name`.
    pub async fn proxy_request(
        &self,
        method: Method,
        name: &str,
        path: &str,
        body: Bytes,
    ) -> (StatusCode, Bytes) {
        let request = Request::builder()
            .method(method)
            .uri(format!("http://{}{path}", self.proxy))
            .header("host", format!("{name}.localhost"))
            .body(Full::new(body))
            .unwrap();
        let response = self.http.request(request).await.unwrap();
        let status = response.status();
        (
            status,
            response.into_body().collect().await.unwrap().to_bytes(),
        )
    }

    pub async fn get(&self, name: &str, path: &str) -> (StatusCode, String) {
        let (status, body) = self
            .proxy_request(Method::GET, name, path, Bytes::new())
            .await;
        (status, String::from_utf8_lossy(&body).into_owned())
    }

    /// `GET /v1/containers/{name}`, which must answer 200.
    pub async fn view(&self, name: &str) -> serde_json::Value {
        let (status, json) = self
            .api(Method::GET, &format!("/v1/containers/{name}"), None)
            .await;
        assert_eq!(status, StatusCode::OK, "{json}");
        json
    }

    /// Writes `body` at `/files{path}` in the demo app, through the proxy.
    pub async fn put_file(&self, name: &str, path: &str, body: &str) {
        let (status, text) = self
            .proxy_request(
                Method::PUT,
                name,
                &format!("/files{path}"),
                Bytes::from(body.to_owned()),
            )
            .await;
        assert!(status.is_success(), "PUT {path}: {status} {text:?}");
    }

    /// `POST /v1/containers/{name}/archive`, which must leave it archived.
    pub async fn archive(&self, name: &str) -> serde_json::Value {
        let (status, json) = self
            .api(
                Method::POST,
                &format!("/v1/containers/{name}/archive"),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{json}\n{}", self.log());
        assert_eq!(json["state"], "archived");
        json
    }

    /// A clone of the harness's HTTP client (pooled, keep-alive).
    pub fn http_client(&self) -> Client<HttpConnector, Full<Bytes>> {
        self.http.clone()
    }

    /// The API's list of container names.
    pub async fn names(&self) -> Vec<String> {
        let (status, json) = self.api(Method::GET, "/v1/containers", None).await;
        assert_eq!(status, StatusCode::OK, "{json}");
        json["containers"]
            .as_array()
            .unwrap_or_else(|| panic!("no containers array: {json}"))
            .iter()
            .map(|c| c["name"].as_str().unwrap().to_owned())
            .collect()
    }

    /// Asserts the API lists no container and Docker has no container or
    /// volume of this node.
    pub async fn assert_nothing_left(&self, context: &str) {
        assert_eq!(
            self.names().await,
            Vec::<String>::new(),
            "{context}: the API still lists containers"
        );
        assert_eq!(
            self.docker_containers(),
            Vec::<String>::new(),
            "{context}: Docker still has containers"
        );
        assert_eq!(
            self.docker_volumes(),
            Vec::<String>::new(),
            "{context}: Docker still has volumes"
        );
    }

    /// IDs of the Docker containers this dormant's node labelled, in the
    /// daemon it uses.
    pub fn docker_containers(&self) -> Vec<String> {
        self.docker_lines(&[
            "ps",
            "-aq",
            "--filter",
            &format!("label=dormant.node={}", self.node),
        ])
    }

    pub fn docker_volumes(&self) -> Vec<String> {
        self.docker_lines(&[
            "volume",
            "ls",
            "-q",
            "--filter",
            &format!("label=dormant.node={}", self.node),
        ])
    }

    /// `docker_lines` against the daemon this dormant uses.
    pub fn docker_lines(&self, args: &[&str]) -> Vec<String> {
        match &self.docker_host {
            Some(host) => docker_lines(&[&["-H", host.as_str()], args].concat()),
            None => docker_lines(args),
        }
    }

    /// dormant's own process id (inside a lab host: as the machine sees it).
    pub fn pid(&self) -> u32 {
        self.pid
    }
}

impl Drop for Dormant {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            self.signal(Signal::KILL);
            let _ = child.wait();
        }
        if std::thread::panicking() {
            eprintln!(
                "---- dormant log ({}) ----\n{}",
                self.data_dir.display(),
                self.log()
            );
        }
        // A lab host's containers go with the host (the lab removes it).
        if !self.node.is_empty() && self.docker_host.is_none() {
            let containers = self.docker_containers();
            if !containers.is_empty() {
                let _ = Command::new("docker")
                    .args(["rm", "-f", "-v"])
                    .args(&containers)
                    .stdout(Stdio::null())
                    .status();
            }
            // Tenants' networks this dormant made (once their containers are gone).
            let networks = docker_lines(&[
                "network",
                "ls",
                "--quiet",
                "--filter",
                &format!("label=dormant.node={}", self.node),
            ]);
            if !networks.is_empty() {
                let _ = Command::new("docker")
                    .args(["network", "rm"])
                    .args(&networks)
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status();
            }
            let volumes = self.docker_volumes();
            if !volumes.is_empty() {
                let _ = Command::new("docker")
                    .args(["volume", "rm", "-f"])
                    .args(&volumes)
                    .stdout(Stdio::null())
                    .status();
            }
        }
        let _ = std::fs::remove_dir_all(&self.data_dir);
    }
}

/// A command running the `dormant` binary under test, with no `DORMANT_*`
/// settings inherited from the environment of the test run.
pub fn dormant_command() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_dormant"));
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("DORMANT_") {
            command.env_remove(key);
        }
    }
    command
}

/// Runs a docker CLI command and returns its non-empty output lines.
pub fn docker_lines(args: &[&str]) -> Vec<String> {
    let output = Command::new("docker")
        .args(args)
        .output()
        .expect("run docker");
    assert!(
        output.status.success(),
        "docker {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Whether Docker says the container named `dormant-<name>` is running.
pub fn docker_running(name: &str) -> Option<bool> {
    let output = Command::new("docker")
        .args([
            "inspect",
            "-f",
            "{{.State.Running}}",
            &format!("dormant-{name}"),
        ])
        .output()
        .unwrap();
    output
        .status
        .success()
        .then(|| String::from_utf8_lossy(&output.stdout).trim() == "true")
}

pub fn data_dir_file(dir: &Path, name: &str) -> PathBuf {
    dir.join(name)
}

/// Polls `check` every 50 ms until it returns true or `timeout` passes.
pub async fn eventually(timeout: Duration, mut check: impl AsyncFnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if check().await {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Docker's clock now, for `docker events --since`.
pub fn docker_time() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    format!("{}.{:09}", now.as_secs(), now.subsec_nanos())
}

/// How many `event` events Docker recorded for `container` since `since`.
pub fn docker_events(since: &str, container: &str, event: &str) -> usize {
    let until = docker_time();
    docker_lines(&[
        "events",
        "--since",
        since,
        "--until",
        &until,
        "--filter",
        &format!("container={container}"),
        "--filter",
        &format!("event={event}"),
        "--format",
        "{{.Action}}",
    ])
    .len()
}

/// A WebSocket to `path` of container `name`, through the proxy.
pub async fn websocket(
    dormant: &Dormant,
    name: &str,
    path: &str,
) -> tokio_tungstenite::WebSocketStream<tokio::net::TcpStream> {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut request = format!("ws://{name}.localhost{path}")
        .into_client_request()
        .unwrap();
    request.headers_mut().insert(
        "host",
        format!("{name}.localhost:{}", dormant.proxy.port())
            .parse()
            .unwrap(),
    );
    let stream = tokio::net::TcpStream::connect(dormant.proxy).await.unwrap();
    let (socket, response) = tokio_tungstenite::client_async(request, stream)
        .await
        .expect("WebSocket handshake through the proxy");
    assert_eq!(response.status(), StatusCode::SWITCHING_PROTOCOLS);
    socket
}

impl Dormant {
    /// A request through the proxy with extra headers; the whole response.
    pub async fn proxy_response(
        &self,
        method: Method,
        name: &str,
        path: &str,
        headers: &[(&str, &str)],
    ) -> http::Response<Bytes> {
        let mut request = Request::builder()
            .method(method)
            .uri(format!("http://{}{path}", self.proxy))
            .header("host", format!("{name}.localhost"));
        for (key, value) in headers {
            request = request.header(*key, *value);
        }
        let response = self
            .http
            .request(request.body(Full::new(Bytes::new())).unwrap())
            .await
            .unwrap();
        let (parts, body) = response.into_parts();
        http::Response::from_parts(parts, body.collect().await.unwrap().to_bytes())
    }
}

/// POSTs to dormant's API on a fresh connection and ignores the outcome
/// (used to reach a fault point, where dormant dies mid-call).
pub async fn raw_post(api: SocketAddr, path: &str, token: &str) -> Option<StatusCode> {
    let client: Client<HttpConnector, Full<Bytes>> =
        Client::builder(TokioExecutor::new()).build_http();
    let request = Request::builder()
        .method(Method::POST)
        .uri(format!("http://{api}{path}"))
        .header("authorization", format!("Bearer {token}"))
        .body(Full::new(Bytes::new()))
        .unwrap();
    client.request(request).await.ok().map(|r| r.status())
}
