//! A small HTTP client for dormant's own API, used by the client commands.

use bytes::Bytes;
use http::{header, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use serde::de::DeserializeOwned;

pub struct ApiClient {
    base: String,
    token: String,
    http: Client<HttpConnector, Full<Bytes>>,
}

impl ApiClient {
    pub fn new(base: &str, token: String) -> anyhow::Result<Self> {
        let base = base.trim_end_matches('/').to_owned();
        if !base.starts_with("http://") {
            anyhow::bail!("--url must start with http:// (got `{base}`)");
        }
        Ok(Self {
            base,
            token,
            http: Client::builder(TokioExecutor::new()).build_http(),
        })
    }

    /// The API's base URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// Sends a request and returns the status and body; a non-2xx answer
    /// becomes an error carrying the API's own message.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> anyhow::Result<(StatusCode, Bytes)> {
        let url = format!("{}{path}", self.base);
        let mut request = Request::builder()
            .method(method.clone())
            .uri(&url)
            .header(header::AUTHORIZATION, format!("Bearer {}", self.token));
        let body = match body {
            Some(json) => {
                request = request.header(header::CONTENT_TYPE, "application/json");
                Full::new(Bytes::from(serde_json::to_vec(&json)?))
            }
            None => Full::new(Bytes::new()),
        };
        let response = self
            .http
            .request(request.body(body)?)
            .await
            .map_err(|e| anyhow::anyhow!("cannot reach dormant at {}: {e}; is `dormant serve` running there? (set --url or DORMANT_URL)", self.base))?;
        let status = response.status();
        let bytes = response.into_body().collect().await?.to_bytes();
        if !status.is_success() {
            let message = serde_json::from_slice::<serde_json::Value>(&bytes)
                .ok()
                .and_then(|v| v["error"]["message"].as_str().map(str::to_owned))
                .unwrap_or_else(|| String::from_utf8_lossy(&bytes).into_owned());
            anyhow::bail!("{method} {path}: {status}: {message}");
        }
        Ok((status, bytes))
    }

    /// Opens a long-lived GET (the event stream), sending `Last-Event-ID`
    /// when resuming; a non-2xx answer is an error with the API's message.
    pub async fn open_stream(
        &self,
        path: &str,
        last_event_id: Option<u64>,
    ) -> anyhow::Result<hyper::body::Incoming> {
        let url = format!("{}{path}", self.base);
        let mut request = Request::builder()
            .uri(&url)
            .header(header::AUTHORIZATION, format!("Bearer {}", self.token))
            .header(header::ACCEPT, "text/event-stream");
        if let Some(id) = last_event_id {
            request = request.header("last-event-id", id.to_string());
        }
        let response = self
            .http
            .request(request.body(Full::new(Bytes::new()))?)
            .await
            .map_err(|e| anyhow::anyhow!("cannot reach dormant at {}: {e}", self.base))?;
        let status = response.status();
        if !status.is_success() {
            let bytes = response.into_body().collect().await?.to_bytes();
            let message = serde_json::from_slice::<serde_json::Value>(&bytes)
                .ok()
                .and_then(|v| v["error"]["message"].as_str().map(str::to_owned))
                .unwrap_or_else(|| String::from_utf8_lossy(&bytes).into_owned());
            anyhow::bail!("GET {path}: {status}: {message}");
        }
        Ok(response.into_body())
    }

    pub async fn json<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> anyhow::Result<T> {
        let (_, bytes) = self.send(method, path, body).await?;
        serde_json::from_slice(&bytes)
            .map_err(|e| anyhow::anyhow!("dormant answered {path} with unexpected JSON: {e}"))
    }
}
