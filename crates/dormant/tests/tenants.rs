//! Tenants against the real binary and Docker: a tenant's token creates and
//! sees only its own containers (another tenant gets 404, never 403),
//! quotas refuse with 403 naming the quota, a rotated or revoked token is
//! 401 at once, the audit log records each change, and tenants, tokens and
//! quotas survive a restart. One container in all.

mod common;

use std::process::{Output, Stdio};

use bytes::Bytes;
use common::{demo_image, dormant_command, unique, Dormant};
use http::{Method, StatusCode};
use serde_json::{json, Value};

async fn call(
    dormant: &Dormant,
    token: &str,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let body = body.map(|b| Bytes::from(b.to_string())).unwrap_or_default();
    dormant.api_raw(method, path, Some(token), body).await
}

/// Creates tenant `id` with `quotas` as the admin; returns its token and token id.
async fn create_tenant(dormant: &Dormant, id: &str, quotas: Value) -> (String, String) {
    let (status, json) = dormant
        .api(
            Method::POST,
            "/v1/tenants",
            Some(json!({"id": id, "quotas": quotas})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{json}");
    let token = json["token"]["token"].as_str().unwrap().to_owned();
    assert!(token.starts_with("dmt_"), "{json}");
    (token, json["token"]["id"].as_str().unwrap().to_owned())
}

fn tenant_id(prefix: &str) -> String {
    unique(prefix)
}

#[tokio::test]
async fn tenants_see_only_their_own_within_quotas_and_tokens_can_be_revoked() {
    let image = demo_image();
    let mut dormant = Dormant::start();
    let acme = tenant_id("acme");
    let beta = tenant_id("beta");
    let (acme_token, acme_token_id) = create_tenant(
        &dormant,
        &acme,
        json!({"max_containers": 1, "max_memory": "1g"}),
    )
    .await;
    let (beta_token, _) = create_tenant(&dormant, &beta, json!({})).await;

    // A tenant's container is the tenant's.
    let name = unique("tn");
    let (status, json) = call(
        &dormant,
        &acme_token,
        Method::POST,
        "/v1/containers",
        Some(json!({"image": image, "name": name, "memory": "64m"})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{json}\n{}", dormant.log());
    assert_eq!(json["containers"][0]["tenant"], acme.as_str());
    let (status, body) = dormant.get(&name, "/").await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // Another tenant cannot tell it from a missing one.
    let missing = unique("missing");
    for (method, suffix) in [
        (Method::GET, ""),
        (Method::DELETE, ""),
        (Method::POST, "/sleep"),
        (Method::POST, "/wake"),
    ] {
        let (status, json) = call(
            &dormant,
            &beta_token,
            method.clone(),
            &format!("/v1/containers/{name}{suffix}"),
            None,
        )
        .await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{method} {suffix}: {json}");
        let (missing_status, missing_json) = call(
            &dormant,
            &beta_token,
            method.clone(),
            &format!("/v1/containers/{missing}{suffix}"),
            None,
        )
        .await;
        assert_eq!(missing_status, status);
        assert_eq!(
            json["error"]["message"]
                .as_str()
                .unwrap()
                .replace(&name, "NAME"),
            missing_json["error"]["message"]
                .as_str()
                .unwrap()
                .replace(&missing, "NAME"),
            "the same answer as for a missing container"
        );
    }
    let (_, list) = call(&dormant, &beta_token, Method::GET, "/v1/containers", None).await;
    assert_eq!(list["containers"], json!([]), "{list}");
    let (_, list) = call(&dormant, &acme_token, Method::GET, "/v1/containers", None).await;
    assert_eq!(list["containers"].as_array().unwrap().len(), 1, "{list}");
    let (status, json) = call(
        &dormant,
        &beta_token,
        Method::GET,
        &format!("/v1/tenants/{acme}"),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{json}");
    let (status, _) = call(&dormant, &beta_token, Method::GET, "/v1/stats", None).await;
    assert_eq!(
        status,
        StatusCode::FORBIDDEN,
        "host-wide stats are the admin's"
    );
    let (status, _) = call(&dormant, &beta_token, Method::GET, "/v1/tenants", None).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, json) = call(
        &dormant,
        &beta_token,
        Method::POST,
        "/v1/containers",
        Some(json!({"image": image, "tenant": acme})),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{json}");
    let (status, json) = dormant
        .api(
            Method::POST,
            "/v1/containers",
            Some(json!({"image": image, "tenant": tenant_id("nobody")})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{json}");
    assert!(
        json["error"]["message"]
            .as_str()
            .unwrap()
            .contains("does not exist"),
        "{json}"
    );

    // Quotas: refused with 403 naming the quota, nothing made.
    let (status, json) = call(
        &dormant,
        &acme_token,
        Method::POST,
        "/v1/containers",
        Some(json!({"image": image, "name": unique("tn")})),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{json}");
    assert_eq!(json["error"]["code"], "quota_exceeded");
    assert!(
        json["error"]["message"]
            .as_str()
            .unwrap()
            .contains("max_containers is 1"),
        "{json}"
    );
    let (status, json) = call(
        &dormant,
        &acme_token,
        Method::GET,
        &format!("/v1/tenants/{acme}"),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{json}");
    assert_eq!(json["usage"]["containers"], 1, "{json}");
    assert_eq!(json["usage"]["memory"], "64m", "{json}");
    assert_eq!(json["quotas"]["max_memory"], "1g", "{json}");

    // Rotation: the old token is refused at once, the new one works.
    let (status, json) = call(
        &dormant,
        &acme_token,
        Method::POST,
        &format!("/v1/tenants/{acme}/tokens/{acme_token_id}/rotate"),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{json}");
    let rotated = json["token"].as_str().unwrap().to_owned();
    let rotated_id = json["id"].as_str().unwrap().to_owned();
    let (status, _) = call(&dormant, &acme_token, Method::GET, "/v1/containers", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "the rotated-out token");
    let (status, _) = call(&dormant, &rotated, Method::GET, "/v1/containers", None).await;
    assert_eq!(status, StatusCode::OK);
    // Revocation by the admin, with a spare token made first.
    let (status, json) = dormant
        .api(Method::POST, &format!("/v1/tenants/{acme}/tokens"), None)
        .await;
    assert_eq!(status, StatusCode::CREATED, "{json}");
    let spare = json["token"].as_str().unwrap().to_owned();
    let (status, _) = dormant
        .api(
            Method::DELETE,
            &format!("/v1/tenants/{acme}/tokens/{rotated_id}"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = call(&dormant, &rotated, Method::GET, "/v1/containers", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "revoked");
    let (_, tokens) = call(
        &dormant,
        &spare,
        Method::GET,
        &format!("/v1/tenants/{acme}/tokens"),
        None,
    )
    .await;
    assert_eq!(tokens["tokens"].as_array().unwrap().len(), 1, "{tokens}");
    assert!(
        !tokens.to_string().contains("dmt_"),
        "no secrets in listings"
    );

    // The audit log: the admin sees all, a tenant its own, newest first.
    let heartbeat = format!("/v1/containers/{name}/heartbeat");
    let (status, _) = call(&dormant, &spare, Method::POST, &heartbeat, None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, audit) = dormant.api(Method::GET, "/v1/audit?limit=1000", None).await;
    assert_eq!(status, StatusCode::OK, "{audit}");
    let entries = audit["entries"].as_array().unwrap();
    let find = |method: &str, path: &str, status: u16| {
        entries
            .iter()
            .find(|e| e["method"] == method && e["path"] == path && e["status"] == status)
    };
    let created = find("POST", "/v1/containers", 201).expect("the create");
    assert_eq!(created["principal"], acme.as_str());
    assert_eq!(created["token_id"], acme_token_id.as_str());
    assert!(
        find("POST", "/v1/containers", 403).is_some(),
        "refusals too"
    );
    assert!(find("POST", "/v1/tenants", 201).is_some());
    assert!(find(
        "DELETE",
        &format!("/v1/tenants/{acme}/tokens/{rotated_id}"),
        204
    )
    .is_some());
    let denied = find("DELETE", &format!("/v1/containers/{name}"), 404).expect("beta's try");
    assert_eq!(denied["principal"], beta.as_str());
    assert!(
        entries.iter().all(|e| e["method"] != "GET"),
        "reads are not audited"
    );
    assert!(
        entries.iter().all(|e| e["path"] != heartbeat.as_str()),
        "nor heartbeats"
    );
    let (_, own) = call(&dormant, &spare, Method::GET, "/v1/audit?limit=2", None).await;
    let own_entries = own["entries"].as_array().unwrap();
    assert_eq!(own_entries.len(), 2, "{own}");
    assert!(
        own_entries.iter().all(|e| e["principal"] == acme.as_str()),
        "{own}"
    );
    assert!(own_entries[0]["id"].as_i64() > own_entries[1]["id"].as_i64());
    let before = own["next_before"].as_i64().expect("a next page");
    let (_, older) = call(
        &dormant,
        &spare,
        Method::GET,
        &format!("/v1/audit?limit=2&before={before}"),
        None,
    )
    .await;
    assert!(
        older["entries"][0]["id"].as_i64().unwrap() < before,
        "{older}"
    );
    let (status, _) = dormant.api(Method::GET, "/v1/audit?limit=0", None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    // A restart keeps tenants, tokens (live and revoked) and quotas.
    dormant.kill_and_restart();
    let (status, list) = call(&dormant, &spare, Method::GET, "/v1/containers", None).await;
    assert_eq!(status, StatusCode::OK, "{list}\n{}", dormant.log());
    assert_eq!(list["containers"][0]["name"], name.as_str());
    for revoked in [&acme_token, &rotated] {
        let (status, _) = call(&dormant, revoked, Method::GET, "/v1/containers", None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
    let (_, list) = call(&dormant, &beta_token, Method::GET, "/v1/containers", None).await;
    assert_eq!(list["containers"], json!([]));
    let (status, json) = call(
        &dormant,
        &spare,
        Method::POST,
        "/v1/containers",
        Some(json!({"image": image})),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "the quota too: {json}");

    // A tenant with containers cannot be deleted; without, it goes with its tokens.
    let (status, json) = dormant
        .api(Method::DELETE, &format!("/v1/tenants/{acme}"), None)
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{json}");
    let (status, _) = call(
        &dormant,
        &spare,
        Method::DELETE,
        &format!("/v1/containers/{name}"),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = dormant
        .api(Method::DELETE, &format!("/v1/tenants/{acme}"), None)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = call(&dormant, &spare, Method::GET, "/v1/containers", None).await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "a deleted tenant's tokens"
    );
    dormant.assert_nothing_left("after the test").await;
}

fn client(dormant: &Dormant, args: &[&str]) -> Output {
    dormant_command()
        .args(args)
        .args([
            "--url",
            &format!("http://{}", dormant.api),
            "--token",
            &dormant.token,
        ])
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn ok(output: Output) -> String {
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

fn printed_token(out: &str) -> String {
    out.lines()
        .find_map(|l| l.strip_prefix("token:"))
        .unwrap_or_else(|| panic!("no token printed: {out}"))
        .trim()
        .to_owned()
}

#[tokio::test]
async fn the_tenant_commands_create_list_rotate_and_remove() {
    let dormant = Dormant::start();
    let id = tenant_id("cli");
    let out = ok(client(
        &dormant,
        &[
            "tenant",
            "create",
            &id,
            "--max-running",
            "2",
            "--max-memory",
            "512m",
        ],
    ));
    let first = printed_token(&out);
    let out = ok(client(&dormant, &["tenant", "ls"]));
    let row = out
        .lines()
        .find(|l| l.starts_with(&id))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(row.contains("0/2") && row.contains("0/512m"), "{row}");

    let out = ok(client(&dormant, &["tenant", "rotate", &id]));
    let second = printed_token(&out);
    assert_ne!(first, second);
    let (status, _) = call(&dormant, &first, Method::GET, "/v1/containers", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = call(&dormant, &second, Method::GET, "/v1/containers", None).await;
    assert_eq!(status, StatusCode::OK);

    let refused = client(&dormant, &["tenant", "create", "admin"]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("reserved"));

    ok(client(&dormant, &["tenant", "rm", &id]));
    let (status, _) = call(&dormant, &second, Method::GET, "/v1/containers", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let out = ok(client(&dormant, &["tenant", "ls"]));
    assert!(!out.contains(&id), "{out}");
}

/// A tenant at its `max_running` quota: a wake through the proxy puts its
/// own least recently active container to sleep first. Two containers.
#[tokio::test]
async fn a_wake_past_max_running_puts_the_tenants_own_container_to_sleep() {
    let image = demo_image();
    let dormant = Dormant::start();
    let acme = tenant_id("acme");
    let (token, _) = create_tenant(&dormant, &acme, json!({"max_running": 1})).await;
    let first = unique("tq");
    let second = unique("tq");
    for name in [&first, &second] {
        let (status, json) = call(
            &dormant,
            &token,
            Method::POST,
            "/v1/containers",
            Some(json!({"image": image, "name": name})),
        )
        .await;
        assert_eq!(status, StatusCode::CREATED, "{json}\n{}", dormant.log());
    }
    let dormant = &dormant;
    let state = |name: &str| {
        let path = format!("/v1/containers/{name}");
        async move { dormant.api(Method::GET, &path, None).await.1["state"].clone() }
    };
    assert_eq!(state(&first).await, "asleep", "the second made room");
    assert_eq!(state(&second).await, "running");

    let (status, body) = dormant.get(&first, "/").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(state(&first).await, "running");
    assert_eq!(state(&second).await, "asleep");
    let (_, tenant) = call(
        dormant,
        &token,
        Method::GET,
        &format!("/v1/tenants/{acme}"),
        None,
    )
    .await;
    assert_eq!(tenant["usage"]["running"], 1, "{tenant}");
    for name in [&first, &second] {
        let (status, _) = dormant
            .api(Method::DELETE, &format!("/v1/containers/{name}"), None)
            .await;
        assert_eq!(status, StatusCode::NO_CONTENT);
    }
    dormant.assert_nothing_left("after the test").await;
}
