//! `GET /v1/events` on the real binary: transitions arrive as Server-Sent
//! Events, in order, resumable with `Last-Event-ID`; a tenant sees only its
//! own containers' events and its stream ends when its token is revoked.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::{demo_image, unique, Dormant};
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::{json, Value};

/// One open event stream, read event by event.
struct Stream {
    body: Incoming,
    buffer: String,
}

/// One Server-Sent Event: its `id`, `event` and `data` fields.
#[derive(Debug)]
struct Sse {
    id: Option<u64>,
    kind: String,
    data: Value,
}

impl Stream {
    async fn open(dormant: &Dormant, token: &str, query: &str, last: Option<u64>) -> Self {
        let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
        let mut request = Request::builder()
            .uri(format!("http://{}/v1/events{query}", dormant.api))
            .header("authorization", format!("Bearer {token}"));
        if let Some(last) = last {
            request = request.header("last-event-id", last.to_string());
        }
        let response = client
            .request(request.body(Empty::new()).unwrap())
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(
            response.headers()["content-type"].to_str().unwrap(),
            "text/event-stream"
        );
        Self {
            body: response.into_body(),
            buffer: String::new(),
        }
    }

    /// The next event, skipping heartbeat comments; `None` once the
    /// stream ends or nothing comes within `wait`.
    async fn next(&mut self, wait: Duration) -> Option<Sse> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let mut event = Sse {
                    id: None,
                    kind: "message".into(),
                    data: Value::Null,
                };
                let mut any = false;
                for line in block.lines() {
                    if let Some(id) = line.strip_prefix("id: ") {
                        event.id = id.parse().ok();
                    } else if let Some(kind) = line.strip_prefix("event: ") {
                        event.kind = kind.into();
                        any = true;
                    } else if let Some(data) = line.strip_prefix("data: ") {
                        event.data = serde_json::from_str(data).unwrap();
                        any = true;
                    }
                }
                if any {
                    return Some(event);
                }
                continue;
            }
            let frame = tokio::time::timeout_at(deadline, self.body.frame())
                .await
                .ok()??
                .unwrap();
            if let Ok(data) = frame.into_data() {
                self.buffer.push_str(std::str::from_utf8(&data).unwrap());
            }
        }
    }

    /// Events until one of `kind` for `name` (inclusive).
    async fn until(&mut self, name: &str, kind: &str) -> Vec<Sse> {
        let mut seen = Vec::new();
        loop {
            let event = self
                .next(Duration::from_secs(30))
                .await
                .unwrap_or_else(|| panic!("no `{kind}` for {name}; saw {seen:?}"));
            let done = event.kind == kind && event.data["container"] == name;
            seen.push(event);
            if done {
                return seen;
            }
        }
    }
}

#[tokio::test]
async fn transitions_stream_in_order_and_resume_after_the_last_seen() {
    let dormant = Dormant::start();
    let name = unique("ev");
    let mut stream = Stream::open(&dormant, &dormant.token, &format!("?name={name}"), None).await;
    dormant
        .create(json!({"image": demo_image(), "name": name}))
        .await;
    let created = stream.until(&name, "ready").await;
    let kinds: Vec<_> = created.iter().map(|e| e.kind.as_str()).collect();
    assert_eq!(kinds, ["created", "ready"]);
    let ready = &created[1];
    assert_eq!(ready.data["tenant"], "admin");
    assert_eq!(ready.data["state"], "running");
    assert_eq!(ready.data["id"].as_u64(), ready.id);

    let (status, body) = dormant
        .api(Method::POST, &format!("/v1/containers/{name}/sleep"), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let slept = stream.until(&name, "asleep").await;
    assert_eq!(slept.last().unwrap().data["reason"], "asked");
    let sleeping_id = slept[0].id.unwrap();
    drop(stream);

    // Wake it through the proxy, then resume from `sleeping`: `asleep`
    // comes again, then the wake.
    let (status, _) = dormant.get(&name, "/").await;
    assert_eq!(status, StatusCode::OK);
    let mut resumed = Stream::open(&dormant, &dormant.token, "", Some(sleeping_id)).await;
    let again = resumed.until(&name, "ready").await;
    let kinds: Vec<_> = again.iter().map(|e| e.kind.as_str()).collect();
    assert_eq!(kinds, ["asleep", "starting", "ready"]);
    assert!(
        again[2].data["wake_ms"].as_u64().is_some(),
        "{:?}",
        again[2]
    );

    // An id from before anything this process kept: start over.
    let mut stale = Stream::open(&dormant, &dormant.token, "", Some(1)).await;
    let first = stale.next(Duration::from_secs(10)).await.unwrap();
    assert_eq!(first.kind, "reset");
}

#[tokio::test]
async fn a_tenant_sees_only_its_own_events_until_its_token_is_revoked() {
    let dormant = Dormant::start();
    let tenant = unique("te");
    let (status, made) = dormant
        .api(Method::POST, "/v1/tenants", Some(json!({ "id": tenant })))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{made}");
    let token = made["token"]["token"].as_str().unwrap().to_owned();
    let token_id = made["token"]["id"].as_str().unwrap().to_owned();
    let mut stream = Stream::open(&dormant, &token, "", None).await;

    let admins = unique("ev");
    dormant
        .create(json!({"image": demo_image(), "name": admins}))
        .await;
    let own = unique("ev");
    let body = json!({"image": demo_image(), "name": own}).to_string();
    let (status, created) = dormant
        .api_raw(Method::POST, "/v1/containers", Some(&token), body.into())
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let seen = stream.until(&own, "ready").await;
    assert!(
        seen.iter().all(|e| e.data["container"] == own.as_str()),
        "a tenant saw another's events: {seen:?}"
    );

    let (status, body) = dormant
        .api(
            Method::DELETE,
            &format!("/v1/tenants/{tenant}/tokens/{token_id}"),
            None,
        )
        .await;
    assert!(status.is_success(), "{status} {body}");
    // The stream ends within the recheck interval.
    let mut ended = false;
    for _ in 0..3 {
        if stream.next(Duration::from_secs(10)).await.is_none() {
            ended = true;
            break;
        }
    }
    assert!(ended, "the stream of a revoked token goes on");
    let (status, _) = dormant
        .api(Method::DELETE, &format!("/v1/containers/{own}"), None)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
}

#[tokio::test]
async fn a_bad_last_event_id_is_a_400_naming_it() {
    let dormant = Dormant::start();
    let request = Request::builder()
        .uri(format!("http://{}/v1/events", dormant.api))
        .header("authorization", format!("Bearer {}", dormant.token))
        .header("last-event-id", "yesterday")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let response = client.request(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    let json: Value = serde_json::from_slice(&body).unwrap();
    assert!(
        json["error"]["message"]
            .as_str()
            .unwrap()
            .contains("Last-Event-ID"),
        "{json}"
    );
}

#[tokio::test]
async fn an_open_stream_ends_at_shutdown_instead_of_holding_it_up() {
    let mut dormant = Dormant::start_with(&["--drain-timeout", "20s"]);
    let mut stream = Stream::open(&dormant, &dormant.token.clone(), "", None).await;
    let asked = std::time::Instant::now();
    dormant.terminate();
    assert!(stream.next(Duration::from_secs(15)).await.is_none());
    let status = dormant
        .wait_exit(Duration::from_secs(15))
        .expect("dormant did not exit with a stream open");
    assert!(status.success(), "{status}");
    assert!(
        asked.elapsed() < Duration::from_secs(15),
        "shutdown waited for the stream: {:?}",
        asked.elapsed()
    );
}
