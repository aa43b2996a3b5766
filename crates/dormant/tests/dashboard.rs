//! The dashboard at `/ui` in a real browser (headless Chromium driven
//! through chromedriver, both from Debian's packages): sign in, see a
//! container, sleep and wake it and watch its badge follow through the event
//! stream without a reload, create one from the form. Screenshots land under
//! the test's target directory, on failure named in the message.
//!
//! Skips, saying so, only when Chromium or chromedriver is not installed
//! (and fails instead under `CI=true`: `.ci/run` installs both).

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
        // CI installs both (.ci/run): there a missing browser is a failure,
        // not a quiet skip.
        Err(missing) if std::env::var("CI").is_ok_and(|ci| ci == "true") => {
            panic!("{test}: {missing}, and CI=true: .ci/run should have installed it")
        }
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
    let _turn = ONE_BROWSER.lock().await;
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

    // Sorting works from the keyboard: Enter on a focused column header.
    let focused = browser
        .script(
            "const th = document.querySelector('th[data-sort=state]'); th.focus(); return document.activeElement === th;",
            json!([]),
        )
        .await;
    assert_eq!(
        browser.check("focus a header", focused).await,
        Value::Bool(true)
    );
    browser
        .check("press Enter", browser.press_key("\u{E007}").await)
        .await;
    let sorted = browser
        .wait_for(
            "the table sorted by state from the keyboard",
            "return document.querySelector('th[data-sort=state]').getAttribute('aria-sort') === 'ascending';",
            json!([]),
            Duration::from_secs(5),
        )
        .await;
    browser.check("keyboard sort", sorted).await;

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

    // The wake is in the server's own history, which the chart draws.
    let (status, stats) = dormant.api(Method::GET, "/v1/stats", None).await;
    assert_eq!(status, StatusCode::OK, "{stats}");
    let hour = stats["wakes_last_hour"]
        .as_array()
        .expect("wakes_last_hour");
    assert_eq!(hour.len(), 60, "{stats}");
    let woken: u64 = hour.iter().map(|m| m["wakes"].as_u64().unwrap()).sum();
    assert_eq!(woken, 1, "one wake in the last hour: {stats}");

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

    // Delete asks first; cancelling keeps the row, confirming removes it.
    let delete = format!("#containers tr[data-name=\"{made}\"] button[data-action=delete]");
    browser
        .check("click delete", browser.click(&delete).await)
        .await;
    browser
        .check(
            "cancel",
            browser.click("#confirm-delete button[value=cancel]").await,
        )
        .await;
    let (status, _) = dormant
        .api(Method::GET, &format!("/v1/containers/{made}"), None)
        .await;
    assert_eq!(status, StatusCode::OK, "a cancelled delete deleted {made}");
    browser
        .check("click delete again", browser.click(&delete).await)
        .await;
    browser
        .check(
            "confirm",
            browser.click("#confirm-delete button[value=delete]").await,
        )
        .await;
    let gone = browser
        .wait_for(
            "the deleted container's row to go",
            "return !document.querySelector(`#containers tbody tr[data-name=\"${arguments[0]}\"]`);",
            json!([made]),
            Duration::from_secs(20),
        )
        .await;
    browser.check("deleted", gone).await;

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
    // Sign out, then in as a tenant: no host totals, none of the admin's
    // containers.
    let tenant = unique("t");
    let (status, made_tenant) = dormant
        .api(Method::POST, "/v1/tenants", Some(json!({"id": tenant})))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{made_tenant}");
    let tenant_token = made_tenant["token"]["token"].as_str().unwrap().to_owned();
    browser
        .check("sign out", browser.click("#sign-out").await)
        .await;
    let cleared = browser
        .script("return sessionStorage.getItem('dormant.token') === null && !document.getElementById('sign-in-panel').hidden;", json!([]))
        .await;
    assert_eq!(
        browser.check("signed out", cleared).await,
        Value::Bool(true)
    );
    browser
        .check(
            "type the tenant's token",
            browser.type_into("#token", &tenant_token).await,
        )
        .await;
    browser
        .check(
            "sign in as the tenant",
            browser.click("#sign-in button[type=submit]").await,
        )
        .await;
    let tenant_view = browser
        .wait_for(
            "the tenant's view: live, no host totals, no rows",
            "return document.getElementById('live').dataset.state === 'live'
                 && document.getElementById('host').hidden
                 && document.querySelectorAll('#containers tbody tr').length === 0
                 && !document.getElementById('empty').hidden;",
            json!([]),
            Duration::from_secs(10),
        )
        .await;
    browser.check("tenant view", tenant_view).await;

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

/// Rows in the measured table.
const LOAD_ROWS: usize = 1_000;

/// Stands in for the API inside the page: a list of [`LOAD_ROWS`]
/// containers, their re-reads, and an event stream the test writes into
/// (`window.loadTest.push`). Creating a thousand real containers would take
/// minutes; the page's own code is what is measured.
const FAKE_API: &str = r#"
const n = arguments[0];
const now = new Date().toISOString();
const byName = new Map();
for (let i = 0; i < n; i++) {
  const name = 'load-' + String(i).padStart(4, '0');
  byName.set(name, {
    name, host: name + '.localhost', url: 'http://' + name + '.localhost/',
    state: i % 3 === 0 ? 'asleep' : 'running', image: 'demo', port: 8080,
    memory: (128 << (i % 4)) + 'm', idle_timeout: '15m', volumes: [], env: {},
    wakes: 1, last_wake_ms: 100 + (i * 37) % 900, created_at: now,
    last_active_at: now, tenant: 'admin',
  });
}
let push = null;
window.loadTest = { push: (text) => push(new TextEncoder().encode(text)), byName };
// Resolves once the frame holding a change has been drawn: the second
// animation frame after it starts after the first one was painted.
window.painted = (t0, done) =>
  requestAnimationFrame(() => requestAnimationFrame(() => done(performance.now() - t0)));
const realFetch = window.fetch.bind(window);
const json = (value) => Promise.resolve(new Response(JSON.stringify(value),
  { status: 200, headers: { 'content-type': 'application/json' } }));
window.fetch = (url, options) => {
  if (url === '/v1/containers') return json({ containers: [...byName.values()] });
  if (url.startsWith('/v1/containers/')) return json(byName.get(decodeURIComponent(url.slice(15))));
  if (url === '/v1/events') {
    const body = new ReadableStream({ start(controller) { push = (b) => controller.enqueue(b); } });
    return Promise.resolve(new Response(body, { status: 200, headers: { 'content-type': 'text/event-stream' } }));
  }
  return realFetch(url, options);
};
return true;
"#;

/// Signs in and resolves with the milliseconds until all rows are in the
/// table and drawn.
const TIME_FIRST_TABLE: &str = r#"
const [n, token, done] = arguments;
const t0 = performance.now();
document.getElementById('token').value = token;
document.querySelector('#sign-in button[type=submit]').click();
(function poll() {
  if (document.querySelectorAll('#containers tbody tr').length === n) painted(t0, done);
  else requestAnimationFrame(poll);
})();
"#;

/// Sends one event and resolves with the milliseconds until its row's
/// badge shows it, drawn.
const TIME_ONE_UPDATE: &str = r#"
const [name, state, id, done] = arguments;
const kind = state === 'running' ? 'ready' : state;
const known = window.loadTest.byName.get(name);
window.loadTest.byName.set(name, Object.assign({}, known, { state }));
const event = { id, at: new Date().toISOString(), kind, container: name, tenant: 'admin', state };
const t0 = performance.now();
window.loadTest.push(`id: ${id}\nevent: ${kind}\ndata: ${JSON.stringify(event)}\n\n`);
(function poll() {
  const row = document.querySelector(`#containers tbody tr[data-name="${name}"]`);
  if (row && row.querySelector('.badge').textContent === state) painted(t0, done);
  else requestAnimationFrame(poll);
})();
"#;

/// Types into the filter and resolves with the milliseconds until the
/// table shows `expected` rows.
const TIME_FILTER: &str = r#"
const [text, expected, done] = arguments;
const filter = document.getElementById('filter');
const t0 = performance.now();
filter.value = text;
filter.dispatchEvent(new Event('input'));
(function poll() {
  if (document.querySelectorAll('#containers tbody tr').length === expected) painted(t0, done);
  else requestAnimationFrame(poll);
})();
"#;

/// Clicks the "Last wake" header and resolves with the milliseconds until
/// the table is drawn sorted by it (the fastest synthetic wake first).
const TIME_SORT: &str = r#"
const done = arguments[0];
const header = document.querySelector('th[data-sort=wake]');
const t0 = performance.now();
header.click();
(function poll() {
  const first = document.querySelector('#containers tbody tr td:nth-child(4)');
  if (header.getAttribute('aria-sort') === 'ascending' && first && first.textContent === '100 ms') painted(t0, done);
  else requestAnimationFrame(poll);
})();
"#;

/// One browser at a time: two Chromiums on a small machine would skew the
/// measured test and slow both.
static ONE_BROWSER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Measures, and prints, how the page copes with a thousand containers:
/// time to the first full table, per live update, to filter and to sort.
/// Nothing is asserted about the numbers (they depend on the machine); the
/// table must fill and each update must show.
#[tokio::test]
async fn the_dashboard_with_a_thousand_rows() {
    let Some(browsers) = browsers_or_skip("the_dashboard_with_a_thousand_rows") else {
        return;
    };
    let _turn = ONE_BROWSER.lock().await;
    let dormant = Dormant::start();
    let browser = Browser::start(&browsers, 1280, 900, &shots_dir()).await;
    let ui = format!("http://{}/ui", dormant.api);
    browser.check("open /ui", browser.goto(&ui).await).await;
    let faked = browser.script(FAKE_API, json!([LOAD_ROWS])).await;
    browser.check("stand in for the API", faked).await;

    let first = browser
        .script_async(TIME_FIRST_TABLE, json!([LOAD_ROWS, dormant.token]))
        .await;
    let first_ms = browser
        .check("first table", first)
        .await
        .as_f64()
        .unwrap_or(f64::NAN);
    let live = browser
        .wait_for(
            "the (stand-in) event stream",
            "return document.getElementById('live').dataset.state === 'live';",
            json!([]),
            Duration::from_secs(10),
        )
        .await;
    browser.check("stream live", live).await;

    let mut updates = Vec::new();
    for i in 0..20u64 {
        let name = format!("load-{:04}", (i * 97) % LOAD_ROWS as u64);
        let state = if i % 2 == 0 { "archived" } else { "failed" };
        let took = browser
            .script_async(TIME_ONE_UPDATE, json!([name, state, i + 1]))
            .await;
        let took = browser.check("one update", took).await;
        updates.push(took.as_f64().unwrap_or(f64::NAN));
    }
    updates.sort_by(f64::total_cmp);

    let filtered = browser
        .script_async(TIME_FILTER, json!(["load-09", 100]))
        .await;
    let filter_ms = browser
        .check("filter", filtered)
        .await
        .as_f64()
        .unwrap_or(f64::NAN);
    let cleared = browser
        .script_async(TIME_FILTER, json!(["", LOAD_ROWS]))
        .await;
    let clear_ms = browser
        .check("clear the filter", cleared)
        .await
        .as_f64()
        .unwrap_or(f64::NAN);
    let sorted = browser.script_async(TIME_SORT, json!([])).await;
    let sort_ms = browser
        .check("sort by last wake", sorted)
        .await
        .as_f64()
        .unwrap_or(f64::NAN);

    println!(
        "dashboard with {LOAD_ROWS} rows (headless Chromium, this machine): first table {first_ms:.0} ms \
         from sign-in; one live update, median {:.1} ms, slowest {:.1} ms of {}; filter to 100 rows {filter_ms:.0} ms, \
         back to {LOAD_ROWS} {clear_ms:.0} ms; sort by a column {sort_ms:.0} ms (each until drawn)",
        updates[updates.len() / 2],
        updates[updates.len() - 1],
        updates.len(),
    );
}
