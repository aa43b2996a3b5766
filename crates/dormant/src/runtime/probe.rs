//! The real readiness probe: is the app inside the container answering HTTP?
//!
//! An accepted TCP connection proves nothing: Docker's userland proxy accepts
//! on the published port before the app listens, then resets. So a probe sends
//! a real HTTP request and wants an HTTP answer (or, for an app that is not
//! HTTP, a connection that stays open). How often to probe is lifecycle's
//! business (`lifecycle/readiness.rs`).

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;

use super::ProbeOutcome;

/// An app that keeps a connection open this long without closing it is
/// listening (non-HTTP apps never answer an HTTP request).
const SILENT_BUT_OPEN: Duration = Duration::from_millis(300);
/// A connection to a container on this host is made at once or refused; one
/// still pending after this goes to an address nobody holds (the container
/// exited and released it), where the kernel would retry for two minutes
/// past every deadline.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// Probes `upstream` once: `GET path` must get an HTTP status line, below 500
/// when `require_success` (a configured readiness path).
pub async fn http(upstream: SocketAddr, path: &str, require_success: bool) -> ProbeOutcome {
    let attempt = async {
        let mut stream = timeout(CONNECT_TIMEOUT, TcpStream::connect(upstream))
            .await
            .map_err(|_| {
                std::io::Error::new(std::io::ErrorKind::TimedOut, "no answer to connect")
            })??;
        stream.set_nodelay(true)?;
        let request = format!("GET {path} HTTP/1.1\r\nHost: {upstream}\r\nUser-Agent: dormant-readiness\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await?;
        let mut head = [0u8; 12];
        let mut filled = 0;
        while filled < head.len() {
            match timeout(SILENT_BUT_OPEN, stream.read(&mut head[filled..])).await {
                Err(_) if filled == 0 => return Ok(ProbeOutcome::Ready),
                Err(_) => break,
                Ok(Ok(0)) => break,
                Ok(Ok(n)) => filled += n,
                Ok(Err(e)) => return Err(e),
            }
        }
        Ok(judge(&head[..filled], require_success))
    };
    match attempt.await {
        Ok(outcome) => outcome,
        Err(e) => ProbeOutcome::NotYet(format!("connection to {upstream} failed: {e}")),
    }
}

fn judge(head: &[u8], require_success: bool) -> ProbeOutcome {
    if head.is_empty() {
        return ProbeOutcome::NotYet("the connection was closed without an answer".into());
    }
    if !head.starts_with(b"HTTP/") {
        // Something answered, just not HTTP: the app is up.
        return ProbeOutcome::Ready;
    }
    let status = std::str::from_utf8(head)
        .ok()
        .and_then(|line| line.split_whitespace().nth(1))
        .and_then(|code| code.parse::<u16>().ok());
    match status {
        Some(code) if require_success && code >= 500 => {
            ProbeOutcome::NotYet(format!("the readiness path answered {code}"))
        }
        Some(_) => ProbeOutcome::Ready,
        None => ProbeOutcome::NotYet("the answer was not a valid HTTP status line".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    #[test]
    fn judges_status_lines() {
        assert_eq!(judge(b"HTTP/1.1 200", true), ProbeOutcome::Ready);
        assert_eq!(judge(b"HTTP/1.1 404", true), ProbeOutcome::Ready);
        assert_eq!(judge(b"HTTP/1.1 503", false), ProbeOutcome::Ready);
        assert!(matches!(
            judge(b"HTTP/1.1 503", true),
            ProbeOutcome::NotYet(_)
        ));
        assert!(matches!(judge(b"", false), ProbeOutcome::NotYet(_)));
        assert_eq!(judge(b"SSH-2.0-Open", false), ProbeOutcome::Ready);
    }

    #[tokio::test]
    async fn a_listener_that_closes_at_once_is_not_ready() {
        // What Docker's userland proxy does while the app is not listening.
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                drop(stream);
            }
        });
        assert!(matches!(
            http(addr, "/", false).await,
            ProbeOutcome::NotYet(_)
        ));
    }

    #[tokio::test]
    async fn an_http_answer_is_ready_and_a_closed_port_is_not() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let mut buf = [0u8; 512];
                let _ = stream.read(&mut buf).await;
                let _ = stream.write_all(b"HTTP/1.1 204 No Content\r\n\r\n").await;
            }
        });
        assert_eq!(http(addr, "/", true).await, ProbeOutcome::Ready);

        let closed = TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap()
            .local_addr()
            .unwrap();
        assert!(matches!(
            http(closed, "/", false).await,
            ProbeOutcome::NotYet(_)
        ));
    }
}
