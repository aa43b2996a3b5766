//! The dashboard at `/ui` in a real browser (headless Chromium driven
//! through chromedriver, both from Debian's packages): sign in, see a
//! container, sleep and wake it and watch its badge follow through the event
//! stream without a reload, create one from the form. Screenshots land under
//! the test's target directory, on failure named in the message.
//!
//! Skips, saying so, only when Chromium or chromedriver is not installed;
//! `.ci/run` installs both.

mod common;
mod webdriver;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::{demo_image, unique, Dormant};
use http::{Method, StatusCode};
use serde_json::{json, Value};
use webdriver::{Browser, Browsers};

fn shots_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("dashboard")
}

fn browsers_or_skip(test: &str) -> Option<Browsers> {
    match Browsers::find() {
        Ok(found) => Some(found),
        Err(missing) => {
            eprintln!("SKIPPED {test}: {missing}; the dashboard was not tested in a browser");
            None
        }
    }
}

/// The state badge of container `name`, as the page shows it.
const BADGE_IS: &str =
    "const row = document.querySelector(`#containers tbody tr[data-name=\"${arguments[0]}\"]`);
     return !!row && row.querySelector('.badge').textContent === arguments[1];";

#[tokio::test]
async fn the_dashboard_signs_in_follows_events_and_acts_on_containers() {
    let Some(browsers) =
        browsers_or_skip("the_dashboard_signs_in_follows_events_and_acts_on_containers")
    else {
        return;
    };
    let started = Instant::now();
    let dormant = Dormant::start();
    let name = unique("ui");
    dormant
        .create(json!({"image": demo_image(), "name": name}))
        .await;

    // The page's files need no token and come with strict headers.
    let (status, _) = dormant
        .api_raw(Method::GET, "/ui", None, Default::default())
        .await;
    assert_eq!(status, StatusCode::OK);
    let headers = ui_headers(&dormant, "/ui/app.js").await;
    assert!(
        headers["content-security-policy"].contains("script-src 'self'"),
        "{headers:?}"
    );
    assert!(headers["content-security-policy"].contains("frame-ancestors 'none'"));
    assert_eq!(headers["x-content-type-options"], "nosniff");
    assert_eq!(headers["referrer-policy"], "no-referrer");
    assert_eq!(headers["x-frame-options"], "DENY");

    let browser = Browser::start(&browsers, 1280, 900, &shots_dir()).await;
    let ui = format!("http://{}/ui", dormant.api);
    browser.check("open /ui", browser.goto(&ui).await).await;

    // Sign in.
    browser
        .check(
            "type the token",
            browser.type_into("#token", &dormant.token).await,
        )
        .await;
    browser
        .check(
            "sign in",
            browser.click("#sign-in button[type=submit]").await,
        )
        .await;
    let seen = browser
        .wait_for(
            "the container's row, running",
            BADGE_IS,
            json!([name, "running"]),
            Duration::from_secs(15),
        )
        .await;
    browser.check("see the container", seen).await;
    let token_in_storage = browser
        .script("return sessionStorage.getItem('dormant.token') === arguments[0] && !location.href.includes(arguments[0]);", json!([dormant.token]))
        .await;
    assert_eq!(
        browser.check("token kept", token_in_storage).await,
        Value::Bool(true)
    );
    let live = browser
        .wait_for(
            "the event stream",
            "return document.getElementById('live').dataset.state === 'live';",
            json!([]),
            Duration::from_secs(10),
        )
        .await;
    browser.check("event stream live", live).await;
    // Anything that reloads the page drops this mark.
    browser
        .check(
            "mark the page",
            browser
                .script("window.notReloaded = true; return true;", json!([]))
                .await,
        )
        .await;

    // Sleep: the row follows the event stream (the page does not patch it
    // from the answer to its POST).
    let sleep = format!("#containers tr[data-name=\"{name}\"] button[data-action=sleep]");
    browser
        .check("click sleep", browser.click(&sleep).await)
        .await;
    let asleep = browser
        .wait_for(
            "the badge to read asleep",
            BADGE_IS,
            json!([name, "asleep"]),
            Duration::from_secs(20),
        )
        .await;
    browser.check("asleep", asleep).await;

    let wake = format!("#containers tr[data-name=\"{name}\"] button[data-action=wake]");
    browser
        .check("click wake", browser.click(&wake).await)
        .await;
    let running = browser
        .wait_for(
            "the badge to read running",
            BADGE_IS,
            json!([name, "running"]),
            Duration::from_secs(20),
        )
        .await;
    browser.check("running again", running).await;
    // The wake came back with its duration, through a re-read of the row.
    let wake_ms = browser
        .wait_for(
            "the last wake's duration in the row",
            "const row = document.querySelector(`#containers tbody tr[data-name=\"${arguments[0]}\"]`);
             return !!row && / ms$/.test(row.children[3].textContent);",
            json!([name]),
            Duration::from_secs(10),
        )
        .await;
    browser.check("last wake shown", wake_ms).await;

    // A change made elsewhere shows up too: sleep it through the API.
    let (status, json) = dormant
        .api(Method::POST, &format!("/v1/containers/{name}/sleep"), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{json}");
    let asleep = browser
        .wait_for(
            "the badge to follow a sleep made through the API",
            BADGE_IS,
            json!([name, "asleep"]),
            Duration::from_secs(10),
        )
        .await;
    browser.check("asleep from elsewhere", asleep).await;

    // Create one from the form.
    let made = unique("uiform");
    browser
        .check(
            "type the image",
            browser.type_into("#create-image", demo_image()).await,
        )
        .await;
    browser
        .check(
            "type the name",
            browser.type_into("#create-name", &made).await,
        )
        .await;
    browser
        .check(
            "type the memory",
            browser.type_into("#create-memory", "64m").await,
        )
        .await;
    browser
        .check("create", browser.click("#create button[type=submit]").await)
        .await;
    let appeared = browser
        .wait_for(
            "the created container's row, running",
            BADGE_IS,
            json!([made, "running"]),
            Duration::from_secs(20),
        )
        .await;
    browser.check("created", appeared).await;

    // The host totals and the wake chart (admin): the wake above is in it.
    let chart = browser
        .wait_for(
            "a bar in the wake chart",
            "return !document.getElementById('host').hidden && document.querySelectorAll('#chart rect.bar').length > 0;",
            json!([]),
            Duration::from_secs(10),
        )
        .await;
    browser.check("chart", chart).await;
    let totals = browser
        .wait_for(
            "the host totals to count the created container running",
            "return document.getElementById('total-running').textContent.startsWith('1 ');",
            json!([]),
            Duration::from_secs(10),
        )
        .await;
    browser.check("totals follow", totals).await;

    let shot = browser
        .check("screenshot", browser.screenshot("dashboard.png").await)
        .await;
    println!("dashboard screenshot: {}", shot.display());

    // An API error reaches the user: a memory limit that is no size.
    browser
        .check(
            "type a bad memory",
            browser.type_into("#create-memory", "lots").await,
        )
        .await;
    browser
        .check(
            "create with it",
            browser.click("#create button[type=submit]").await,
        )
        .await;
    let refused = browser
        .wait_for(
            "the API's error shown",
            "const e = document.getElementById('error'); return !e.hidden && e.textContent.includes('memory');",
            json!([]),
            Duration::from_secs(10),
        )
        .await;
    browser.check("error shown", refused).await;

    let kept = browser
        .script("return window.notReloaded === true;", json!([]))
        .await;
    assert_eq!(
        browser.check("no reload", kept).await,
        Value::Bool(true),
        "the page was reloaded"
    );

    // On a phone's width the table turns into cards: nothing sticks out
    // sideways.
    browser
        .check("phone width", browser.resize(390, 844).await)
        .await;
    let fits = browser
        .wait_for(
            "the page to fit a phone's width",
            "return document.documentElement.scrollWidth <= window.innerWidth;",
            json!([]),
            Duration::from_secs(5),
        )
        .await;
    browser.check("fits a phone", fits).await;
    let phone = browser
        .check(
            "phone screenshot",
            browser.screenshot("dashboard-phone.png").await,
        )
        .await;
    println!("phone screenshot: {}", phone.display());
    println!("browser test took {:?}", started.elapsed());
}

async fn ui_headers(dormant: &Dormant, path: &str) -> std::collections::HashMap<String, String> {
    let request = http::Request::builder()
        .uri(format!("http://{}{path}", dormant.api))
        .body(http_body_util::Full::new(bytes::Bytes::new()))
        .unwrap();
    let response = dormant.http_client().request(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK, "{path} without a token");
    response
        .headers()
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_owned(),
                v.to_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}
