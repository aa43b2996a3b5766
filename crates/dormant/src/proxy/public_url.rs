//! The URL a client used, as dormant's own answers must name it (the
//! redirect strategy's `Location`, a sign-in's redirect): behind a trusted
//! gateway each part comes from its `X-Forwarded-Proto/Host/Port/Prefix`,
//! else from the request itself. Only a trusted peer's headers are read.

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

use super::error::ProxyError;

const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_PORT: HeaderName = HeaderName::from_static("x-forwarded-port");
const X_FORWARDED_PREFIX: HeaderName = HeaderName::from_static("x-forwarded-prefix");

/// Longest host a gateway may name: a 253-byte DNS name and `:65535`.
pub const MAX_FORWARDED_HOST: usize = 253 + 6;
/// Longest path prefix a gateway may name.
pub const MAX_FORWARDED_PREFIX: usize = 256;

/// The host a trusted gateway says the client asked for: the first value
/// of `X-Forwarded-Host`, or `None` when it sent none. A value that is not
/// short, readable host text is refused like a bad `Host` (400).
pub fn forwarded_host(headers: &HeaderMap) -> Result<Option<&str>, ProxyError> {
    let Some(value) = headers.get(&X_FORWARDED_HOST) else {
        return Ok(None);
    };
    let bad = |reason| Err(ProxyError::BadTarget { reason });
    let Ok(text) = value.to_str() else {
        return bad("the X-Forwarded-Host header is not readable text");
    };
    let first = text.split(',').next().unwrap_or_default().trim();
    if first.is_empty() || first.len() > MAX_FORWARDED_HOST {
        return bad("the X-Forwarded-Host header is empty or longer than a host name");
    }
    if !first.bytes().all(is_host_byte) {
        return bad("the X-Forwarded-Host header is not a host name");
    }
    Ok(Some(first))
}

/// Letters, digits, `-`, `.`, `_`, `:` (a port) and `[]` (an IPv6 literal).
fn is_host_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b':' | b'[' | b']')
}

/// Where the client reached dormant, part by part.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicOrigin<'a> {
    /// `http` or `https`.
    pub proto: &'static str,
    /// The host, with a port when it is not the scheme's default.
    pub host: String,
    /// A path prefix the gateway strips (`/app`), or empty.
    pub prefix: &'a str,
}

impl<'a> PublicOrigin<'a> {
    /// What `headers` say about the client's URL; the `X-Forwarded-*` ones
    /// only when `trusted`. Malformed forwarded values are ignored.
    pub fn of(headers: &'a HeaderMap, trusted: bool) -> Self {
        let request_host = || {
            headers
                .get(header::HOST)
                .and_then(|h| h.to_str().ok())
                .unwrap_or_default()
        };
        if !trusted {
            return Self {
                proto: "http",
                host: request_host().to_owned(),
                prefix: "",
            };
        }
        let proto = match first_value(headers, &X_FORWARDED_PROTO) {
            Some(p) if p.eq_ignore_ascii_case("https") => "https",
            _ => "http",
        };
        let host = match forwarded_host(headers) {
            Ok(Some(host)) => host,
            _ => request_host(),
        };
        let host = match first_value(headers, &X_FORWARDED_PORT).and_then(parse_port) {
            Some(port) => with_port(host, port, proto),
            None => host.to_owned(),
        };
        Self {
            proto,
            host,
            prefix: forwarded_prefix(headers).unwrap_or_default(),
        }
    }

    /// Where a client of the trusted gateway that sent `headers` (to the
    /// API, say) reaches container host `host`: its `X-Forwarded-Proto`,
    /// `-Port` and `-Prefix` around `host`. `None` when it sent neither a
    /// protocol nor a port: it said nothing about its public side.
    pub fn gateway_for(headers: &'a HeaderMap, host: &str) -> Option<Self> {
        let proto_given = first_value(headers, &X_FORWARDED_PROTO);
        let port = first_value(headers, &X_FORWARDED_PORT).and_then(parse_port);
        if proto_given.is_none() && port.is_none() {
            return None;
        }
        let proto = match proto_given {
            Some(p) if p.eq_ignore_ascii_case("https") => "https",
            _ => "http",
        };
        let default = if proto == "https" { 443 } else { 80 };
        Some(Self {
            proto,
            host: with_port(host, port.unwrap_or(default), proto),
            prefix: forwarded_prefix(headers).unwrap_or_default(),
        })
    }

    /// `proto://host[:port]prefix` followed by `path_and_query` (which
    /// starts with `/`).
    pub fn url(&self, path_and_query: &str) -> String {
        format!(
            "{}://{}{}{path_and_query}",
            self.proto, self.host, self.prefix
        )
    }
}

/// The first of a header's comma-separated values, trimmed.
fn first_value<'h>(headers: &'h HeaderMap, name: &HeaderName) -> Option<&'h str> {
    let text = headers.get(name)?.to_str().ok()?;
    Some(text.split(',').next()?.trim()).filter(|v| !v.is_empty())
}

/// A port: digits only, 1..=65535.
fn parse_port(text: &str) -> Option<u16> {
    if text.is_empty() || text.len() > 5 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse::<u16>().ok().filter(|&port| port != 0)
}

/// `host` with its port replaced by `port`, left out when it is `proto`'s
/// default.
fn with_port(host: &str, port: u16, proto: &str) -> String {
    let bare = match host.rsplit_once(':') {
        // An IPv6 literal's colons are not a port's.
        Some((bare, tail)) if !tail.contains(']') => bare,
        _ => host,
    };
    let default = if proto == "https" { 443 } else { 80 };
    if port == default {
        bare.to_owned()
    } else {
        format!("{bare}:{port}")
    }
}

/// A trusted gateway's `X-Forwarded-Prefix`, without a trailing `/`; `None`
/// when absent or not a plain, short path (logged at debug).
pub fn forwarded_prefix(headers: &HeaderMap) -> Option<&str> {
    let value: &HeaderValue = headers.get(&X_FORWARDED_PREFIX)?;
    let prefix = value.to_str().ok().map(str::trim).unwrap_or_default();
    let plain = prefix.starts_with('/')
        && prefix.len() <= MAX_FORWARDED_PREFIX
        && !prefix.contains("..")
        && !prefix.starts_with("//")
        && prefix
            .bytes()
            .all(|b| b.is_ascii_graphic() && !matches!(b, b'?' | b'#' | b'\\'));
    if !plain {
        tracing::debug!(prefix = ?value, "ignored an X-Forwarded-Prefix that is not a plain path");
        return None;
    }
    Some(prefix.trim_end_matches('/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (k, v) in pairs {
            headers.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        headers
    }

    const GATEWAY: [(&str, &str); 5] = [
        ("host", "127.0.0.1:9000"),
        ("x-forwarded-host", "web.example.com"),
        ("x-forwarded-proto", "https"),
        ("x-forwarded-port", "8443"),
        ("x-forwarded-prefix", "/apps/"),
    ];

    #[test]
    fn a_trusted_gateway_names_every_part() {
        let h = headers(&GATEWAY);
        assert_eq!(
            PublicOrigin::of(&h, true).url("/x?y=1"),
            "https://web.example.com:8443/apps/x?y=1"
        );
    }

    #[test]
    fn an_untrusted_peer_s_headers_change_nothing() {
        let h = headers(&GATEWAY);
        assert_eq!(
            PublicOrigin::of(&h, false).url("/x?y=1"),
            "http://127.0.0.1:9000/x?y=1"
        );
    }

    #[test]
    fn missing_parts_come_from_the_request() {
        let h = headers(&[("host", "a.localhost:8080"), ("x-forwarded-proto", "https")]);
        assert_eq!(
            PublicOrigin::of(&h, true).url("/"),
            "https://a.localhost:8080/"
        );
        let h = headers(&[("host", "a.localhost:8080"), ("x-forwarded-port", "443")]);
        assert_eq!(
            PublicOrigin::of(&h, true).url("/"),
            "http://a.localhost:443/"
        );
        let h = headers(&[
            ("host", "a.localhost:8080"),
            ("x-forwarded-proto", "https, http"),
            ("x-forwarded-port", "443"),
            ("x-forwarded-host", "b.localhost:9999, c.localhost"),
        ]);
        assert_eq!(PublicOrigin::of(&h, true).url("/"), "https://b.localhost/");
    }

    #[test]
    fn malformed_forwarded_parts_are_ignored() {
        for (name, value) in [
            ("x-forwarded-port", "0"),
            ("x-forwarded-port", "65536"),
            ("x-forwarded-port", "+80"),
            ("x-forwarded-port", "8o"),
            ("x-forwarded-prefix", "apps"),
            ("x-forwarded-prefix", "/a/../b"),
            ("x-forwarded-prefix", "//evil.example"),
            ("x-forwarded-prefix", "/a?b"),
            ("x-forwarded-prefix", "/a b"),
            ("x-forwarded-proto", "gopher"),
        ] {
            let h = headers(&[("host", "a.localhost"), (name, value)]);
            assert_eq!(
                PublicOrigin::of(&h, true).url("/p"),
                "http://a.localhost/p",
                "{name}: {value}"
            );
        }
        let long = format!("/{}", "a".repeat(MAX_FORWARDED_PREFIX));
        let h = headers(&[("host", "a.localhost"), ("x-forwarded-prefix", &long)]);
        assert_eq!(PublicOrigin::of(&h, true).prefix, "");
    }

    #[test]
    fn a_forwarded_host_is_bounded_and_plain() {
        let ok = |v: &str| {
            forwarded_host(&headers(&[("x-forwarded-host", v)])).map(|h| h.map(str::to_owned))
        };
        assert_eq!(ok("a.localhost").unwrap().as_deref(), Some("a.localhost"));
        assert_eq!(
            ok(" a.localhost:8443 , b.localhost").unwrap().as_deref(),
            Some("a.localhost:8443")
        );
        assert_eq!(forwarded_host(&HeaderMap::new()).unwrap(), None);
        for bad in [
            "",
            " , a.localhost",
            "a/b.localhost",
            "a.localhost@b",
            &"a".repeat(300),
        ] {
            assert!(ok(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_gateway_names_the_public_side_of_another_host() {
        let h = headers(&GATEWAY);
        assert_eq!(
            PublicOrigin::gateway_for(&h, "web.localhost")
                .unwrap()
                .url("/.dormant/login?code=c"),
            "https://web.localhost:8443/apps/.dormant/login?code=c"
        );
        let h = headers(&[("x-forwarded-proto", "https")]);
        assert_eq!(
            PublicOrigin::gateway_for(&h, "web.localhost")
                .unwrap()
                .url("/"),
            "https://web.localhost/"
        );
        let h = headers(&[("host", "api.example"), ("x-forwarded-prefix", "/apps")]);
        assert_eq!(PublicOrigin::gateway_for(&h, "web.localhost"), None);
    }

    #[test]
    fn ports_are_replaced_and_defaults_left_out() {
        assert_eq!(with_port("a.example:80", 8443, "https"), "a.example:8443");
        assert_eq!(with_port("a.example", 443, "https"), "a.example");
        assert_eq!(with_port("[::1]", 8080, "http"), "[::1]:8080");
        assert_eq!(with_port("[::1]:9", 80, "http"), "[::1]");
    }
}
