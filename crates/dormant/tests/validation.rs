//! Bad input and auth: every rejection is a 4xx in one JSON shape naming
//! what is wrong, and leaves nothing behind in the API or in Docker.

mod common;

use bytes::Bytes;
use common::{demo_image, unique, Dormant};
use http::{Method, StatusCode};
use serde_json::{json, Value};

/// Asserts `json` is `{"error": {"code": "...", "message": "..."}}` and
/// returns the message.
fn error_message(json: &Value) -> &str {
    let error = json
        .get("error")
        .unwrap_or_else(|| panic!("no `error` object: {json}"));
    assert!(
        error["code"].as_str().is_some_and(|c| !c.is_empty()),
        "no `error.code`: {json}"
    );
    error["message"]
        .as_str()
        .filter(|m| !m.is_empty())
        .unwrap_or_else(|| panic!("no `error.message`: {json}"))
}

/// Posts a raw create body; asserts the status and that the message
/// contains each of `words`; returns the message.
async fn rejected(dormant: &Dormant, body: &str, status: StatusCode, words: &[&str]) -> String {
    let (got, json) = dormant
        .api_raw(
            Method::POST,
            "/v1/containers",
            Some(&dormant.token),
            Bytes::from(body.to_owned()),
        )
        .await;
    assert_eq!(got, status, "{body} -> {json}");
    let message = error_message(&json).to_owned();
    for word in words {
        assert!(
            message.contains(word),
            "{body}: the message does not mention {word}: {message}"
        );
    }
    message
}

#[tokio::test]
async fn each_bad_field_gets_a_400_naming_it_and_leaves_nothing() {
    let image = demo_image();
    let dormant = Dormant::start();
    let name = unique("bad");
    let with = |extra: Value| {
        let mut body = json!({"image": image, "name": name});
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        body.to_string()
    };
    let long = "x".repeat(41);
    let cases: Vec<(String, Vec<&str>)> = vec![
        (
            json!({"image": image, "name": "Bad_Name"}).to_string(),
            vec!["`name`"],
        ),
        (
            json!({"image": image, "name": "-x"}).to_string(),
            vec!["`name`"],
        ),
        (
            json!({"image": image, "name": long}).to_string(),
            vec!["`name`", "41"],
        ),
        (with(json!({"colour": "red"})), vec!["colour"]),
        (with(json!({"count": 0})), vec!["`count`"]),
        (with(json!({"count": 101})), vec!["`count`"]),
        (json!({"name": name}).to_string(), vec!["image"]),
        (with(json!({"memory": "lots"})), vec!["`memory`"]),
        (with(json!({"volumes": ["data"]})), vec!["volumes[0]"]),
        (
            with(json!({"volumes": ["/ok", "../up"]})),
            vec!["volumes[1]"],
        ),
        (with(json!({"port": "eighty"})), vec!["port"]),
        (with(json!({"idle_timeout": "soon"})), vec!["idle_timeout"]),
        (
            format!(r#"{{"image": "{image}", "name": "{name}""#),
            vec!["JSON"],
        ),
        ("not json at all".to_owned(), vec!["JSON"]),
        ("[1, 2]".to_owned(), vec!["object"]),
    ];
    for (body, words) in &cases {
        rejected(&dormant, body, StatusCode::BAD_REQUEST, words).await;
        dormant.assert_nothing_left(body).await;
    }
}

#[tokio::test]
async fn host_access_fields_are_refused_by_name() {
    let image = demo_image();
    let dormant = Dormant::start();
    let name = unique("priv");
    let cases = [
        ("privileged", json!(true)),
        ("cap_add", json!(["SYS_ADMIN"])),
        ("devices", json!(["/dev/sda:/dev/sda"])),
        ("network_mode", json!("host")),
        ("binds", json!(["/:/host"])),
    ];
    for (field, value) in cases {
        let mut body = json!({"image": image, "name": name});
        body[field] = value;
        let body = body.to_string();
        rejected(
            &dormant,
            &body,
            StatusCode::BAD_REQUEST,
            &[field, "not allowed"],
        )
        .await;
        dormant.assert_nothing_left(&body).await;
    }
}

#[tokio::test]
async fn an_image_that_is_not_present_is_a_400_naming_it() {
    demo_image();
    let dormant = Dormant::start();
    let body = json!({"image": "no-such-image:never", "name": unique("ghost")}).to_string();
    rejected(
        &dormant,
        &body,
        StatusCode::BAD_REQUEST,
        &["no-such-image:never", "not present"],
    )
    .await;
    dormant.assert_nothing_left("missing image").await;
    // No name: the same, and no generated container lingers either.
    let body = json!({"image": "no-such-image:never", "count": 3}).to_string();
    rejected(
        &dormant,
        &body,
        StatusCode::BAD_REQUEST,
        &["no-such-image:never", "not present"],
    )
    .await;
    dormant.assert_nothing_left("missing image, batch").await;
}

#[tokio::test]
async fn a_taken_name_is_a_409_and_the_first_container_is_untouched() {
    let image = demo_image();
    let dormant = Dormant::start();
    let name = unique("twice");
    dormant.create(json!({"image": image, "name": name})).await;
    let (_, before) = dormant.get(&name, "/").await;

    let body = json!({"image": image, "name": name}).to_string();
    rejected(&dormant, &body, StatusCode::CONFLICT, &[&name]).await;

    assert_eq!(dormant.names().await, vec![name.clone()]);
    assert_eq!(dormant.docker_containers().len(), 1);
    let (status, after) = dormant.get(&name, "/").await;
    assert_eq!(status, StatusCode::OK, "{after}");
    assert_eq!(
        after, before,
        "the first container was replaced or restarted"
    );
}

#[tokio::test]
async fn a_batch_with_a_taken_name_creates_none_of_the_others() {
    let image = demo_image();
    let dormant = Dormant::start();
    let name = unique("half");
    let taken = format!("{name}-2");
    dormant.create(json!({"image": image, "name": taken})).await;

    let body = json!({"image": image, "name": name, "count": 3}).to_string();
    rejected(&dormant, &body, StatusCode::CONFLICT, &[&taken]).await;

    assert_eq!(
        dormant.names().await,
        vec![taken.clone()],
        "only the earlier container may exist"
    );
    let docker_names = common::docker_lines(&[
        "ps",
        "-a",
        "--format",
        "{{.Names}}",
        "--filter",
        &format!("label=dormant.node={}", dormant.node),
    ]);
    assert_eq!(docker_names, vec![format!("dormant-{taken}")]);
    for other in [format!("{name}-1"), format!("{name}-3")] {
        let (status, _) = dormant
            .api(Method::GET, &format!("/v1/containers/{other}"), None)
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{other} exists");
        assert_eq!(common::docker_running(&other), None, "Docker has {other}");
        let (status, body) = dormant.get(&other, "/").await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{other}: {body}");
    }
    let (status, body) = dormant.get(&taken, "/").await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

#[tokio::test]
async fn a_batch_whose_containers_exit_at_once_is_a_502_and_leaves_nothing() {
    let image = demo_image();
    let dormant = Dormant::start();
    let name = unique("crash");
    let body = json!({
        "image": image,
        "name": name,
        "count": 2,
        "cmd": ["--exit-immediately"],
        "volumes": ["/data"],
    })
    .to_string();
    let message = rejected(&dormant, &body, StatusCode::BAD_GATEWAY, &["exit"]).await;
    assert!(
        message.contains(&name),
        "the message does not name the container: {message}"
    );
    dormant
        .assert_nothing_left("a batch that exits at once")
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

#[tokio::test]
async fn the_api_wants_the_token_but_healthz_does_not() {
    let dormant = Dormant::start();

    for token in [None, Some("wrong-token"), Some("")] {
        let (status, json) = dormant
            .api_raw(Method::GET, "/v1/containers", token, Bytes::new())
            .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "token {token:?}: {json}");
        let message = error_message(&json);
        assert!(message.contains("token"), "{message}");
        assert_eq!(json["error"]["code"], "unauthorized");
    }
    let body = Bytes::from(json!({"image": "dormant-demo:latest"}).to_string());
    let (status, json) = dormant
        .api_raw(Method::POST, "/v1/containers", Some("wrong-token"), body)
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{json}");
    dormant.assert_nothing_left("an unauthorized create").await;

    let (status, json) = dormant
        .api_raw(Method::GET, "/healthz", None, Bytes::new())
        .await;
    assert_eq!(status, StatusCode::OK, "{json}");

    let (status, json) = dormant
        .api_raw(Method::GET, "/v1/openapi.json", None, Bytes::new())
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{json}");
    let (status, doc) = dormant.api(Method::GET, "/v1/openapi.json", None).await;
    assert_eq!(status, StatusCode::OK, "{doc}");
    assert!(
        doc["openapi"].as_str().is_some_and(|v| v.starts_with('3')),
        "not an OpenAPI document: {doc}"
    );
    let paths = doc["paths"]
        .as_object()
        .unwrap_or_else(|| panic!("no paths: {doc}"));
    assert!(
        paths.contains_key("/v1/containers"),
        "{:?}",
        paths.keys().collect::<Vec<_>>()
    );
    assert!(
        paths.contains_key("/v1/containers/{name}"),
        "{:?}",
        paths.keys().collect::<Vec<_>>()
    );
}

/// RFC 9110 §11.1: the authentication scheme is case-insensitive, so
/// `bearer <token>` is the same credential as `Bearer <token>`.
#[tokio::test]
async fn the_bearer_scheme_is_case_insensitive() {
    let dormant = Dormant::start();
    for scheme in ["Bearer", "bearer", "BEARER"] {
        let request = http::Request::builder()
            .uri(format!("http://{}/v1/containers", dormant.api))
            .header(
                http::header::AUTHORIZATION,
                format!("{scheme} {}", dormant.token),
            )
            .body(http_body_util::Full::new(Bytes::new()))
            .unwrap();
        let response = dormant.http_client().request(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "scheme `{scheme}`");
    }
}

/// The API promises errors in one shape; that includes the ones the router
/// makes itself.
#[tokio::test]
async fn router_errors_have_the_json_shape_too() {
    let dormant = Dormant::start();
    let (status, json) = dormant.api(Method::GET, "/v2/nothing", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{json}");
    assert!(error_message(&json).contains("/v2/nothing"), "{json}");

    let (status, json) = dormant.api(Method::PUT, "/v1/containers", None).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED, "{json}");
    assert!(error_message(&json).contains("PUT"), "{json}");
}

#[tokio::test]
async fn a_container_that_could_never_fit_is_a_422_naming_the_budget() {
    let dormant = Dormant::start_with(&["--memory-budget", "64m"]);
    let too_big = format!(r#"{{"image":"{}","memory":"128m"}}"#, demo_image());
    rejected(
        &dormant,
        &too_big,
        StatusCode::UNPROCESSABLE_ENTITY,
        &["memory budget"],
    )
    .await;
    dormant.assert_nothing_left("refused creates").await;
}
