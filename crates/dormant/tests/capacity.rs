//! Capacity limits and metrics against the real Docker daemon: starts past
//! `--max-running` put the least recently active container to sleep, a
//! storm of wakes never runs more than the limit, and `/metrics` counts it.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{demo_image, docker_running, unique, Dormant};
use http::{Method, StatusCode};
use serde_json::json;

fn running_count(dormant: &Dormant) -> usize {
    common::docker_lines(&[
        "ps",
        "-q",
        "--filter",
        &format!("label=dormant.node={}", dormant.node),
    ])
    .len()
}

#[tokio::test]
async fn waking_past_the_limit_puts_the_least_recently_used_to_sleep() {
    let dormant = Dormant::start_with(&["--max-running", "2"]);
    let [a, b, c] = [unique("lru-a"), unique("lru-b"), unique("lru-c")];
    for name in [&a, &b, &c] {
        dormant
            .create(json!({"image": demo_image(), "name": name}))
            .await;
    }
    // Creating the third made room by putting the oldest to sleep.
    assert_eq!(docker_running(&a), Some(false));
    assert_eq!(running_count(&dormant), 2);
    // b is now more recent than c.
    assert_eq!(dormant.get(&b, "/").await.0, StatusCode::OK);
    let (status, body) = dormant.get(&a, "/").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(docker_running(&a), Some(true));
    assert_eq!(docker_running(&b), Some(true));
    assert_eq!(
        docker_running(&c),
        Some(false),
        "the least recently used was not the one evicted"
    );
    assert_eq!(running_count(&dormant), 2);
}

#[tokio::test]
async fn a_container_with_an_open_websocket_is_not_evicted_while_another_can_be() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;

    let dormant = Dormant::start_with(&["--max-running", "2"]);
    let [a, b, c] = [unique("ws-a"), unique("ws-b"), unique("ws-c")];
    dormant
        .create(json!({"image": demo_image(), "name": a}))
        .await;
    dormant
        .create(json!({"image": demo_image(), "name": b}))
        .await;
    let mut socket = common::websocket(&dormant, &a, "/ws").await;
    // a is the least recently active by its last request, but in use.
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(dormant.get(&b, "/").await.0, StatusCode::OK);
    dormant
        .create(json!({"image": demo_image(), "name": c}))
        .await;
    assert_eq!(
        docker_running(&a),
        Some(true),
        "the container with an open WebSocket was evicted"
    );
    assert_eq!(docker_running(&b), Some(false));
    socket.send(Message::text("still open")).await.unwrap();
    assert_eq!(
        socket.next().await.unwrap().unwrap(),
        Message::text("still open")
    );
}

#[tokio::test]
async fn a_storm_of_wakes_never_runs_more_than_the_limit() {
    let dormant = Arc::new(Dormant::start_with(&[
        "--max-running",
        "3",
        "--wake-timeout",
        "20s",
    ]));
    let base = unique("storm");
    let created = dormant
        .create(json!({"image": demo_image(), "name": base, "count": 10}))
        .await;
    let names: Vec<String> = created
        .iter()
        .map(|c| c["name"].as_str().unwrap().to_owned())
        .collect();
    for name in &names {
        let (status, _) = dormant
            .api(Method::POST, &format!("/v1/containers/{name}/sleep"), None)
            .await;
        assert_eq!(status, StatusCode::OK);
    }

    let peak = Arc::new(AtomicUsize::new(0));
    let watching = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let watcher = {
        let (dormant, peak, watching) = (dormant.clone(), peak.clone(), watching.clone());
        std::thread::spawn(move || {
            while watching.load(Ordering::Relaxed) {
                peak.fetch_max(running_count(&dormant), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    };
    let mut requests = tokio::task::JoinSet::new();
    for round in 0..3 {
        for name in &names {
            let (dormant, name) = (dormant.clone(), name.clone());
            requests.spawn(async move {
                let response = dormant.proxy_response(Method::GET, &name, "/", &[]).await;
                (round, response)
            });
        }
    }
    let mut served = 0;
    while let Some(outcome) = requests.join_next().await {
        let (_, response) = outcome.unwrap();
        match response.status() {
            StatusCode::OK => served += 1,
            StatusCode::SERVICE_UNAVAILABLE => {
                assert!(
                    response.headers().contains_key("retry-after"),
                    "503 without Retry-After"
                )
            }
            other => panic!("unexpected {other}: {:?}", response.body()),
        }
    }
    watching.store(false, Ordering::Relaxed);
    watcher.join().unwrap();
    assert!(served > 0, "nothing was served");
    let peak = peak.load(Ordering::Relaxed);
    assert!(
        peak <= 3,
        "{peak} containers ran at once with --max-running 3"
    );
}

#[tokio::test]
async fn metrics_parse_as_prometheus_text_and_count_a_wake() {
    let dormant = Dormant::start();
    let name = unique("metrics");
    dormant
        .create(json!({"image": demo_image(), "name": name}))
        .await;
    dormant
        .api(Method::POST, &format!("/v1/containers/{name}/sleep"), None)
        .await;
    assert_eq!(dormant.get(&name, "/").await.0, StatusCode::OK);

    // No token needed.
    let (status, text) = dormant
        .api_raw(Method::GET, "/metrics", None, bytes::Bytes::new())
        .await;
    assert_eq!(status, StatusCode::OK);
    let text = text.as_str().expect("text").to_owned();
    let mut samples = std::collections::HashMap::new();
    for line in text.lines() {
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        // `name{labels} value`: the value must parse as a number.
        let (series, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("bad line `{line}`"));
        let value: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("bad value in `{line}`"));
        let metric = series.split('{').next().unwrap();
        assert!(
            metric
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_')
                && metric.starts_with("dormant_"),
            "bad metric name in `{line}`"
        );
        samples.insert(series.to_owned(), value);
    }
    assert_eq!(samples.get("dormant_wakes_total"), Some(&1.0), "{text}");
    assert_eq!(
        samples.get("dormant_wake_duration_seconds_count"),
        Some(&1.0)
    );
    assert_eq!(samples.get("dormant_sleeps_total"), Some(&1.0));
    assert_eq!(
        samples.get("dormant_containers{state=\"running\"}"),
        Some(&1.0)
    );
    assert!(
        samples
            .get("dormant_proxy_requests_total{class=\"2xx\"}")
            .copied()
            .unwrap_or(0.0)
            >= 1.0
    );
    assert!(!text.contains(&name), "metrics must not name containers");

    let (status, stats) = dormant.api(Method::GET, "/v1/stats", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(stats["running"], 1);
    assert!(stats["dormant_rss_bytes"].as_u64().unwrap() > 0);
}
