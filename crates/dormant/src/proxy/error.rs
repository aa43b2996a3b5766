//! Every way a proxied request can fail, and the one place they become HTTP.

use std::net::SocketAddr;

use bytes::Bytes;
use http::{header, HeaderValue, Response, StatusCode};
use http_body_util::Full;

use super::waker::WakeError;
use crate::error_kind::{whole_seconds, ErrorKind};

#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("no Host header; dormant routes by hostname (<name>.{base_domain})")]
    MissingHost { base_domain: String },
    #[error(
        "no container here answers to `{host}`; containers are reached at <name>.{base_domain}"
    )]
    NotOurHost { host: String, base_domain: String },
    #[error("no container named `{name}`")]
    UnknownContainer { name: String },
    #[error("container `{name}` could not be woken: {}", error.reason)]
    Wake { name: String, error: WakeError },
    #[error("container `{name}`: reading the request body failed: {cause}")]
    ClientBody { name: String, cause: String },
    #[error("container `{name}` did not answer at {upstream}: {cause}")]
    Upstream {
        name: String,
        upstream: SocketAddr,
        cause: String,
    },
}

impl ProxyError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::MissingHost { .. } | Self::ClientBody { .. } => ErrorKind::BadRequest,
            Self::NotOurHost { .. } => ErrorKind::NotOurHost,
            Self::UnknownContainer { .. } => ErrorKind::NotFound,
            Self::Wake { error, .. } => error.kind.error_kind(),
            Self::Upstream { .. } => ErrorKind::UpstreamFailed,
        }
    }

    pub fn status(&self) -> StatusCode {
        self.kind().status()
    }

    /// A short plain-text answer a person can act on.
    pub fn into_response(self) -> Response<Full<Bytes>> {
        let status = self.status();
        let retry_after = match &self {
            Self::Wake { error, .. } => error.retry_after,
            _ => None,
        };
        let mut response = Response::new(Full::new(Bytes::from(format!("{self}\n"))));
        *response.status_mut() = status;
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        headers.insert("x-dormant-error", HeaderValue::from_static("1"));
        if let Some(after) = retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(whole_seconds(after)));
        }
        response
    }
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
