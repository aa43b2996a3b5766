//! Forwarding one request to its container: header rewriting, the trip over
//! the thread's pooled connections, and tunnelling of upgraded (WebSocket)
//! connections.

use std::net::SocketAddr;
use std::time::Duration;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::uri::PathAndQuery;
use http::{Request, Response, StatusCode, Uri};
use hyper_util::rt::TokioIo;

use super::body::{RequestBody, TrackedBody};
use super::error::{root_cause, ProxyError};
use super::forwarded::set_forwarded_headers;
use super::upstream_pool::UpstreamPool;
use crate::lifecycle::table::InUse;

const HOP_BY_HOP_COUNT: usize = 8;
/// Headers that describe one hop, never forwarded (RFC 9110 §7.6.1).
const HOP_BY_HOP: [HeaderName; HOP_BY_HOP_COUNT] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

/// Removes hop-by-hop headers, including those named by `Connection`.
fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // One pass over the names first: a hashed removal per hop-by-hop name
    // cost more than all the rest of the rewrite, and most heads carry none
    // of them or only `Connection`.
    let mut present = [false; HOP_BY_HOP_COUNT];
    for name in headers.keys() {
        if let Some(index) = HOP_BY_HOP.iter().position(|hop| hop == name) {
            present[index] = true;
        }
    }
    if present[0] {
        // `HOP_BY_HOP[0]` is `Connection`: the names it lists go too (the
        // usual `keep-alive`, `close` and `upgrade` name no other header).
        let named: Vec<HeaderName> = headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .filter(|token| {
                !["keep-alive", "close", "upgrade"]
                    .iter()
                    .any(|usual| token.eq_ignore_ascii_case(usual))
            })
            .filter_map(|name| HeaderName::from_bytes(name.as_bytes()).ok())
            .collect();
        for name in &named {
            headers.remove(name);
        }
    }
    for (name, present) in HOP_BY_HOP.iter().zip(present) {
        if present {
            headers.remove(name);
        }
    }
}

/// The protocol a client asked to switch to, if this is an upgrade request.
pub fn requested_upgrade(headers: &HeaderMap) -> Option<HeaderValue> {
    if !headers.contains_key(header::UPGRADE) {
        return None;
    }
    let connection_upgrade = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|token| token.trim().eq_ignore_ascii_case("upgrade"));
    connection_upgrade
        .then(|| headers.get(header::UPGRADE).cloned())
        .flatten()
}

/// Where a request goes and what it carries along.
pub struct Hop<'a> {
    /// The container's name, for errors and the log.
    pub name: &'a str,
    /// Its own address and port: the only place a request may reach.
    pub upstream: SocketAddr,
    /// The origin-form path and query (see `target::classify`).
    pub path: PathAndQuery,
    /// The client's address as an `X-Forwarded-For` entry.
    pub client_ip: &'a HeaderValue,
    /// Whether the client is a trusted proxy (`--trusted-proxies`).
    pub trusted: bool,
    /// Longest wait for the response head (`--upstream-timeout`).
    pub timeout: Duration,
}

/// Rewrites `req` for the upstream and forwards it; returns the upstream's
/// answer with hop-by-hop headers removed. Upgrades are tunnelled both ways.
/// `in_use` goes with the response body, or with the tunnel, so the
/// container counts as in use for as long as either is open.
pub async fn forward(
    pool: &UpstreamPool,
    hop: Hop<'_>,
    mut req: Request<RequestBody>,
    in_use: InUse,
) -> Result<Response<TrackedBody>, ProxyError> {
    let upgrade = requested_upgrade(req.headers());
    let client_upgrade = upgrade.as_ref().map(|_| hyper::upgrade::on(&mut req));

    let upstream = hop.upstream;
    // Origin form: the connection already goes to the container.
    *req.uri_mut() = Uri::from(hop.path);
    *req.version_mut() = http::Version::HTTP_11;

    let headers = req.headers_mut();
    if !headers.contains_key(header::HOST) {
        // HTTP/1.1 wants one; an HTTP/1.0 client may not have sent it.
        if let Ok(host) = HeaderValue::from_str(&upstream.to_string()) {
            headers.insert(header::HOST, host);
        }
    }
    strip_hop_by_hop(headers);
    set_forwarded_headers(headers, hop.client_ip, hop.trusted);
    if let Some(protocol) = &upgrade {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        headers.insert(header::UPGRADE, protocol.clone());
    }

    let name = hop.name;
    let reusable = upgrade.is_none();
    let (mut response, turn) =
        match tokio::time::timeout(hop.timeout, pool.send(upstream, req, reusable)).await {
            Ok(Ok(sent)) => sent,
            Ok(Err(e)) => {
                return Err(ProxyError::Upstream {
                    name: name.to_owned(),
                    upstream,
                    connect: e.is_connect(),
                    cause: root_cause(&e),
                })
            }
            Err(_) => {
                return Err(ProxyError::UpstreamTimeout {
                    name: name.to_owned(),
                    upstream,
                    after: hop.timeout,
                })
            }
        };

    if response.status() == StatusCode::SWITCHING_PROTOCOLS {
        if let Some(client_upgrade) = client_upgrade {
            let upstream_upgrade = hyper::upgrade::on(&mut response);
            let name = name.to_owned();
            tokio::spawn(async move {
                let _in_use = in_use;
                if let Err(e) = tunnel(client_upgrade, upstream_upgrade).await {
                    tracing::debug!(container = %name, error = %e, "upgraded connection ended with an error");
                }
            });
            // Keep Connection/Upgrade: the client needs them to switch too.
            return Ok(response.map(|body| TrackedBody::new(body, None)));
        }
    }
    strip_hop_by_hop(response.headers_mut());
    Ok(response.map(|body| TrackedBody::new(body, Some(in_use)).keeping(turn)))
}

async fn tunnel(
    client: hyper::upgrade::OnUpgrade,
    upstream: hyper::upgrade::OnUpgrade,
) -> std::io::Result<()> {
    let (client, upstream) = tokio::try_join!(client, upstream).map_err(std::io::Error::other)?;
    let mut client = TokioIo::new(client);
    let mut upstream = TokioIo::new(upstream);
    tokio::io::copy_bidirectional(&mut client, &mut upstream).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_headers_and_those_named_by_connection_are_removed() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, x-secret"),
        );
        headers.insert("x-secret", HeaderValue::from_static("1"));
        headers.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        headers.insert(
            header::TRANSFER_ENCODING,
            HeaderValue::from_static("chunked"),
        );
        headers.insert("x-kept", HeaderValue::from_static("1"));
        strip_hop_by_hop(&mut headers);
        assert_eq!(headers.len(), 1, "{headers:?}");
        assert!(headers.contains_key("x-kept"));
    }

    #[test]
    fn upgrade_needs_both_connection_and_upgrade_headers() {
        let mut headers = HeaderMap::new();
        headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        assert_eq!(requested_upgrade(&headers), None);
        headers.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, Upgrade"),
        );
        assert_eq!(
            requested_upgrade(&headers),
            Some(HeaderValue::from_static("websocket"))
        );
    }

    #[tokio::test]
    async fn an_upstream_that_never_answers_gets_504_without_its_address() {
        use super::super::budget::HoldBudget;
        use crate::domain::{ContainerState, WakeStrategy};
        use crate::lifecycle::table::{route_for_test, RouteConfig, RouteStatus};

        // Accepts, reads, never answers.
        let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let upstream = silent.local_addr().unwrap();
        let _keep = tokio::spawn(async move {
            let mut open = Vec::new();
            while let Ok((stream, _)) = silent.accept().await {
                open.push(stream);
            }
        });
        let config = RouteConfig {
            idle_timeout: Duration::from_secs(60),
            wake: WakeStrategy::Hold,
            archive_after: Duration::from_secs(60),
            memory_bytes: 1 << 20,
        };
        let route = route_for_test(
            "quiet",
            config,
            RouteStatus::not_serving(ContainerState::Running, None),
        );
        let ticket = HoldBudget::new(1, 0).try_hold(0).unwrap();
        let req = Request::builder()
            .uri("/slow")
            .body(RequestBody::resumed(bytes::Bytes::new(), ticket, None))
            .unwrap();
        let hop = Hop {
            name: "quiet",
            upstream,
            path: PathAndQuery::from_static("/slow"),
            client_ip: &HeaderValue::from_static("127.0.0.1"),
            trusted: false,
            timeout: Duration::from_millis(200),
        };
        let pool = UpstreamPool::new(Default::default());
        let error = forward(&pool, hop, req, route.in_use()).await.unwrap_err();
        assert_eq!(error.status(), StatusCode::GATEWAY_TIMEOUT, "{error:?}");
        assert!(!error.to_string().contains("127.0.0.1"), "{error}");
    }
}
