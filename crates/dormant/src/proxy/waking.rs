//! Serving a request whose container is not running, by wake strategy:
//! `hold` keeps the request until the container answers, `redirect` answers
//! 307 to the same URL once it does, `page` shows browsers a "waking up" page
//! at once and holds everyone else.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use http::{header, request::Parts, HeaderValue, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::{Body, Incoming};

use super::body::RequestBody;
use super::budget::HoldBudget;
use super::error::ProxyError;
use super::public_url::PublicOrigin;
use super::waker::Waker;
use crate::lifecycle::table::Route;

/// Waits for a ready upstream while reading the request body ahead, so a
/// client is not stalled by the wake: up to `read_ahead_limit` bytes, and
/// only with room in the shared hold budget, else the request is refused at
/// once. The rest of a larger body is streamed once the container answers.
pub async fn hold(
    waker: &dyn Waker,
    route: &Arc<Route>,
    body: Incoming,
    read_ahead_limit: usize,
    budget: &Arc<HoldBudget>,
) -> Result<(SocketAddr, RequestBody), ProxyError> {
    // Reserve what this body may take: all of a short one, the limit for a
    // long one or one of unknown length, nothing for an empty one.
    let reserve = body.size_hint().exact().map_or(read_ahead_limit, |len| {
        usize::try_from(len).map_or(read_ahead_limit, |len| len.min(read_ahead_limit))
    });
    let ticket = budget
        .try_hold(reserve)
        .map_err(|refused| ProxyError::HoldFull {
            name: route.name().to_owned(),
            refused,
        })?;
    let wake = waker.ready_upstream(route);
    tokio::pin!(wake);
    let mut body = Some(body);
    let mut read_ahead = BytesMut::new();
    let upstream = loop {
        // The frame that crosses `reserve` is kept whole: it is already in
        // memory (hyper's read buffer, at most `max_buf_size`).
        let reading = body.is_some() && read_ahead.len() < ticket.bytes();
        tokio::select! {
            outcome = &mut wake => break outcome,
            frame = next_frame(&mut body), if reading => match frame {
                Some(Ok(data)) => read_ahead.extend_from_slice(&data),
                // The whole body is here.
                None => body = None,
                Some(Err(e)) => {
                    return Err(ProxyError::ClientBody { name: route.name().to_owned(), cause: e.to_string() })
                }
            },
        }
    };
    let upstream = upstream.map_err(|error| ProxyError::Wake {
        name: route.name().to_owned(),
        error,
    })?;
    Ok((
        upstream,
        RequestBody::resumed(read_ahead.freeze(), ticket, body),
    ))
}

/// Waits for a ready upstream, holding nothing of the request but counting
/// against the hold budget (the `redirect` strategy answers once it is up).
pub async fn wait_for_upstream(
    waker: &dyn Waker,
    route: &Arc<Route>,
    budget: &Arc<HoldBudget>,
) -> Result<SocketAddr, ProxyError> {
    let _ticket = budget.try_hold(0).map_err(|refused| ProxyError::HoldFull {
        name: route.name().to_owned(),
        refused,
    })?;
    waker
        .ready_upstream(route)
        .await
        .map_err(|error| ProxyError::Wake {
            name: route.name().to_owned(),
            error,
        })
}

/// The next data of `body`; `None` at its end. Trailers are dropped: no
/// container app we serve relies on request trailers.
async fn next_frame(body: &mut Option<Incoming>) -> Option<Result<Bytes, hyper::Error>> {
    let incoming = body.as_mut()?;
    loop {
        match incoming.frame().await? {
            Ok(frame) => {
                if let Ok(data) = frame.into_data() {
                    return Some(Ok(data));
                }
            }
            Err(e) => return Some(Err(e)),
        }
    }
}

/// 307 to the very URL asked for: the client repeats the request, method and
/// body included, now that the container answers. Behind a trusted gateway
/// (`trusted`) that is the URL the client used at the gateway.
pub fn redirect_to_same_url(parts: &Parts, trusted: bool) -> Response<Full<Bytes>> {
    let path = match parts.uri.path_and_query() {
        Some(pq) if pq.as_str().starts_with('/') => pq.as_str(),
        _ => "/",
    };
    redirect_to(parts, path, trusted)
}

/// 307 to `path` (a path and query) on the host the client asked for.
pub fn redirect_to(parts: &Parts, path: &str, trusted: bool) -> Response<Full<Bytes>> {
    let location = PublicOrigin::of(&parts.headers, trusted).url(path);
    let mut response = Response::new(Full::new(Bytes::new()));
    *response.status_mut() = StatusCode::TEMPORARY_REDIRECT;
    if let Ok(location) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// Whether the client is a browser asking for a page.
pub fn wants_html(parts: &Parts) -> bool {
    accepts_html(&parts.headers)
}

/// Whether a client sending `headers` is a browser asking for a page.
pub fn accepts_html(headers: &http::HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|accept| accept.contains("text/html"))
}

/// The "waking up" page: 503 with `Retry-After`, refreshing itself.
pub fn waking_page(name: &str) -> Response<Full<Bytes>> {
    let html = format!(
        "<!doctype html>\n<html><head><meta charset=\"utf-8\"><meta http-equiv=\"refresh\" content=\"1\">\
         <title>Waking up {name}…</title>\
         <style>body{{font-family:system-ui,sans-serif;display:grid;place-items:center;height:90vh;color:#333}}</style>\
         </head><body><div><h1>Waking up <code>{name}</code>…</h1>\
         <p>It was asleep to save resources. This page reloads by itself in a moment.</p></div></body></html>\n"
    );
    let mut response = Response::new(Full::new(Bytes::from(html)));
    *response.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}
