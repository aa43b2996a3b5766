//! What may wake a container, against the real binary and Docker: crawlers,
//! monitors, robots.txt and favicon.ico leave a sleeping container asleep;
//! a client over its wake rate gets 429 and wakes nothing; a flood of
//! unknown hostnames gets 429.

mod common;

use std::time::Duration;

use common::{demo_image, docker_running, unique, Dormant};
use http::{Method, StatusCode};
use serde_json::{json, Value};

const GOOGLEBOT: &str = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)";

async fn view(dormant: &Dormant, name: &str) -> Value {
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
    assert_eq!(docker_running(name), Some(false));
}

async fn get_as(
    dormant: &Dormant,
    name: &str,
    path: &str,
    agent: &str,
) -> http::Response<bytes::Bytes> {
    dormant
        .proxy_response(Method::GET, name, path, &[("user-agent", agent)])
        .await
}

#[tokio::test]
async fn bots_robots_and_favicons_leave_a_sleeping_container_asleep() {
    let dormant = Dormant::start();
    let name = unique("bots");
    dormant
        .create(json!({"image": demo_image(), "name": name}))
        .await;
    sleep_now(&dormant, &name).await;

    let crawled = get_as(&dormant, &name, "/", GOOGLEBOT).await;
    assert_eq!(crawled.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(crawled.headers().contains_key("retry-after"));
    let robots = get_as(&dormant, &name, "/robots.txt", "curl/8").await;
    assert_eq!(robots.status(), StatusCode::OK);
    assert_eq!(&robots.body()[..], b"User-agent: *\nDisallow: /\n");
    let favicon = get_as(&dormant, &name, "/favicon.ico", "curl/8").await;
    assert_eq!(favicon.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(view(&dormant, &name).await["state"], "asleep");
    assert_eq!(docker_running(&name), Some(false));

    // A person's request wakes it.
    let (status, body) = dormant.get(&name, "/").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(view(&dormant, &name).await["state"], "running");

    // While it runs, the bot is served by the container and leaves the
    // activity clock alone.
    let before = view(&dormant, &name).await["last_active_at"].clone();
    tokio::time::sleep(Duration::from_millis(20)).await;
    let served = get_as(&dormant, &name, "/", GOOGLEBOT).await;
    assert_eq!(served.status(), StatusCode::OK);
    let robots = get_as(&dormant, &name, "/robots.txt", GOOGLEBOT).await;
    assert_ne!(&robots.body()[..], b"User-agent: *\nDisallow: /\n");
    assert_eq!(view(&dormant, &name).await["last_active_at"], before);
}

#[tokio::test]
async fn a_client_over_its_wake_rate_gets_429_and_wakes_nothing() {
    let dormant = Dormant::start_with(&["--wake-rate", "1/m", "--wake-burst", "2"]);
    let base = unique("flood");
    let names: Vec<String> = (1..=3).map(|i| format!("{base}-{i}")).collect();
    dormant
        .create(json!({"image": demo_image(), "name": base, "count": 3}))
        .await;
    for name in &names {
        sleep_now(&dormant, name).await;
    }
    for name in &names[..2] {
        let (status, body) = dormant.get(name, "/").await;
        assert_eq!(status, StatusCode::OK, "{name}: {body}");
    }
    let refused = get_as(&dormant, &names[2], "/", "curl/8").await;
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry: u64 = refused.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry), "Retry-After: {retry}");
    assert_eq!(view(&dormant, &names[2]).await["state"], "asleep");
    assert_eq!(docker_running(&names[2]), Some(false));
    // Running containers are never limited.
    for _ in 0..10 {
        let (status, _) = dormant.get(&names[0], "/").await;
        assert_eq!(status, StatusCode::OK);
    }
}

#[tokio::test]
async fn a_herd_from_one_client_during_one_wake_costs_one_token() {
    // The default limits (the harness turns them off).
    let dormant = std::sync::Arc::new(Dormant::start_with(&[
        "--wake-rate",
        "20/m",
        "--wake-burst",
        "10",
        "--max-wake-rate",
        "10/s",
    ]));
    let name = unique("herd");
    dormant
        .create(json!({"image": demo_image(), "name": name}))
        .await;
    sleep_now(&dormant, &name).await;
    let mut requests = tokio::task::JoinSet::new();
    for _ in 0..100 {
        let (dormant, name) = (dormant.clone(), name.clone());
        requests.spawn(async move { dormant.get(&name, "/").await });
    }
    let mut refused = 0;
    while let Some(outcome) = requests.join_next().await {
        let (status, body) = outcome.unwrap();
        match status {
            StatusCode::OK => {}
            StatusCode::TOO_MANY_REQUESTS => refused += 1,
            other => panic!("{other}: {body}"),
        }
    }
    // Only the requests that raced the wake's start (one proxy thread per
    // core) can have paid a token; never the burst's worth.
    assert!(refused == 0, "{refused} of 100 refused");
    assert_eq!(view(&dormant, &name).await["wakes"], 1);
}

#[tokio::test]
async fn a_flood_of_unknown_hostnames_gets_429() {
    let dormant =
        Dormant::start_with(&["--unknown-host-rate", "60/m", "--unknown-host-burst", "5"]);
    for i in 0..5 {
        let (status, _) = dormant.get(&format!("nobody-{i}"), "/").await;
        assert_eq!(status, StatusCode::NOT_FOUND);
    }
    let refused = get_as(&dormant, "nobody-5", "/", "curl/8").await;
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(refused.headers().contains_key("retry-after"));
}
