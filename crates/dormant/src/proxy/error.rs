//! Every way a proxied request can fail, and the one place they become HTTP.
//!
//! The person gets the container's name and a reason; upstream addresses
//! and paths on dormant's host stay in the log (the `Debug` form).

use std::borrow::Cow;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::{header, HeaderValue, Method, Response, StatusCode};
use http_body_util::Full;

use super::budget::HoldRefused;
use super::wake_filter::Limit;
use super::waker::WakeError;
use crate::error_kind::{whole_seconds, ErrorKind};

/// The methods dormant forwards, for `Allow` (405, `OPTIONS *`).
pub const ALLOWED_METHODS: &str = "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS";

/// How long a client refused for a full hold budget should wait.
const HOLD_FULL_RETRY_AFTER: Duration = Duration::from_secs(1);

/// Why a private container refused a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotAdmitted {
    /// No token, API token or session cookie that opens it.
    NotSignedIn,
    /// A login link that is unknown, expired, used, or for another host.
    LinkUnusable,
}

#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("no Host header; dormant routes by hostname (<name>.{base_domain})")]
    MissingHost { base_domain: String },
    #[error("bad request target: {reason}")]
    BadTarget { reason: &'static str },
    #[error("{method} is not forwarded; dormant forwards requests for paths only")]
    MethodNotAllowed { method: Method },
    #[error(
        "no container here answers to `{host}`; containers are reached at <name>.{base_domain}"
    )]
    NotOurHost { host: String, base_domain: String },
    #[error("no container named `{name}`")]
    UnknownContainer { name: String },
    #[error("{}", match why {
        NotAdmitted::NotSignedIn => format!("`{name}` is private and you are not signed in, or your session has expired: ask its owner for a new login link (programs send `Authorization: Bearer <token>`)"),
        NotAdmitted::LinkUnusable => format!("this login link for `{name}` has expired or was already used: ask its owner for a new link"),
    })]
    Unauthorized { name: String, why: NotAdmitted },
    #[error("container `{name}` could not be woken: {}", redact(&error.reason))]
    Wake { name: String, error: WakeError },
    #[error("container `{name}` is waking and {}; try again in a moment", match refused {
        HoldRefused::TooManyRequests => "too many requests are already waiting for wakes",
        HoldRefused::TooManyBytes => "the requests waiting for wakes already hold all the memory allowed",
    })]
    HoldFull { name: String, refused: HoldRefused },
    #[error("{}; try again in {} s", limit.reason(), whole_seconds(*retry_after))]
    RateLimited { limit: Limit, retry_after: Duration },
    #[error("container `{name}`: reading the request body failed: {cause}")]
    ClientBody { name: String, cause: String },
    #[error("container `{name}` did not answer: {}", if *connect {
        "it could not be reached"
    } else {
        "the connection to it failed before a complete answer"
    })]
    Upstream {
        name: String,
        upstream: SocketAddr,
        /// Whether connecting failed (nothing was sent).
        connect: bool,
        cause: String,
    },
    #[error("container `{name}` did not answer within {after:?}")]
    UpstreamTimeout {
        name: String,
        upstream: SocketAddr,
        after: Duration,
    },
}

impl ProxyError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::MissingHost { .. } | Self::BadTarget { .. } | Self::ClientBody { .. } => {
                ErrorKind::BadRequest
            }
            Self::MethodNotAllowed { .. } => ErrorKind::MethodNotAllowed,
            Self::NotOurHost { .. } => ErrorKind::NotOurHost,
            Self::UnknownContainer { .. } => ErrorKind::NotFound,
            Self::Unauthorized { .. } => ErrorKind::Unauthorized,
            Self::Wake { error, .. } => error.kind.error_kind(),
            Self::HoldFull { .. } => ErrorKind::Overloaded,
            Self::RateLimited { limit, .. } => limit.error_kind(),
            Self::Upstream { .. } => ErrorKind::UpstreamFailed,
            Self::UpstreamTimeout { .. } => ErrorKind::UpstreamTimedOut,
        }
    }

    fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::Wake { error, .. } => error.retry_after,
            Self::HoldFull { .. } => Some(HOLD_FULL_RETRY_AFTER),
            Self::RateLimited { retry_after, .. } => Some(*retry_after),
            _ => None,
        }
    }

    pub fn status(&self) -> StatusCode {
        self.kind().status()
    }

    /// A short answer a person can act on: plain text, or a small page
    /// for a browser (`html`).
    pub fn into_response(self, html: bool) -> Response<Full<Bytes>> {
        let status = self.status();
        let retry_after = self.retry_after();
        let (body, content_type) = if html {
            let page = error_page(status, self.kind().code(), &self.to_string());
            (page, "text/html; charset=utf-8")
        } else {
            (format!("{self}\n"), "text/plain; charset=utf-8")
        };
        let mut response = Response::new(Full::new(Bytes::from(body)));
        *response.status_mut() = status;
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
        headers.insert("x-dormant-error", HeaderValue::from_static("1"));
        if let Some(after) = retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(whole_seconds(after)));
        }
        if status == StatusCode::METHOD_NOT_ALLOWED {
            headers.insert(header::ALLOW, HeaderValue::from_static(ALLOWED_METHODS));
        }
        if status == StatusCode::UNAUTHORIZED {
            headers.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"dormant\""),
            );
            headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        }
        response
    }
}

/// dormant's own error page: the status, the reason, and the stable code.
fn error_page(status: StatusCode, code: &str, message: &str) -> String {
    format!(
        "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>{status}</title>\
         <style>body{{font-family:system-ui,sans-serif;max-width:40em;margin:4em auto;color:#333}}</style>\
         </head><body><h1>{status}</h1><p>{}</p><p><small>dormant: {code}</small></p></body></html>\n",
        escape_html(message)
    )
}

/// The message may carry what the client sent (a Host header): escape it.
fn escape_html(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&#39;"),
            c => escaped.push(c),
        }
    }
    escaped
}

/// Describes a hyper client error by its deepest cause, which is the one that
/// says what happened ("Connection refused"), not where.
pub fn root_cause(err: &(dyn std::error::Error + 'static)) -> String {
    let mut deepest: &(dyn std::error::Error + 'static) = err;
    while let Some(source) = deepest.source() {
        deepest = source;
    }
    let top = err.to_string();
    let root = deepest.to_string();
    if top == root {
        top
    } else {
        format!("{top}: {root}")
    }
}

/// A reason from lifecycle, fit for a stranger: IP addresses (with their
/// ports) and absolute paths on dormant's host become `<internal>`. The
/// full reason is in the log and the API.
pub fn redact(reason: &str) -> Cow<'_, str> {
    if !reason.split(is_separator).any(is_internal) {
        return Cow::Borrowed(reason);
    }
    let mut out = String::with_capacity(reason.len());
    let mut rest = reason;
    while !rest.is_empty() {
        let word_len = rest.find(is_separator).unwrap_or(rest.len());
        let (word, after) = rest.split_at(word_len);
        out.push_str(if is_internal(word) {
            "<internal>"
        } else {
            word
        });
        let sep_len = after.chars().next().map_or(0, char::len_utf8);
        out.push_str(&after[..sep_len]);
        rest = &after[sep_len..];
    }
    Cow::Owned(out)
}

fn is_separator(c: char) -> bool {
    c.is_whitespace() || matches!(c, ',' | ';' | '(' | ')' | '"' | '\'' | '`')
}

/// An address (`172.18.0.5:8080`, `[fd00::5]:80`, `fd00::5`) or an absolute
/// path (`/var/lib/dormant/...`), allowing trailing punctuation.
fn is_internal(word: &str) -> bool {
    let word = word.trim_end_matches(['.', ':']);
    if word.is_empty() {
        return false;
    }
    if word.starts_with('/') && word[1..].contains('/') {
        return true;
    }
    word.parse::<SocketAddr>().is_ok()
        || word.parse::<std::net::IpAddr>().is_ok()
        || word
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::Ipv6Addr>()
            .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::waker::WakeErrorKind;

    #[test]
    fn addresses_and_host_paths_are_redacted_from_reasons() {
        assert_eq!(
            redact("connection to 172.18.0.5:8080 failed: refused"),
            "connection to <internal> failed: refused"
        );
        assert_eq!(
            redact("cannot open /var/lib/dormant/snapshots/a.tar.zst: No space"),
            "cannot open <internal> No space"
        );
        assert_eq!(redact("at [fd00::5]:80."), "at <internal>");
        assert_eq!(redact("it exited with code 3"), "it exited with code 3");
        assert_eq!(redact("GET / answered 500"), "GET / answered 500");
        assert_eq!(redact("(10.0.0.1)"), "(<internal>)");
    }

    #[test]
    fn every_refusal_has_its_status_and_upstreams_stay_out_of_the_body() {
        let timeout = ProxyError::UpstreamTimeout {
            name: "a".into(),
            upstream: "172.18.0.5:8080".parse().unwrap(),
            after: Duration::from_secs(300),
        };
        assert_eq!(timeout.status(), StatusCode::GATEWAY_TIMEOUT);
        assert!(!timeout.to_string().contains("172.18"), "{timeout}");
        let upstream = ProxyError::Upstream {
            name: "a".into(),
            upstream: "172.18.0.5:8080".parse().unwrap(),
            connect: true,
            cause: "tcp connect error: Connection refused".into(),
        };
        assert!(!upstream.to_string().contains("172.18"), "{upstream}");
        assert!(
            format!("{upstream:?}").contains("172.18.0.5"),
            "the log loses the address"
        );
        let full = ProxyError::HoldFull {
            name: "a".into(),
            refused: HoldRefused::TooManyBytes,
        }
        .into_response(false);
        assert_eq!(full.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(full.headers()[header::RETRY_AFTER], "1");
        let connect = ProxyError::MethodNotAllowed {
            method: Method::CONNECT,
        }
        .into_response(false);
        assert_eq!(connect.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(connect.headers()[header::ALLOW], ALLOWED_METHODS);
        let wake = ProxyError::Wake {
            name: "a".into(),
            error: WakeError {
                kind: WakeErrorKind::TimedOut,
                reason: "connection to 172.18.0.5:8080 failed".into(),
                retry_after: None,
            },
        };
        assert_eq!(wake.status(), StatusCode::GATEWAY_TIMEOUT);
        assert!(!wake.to_string().contains("172.18"), "{wake}");
    }
}

#[cfg(test)]
mod page_tests {
    use super::*;

    #[test]
    fn browsers_get_an_escaped_page_with_the_same_status() {
        let error = ProxyError::NotOurHost {
            host: "<script>x</script>.evil".into(),
            base_domain: "localhost".into(),
        };
        let response = error.into_response(true);
        assert_eq!(response.status(), StatusCode::NOT_FOUND);
        assert!(response.headers()[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/html"));
        let body = format!("{:?}", response.body());
        assert!(!body.contains("<script>"), "{body}");
        assert!(body.contains("&lt;script&gt;"), "{body}");
    }
}
