//! Just enough of the W3C WebDriver protocol to drive headless Chromium
//! through chromedriver (both from Debian's packages): a session, elements,
//! clicks, typing, scripts and screenshots. Plain JSON over HTTP on loopback
//! with the client the tests already use, rather than a WebDriver crate.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use bytes::Bytes;
use http::{Method, Request};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::{json, Value};

/// The key under which WebDriver names an element.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// Where Chromium and chromedriver are, or why the browser tests cannot run.
pub struct Browsers {
    chromium: PathBuf,
    chromedriver: PathBuf,
}

impl Browsers {
    /// Both programs on PATH, or `Err` naming what is missing.
    pub fn find() -> Result<Self, String> {
        let chromium = ["chromium", "chromium-browser"]
            .iter()
            .find_map(|name| on_path(name))
            .ok_or("chromium is not installed (apt-get install chromium)")?;
        let chromedriver = on_path("chromedriver")
            .ok_or("chromedriver is not installed (apt-get install chromium-driver)")?;
        Ok(Self {
            chromium,
            chromedriver,
        })
    }
}

fn on_path(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(name))
            .find(|path| path.is_file())
    })
}

/// A chromedriver process and one browser session in it; both end on drop.
pub struct Browser {
    driver: Child,
    port: u16,
    base: String,
    http: Client<HttpConnector, Full<Bytes>>,
    session: String,
    /// Where screenshots go.
    pub shots: PathBuf,
}

impl Browser {
    /// Starts chromedriver on a free loopback port and opens a headless
    /// Chromium `width` x `height` pixels.
    pub async fn start(browsers: &Browsers, width: u32, height: u32, shots: &Path) -> Self {
        std::fs::create_dir_all(shots).unwrap();
        let port = {
            let probe = TcpListener::bind("127.0.0.1:0").unwrap();
            probe.local_addr().unwrap().port()
        };
        let driver = Command::new(&browsers.chromedriver)
            .arg(format!("--port={port}"))
            .arg("--allowed-ips=127.0.0.1")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let mut browser = Self {
            driver,
            port,
            base: format!("http://127.0.0.1:{port}"),
            http: Client::builder(TokioExecutor::new()).build_http(),
            session: String::new(),
            shots: shots.to_owned(),
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(status) = browser.call(Method::GET, "/status", None).await {
                if status["ready"] == true {
                    break;
                }
            }
            assert!(
                Instant::now() < deadline,
                "chromedriver did not answer on port {port} within 10 s"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let mut args = vec![
            "--headless=new".to_owned(),
            "--disable-gpu".to_owned(),
            "--disable-dev-shm-usage".to_owned(),
            "--disable-extensions".to_owned(),
            format!("--window-size={width},{height}"),
        ];
        // Chromium refuses to run as root with its sandbox on.
        if rustix::process::geteuid().is_root() {
            args.push("--no-sandbox".to_owned());
        }
        let session = browser
            .call(
                Method::POST,
                "/session",
                Some(json!({"capabilities": {"alwaysMatch": {
                    "browserName": "chrome",
                    "goog:chromeOptions": {
                        "binary": browsers.chromium,
                        "args": args,
                    },
                    "timeouts": {"script": 30_000, "pageLoad": 20_000},
                }}})),
            )
            .await
            .unwrap_or_else(|e| panic!("chromedriver could not open Chromium: {e}"));
        browser.session = session["sessionId"]
            .as_str()
            .expect("a session id")
            .to_owned();
        browser
    }

    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> Result<Value, String> {
        let request = Request::builder()
            .method(method.clone())
            .uri(format!("{}{path}", self.base))
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(
                body.map(|b| b.to_string()).unwrap_or_default(),
            )))
            .unwrap();
        let response = tokio::time::timeout(Duration::from_secs(40), self.http.request(request))
            .await
            .map_err(|_| format!("{method} {path}: chromedriver did not answer in 40 s"))?
            .map_err(|e| format!("{method} {path}: {e}"))?;
        let status = response.status();
        let bytes = response
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        let json: Value = serde_json::from_slice(&bytes)
            .map_err(|e| format!("{method} {path}: not JSON ({e})"))?;
        if !status.is_success() {
            return Err(format!("{method} {path}: {status}: {}", json["value"]));
        }
        Ok(json["value"].clone())
    }

    async fn session_call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, String> {
        let path = format!("/session/{}{path}", self.session);
        self.call(method, &path, body).await
    }

    pub async fn goto(&self, url: &str) -> Result<(), String> {
        self.session_call(Method::POST, "/url", Some(json!({ "url": url })))
            .await
            .map(drop)
    }

    async fn element(&self, css: &str) -> Result<String, String> {
        let found = self
            .session_call(
                Method::POST,
                "/element",
                Some(json!({"using": "css selector", "value": css})),
            )
            .await?;
        found[ELEMENT]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| format!("no element id for {css}: {found}"))
    }

    /// Clicks the element `css` names, as a user would (it must be visible
    /// and enabled).
    pub async fn click(&self, css: &str) -> Result<(), String> {
        let id = self.element(css).await?;
        self.session_call(
            Method::POST,
            &format!("/element/{id}/click"),
            Some(json!({})),
        )
        .await
        .map(drop)
    }

    /// Types `text` into the element `css` names, after clearing it.
    pub async fn type_into(&self, css: &str, text: &str) -> Result<(), String> {
        let id = self.element(css).await?;
        self.session_call(
            Method::POST,
            &format!("/element/{id}/clear"),
            Some(json!({})),
        )
        .await?;
        self.session_call(
            Method::POST,
            &format!("/element/{id}/value"),
            Some(json!({ "text": text })),
        )
        .await
        .map(drop)
    }

    /// Runs `script` (a function body; `arguments` holds `args`) in the page.
    pub async fn script(&self, script: &str, args: Value) -> Result<Value, String> {
        self.session_call(
            Method::POST,
            "/execute/sync",
            Some(json!({"script": script, "args": args})),
        )
        .await
    }

    /// Runs `script`, which calls `arguments[arguments.length - 1]` with
    /// its result when done (the script timeout is 30 s).
    pub async fn script_async(&self, script: &str, args: Value) -> Result<Value, String> {
        self.session_call(
            Method::POST,
            "/execute/async",
            Some(json!({"script": script, "args": args})),
        )
        .await
    }

    /// Polls `script` until it returns `true`, or fails after `limit`
    /// saying what it last returned.
    pub async fn wait_for(
        &self,
        what: &str,
        script: &str,
        args: Value,
        limit: Duration,
    ) -> Result<(), String> {
        let deadline = Instant::now() + limit;
        let mut last = Value::Null;
        while Instant::now() < deadline {
            match self.script(script, args.clone()).await {
                Ok(Value::Bool(true)) => return Ok(()),
                Ok(other) => last = other,
                Err(e) => last = Value::String(e),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Err(format!("{what}: not within {limit:?} (last: {last})"))
    }

    /// Presses and releases `key` (a WebDriver key code, e.g. `"\u{E007}"`
    /// for Enter) on whatever has the focus.
    pub async fn press_key(&self, key: &str) -> Result<(), String> {
        self.session_call(
            Method::POST,
            "/actions",
            Some(
                json!({"actions": [{"type": "key", "id": "keyboard", "actions": [
                    {"type": "keyDown", "value": key},
                    {"type": "keyUp", "value": key},
                ]}]}),
            ),
        )
        .await
        .map(drop)
    }

    /// Resizes the browser window (the viewport follows).
    pub async fn resize(&self, width: u32, height: u32) -> Result<(), String> {
        self.session_call(
            Method::POST,
            "/window/rect",
            Some(json!({"width": width, "height": height})),
        )
        .await
        .map(drop)
    }

    /// Saves a PNG of the page as `name` under `shots`; returns its path.
    pub async fn screenshot(&self, name: &str) -> Result<PathBuf, String> {
        let encoded = self.session_call(Method::GET, "/screenshot", None).await?;
        let png = base64::engine::general_purpose::STANDARD
            .decode(encoded.as_str().unwrap_or_default())
            .map_err(|e| format!("screenshot: {e}"))?;
        let path = self.shots.join(name);
        std::fs::write(&path, png).map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(path)
    }

    /// Unwraps `result`, or saves a screenshot and panics naming it.
    pub async fn check<T>(&self, step: &str, result: Result<T, String>) -> T {
        match result {
            Ok(value) => value,
            Err(error) => {
                let file = format!(
                    "failure-{}.png",
                    step.replace(|c: char| !c.is_ascii_alphanumeric(), "-")
                );
                let shot = match self.screenshot(&file).await {
                    Ok(path) => format!("screenshot: {}", path.display()),
                    Err(e) => format!("no screenshot: {e}"),
                };
                let shown = self
                    .script(
                        "return document.getElementById('error')?.textContent || '';",
                        json!([]),
                    )
                    .await
                    .unwrap_or_default();
                panic!("{step}: {error}\n{shot}\nthe page's error line: {shown}");
            }
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // Ending the session closes Chromium; drop cannot await, so the
        // request is written by hand on a blocking socket.
        if !self.session.is_empty() {
            if let Ok(mut socket) = TcpStream::connect(("127.0.0.1", self.port)) {
                let _ = socket.set_read_timeout(Some(Duration::from_secs(5)));
                let _ = write!(
                    socket,
                    "DELETE /session/{} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                    self.session, self.port
                );
                let _ = socket.read_to_end(&mut Vec::new());
            }
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}
