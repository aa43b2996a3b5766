//! dormant going away and coming back: SIGKILL and restart keep every route
//! and every file, containers removed behind its back come back, and SIGTERM
//! drains and exits cleanly.

mod common;

use std::process::Command;
use std::time::Duration;

use bytes::Bytes;
use common::{demo_image, eventually, unique, Dormant};
use http::{header, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Generous bound for anything that involves starting a container.
const CONTAINER_START: Duration = Duration::from_secs(90);

async fn put_file(dormant: &Dormant, name: &str, path: &str, content: &str) {
    let (status, body) = dormant
        .proxy_request(
            Method::PUT,
            name,
            &format!("/files{path}"),
            Bytes::from(content.to_owned()),
        )
        .await;
    assert!(
        status.is_success(),
        "PUT {path} on {name}: {status} {body:?}"
    );
}

#[tokio::test]
async fn sigkill_and_restart_keep_every_route_and_file() {
    let image = demo_image();
    let mut dormant = Dormant::start();
    let name = unique("keep");
    let created = dormant
        .create(json!({"image": image, "name": name, "count": 3, "volumes": ["/data"]}))
        .await;
    let names: Vec<String> = created
        .iter()
        .map(|c| c["name"].as_str().unwrap().to_owned())
        .collect();
    let mut greetings = Vec::new();
    for name in &names {
        let (status, body) = dormant.get(name, "/").await;
        assert_eq!(status, StatusCode::OK, "{body}");
        greetings.push(body);
    }
    put_file(&dormant, &names[0], "/data/x", "written before the crash").await;
    put_file(
        &dormant,
        &names[1],
        "/tmp/y",
        "in the container's own layer",
    )
    .await;
    let old_proxy = dormant.proxy;

    dormant.kill_and_restart();
    assert_ne!(
        dormant.proxy, old_proxy,
        "the harness gives each start new ports"
    );

    // Running containers get their routes back before dormant says it listens.
    for (name, greeting) in names.iter().zip(&greetings) {
        let (status, body) = dormant.get(name, "/").await;
        assert_eq!(status, StatusCode::OK, "{name} after restart: {body}");
        assert_eq!(
            &body, greeting,
            "{name} was restarted or replaced, not kept"
        );
    }
    let (status, body) = dormant.get(&names[0], "/files/data/x").await;
    assert_eq!(
        (status, body.as_str()),
        (StatusCode::OK, "written before the crash")
    );
    let (status, body) = dormant.get(&names[1], "/files/tmp/y").await;
    assert_eq!(
        (status, body.as_str()),
        (StatusCode::OK, "in the container's own layer")
    );

    let (status, list) = dormant.api(Method::GET, "/v1/containers", None).await;
    assert_eq!(status, StatusCode::OK, "{list}");
    let containers = list["containers"].as_array().unwrap();
    assert_eq!(containers.len(), 3, "{list}");
    for container in containers {
        assert_eq!(container["state"], "running", "{container}");
        let url = container["url"].as_str().unwrap();
        assert!(
            url.ends_with(&format!(":{}/", dormant.proxy.port())),
            "the URL names the old proxy port: {url}"
        );
    }
    assert_eq!(dormant.docker_containers().len(), 3);
    assert_eq!(dormant.docker_volumes().len(), 3);
}

#[tokio::test]
async fn a_container_removed_while_dormant_is_down_is_recreated_with_its_volume() {
    let image = demo_image();
    let mut dormant = Dormant::start();
    let name = unique("phoenix");
    dormant
        .create(json!({"image": image, "name": name, "volumes": ["/data"]}))
        .await;
    put_file(&dormant, &name, "/data/kept", "volume content").await;
    let old_ids = dormant.docker_containers();
    assert_eq!(old_ids.len(), 1);

    dormant.kill();
    let status = Command::new("docker")
        .args(["rm", "-f", &format!("dormant-{name}")])
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    assert_eq!(common::docker_running(&name), None);
    dormant.restart();

    let mut last = (StatusCode::IM_A_TEAPOT, String::new());
    let answered = eventually(CONTAINER_START, async || {
        last = dormant.get(&name, "/").await;
        last.0 == StatusCode::OK
    })
    .await;
    assert!(
        answered,
        "{name} did not answer again after restart: {last:?}\nlog:\n{}",
        dormant.log()
    );

    let new_ids = dormant.docker_containers();
    assert_eq!(new_ids.len(), 1, "{new_ids:?}");
    assert_ne!(new_ids, old_ids, "the container was not recreated");
    assert_eq!(common::docker_running(&name), Some(true));
    let (status, view) = dormant
        .api(Method::GET, &format!("/v1/containers/{name}"), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{view}");
    assert_eq!(view["state"], "running", "{view}");
    // `docker rm -f` without `-v` keeps named volumes; the new container
    // must mount the same one.
    let (status, body) = dormant.get(&name, "/files/data/kept").await;
    assert_eq!(
        (status, body.as_str()),
        (StatusCode::OK, "volume content"),
        "the volume's data is gone"
    );
}

#[tokio::test]
async fn a_container_stopped_while_dormant_is_down_is_started_again() {
    let image = demo_image();
    let mut dormant = Dormant::start();
    let name = unique("sleepy");
    dormant.create(json!({"image": image, "name": name})).await;
    put_file(&dormant, &name, "/tmp/layer", "kept in the writable layer").await;
    let ids = dormant.docker_containers();

    dormant.kill();
    let status = Command::new("docker")
        .args(["stop", "-t", "1", &format!("dormant-{name}")])
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    assert_eq!(common::docker_running(&name), Some(false));
    dormant.restart();

    let mut last = (StatusCode::IM_A_TEAPOT, String::new());
    let answered = eventually(CONTAINER_START, async || {
        last = dormant.get(&name, "/").await;
        last.0 == StatusCode::OK
    })
    .await;
    assert!(
        answered,
        "{name} did not answer again after restart: {last:?}\nlog:\n{}",
        dormant.log()
    );
    assert_eq!(
        dormant.docker_containers(),
        ids,
        "the same Docker container is started again"
    );
    let (status, body) = dormant.get(&name, "/files/tmp/layer").await;
    assert_eq!(
        (status, body.as_str()),
        (StatusCode::OK, "kept in the writable layer")
    );
    let (_, view) = dormant
        .api(Method::GET, &format!("/v1/containers/{name}"), None)
        .await;
    assert_eq!(view["state"], "running", "{view}");
}

#[tokio::test]
async fn a_create_cut_short_by_sigkill_is_undone_at_the_next_start() {
    let image = demo_image();
    let mut dormant = Dormant::start();
    let name = unique("cut");
    // The app takes far longer to listen than the test needs to kill dormant.
    let body = json!({
        "image": image,
        "name": name,
        "count": 2,
        "volumes": ["/data"],
        "cmd": ["--startup-delay", "5m"],
    });
    let request = Request::builder()
        .method(Method::POST)
        .uri(format!("http://{}/v1/containers", dormant.api))
        .header(header::AUTHORIZATION, format!("Bearer {}", dormant.token))
        .header(header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap();
    let client = dormant.http_client();
    let create = tokio::spawn(async move { client.request(request).await.map(|r| r.status()) });

    let started = eventually(CONTAINER_START, async || {
        dormant.docker_containers().len() == 2
    })
    .await;
    assert!(
        started,
        "the batch's containers never appeared in Docker\nlog:\n{}",
        dormant.log()
    );
    assert!(
        !create.is_finished(),
        "the create answered before its app listened: {:?}",
        create.await
    );
    dormant.kill();
    assert!(
        create.await.unwrap().is_err(),
        "the create got an answer from a killed dormant"
    );
    assert_eq!(
        dormant.docker_containers().len(),
        2,
        "killing dormant must not remove containers"
    );

    dormant.restart();
    dormant
        .assert_nothing_left("after restarting from a crash mid-create")
        .await;
    for i in 1..=2 {
        let (status, body) = dormant.get(&format!("{name}-{i}"), "/").await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    }
    // The names are free again.
    let created = dormant
        .create(json!({"image": image, "name": name, "count": 2}))
        .await;
    assert_eq!(created.len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_finishes_the_request_in_flight_and_exits_zero() {
    let image = demo_image();
    let mut dormant = Dormant::start_with(&["--drain-timeout", "10s"]);
    let name = unique("term");
    dormant.create(json!({"image": image, "name": name})).await;

    // Idle connections must not hold shutdown up: one that has been
    // answered and kept alive, and one that never sent anything.
    let mut idle = tokio::net::TcpStream::connect(dormant.proxy).await.unwrap();
    idle.write_all(format!("GET / HTTP/1.1\r\nHost: {name}.localhost\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut head = [0u8; 12];
    idle.read_exact(&mut head).await.unwrap();
    assert_eq!(&head, b"HTTP/1.1 200");
    let _silent = tokio::net::TcpStream::connect(dormant.proxy).await.unwrap();

    // A response that lasts two seconds, under way when SIGTERM arrives.
    let request = Request::builder()
        .uri(format!("http://{}/stream?seconds=2", dormant.proxy))
        .header(header::HOST, format!("{name}.localhost"))
        .body(Full::new(Bytes::new()))
        .unwrap();
    let response = dormant.http_client().request(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let mut body = response.into_body();
    let first = body
        .frame()
        .await
        .expect("a first line")
        .unwrap()
        .into_data()
        .unwrap();
    assert_eq!(&first[..], b"tick 0\n");
    let rest = tokio::spawn(async move { body.collect().await.map(|b| b.to_bytes()) });

    dormant.terminate();
    // Far above the drain timeout: only a hang fails this.
    let exit = tokio::task::block_in_place(|| dormant.wait_exit(Duration::from_secs(60)));
    let exit = exit.unwrap_or_else(|| {
        panic!(
            "dormant did not exit after SIGTERM\nlog:\n{}",
            dormant.log()
        )
    });
    assert!(
        exit.success(),
        "dormant exited with {exit}\nlog:\n{}",
        dormant.log()
    );

    let rest = rest
        .await
        .unwrap()
        .expect("the request in flight was cut off");
    let text = String::from_utf8_lossy(&rest);
    assert!(
        text.ends_with("done\n"),
        "the streamed response did not finish: {text:?}"
    );
    let log = dormant.log();
    assert!(log.contains("stopped"), "{log}");
    assert!(
        !log.contains("still open after the drain period"),
        "idle connections held shutdown up:\n{log}"
    );
    assert!(
        !log.contains("still running after the drain period"),
        "{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_with_nothing_in_flight_exits_zero() {
    let mut dormant = Dormant::start();
    let exit = tokio::task::block_in_place(|| dormant.stop());
    assert!(
        exit.success(),
        "dormant exited with {exit}\nlog:\n{}",
        dormant.log()
    );
}
