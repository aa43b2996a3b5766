//! Creating, routing to and deleting containers, against the real Docker daemon.

mod common;

use common::{demo_image, unique, Dormant};
use http::{Method, StatusCode};
use serde_json::json;

#[tokio::test]
async fn create_request_through_the_proxy_then_delete_leaves_nothing() {
    let image = demo_image();
    let dormant = Dormant::start();
    let name = unique("alice");

    let created = dormant
        .create(json!({"image": image, "name": name, "volumes": ["/data"]}))
        .await;
    assert_eq!(created.len(), 1);
    let container = &created[0];
    assert_eq!(container["name"], name.as_str());
    assert_eq!(container["state"], "running");
    assert_eq!(container["host"], format!("{name}.localhost"));
    assert_eq!(
        container["url"],
        format!("http://{name}.localhost:{}/", dormant.proxy.port())
    );
    assert_eq!(
        container["port"], 8080,
        "the port comes from the image's EXPOSE"
    );

    let (status, body) = dormant.get(&name, "/").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body.starts_with("hello from"), "{body}");
    assert_eq!(dormant.docker_containers().len(), 1);
    assert_eq!(dormant.docker_volumes().len(), 1);

    let (status, json) = dormant
        .api(Method::GET, &format!("/v1/containers/{name}"), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(json["name"], name.as_str());

    let (status, _) = dormant
        .api(Method::DELETE, &format!("/v1/containers/{name}"), None)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert!(
        dormant.docker_containers().is_empty(),
        "Docker still has the container"
    );
    assert!(
        dormant.docker_volumes().is_empty(),
        "Docker still has the volume"
    );
    let (status, body) = dormant.get(&name, "/").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert!(body.contains("no container named"), "{body}");
    let (status, _) = dormant
        .api(Method::GET, &format!("/v1/containers/{name}"), None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}
