//! The demo's router and its small handlers: hello, headers, echo, WebSocket, stream, download.
//! Files live in `files.rs`, the reachability probe in `connect.rs`.

use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use axum::Router;
use futures_util::stream;

use crate::{connect, files, json};

/// Chunk size of generated download bodies.
const DOWNLOAD_CHUNK: u64 = 64 * 1024;

/// What every handler may need to know about this process.
#[derive(Clone)]
pub struct AppState {
    pub hostname: String,
    pub started_ms: u128,
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/", get(hello))
        .route("/headers", get(headers))
        .route("/echo", any(echo))
        .route("/ws", get(ws))
        .route("/stream", get(stream_lines))
        .route("/download", get(download))
        .route("/connect", get(connect::connect))
        .route(
            "/files/{*path}",
            get(files::get)
                .put(files::put)
                .delete(files::delete)
                .post(files::post),
        )
        .with_state(state)
}

/// A plain-text response with the given status.
pub fn text(status: StatusCode, body: impl Into<String>) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        body.into(),
    )
        .into_response()
}

/// A JSON response (200) from already-encoded JSON text.
pub fn json_response(body: String) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

async fn hello(State(st): State<AppState>) -> Response {
    text(
        StatusCode::OK,
        format!("hello from {} (started {})\n", st.hostname, st.started_ms),
    )
}

/// `GET /headers`: the request headers as a JSON object (repeated names joined with ", ").
async fn headers(headers: HeaderMap) -> Response {
    let mut map: BTreeMap<&str, String> = BTreeMap::new();
    for (name, value) in &headers {
        let value = String::from_utf8_lossy(value.as_bytes());
        map.entry(name.as_str())
            .and_modify(|v| {
                v.push_str(", ");
                v.push_str(&value);
            })
            .or_insert_with(|| value.into_owned());
    }
    json_response(json::object(
        map.into_iter().map(|(k, v)| (k, json::string(&v))),
    ))
}

/// `ANY /echo`: streams the request body back, with `x-request-method`.
async fn echo(req: Request) -> Response {
    let method =
        HeaderValue::from_str(req.method().as_str()).expect("method is a valid header value");
    let content_type = req.headers().get(header::CONTENT_TYPE).cloned();
    let mut resp = Response::new(Body::from_stream(req.into_body().into_data_stream()));
    resp.headers_mut().insert("x-request-method", method);
    if let Some(ct) = content_type {
        resp.headers_mut().insert(header::CONTENT_TYPE, ct);
    }
    resp
}

/// `GET /ws`: WebSocket echo of text and binary messages (axum answers pings and closes).
async fn ws(upgrade: WebSocketUpgrade) -> Response {
    upgrade.on_upgrade(|mut socket: WebSocket| async move {
        while let Some(Ok(msg)) = socket.recv().await {
            let reply = match msg {
                Message::Text(_) | Message::Binary(_) => msg,
                // Keep reading: the next recv() flushes the close reply axum queued and ends.
                Message::Close(_) | Message::Ping(_) | Message::Pong(_) => continue,
            };
            if socket.send(reply).await.is_err() {
                break;
            }
        }
    })
}

/// Reads `key` from the query as a u64, or a 400 message.
fn query_u64(q: &HashMap<String, String>, key: &str, default: u64) -> Result<u64, String> {
    match q.get(key) {
        None => Ok(default),
        Some(v) => v.parse().map_err(|_| format!("invalid {key}={v:?}\n")),
    }
}

/// `GET /stream?seconds=N` (default 5): `tick 0` at once, one more line each second, and
/// `done` after N seconds, so the response lasts N seconds.
async fn stream_lines(Query(q): Query<HashMap<String, String>>) -> Response {
    let seconds = match query_u64(&q, "seconds", 5) {
        Ok(n) => n,
        Err(msg) => return text(StatusCode::BAD_REQUEST, msg),
    };
    let lines = stream::unfold(0u64, move |i| async move {
        if i > seconds {
            return None;
        }
        if i > 0 {
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        let line = if i == seconds {
            "done\n".to_string()
        } else {
            format!("tick {i}\n")
        };
        Some((Ok::<_, Infallible>(Bytes::from(line)), i + 1))
    });
    let mut resp = Response::new(Body::from_stream(lines));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

/// `GET /download?bytes=N` (default 1 MiB): N bytes where byte i is `i % 251`, generated in chunks.
async fn download(Query(q): Query<HashMap<String, String>>) -> Response {
    let total = match query_u64(&q, "bytes", 1 << 20) {
        Ok(n) => n,
        Err(msg) => return text(StatusCode::BAD_REQUEST, msg),
    };
    let chunks = stream::unfold(0u64, move |offset| async move {
        if offset >= total {
            return None;
        }
        let len = DOWNLOAD_CHUNK.min(total - offset);
        let chunk: Vec<u8> = (offset..offset + len).map(|i| (i % 251) as u8).collect();
        Some((Ok::<_, Infallible>(Bytes::from(chunk)), offset + len))
    });
    let mut resp = Response::new(Body::from_stream(chunks));
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(total));
    resp
}
