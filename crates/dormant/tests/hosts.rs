//! dormant on a host of its own: three Docker hosts on this machine (the lab
//! of `common::hosts`), the real binary inside host 1 with host 1's daemon,
//! reached from the machine over the lab's network; then host 1's cable is
//! cut and mended, and finally its power: nothing of it may outlive that;
//! back on, it serves the same data. The ground the several-nodes tests
//! stand on.
//!
//! Needs root and `ip` (it skips, saying so, without them); anything else
//! missing (util-linux's `unshare`/`nsenter`, docker.io's `dockerd` and
//! `docker-init`) fails it.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::hosts::{self, Lab};
use common::processes;
use common::{demo_image, eventually, unique};
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::json;

/// The whole test, lab included, ends within this (it takes ~15 s).
const TEST_LIMIT: Duration = Duration::from_secs(300);
/// How long one request from the machine may take before it counts as
/// unanswered: across a cut cable nothing answers, nothing refuses.
const REQUEST_LIMIT: Duration = Duration::from_secs(2);
/// How long a mended cable may take to carry requests again.
const HEAL_LIMIT: Duration = Duration::from_secs(20);
/// How long a container may take to be served after its host came back.
const WAKE_LIMIT: Duration = Duration::from_secs(60);

#[tokio::test]
async fn dormant_in_a_host_of_its_own_through_a_cut_cable_a_power_cut_and_a_reboot() {
    if let Some(why) = hosts::unavailable() {
        eprintln!("SKIPPED: the several-hosts lab cannot run here: {why}");
        return;
    }
    tokio::time::timeout(TEST_LIMIT, one_host_lifecycle())
        .await
        .unwrap_or_else(|_| panic!("the lab test took longer than {TEST_LIMIT:?}"));
}

async fn one_host_lifecycle() {
    let image = demo_image();
    let started = Instant::now();
    let mut lab = Lab::start(3);
    eprintln!("Lab::start(3): {} ms", started.elapsed().as_millis());

    let mut dormant = lab.dormant(1, &[]);
    assert_eq!(
        dormant.api.ip(),
        lab.address(1),
        "the API is on host 1's address"
    );
    assert_eq!(dormant.proxy.ip(), lab.address(1), "the proxy too");
    let name = unique("lab");
    dormant
        .create(json!({"image": image, "name": name, "volumes": ["/data"]}))
        .await;
    let (status, greeting) = get(dormant.proxy, &name, "/").await.expect("served");
    assert_eq!(status, StatusCode::OK, "{greeting}");
    let (status, body) = dormant
        .proxy_request(
            Method::PUT,
            &name,
            "/files/data/note",
            Bytes::from_static(b"written on host 1"),
        )
        .await;
    assert!(
        status.is_success(),
        "PUT /files/data/note: {status} {body:?}"
    );

    // The container runs in host 1's daemon, not in the machine's.
    let label = format!("label=dormant.node={}", dormant.node);
    assert_eq!(
        lab.docker_lines(1, &["ps", "-q", "--filter", &label]).len(),
        1,
        "host 1's daemon runs the container"
    );
    assert_eq!(
        common::docker_lines(&["ps", "-aq", "--filter", &label]),
        Vec::<String>::new(),
        "the machine's own daemon has none of host 1's containers"
    );
    for other in [2, 3] {
        assert_eq!(
            lab.docker_lines(other, &["ps", "-aq"]),
            Vec::<String>::new(),
            "host {other}'s daemon has no container"
        );
    }

    // Cut cable: nothing answers from the machine, for the proxy or the API.
    lab.cut(1);
    let outcome = get(dormant.proxy, &name, "/").await;
    assert!(outcome.is_err(), "served across a cut cable: {outcome:?}");
    let outcome = get(dormant.api, "api", "/v1/containers").await;
    assert!(
        outcome.is_err(),
        "the API answered across a cut cable: {outcome:?}"
    );

    // Mended: served again by the same container, with its data.
    lab.heal(1);
    let served = eventually(HEAL_LIMIT, async || {
        matches!(
            get(dormant.proxy, &name, "/").await,
            Ok((StatusCode::OK, _))
        )
    })
    .await;
    assert!(
        served,
        "not served {HEAL_LIMIT:?} after the cable was mended"
    );
    assert_eq!(
        get(dormant.proxy, &name, "/").await.expect("served"),
        (StatusCode::OK, greeting),
        "the container was restarted or replaced while the cable was cut"
    );
    assert_eq!(
        get(dormant.proxy, &name, "/files/data/note")
            .await
            .expect("served"),
        (StatusCode::OK, "written on host 1".to_owned())
    );

    // Power cut: host 1's PID 1 is SIGKILLed; every process of host 1 goes,
    // dormant (started inside it) and the container included.
    let before = lab.processes(1);
    assert!(
        before.iter().any(|p| p.pid == dormant.pid()),
        "dormant runs inside host 1: {} not among {before:?}",
        dormant.pid()
    );
    assert!(
        before.iter().any(|p| lab.in_container(1, *p)),
        "host 1 runs a container process: {before:?}"
    );
    let killed = Instant::now();
    lab.kill(1);
    eprintln!(
        "kill(1): all of host 1's {} processes gone in {} ms",
        before.len(),
        killed.elapsed().as_millis()
    );
    let exit = dormant.wait_exit(Duration::from_secs(10));
    assert!(
        exit.is_some_and(|status| !status.success()),
        "dormant outlived its host: {exit:?}"
    );
    let survivors: Vec<_> = before
        .into_iter()
        .filter(|p| processes::still_runs(*p))
        .collect();
    assert_eq!(survivors, Vec::new(), "processes of host 1 outlived it");
    assert_eq!(lab.processes(1), Vec::new(), "host 1 still has processes");
    let outcome = get(dormant.proxy, &name, "/").await;
    assert!(
        outcome.is_err(),
        "host 1 answered after its death: {outcome:?}"
    );
    assert_eq!(
        common::docker_lines(&["ps", "-aq", "--filter", &label]),
        Vec::<String>::new(),
        "the machine's own daemon took over a container of host 1"
    );

    // The others never noticed.
    for other in [2, 3] {
        assert!(
            !lab.docker_lines(other, &["version", "-f", "{{.Server.Version}}"])
                .is_empty(),
            "host {other}'s daemon answers"
        );
    }

    // Power back: host 1 boots on the same disk; dormant, started again on
    // its data, wakes the container with the data it had.
    lab.restart(1);
    lab.rehome(1, &mut dormant);
    dormant.restart();
    let served = eventually(WAKE_LIMIT, async || {
        get(dormant.proxy, &name, "/files/data/note").await
            == Ok((StatusCode::OK, "written on host 1".to_owned()))
    })
    .await;
    assert!(
        served,
        "not served with its data {WAKE_LIMIT:?} after host 1 came back: {:?}",
        get(dormant.proxy, &name, "/files/data/note").await
    );
    assert!(
        lab.processes(1).iter().any(|p| p.pid == dormant.pid()),
        "dormant runs inside the rebooted host 1"
    );
    drop(dormant);
    let teardown = Instant::now();
    drop(lab);
    eprintln!("Lab teardown: {} ms", teardown.elapsed().as_millis());
}

/// `GET path` of container `name` (or of dormant's API for `api`) at `addr`
/// on a fresh connection; `Err` when nothing answers within `REQUEST_LIMIT`
/// or the connection fails.
async fn get(addr: SocketAddr, name: &str, path: &str) -> Result<(StatusCode, String), String> {
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let request = Request::builder()
        .uri(format!("http://{addr}{path}"))
        .header("host", format!("{name}.localhost"))
        .header("authorization", "Bearer test-token")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let exchange = async {
        let response = client.request(request).await.map_err(|e| e.to_string())?;
        let status = response.status();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?;
        Ok((
            status,
            String::from_utf8_lossy(&body.to_bytes()).into_owned(),
        ))
    };
    tokio::time::timeout(REQUEST_LIMIT, exchange)
        .await
        .unwrap_or_else(|_| Err(format!("no answer in {REQUEST_LIMIT:?}")))
}
