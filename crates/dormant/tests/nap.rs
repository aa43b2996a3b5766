//! The nap tier against the real Docker daemon: an idle container is
//! paused (Docker shows it paused), its next request thaws it and is served
//! with its data intact, with no start; a napping container still sleeps
//! after its idle timeout; pauses made by hand are followed.

mod common;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::{demo_image, docker_lines, docker_running, unique, Dormant};
use http::{Method, StatusCode};
use serde_json::{json, Value};

/// What `docker inspect` says of `dormant-<name>`: (running, paused).
fn docker_state(name: &str) -> (bool, bool) {
    let line = docker_lines(&[
        "inspect",
        "-f",
        "{{.State.Running}} {{.State.Paused}}",
        &format!("dormant-{name}"),
    ]);
    let seen = line.first().expect("docker inspect printed a line");
    match seen.split_once(' ') {
        Some((running, paused)) => (running == "true", paused == "true"),
        None => panic!("unexpected `docker inspect` output: {seen}"),
    }
}

async fn view(dormant: &Dormant, name: &str) -> Value {
    let (status, json) = dormant
        .api(Method::GET, &format!("/v1/containers/{name}"), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{json}");
    json
}

#[tokio::test]
async fn an_idle_container_naps_and_its_next_request_is_served_with_its_data() {
    let dormant = Dormant::start();
    let name = unique("nap");
    let created = dormant
        .create(json!({"image": demo_image(), "name": name, "nap_after": "1s"}))
        .await;
    assert_eq!(created[0]["nap_after"], "1s");
    let (status, _) = dormant
        .proxy_request(
            Method::PUT,
            &name,
            "/files/data/note.txt",
            Bytes::from("written before the nap"),
        )
        .await;
    assert!(status.is_success(), "{status}");

    let napped = common::eventually(Duration::from_secs(15), async || {
        docker_state(&name) == (true, true)
    })
    .await;
    assert!(napped, "Docker does not show it paused after nap_after");
    assert_eq!(view(&dormant, &name).await["state"], "napping");

    let since = common::docker_time();
    let (status, body) = dormant.get(&name, "/files/data/note.txt").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body, "written before the nap");
    assert_eq!(docker_state(&name), (true, false), "running, not paused");
    let after = view(&dormant, &name).await;
    assert_eq!(after["state"], "running");
    assert_eq!(after["wakes"], 0, "an unpause is no wake: {after}");
    let container = format!("dormant-{name}");
    assert_eq!(common::docker_events(&since, &container, "unpause"), 1);
    assert_eq!(common::docker_events(&since, &container, "start"), 0);
    let (_, metrics) = dormant
        .api_raw(Method::GET, "/metrics", None, Bytes::new())
        .await;
    let metrics = metrics.as_str().unwrap_or_default();
    assert!(
        metrics.contains("dormant_unpauses_total 1"),
        "the unpause is counted: {metrics}"
    );
}

#[tokio::test]
async fn a_napping_container_sleeps_after_its_idle_timeout() {
    let dormant = Dormant::start();
    let name = unique("napsleep");
    dormant
        .create(json!({
            "image": demo_image(), "name": name, "nap_after": "1s", "idle_timeout": "4s"
        }))
        .await;
    let napped = common::eventually(Duration::from_secs(15), async || {
        docker_state(&name) == (true, true)
    })
    .await;
    assert!(napped, "it did not nap");
    let slept = common::eventually(Duration::from_secs(20), async || {
        docker_running(&name) == Some(false)
    })
    .await;
    assert!(
        slept,
        "a napping container did not stop at its idle timeout"
    );
    assert_eq!(view(&dormant, &name).await["state"], "asleep");
    let exit = docker_lines(&[
        "inspect",
        "-f",
        "{{.State.ExitCode}}",
        &format!("dormant-{name}"),
    ]);
    assert_eq!(exit, ["0"], "the app got its SIGTERM and exited cleanly");
    let (status, _) = dormant.get(&name, "/").await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn a_nap_on_demand_is_thawed_once_for_a_burst_of_requests() {
    let dormant = Arc::new(Dormant::start());
    let name = unique("napburst");
    dormant
        .create(json!({"image": demo_image(), "name": name, "nap_after": "0"}))
        .await;
    let (status, json) = dormant
        .api(Method::POST, &format!("/v1/containers/{name}/nap"), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{json}");
    assert_eq!(json["state"], "napping");
    assert_eq!(docker_state(&name), (true, true));

    let since = common::docker_time();
    let mut requests = tokio::task::JoinSet::new();
    for _ in 0..50 {
        let dormant = dormant.clone();
        let name = name.clone();
        requests.spawn(async move { dormant.get(&name, "/").await.0 });
    }
    while let Some(status) = requests.join_next().await {
        assert_eq!(status.unwrap(), StatusCode::OK);
    }
    let container = format!("dormant-{name}");
    assert_eq!(common::docker_events(&since, &container, "unpause"), 1);

    // Asleep, it cannot nap: a 409 that says why.
    dormant
        .api(Method::POST, &format!("/v1/containers/{name}/sleep"), None)
        .await;
    let (status, json) = dormant
        .api(Method::POST, &format!("/v1/containers/{name}/nap"), None)
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{json}");
    assert!(json["error"]["message"]
        .as_str()
        .unwrap()
        .contains("asleep"));
}

#[tokio::test]
async fn a_pause_or_unpause_by_hand_is_followed() {
    let dormant = Dormant::start();
    let name = unique("naphand");
    dormant
        .create(json!({"image": demo_image(), "name": name, "nap_after": "0"}))
        .await;
    let container = format!("dormant-{name}");
    docker_lines(&["pause", &container]);
    let napping = common::eventually(Duration::from_secs(10), async || {
        view(&dormant, &name).await["state"] == "napping"
    })
    .await;
    assert!(napping, "a pause by hand is not shown as napping");
    docker_lines(&["unpause", &container]);
    let running = common::eventually(Duration::from_secs(10), async || {
        view(&dormant, &name).await["state"] == "running"
    })
    .await;
    assert!(running, "an unpause by hand is not shown as running");

    // A napping container is deleted like any other.
    let (status, json) = dormant
        .api(Method::POST, &format!("/v1/containers/{name}/nap"), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{json}");
    let (status, json) = dormant
        .api(Method::DELETE, &format!("/v1/containers/{name}"), None)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{json}");
    assert_eq!(docker_running(&name), None, "its Docker container is gone");
}

#[tokio::test]
async fn nap_after_is_bounded_and_changed_in_place() {
    let dormant = Dormant::start();
    let (status, json) = dormant
        .api(
            Method::POST,
            "/v1/containers",
            Some(json!({"image": demo_image(), "nap_after": "200ms"})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{json}");
    assert!(json["error"]["message"]
        .as_str()
        .unwrap()
        .contains("nap_after"));
    assert!(dormant.names().await.is_empty(), "nothing was made");

    let name = unique("nappatch");
    dormant
        .create(json!({"image": demo_image(), "name": name}))
        .await;
    let path = format!("/v1/containers/{name}");
    for (body, field) in [
        (json!({"nap_after": "soon"}), "nap_after"),
        (json!({"nap_after": "101years"}), "nap_after"),
        (json!({"image": "other"}), "image"),
    ] {
        let (status, json) = dormant.api(Method::PATCH, &path, Some(body)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{json}");
        let message = json["error"]["message"].as_str().unwrap();
        assert!(message.contains(field), "{message}");
    }
    let (status, json) = dormant
        .api(Method::PATCH, &path, Some(json!({"nap_after": "1s"})))
        .await;
    assert_eq!(status, StatusCode::OK, "{json}");
    assert_eq!(json["nap_after"], "1s");
    let napped = common::eventually(Duration::from_secs(15), async || {
        docker_state(&name) == (true, true)
    })
    .await;
    assert!(napped, "the new nap_after is not followed");
    let (status, json) = dormant
        .api(Method::PATCH, &path, Some(json!({"nap_after": null})))
        .await;
    assert_eq!(status, StatusCode::OK, "{json}");
    assert!(
        json.get("nap_after").is_none(),
        "back to the default: {json}"
    );

    let (_, doc) = dormant.api(Method::GET, "/v1/openapi.json", None).await;
    assert!(doc["paths"]["/v1/containers/{name}/nap"]["post"].is_object());
    assert!(doc["paths"]["/v1/containers/{name}"]["patch"].is_object());
    let states = doc["components"]["schemas"]["ContainerState"].to_string();
    assert!(states.contains("napping"), "{states}");
}
