//! dormant on a PostgreSQL store (`--store postgres://...`): the real binary
//! against a real PostgreSQL that this test starts (Debian's binaries). Its
//! containers outlive a dormant restart and a PostgreSQL restart, and the
//! store's password never reaches the log.

mod common;

use bytes::Bytes;
use common::{demo_image, unique, Dormant};
use http::{Method, StatusCode};
use serde_json::json;

async fn state(dormant: &Dormant, name: &str) -> String {
    let (status, body) = dormant
        .api(Method::GET, &format!("/v1/containers/{name}"), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["state"].as_str().unwrap_or_default().to_owned()
}

/// One test in this file: it restarts the file's PostgreSQL server.
#[tokio::test]
async fn containers_outlive_restarts_of_dormant_and_of_postgres() {
    let image = demo_image();
    let pg = common::postgres::server();
    let url = pg.create_database();
    let mut dormant = Dormant::start_with_env(&[], &[("DORMANT_STORE", &url)]);
    let name = unique("pg");
    dormant
        .create(json!({"image": image, "name": name, "volumes": ["/data"]}))
        .await;
    let (status, body) = dormant
        .proxy_request(
            Method::PUT,
            &name,
            "/files/data/kept",
            Bytes::from_static(b"in PostgreSQL's care"),
        )
        .await;
    assert!(status.is_success(), "PUT: {status} {body:?}");
    let (status, body) = dormant
        .api(Method::POST, &format!("/v1/containers/{name}/sleep"), None)
        .await;
    assert!(status.is_success(), "sleep: {status} {body}");
    assert_eq!(state(&dormant, &name).await, "asleep");
    assert!(
        !dormant.data_dir.join("dormant.db").exists(),
        "no SQLite file: the store is PostgreSQL"
    );

    // dormant dies and comes back: the container is still there, asleep.
    dormant.kill_and_restart();
    assert_eq!(dormant.names().await, std::slice::from_ref(&name));
    assert_eq!(state(&dormant, &name).await, "asleep");

    // PostgreSQL dies (SIGQUIT: no clean goodbye to clients) and comes back
    // while dormant runs: dormant's next store call connects again, and the
    // wake (which writes its state) works.
    pg.restart();
    let (status, body) = dormant.get(&name, "/files/data/kept").await;
    assert_eq!(
        (status, body.as_str()),
        (StatusCode::OK, "in PostgreSQL's care"),
        "the first request after PostgreSQL restarted wakes the container"
    );
    assert_eq!(state(&dormant, &name).await, "running");

    let log = dormant.log();
    assert!(log.contains("store open"), "{log}");
    assert!(
        log.contains("connected to PostgreSQL again"),
        "dormant made a new connection after the restart: {log}"
    );
    assert!(
        !log.contains(common::postgres::PASSWORD),
        "the store's password is in dormant's log"
    );
}
