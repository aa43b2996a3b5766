//! The whole proxy on loopback with a counting waker and a table the test
//! fills: what wakes a container, what counts as activity, the rate limits
//! and private containers' gate, as a client sees them. No Docker, no
//! lifecycle.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use http::{header, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;

use super::forwarded::{Cidr, TrustedProxies};
use super::no_wake::AgentList;
use super::rate_limit::Rate;
use super::wake_filter::{WakeFilter, WakeFilterConfig};
use super::waker::{WakeError, WakeErrorKind, Waker};
use super::{ConnectionLimit, EdgeLimits, HoldBudget, Proxy, ProxyParts};
use crate::access::AccessControl;
use crate::domain::{Access, ContainerState, WakeStrategy};
use crate::lifecycle::table::{ContainerTable, Route, RouteConfig, RouteStatus};
use crate::metrics::Metrics;

const GOOGLEBOT: &str = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)";
const FIREFOX: &str = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0";

/// Counts wakes asked for; every wake fails at once with "no room", so a
/// woken container never answers and the test sees each attempt.
#[derive(Default)]
struct CountingWaker {
    wakes: AtomicUsize,
}

#[async_trait]
impl Waker for CountingWaker {
    async fn ready_upstream(&self, _route: &Arc<Route>) -> Result<SocketAddr, WakeError> {
        self.wakes.fetch_add(1, Ordering::SeqCst);
        Err(WakeError {
            kind: WakeErrorKind::NoRoom,
            reason: "no room (test)".into(),
            retry_after: Some(Duration::from_secs(1)),
        })
    }

    fn begin_wake(&self, _route: &Arc<Route>) {
        self.wakes.fetch_add(1, Ordering::SeqCst);
    }
}

/// The defaults of `dormant serve`, which a test then changes.
fn filter_config() -> WakeFilterConfig {
    WakeFilterConfig {
        no_wake_agents: "default".parse().unwrap(),
        activity_ignores_agents: true,
        wake_rate: Rate::per_minute(20),
        wake_burst: 10,
        unknown_host_rate: Rate::per_minute(60),
        unknown_host_burst: 20,
        max_wake_rate: Rate::per_second(10),
        trusted_proxies: TrustedProxies::default(),
    }
}

struct TestProxy {
    addr: SocketAddr,
    waker: Arc<CountingWaker>,
    table: Arc<ContainerTable>,
    metrics: Arc<Metrics>,
    access: Arc<AccessControl>,
    client: Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>,
}

impl TestProxy {
    async fn start(filter: WakeFilterConfig) -> Self {
        let waker = Arc::new(CountingWaker::default());
        let table = Arc::new(ContainerTable::new());
        let metrics = Arc::new(Metrics::new());
        let trusted_proxies = filter.trusted_proxies.clone();
        let access = Arc::new(AccessControl::for_test().await);
        let parts = ProxyParts {
            routes: table.clone(),
            waker: waker.clone(),
            base_domain: "localhost".into(),
            read_ahead_limit: 1 << 16,
            metrics: metrics.clone(),
            limits: EdgeLimits {
                header_timeout: Duration::from_secs(10),
                idle_connection_timeout: Duration::from_secs(10),
                max_request_headers: 100,
                max_request_head: 64 << 10,
                upstream_timeout: Duration::from_secs(10),
                trusted_proxies,
            },
            connections: ConnectionLimit::new(100, metrics.open_connections.clone()),
            holds: HoldBudget::new(100, 1 << 20),
            wake_filter: Arc::new(WakeFilter::new(filter, &metrics)),
            access: access.clone(),
            offload: None,
        };
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let (inbox, handed) = super::spread::inbox();
        tokio::spawn(super::spread::spread(
            listener,
            vec![inbox],
            parts.connections.clone(),
            metrics.refused_connections.clone(),
            std::future::pending(),
        ));
        let proxy = Arc::new(Proxy::new(parts));
        tokio::spawn(proxy.run(handed, std::future::pending(), Duration::ZERO));
        Self {
            addr,
            waker,
            table,
            metrics,
            access,
            client: Client::builder(TokioExecutor::new()).build_http(),
        }
    }

    fn add(&self, name: &str, status: RouteStatus) -> Arc<Route> {
        self.table.insert_for_test(name, route_config(), status)
    }

    /// A private container `name` in `status`.
    fn private(&self, name: &str, status: RouteStatus) -> Arc<Route> {
        let mut record = crate::domain::sample_record(name, 0);
        record.spec.access = Access::Private;
        self.table
            .insert_record_for_test(record, route_config(), status)
    }

    fn asleep(&self, name: &str) -> Arc<Route> {
        self.add(name, RouteStatus::not_serving(ContainerState::Asleep, None))
    }

    fn wakes(&self) -> usize {
        self.waker.wakes.load(Ordering::SeqCst)
    }

    /// `GET path` on `host` with these extra headers; status, headers, body.
    async fn get(
        &self,
        host: &str,
        path: &str,
        headers: &[(&str, &str)],
    ) -> (StatusCode, http::HeaderMap, String) {
        let mut request = Request::builder()
            .uri(format!("http://{}{path}", self.addr))
            .header(header::HOST, host);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = self
            .client
            .request(request.body(Full::new(Bytes::new())).unwrap())
            .await
            .unwrap();
        let (parts, body) = response.into_parts();
        let body = body.collect().await.unwrap().to_bytes();
        (
            parts.status,
            parts.headers,
            String::from_utf8_lossy(&body).into_owned(),
        )
    }

    fn metric(&self, line: &str) -> bool {
        self.metrics.render(&[]).lines().any(|l| l == line)
    }
}

fn route_config() -> RouteConfig {
    RouteConfig {
        idle_timeout: Duration::from_secs(60),
        wake: WakeStrategy::Hold,
        archive_after: Duration::from_secs(3600),
        memory_bytes: 1 << 20,
    }
}

/// An upstream that answers every request with its `Cookie` and
/// `Authorization` headers, one per line.
async fn header_echo_upstream() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let service =
                    hyper::service::service_fn(|req: Request<hyper::body::Incoming>| async move {
                        let seen = |name| {
                            req.headers()
                                .get_all(name)
                                .iter()
                                .map(|v| v.to_str().unwrap_or("?"))
                                .collect::<Vec<_>>()
                                .join(" | ")
                        };
                        let body = format!(
                            "cookie: {}\nauthorization: {}\n",
                            seen(header::COOKIE),
                            seen(header::AUTHORIZATION)
                        );
                        Ok::<_, std::convert::Infallible>(Response::new(Full::new(Bytes::from(
                            body,
                        ))))
                    });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

/// An upstream that answers every request with 200 `hello`.
async fn hello_upstream() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let service = hyper::service::service_fn(|_req| async {
                    Ok::<_, std::convert::Infallible>(Response::new(Full::new(Bytes::from_static(
                        b"hello",
                    ))))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

#[tokio::test]
async fn bots_robots_and_favicons_do_not_wake_a_sleeping_container() {
    let proxy = TestProxy::start(filter_config()).await;
    let route = proxy.asleep("sleepy");
    let host = "sleepy.localhost";

    let (status, headers, body) = proxy.get(host, "/", &[("user-agent", GOOGLEBOT)]).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(headers[header::RETRY_AFTER], "600");
    assert!(body.contains("asleep"), "{body}");
    let (status, _, body) = proxy
        .get(host, "/robots.txt", &[("user-agent", FIREFOX)])
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, "User-agent: *\nDisallow: /\n");
    let (status, _, _) = proxy
        .get(host, "/favicon.ico", &[("user-agent", FIREFOX)])
        .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(proxy.wakes(), 0, "a bot, robots.txt or favicon woke it");
    assert_eq!(route.last_active_ms(), 0, "they counted as activity");
    assert!(proxy.metric("dormant_proxy_no_wake_answers_total{reason=\"agent\"} 1"));
    assert!(proxy.metric("dormant_proxy_no_wake_answers_total{reason=\"robots\"} 1"));
    assert!(proxy.metric("dormant_proxy_no_wake_answers_total{reason=\"favicon\"} 1"));

    // A person's request wakes it (here the waker refuses: no room).
    let (status, _, _) = proxy.get(host, "/", &[("user-agent", FIREFOX)]).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(proxy.wakes(), 1);
    assert!(route.last_active_ms() > 0);
}

#[tokio::test]
async fn a_napping_container_is_served_like_a_running_one_after_its_unpause() {
    let mut limits = filter_config();
    limits.wake_rate = Rate::per_minute(1);
    limits.wake_burst = 1;
    let proxy = TestProxy::start(limits).await;
    let mut record = crate::domain::sample_record("napper", 0);
    record.spec.wake = Some(WakeStrategy::Page);
    let config = RouteConfig {
        wake: WakeStrategy::Page,
        ..route_config()
    };
    let upstream = hello_upstream().await;
    proxy
        .table
        .insert_record_for_test(record, config, RouteStatus::napping(upstream));
    let host = "napper.localhost";
    // A browser gets no "waking up" page, a bot no bot answer, and no wake
    // rate limit applies: each asks for the upstream (the unpause), which
    // this test's waker refuses.
    for agent in [FIREFOX, GOOGLEBOT, FIREFOX] {
        let headers = [("user-agent", agent), ("accept", "text/html")];
        let (status, _, body) = proxy.get(host, "/", &headers).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
        assert!(body.contains("no room (test)"), "{body}");
    }
    assert_eq!(proxy.wakes(), 3, "every request asked for the unpause");
}

#[tokio::test]
async fn while_running_bots_are_served_but_do_not_count_as_activity() {
    let proxy = TestProxy::start(filter_config()).await;
    let route = proxy.add("awake", RouteStatus::running(hello_upstream().await));
    let host = "awake.localhost";

    for path in ["/", "/robots.txt", "/favicon.ico"] {
        let (status, _, body) = proxy.get(host, path, &[("user-agent", GOOGLEBOT)]).await;
        assert_eq!((status, body.as_str()), (StatusCode::OK, "hello"), "{path}");
    }
    assert_eq!(route.last_active_ms(), 0, "a bot kept it awake");
    let (status, _, _) = proxy.get(host, "/", &[("user-agent", FIREFOX)]).await;
    assert_eq!(status, StatusCode::OK);
    assert!(route.last_active_ms() > 0, "a person's request is activity");
    assert_eq!(proxy.wakes(), 0);
}

#[tokio::test]
async fn bots_count_as_activity_when_told_to() {
    let proxy = TestProxy::start(WakeFilterConfig {
        activity_ignores_agents: false,
        ..filter_config()
    })
    .await;
    let route = proxy.add("awake", RouteStatus::running(hello_upstream().await));
    let (status, _, _) = proxy
        .get("awake.localhost", "/", &[("user-agent", GOOGLEBOT)])
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(route.last_active_ms() > 0);
    // It still never wakes a sleeping one.
    proxy.asleep("sleepy");
    let (status, _, _) = proxy
        .get("sleepy.localhost", "/", &[("user-agent", GOOGLEBOT)])
        .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(proxy.wakes(), 0);
}

#[tokio::test]
async fn an_empty_agent_list_lets_bots_wake() {
    let proxy = TestProxy::start(WakeFilterConfig {
        no_wake_agents: "".parse::<AgentList>().unwrap(),
        ..filter_config()
    })
    .await;
    proxy.asleep("sleepy");
    proxy
        .get("sleepy.localhost", "/", &[("user-agent", GOOGLEBOT)])
        .await;
    assert_eq!(proxy.wakes(), 1);
}

#[tokio::test]
async fn a_client_over_its_wake_rate_gets_429_and_wakes_nothing() {
    let proxy = TestProxy::start(WakeFilterConfig {
        wake_rate: Rate::per_minute(2),
        wake_burst: 2,
        ..filter_config()
    })
    .await;
    for name in ["a", "b", "c"] {
        proxy.asleep(name);
    }
    let awake = proxy.add("up", RouteStatus::running(hello_upstream().await));
    for host in ["a.localhost", "b.localhost"] {
        let (status, _, _) = proxy.get(host, "/", &[]).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{host} (no room)");
    }
    assert_eq!(proxy.wakes(), 2);
    let (status, headers, body) = proxy.get("c.localhost", "/", &[]).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert_eq!(headers[header::RETRY_AFTER], "30");
    assert_eq!(headers["x-dormant-error"], "1");
    assert!(body.contains("too many requests to wake"), "{body}");
    assert_eq!(proxy.wakes(), 2, "a refused request woke a container");
    assert!(proxy.metric("dormant_proxy_rate_limited_total{limit=\"wake\"} 1"));
    // Running containers are never limited.
    for _ in 0..20 {
        let (status, _, _) = proxy.get("up.localhost", "/", &[]).await;
        assert_eq!(status, StatusCode::OK);
    }
    assert!(awake.last_active_ms() > 0);
}

#[tokio::test]
async fn behind_a_trusted_proxy_each_client_has_its_own_bucket() {
    let proxy = TestProxy::start(WakeFilterConfig {
        wake_rate: Rate::per_minute(1),
        wake_burst: 1,
        trusted_proxies: TrustedProxies::new(vec!["127.0.0.1".parse::<Cidr>().unwrap()]),
        ..filter_config()
    })
    .await;
    proxy.asleep("a");
    let from = |client: &'static str| [("x-forwarded-for", client)];
    let (first, _, _) = proxy.get("a.localhost", "/", &from("198.51.100.1")).await;
    let (again, _, _) = proxy.get("a.localhost", "/", &from("198.51.100.1")).await;
    let (other, _, _) = proxy.get("a.localhost", "/", &from("198.51.100.2")).await;
    assert_eq!(first, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(again, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(other, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(proxy.wakes(), 2);
}

#[tokio::test]
async fn the_host_caps_wakes_started_per_second() {
    let proxy = TestProxy::start(WakeFilterConfig {
        wake_rate: Rate::OFF,
        max_wake_rate: Rate::per_minute(2),
        ..filter_config()
    })
    .await;
    for name in ["a", "b", "c"] {
        proxy.asleep(name);
    }
    proxy.get("a.localhost", "/", &[]).await;
    proxy.get("b.localhost", "/", &[]).await;
    let (status, headers, body) = proxy.get("c.localhost", "/", &[]).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert!(body.contains("as many containers as it may"), "{body}");
    assert_eq!(headers[header::RETRY_AFTER], "30");
    assert_eq!(proxy.wakes(), 2);
    assert!(proxy.metric("dormant_proxy_rate_limited_total{limit=\"max_wake_rate\"} 1"));
}

#[tokio::test]
async fn unknown_hostnames_are_rate_limited_per_client() {
    let proxy = TestProxy::start(WakeFilterConfig {
        unknown_host_rate: Rate::per_minute(60),
        unknown_host_burst: 3,
        ..filter_config()
    })
    .await;
    proxy.add("known", RouteStatus::running(hello_upstream().await));
    for host in ["nope1.localhost", "nope2.localhost", "example.com"] {
        let (status, _, _) = proxy.get(host, "/", &[]).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{host}");
    }
    let (status, headers, body) = proxy.get("nope3.localhost", "/", &[]).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert_eq!(headers[header::RETRY_AFTER], "1");
    assert!(proxy.metric("dormant_proxy_rate_limited_total{limit=\"unknown_host\"} 1"));
    // A known container still answers.
    let (status, _, _) = proxy.get("known.localhost", "/", &[]).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn a_private_container_refuses_strangers_before_any_wake_or_activity() {
    let proxy = TestProxy::start(filter_config()).await;
    let route = proxy.private(
        "closed",
        RouteStatus::not_serving(ContainerState::Asleep, None),
    );
    let host = "closed.localhost";
    let before = route.last_active_ms();
    for headers in [
        &[("user-agent", FIREFOX)][..],
        &[
            ("accept", "text/html"),
            ("cookie", "dormant_session=forged"),
        ][..],
        &[("authorization", "Bearer dmc_0000")][..],
    ] {
        let (status, response, body) = proxy.get(host, "/", headers).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{headers:?}: {body}");
        assert_eq!(
            response[header::WWW_AUTHENTICATE],
            "Bearer realm=\"dormant\""
        );
    }
    let (_, _, page) = proxy.get(host, "/", &[("accept", "text/html")]).await;
    assert!(
        page.contains("<html") && page.contains("new login link"),
        "{page}"
    );
    assert_eq!(proxy.wakes(), 0, "a refused request wakes nothing");
    assert_eq!(route.last_active_ms(), before, "nor counts as activity");
    assert_eq!(route.in_use_count(), 0);

    // With a valid session the same request goes on to the wake.
    let cookie = format!(
        "dormant_session={}",
        proxy.access.sessions.sign("closed", 0, u64::MAX / 2)
    );
    let (status, _, _) = proxy.get(host, "/", &[("cookie", &cookie)]).await;
    assert_eq!(
        status,
        StatusCode::SERVICE_UNAVAILABLE,
        "the test waker has no room"
    );
    assert_eq!(proxy.wakes(), 1);
    assert!(route.last_active_ms() > before);
}

#[tokio::test]
async fn dormants_credentials_never_reach_a_private_container_and_public_ones_are_untouched() {
    let proxy = TestProxy::start(filter_config()).await;
    let upstream = header_echo_upstream().await;
    proxy.private("closed", RouteStatus::running(upstream));
    proxy.add("open", RouteStatus::running(upstream));
    let session = proxy.access.sessions.sign("closed", 0, u64::MAX / 2);
    let cookies = format!("a=1; dormant_session={session}; b=2");
    let (status, _, seen) = proxy
        .get(
            "closed.localhost",
            "/",
            &[("cookie", &cookies), ("authorization", "Bearer app-own")],
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{seen}");
    assert_eq!(seen, "cookie: a=1; b=2\nauthorization: Bearer app-own\n");

    let token = proxy.access.tokens.issue("closed", 0).await.unwrap().token;
    let bearer = format!("Bearer {token}");
    let (status, _, seen) = proxy
        .get("closed.localhost", "/", &[("authorization", &bearer)])
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(seen, "cookie: \nauthorization: \n");

    let (status, _, seen) = proxy
        .get(
            "open.localhost",
            "/",
            &[("cookie", &cookies), ("authorization", &bearer)],
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        seen,
        format!("cookie: {cookies}\nauthorization: {bearer}\n"),
        "a public container's requests pass unchanged"
    );
}
