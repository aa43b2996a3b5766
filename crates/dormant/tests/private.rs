//! Private container URLs against the real daemon: a private container
//! answers strangers 401 without waking; a container access token, the
//! admin token and a login link's cookie let a request through; dormant's
//! credentials never reach the app; a public container is unaffected.

mod common;

use std::time::Duration;

use common::{demo_image, docker_running, unique, Dormant};
use http::{header, Method, StatusCode};
use serde_json::{json, Value};

async fn state(dormant: &Dormant, name: &str) -> String {
    let (status, json) = dormant
        .api(Method::GET, &format!("/v1/containers/{name}"), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{json}");
    json["state"].as_str().unwrap().to_owned()
}

async fn last_active(dormant: &Dormant, name: &str) -> String {
    let (_, json) = dormant
        .api(Method::GET, &format!("/v1/containers/{name}"), None)
        .await;
    json["last_active_at"].as_str().unwrap().to_owned()
}

/// The headers the demo app received, from its `/headers` answer.
fn app_headers(body: &[u8]) -> Value {
    serde_json::from_slice(body)
        .unwrap_or_else(|_| panic!("not JSON: {}", String::from_utf8_lossy(body)))
}

/// The path and query of a login link's URL, checked to be on `name`'s host.
fn login_path(url: &str, dormant: &Dormant, name: &str) -> String {
    let prefix = format!("http://{name}.localhost:{}", dormant.proxy.port());
    url.strip_prefix(&prefix)
        .unwrap_or_else(|| panic!("`{url}` is not on {prefix}"))
        .to_owned()
}

#[tokio::test]
async fn a_private_container_opens_only_with_dormants_credentials() {
    let image = demo_image();
    let dormant = Dormant::start();
    let (private, public) = (unique("priv"), unique("pub"));
    let created = dormant
        .create(json!({"image": image, "name": private, "access": "private"}))
        .await;
    assert_eq!(created[0]["access"], "private");
    let created = dormant
        .create(json!({"image": image, "name": public}))
        .await;
    assert_eq!(created[0]["access"], "public", "--default-access is public");

    // Strangers: 401, a page for browsers, and the container stays asleep.
    let (status, _) = dormant
        .api(
            Method::POST,
            &format!("/v1/containers/{private}/sleep"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let active_before = last_active(&dormant, &private).await;
    let stranger = dormant
        .proxy_response(Method::GET, &private, "/", &[])
        .await;
    assert_eq!(stranger.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        stranger.headers()[header::WWW_AUTHENTICATE],
        "Bearer realm=\"dormant\""
    );
    let browser = dormant
        .proxy_response(Method::GET, &private, "/", &[("accept", "text/html")])
        .await;
    assert_eq!(browser.status(), StatusCode::UNAUTHORIZED);
    let page = String::from_utf8_lossy(browser.body());
    assert!(
        page.contains("<html") && page.contains("new login link"),
        "{page}"
    );
    let forged = dormant
        .proxy_response(
            Method::GET,
            &private,
            "/",
            &[
                ("authorization", "Bearer dmc_0123"),
                ("cookie", "dormant_session=x.1.99999999999.00"),
            ],
        )
        .await;
    assert_eq!(forged.status(), StatusCode::UNAUTHORIZED);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(state(&dormant, &private).await, "asleep", "never woken");
    assert_eq!(
        last_active(&dormant, &private).await,
        active_before,
        "refused requests are no activity"
    );
    assert_eq!(docker_running(&private), Some(false));

    // A container access token opens it (waking it) and is not forwarded.
    let (status, issued) = dormant
        .api(
            Method::POST,
            &format!("/v1/containers/{private}/tokens"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{issued}");
    let token = issued["token"].as_str().unwrap().to_owned();
    let id = issued["id"].as_str().unwrap().to_owned();
    assert!(token.starts_with("dmc_"), "{token}");
    let bearer = format!("Bearer {token}");
    let served = dormant
        .proxy_response(
            Method::GET,
            &private,
            "/headers",
            &[("authorization", &bearer)],
        )
        .await;
    assert_eq!(served.status(), StatusCode::OK, "{:?}", served.body());
    let seen = app_headers(served.body());
    assert!(
        seen.get("authorization").is_none(),
        "the app saw dormant's token: {seen}"
    );
    assert_eq!(state(&dormant, &private).await, "running");
    let other = dormant
        .proxy_response(
            Method::GET,
            &public,
            "/headers",
            &[("authorization", &bearer)],
        )
        .await;
    assert_eq!(
        app_headers(other.body())["authorization"],
        bearer.as_str(),
        "a public container's requests pass unchanged"
    );
    let (_, listed) = dormant
        .api(
            Method::GET,
            &format!("/v1/containers/{private}/tokens"),
            None,
        )
        .await;
    assert_eq!(listed["tokens"][0]["id"], id.as_str());
    assert!(
        !listed.to_string().contains(&token[4..]),
        "listings never show secrets"
    );
    let (status, _) = dormant
        .api(
            Method::DELETE,
            &format!("/v1/containers/{private}/tokens/{id}"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let revoked = dormant
        .proxy_response(Method::GET, &private, "/", &[("authorization", &bearer)])
        .await;
    assert_eq!(
        revoked.status(),
        StatusCode::UNAUTHORIZED,
        "revoked at once"
    );

    // The admin's API token opens it too.
    let admin = format!("Bearer {}", dormant.token);
    let by_admin = dormant
        .proxy_response(
            Method::GET,
            &private,
            "/headers",
            &[("authorization", &admin)],
        )
        .await;
    assert_eq!(by_admin.status(), StatusCode::OK);
    assert!(app_headers(by_admin.body()).get("authorization").is_none());

    // A login link: once, on this hostname only, then a cookie the app never sees.
    let (status, link) = dormant
        .api(
            Method::POST,
            &format!("/v1/containers/{private}/login-link"),
            Some(json!({"ttl": "30s", "path": "/headers?from=link"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{link}");
    let login = login_path(link["url"].as_str().unwrap(), &dormant, &private);
    assert!(login.starts_with("/.dormant/login?code="), "{login}");
    let elsewhere = dormant
        .proxy_response(Method::GET, &public, &login, &[])
        .await;
    assert_ne!(
        elsewhere.status(),
        StatusCode::SEE_OTHER,
        "another hostname cannot use the link"
    );
    let signed_in = dormant
        .proxy_response(Method::GET, &private, &login, &[])
        .await;
    assert_eq!(signed_in.status(), StatusCode::SEE_OTHER);
    assert_eq!(signed_in.headers()[header::LOCATION], "/headers?from=link");
    let set_cookie = signed_in.headers()[header::SET_COOKIE].to_str().unwrap();
    assert!(
        set_cookie.contains("; Path=/; HttpOnly; SameSite=Lax") && !set_cookie.contains("Domain"),
        "{set_cookie}"
    );
    assert!(
        set_cookie.contains("Max-Age=43200"),
        "--session-ttl 12h: {set_cookie}"
    );
    let cookie = set_cookie.split(';').next().unwrap().to_owned();
    let again = dormant
        .proxy_response(Method::GET, &private, &login, &[("accept", "text/html")])
        .await;
    assert_eq!(
        again.status(),
        StatusCode::UNAUTHORIZED,
        "a link works once"
    );
    assert!(String::from_utf8_lossy(again.body()).contains("expired or was already used"));

    let cookies = format!("theme=dark; {cookie}; lang=en");
    let with_cookie = dormant
        .proxy_response(
            Method::GET,
            &private,
            "/headers?from=link",
            &[("cookie", &cookies), ("authorization", "Bearer app-own")],
        )
        .await;
    assert_eq!(with_cookie.status(), StatusCode::OK);
    let seen = app_headers(with_cookie.body());
    assert_eq!(
        seen["cookie"], "theme=dark; lang=en",
        "dormant's cookie is stripped"
    );
    assert_eq!(
        seen["authorization"], "Bearer app-own",
        "the app's own credentials pass"
    );
    let cross = dormant
        .proxy_response(Method::GET, &public, "/headers", &[("cookie", &cookie)])
        .await;
    assert_eq!(cross.status(), StatusCode::OK);

    // A public container needs no link; making the private one public opens it.
    let (status, _) = dormant
        .api(
            Method::POST,
            &format!("/v1/containers/{public}/login-link"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    let (status, view) = dormant
        .api(
            Method::POST,
            &format!("/v1/containers/{private}/access"),
            Some(json!({"access": "public"})),
        )
        .await;
    assert_eq!(
        (status, &view["access"]),
        (StatusCode::OK, &json!("public"))
    );
    let (status, _) = dormant.get(&private, "/").await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn default_access_private_keeps_new_containers_closed_and_sessions_survive_a_restart() {
    let image = demo_image();
    let mut dormant = Dormant::start_with(&["--default-access", "private", "--session-ttl", "1h"]);
    let name = unique("closed");
    let created = dormant.create(json!({"image": image, "name": name})).await;
    assert_eq!(created[0]["access"], "private");
    let (status, _) = dormant.get(&name, "/").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (_, link) = dormant
        .api(
            Method::POST,
            &format!("/v1/containers/{name}/login-link"),
            None,
        )
        .await;
    let login = login_path(link["url"].as_str().unwrap(), &dormant, &name);
    let (_, unused) = dormant
        .api(
            Method::POST,
            &format!("/v1/containers/{name}/login-link"),
            None,
        )
        .await;
    let unused = login_path(unused["url"].as_str().unwrap(), &dormant, &name);
    let signed_in = dormant
        .proxy_response(Method::GET, &name, &login, &[])
        .await;
    assert_eq!(signed_in.status(), StatusCode::SEE_OTHER);
    assert_eq!(signed_in.headers()[header::LOCATION], "/");
    let set_cookie = signed_in.headers()[header::SET_COOKIE].to_str().unwrap();
    assert!(set_cookie.contains("Max-Age=3600"), "{set_cookie}");
    let cookie = set_cookie.split(';').next().unwrap().to_owned();
    let (_, issued) = dormant
        .api(Method::POST, &format!("/v1/containers/{name}/tokens"), None)
        .await;
    let bearer = format!("Bearer {}", issued["token"].as_str().unwrap());

    dormant.stop();
    dormant.restart();
    let key_mode = {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(dormant.data_dir.join("session.key"))
            .unwrap()
            .permissions()
            .mode()
    };
    assert_eq!(key_mode & 0o777, 0o600);
    for (what, headers) in [
        ("cookie", [("cookie", cookie.as_str())]),
        ("token", [("authorization", bearer.as_str())]),
    ] {
        let response = dormant
            .proxy_response(Method::GET, &name, "/", &headers)
            .await;
        assert_eq!(
            response.status(),
            StatusCode::OK,
            "the {what} outlives a restart"
        );
    }
    let after_restart = dormant
        .proxy_response(Method::GET, &name, &unused, &[])
        .await;
    assert_eq!(
        after_restart.status(),
        StatusCode::UNAUTHORIZED,
        "unused links are kept in memory only: a restart voids them"
    );

    // Deleting the container ends its tokens and sessions: a new container
    // of the same name opens with neither.
    let (status, _) = dormant
        .api(Method::DELETE, &format!("/v1/containers/{name}"), None)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    dormant.create(json!({"image": image, "name": name})).await;
    for headers in [
        [("cookie", cookie.as_str())],
        [("authorization", bearer.as_str())],
    ] {
        let response = dormant
            .proxy_response(Method::GET, &name, "/", &headers)
            .await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{headers:?}");
    }
}

/// `dormant <args> --url <api> --token <admin>`; stdout, after checking it succeeded.
fn cli(dormant: &Dormant, args: &[&str]) -> String {
    let api = format!("http://{}", dormant.api);
    let output = common::dormant_command()
        .args(args)
        .args(["--url", &api, "--token", &dormant.token])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "dormant {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

#[tokio::test]
async fn the_command_line_makes_containers_private_and_hands_out_tokens_and_links() {
    let image = demo_image();
    let dormant = Dormant::start();
    let name = unique("cli");
    cli(
        &dormant,
        &[
            "create", "--image", image, "--name", &name, "--access", "private",
        ],
    );
    let (status, _) = dormant.get(&name, "/").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    let token = cli(&dormant, &["token", "create", &name]).trim().to_owned();
    assert!(token.starts_with("dmc_"), "{token}");
    let bearer = format!("Bearer {token}");
    let response = dormant
        .proxy_response(Method::GET, &name, "/", &[("authorization", &bearer)])
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let listed = cli(&dormant, &["token", "ls", &name]);
    let id = listed
        .lines()
        .nth(1)
        .and_then(|line| line.split_whitespace().next())
        .unwrap_or_else(|| panic!("no token listed: {listed}"))
        .to_owned();
    assert!(id.starts_with("tok_"), "{listed}");
    cli(&dormant, &["token", "rm", &name, &id]);
    let response = dormant
        .proxy_response(Method::GET, &name, "/", &[("authorization", &bearer)])
        .await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);

    let url = cli(
        &dormant,
        &["login-link", &name, "--path", "/headers", "--ttl", "2m"],
    );
    let login = login_path(url.trim(), &dormant, &name);
    let signed_in = dormant
        .proxy_response(Method::GET, &name, &login, &[])
        .await;
    assert_eq!(signed_in.status(), StatusCode::SEE_OTHER);
    assert_eq!(signed_in.headers()[header::LOCATION], "/headers");

    assert_eq!(
        cli(&dormant, &["access", &name, "public"]).trim(),
        format!("{name}: public")
    );
    let (status, _) = dormant.get(&name, "/").await;
    assert_eq!(status, StatusCode::OK);
}

/// Makes tenant `id` as the admin; returns its API token.
async fn tenant_token(dormant: &Dormant, id: &str) -> String {
    let (status, json) = dormant
        .api(Method::POST, "/v1/tenants", Some(json!({"id": id})))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{json}");
    json["token"]["token"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn a_tenants_api_token_opens_its_own_private_containers_only() {
    let image = demo_image();
    let dormant = Dormant::start();
    let (acme, beta) = (unique("acme"), unique("beta"));
    let (acme_token, beta_token) = (
        tenant_token(&dormant, &acme).await,
        tenant_token(&dormant, &beta).await,
    );
    let name = unique("acme-app");
    let (status, json) = dormant
        .api_raw(
            Method::POST,
            "/v1/containers",
            Some(&acme_token),
            json!({"image": image, "name": name, "access": "private"})
                .to_string()
                .into(),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{json}");

    let acme_bearer = format!("Bearer {acme_token}");
    let beta_bearer = format!("Bearer {beta_token}");
    let own = dormant
        .proxy_response(
            Method::GET,
            &name,
            "/headers",
            &[("authorization", &acme_bearer)],
        )
        .await;
    assert_eq!(own.status(), StatusCode::OK);
    assert!(
        app_headers(own.body()).get("authorization").is_none(),
        "a tenant token is dormant's: not forwarded"
    );
    let other = dormant
        .proxy_response(Method::GET, &name, "/", &[("authorization", &beta_bearer)])
        .await;
    assert_eq!(
        other.status(),
        StatusCode::UNAUTHORIZED,
        "another tenant's token"
    );

    // Its private-URL calls see only its own containers: another tenant's is 404.
    let path = format!("/v1/containers/{name}/login-link");
    let (status, _) = dormant
        .api_raw(Method::POST, &path, Some(&beta_token), Default::default())
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, link) = dormant
        .api_raw(Method::POST, &path, Some(&acme_token), Default::default())
        .await;
    assert_eq!(status, StatusCode::OK, "{link}");
    let path = format!("/v1/containers/{name}/tokens");
    let (status, _) = dormant
        .api_raw(Method::POST, &path, Some(&beta_token), Default::default())
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}
