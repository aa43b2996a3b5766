//! dormant beside a real nginx (`--gateway nginx`): Debian's nginx, started
//! here in a temp dir with the README's recipe, serves running containers
//! itself from the map dormant writes, and sends every other host to
//! dormant's wake endpoint. Running containers' requests never reach
//! dormant (its request counter stays put) yet count as activity; a
//! sleeping container's GET and POST wake it and land on the app after a
//! 307; a WebSocket handshake wakes it and is served by dormant; a
//! container that stops while nginx still maps it is woken through the
//! recipe's `error_page` path.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use common::gateway_process::{free_port, nginx_command, nginx_conf, start_nginx_in, Gateway};
use common::{demo_image, docker_lines, docker_running, eventually, unique, Dormant};
use futures_util::{SinkExt, StreamExt};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use serde_json::json;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

/// The nginx recipe the README shows under "Beside nginx": `{listen}`,
/// `{hosts}`, `{dormant}`, `{map}`, `{probe}` and `{activity}` are filled
/// in.
pub const OFFLOAD_RECIPE: &str = include_str!("gateway/nginx-offload.conf");

/// Where the README's copy puts things.
const README_VALUES: [(&str, &str); 6] = [
    ("{listen}", "80"),
    ("{hosts}", ".apps.example.com"),
    ("{dormant}", "127.0.0.1:8080"),
    ("{map}", "/var/lib/dormant/nginx-map.conf"),
    ("{probe}", "127.0.0.1:8079"),
    ("{activity}", "/var/lib/dormant/nginx-activity.log"),
];

fn fill(recipe: &str, values: &[(&str, &str)]) -> String {
    values.iter().fold(recipe.to_owned(), |text, (key, value)| {
        text.replace(key, value)
    })
}

/// nginx and dormant side by side, as the recipe has them.
struct Beside {
    dormant: Dormant,
    nginx: Gateway,
    dir: PathBuf,
    probe: u16,
}

impl Beside {
    fn start() -> Self {
        let dir = std::env::temp_dir().join(unique("dormant-offload"));
        std::fs::create_dir_all(&dir).unwrap();
        let (listen, probe) = (free_port(), free_port());
        let activity = dir.join("activity.log");
        let map = dir.join("map.conf");
        // Each reload leaves a line in `reloads`; while `frozen` exists
        // reloads fail, as a broken nginx configuration would.
        let reload = format!(
            "echo >> {d}/reloads; test ! -e {d}/frozen && {nginx} -s reload",
            d = dir.display(),
            nginx = command_line(&dir),
        );
        let dormant = Dormant::start_with(&[
            "--gateway",
            "nginx",
            "--nginx-map",
            map.to_str().unwrap(),
            "--nginx-reload",
            &reload,
            "--nginx-probe",
            &format!("127.0.0.1:{probe}"),
            "--nginx-activity",
            activity.to_str().unwrap(),
            "--trusted-proxies",
            "127.0.0.1",
            "--nap-after",
            "0",
        ]);
        // nginx includes the map: dormant writes it at start.
        for _ in 0..100 {
            if map.exists() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        assert!(
            map.exists(),
            "dormant wrote no map; log:\n{}",
            dormant.log()
        );
        let http = fill(
            OFFLOAD_RECIPE,
            &[
                ("{listen}", &format!("127.0.0.1:{listen}")),
                ("{hosts}", ".localhost"),
                ("{dormant}", &dormant.proxy.to_string()),
                ("{map}", map.to_str().unwrap()),
                ("{probe}", &format!("127.0.0.1:{probe}")),
                ("{activity}", activity.to_str().unwrap()),
            ],
        );
        let nginx_dir = dir.join("nginx");
        std::fs::create_dir_all(&nginx_dir).unwrap();
        std::fs::write(nginx_dir.join("nginx.conf"), nginx_conf(&nginx_dir, &http)).unwrap();
        let nginx = start_nginx_in(nginx_dir, listen);
        Self {
            dormant,
            nginx,
            dir,
            probe,
        }
    }

    fn context(&self, what: &str) -> String {
        format!(
            "{what}\nnginx's log:\n{}\ndormant's log (end):\n{}",
            self.nginx.log(),
            tail(&self.dormant.log(), 40)
        )
    }

    fn reloads(&self) -> usize {
        std::fs::read_to_string(self.dir.join("reloads"))
            .unwrap_or_default()
            .lines()
            .count()
    }

    /// Where nginx sends `name`'s host now (its probe server's answer).
    async fn route_of(&self, name: &str) -> String {
        let response = request(
            self.probe,
            Method::GET,
            &format!("{name}.localhost"),
            "/",
            "",
        )
        .await;
        String::from_utf8_lossy(response.body()).into_owned()
    }

    /// Waits until nginx sends `name` to the container (`true`) or to
    /// dormant's wake endpoint (`false`).
    async fn wait_routed(&self, name: &str, to_container: bool) {
        let routed = eventually(Duration::from_secs(20), async || {
            let route = self.route_of(name).await;
            route.ends_with("/.dormant/wake") != to_container
        })
        .await;
        assert!(
            routed,
            "{}",
            self.context(&format!(
                "nginx still sends {name} to {}",
                self.route_of(name).await
            ))
        );
        // nginx's old workers still accept for 100 ms after the new ones
        // start (its master's pause before retiring them).
        tokio::time::sleep(Duration::from_millis(300)).await;
    }

    /// `dormant_proxy_requests_total`, all classes together.
    async fn requests_seen(&self) -> f64 {
        let (_, text) = self
            .dormant
            .api_raw(Method::GET, "/metrics", None, Bytes::new())
            .await;
        text.as_str()
            .unwrap()
            .lines()
            .filter(|line| line.starts_with("dormant_proxy_requests_total{"))
            .filter_map(|line| line.rsplit_once(' ')?.1.parse::<f64>().ok())
            .sum()
    }

    /// Its `last_active_at` (RFC 3339 in UTC with milliseconds, so they
    /// compare as text).
    async fn last_active(&self, name: &str) -> String {
        let (_, json) = self
            .dormant
            .api(Method::GET, &format!("/v1/containers/{name}"), None)
            .await;
        json["last_active_at"].as_str().unwrap().to_owned()
    }

    async fn sleep(&self, name: &str) {
        let (status, json) = self
            .dormant
            .api(Method::POST, &format!("/v1/containers/{name}/sleep"), None)
            .await;
        assert_eq!(status, StatusCode::OK, "{json}");
        assert_eq!(docker_running(name), Some(false));
    }
}

impl Drop for Beside {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// nginx's command line on `dir/nginx`, for `--nginx-reload`.
fn command_line(dir: &Path) -> String {
    let command = nginx_command(&dir.join("nginx"));
    std::iter::once(command.get_program())
        .chain(command.get_args())
        .map(|part| part.to_str().unwrap().to_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// One HTTP/1.1 request to `127.0.0.1:port` as `host`, on a new
/// connection; redirects are not followed.
async fn request(port: u16, method: Method, host: &str, path: &str, body: &str) -> Response<Bytes> {
    let stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(connection);
    let request = Request::builder()
        .method(method)
        .uri(path)
        .header("host", host)
        .body(Full::new(Bytes::from(body.to_owned())))
        .unwrap();
    let response = tokio::time::timeout(Duration::from_secs(60), sender.send_request(request))
        .await
        .expect("an answer within 60 s")
        .unwrap();
    let (parts, body) = response.into_parts();
    Response::from_parts(parts, body.collect().await.unwrap().to_bytes())
}

/// `method path` through nginx as `name`'s host; a 307 is followed once,
/// with the same method and body, to the URL it names.
async fn through_nginx(
    beside: &Beside,
    method: Method,
    name: &str,
    path: &str,
    body: &str,
) -> (Response<Bytes>, Option<String>) {
    let port = beside.nginx.port;
    let host = format!("{name}.localhost:{port}");
    let first = request(port, method.clone(), &host, path, body).await;
    if first.status() != StatusCode::TEMPORARY_REDIRECT {
        return (first, None);
    }
    let location = first.headers()["location"].to_str().unwrap().to_owned();
    let again = location
        .strip_prefix(&format!("http://{host}"))
        .unwrap_or_else(|| panic!("the 307 leaves the host: {location}"));
    (
        request(port, method, &host, again, body).await,
        Some(location),
    )
}

#[tokio::test]
async fn beside_nginx_running_containers_bypass_dormant_and_sleeping_ones_wake() {
    let beside = Beside::start();
    let dormant = &beside.dormant;
    let (busy, sleepy) = (unique("busy"), unique("sleepy"));
    for name in [&busy, &sleepy] {
        dormant
            .create(json!({"image": demo_image(), "name": name, "idle_timeout": "10m"}))
            .await;
    }
    beside.wait_routed(&busy, true).await;
    beside.wait_routed(&sleepy, true).await;

    // Running: nginx alone serves it; dormant sees no request, but hears
    // the activity, and nothing is reloaded for it.
    let seen = beside.requests_seen().await;
    let reloads = beside.reloads();
    let active = beside.last_active(&busy).await;
    tokio::time::sleep(Duration::from_millis(5)).await;
    for _ in 0..20 {
        let (response, redirected) = through_nginx(&beside, Method::GET, &busy, "/", "").await;
        assert_eq!(
            response.status(),
            StatusCode::OK,
            "{}",
            beside.context("GET busy")
        );
        assert!(redirected.is_none());
        assert!(String::from_utf8_lossy(response.body()).starts_with("hello from"));
    }
    assert_eq!(
        beside.requests_seen().await,
        seen,
        "{}",
        beside.context("a running container's requests reached dormant")
    );
    assert!(
        eventually(Duration::from_secs(10), async || beside
            .last_active(&busy)
            .await
            > active)
        .await,
        "{}",
        beside.context("nginx's access log did not count as activity")
    );
    assert_eq!(beside.reloads(), reloads, "activity alone reloads nothing");

    // Asleep: a GET goes to the wake endpoint, which wakes the container
    // and sends the client back once nginx routes it: the app answers.
    beside.sleep(&sleepy).await;
    beside.wait_routed(&sleepy, false).await;
    let (response, location) =
        through_nginx(&beside, Method::GET, &sleepy, "/files/etc/hostname?x=1", "").await;
    assert_eq!(
        location.as_deref(),
        Some(
            format!(
                "http://{sleepy}.localhost:{}/files/etc/hostname?x=1",
                beside.nginx.port
            )
            .as_str()
        ),
        "{}",
        beside.context("the wake's redirect")
    );
    assert_eq!(
        response.status(),
        StatusCode::OK,
        "{}",
        beside.context("GET after the wake")
    );
    assert_eq!(docker_running(&sleepy), Some(true));

    // A POST keeps its method and body through the 307.
    beside.sleep(&sleepy).await;
    beside.wait_routed(&sleepy, false).await;
    let (response, location) =
        through_nginx(&beside, Method::POST, &sleepy, "/echo", "my body").await;
    assert!(location.is_some(), "{}", beside.context("POST wake"));
    assert_eq!(
        response.status(),
        StatusCode::OK,
        "{}",
        beside.context("POST after the wake")
    );
    assert_eq!(response.headers()["x-request-method"], "POST");
    assert_eq!(response.body().as_ref(), b"my body");

    // A WebSocket to a sleeping container: dormant wakes it and serves the
    // handshake itself (clients do not follow a handshake's redirect).
    beside.sleep(&sleepy).await;
    beside.wait_routed(&sleepy, false).await;
    let port = beside.nginx.port;
    let mut handshake = format!("ws://{sleepy}.localhost:{port}/ws")
        .into_client_request()
        .unwrap();
    handshake.headers_mut().insert(
        "host",
        format!("{sleepy}.localhost:{port}").parse().unwrap(),
    );
    let stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let (mut socket, response) = tokio_tungstenite::client_async(handshake, stream)
        .await
        .unwrap_or_else(|e| panic!("{}", beside.context(&format!("WebSocket wake: {e}"))));
    assert_eq!(response.status(), StatusCode::SWITCHING_PROTOCOLS);
    socket.send(Message::text("ping")).await.unwrap();
    let echoed = socket.next().await.unwrap().unwrap();
    assert_eq!(echoed.into_text().unwrap().as_str(), "ping");
    drop(socket);

    // Stopped while nginx still sends its host to it (reloads fail for
    // now): the recipe's error_page sends the request to dormant, which
    // wakes the container and serves it, POST body included.
    beside.wait_routed(&busy, true).await;
    std::fs::write(beside.dir.join("frozen"), "").unwrap();
    beside.sleep(&busy).await;
    let (response, location) =
        through_nginx(&beside, Method::POST, &busy, "/echo", "after a stop").await;
    assert!(location.is_none(), "served, not redirected");
    assert_eq!(
        response.status(),
        StatusCode::OK,
        "{}",
        beside.context("error_page path")
    );
    assert_eq!(response.body().as_ref(), b"after a stop");
    assert_eq!(docker_running(&busy), Some(true));
    assert!(
        beside.dormant.log().contains("nginx did not reload"),
        "a failed reload is logged"
    );
    std::fs::remove_file(beside.dir.join("frozen")).unwrap();
    beside.wait_routed(&busy, true).await;
    let (response, _) = through_nginx(&beside, Method::GET, &busy, "/", "").await;
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_private_container_is_never_offloaded() {
    let beside = Beside::start();
    let name = unique("private");
    beside
        .dormant
        .create(json!({"image": demo_image(), "name": name, "access": "private"}))
        .await;
    assert!(
        beside.route_of(&name).await.ends_with("/.dormant/wake"),
        "a private container goes through dormant"
    );
    let (response, location) = through_nginx(&beside, Method::GET, &name, "/", "").await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert!(location.is_none());
    let map = std::fs::read_to_string(beside.dir.join("map.conf")).unwrap();
    assert!(!map.contains(&name), "{map}");
}

#[tokio::test]
async fn a_napping_container_leaves_nginx_before_its_pause_and_its_request_unpauses_it() {
    let beside = Beside::start();
    let name = unique("napper");
    beside
        .dormant
        .create(json!({"image": demo_image(), "name": name, "nap_after": "1s"}))
        .await;
    // Paused, and nginx sends the host to dormant (that the pause waits
    // for nginx is lifecycle's test
    // `beside_a_gateway_a_nap_pauses_only_once_the_gateway_no_longer_routes_it`).
    let paused = eventually(Duration::from_secs(20), async || {
        docker_lines(&[
            "inspect",
            "-f",
            "{{.State.Paused}}",
            &format!("dormant-{name}"),
        ]) == ["true"]
    })
    .await;
    assert!(paused, "{}", beside.context("it never paused"));
    assert!(
        beside.route_of(&name).await.ends_with("/.dormant/wake"),
        "{}",
        beside.context("paused while nginx still sends it requests")
    );
    let (response, location) = through_nginx(&beside, Method::GET, &name, "/", "").await;
    assert!(location.is_some(), "{}", beside.context("unpause"));
    assert_eq!(
        response.status(),
        StatusCode::OK,
        "{}",
        beside.context("after the unpause")
    );
}

#[test]
fn the_readme_shows_the_recipe_the_test_uses() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md")).unwrap();
    let shown = fill(OFFLOAD_RECIPE, &README_VALUES);
    assert!(
        readme.contains(&shown),
        "README.md lacks the nginx offload recipe the test uses; it should contain:\n{shown}"
    );
}
