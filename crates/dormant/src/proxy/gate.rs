//! The access gate: whether a request may reach a private container.
//!
//! Called once per request, after the route lookup and before anything
//! counts as activity or wakes the container. A public container costs one
//! atomic load and a compare. A private one is reached with a container
//! access token (`Authorization: Bearer dmc_...`), an API token of its
//! tenant or the admin's, or a valid session cookie for it; its reserved
//! path `/.dormant/login?code=...` turns a login link into that cookie.
//! Anything else is refused with 401, and the container is neither woken
//! nor touched. dormant's cookie, and an `Authorization` header that
//! carried one of dormant's tokens, never reach the app.

use std::time::{Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::request::Parts;
use http::uri::PathAndQuery;
use http::{Method, Response, StatusCode};
use http_body_util::Full;

use super::error::{NotAdmitted, ProxyError};
use super::public_url::forwarded_prefix;
use crate::access::login::{check_redirect_path, code_from_query, LOGIN_PATH};
use crate::access::session::{set_cookie, strip_session_cookie};
use crate::access::tokens::TOKEN_PREFIX;
use crate::access::AccessControl;
// A tenant API token is dormant's too: never forwarded, even when unknown.
use crate::auth::TENANT_TOKEN_PREFIX;
use crate::domain::Access;
use crate::lifecycle::table::Route;
use crate::tenant::ADMIN;

/// `Ok(None)`: forward the request (dormant's credentials taken out of it).
/// `Ok(Some(answer))`: dormant answers itself (a login link's redirect).
/// `Err`: refused (401).
#[inline]
pub fn admit(
    access: &AccessControl,
    route: &Route,
    parts: &mut Parts,
    path: &PathAndQuery,
    trusted: bool,
) -> Result<Option<Response<Full<Bytes>>>, ProxyError> {
    if route.access() == Access::Public {
        return Ok(None);
    }
    admit_private(access, route, parts, path, trusted)
}

#[inline(never)]
fn admit_private(
    access: &AccessControl,
    route: &Route,
    parts: &mut Parts,
    path: &PathAndQuery,
    trusted: bool,
) -> Result<Option<Response<Full<Bytes>>>, ProxyError> {
    if path.path() == LOGIN_PATH {
        return sign_in(access, route, parts, path, trusted).map(Some);
    }
    let (name, created_at) = (route.name(), route.created_at());
    let mut admitted = false;
    if let Some(token) = bearer_token(&parts.headers) {
        let (ours, opens) = if token.starts_with(TOKEN_PREFIX) {
            (true, access.tokens.admits(token, name, created_at))
        } else if let Some(tenant) = (access.api_tokens)(token) {
            (true, tenant == ADMIN || route.owned_by(&tenant))
        } else {
            // Not dormant's: the app's own credentials pass untouched.
            (token.starts_with(TENANT_TOKEN_PREFIX), false)
        };
        if ours {
            parts.headers.remove(header::AUTHORIZATION);
        }
        admitted = opens;
    }
    admitted = admitted
        || access
            .sessions
            .any_valid(&parts.headers, name, created_at, unix_now());
    strip_session_cookie(&mut parts.headers);
    if admitted {
        Ok(None)
    } else {
        Err(ProxyError::Unauthorized {
            name: name.to_owned(),
            why: NotAdmitted::NotSignedIn,
        })
    }
}

/// Redeems a login link: sets the session cookie and sends the browser on
/// (303) to the path the link was made for. Nothing is woken here.
fn sign_in(
    access: &AccessControl,
    route: &Route,
    parts: &Parts,
    path: &PathAndQuery,
    trusted: bool,
) -> Result<Response<Full<Bytes>>, ProxyError> {
    let refused = || ProxyError::Unauthorized {
        name: route.name().to_owned(),
        why: NotAdmitted::LinkUnusable,
    };
    // Only a page load uses the code up: HEAD and the like must not.
    if parts.method != Method::GET {
        return Err(refused());
    }
    let code = code_from_query(path.query()).ok_or_else(refused)?;
    let target = access
        .logins
        .redeem(code, route.name(), route.created_at(), Instant::now())
        .ok_or_else(refused)?;
    let target = if check_redirect_path(&target).is_ok() {
        target
    } else {
        "/".to_owned()
    };
    let ttl = access.session_ttl.as_secs();
    let value = access
        .sessions
        .sign(route.name(), route.created_at(), unix_now() + ttl);
    let secure = trusted && forwarded_https(&parts.headers);
    // A path-absolute reference keeps the scheme, host and port the browser
    // used; behind a gateway that strips a prefix, the prefix goes first.
    let prefix = if trusted {
        forwarded_prefix(&parts.headers).unwrap_or_default()
    } else {
        ""
    };
    let target = format!("{prefix}{target}");
    let mut response = Response::new(Full::new(Bytes::new()));
    *response.status_mut() = StatusCode::SEE_OTHER;
    let headers = response.headers_mut();
    headers.insert(
        header::LOCATION,
        HeaderValue::from_str(&target).unwrap_or(HeaderValue::from_static("/")),
    );
    headers.insert(header::SET_COOKIE, set_cookie(&value, ttl, secure));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    Ok(response)
}

/// The token of `Authorization: Bearer <token>` (the scheme in any case).
fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|token| !token.is_empty())
}

/// Whether a trusted proxy says the client reached it over TLS.
fn forwarded_https(headers: &HeaderMap) -> bool {
    headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(',').next())
        .is_some_and(|proto| proto.trim().eq_ignore_ascii_case("https"))
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{sample_record, ContainerState, WakeStrategy};
    use crate::lifecycle::table::{route_for_test_from, RouteConfig, RouteStatus};
    use std::sync::Arc;
    use std::time::Duration;

    const CONFIG: RouteConfig = RouteConfig {
        idle_timeout: Duration::from_secs(60),
        wake: WakeStrategy::Hold,
        archive_after: Duration::from_secs(3600),
        memory_bytes: 1 << 20,
    };

    fn route(name: &str, access: Access, owner: &str) -> Arc<Route> {
        let mut record = sample_record(name, 7);
        record.spec.access = access;
        record.owner = owner.into();
        let asleep = RouteStatus::not_serving(ContainerState::Asleep, None);
        route_for_test_from(record, CONFIG, asleep)
    }

    fn request(path: &str, headers: &[(&str, &str)]) -> (Parts, PathAndQuery) {
        request_with(Method::GET, path, headers)
    }

    fn request_with(method: Method, path: &str, headers: &[(&str, &str)]) -> (Parts, PathAndQuery) {
        let mut builder = http::Request::builder().method(method).uri(path);
        for (k, v) in headers {
            builder = builder.header(*k, *v);
        }
        let (parts, ()) = builder.body(()).unwrap().into_parts();
        (parts, path.parse().unwrap())
    }

    fn refused(result: Result<Option<Response<Full<Bytes>>>, ProxyError>) -> NotAdmitted {
        match result {
            Err(ProxyError::Unauthorized { why, .. }) => why,
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn a_public_container_is_untouched() {
        let access = AccessControl::for_test().await;
        let route = route("pub", Access::Public, "admin");
        let headers = [
            ("authorization", "Bearer dmc_whatever"),
            ("cookie", "dormant_session=x; a=1"),
        ];
        let (mut parts, path) = request("/.dormant/login?code=zz", &headers);
        let before = parts.headers.clone();
        assert!(admit(&access, &route, &mut parts, &path, false)
            .unwrap()
            .is_none());
        assert_eq!(parts.headers, before);
    }

    #[tokio::test]
    async fn a_private_container_refuses_strangers() {
        let access = AccessControl::for_test().await;
        let route = route("a", Access::Private, "admin");
        for headers in [
            &[][..],
            &[("authorization", "Bearer dmc_0000")][..],
            &[("authorization", "Bearer app-own-token")][..],
            &[("authorization", "Basic YTpi")][..],
            &[("cookie", "dormant_session=a.7.99999999999.00")][..],
        ] {
            let (mut parts, path) = request("/", headers);
            assert_eq!(
                refused(admit(&access, &route, &mut parts, &path, false)),
                NotAdmitted::NotSignedIn,
                "{headers:?}"
            );
        }
    }

    #[tokio::test]
    async fn tokens_admit_and_are_taken_out() {
        let access = AccessControl::for_test().await;
        let a = route("a", Access::Private, "t1");
        let b = route("b", Access::Private, "t1");
        let token = access.tokens.issue("a", 7).await.unwrap().token;
        let bearer = format!("Bearer {token}");
        let (mut parts, path) = request("/x", &[("authorization", &bearer)]);
        assert!(admit(&access, &a, &mut parts, &path, false)
            .unwrap()
            .is_none());
        assert!(!parts.headers.contains_key(header::AUTHORIZATION));
        let (mut parts, path) = request("/x", &[("authorization", &bearer)]);
        refused(admit(&access, &b, &mut parts, &path, false));
        assert!(
            !parts.headers.contains_key(header::AUTHORIZATION),
            "a dormant token is never forwarded, even a wrong one"
        );

        let (mut parts, path) = request("/x", &[("authorization", "bearer admin-secret")]);
        assert!(admit(&access, &b, &mut parts, &path, false)
            .unwrap()
            .is_none());
        assert!(!parts.headers.contains_key(header::AUTHORIZATION));

        // The app's own Authorization passes through beside dormant's cookie.
        let cookie = format!(
            "dormant_session={}; app=1",
            access.sessions.sign("a", 7, unix_now() + 60)
        );
        let headers = [
            ("authorization", "Bearer app-own-token"),
            ("cookie", cookie.as_str()),
        ];
        let (mut parts, path) = request("/x", &headers);
        assert!(admit(&access, &a, &mut parts, &path, false)
            .unwrap()
            .is_none());
        assert_eq!(parts.headers[header::AUTHORIZATION], "Bearer app-own-token");
        assert_eq!(parts.headers[header::COOKIE], "app=1");
    }

    #[tokio::test]
    async fn a_tenants_api_token_opens_only_its_own_containers() {
        let mut access = AccessControl::for_test().await;
        access.api_tokens = Arc::new(|token: &str| (token == "dmt_t1").then(|| "t1".to_owned()));
        let mine = route("mine", Access::Private, "t1");
        let theirs = route("theirs", Access::Private, "t2");
        let (mut parts, path) = request("/", &[("authorization", "Bearer dmt_t1")]);
        assert!(admit(&access, &mine, &mut parts, &path, false)
            .unwrap()
            .is_none());
        let (mut parts, path) = request("/", &[("authorization", "Bearer dmt_t1")]);
        refused(admit(&access, &theirs, &mut parts, &path, false));
        let (mut parts, path) = request("/", &[("authorization", "Bearer dmt_unknown")]);
        refused(admit(&access, &mine, &mut parts, &path, false));
        assert!(!parts.headers.contains_key(header::AUTHORIZATION));
    }

    #[tokio::test]
    async fn a_login_link_sets_a_cookie_once_and_redirects_on_the_same_host() {
        let access = AccessControl::for_test().await;
        let a = route("a", Access::Private, "admin");
        let b = route("b", Access::Private, "admin");
        let code = access
            .logins
            .issue("a", 7, "/app?x=1", Duration::from_secs(60), Instant::now())
            .unwrap();
        let login = format!("/.dormant/login?code={code}");

        let (mut parts, path) = request(&login, &[]);
        assert_eq!(
            refused(admit(&access, &b, &mut parts, &path, false)),
            NotAdmitted::LinkUnusable,
            "another hostname"
        );
        let (mut parts, path) = request_with(Method::HEAD, &login, &[]);
        refused(admit(&access, &a, &mut parts, &path, false));

        let (mut parts, path) = request(&login, &[]);
        let answer = admit(&access, &a, &mut parts, &path, false)
            .unwrap()
            .unwrap();
        assert_eq!(answer.status(), StatusCode::SEE_OTHER);
        assert_eq!(answer.headers()[header::LOCATION], "/app?x=1");
        let set_cookie = answer.headers()[header::SET_COOKIE]
            .to_str()
            .unwrap()
            .to_owned();
        assert!(
            set_cookie.contains("HttpOnly; SameSite=Lax"),
            "{set_cookie}"
        );
        assert!(set_cookie.contains("Max-Age=3600"), "{set_cookie}");
        assert!(
            !set_cookie.contains("Secure"),
            "plain HTTP, no trusted proxy"
        );

        let (mut parts, path) = request(&login, &[]);
        assert_eq!(
            refused(admit(&access, &a, &mut parts, &path, false)),
            NotAdmitted::LinkUnusable,
            "used once"
        );

        let cookie = set_cookie.split(';').next().unwrap().to_owned();
        let (mut parts, path) = request("/app", &[("cookie", &cookie)]);
        assert!(admit(&access, &a, &mut parts, &path, false)
            .unwrap()
            .is_none());
        assert!(!parts.headers.contains_key(header::COOKIE), "stripped");
        let (mut parts, path) = request("/app", &[("cookie", &cookie)]);
        refused(admit(&access, &b, &mut parts, &path, false));
    }

    #[tokio::test]
    async fn a_trusted_gateway_s_prefix_leads_the_sign_in_redirect() {
        let access = AccessControl::for_test().await;
        let a = route("a", Access::Private, "admin");
        let prefixed = [("x-forwarded-prefix", "/apps/")];
        for (trusted, location) in [(true, "/apps/x?y=1"), (false, "/x?y=1")] {
            let code = access
                .logins
                .issue("a", 7, "/x?y=1", Duration::from_secs(60), Instant::now())
                .unwrap();
            let (mut parts, path) = request(&format!("/.dormant/login?code={code}"), &prefixed);
            let answer = admit(&access, &a, &mut parts, &path, trusted)
                .unwrap()
                .unwrap();
            assert_eq!(
                answer.headers()[header::LOCATION],
                location,
                "trusted: {trusted}"
            );
        }
    }

    #[tokio::test]
    async fn the_cookie_is_secure_when_a_trusted_proxy_says_https() {
        let access = AccessControl::for_test().await;
        let a = route("a", Access::Private, "admin");
        let https = [("x-forwarded-proto", "https")];
        for (trusted, secure) in [(true, true), (false, false)] {
            let code = access
                .logins
                .issue("a", 7, "/", Duration::from_secs(60), Instant::now())
                .unwrap();
            let (mut parts, path) = request(&format!("/.dormant/login?code={code}"), &https);
            let answer = admit(&access, &a, &mut parts, &path, trusted)
                .unwrap()
                .unwrap();
            let set_cookie = answer.headers()[header::SET_COOKIE].to_str().unwrap();
            assert_eq!(
                set_cookie.ends_with("; Secure"),
                secure,
                "trusted: {trusted}"
            );
        }
    }
}

#[cfg(test)]
mod cost {
    //! What the gate costs per request, in-process: the same request head
    //! through `admit` for a public route, a private one with a session
    //! cookie among the app's cookies, and one with an access token.

    use super::*;
    use crate::domain::{sample_record, ContainerState, WakeStrategy};
    use crate::lifecycle::table::{route_for_test_from, RouteConfig, RouteStatus};
    use std::time::Duration;

    fn route(access: Access) -> std::sync::Arc<Route> {
        let mut record = sample_record("bench", 7);
        record.spec.access = access;
        let config = RouteConfig {
            idle_timeout: Duration::from_secs(60),
            wake: WakeStrategy::Hold,
            archive_after: Duration::from_secs(3600),
            memory_bytes: 1 << 20,
        };
        route_for_test_from(
            record,
            config,
            RouteStatus::not_serving(ContainerState::Asleep, None),
        )
    }

    /// Nanoseconds per `admit` of `parts`: each round admits a fresh copy
    /// (the gate takes dormant's credentials out of it), so the copy alone
    /// is timed too and taken off. Hot caches, as in the proxy, where the
    /// head was just parsed.
    fn ns_per_admit(access: &AccessControl, route: &Route, parts: &Parts) -> f64 {
        use std::hint::black_box;
        const N: u32 = 200_000;
        let path: PathAndQuery = "/".parse().unwrap();
        let copy = || {
            let mut builder = http::Request::builder().uri("/");
            *builder.headers_mut().unwrap() = parts.headers.clone();
            builder.body(()).unwrap().into_parts().0
        };
        let started = std::time::Instant::now();
        for _ in 0..N {
            black_box(copy());
        }
        let copying = started.elapsed();
        let started = std::time::Instant::now();
        for _ in 0..N {
            let mut parts = copy();
            let answer = admit(access, route, black_box(&mut parts), &path, false);
            assert!(matches!(answer, Ok(None)));
            black_box(parts);
        }
        let both = started.elapsed();
        both.saturating_sub(copying).as_nanos() as f64 / f64::from(N)
    }

    #[tokio::test]
    #[ignore = "a measurement, not a check: run in release with --ignored --nocapture"]
    async fn what_the_gate_costs_per_request() {
        let access = AccessControl::for_test().await;
        let session = access.sessions.sign("bench", 7, u64::MAX / 2);
        let token = access.tokens.issue("bench", 7).await.unwrap().token;
        let request = |headers: &[(&str, &str)]| {
            let mut builder = http::Request::builder().uri("/");
            for (k, v) in headers {
                builder = builder.header(*k, *v);
            }
            builder.body(()).unwrap().into_parts().0
        };
        let cookies = format!("theme=dark; dormant_session={session}; lang=en");
        let bearer = format!("Bearer {token}");
        let browser = [
            (
                "user-agent",
                "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
            ),
            ("accept", "text/html,application/xhtml+xml"),
            ("cookie", cookies.as_str()),
        ];
        let (public, private) = (route(Access::Public), route(Access::Private));
        for round in 1..=3 {
            let open = ns_per_admit(&access, &public, &request(&browser));
            let cookie = ns_per_admit(&access, &private, &request(&browser));
            let token = ns_per_admit(&access, &private, &request(&[("authorization", &bearer)]));
            println!("round {round}: public {open:.1} ns, private with a session cookie {cookie:.1} ns, private with an access token {token:.1} ns per request");
        }
    }
}
