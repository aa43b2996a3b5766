//! dormant behind a real gateway: Debian's nginx and HAProxy, each started
//! here as a plain process with a generated configuration, ending TLS with a
//! certificate made by the test and passing `X-Forwarded-*` to dormant
//! (`--trusted-proxies 127.0.0.1`). Requests, wakes (hold and redirect) and
//! WebSockets go through each gateway; a peer that is not trusted cannot
//! steer routing with the same headers.

mod common;

use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::gateway_process::{
    free_port, nginx_conf, require, start_nginx_in, wait_listening, Gateway,
};
use common::{demo_image, docker_running, unique, Dormant};
use futures_util::{SinkExt, StreamExt};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Empty, Full};
use hyper_util::rt::TokioIo;
use serde_json::json;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

/// The nginx recipe the README shows: `{listen}`, `{hosts}`, `{cert}`,
/// `{key}` and `{dormant}` are filled in.
pub const NGINX_RECIPE: &str = include_str!("gateway/nginx-server.conf");
/// The HAProxy recipe the README shows: `{listen}`, `{pem}` and `{dormant}`
/// are filled in.
pub const HAPROXY_RECIPE: &str = include_str!("gateway/haproxy.cfg");

/// Where the README's copies put dormant, the certificate and the gateway.
const README_VALUES: [(&str, &str); 6] = [
    ("{listen}", "443"),
    ("{hosts}", ".apps.example.com"),
    ("{dormant}", "127.0.0.1:8080"),
    ("{cert}", "/etc/ssl/dormant/fullchain.pem"),
    ("{key}", "/etc/ssl/dormant/privkey.pem"),
    ("{pem}", "/etc/ssl/dormant/fullchain-and-key.pem"),
];

fn fill(recipe: &str, values: &[(&str, &str)]) -> String {
    values.iter().fold(recipe.to_owned(), |text, (key, value)| {
        text.replace(key, value)
    })
}

/// A certificate for `hosts`, self-signed: the client trusts exactly it.
struct TestCertificate {
    cert_pem: String,
    key_pem: String,
    der: rustls::pki_types::CertificateDer<'static>,
}

fn certificate(hosts: &[String]) -> TestCertificate {
    let made = rcgen::generate_simple_self_signed(hosts.to_vec()).unwrap();
    TestCertificate {
        cert_pem: made.cert.pem(),
        key_pem: made.signing_key.serialize_pem(),
        der: made.cert.der().clone(),
    }
}

fn start_nginx(dormant: &Dormant, cert: &TestCertificate) -> Gateway {
    require("nginx", "nginx");
    let dir = std::env::temp_dir().join(unique("dormant-nginx"));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("cert.pem"), &cert.cert_pem).unwrap();
    std::fs::write(dir.join("key.pem"), &cert.key_pem).unwrap();
    let port = free_port();
    let d = dir.display();
    let server = fill(
        NGINX_RECIPE,
        &[
            ("{listen}", &format!("127.0.0.1:{port}")),
            ("{hosts}", ".localhost"),
            ("{dormant}", &dormant.proxy.to_string()),
            ("{cert}", &format!("{d}/cert.pem")),
            ("{key}", &format!("{d}/key.pem")),
        ],
    );
    std::fs::write(dir.join("nginx.conf"), nginx_conf(&dir, &server)).unwrap();
    start_nginx_in(dir, port)
}

fn start_haproxy(dormant: &Dormant, cert: &TestCertificate) -> Gateway {
    let haproxy = require("haproxy", "haproxy");
    let dir = std::env::temp_dir().join(unique("dormant-haproxy"));
    std::fs::create_dir_all(&dir).unwrap();
    // HAProxy reads the certificate and its key from one file.
    std::fs::write(
        dir.join("cert-and-key.pem"),
        format!("{}{}", cert.cert_pem, cert.key_pem),
    )
    .unwrap();
    let port = free_port();
    let conf = fill(
        HAPROXY_RECIPE,
        &[
            ("{listen}", &format!("127.0.0.1:{port}")),
            ("{dormant}", &dormant.proxy.to_string()),
            ("{pem}", &format!("{}/cert-and-key.pem", dir.display())),
        ],
    );
    std::fs::write(dir.join("haproxy.cfg"), conf).unwrap();
    let log = dir.join("haproxy.log");
    let child = Command::new(haproxy)
        .arg("-db")
        .arg("-f")
        .arg(dir.join("haproxy.cfg"))
        .stdout(std::fs::File::create(&log).unwrap())
        .stderr(std::fs::File::create(dir.join("stderr.log")).unwrap())
        .spawn()
        .expect("start haproxy");
    let mut gateway = Gateway {
        child,
        port,
        log: dir.join("stderr.log"),
        dir,
    };
    wait_listening(&mut gateway, "haproxy");
    gateway
}

/// A TLS connection to the gateway for `host`, trusting only `cert`.
async fn tls(
    port: u16,
    host: &str,
    cert: &TestCertificate,
) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert.der.clone()).unwrap();
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let server_name = rustls::pki_types::ServerName::try_from(host.to_owned()).unwrap();
    tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(server_name, tcp)
        .await
        .expect("TLS handshake with the gateway, trusting the test certificate")
}

/// One HTTPS GET through the gateway on `port` as `host`.
async fn https_get(port: u16, host: &str, path: &str, cert: &TestCertificate) -> Response<Bytes> {
    https_get_with(port, host, path, cert, &[]).await
}

/// As [`https_get`], with extra request headers.
async fn https_get_with(
    port: u16,
    host: &str,
    path: &str,
    cert: &TestCertificate,
    headers: &[(&str, &str)],
) -> Response<Bytes> {
    let stream = tls(port, host, cert).await;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(connection);
    let mut request = Request::builder()
        .uri(path)
        .header("host", format!("{host}:{port}"));
    for (key, value) in headers {
        request = request.header(*key, *value);
    }
    let request = request.body(Empty::<Bytes>::new()).unwrap();
    let response = tokio::time::timeout(Duration::from_secs(60), sender.send_request(request))
        .await
        .expect("an answer through the gateway within 60 s")
        .unwrap();
    let (parts, body) = response.into_parts();
    Response::from_parts(parts, body.collect().await.unwrap().to_bytes())
}

/// A login link for `name`, asked of the API with `headers` (as a gateway
/// in front of the API would send them).
async fn login_link(dormant: &Dormant, name: &str, headers: &[(&str, &str)]) -> String {
    let mut request = Request::builder()
        .method(Method::POST)
        .uri(format!(
            "http://{}/v1/containers/{name}/login-link",
            dormant.api
        ))
        .header("authorization", format!("Bearer {}", dormant.token));
    for (key, value) in headers {
        request = request.header(*key, *value);
    }
    let response = dormant
        .http_client()
        .request(request.body(Full::new(Bytes::new())).unwrap())
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    let link: serde_json::Value = serde_json::from_slice(&body).unwrap();
    link["url"].as_str().unwrap().to_owned()
}

async fn make_private(dormant: &Dormant, name: &str) {
    let (status, json) = dormant
        .api(
            Method::POST,
            &format!("/v1/containers/{name}/access"),
            Some(json!({"access": "private"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{json}");
}

/// The `hello from <hostname>` line the demo app answers `/` with.
fn hello_line(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    text.split(" (started")
        .next()
        .unwrap_or_default()
        .to_owned()
}

async fn sleep_now(dormant: &Dormant, name: &str) {
    let (status, json) = dormant
        .api(Method::POST, &format!("/v1/containers/{name}/sleep"), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{json}");
    assert_eq!(docker_running(name), Some(false));
}

/// Each gateway's path prefix in front of dormant (the recipes strip it).
const PREFIX: &str = "/app";

/// What every gateway must do, run against one of them.
async fn through(
    gateway: &Gateway,
    kind: &str,
    dormant: &Dormant,
    names: &Names,
    cert: &TestCertificate,
) {
    let port = gateway.port;
    let context = |what: &str| format!("{kind}: {what}; gateway log:\n{}", gateway.log());

    // A running container is reached by its public host.
    let host = format!("{}.localhost", names.held);
    let (_, direct) = dormant.get(&names.held, "/").await;
    let response = https_get(port, &host, &format!("{PREFIX}/"), cert).await;
    assert_eq!(response.status(), StatusCode::OK, "{}", context("GET /"));
    assert_eq!(hello_line(response.body()), hello_line(direct.as_bytes()));
    let seen = https_get(port, &host, &format!("{PREFIX}/headers"), cert).await;
    let seen: serde_json::Value = serde_json::from_slice(seen.body()).unwrap();
    assert_eq!(seen["x-forwarded-proto"], "https", "{kind}: {seen}");
    assert_eq!(
        seen["x-forwarded-host"],
        format!("{host}:{port}"),
        "{kind}: {seen}"
    );

    // Hold: a sleeping container wakes for a request through the gateway.
    sleep_now(dormant, &names.held).await;
    let response = https_get(port, &host, &format!("{PREFIX}/"), cert).await;
    assert_eq!(
        response.status(),
        StatusCode::OK,
        "{}",
        context("hold wake")
    );
    assert_eq!(docker_running(&names.held), Some(true));

    // Redirect: the 307 names the URL the client used at the gateway.
    sleep_now(dormant, &names.redirected).await;
    let host = format!("{}.localhost", names.redirected);
    let response = https_get(
        port,
        &host,
        &format!("{PREFIX}/files/etc/hostname?x=1"),
        cert,
    )
    .await;
    assert_eq!(
        response.status(),
        StatusCode::TEMPORARY_REDIRECT,
        "{}",
        context("redirect wake")
    );
    assert_eq!(
        response.headers()["location"],
        format!("https://{host}:{port}{PREFIX}/files/etc/hostname?x=1"),
        "{kind}"
    );
    let again = https_get(
        port,
        &host,
        &format!("{PREFIX}/files/etc/hostname?x=1"),
        cert,
    )
    .await;
    assert_eq!(
        again.status(),
        StatusCode::OK,
        "{}",
        context("after redirect")
    );

    // A WebSocket through TLS at the gateway.
    let host = format!("{}.localhost", names.held);
    let mut request = format!("wss://{host}:{port}{PREFIX}/ws")
        .into_client_request()
        .unwrap();
    request
        .headers_mut()
        .insert("host", format!("{host}:{port}").parse().unwrap());
    let stream = tls(port, &host, cert).await;
    let (mut socket, response) = tokio_tungstenite::client_async(request, stream)
        .await
        .unwrap_or_else(|e| panic!("{}", context(&format!("WebSocket handshake: {e}"))));
    assert_eq!(response.status(), StatusCode::SWITCHING_PROTOCOLS);
    for message in [
        Message::text(format!("hello through {kind}")),
        Message::binary(vec![0u8, 1, 2, 254, 255]),
    ] {
        socket.send(message.clone()).await.unwrap();
        let reply = loop {
            match socket.next().await.expect("the socket closed").unwrap() {
                Message::Ping(_) | Message::Pong(_) => continue,
                other => break other,
            }
        };
        assert_eq!(reply, message, "{kind}");
    }
    socket.close(None).await.unwrap();

    // A login link made for this gateway's clients signs in through it: a
    // Secure cookie, and back under the prefix.
    make_private(dormant, &names.redirected).await;
    let port_text = port.to_string();
    let link = login_link(
        dormant,
        &names.redirected,
        &[
            ("x-forwarded-proto", "https"),
            ("x-forwarded-port", &port_text),
            ("x-forwarded-prefix", PREFIX),
        ],
    )
    .await;
    let host = format!("{}.localhost", names.redirected);
    let login = link
        .strip_prefix(&format!("https://{host}:{port}"))
        .unwrap_or_else(|| panic!("{kind}: the link is not on the gateway: {link}"));
    assert!(
        login.starts_with(&format!("{PREFIX}/.dormant/login?code=")),
        "{link}"
    );
    let signed_in = https_get(port, &host, login, cert).await;
    assert_eq!(
        signed_in.status(),
        StatusCode::SEE_OTHER,
        "{}",
        context("sign-in")
    );
    assert_eq!(
        signed_in.headers()["location"],
        format!("{PREFIX}/"),
        "{kind}"
    );
    let set_cookie = signed_in.headers()["set-cookie"].to_str().unwrap();
    assert!(set_cookie.ends_with("; Secure"), "{kind}: {set_cookie}");
    let cookie = set_cookie.split(';').next().unwrap();
    let page = https_get_with(
        port,
        &host,
        &format!("{PREFIX}/"),
        cert,
        &[("cookie", cookie)],
    )
    .await;
    assert_eq!(page.status(), StatusCode::OK, "{}", context("signed in"));
}

struct Names {
    held: String,
    redirected: String,
}

async fn setup(dormant: &Dormant) -> Names {
    let names = Names {
        held: unique("gw-hold"),
        redirected: unique("gw-redir"),
    };
    dormant
        .create(json!({"image": demo_image(), "name": names.held}))
        .await;
    dormant
        .create(json!({"image": demo_image(), "name": names.redirected, "wake": "redirect"}))
        .await;
    names
}

fn hosts(names: &Names) -> Vec<String> {
    vec![
        format!("{}.localhost", names.held),
        format!("{}.localhost", names.redirected),
    ]
}

#[tokio::test]
async fn behind_nginx_requests_wakes_redirects_and_websockets_work() {
    let dormant = Dormant::start_with(&["--trusted-proxies", "127.0.0.1"]);
    let names = setup(&dormant).await;
    let cert = certificate(&hosts(&names));
    let nginx = start_nginx(&dormant, &cert);
    through(&nginx, "nginx", &dormant, &names, &cert).await;
}

#[tokio::test]
async fn behind_haproxy_requests_wakes_redirects_and_websockets_work() {
    let dormant = Dormant::start_with(&["--trusted-proxies", "127.0.0.1"]);
    let names = setup(&dormant).await;
    let cert = certificate(&hosts(&names));
    let haproxy = start_haproxy(&dormant, &cert);
    through(&haproxy, "haproxy", &dormant, &names, &cert).await;
}

#[tokio::test]
async fn only_a_trusted_peer_steers_routing_and_urls() {
    // Not trusted: X-Forwarded-Host for another container changes nothing.
    let dormant = Dormant::start();
    let names = setup(&dormant).await;
    let (_, held) = dormant.get(&names.held, "/").await;
    let forged = [
        (
            "x-forwarded-host",
            &*format!("{}.localhost", names.redirected),
        ),
        ("x-forwarded-proto", "https"),
        ("x-forwarded-prefix", "/evil"),
    ];
    let response = dormant
        .proxy_response(Method::GET, &names.held, "/", &forged)
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(hello_line(response.body()), hello_line(held.as_bytes()));
    sleep_now(&dormant, &names.redirected).await;
    let response = dormant
        .proxy_response(Method::GET, &names.redirected, "/x", &forged)
        .await;
    assert_eq!(response.status(), StatusCode::TEMPORARY_REDIRECT);
    assert_eq!(
        response.headers()["location"],
        format!("http://{}.localhost/x", names.redirected)
    );
    make_private(&dormant, &names.held).await;
    let link = login_link(&dormant, &names.held, &forged[1..]).await;
    let plain = format!(
        "http://{}.localhost:{}/.dormant/login?code=",
        names.held,
        dormant.proxy.port()
    );
    assert!(link.starts_with(&plain), "{link}");
    drop(dormant);

    // Trusted: the same header routes, and a host outside the base domain
    // is refused like a bad Host.
    let dormant = Dormant::start_with(&["--trusted-proxies", "127.0.0.1"]);
    let names = setup(&dormant).await;
    let (_, redirected) = dormant.get(&names.redirected, "/").await;
    let steer = format!("{}.localhost", names.redirected);
    let response = dormant
        .proxy_response(
            Method::GET,
            &names.held,
            "/",
            &[("x-forwarded-host", &steer)],
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        hello_line(response.body()),
        hello_line(redirected.as_bytes())
    );
    let response = dormant
        .proxy_response(
            Method::GET,
            &names.held,
            "/",
            &[("x-forwarded-host", "bank.example")],
        )
        .await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
}

#[test]
fn the_readme_shows_the_recipes_the_tests_use() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md")).unwrap();
    for (kind, recipe) in [("nginx", NGINX_RECIPE), ("HAProxy", HAPROXY_RECIPE)] {
        let shown = fill(recipe, &README_VALUES);
        assert!(
            readme.contains(&shown),
            "README.md lacks the {kind} recipe the tests use; it should contain:\n{shown}"
        );
    }
}
