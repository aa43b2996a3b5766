//! Is the app inside the container answering yet?
//!
//! An accepted TCP connection proves nothing: Docker's userland proxy accepts
//! on the published port before the app listens, then resets. So a probe sends
//! a real HTTP request and wants an HTTP answer (or, for an app that is not
//! HTTP, a connection that stays open). Probes start a few milliseconds apart
//! and back off, so a fast app is seen ready within milliseconds and a slow one
//! costs little.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{timeout, Instant};

/// First pause between probes; grows by half each time up to
/// `MAX_INTERVAL`. A probe is one local connection, so probing often is
/// cheap, and the interval bounds how late a ready app is noticed: the cap
/// keeps that under 50 ms even for an app that takes seconds to start.
const FIRST_INTERVAL: Duration = Duration::from_millis(2);
const MAX_INTERVAL: Duration = Duration::from_millis(50);
/// An app that keeps a connection open this long without closing it is
/// listening (non-HTTP apps never answer an HTTP request).
const SILENT_BUT_OPEN: Duration = Duration::from_millis(300);
/// A connection to a container on this host is made at once or refused; one still pending after
/// this goes to an address nobody holds (the container exited and released it), where the kernel
/// would retry for two minutes past every deadline.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// What one probe saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Probe {
    Ready,
    /// Not yet; the text says what was seen, for the error when time runs out.
    NotYet(String),
}

/// Probes `upstream` once: `GET path` must get an HTTP status line, below 500
/// when `require_success` (a configured readiness path).
pub async fn probe(upstream: SocketAddr, path: &str, require_success: bool) -> Probe {
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
                Err(_) if filled == 0 => return Ok(Probe::Ready),
                Err(_) => break,
                Ok(Ok(0)) => break,
                Ok(Ok(n)) => filled += n,
                Ok(Err(e)) => return Err(e),
            }
        }
        Ok(judge(&head[..filled], require_success))
    };
    match attempt.await {
        Ok(probe) => probe,
        Err(e) => Probe::NotYet(format!("connection to {upstream} failed: {e}")),
    }
}

fn judge(head: &[u8], require_success: bool) -> Probe {
    if head.is_empty() {
        return Probe::NotYet("the connection was closed without an answer".into());
    }
    if !head.starts_with(b"HTTP/") {
        // Something answered, just not HTTP: the app is up.
        return Probe::Ready;
    }
    let status = std::str::from_utf8(head)
        .ok()
        .and_then(|line| line.split_whitespace().nth(1))
        .and_then(|code| code.parse::<u16>().ok());
    match status {
        Some(code) if require_success && code >= 500 => {
            Probe::NotYet(format!("the readiness path answered {code}"))
        }
        Some(_) => Probe::Ready,
        None => Probe::NotYet("the answer was not a valid HTTP status line".into()),
    }
}

/// Probes until ready, `deadline`, or `gone()` says the container stopped.
/// Returns the last thing seen when not ready.
pub async fn wait_ready<F, Fut>(
    upstream: SocketAddr,
    path: &str,
    require_success: bool,
    deadline: Instant,
    mut still_running: F,
) -> Result<Duration, String>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), String>>,
{
    let started = Instant::now();
    let mut interval = FIRST_INTERVAL;
    let mut next_liveness_check = started + Duration::from_millis(250);
    loop {
        let last = match probe(upstream, path, require_success).await {
            Probe::Ready => return Ok(started.elapsed()),
            Probe::NotYet(why) => why,
        };
        let now = Instant::now();
        if now >= deadline {
            return Err(format!(
                "not ready after {:?}; last probe: {last}",
                started.elapsed()
            ));
        }
        if now >= next_liveness_check {
            still_running().await?;
            next_liveness_check = now + Duration::from_millis(500);
        }
        tokio::time::sleep(interval.min(deadline - now)).await;
        interval = (interval * 3 / 2).min(MAX_INTERVAL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    #[test]
    fn judges_status_lines() {
        assert_eq!(judge(b"HTTP/1.1 200", true), Probe::Ready);
        assert_eq!(judge(b"HTTP/1.1 404", true), Probe::Ready);
        assert_eq!(judge(b"HTTP/1.1 503", false), Probe::Ready);
        assert!(matches!(judge(b"HTTP/1.1 503", true), Probe::NotYet(_)));
        assert!(matches!(judge(b"", false), Probe::NotYet(_)));
        assert_eq!(judge(b"SSH-2.0-Open", false), Probe::Ready);
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
        assert!(matches!(probe(addr, "/", false).await, Probe::NotYet(_)));
    }

    #[tokio::test]
    async fn an_http_answer_is_ready_and_waiting_stops_when_the_container_dies() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let mut buf = [0u8; 512];
                let _ = stream.read(&mut buf).await;
                let _ = stream.write_all(b"HTTP/1.1 204 No Content\r\n\r\n").await;
            }
        });
        assert_eq!(probe(addr, "/", true).await, Probe::Ready);

        let closed = TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap()
            .local_addr()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        let result = wait_ready(closed, "/", false, deadline, || async {
            Err("exited with code 3".to_string())
        })
        .await;
        assert_eq!(result, Err("exited with code 3".to_string()));
    }

    #[tokio::test]
    async fn a_connect_nobody_answers_is_not_yet_instead_of_a_hang() {
        // A full accept queue drops new SYNs, as an address nobody holds does: connect hangs.
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let listener = socket.listen(1).unwrap();
        let addr = listener.local_addr().unwrap();
        let mut queued = Vec::new();
        for _ in 0..4 {
            if let Ok(Ok(stream)) = timeout(CONNECT_TIMEOUT, TcpStream::connect(addr)).await {
                queued.push(stream);
            }
        }
        // The guard only stops a hang (the kernel's own retries last two minutes).
        let seen = timeout(Duration::from_secs(30), probe(addr, "/", false)).await;
        assert!(matches!(seen, Ok(Probe::NotYet(_))), "{seen:?}");
        drop((listener, queued));
    }
}
