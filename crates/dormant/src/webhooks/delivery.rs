//! One delivery: the event as JSON, signed, POSTed to the webhook's URL
//! over a fresh connection to an address its policy allows (TLS on it for
//! `https://`, the certificate checked against the URL's host); and the
//! schedule of retries when the receiver does not take it.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use hmac::{Hmac, Mac};
use http::{Method, Request};
use http_body_util::{BodyExt, Full};
use hyper::rt::{Read, Write};
use rustls::ClientConfig;
use sha2::Sha256;

use super::target::{AddressPolicy, Scheme, Target};
use super::tls;

/// Longest wait for a connection to the receiver.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest wait for the receiver's answer, from the connection on (from
/// the end of the TLS handshake, for `https://`).
const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);
/// Bytes of the receiver's answer read (and thrown away) at most.
const MAX_ANSWER: usize = 16 * 1024;

/// The header carrying `t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">`.
pub const SIGNATURE_HEADER: &str = "dormant-signature";

/// `t=<now>,v1=<signature>` for `body` under `secret` (hex).
pub fn signature(secret: &str, unix_secs: u64, body: &[u8]) -> String {
    // Any key length is valid for HMAC.
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key");
    mac.update(unix_secs.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    let digest = mac.finalize().into_bytes();
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("t={unix_secs},v1={hex}")
}

/// What one attempt came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// A 2xx: delivered.
    Delivered(u16),
    /// Worth trying again later: no connection, a timeout, 408, 429, 5xx.
    Retry(Failure),
    /// The receiver refused it for good (another 4xx), or the URL may not
    /// be dialled: trying again would not help.
    GiveUp(Failure),
}

/// Why an attempt failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// The receiver's status, when it answered.
    pub status: Option<u16>,
    pub why: String,
}

impl Failure {
    fn no_answer(why: String) -> Self {
        Self { status: None, why }
    }
}

/// One attempt to deliver `body` (event `event_id` of kind `kind`); `tls`
/// checks the receiver's certificate for `https://`.
pub async fn attempt(
    target: &Target,
    policy: AddressPolicy,
    tls: &Arc<ClientConfig>,
    secret: &str,
    event_id: u64,
    kind: &str,
    body: Bytes,
) -> Outcome {
    let addrs = match target.resolve(policy).await {
        Ok(addrs) => addrs,
        // A name that resolves to nothing allowed may resolve differently
        // later; a literal private address never will.
        Err(why) if target.host.parse::<std::net::IpAddr>().is_ok() => {
            return Outcome::GiveUp(Failure::no_answer(why))
        }
        Err(why) => return Outcome::Retry(Failure::no_answer(why)),
    };
    let mut last_error = String::new();
    for addr in addrs {
        let stream =
            match tokio::time::timeout(CONNECT_TIMEOUT, tokio::net::TcpStream::connect(addr)).await
            {
                Ok(Ok(stream)) => stream,
                Ok(Err(e)) => {
                    last_error = format!("cannot connect to {addr}: {e}");
                    continue;
                }
                Err(_) => {
                    last_error = format!("no connection to {addr} within {CONNECT_TIMEOUT:?}");
                    continue;
                }
            };
        let unix_secs = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let request = Request::builder()
            .method(Method::POST)
            .uri(&target.path)
            .header(http::header::HOST, &target.authority)
            .header(http::header::CONTENT_TYPE, "application/json")
            .header(
                http::header::USER_AGENT,
                concat!("dormant-webhook/", env!("CARGO_PKG_VERSION")),
            )
            .header(SIGNATURE_HEADER, signature(secret, unix_secs, &body))
            .header("dormant-event-id", event_id.to_string())
            .header("dormant-event", kind)
            .body(Full::new(body.clone()));
        let request = match request {
            Ok(request) => request,
            Err(e) => {
                return Outcome::GiveUp(Failure::no_answer(format!(
                    "cannot build the request: {e}"
                )))
            }
        };
        // The checked address is dialled; the URL's host is only what the
        // certificate must name, so a second lookup cannot redirect us.
        let answer = match target.scheme {
            Scheme::Http => exchange(hyper_util::rt::TokioIo::new(stream), request).await,
            Scheme::Https => {
                let name = match tls::server_name(&target.host) {
                    Ok(name) => name,
                    Err(why) => return Outcome::GiveUp(Failure::no_answer(why)),
                };
                match tls::handshake(tls, name, stream).await {
                    Ok(stream) => exchange(hyper_util::rt::TokioIo::new(stream), request).await,
                    Err(why) => {
                        return Outcome::Retry(Failure::no_answer(format!("{addr}: {why}")))
                    }
                }
            }
        };
        return match answer {
            Ok(status) => classify(status),
            Err(why) => Outcome::Retry(Failure::no_answer(format!("{addr}: {why}"))),
        };
    }
    Outcome::Retry(Failure::no_answer(last_error))
}

/// Sends `request` over `io` and reads (a bounded part of) the answer, all
/// within [`ANSWER_TIMEOUT`]; the receiver's status, or what went wrong.
async fn exchange<T>(io: T, request: Request<Full<Bytes>>) -> Result<u16, String>
where
    T: Read + Write + Send + Unpin + 'static,
{
    let exchange = async {
        let (mut sender, connection) = hyper::client::conn::http1::handshake(io).await?;
        tokio::spawn(connection);
        let response = sender.send_request(request).await?;
        let status = response.status().as_u16();
        // Read a little of the answer so the receiver is not cut off
        // mid-write; what it says does not matter.
        let mut body = response.into_body();
        let mut read = 0;
        while read < MAX_ANSWER {
            match body.frame().await {
                Some(Ok(frame)) => read += frame.data_ref().map_or(0, |d| d.len()),
                _ => break,
            }
        }
        Ok::<u16, hyper::Error>(status)
    };
    match tokio::time::timeout(ANSWER_TIMEOUT, exchange).await {
        Ok(Ok(status)) => Ok(status),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("no answer within {ANSWER_TIMEOUT:?}")),
    }
}

fn classify(status: u16) -> Outcome {
    let failure = || Failure {
        status: Some(status),
        why: format!("the receiver answered {status}"),
    };
    match status {
        200..=299 => Outcome::Delivered(status),
        408 | 429 | 500..=599 => Outcome::Retry(failure()),
        _ => Outcome::GiveUp(failure()),
    }
}

/// Waits between attempts: 1 s, then doubling up to a minute.
pub fn backoff(attempt: u32) -> Duration {
    Duration::from_secs(1u64 << attempt.min(6)).min(Duration::from_secs(60))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_is_hmac_sha256_of_time_dot_body() {
        // Computed independently: printf '1700000000.{"a":1}' |
        //   openssl dgst -sha256 -hmac key
        assert_eq!(
            signature("key", 1_700_000_000, br#"{"a":1}"#),
            "t=1700000000,v1=a438e398bfafc57e4396bb7fc2304422f0f768e965d073ca313cb52e22e6ad03"
        );
    }

    #[test]
    fn statuses_decide_between_done_again_and_never() {
        assert_eq!(classify(204), Outcome::Delivered(204));
        assert!(matches!(classify(503), Outcome::Retry(_)));
        assert!(matches!(classify(429), Outcome::Retry(_)));
        assert!(matches!(classify(404), Outcome::GiveUp(_)));
    }

    #[test]
    fn backoff_doubles_up_to_a_minute() {
        let waits: Vec<u64> = (0..9).map(|n| backoff(n).as_secs()).collect();
        assert_eq!(waits, [1, 2, 4, 8, 16, 32, 60, 60, 60]);
    }
}
