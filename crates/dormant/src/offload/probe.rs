//! Asking nginx where it sends a host now: one plain HTTP request to the
//! recipe's probe server (`return 200 $dormant_upstream;`), with the host
//! as `Host`. A new connection each time, so the answer comes from a worker
//! that accepts new connections, as the client's next request will.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

/// Longest one probe may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);
/// Time between probes while waiting for a reload.
const PROBE_INTERVAL: Duration = Duration::from_millis(20);
/// Most bytes read of the probe's answer.
const ANSWER_LIMIT: usize = 1024;

/// nginx's probe listener (`--nginx-probe`).
#[derive(Debug, Clone)]
pub struct NginxProbe {
    addr: SocketAddr,
}

impl NginxProbe {
    pub fn new(addr: SocketAddr) -> Self {
        Self { addr }
    }

    /// The upstream nginx maps `host` to now (the body of the probe's
    /// answer). `host` must be a plain hostname (see
    /// [`super::nginx_map::is_plain_hostname`]).
    pub async fn route_of(&self, host: &str) -> Result<String, String> {
        if !super::nginx_map::is_plain_hostname(host) {
            return Err(format!("`{host}` is not a hostname nginx's map holds"));
        }
        tokio::time::timeout(PROBE_TIMEOUT, self.ask(host))
            .await
            .unwrap_or_else(|_| {
                Err(format!(
                    "nginx's probe at {} did not answer within {PROBE_TIMEOUT:?}",
                    self.addr
                ))
            })
    }

    async fn ask(&self, host: &str) -> Result<String, String> {
        let addr = self.addr;
        let mut stream = TcpStream::connect(addr)
            .await
            .map_err(|e| format!("cannot reach nginx's probe at {addr} (--nginx-probe): {e}"))?;
        let request = format!("GET / HTTP/1.0\r\nHost: {host}\r\n\r\n");
        stream
            .write_all(request.as_bytes())
            .await
            .map_err(|e| format!("nginx's probe at {addr}: {e}"))?;
        let mut answer = Vec::new();
        (&mut stream)
            .take(ANSWER_LIMIT as u64)
            .read_to_end(&mut answer)
            .await
            .map_err(|e| format!("nginx's probe at {addr}: {e}"))?;
        let answer = String::from_utf8_lossy(&answer);
        let (head, body) = answer
            .split_once("\r\n\r\n")
            .ok_or_else(|| format!("nginx's probe at {addr} sent no whole answer"))?;
        let status = head.split_whitespace().nth(1);
        if status != Some("200") {
            return Err(format!(
                "nginx's probe at {addr} answered `{}`",
                head.lines().next().unwrap_or_default()
            ));
        }
        Ok(body.trim().to_owned())
    }

    /// Waits until nginx sends `host` to `upstream` (the map's value for
    /// it is `upstream`), asking every 20 ms for at most `limit`. False when
    /// it did not in time (a reload still to come, or failing).
    pub async fn wait_routed(&self, host: &str, upstream: &str, limit: Duration) -> bool {
        self.wait_for(host, limit, |route| route == upstream).await
    }

    /// Waits until nginx no longer sends `host` to `upstream`, as
    /// [`Self::wait_routed`] does for the opposite.
    pub async fn wait_unrouted(&self, host: &str, upstream: &str, limit: Duration) -> bool {
        self.wait_for(host, limit, |route| route != upstream).await
    }

    async fn wait_for(&self, host: &str, limit: Duration, done: impl Fn(&str) -> bool) -> bool {
        let deadline = Instant::now() + limit;
        loop {
            match self.route_of(host).await {
                Ok(route) if done(&route) => return true,
                Ok(_) => {}
                Err(why) => tracing::debug!(host, %why, "probing nginx"),
            }
            if Instant::now() + PROBE_INTERVAL >= deadline {
                return false;
            }
            tokio::time::sleep(PROBE_INTERVAL).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    /// A probe server answering each connection with `answer`, recording the
    /// request heads it got.
    async fn server(answer: &'static str) -> (SocketAddr, tokio::sync::mpsc::Receiver<String>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (heads, rx) = tokio::sync::mpsc::channel(16);
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let mut head = vec![0u8; 512];
                let n = stream.read(&mut head).await.unwrap();
                let _ = heads
                    .send(String::from_utf8_lossy(&head[..n]).into_owned())
                    .await;
                stream.write_all(answer.as_bytes()).await.unwrap();
            }
        });
        (addr, rx)
    }

    #[tokio::test]
    async fn the_answer_is_the_body_of_a_200() {
        let (addr, mut heads) =
            server("HTTP/1.1 200 OK\r\nContent-Length: 15\r\n\r\n172.18.0.5:8080").await;
        let probe = NginxProbe::new(addr);
        assert_eq!(
            probe.route_of("a.localhost").await.unwrap(),
            "172.18.0.5:8080"
        );
        let head = heads.recv().await.unwrap();
        assert!(head.contains("\r\nHost: a.localhost\r\n"), "{head}");
        assert!(
            probe
                .wait_routed("a.localhost", "172.18.0.5:8080", PROBE_TIMEOUT)
                .await
        );
        assert!(
            probe.route_of("a.localhost\r\nX: y").await.is_err(),
            "never written into a request"
        );
    }

    #[tokio::test]
    async fn another_route_or_an_error_is_not_routed() {
        let (addr, _heads) = server("HTTP/1.1 404 Not Found\r\n\r\n").await;
        let probe = NginxProbe::new(addr);
        assert!(probe
            .route_of("a.localhost")
            .await
            .unwrap_err()
            .contains("404"));
        let (addr, _heads) = server("HTTP/1.1 200 OK\r\n\r\n127.0.0.1:8080/.dormant/wake").await;
        let probe = NginxProbe::new(addr);
        assert!(
            !probe
                .wait_routed("a.localhost", "172.18.0.5:8080", Duration::from_millis(100))
                .await
        );
    }
}
