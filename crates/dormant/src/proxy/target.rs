//! Which requests the proxy forwards, and to which container: the request
//! target's form (RFC 9112 §3.2) checked against the Host header. A pure
//! function, so a fuzzer can call it.

use std::borrow::Cow;

use http::header::{GetAll, HeaderValue};
use http::uri::PathAndQuery;
use http::{Method, Uri};

use super::error::ProxyError;
use super::host::name_from_host;

/// What a request asks of the proxy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteTarget<'a> {
    /// Forward to container `name`, asking for `path` (origin-form: the
    /// path and query, never an address or a port). `path` shares the
    /// request's bytes: no copy.
    Container {
        name: Cow<'a, str>,
        path: PathAndQuery,
    },
    /// `OPTIONS *`: a question about the server itself, which dormant
    /// answers; no container sees it.
    ServerOptions,
}

/// Classifies a request by its method, target and `Host` header(s).
///
/// Forwarded: origin-form (`/path?query`), and absolute-form
/// (`http://host/path`) whose authority is the `Host`. Answered by dormant:
/// `OPTIONS *`. Refused: CONNECT (405), authority-form and any other
/// asterisk-form (400), a missing, repeated or unreadable `Host` (400) and
/// hosts outside `<name>.<base_domain>` (404).
pub fn classify<'a>(
    method: &Method,
    uri: &'a Uri,
    hosts: GetAll<'a, HeaderValue>,
    base_domain: &str,
) -> Result<RouteTarget<'a>, ProxyError> {
    classify_behind(method, uri, hosts, None, base_domain)
}

/// As [`classify`], but behind a trusted gateway: `forwarded_host` (its
/// `X-Forwarded-Host`, see [`super::public_url::forwarded_host`]), when
/// given, names the container instead of `Host`, and must be under the
/// base domain just the same (else 404). `Host` is still checked as the
/// request's own.
pub fn classify_behind<'a>(
    method: &Method,
    uri: &'a Uri,
    hosts: GetAll<'a, HeaderValue>,
    forwarded_host: Option<&'a str>,
    base_domain: &str,
) -> Result<RouteTarget<'a>, ProxyError> {
    if method == Method::CONNECT {
        return Err(ProxyError::MethodNotAllowed {
            method: method.clone(),
        });
    }
    if uri.scheme().is_none() && uri.authority().is_none() && uri.path() == "*" {
        return if method == Method::OPTIONS {
            Ok(RouteTarget::ServerOptions)
        } else {
            Err(ProxyError::BadTarget {
                reason: "the target `*` is only for OPTIONS",
            })
        };
    }
    let mut hosts = hosts.iter();
    let host = match (hosts.next(), hosts.next()) {
        (Some(host), None) => host.to_str().map_err(|_| ProxyError::BadTarget {
            reason: "the Host header is not readable text",
        })?,
        (None, _) => {
            return Err(ProxyError::MissingHost {
                base_domain: base_domain.to_owned(),
            })
        }
        (Some(_), Some(_)) => {
            return Err(ProxyError::BadTarget {
                reason: "more than one Host header",
            })
        }
    };
    if let Some(authority) = uri.authority() {
        // Absolute-form: it names the host, so it must agree with `Host`
        // (RFC 9112 §3.2.2); anything else could steer the request.
        let http = matches!(uri.scheme_str(), Some("http" | "https"));
        if !http || !authority.as_str().eq_ignore_ascii_case(host) {
            return Err(ProxyError::BadTarget {
                reason:
                    "an absolute target must be http(s) and name the same host as the Host header",
            });
        }
    } else if !uri.path().starts_with('/') {
        return Err(ProxyError::BadTarget {
            reason: "the target must be a path starting with `/`",
        });
    }
    let host = forwarded_host.unwrap_or(host);
    let name = name_from_host(host, base_domain).ok_or_else(|| ProxyError::NotOurHost {
        host: host.to_owned(),
        base_domain: base_domain.to_owned(),
    })?;
    let path = match uri.path_and_query() {
        Some(path) if path.as_str().starts_with('/') => path.clone(),
        // An absolute target with a query but no path (`http://a.localhost?x`)
        // asks for `/?x` (found by the request_target fuzzer).
        Some(path) if path.as_str().starts_with('?') => format!("/{}", path.as_str())
            .parse()
            .map_err(|_| ProxyError::BadTarget {
                reason: "the target's query is not a valid URL query",
            })?,
        // An absolute target without a path (`http://a.localhost`) asks for `/`.
        _ => PathAndQuery::from_static("/"),
    };
    Ok(RouteTarget::Container { name, path })
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::header::{HeaderMap, HOST};
    use http::StatusCode;

    fn classify_with(
        method: &str,
        target: &str,
        hosts: &[&str],
    ) -> Result<(String, String), StatusCode> {
        let method = Method::from_bytes(method.as_bytes()).unwrap();
        let uri: Uri = target.parse().unwrap();
        let mut headers = HeaderMap::new();
        for host in hosts {
            headers.append(HOST, HeaderValue::from_str(host).unwrap());
        }
        match classify(&method, &uri, headers.get_all(HOST), "localhost") {
            Ok(RouteTarget::Container { name, path }) => Ok((name.into_owned(), path.to_string())),
            Ok(RouteTarget::ServerOptions) => Ok(("*".into(), "*".into())),
            Err(e) => Err(e.status()),
        }
    }

    fn ok(name: &str, path: &str) -> Result<(String, String), StatusCode> {
        Ok((name.into(), path.into()))
    }

    #[test]
    fn origin_form_goes_to_the_host_s_container() {
        assert_eq!(
            classify_with("GET", "/a/b?c=d", &["alice.localhost:8080"]),
            ok("alice", "/a/b?c=d")
        );
        assert_eq!(
            classify_with("POST", "/", &["Bob.LOCALHOST"]),
            ok("bob", "/")
        );
    }

    #[test]
    fn absolute_form_must_name_the_host_header_s_host() {
        assert_eq!(
            classify_with("GET", "http://alice.localhost/x", &["alice.localhost"]),
            ok("alice", "/x")
        );
        assert_eq!(
            classify_with("GET", "http://alice.localhost", &["alice.localhost"]),
            ok("alice", "/")
        );
        assert_eq!(
            classify_with(
                "GET",
                "http://ALICE.localhost:8080/",
                &["alice.localhost:8080"]
            ),
            ok("alice", "/")
        );
        for (target, host) in [
            ("http://bob.localhost/", "alice.localhost"),
            ("http://127.0.0.1:80/", "alice.localhost"),
            ("http://alice.localhost:9000/", "alice.localhost"),
            ("ftp://alice.localhost/", "alice.localhost"),
        ] {
            assert_eq!(
                classify_with("GET", target, &[host]),
                Err(StatusCode::BAD_REQUEST),
                "{target} with Host {host}"
            );
        }
    }

    #[test]
    fn options_star_is_dormant_s_and_connect_is_refused() {
        assert_eq!(
            classify_with("OPTIONS", "*", &["alice.localhost"]),
            ok("*", "*")
        );
        assert_eq!(classify_with("OPTIONS", "*", &[]), ok("*", "*"));
        assert_eq!(
            classify_with("GET", "*", &["alice.localhost"]),
            Err(StatusCode::BAD_REQUEST)
        );
        assert_eq!(
            classify_with("CONNECT", "alice.localhost:80", &["alice.localhost"]),
            Err(StatusCode::METHOD_NOT_ALLOWED)
        );
        assert_eq!(
            classify_with("CONNECT", "/", &["alice.localhost"]),
            Err(StatusCode::METHOD_NOT_ALLOWED)
        );
    }

    #[test]
    fn authority_form_and_bad_hosts_are_refused() {
        assert_eq!(
            classify_with("GET", "alice.localhost:80", &["alice.localhost"]),
            Err(StatusCode::BAD_REQUEST)
        );
        assert_eq!(classify_with("GET", "/", &[]), Err(StatusCode::BAD_REQUEST));
        assert_eq!(
            classify_with("GET", "/", &["alice.localhost", "bob.localhost"]),
            Err(StatusCode::BAD_REQUEST)
        );
        assert_eq!(
            classify_with("GET", "/", &["example.com"]),
            Err(StatusCode::NOT_FOUND)
        );
    }

    #[test]
    fn a_gateway_s_forwarded_host_names_the_container() {
        let uri: Uri = "/x".parse().unwrap();
        let mut headers = HeaderMap::new();
        headers.append(HOST, HeaderValue::from_static("127.0.0.1:9000"));
        let behind = |forwarded| {
            classify_behind(
                &Method::GET,
                &uri,
                headers.get_all(HOST),
                forwarded,
                "localhost",
            )
            .map(|target| match target {
                RouteTarget::Container { name, .. } => name.into_owned(),
                RouteTarget::ServerOptions => "*".into(),
            })
            .map_err(|e| e.status())
        };
        assert_eq!(behind(Some("web.localhost:8443")), Ok("web".into()));
        assert_eq!(behind(Some("web.example.com")), Err(StatusCode::NOT_FOUND));
        assert_eq!(behind(None), Err(StatusCode::NOT_FOUND));
    }

    #[test]
    fn an_absolute_target_with_only_a_query_is_forwarded_as_a_path() {
        let uri: Uri = "http://alice.localhost:8080?y=1".parse().unwrap();
        let mut headers = HeaderMap::new();
        headers.append(HOST, HeaderValue::from_static("alice.localhost:8080"));
        let Ok(RouteTarget::Container { path, .. }) =
            classify(&Method::GET, &uri, headers.get_all(HOST), "localhost")
        else {
            panic!("not forwarded");
        };
        assert_eq!(path.as_str(), "/?y=1");
    }
}
