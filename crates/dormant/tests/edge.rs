//! The proxy's edge limits against the real binary: slow and idle
//! connections, the connection cap, request targets dormant answers or
//! refuses itself, oversized heads, forwarded headers and the hold budget.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::{demo_image, unique, Dormant};
use http::{Method, StatusCode};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinSet;

/// Bounds every wait on a socket, so a broken limit fails the test instead
/// of hanging it. Not a timing assertion: each limit under test is seconds.
const HANG_GUARD: Duration = Duration::from_secs(30);

/// Reads until the peer closes (or resets) the connection; what came.
async fn read_to_close(stream: &mut TcpStream) -> Vec<u8> {
    let mut received = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        match tokio::time::timeout(HANG_GUARD, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return received,
            Ok(Ok(n)) => received.extend_from_slice(&buf[..n]),
            Err(_) => panic!(
                "the connection was still open after {HANG_GUARD:?}; got so far: {}",
                String::from_utf8_lossy(&received)
            ),
        }
    }
}

/// Reads one response head and its `Content-Length` body from a kept-alive
/// connection; returns the head's text.
async fn read_response(stream: &mut TcpStream) -> String {
    let mut received = Vec::new();
    let mut buf = [0u8; 4096];
    let head_end = loop {
        if let Some(at) = received.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        let n = tokio::time::timeout(HANG_GUARD, stream.read(&mut buf))
            .await
            .expect("no response in time")
            .expect("read failed");
        assert!(n > 0, "closed before a whole response: {received:?}");
        received.extend_from_slice(&buf[..n]);
    };
    let head = String::from_utf8_lossy(&received[..head_end]).into_owned();
    let length: usize = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length:")
                .map(|v| v.trim().parse().unwrap())
        })
        .unwrap_or(0);
    let mut body = received.len() - head_end;
    while body < length {
        let n = stream.read(&mut buf).await.unwrap();
        assert!(n > 0, "closed mid-body");
        body += n;
    }
    head
}

/// Sends `request` on a new connection and reads until dormant closes it.
async fn exchange(proxy: SocketAddr, request: &[u8]) -> String {
    let mut stream = TcpStream::connect(proxy).await.unwrap();
    // A refused connection may be reset before the request is written.
    let _ = stream.write_all(request).await;
    String::from_utf8_lossy(&read_to_close(&mut stream).await).into_owned()
}

/// The body of a whole response, chunked or not.
fn body_of(response: &str) -> String {
    let (head, mut rest) = response.split_once("\r\n\r\n").expect("a response head");
    if !head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        return rest.to_owned();
    }
    let mut body = String::new();
    loop {
        let (size, after) = rest.split_once("\r\n").expect("a chunk size");
        let size = usize::from_str_radix(size.trim(), 16).expect("a hex chunk size");
        if size == 0 {
            return body;
        }
        body.push_str(&after[..size]);
        rest = &after[size + 2..];
    }
}

fn status_of(response: &str) -> Option<u16> {
    response.split_whitespace().nth(1)?.parse().ok()
}

#[tokio::test]
async fn a_slow_head_is_cut_at_the_header_timeout_but_an_idle_connection_is_not() {
    let dormant = Dormant::start_with(&["--header-timeout", "1s"]);

    // The first head, half sent and never finished.
    let mut stream = TcpStream::connect(dormant.proxy).await.unwrap();
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: nobody.localhost\r\n")
        .await
        .unwrap();
    let received = read_to_close(&mut stream).await;
    assert!(
        !received.starts_with(b"HTTP/1.1 2"),
        "a half-sent head was answered: {}",
        String::from_utf8_lossy(&received)
    );

    // Kept alive: idle for longer than the header timeout is fine...
    let mut stream = TcpStream::connect(dormant.proxy).await.unwrap();
    let request = b"GET / HTTP/1.1\r\nHost: nobody.localhost\r\n\r\n";
    stream.write_all(request).await.unwrap();
    assert!(read_response(&mut stream).await.starts_with("HTTP/1.1 404"));
    tokio::time::sleep(Duration::from_millis(2500)).await;
    stream.write_all(request).await.unwrap();
    let head = read_response(&mut stream).await;
    assert!(
        head.starts_with("HTTP/1.1 404"),
        "an idle kept-alive connection was cut by the header timeout: {head}"
    );
    // ...but a later head, once started, must finish within it.
    stream.write_all(b"GET / HTTP/1.1\r\nHo").await.unwrap();
    let received = read_to_close(&mut stream).await;
    assert!(
        received.is_empty(),
        "{}",
        String::from_utf8_lossy(&received)
    );
}

#[tokio::test]
async fn an_idle_kept_alive_connection_is_closed_at_the_idle_timeout() {
    let dormant = Dormant::start_with(&["--idle-connection-timeout", "1s"]);
    let mut stream = TcpStream::connect(dormant.proxy).await.unwrap();
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: nobody.localhost\r\n\r\n")
        .await
        .unwrap();
    assert!(read_response(&mut stream).await.starts_with("HTTP/1.1 404"));
    let received = read_to_close(&mut stream).await;
    assert!(
        received.is_empty(),
        "{}",
        String::from_utf8_lossy(&received)
    );
}

#[tokio::test]
async fn past_max_connections_new_ones_are_closed_and_the_api_still_answers() {
    let dormant = Dormant::start_with(&["--max-connections", "3"]);
    let request = b"GET / HTTP/1.1\r\nHost: nobody.localhost\r\n\r\n";
    let mut open = Vec::new();
    for _ in 0..3 {
        let mut stream = TcpStream::connect(dormant.proxy).await.unwrap();
        stream.write_all(request).await.unwrap();
        assert!(read_response(&mut stream).await.starts_with("HTTP/1.1 404"));
        open.push(stream);
    }

    let refused = exchange(dormant.proxy, request).await;
    assert_eq!(refused, "", "a fourth connection was served");
    let (status, json) = dormant.api(Method::GET, "/v1/stats", None).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "the API is down while the proxy is full: {json}"
    );
    let (_, metrics) = dormant.api(Method::GET, "/metrics", None).await;
    let metrics = metrics.as_str().unwrap_or_default().to_owned();
    assert!(
        metrics.contains("dormant_proxy_refused_connections_total 1"),
        "{metrics}"
    );

    // One closes: a new connection gets its slot.
    drop(open.pop());
    let served = common::eventually(HANG_GUARD, async || {
        status_of(
            &exchange(
                dormant.proxy,
                b"GET / HTTP/1.1\r\nHost: nobody.localhost\r\nConnection: close\r\n\r\n",
            )
            .await,
        ) == Some(404)
    })
    .await;
    assert!(served, "a freed connection slot was never reused");
}

#[tokio::test]
async fn targets_that_are_not_a_container_s_path_are_answered_by_dormant() {
    let dormant = Dormant::start();
    let name = unique("targets");
    dormant
        .create(json!({"image": demo_image(), "name": name}))
        .await;
    let host = format!("{name}.localhost");
    // Asleep: a request that reached it would have had to wake it first.
    let path = format!("/v1/containers/{name}/sleep");
    let (status, json) = dormant.api(Method::POST, &path, None).await;
    assert_eq!(status, StatusCode::OK, "{json}");

    let options = exchange(
        dormant.proxy,
        format!("OPTIONS * HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await;
    assert_eq!(status_of(&options), Some(200), "{options}");
    assert!(
        options
            .to_ascii_lowercase()
            .contains("\r\nallow: get, head, post, put, patch, delete, options\r\n"),
        "{options}"
    );

    let connect = exchange(
        dormant.proxy,
        format!("CONNECT {host}:80 HTTP/1.1\r\nHost: {host}:80\r\nConnection: close\r\n\r\n")
            .as_bytes(),
    )
    .await;
    assert_eq!(status_of(&connect), Some(405), "{connect}");
    assert!(
        connect.to_ascii_lowercase().contains("\r\nallow: "),
        "{connect}"
    );

    // An absolute target naming another place than the Host.
    let elsewhere = exchange(
        dormant.proxy,
        format!(
            "GET http://127.0.0.1:80/echo HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
        )
        .as_bytes(),
    )
    .await;
    assert_eq!(status_of(&elsewhere), Some(400), "{elsewhere}");

    let (_, state) = dormant
        .api(Method::GET, &format!("/v1/containers/{name}"), None)
        .await;
    assert_eq!(
        state["state"], "asleep",
        "a refused or answered request woke it: {state}"
    );
    assert_eq!(common::docker_running(&name), Some(false));

    // One that agrees with the Host is the container's.
    let absolute = exchange(
        dormant.proxy,
        format!("GET http://{host}/echo HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n")
            .as_bytes(),
    )
    .await;
    assert_eq!(status_of(&absolute), Some(200), "{absolute}");
    assert!(
        absolute
            .to_ascii_lowercase()
            .contains("x-request-method: get"),
        "{absolute}"
    );
}

#[tokio::test]
async fn too_many_headers_or_too_big_a_head_get_431() {
    let dormant = Dormant::start();
    let head = |headers: usize, filler: usize| {
        let mut request = String::from("GET / HTTP/1.1\r\nHost: nobody.localhost\r\n");
        for i in 1..headers {
            request.push_str(&format!("x-h{i}: 1\r\n"));
        }
        request.push_str(&format!("x-filler: {}\r\n", "a".repeat(filler)));
        request.push_str("Connection: close\r\n\r\n");
        request
    };
    // Host, the x-h ones, x-filler and Connection: 100 fields.
    let hundred = exchange(dormant.proxy, head(98, 10).as_bytes()).await;
    assert_eq!(status_of(&hundred), Some(404), "{hundred}");
    let hundred_and_one = exchange(dormant.proxy, head(99, 10).as_bytes()).await;
    assert_eq!(status_of(&hundred_and_one), Some(431), "{hundred_and_one}");
    let big = exchange(dormant.proxy, head(2, 70 * 1024).as_bytes()).await;
    assert_eq!(status_of(&big), Some(431), "{big}");
}

#[tokio::test]
async fn forwarded_headers_from_an_untrusted_client_are_replaced() {
    let dormant = Dormant::start();
    let name = unique("fwd");
    dormant
        .create(json!({"image": demo_image(), "name": name}))
        .await;
    let response = dormant
        .proxy_response(
            Method::GET,
            &name,
            "/headers",
            &[
                ("x-forwarded-for", "6.6.6.6"),
                ("x-forwarded-host", "bank.example"),
                ("x-forwarded-proto", "https"),
                ("forwarded", "for=6.6.6.6"),
            ],
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let seen: serde_json::Value = serde_json::from_slice(response.body()).unwrap();
    assert_eq!(seen["x-forwarded-for"], "127.0.0.1", "{seen}");
    assert_eq!(
        seen["x-forwarded-host"],
        format!("{name}.localhost"),
        "{seen}"
    );
    assert_eq!(seen["x-forwarded-proto"], "http", "{seen}");
    assert!(seen.get("forwarded").is_none(), "{seen}");
}

#[tokio::test]
async fn forwarded_headers_from_a_trusted_proxy_are_kept_and_extended() {
    let dormant = Dormant::start_with(&["--trusted-proxies", "10.0.0.0/8,127.0.0.1"]);
    let name = unique("trusted");
    dormant
        .create(json!({"image": demo_image(), "name": name}))
        .await;
    // A trusted proxy's X-Forwarded-Host also routes: it must name the
    // container under the base domain.
    let public_host = format!("{name}.localhost:8443");
    let response = dormant
        .proxy_response(
            Method::GET,
            &name,
            "/headers",
            &[
                ("x-forwarded-for", "203.0.113.7"),
                ("x-forwarded-host", &public_host),
                ("x-forwarded-proto", "https"),
            ],
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let seen: serde_json::Value = serde_json::from_slice(response.body()).unwrap();
    assert_eq!(seen["x-forwarded-for"], "203.0.113.7, 127.0.0.1", "{seen}");
    assert_eq!(seen["x-forwarded-host"], public_host.as_str(), "{seen}");
    assert_eq!(seen["x-forwarded-proto"], "https", "{seen}");
}

/// dormant's RSS as its API reports it, for the log of a test.
async fn rss_mib(dormant: &Dormant) -> f64 {
    let (_, stats) = dormant.api(Method::GET, "/v1/stats", None).await;
    stats["dormant_rss_bytes"].as_f64().unwrap_or(0.0) / (1 << 20) as f64
}

/// Sends `count` requests at once (each on its own connection, each asking
/// to close after); the status of each answer, `None` for a connection that
/// ended without one.
async fn storm(proxy: SocketAddr, count: usize, request: String) -> Vec<(Option<u16>, String)> {
    let mut set = JoinSet::new();
    for _ in 0..count {
        let request = request.clone();
        set.spawn(async move {
            let response = exchange(proxy, request.as_bytes()).await;
            (status_of(&response), response)
        });
    }
    set.join_all().await
}

#[tokio::test]
async fn held_requests_past_the_caps_get_503_with_retry_after() {
    const BODY: usize = 16 * 1024;
    let dormant = Dormant::start_with(&[
        "--max-held-requests",
        "8",
        "--wake-buffer",
        "16k",
        "--wake-buffer-total",
        "64k",
    ]);
    let name = unique("held");
    // A wake that takes seconds, so every request of a storm finds it waking.
    dormant
        .create(json!({"image": demo_image(), "name": name, "cmd": ["--startup-delay", "4s"]}))
        .await;
    let host = format!("{name}.localhost");
    let put_to_sleep = async || {
        let path = format!("/v1/containers/{name}/sleep");
        let (status, json) = dormant.api(Method::POST, &path, None).await;
        assert_eq!(status, StatusCode::OK, "{json}");
    };

    // By count: 30 GETs, at most 8 held.
    put_to_sleep().await;
    let rss_before = rss_mib(&dormant).await;
    let answers = storm(
        dormant.proxy,
        30,
        format!("GET /echo HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"),
    )
    .await;
    let served = answers.iter().filter(|(s, _)| *s == Some(200)).count();
    let refused: Vec<&String> = answers
        .iter()
        .filter(|(s, _)| *s == Some(503))
        .map(|(_, r)| r)
        .collect();
    assert!((1..=8).contains(&served), "{served} served: {answers:?}");
    assert_eq!(served + refused.len(), 30, "{answers:?}");
    for response in &refused {
        let lower = response.to_ascii_lowercase();
        assert!(lower.contains("\r\nretry-after: 1\r\n"), "{response}");
        assert!(lower.contains("too many requests"), "{response}");
    }

    // By bytes: POSTs of 16 KiB each, 64 KiB for all of them: at most 4 held.
    put_to_sleep().await;
    let body = "b".repeat(BODY);
    let answers = storm(
        dormant.proxy,
        30,
        format!(
            "POST /echo HTTP/1.1\r\nHost: {host}\r\nContent-Length: {BODY}\r\nConnection: close\r\n\r\n{body}"
        ),
    )
    .await;
    let rss_after = rss_mib(&dormant).await;
    eprintln!("dormant's RSS: {rss_before:.1} MiB before the storms, {rss_after:.1} MiB after");
    let served: Vec<&String> = answers
        .iter()
        .filter(|(s, _)| *s == Some(200))
        .map(|(_, r)| r)
        .collect();
    let refused = answers.iter().filter(|(s, r)| {
        *s == Some(503) && r.to_ascii_lowercase().contains("\r\nretry-after: 1\r\n")
    });
    assert!(
        !served.is_empty() && served.len() <= 4,
        "{} served: {answers:?}",
        served.len()
    );
    for response in &served {
        assert_eq!(body_of(response), body, "a held body came back changed");
    }
    assert_eq!(
        served.len() + refused.count(),
        30,
        "answers other than 200 or 503 with Retry-After: {answers:?}"
    );
    let (_, metrics) = dormant.api(Method::GET, "/metrics", None).await;
    assert!(
        metrics
            .as_str()
            .unwrap_or_default()
            .contains("dormant_proxy_refused_holds_total"),
        "{metrics}"
    );
}

#[tokio::test]
async fn streams_and_websockets_outlive_the_connection_timeouts_and_hold_their_slot() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;

    let dormant = Dormant::start_with(&[
        "--header-timeout",
        "500ms",
        "--idle-connection-timeout",
        "500ms",
        "--max-connections",
        "1",
    ]);
    let name = unique("long");
    dormant
        .create(json!({"image": demo_image(), "name": name}))
        .await;

    // A response with a second between its chunks.
    let streamed = exchange(
        dormant.proxy,
        format!(
            "GET /stream?seconds=2 HTTP/1.1\r\nHost: {name}.localhost\r\nConnection: close\r\n\r\n"
        )
        .as_bytes(),
    )
    .await;
    assert_eq!(status_of(&streamed), Some(200), "{streamed}");
    assert!(
        body_of(&streamed).ends_with("tick 1\ndone\n"),
        "a streaming response was cut: {streamed}"
    );

    // The slot of the streamed connection comes back once it is closed.
    let mut socket = None;
    for _ in 0..100 {
        let stream = TcpStream::connect(dormant.proxy).await.unwrap();
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        let mut request = format!("ws://{name}.localhost/ws")
            .into_client_request()
            .unwrap();
        request
            .headers_mut()
            .insert("host", format!("{name}.localhost").parse().unwrap());
        if let Ok((ws, _)) = tokio_tungstenite::client_async(request, stream).await {
            socket = Some(ws);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut socket = socket.expect("no WebSocket through the proxy");
    tokio::time::sleep(Duration::from_secs(2)).await;
    // The tunnel holds the only connection slot.
    let refused = exchange(
        dormant.proxy,
        format!("GET / HTTP/1.1\r\nHost: {name}.localhost\r\n\r\n").as_bytes(),
    )
    .await;
    assert_eq!(
        refused, "",
        "a connection past the cap was served while a WebSocket was open"
    );
    socket.send(Message::text("still here")).await.unwrap();
    let echoed = tokio::time::timeout(HANG_GUARD, socket.next())
        .await
        .expect("no echo")
        .expect("the WebSocket was closed")
        .unwrap();
    assert_eq!(echoed, Message::text("still here"));
}

#[test]
fn a_max_connections_the_open_file_limit_cannot_hold_is_refused_at_start() {
    let data_dir = std::env::temp_dir().join(unique("dormant-nofile"));
    let output = common::dormant_command()
        .args(["serve", "--data-dir"])
        .arg(&data_dir)
        .args(["--api-addr", "127.0.0.1:0", "--proxy-addr", "127.0.0.1:0"])
        .args(["--max-connections", "1000000000000"])
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(&data_dir);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "dormant started: {stderr}");
    assert!(
        stderr.contains("--max-connections 1000000000000 needs about"),
        "{stderr}"
    );
}
