//! The proxy against real containers: batches, WebSockets, many requests at
//! once, big streamed bodies, forwarded headers and host matching.

mod common;

use std::collections::HashSet;
use std::convert::Infallible;

use bytes::Bytes;
use common::{demo_image, unique, Dormant};
use futures_util::{stream, SinkExt, StreamExt};
use http::{header, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Frame;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::{json, Value};
use tokio::task::JoinSet;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

/// The hostname the demo reports in `GET /` (`hello from <hostname> (started ...)`).
fn demo_hostname(body: &str) -> String {
    body.strip_prefix("hello from ")
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("not a demo greeting: {body}"))
        .to_owned()
}

/// Asserts every container answers through the proxy and each with its own
/// container hostname.
async fn assert_each_answers_as_itself(dormant: &Dormant, names: &[String]) {
    let mut hostnames = HashSet::new();
    for name in names {
        let (status, body) = dormant.get(name, "/").await;
        assert_eq!(status, StatusCode::OK, "{name}: {body}");
        assert!(
            hostnames.insert(demo_hostname(&body)),
            "{name} answered as another container: {body}"
        );
    }
}

#[tokio::test]
async fn a_named_batch_makes_numbered_containers_each_answering_as_itself() {
    let image = demo_image();
    let dormant = Dormant::start();
    let name = unique("lab");

    let created = dormant
        .create(json!({"image": image, "name": name, "count": 5}))
        .await;
    let names: Vec<String> = created
        .iter()
        .map(|c| c["name"].as_str().unwrap().to_owned())
        .collect();
    let expected: Vec<String> = (1..=5).map(|i| format!("{name}-{i}")).collect();
    assert_eq!(names, expected);
    let hosts: HashSet<&str> = created
        .iter()
        .map(|c| c["host"].as_str().unwrap())
        .collect();
    assert_eq!(hosts.len(), 5, "hosts are not distinct: {created:?}");
    for container in &created {
        assert_eq!(
            container["host"],
            format!("{}.localhost", container["name"].as_str().unwrap())
        );
        assert_eq!(container["state"], "running");
    }
    assert_each_answers_as_itself(&dormant, &names).await;
    assert_eq!(dormant.docker_containers().len(), 5);

    let mut listed = dormant.names().await;
    listed.sort();
    assert_eq!(listed, expected);
}

#[tokio::test]
async fn a_batch_without_a_name_gets_distinct_generated_names() {
    let image = demo_image();
    let dormant = Dormant::start();

    let created = dormant.create(json!({"image": image, "count": 5})).await;
    let names: Vec<String> = created
        .iter()
        .map(|c| c["name"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(names.len(), 5);
    assert_eq!(
        names.iter().collect::<HashSet<_>>().len(),
        5,
        "names are not distinct: {names:?}"
    );
    assert_each_answers_as_itself(&dormant, &names).await;
    assert_eq!(dormant.docker_containers().len(), 5);
}

#[tokio::test]
async fn websocket_messages_round_trip_through_the_proxy() {
    let image = demo_image();
    let dormant = Dormant::start();
    let name = unique("ws");
    dormant.create(json!({"image": image, "name": name})).await;

    let mut request = format!("ws://{}/ws", dormant.proxy)
        .into_client_request()
        .unwrap();
    request
        .headers_mut()
        .insert(header::HOST, format!("{name}.localhost").parse().unwrap());
    let stream = tokio::net::TcpStream::connect(dormant.proxy).await.unwrap();
    let (mut socket, response) = tokio_tungstenite::client_async(request, stream)
        .await
        .expect("WebSocket handshake through the proxy");
    assert_eq!(response.status(), StatusCode::SWITCHING_PROTOCOLS);

    let big: Vec<u8> = (0..256 * 1024).map(|i| (i % 251) as u8).collect();
    let messages = [
        Message::text("hello through dormant"),
        Message::binary(vec![0u8, 1, 2, 254, 255]),
        Message::text("second text, after a binary one"),
        Message::binary(big),
    ];
    for message in messages {
        socket.send(message.clone()).await.unwrap();
        let reply = loop {
            match socket.next().await.expect("the socket closed").unwrap() {
                Message::Ping(_) | Message::Pong(_) => continue,
                other => break other,
            }
        };
        assert_eq!(reply, message);
    }
    socket.close(None).await.unwrap();
    // The close handshake completes: the stream ends (possibly after the close frame).
    while let Some(frame) = socket.next().await {
        match frame {
            Ok(Message::Close(_)) => {}
            Ok(other) => panic!("unexpected message after close: {other:?}"),
            Err(_) => break,
        }
    }
}

#[tokio::test]
async fn two_hundred_concurrent_requests_are_all_answered() {
    let image = demo_image();
    let dormant = Dormant::start();
    let name = unique("busy");
    dormant.create(json!({"image": image, "name": name})).await;

    let client = dormant.http_client();
    let mut requests = JoinSet::new();
    for i in 0..200 {
        let client = client.clone();
        let uri = format!(
            "http://{}{}",
            dormant.proxy,
            if i % 2 == 0 { "/" } else { "/echo" }
        );
        let host = format!("{name}.localhost");
        // Half echo a body unique to the request, so a mixed-up answer shows.
        let body = if i % 2 == 0 {
            String::new()
        } else {
            format!("request number {i}")
        };
        let method = if i % 2 == 0 {
            Method::GET
        } else {
            Method::POST
        };
        requests.spawn(async move {
            let request = Request::builder()
                .method(method)
                .uri(uri)
                .header(header::HOST, host)
                .body(Full::new(Bytes::from(body.clone())))
                .unwrap();
            let response = client
                .request(request)
                .await
                .map_err(|e| format!("request {i}: {e}"))?;
            let status = response.status();
            let bytes = response
                .into_body()
                .collect()
                .await
                .map_err(|e| format!("request {i}: {e}"))?
                .to_bytes();
            let text = String::from_utf8_lossy(&bytes).into_owned();
            if status != StatusCode::OK {
                return Err(format!("request {i}: {status}: {text}"));
            }
            if i % 2 == 1 && text != body {
                return Err(format!("request {i}: echoed `{text}`, sent `{body}`"));
            }
            Ok(())
        });
    }
    let mut failures = Vec::new();
    let mut answered = 0;
    while let Some(result) = requests.join_next().await {
        match result.unwrap() {
            Ok(()) => answered += 1,
            Err(e) => failures.push(e),
        }
    }
    assert!(
        failures.is_empty(),
        "{} of 200 failed: {failures:#?}",
        failures.len()
    );
    assert_eq!(answered, 200);
}

const FIFTY_MB: u64 = 50 * 1024 * 1024;
const CHUNK: usize = 64 * 1024;

/// A deterministic, non-repeating-looking byte sequence: chunk `index` of
/// the upload.
fn upload_chunk(index: u64) -> Bytes {
    let mut x = index.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut chunk = Vec::with_capacity(CHUNK);
    while chunk.len() < CHUNK {
        // xorshift64
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        chunk.extend_from_slice(&x.to_le_bytes());
    }
    chunk.truncate(CHUNK);
    Bytes::from(chunk)
}

/// FNV-1a, 64 bits: enough to tell two 50 MB bodies apart.
#[derive(Clone, Copy)]
struct Fnv(u64);

impl Fnv {
    fn new() -> Self {
        Self(0xcbf2_9ce4_8422_2325)
    }

    fn update(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }
}

#[tokio::test]
async fn a_fifty_megabyte_streamed_upload_is_stored_whole() {
    let image = demo_image();
    let dormant = Dormant::start();
    let name = unique("upload");
    dormant.create(json!({"image": image, "name": name})).await;

    let chunks = FIFTY_MB / CHUNK as u64;
    let mut expected = Fnv::new();
    for i in 0..chunks {
        expected.update(&upload_chunk(i));
    }
    // The body is made chunk by chunk as hyper asks for it, sent without a
    // length (chunked): the proxy cannot know the size in advance.
    let body = StreamBody::new(stream::iter(
        (0..chunks).map(|i| Ok::<_, Infallible>(Frame::data(upload_chunk(i)))),
    ));
    let client = Client::builder(TokioExecutor::new()).build_http::<StreamBody<_>>();
    let request = Request::builder()
        .method(Method::PUT)
        .uri(format!("http://{}/files/tmp/big", dormant.proxy))
        .header(header::HOST, format!("{name}.localhost"))
        .header(header::CONTENT_TYPE, "application/octet-stream")
        .body(body)
        .unwrap();
    let response = client
        .request(request)
        .await
        .expect("upload through the proxy");
    let status = response.status();
    let text = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(
        status,
        StatusCode::CREATED,
        "{}",
        String::from_utf8_lossy(&text)
    );

    let request = Request::builder()
        .uri(format!("http://{}/files/tmp/big", dormant.proxy))
        .header(header::HOST, format!("{name}.localhost"))
        .body(Full::new(Bytes::new()))
        .unwrap();
    let response = dormant.http_client().request(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let mut body = response.into_body();
    let mut length = 0u64;
    let mut got = Fnv::new();
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame.unwrap().into_data() {
            length += data.len() as u64;
            got.update(&data);
        }
    }
    assert_eq!(length, FIFTY_MB, "the stored file has the wrong length");
    assert_eq!(
        got.0, expected.0,
        "the stored file differs from what was uploaded"
    );
}

#[tokio::test]
async fn a_fifty_megabyte_download_streams_through_intact() {
    let image = demo_image();
    let dormant = Dormant::start();
    let name = unique("download");
    dormant.create(json!({"image": image, "name": name})).await;

    let request = Request::builder()
        .uri(format!(
            "http://{}/download?bytes={FIFTY_MB}",
            dormant.proxy
        ))
        .header(header::HOST, format!("{name}.localhost"))
        .body(Full::new(Bytes::new()))
        .unwrap();
    let response = dormant.http_client().request(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    if let Some(length) = response.headers().get(header::CONTENT_LENGTH) {
        assert_eq!(length.to_str().unwrap(), FIFTY_MB.to_string());
    }
    let mut body = response.into_body();
    let mut offset = 0u64;
    while let Some(frame) = body.frame().await {
        let Ok(data) = frame.expect("the download broke off").into_data() else {
            continue;
        };
        for (i, byte) in data.iter().enumerate() {
            let at = offset + i as u64;
            assert_eq!(*byte, (at % 251) as u8, "byte {at} is wrong");
        }
        offset += data.len() as u64;
    }
    assert_eq!(offset, FIFTY_MB);
}

/// `GET /headers` through the proxy with the given Host and extra headers.
async fn echoed_headers(
    dormant: &Dormant,
    host: &str,
    extra: &[(&str, &str)],
) -> (StatusCode, Value) {
    let mut request = Request::builder()
        .uri(format!("http://{}/headers", dormant.proxy))
        .header(header::HOST, host);
    for (key, value) in extra {
        request = request.header(*key, *value);
    }
    let response = dormant
        .http_client()
        .request(request.body(Full::new(Bytes::new())).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let json = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()));
    (status, json)
}

#[tokio::test]
async fn forwarded_headers_are_added_and_hop_by_hop_ones_dropped() {
    let image = demo_image();
    let dormant = Dormant::start();
    let name = unique("headers");
    dormant.create(json!({"image": image, "name": name})).await;

    let host = format!("{name}.localhost");
    let (status, headers) = echoed_headers(
        &dormant,
        &host,
        &[
            ("connection", "x-secret"),
            ("x-secret", "1"),
            ("x-kept", "yes"),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{headers}");
    assert_eq!(headers["x-forwarded-for"], "127.0.0.1", "{headers}");
    assert_eq!(headers["x-forwarded-host"], host.as_str(), "{headers}");
    assert_eq!(headers["x-forwarded-proto"], "http", "{headers}");
    assert_eq!(
        headers["x-kept"], "yes",
        "an end-to-end header was dropped: {headers}"
    );
    assert!(
        headers.get("x-secret").is_none(),
        "a header named by Connection was forwarded: {headers}"
    );
    let connection = headers
        .get("connection")
        .and_then(Value::as_str)
        .unwrap_or_default();
    assert!(
        !connection.contains("x-secret"),
        "the client's Connection header was forwarded: {headers}"
    );
}

#[tokio::test]
async fn hosts_match_case_insensitively_ignoring_the_port_and_strangers_get_404() {
    let image = demo_image();
    let dormant = Dormant::start();
    let name = unique("hosts");
    dormant.create(json!({"image": image, "name": name})).await;

    let shouting = format!("{}.LOCALHOST:1234", name.to_ascii_uppercase());
    let (status, headers) = echoed_headers(&dormant, &shouting, &[]).await;
    assert_eq!(status, StatusCode::OK, "{shouting}: {headers}");

    let (status, body) = dormant.get(&unique("nobody"), "/").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert!(body.contains("no container"), "{body}");

    for stranger in [
        "example.com",
        &format!("{name}.example.com"),
        &format!("a.{name}.localhost"),
        "localhost",
    ] {
        let (status, body) = echoed_headers(&dormant, stranger, &[]).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{stranger}: {body}");
        assert!(
            body.as_str().is_some_and(|b| b.contains("no container")),
            "{stranger}: {body}"
        );
    }
}
