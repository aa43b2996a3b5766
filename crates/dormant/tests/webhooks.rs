//! Webhooks on the real binary: a registered URL receives the events it
//! asked for, signed with its secret; the registration survives a restart;
//! an `https://` receiver whose certificate `--webhook-ca-file` trusts gets
//! them too (and a CA file that is not one stops dormant from starting); a
//! tenant's webhook may not point at the host's own network.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::HeaderMap;
use axum::routing::post;
use axum::Router;
use common::{demo_image, dormant_command, eventually, unique, Dormant};
use http::{Method, StatusCode};
use serde_json::{json, Value};

type Got = Arc<Mutex<Vec<(HeaderMap, String)>>>;

/// A receiver on loopback; returns what it got and its URL.
async fn receiver() -> (Got, String) {
    let (got, app) = recording();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (got, url)
}

/// A receiver over TLS on loopback, with a self-signed certificate for
/// `localhost` made now; returns what it got, its URL, and the certificate
/// (PEM) to trust.
async fn tls_receiver() -> (Got, String, String) {
    let (got, app) = recording();
    let made = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(made.signing_key.serialize_der().into());
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(vec![made.cert.der().clone()], key)
    .unwrap();
    let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!(
        "https://localhost:{}/hook",
        tcp.local_addr().unwrap().port()
    );
    let listener = TlsListener {
        tcp,
        tls: tokio_rustls::TlsAcceptor::from(Arc::new(config)),
    };
    tokio::spawn(async move { axum::serve(listener, app).await });
    (got, url, made.cert.pem())
}

/// Connections that completed a TLS handshake; the others are dropped.
struct TlsListener {
    tcp: tokio::net::TcpListener,
    tls: tokio_rustls::TlsAcceptor,
}

impl axum::serve::Listener for TlsListener {
    type Io = tokio_rustls::server::TlsStream<tokio::net::TcpStream>;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let Ok((tcp, from)) = self.tcp.accept().await else {
                continue;
            };
            let handshake = self.tls.accept(tcp);
            if let Ok(Ok(stream)) = tokio::time::timeout(Duration::from_secs(5), handshake).await {
                return (stream, from);
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.tcp.local_addr()
    }
}

/// An app that keeps every POST to `/hook` and answers 204.
fn recording() -> (Got, Router) {
    let got: Got = Arc::default();
    let keep = got.clone();
    let app = Router::new().route(
        "/hook",
        post(move |headers: HeaderMap, body: String| {
            let keep = keep.clone();
            async move {
                keep.lock().unwrap().push((headers, body));
                StatusCode::NO_CONTENT
            }
        }),
    );
    (got, app)
}

/// The kinds received for `name`, in order.
fn kinds(got: &Got, name: &str) -> Vec<String> {
    got.lock()
        .unwrap()
        .iter()
        .map(|(_, body)| serde_json::from_str::<Value>(body).unwrap())
        .filter(|event| event["container"] == name)
        .map(|event| event["kind"].as_str().unwrap().to_owned())
        .collect()
}

/// `t=<secs>,v1=<hex>` checked with `openssl`-free HMAC: recomputed here.
fn signed_with(secret: &str, headers: &HeaderMap, body: &str) -> bool {
    use hmac::{Hmac, Mac};
    let header = headers["dormant-signature"].to_str().unwrap();
    let (t, v1) = header.split_once(',').unwrap();
    let t = t.strip_prefix("t=").unwrap();
    let v1 = v1.strip_prefix("v1=").unwrap();
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{t}.{body}").as_bytes());
    let want: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    want == v1
}

#[tokio::test]
async fn a_webhook_receives_the_events_it_asked_for_signed_and_across_a_restart() {
    let mut dormant = Dormant::start();
    let (got, url) = receiver().await;
    let (status, made) = dormant
        .api(
            Method::POST,
            "/v1/webhooks",
            Some(json!({"url": url, "events": ["created", "ready", "asleep"]})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{made}");
    let secret = made["secret"].as_str().unwrap().to_owned();
    let id = made["webhook"]["id"].as_str().unwrap().to_owned();

    let name = unique("wh");
    dormant
        .create(json!({"image": demo_image(), "name": name}))
        .await;
    assert!(
        eventually(Duration::from_secs(20), async || kinds(&got, &name).len()
            == 2)
        .await,
        "got {:?}",
        kinds(&got, &name)
    );
    assert_eq!(kinds(&got, &name), ["created", "ready"]);
    for (headers, body) in got.lock().unwrap().iter() {
        assert!(
            signed_with(&secret, headers, body),
            "bad signature on {body}"
        );
    }
    let (_, list) = dormant.api(Method::GET, "/v1/webhooks", None).await;
    let shown = &list["webhooks"][0];
    assert_eq!(shown["id"], id.as_str());
    assert_eq!(shown["delivered"], 2);
    assert!(
        shown.get("secret").is_none(),
        "the secret is shown only once"
    );

    assert!(dormant.stop().success());
    dormant.restart();
    let (status, _) = dormant
        .api(Method::POST, &format!("/v1/containers/{name}/sleep"), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        eventually(Duration::from_secs(20), async || kinds(&got, &name).len()
            == 3)
        .await,
        "after a restart: {:?}",
        kinds(&got, &name)
    );
    assert_eq!(
        kinds(&got, &name)[2],
        "asleep",
        "sleeping was not asked for"
    );

    let (status, _) = dormant
        .api(Method::DELETE, &format!("/v1/webhooks/{id}"), None)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (_, list) = dormant.api(Method::GET, "/v1/webhooks", None).await;
    assert_eq!(list["webhooks"], json!([]));
}

#[tokio::test]
async fn an_https_receiver_trusted_through_the_ca_file_gets_signed_events_and_another_does_not() {
    let (got, url, cert) = tls_receiver().await;
    // Same name and subject, a certificate no one trusts.
    let (untrusted_got, untrusted_url, _) = tls_receiver().await;
    let ca_dir = std::env::temp_dir().join(unique("dormant-ca"));
    std::fs::create_dir_all(&ca_dir).unwrap();
    let ca_file = ca_dir.join("receiver.pem");
    std::fs::write(&ca_file, cert).unwrap();
    let dormant = Dormant::start_with(&["--webhook-ca-file", ca_file.to_str().unwrap()]);
    let _ = std::fs::remove_dir_all(&ca_dir);
    let mut secrets = Vec::new();
    for url in [&url, &untrusted_url] {
        let (status, made) = dormant
            .api(
                Method::POST,
                "/v1/webhooks",
                Some(json!({"url": url, "events": ["created", "ready"]})),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{made}");
        secrets.push(made["secret"].as_str().unwrap().to_owned());
    }

    let name = unique("whs");
    dormant
        .create(json!({"image": demo_image(), "name": name}))
        .await;
    assert!(
        eventually(Duration::from_secs(20), async || kinds(&got, &name).len()
            == 2)
        .await,
        "got {:?}; log:\n{}",
        kinds(&got, &name),
        dormant.log()
    );
    assert_eq!(kinds(&got, &name), ["created", "ready"]);
    for (headers, body) in got.lock().unwrap().iter() {
        assert!(
            signed_with(&secrets[0], headers, body),
            "bad signature on {body}"
        );
    }
    let (_, list) = dormant.api(Method::GET, "/v1/webhooks", None).await;
    let shown = |url: &str| {
        list["webhooks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|w| w["url"] == url)
            .unwrap()
            .clone()
    };
    let trusted = shown(&url);
    assert_eq!(
        (&trusted["delivered"], &trusted["failed"]),
        (&json!(2), &json!(0))
    );
    assert!(trusted.get("last_error").is_none(), "{trusted}");
    let untrusted = shown(&untrusted_url);
    assert_eq!(untrusted["delivered"], 0, "{untrusted}");
    let why = untrusted["last_error"].as_str().unwrap_or_default();
    assert!(
        why.contains("certificate is not trusted") && why.contains("--webhook-ca-file"),
        "{untrusted}"
    );
    assert!(untrusted_got.lock().unwrap().is_empty());
}

#[test]
fn a_ca_file_that_holds_no_certificate_stops_dormant_from_starting() {
    let data_dir = std::env::temp_dir().join(unique("dormant-ca-bad"));
    std::fs::create_dir_all(&data_dir).unwrap();
    let ca_file = data_dir.join("not-a-ca.pem");
    std::fs::write(&ca_file, "just some text\n").unwrap();
    let output = dormant_command()
        .args(["serve", "--data-dir"])
        .arg(&data_dir)
        .args(["--api-addr", "127.0.0.1:0", "--proxy-addr", "127.0.0.1:0"])
        .arg("--webhook-ca-file")
        .arg(&ca_file)
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(&data_dir);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "dormant started: {stderr}");
    assert!(
        stderr.contains("--webhook-ca-file")
            && stderr.contains(&*ca_file.to_string_lossy())
            && stderr.contains("no certificate"),
        "{stderr}"
    );
}

#[tokio::test]
async fn a_tenants_webhook_may_not_point_at_the_host() {
    let dormant = Dormant::start();
    let tenant = unique("tw");
    let (status, made) = dormant
        .api(Method::POST, "/v1/tenants", Some(json!({ "id": tenant })))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{made}");
    let token = made["token"]["token"].as_str().unwrap();
    for url in [
        "http://127.0.0.1:7070/v1/containers",
        "https://127.0.0.1:7070/v1/containers",
        "http://169.254.169.254/latest/meta-data",
        "http://[::1]/",
    ] {
        let body = json!({ "url": url }).to_string();
        let (status, refused) = dormant
            .api_raw(Method::POST, "/v1/webhooks", Some(token), body.into())
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{url}: {refused}");
        assert!(
            refused["error"]["message"]
                .as_str()
                .unwrap()
                .contains("url"),
            "{refused}"
        );
    }
    let body = json!({ "url": "http://hooks.example/", "events": ["exploded"] }).to_string();
    let (status, refused) = dormant
        .api_raw(Method::POST, "/v1/webhooks", Some(token), body.into())
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{refused}");
    assert!(
        refused["error"]["message"]
            .as_str()
            .unwrap()
            .contains("events"),
        "{refused}"
    );
    let (_, list) = dormant.api(Method::GET, "/v1/webhooks", None).await;
    assert_eq!(list["webhooks"], json!([]), "nothing left behind");
}
