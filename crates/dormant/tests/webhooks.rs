//! Webhooks on the real binary: a registered URL receives the events it
//! asked for, signed with its secret; the registration survives a restart;
//! a tenant's webhook may not point at the host's own network.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::HeaderMap;
use axum::routing::post;
use axum::Router;
use common::{demo_image, eventually, unique, Dormant};
use http::{Method, StatusCode};
use serde_json::{json, Value};

type Got = Arc<Mutex<Vec<(HeaderMap, String)>>>;

/// A receiver on loopback; returns what it got and its URL.
async fn receiver() -> (Got, String) {
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
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (got, url)
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
