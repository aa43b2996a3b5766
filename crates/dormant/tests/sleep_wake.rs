//! Sleep and wake against the real Docker daemon: idle containers stop, the
//! next request wakes them and is served as if they never stopped.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::{demo_image, docker_running, unique, Dormant};
use http::{Method, StatusCode};
use serde_json::{json, Value};

async fn state_of(dormant: &Dormant, name: &str) -> Value {
    let (status, json) = dormant
        .api(Method::GET, &format!("/v1/containers/{name}"), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{json}");
    json
}

async fn sleep_now(dormant: &Dormant, name: &str) {
    let (status, json) = dormant
        .api(Method::POST, &format!("/v1/containers/{name}/sleep"), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{json}");
    assert_eq!(json["state"], "asleep");
    assert_eq!(docker_running(name), Some(false));
}

#[tokio::test]
async fn an_idle_container_sleeps_and_the_next_request_finds_its_data() {
    let dormant = Dormant::start();
    let name = unique("idle");
    dormant
        .create(json!({"image": demo_image(), "name": name, "idle_timeout": "2s"}))
        .await;
    let (status, _) = dormant
        .proxy_request(
            Method::PUT,
            &name,
            "/files/data/note.txt",
            Bytes::from("written before sleep"),
        )
        .await;
    assert!(status.is_success(), "{status}");

    let slept = common::eventually(Duration::from_secs(15), async || {
        docker_running(&name) == Some(false)
    })
    .await;
    assert!(slept, "the container did not stop after its idle timeout");
    assert_eq!(state_of(&dormant, &name).await["state"], "asleep");

    let (status, body) = dormant.get(&name, "/files/data/note.txt").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body, "written before sleep");
    let view = state_of(&dormant, &name).await;
    assert_eq!(view["state"], "running");
    assert_eq!(view["wakes"], 1);
    assert!(view["last_wake_ms"].as_u64().is_some(), "{view}");
    assert_eq!(docker_running(&name), Some(true));
}

#[tokio::test]
async fn five_hundred_concurrent_requests_cause_one_start() {
    let dormant = std::sync::Arc::new(Dormant::start());
    let name = unique("herd");
    dormant
        .create(json!({"image": demo_image(), "name": name}))
        .await;
    sleep_now(&dormant, &name).await;
    let since = common::docker_time();

    let mut requests = tokio::task::JoinSet::new();
    for _ in 0..500 {
        let dormant = dormant.clone();
        let name = name.clone();
        requests.spawn(async move { dormant.get(&name, "/").await.0 });
    }
    let mut statuses = Vec::new();
    while let Some(status) = requests.join_next().await {
        statuses.push(status.unwrap());
    }
    let failed: Vec<_> = statuses.iter().filter(|s| **s != StatusCode::OK).collect();
    assert!(
        failed.is_empty(),
        "{} of 500 failed: {:?}",
        failed.len(),
        &failed[..failed.len().min(5)]
    );
    assert_eq!(state_of(&dormant, &name).await["wakes"], 1);
    let starts = common::docker_events(&since, &format!("dormant-{name}"), "start");
    assert_eq!(starts, 1, "Docker saw {starts} starts for one wake");
}

#[tokio::test]
async fn a_post_body_sent_to_a_sleeping_container_arrives_intact() {
    // A small wake buffer so the second body is larger than it: read ahead
    // in part, the rest streamed once the container answers.
    let dormant = Dormant::start_with(&["--wake-buffer", "64k"]);
    let name = unique("post");
    dormant
        .create(json!({"image": demo_image(), "name": name}))
        .await;
    for size in [10_000usize, 300_000] {
        sleep_now(&dormant, &name).await;
        let body: Vec<u8> = (0..size).map(|i| (i % 253) as u8).collect();
        let (status, echoed) = dormant
            .proxy_request(Method::POST, &name, "/echo", Bytes::from(body.clone()))
            .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(echoed.len(), size);
        assert!(
            echoed == body,
            "the body of {size} bytes changed on the way"
        );
    }
}

#[tokio::test]
async fn an_open_websocket_keeps_its_container_awake() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;

    let dormant = Dormant::start();
    let name = unique("ws");
    dormant
        .create(json!({"image": demo_image(), "name": name, "idle_timeout": "2s"}))
        .await;
    let mut socket = common::websocket(&dormant, &name, "/ws").await;
    socket.send(Message::text("hello")).await.unwrap();
    assert_eq!(
        socket.next().await.unwrap().unwrap(),
        Message::text("hello")
    );

    // Well past the idle timeout, with no traffic on the socket.
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(
        docker_running(&name),
        Some(true),
        "slept under an open WebSocket"
    );
    socket.send(Message::text("still here")).await.unwrap();
    assert_eq!(
        socket.next().await.unwrap().unwrap(),
        Message::text("still here")
    );

    socket.close(None).await.unwrap();
    drop(socket);
    let slept = common::eventually(Duration::from_secs(15), async || {
        docker_running(&name) == Some(false)
    })
    .await;
    assert!(slept, "did not sleep after the WebSocket closed");
}

#[tokio::test]
async fn heartbeats_keep_a_container_awake() {
    let dormant = Dormant::start();
    let name = unique("beat");
    dormant
        .create(json!({"image": demo_image(), "name": name, "idle_timeout": "2s"}))
        .await;
    for _ in 0..10 {
        let (status, _) = dormant
            .api(
                Method::POST,
                &format!("/v1/containers/{name}/heartbeat"),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::NO_CONTENT);
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert_eq!(
        docker_running(&name),
        Some(true),
        "slept despite heartbeats"
    );
}

#[tokio::test]
async fn redirect_strategy_answers_307_to_the_same_url_once_ready() {
    let dormant = Dormant::start();
    let name = unique("redir");
    dormant
        .create(json!({"image": demo_image(), "name": name, "wake": "redirect"}))
        .await;
    sleep_now(&dormant, &name).await;
    let response = dormant
        .proxy_response(Method::GET, &name, "/files/etc/hostname?x=1", &[])
        .await;
    assert_eq!(response.status(), StatusCode::TEMPORARY_REDIRECT);
    let location = response.headers()["location"].to_str().unwrap();
    assert_eq!(
        location,
        format!("http://{name}.localhost/files/etc/hostname?x=1")
    );
    // Ready by the time the redirect is sent: the repeated request is served.
    assert_eq!(docker_running(&name), Some(true));
    let (status, _) = dormant.get(&name, "/files/etc/hostname?x=1").await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn page_strategy_shows_browsers_a_waking_page_and_holds_other_clients() {
    let dormant = Dormant::start();
    let name = unique("page");
    dormant
        .create(json!({"image": demo_image(), "name": name, "wake": "page"}))
        .await;
    sleep_now(&dormant, &name).await;
    let response = dormant
        .proxy_response(
            Method::GET,
            &name,
            "/",
            &[("accept", "text/html,application/xhtml+xml")],
        )
        .await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(response.headers().contains_key("retry-after"));
    assert!(response.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    let woke = common::eventually(Duration::from_secs(30), async || {
        state_of(&dormant, &name).await["state"] == "running"
    })
    .await;
    assert!(woke, "the page did not start the wake");

    sleep_now(&dormant, &name).await;
    let (status, body) = dormant.get(&name, "/").await;
    assert_eq!(
        status,
        StatusCode::OK,
        "an API client must be held, not shown a page: {body}"
    );
}

#[tokio::test]
async fn a_container_that_crashes_at_start_fails_with_a_reason_and_backs_off() {
    let dormant = Dormant::start_with(&["--wake-timeout", "20s"]);
    let name = unique("crash");
    dormant
        .create(json!({"image": demo_image(), "name": name, "cmd": ["--exit-if-exists", "/crash"]}))
        .await;
    let (status, _) = dormant
        .proxy_request(Method::PUT, &name, "/files/crash", Bytes::from("boom"))
        .await;
    assert!(status.is_success());
    sleep_now(&dormant, &name).await;

    let started = std::time::Instant::now();
    let (status, body) = dormant.get(&name, "/").await;
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "answered only after the wake timeout"
    );
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{body}");
    assert!(body.contains("exited with code 3"), "{body}");
    let view = state_of(&dormant, &name).await;
    assert_eq!(view["state"], "failed");
    assert!(
        view["reason"]
            .as_str()
            .unwrap()
            .contains("exited with code 3"),
        "{view}"
    );

    // At once again: backing off, not restarted in a tight loop.
    let response = dormant.proxy_response(Method::GET, &name, "/", &[]).await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(response.headers().contains_key("retry-after"));
    let since = common::docker_time();
    for _ in 0..5 {
        let _ = dormant.get(&name, "/").await;
    }
    assert_eq!(
        common::docker_events(&since, &format!("dormant-{name}"), "start"),
        0
    );
}

#[tokio::test]
async fn a_slow_starting_app_is_never_answered_with_502() {
    let dormant = Dormant::start();
    let name = unique("slow");
    dormant
        .create(json!({"image": demo_image(), "name": name, "cmd": ["--startup-delay", "2s"]}))
        .await;
    sleep_now(&dormant, &name).await;
    let started = std::time::Instant::now();
    let (status, body) = dormant.get(&name, "/").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(started.elapsed() >= Duration::from_secs(2));
}

#[tokio::test]
async fn a_sleep_racing_requests_ends_consistent_and_serves_them() {
    let dormant = std::sync::Arc::new(Dormant::start());
    let name = unique("race");
    dormant
        .create(json!({"image": demo_image(), "name": name}))
        .await;
    for _ in 0..3 {
        let sleeper = {
            let dormant = dormant.clone();
            let name = name.clone();
            tokio::spawn(async move {
                dormant
                    .api(Method::POST, &format!("/v1/containers/{name}/sleep"), None)
                    .await
                    .0
            })
        };
        let mut requests = tokio::task::JoinSet::new();
        for _ in 0..20 {
            let dormant = dormant.clone();
            let name = name.clone();
            requests.spawn(async move { dormant.get(&name, "/").await });
        }
        while let Some(outcome) = requests.join_next().await {
            let (status, body) = outcome.unwrap();
            assert_eq!(status, StatusCode::OK, "{body}");
        }
        assert_eq!(sleeper.await.unwrap(), StatusCode::OK);
        let state = state_of(&dormant, &name).await["state"]
            .as_str()
            .unwrap()
            .to_owned();
        let running = docker_running(&name);
        match state.as_str() {
            "running" => assert_eq!(running, Some(true)),
            "asleep" => assert_eq!(running, Some(false)),
            other => panic!("ended in state {other}"),
        }
        let (status, _) = dormant.get(&name, "/").await;
        assert_eq!(status, StatusCode::OK);
    }
}

#[tokio::test]
async fn containers_asleep_when_dormant_restarts_wake_on_the_next_request() {
    let mut dormant = Dormant::start();
    let name = unique("restart");
    dormant
        .create(json!({"image": demo_image(), "name": name}))
        .await;
    dormant
        .proxy_request(Method::PUT, &name, "/files/data/kept", Bytes::from("kept"))
        .await;
    sleep_now(&dormant, &name).await;
    dormant.kill_and_restart();
    assert_eq!(state_of(&dormant, &name).await["state"], "asleep");
    let (status, body) = dormant.get(&name, "/files/data/kept").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body, "kept");
}

#[tokio::test]
async fn a_container_stopped_behind_dormants_back_is_woken_again() {
    let dormant = Dormant::start();
    let name = unique("behind");
    dormant
        .create(json!({"image": demo_image(), "name": name}))
        .await;
    common::docker_lines(&["stop", "-t", "1", &format!("dormant-{name}")]);
    // Docker's event stream tells dormant at once.
    let noticed = common::eventually(Duration::from_secs(10), async || {
        state_of(&dormant, &name).await["state"] == "asleep"
    })
    .await;
    assert!(noticed, "dormant did not notice the stop");
    let (status, _) = dormant.get(&name, "/").await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn an_app_listening_on_the_wrong_port_fails_at_once_naming_its_port() {
    let dormant = Dormant::start_with(&["--wake-timeout", "60s"]);
    let name = unique("wrong-port");
    // Configured for 8080, the demo app listens on 3000 only.
    let started = std::time::Instant::now();
    let (status, json) = dormant
        .api(
            Method::POST,
            "/v1/containers",
            Some(json!({"image": demo_image(), "name": name, "port": 8080, "cmd": ["--port", "3000"]})),
        )
        .await;
    let took = started.elapsed();
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{json}");
    let text = json.to_string();
    assert!(
        text.contains(
            "the app listens on 3000 but not on the configured port 8080; set `port` to 3000"
        ),
        "{text}"
    );
    // Seen within a second of the start, failed 2 s later: far from the
    // 60 s the wake would otherwise wait.
    assert!(took < Duration::from_secs(20), "took {took:?}: {text}");
    dormant
        .assert_nothing_left("after a create on the wrong port")
        .await;
}
