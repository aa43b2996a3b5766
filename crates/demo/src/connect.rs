//! `GET /connect?addr=IP:PORT`: one TCP connect from inside the container, so
//! tests can prove what a container can and cannot reach (dormant's API, the
//! host's services, other containers).

use std::collections::HashMap;
use std::io::ErrorKind;
use std::net::SocketAddr;
use std::time::Duration;

use axum::extract::Query;
use axum::http::StatusCode;
use axum::response::Response;

use crate::json;
use crate::routes::{json_response, text};

/// One attempt, never longer than this: a dropped SYN must not hold the
/// request (or the test) for the kernel's minutes of retries.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// What one attempt saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Connected,
    /// Something answered with a reset: the host is there, nothing listens
    /// (or a firewall rejects).
    Refused,
    /// No answer in time: dropped on the way.
    Timeout,
    /// Anything else (no route, network unreachable, ...).
    Unreachable,
}

impl Outcome {
    fn as_str(self) -> &'static str {
        match self {
            Self::Connected => "connected",
            Self::Refused => "refused",
            Self::Timeout => "timeout",
            Self::Unreachable => "unreachable",
        }
    }
}

/// Tries one TCP connection to `addr`, closing it at once if it opens.
pub async fn attempt(addr: SocketAddr) -> (Outcome, String) {
    match tokio::time::timeout(CONNECT_TIMEOUT, tokio::net::TcpStream::connect(addr)).await {
        Ok(Ok(_stream)) => (Outcome::Connected, String::new()),
        Ok(Err(e)) if e.kind() == ErrorKind::ConnectionRefused => (Outcome::Refused, e.to_string()),
        Ok(Err(e)) => (Outcome::Unreachable, e.to_string()),
        Err(_) => (
            Outcome::Timeout,
            format!("no answer within {CONNECT_TIMEOUT:?}"),
        ),
    }
}

/// `GET /connect?addr=IP:PORT`: `{"addr":..,"result":"connected|refused|timeout|unreachable","detail":..}`.
pub async fn connect(Query(q): Query<HashMap<String, String>>) -> Response {
    let Some(addr) = q.get("addr") else {
        return text(StatusCode::BAD_REQUEST, "connect needs addr=IP:PORT\n");
    };
    let Ok(addr) = addr.parse::<SocketAddr>() else {
        return text(
            StatusCode::BAD_REQUEST,
            format!("addr={addr:?} is not IP:PORT\n"),
        );
    };
    let (outcome, detail) = attempt(addr).await;
    json_response(json::object([
        ("addr", json::string(&addr.to_string())),
        ("result", json::string(outcome.as_str())),
        ("detail", json::string(&detail)),
    ]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn tells_connected_from_refused() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let open = listener.local_addr().unwrap();
        assert_eq!(attempt(open).await.0, Outcome::Connected);
        drop(listener);
        assert_eq!(attempt(open).await.0, Outcome::Refused);
    }
}
