//! Webhooks against a real HTTP receiver on loopback: signed deliveries in
//! order, retries on 5xx, no retry on 4xx, a bounded queue, filters; and
//! against a real HTTPS receiver with a certificate made for the test:
//! delivered when it is trusted and names the URL's host, refused with a
//! reason a person can act on otherwise.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;

use super::*;
use crate::domain::ContainerState;

/// What the receiver got, and the statuses it answers with in turn (then 200).
#[derive(Clone, Default)]
struct Receiver {
    got: Arc<Mutex<Vec<(HeaderMap, String)>>>,
    answers: Arc<Mutex<Vec<u16>>>,
}

impl Receiver {
    async fn start(answers: &[u16]) -> (Self, String) {
        let (receiver, app) = Self::app(answers);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        (receiver, url)
    }

    /// A receiver over TLS on 127.0.0.1 with a fresh self-signed certificate
    /// for `names`; the port, and the certificate (PEM) to trust.
    async fn start_tls(names: &[&str]) -> (Self, u16, String) {
        let (receiver, app) = Self::app(&[]);
        let made = rcgen::generate_simple_self_signed(
            names.iter().map(|n| n.to_string()).collect::<Vec<_>>(),
        )
        .unwrap();
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
        let port = tcp.local_addr().unwrap().port();
        let listener = TlsListener {
            tcp,
            tls: tokio_rustls::TlsAcceptor::from(Arc::new(config)),
        };
        tokio::spawn(async move { axum::serve(listener, app).await });
        (receiver, port, made.cert.pem())
    }

    /// Records what it gets and answers `answers` in turn (then 200).
    fn app(answers: &[u16]) -> (Self, Router) {
        let receiver = Receiver::default();
        *receiver.answers.lock().unwrap() = answers.to_vec();
        let state = receiver.clone();
        let app = Router::new().route(
            "/hook",
            post(move |headers: HeaderMap, body: String| {
                let state = state.clone();
                async move {
                    state.got.lock().unwrap().push((headers, body));
                    let mut answers = state.answers.lock().unwrap();
                    let code = if answers.is_empty() {
                        200
                    } else {
                        answers.remove(0)
                    };
                    StatusCode::from_u16(code).unwrap()
                }
            }),
        );
        (receiver, app)
    }

    fn bodies(&self) -> Vec<serde_json::Value> {
        self.got
            .lock()
            .unwrap()
            .iter()
            .map(|(_, body)| serde_json::from_str(body).unwrap())
            .collect()
    }
}

/// Connections that completed a TLS handshake; the others are dropped (a
/// client that refused the certificate).
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

fn row(url: &str, owner: &str, events: &[&str]) -> WebhookRow {
    WebhookRow {
        id: format!("wh_{}", crate::token::random_hex(4)),
        owner: owner.into(),
        url: url.into(),
        events: events.iter().map(|e| e.to_string()).collect(),
        container: None,
        secret: "s3cret".into(),
        created_at: 1,
    }
}

fn settings(retry_for: Duration) -> Settings {
    Settings {
        retry_for,
        allow_private: false,
        tls: tls::client_config(None).unwrap(),
    }
}

/// Settings that trust `cert_pem` (as `--webhook-ca-file` would) and let
/// tenants' webhooks reach loopback (as `--webhook-allow-private` would).
fn settings_trusting(cert_pem: &str) -> Settings {
    let dir = crate::runtime::fake::TempDir::new("webhook-ca");
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, cert_pem).unwrap();
    Settings {
        retry_for: Duration::from_secs(30),
        allow_private: true,
        tls: tls::client_config(Some(&ca_file)).unwrap(),
    }
}

/// An event as the bus makes them (ids increase).
fn event(_bus: &(), name: &str, tenant: &str, state: ContainerState) -> Arc<Event> {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    Arc::new(Event {
        id: NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
        at: 0,
        kind: crate::events::EventKind::entering(state),
        container: name.into(),
        tenant: tenant.into(),
        state,
        reason: None,
        wake_ms: None,
        unpause_ms: None,
        snapshot_bytes: None,
    })
}

async fn until(what: &str, mut done: impl FnMut() -> bool) {
    for _ in 0..200 {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for {what}");
}

#[tokio::test]
async fn events_are_delivered_signed_and_in_order() {
    let (receiver, url) = Receiver::start(&[]).await;
    let hooks = Webhooks::new(settings(Duration::from_secs(30)));
    let hook = row(&url, "admin", &[]);
    hooks.start(hook.clone());
    let bus = ();
    for state in [
        ContainerState::Creating,
        ContainerState::Running,
        ContainerState::Asleep,
    ] {
        hooks.dispatch(&event(&bus, "a", "acme", state));
    }
    until("three deliveries", || {
        receiver.got.lock().unwrap().len() == 3
    })
    .await;
    let kinds: Vec<_> = receiver
        .bodies()
        .iter()
        .map(|b| b["kind"].clone())
        .collect();
    assert_eq!(kinds, ["created", "ready", "asleep"]);
    for (headers, body) in receiver.got.lock().unwrap().iter() {
        let signed = headers[SIGNATURE_HEADER].to_str().unwrap();
        let t: u64 = signed.split(',').next().unwrap()[2..].parse().unwrap();
        assert_eq!(
            signed,
            signature("s3cret", t, body.as_bytes()),
            "signature checks out"
        );
        assert_eq!(headers["content-type"], "application/json");
        let id: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(
            headers["dormant-event-id"].to_str().unwrap(),
            id["id"].to_string()
        );
    }
    let (_, status) = hooks.list().pop().unwrap();
    assert_eq!(
        (status.delivered, status.failed, status.last_status),
        (3, 0, Some(200))
    );
}

#[tokio::test]
async fn a_5xx_is_retried_and_a_4xx_is_not() {
    let (flaky, flaky_url) = Receiver::start(&[503, 500]).await;
    let (refusing, refusing_url) = Receiver::start(&[404]).await;
    let hooks = Webhooks::new(settings(Duration::from_secs(30)));
    hooks.start(row(&flaky_url, "admin", &[]));
    hooks.start(row(&refusing_url, "admin", &[]));
    let bus = ();
    hooks.dispatch(&event(&bus, "a", "admin", ContainerState::Running));
    until("the third attempt", || flaky.got.lock().unwrap().len() == 3).await;
    until("the refusal", || refusing.got.lock().unwrap().len() == 1).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        refusing.got.lock().unwrap().len(),
        1,
        "a 404 is not retried"
    );
    let statuses: Vec<_> = hooks.list().into_iter().map(|(r, s)| (r.url, s)).collect();
    for (url, status) in statuses {
        if url == flaky_url {
            assert_eq!((status.delivered, status.failed), (1, 0));
        } else {
            assert_eq!(
                (status.delivered, status.failed, status.last_status),
                (0, 1, Some(404))
            );
            assert!(status.last_error.unwrap().contains("not retried"));
        }
    }
}

#[tokio::test]
async fn an_event_is_given_up_after_its_retry_time() {
    let (receiver, url) = Receiver::start(&[500, 500, 500, 500]).await;
    let hooks = Webhooks::new(settings(Duration::from_millis(1500)));
    hooks.start(row(&url, "admin", &[]));
    let bus = ();
    hooks.dispatch(&event(&bus, "a", "admin", ContainerState::Running));
    until("a failure", || hooks.list()[0].1.failed == 1).await;
    let (_, status) = hooks.list().pop().unwrap();
    assert_eq!(
        receiver.got.lock().unwrap().len(),
        2,
        "1 s, then out of time"
    );
    assert_eq!(status.last_status, Some(500));
    assert!(status
        .last_error
        .unwrap()
        .contains("given up after 2 tries"));
}

#[tokio::test]
async fn a_full_queue_drops_and_says_so_without_waiting() {
    // A receiver that accepts connections and never answers.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", silent.local_addr().unwrap());
    let hooks = Webhooks::new(settings(Duration::from_secs(60)));
    hooks.start(row(&url, "admin", &[]));
    let bus = ();
    let one = event(&bus, "a", "admin", ContainerState::Running);
    let started = std::time::Instant::now();
    for _ in 0..QUEUE + 50 {
        hooks.dispatch(&one);
    }
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "dispatch never waits"
    );
    let (_, status) = hooks.list().pop().unwrap();
    assert!(status.dropped >= 49, "{status:?}");
    assert!(status.last_error.unwrap().contains("queue"));
    drop(silent);
}

#[tokio::test]
async fn a_webhook_gets_what_its_owner_sees_and_its_filters_let_through() {
    let bus = ();
    let acme_ready = event(&bus, "a", "acme", ContainerState::Running);
    let other_ready = event(&bus, "b", "other", ContainerState::Running);
    let acme_failed = event(&bus, "a", "acme", ContainerState::Failed);
    let all = row("http://x/", "admin", &[]);
    assert!(wants(&all, &acme_ready) && wants(&all, &other_ready));
    let acme = row("http://x/", "acme", &["ready"]);
    assert!(wants(&acme, &acme_ready));
    assert!(!wants(&acme, &other_ready), "another tenant's container");
    assert!(!wants(&acme, &acme_failed), "a kind it did not ask for");
    let one = WebhookRow {
        container: Some("b".into()),
        ..row("http://x/", "admin", &[])
    };
    assert!(wants(&one, &other_ready) && !wants(&one, &acme_ready));
}

#[tokio::test]
async fn a_tenants_webhook_to_a_local_address_is_never_dialled() {
    let (receiver, url) = Receiver::start(&[]).await;
    let (tls_receiver, port, cert) = Receiver::start_tls(&["localhost"]).await;
    for url in [url, format!("https://localhost:{port}/hook")] {
        let hooks = Webhooks::new(Settings {
            allow_private: false,
            ..settings_trusting(&cert)
        });
        hooks.start(row(&url, "acme", &[]));
        let bus = ();
        hooks.dispatch(&event(&bus, "a", "acme", ContainerState::Running));
        until("a refusal", || hooks.list()[0].1.last_error.is_some()).await;
        let why = hooks.list()[0].1.last_error.clone().unwrap();
        assert!(why.contains("private or local"), "{url}: {why}");
    }
    assert!(receiver.got.lock().unwrap().is_empty());
    assert!(tls_receiver.got.lock().unwrap().is_empty());
}

#[tokio::test]
async fn an_https_receiver_with_a_trusted_certificate_gets_signed_events() {
    let (receiver, port, cert) = Receiver::start_tls(&["localhost"]).await;
    let hooks = Webhooks::new(settings_trusting(&cert));
    // A tenant's webhook, on loopback only because private addresses are
    // allowed; by name, so the certificate is checked against it.
    hooks.start(row(&format!("https://localhost:{port}/hook"), "acme", &[]));
    let bus = ();
    hooks.dispatch(&event(&bus, "a", "acme", ContainerState::Running));
    until("a delivery over TLS", || {
        receiver.got.lock().unwrap().len() == 1
    })
    .await;
    let (headers, body) = receiver.got.lock().unwrap()[0].clone();
    let signed = headers[SIGNATURE_HEADER].to_str().unwrap();
    let t: u64 = signed.split(',').next().unwrap()[2..].parse().unwrap();
    assert_eq!(signed, signature("s3cret", t, body.as_bytes()));
    assert_eq!(headers["host"], format!("localhost:{port}"));
    let (_, status) = hooks.list().pop().unwrap();
    assert_eq!((status.delivered, status.last_status), (1, Some(200)));
}

/// The last error of the only webhook of `hooks`, once an attempt failed.
async fn first_error(hooks: &Webhooks) -> String {
    until("a failed attempt", || {
        hooks.list()[0].1.last_error.is_some()
    })
    .await;
    hooks.list()[0].1.last_error.clone().unwrap()
}

#[tokio::test]
async fn an_https_receiver_with_an_untrusted_certificate_gets_nothing_and_the_status_says_why() {
    let (receiver, port, _cert) = Receiver::start_tls(&["localhost"]).await;
    let hooks = Webhooks::new(settings(Duration::from_secs(30)));
    hooks.start(row(&format!("https://localhost:{port}/hook"), "admin", &[]));
    let bus = ();
    hooks.dispatch(&event(&bus, "a", "admin", ContainerState::Running));
    let why = first_error(&hooks).await;
    assert!(
        why.contains("certificate is not trusted") && why.contains("--webhook-ca-file"),
        "{why}"
    );
    assert!(
        why.contains("trying again"),
        "the receiver may fix it: {why}"
    );
    assert!(receiver.got.lock().unwrap().is_empty());
    assert_eq!(hooks.list()[0].1.delivered, 0);
}

#[tokio::test]
async fn an_https_receiver_whose_certificate_names_another_host_gets_nothing() {
    let (receiver, port, cert) = Receiver::start_tls(&["hooks.example.com"]).await;
    let hooks = Webhooks::new(settings_trusting(&cert));
    hooks.start(row(&format!("https://localhost:{port}/hook"), "admin", &[]));
    let bus = ();
    hooks.dispatch(&event(&bus, "a", "admin", ContainerState::Running));
    let why = first_error(&hooks).await;
    assert!(why.contains("not valid for `localhost`"), "{why}");
    assert!(receiver.got.lock().unwrap().is_empty());
}

#[tokio::test]
async fn an_https_url_on_a_plain_http_receiver_says_it_does_not_speak_tls() {
    let (receiver, url) = Receiver::start(&[]).await;
    let hooks = Webhooks::new(settings(Duration::from_secs(30)));
    hooks.start(row(&url.replacen("http://", "https://", 1), "admin", &[]));
    let bus = ();
    hooks.dispatch(&event(&bus, "a", "admin", ContainerState::Running));
    let why = first_error(&hooks).await;
    assert!(why.contains("https on this port"), "{why}");
    assert!(receiver.got.lock().unwrap().is_empty());
}
