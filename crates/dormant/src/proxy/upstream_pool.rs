//! One proxy thread's keep-alive connections to its upstream containers:
//! hyper's bare HTTP/1 connections, kept per upstream address, reused in
//! last-used-first order.
//!
//! Why not hyper-util's pooled client: each request went through its
//! checkout futures, its connector service and a spawned "when ready" task,
//! and its pool is shared behind locks by design. A proxy thread owns this
//! pool alone (see `serve_per_core`), so a checkout is a short scan of a
//! vector under an uncontended lock, and a connection goes back to the pool
//! as soon as its response head arrives: hyper only reports it ready again
//! once that response's body has been read to the end, and a checkout only
//! takes ready ones.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http::{Request, Response};
use hyper::body::Incoming;
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::sync::{oneshot, OwnedSemaphorePermit, Semaphore};

use super::body::RequestBody;

/// What the pool keeps and for how long.
#[derive(Debug, Clone, Copy)]
pub struct PoolSettings {
    /// Connections kept per upstream and thread; more are closed after
    /// their response.
    pub max_per_upstream: usize,
    /// A connection unused for this long is closed.
    pub idle_timeout: Duration,
    /// Longest wait for a TCP connection to a container.
    pub connect_timeout: Duration,
    /// New connections to one upstream this thread may have whose first
    /// answer has not come yet (up to `first_answer_turn` each); more
    /// requests wait for a turn, or for a pooled connection to come free.
    pub max_connecting: usize,
    /// How long a new connection keeps its turn while its first request
    /// waits for an answer: long enough for the app to accept it, short
    /// enough that slow requests (long polls) don't hold the others back.
    pub first_answer_turn: Duration,
    /// A pooled connection idle at least this long may be closed by the
    /// app's keep-alive timer just as a request goes out on it: an
    /// idempotent request without a body is then kept, to go again once
    /// on a new connection. (Busier connections skip that copy.)
    pub replay_after_idle: Duration,
}

impl Default for PoolSettings {
    fn default() -> Self {
        Self {
            max_per_upstream: 256,
            idle_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(5),
            max_connecting: 32,
            first_answer_turn: Duration::from_millis(250),
            replay_after_idle: Duration::from_secs(1),
        }
    }
}

/// Every this many checkouts, closed and expired connections of all
/// upstreams are dropped (a container that went to sleep leaves only closed
/// ones behind, and nobody checks its address out again).
const SWEEP_EVERY: u32 = 4096;

struct Pooled {
    sender: http1::SendRequest<RequestBody>,
    /// When it was last handed out (or opened).
    used_at: Instant,
}

/// One upstream's connections.
struct Upstream {
    pooled: Vec<Pooled>,
    /// Permits to open a connection (see `PoolSettings::max_connecting`).
    connecting: Arc<Semaphore>,
}

#[derive(Default)]
struct Upstreams {
    by_address: HashMap<SocketAddr, Upstream>,
    checkouts_since_sweep: u32,
}

/// Why a request got no answer from its container.
#[derive(Debug)]
pub enum SendError {
    /// No TCP connection could be made (nothing was sent).
    Connect(std::io::Error),
    /// The connection failed before a complete answer.
    Request(hyper::Error),
}

impl SendError {
    pub fn is_connect(&self) -> bool {
        matches!(self, Self::Connect(_))
    }
}

impl std::fmt::Display for SendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Connect(e) => write!(f, "tcp connect error: {e}"),
            Self::Request(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for SendError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Connect(e) => Some(e),
            Self::Request(e) => e.source(),
        }
    }
}

/// One thread's connections, by upstream address.
pub struct UpstreamPool {
    settings: PoolSettings,
    upstreams: Mutex<Upstreams>,
}

impl UpstreamPool {
    pub fn new(settings: PoolSettings) -> Self {
        Self {
            settings,
            upstreams: Mutex::new(Upstreams::default()),
        }
    }

    /// Sends `req` (origin-form URI, `Host` set) to `upstream` over a pooled
    /// connection, or a new one. When the app closed a pooled connection
    /// while it was idle, the request goes again once on a new connection:
    /// always if it was not written yet, and if it was, when it is
    /// idempotent and has no body (see `PoolSettings::replay_after_idle`).
    /// `reusable` is false for upgrades: that connection becomes the tunnel
    /// and never returns to the pool.
    /// A request that opened a new connection also gets its [`Turn`], to
    /// keep with the response body.
    pub async fn send(
        &self,
        upstream: SocketAddr,
        req: Request<RequestBody>,
        reusable: bool,
    ) -> Result<(Response<Incoming>, Option<Turn>), SendError> {
        let req = match self.checkout(upstream) {
            Ok(Checkout { mut sender, idle }) => {
                let again = if idle >= self.settings.replay_after_idle {
                    replayable(&req)
                } else {
                    None
                };
                match sender.try_send_request(req).await {
                    Ok(response) => {
                        if reusable {
                            self.give_back(upstream, sender);
                        }
                        return Ok((response, None));
                    }
                    Err(mut failed) => match failed.take_message() {
                        Some(unsent) => unsent,
                        None => {
                            let error = failed.into_error();
                            match again {
                                Some(copy) if closed_before_answer(&error) => {
                                    tracing::debug!(%upstream, %error, "an idle upstream connection was closed under a request; sending it again");
                                    copy
                                }
                                _ => return Err(SendError::Request(error)),
                            }
                        }
                    },
                }
            }
            Err(_) => req,
        };
        let (mut sender, turn) = self.connect_or_reuse(upstream).await?;
        let turn = turn.map(|permit| Turn::start(permit, self.settings.first_answer_turn));
        let response = sender.send_request(req).await.map_err(SendError::Request)?;
        if reusable {
            self.give_back(upstream, sender);
        }
        Ok((response, turn))
    }

    /// A new connection to `upstream` with its turn (see
    /// `PoolSettings::max_connecting`), or a pooled one that came free while
    /// this request waited for a turn. Why turns: a herd of requests
    /// released at once by a wake opened a connection each, faster than the
    /// just-started app accepted them; its accept queue (often 128)
    /// overflowed and the rest waited a second in SYN retries. In turns,
    /// most reuse the first connections.
    async fn connect_or_reuse(
        &self,
        upstream: SocketAddr,
    ) -> Result<
        (
            http1::SendRequest<RequestBody>,
            Option<OwnedSemaphorePermit>,
        ),
        SendError,
    > {
        let connecting = match self.checkout(upstream) {
            Ok(pooled) => return Ok((pooled.sender, None)),
            Err(connecting) => connecting,
        };
        // The semaphore is never closed.
        let turn = connecting.acquire_owned().await.ok();
        if let Ok(pooled) = self.checkout(upstream) {
            return Ok((pooled.sender, None));
        }
        Ok((self.connect(upstream).await?, turn))
    }

    /// The most recently used ready connection to `upstream`, or else the
    /// permits to open a new one; closed and expired ones found on the way
    /// are dropped.
    fn checkout(&self, upstream: SocketAddr) -> Result<Checkout, Arc<Semaphore>> {
        let now = Instant::now();
        let mut upstreams = self.lock();
        upstreams.checkouts_since_sweep += 1;
        if upstreams.checkouts_since_sweep >= SWEEP_EVERY {
            upstreams.checkouts_since_sweep = 0;
            let idle_timeout = self.settings.idle_timeout;
            let max_connecting = self.settings.max_connecting;
            upstreams.by_address.retain(|_, upstream| {
                upstream.pooled.retain(|p| usable(p, now, idle_timeout));
                !upstream.pooled.is_empty()
                    || upstream.connecting.available_permits() < max_connecting
            });
        }
        let max_connecting = self.settings.max_connecting;
        let upstream = upstreams
            .by_address
            .entry(upstream)
            .or_insert_with(|| Upstream {
                pooled: Vec::new(),
                connecting: Arc::new(Semaphore::new(max_connecting)),
            });
        let pooled = &mut upstream.pooled;
        let mut index = pooled.len();
        while index > 0 {
            index -= 1;
            let candidate = &pooled[index];
            if !usable(candidate, now, self.settings.idle_timeout) {
                pooled.swap_remove(index);
                continue;
            }
            if candidate.sender.is_ready() {
                let pooled = pooled.swap_remove(index);
                return Ok(Checkout {
                    sender: pooled.sender,
                    idle: now.duration_since(pooled.used_at),
                });
            }
            // Busy: its response body is still being read.
        }
        Err(upstream.connecting.clone())
    }

    /// Keeps `sender` for the next request to `upstream`, unless the pool
    /// already holds as many as it may.
    fn give_back(&self, upstream: SocketAddr, sender: http1::SendRequest<RequestBody>) {
        let mut upstreams = self.lock();
        let Some(upstream) = upstreams.by_address.get_mut(&upstream) else {
            // Swept while its request was under way: nobody waits for it.
            return;
        };
        let pooled = &mut upstream.pooled;
        if pooled.len() < self.settings.max_per_upstream {
            pooled.push(Pooled {
                sender,
                used_at: Instant::now(),
            });
        }
    }

    async fn connect(
        &self,
        upstream: SocketAddr,
    ) -> Result<http1::SendRequest<RequestBody>, SendError> {
        let stream =
            tokio::time::timeout(self.settings.connect_timeout, TcpStream::connect(upstream))
                .await
                .map_err(|_| {
                    SendError::Connect(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        format!("no connection within {:?}", self.settings.connect_timeout),
                    ))
                })?
                .map_err(SendError::Connect)?;
        let _ = stream.set_nodelay(true);
        let (sender, connection) = http1::Builder::new()
            .handshake(TokioIo::new(stream))
            .await
            .map_err(SendError::Request)?;
        // The connection's own task reads and writes its socket, and notices
        // at once when the app closes it while idle.
        tokio::spawn(async move {
            if let Err(e) = connection.with_upgrades().await {
                tracing::debug!(%upstream, error = %e, "upstream connection ended with an error");
            }
        });
        Ok(sender)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Upstreams> {
        // Only this thread's tasks take it, and none panics while holding it.
        self.upstreams
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Connections held for `upstream` (ready or busy), for tests.
    #[cfg(test)]
    fn held(&self, upstream: SocketAddr) -> usize {
        self.lock()
            .by_address
            .get(&upstream)
            .map_or(0, |upstream| upstream.pooled.len())
    }
}

/// A new connection's turn (see `PoolSettings::max_connecting`): given back
/// when its first response has been read to the end — the connection then
/// takes the next waiting request, so a herd reuses it instead of opening
/// another — or `first_answer_turn` after the request went out, whichever
/// comes first, so slow answers (long polls, streams) don't hold the others.
#[derive(Debug)]
pub struct Turn {
    _done: oneshot::Sender<()>,
}

impl Turn {
    fn start(permit: OwnedSemaphorePermit, longest: Duration) -> Self {
        let (done, until_done) = oneshot::channel();
        // One timer task per new connection, not per request.
        tokio::spawn(async move {
            let _permit = permit;
            let _ = tokio::time::timeout(longest, until_done).await;
        });
        Self { _done: done }
    }
}

/// A pooled connection handed out, and how long it had been idle.
struct Checkout {
    sender: http1::SendRequest<RequestBody>,
    idle: Duration,
}

/// A copy of `req` to send again, if sending it twice does no harm: an
/// idempotent method (RFC 9110 §9.2.2) and no body.
fn replayable(req: &Request<RequestBody>) -> Option<Request<RequestBody>> {
    use http::Method;
    let idempotent = matches!(
        *req.method(),
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE | Method::PUT | Method::DELETE
    );
    if !idempotent || !hyper::body::Body::is_end_stream(req.body()) {
        return None;
    }
    let mut copy = Request::new(RequestBody::empty());
    *copy.method_mut() = req.method().clone();
    *copy.uri_mut() = req.uri().clone();
    *copy.version_mut() = req.version();
    *copy.headers_mut() = req.headers().clone();
    Some(copy)
}

/// Whether `error` says the app closed the connection before answering
/// (rather than answering badly, or too slowly).
fn closed_before_answer(error: &hyper::Error) -> bool {
    if error.is_incomplete_message() {
        return true;
    }
    let io = std::error::Error::source(error).and_then(|e| e.downcast_ref::<std::io::Error>());
    matches!(
        io.map(std::io::Error::kind),
        Some(std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::BrokenPipe)
    )
}

fn usable(pooled: &Pooled, now: Instant, idle_timeout: Duration) -> bool {
    !pooled.sender.is_closed() && now.duration_since(pooled.used_at) < idle_timeout
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    use bytes::Bytes;
    use http_body_util::BodyExt;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use super::*;
    use crate::proxy::budget::HoldBudget;

    fn get(path: &'static str) -> Request<RequestBody> {
        let ticket = HoldBudget::new(1, 0).try_hold(0).unwrap();
        Request::builder()
            .uri(path)
            .header("host", "test")
            .body(RequestBody::resumed(Bytes::new(), ticket, None))
            .unwrap()
    }

    /// A tiny HTTP/1.1 server: answers every request on a connection with
    /// "ok" (`/slow`: "ok", and "ok" again 300 ms later), counts
    /// connections, and closes each after `per_connection` answers
    /// (`usize::MAX`: never).
    async fn upstream(per_connection: usize) -> (SocketAddr, Arc<AtomicUsize>) {
        serve(per_connection, false).await
    }

    /// An app whose keep-alive timer fires just as a second request comes
    /// in on a connection: it reads that request and closes without an
    /// answer. Counts connections.
    async fn closes_under_the_second_request() -> (SocketAddr, Arc<AtomicUsize>) {
        serve(1, true).await
    }

    /// `upstream`'s server; with `under_next_request`, a connection is
    /// closed once the request after its last answer has been read.
    async fn serve(
        per_connection: usize,
        under_next_request: bool,
    ) -> (SocketAddr, Arc<AtomicUsize>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let connections = Arc::new(AtomicUsize::new(0));
        let counted = connections.clone();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                counted.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let mut buffer = vec![0u8; 4096];
                    let mut seen = Vec::new();
                    let mut answered = 0;
                    loop {
                        if answered == per_connection && !under_next_request {
                            return;
                        }
                        let Ok(read) = stream.read(&mut buffer).await else {
                            return;
                        };
                        if read == 0 {
                            return;
                        }
                        seen.extend_from_slice(&buffer[..read]);
                        while let Some(end) = seen.windows(4).position(|w| w == b"\r\n\r\n") {
                            if answered == per_connection {
                                return; // closes with the request unanswered
                            }
                            let slow = seen.starts_with(b"GET /slow");
                            seen.drain(..end + 4);
                            if slow {
                                let _ = stream
                                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\nok")
                                    .await;
                                tokio::time::sleep(Duration::from_millis(300)).await;
                                let _ = stream.write_all(b"ok").await;
                            } else {
                                let _ = stream
                                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                                    .await;
                            }
                            answered += 1;
                        }
                    }
                });
            }
        });
        (address, connections)
    }

    async fn body_of(response: Response<Incoming>) -> Bytes {
        response.into_body().collect().await.unwrap().to_bytes()
    }

    #[tokio::test]
    async fn a_connection_is_reused_once_its_response_was_read() {
        let (address, connections) = upstream(usize::MAX).await;
        let pool = UpstreamPool::new(PoolSettings::default());
        for _ in 0..5 {
            let response = pool.send(address, get("/"), true).await.unwrap().0;
            assert_eq!(body_of(response).await, "ok");
            // Let the connection's task see the end of the response.
            tokio::task::yield_now().await;
        }
        assert_eq!(connections.load(Ordering::SeqCst), 1);
        assert_eq!(pool.held(address), 1);
    }

    #[tokio::test]
    async fn a_busy_connection_is_not_handed_out() {
        let (address, connections) = upstream(usize::MAX).await;
        let pool = UpstreamPool::new(PoolSettings::default());
        // The first response's body has not all arrived: its connection is
        // busy.
        let first = pool.send(address, get("/slow"), true).await.unwrap().0;
        let second = pool.send(address, get("/b"), true).await.unwrap().0;
        assert_eq!(connections.load(Ordering::SeqCst), 2);
        assert_eq!(body_of(first).await, "okok");
        assert_eq!(body_of(second).await, "ok");
    }

    #[tokio::test]
    async fn a_connection_the_app_closed_is_replaced_and_the_request_still_answered() {
        // The app closes every connection after one answer, as some do
        // after a keep-alive timeout.
        let (address, connections) = upstream(1).await;
        let pool = UpstreamPool::new(PoolSettings::default());
        for _ in 0..3 {
            let response = pool.send(address, get("/"), true).await.unwrap().0;
            assert_eq!(body_of(response).await, "ok");
        }
        assert_eq!(connections.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn an_upgrade_connection_never_returns_to_the_pool() {
        let (address, _) = upstream(usize::MAX).await;
        let pool = UpstreamPool::new(PoolSettings::default());
        let response = pool.send(address, get("/"), false).await.unwrap().0;
        assert_eq!(body_of(response).await, "ok");
        assert_eq!(pool.held(address), 0);
    }

    #[tokio::test]
    async fn at_most_max_per_upstream_connections_are_kept() {
        let (address, _) = upstream(usize::MAX).await;
        let pool = UpstreamPool::new(PoolSettings {
            max_per_upstream: 2,
            ..PoolSettings::default()
        });
        let mut open = Vec::new();
        for _ in 0..4 {
            open.push(pool.send(address, get("/slow"), true).await.unwrap().0);
        }
        assert_eq!(pool.held(address), 2);
    }

    #[tokio::test]
    async fn new_connections_wait_for_a_turn_and_reuse_those_that_came_free() {
        let (address, connections) = upstream(usize::MAX).await;
        let pool = Arc::new(UpstreamPool::new(PoolSettings {
            max_connecting: 4,
            ..PoolSettings::default()
        }));
        // A herd of 100 at once: at most 4 new connections without an
        // answer at a time, and many reuse them as they come free (without
        // turns, each of the 100 opened its own).
        let herd: Vec<_> = (0..100)
            .map(|_| {
                let pool = pool.clone();
                tokio::spawn(async move {
                    // As the proxy does: the turn goes with the body.
                    let (response, _turn) = pool.send(address, get("/"), true).await.unwrap();
                    body_of(response).await
                })
            })
            .collect();
        for answer in herd {
            assert_eq!(answer.await.unwrap(), "ok");
        }
        let opened = connections.load(Ordering::SeqCst);
        assert!(opened <= 50, "{opened} connections for a herd of 100");
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_first_answer_gives_its_turn_up() {
        let (address, connections) = upstream(usize::MAX).await;
        let pool = Arc::new(UpstreamPool::new(PoolSettings {
            max_connecting: 1,
            ..PoolSettings::default()
        }));
        // `/slow` takes 300 ms to finish; its turn ends at 250 ms, so the
        // second request opens its own connection without waiting for it.
        let slow = {
            let pool = pool.clone();
            tokio::spawn(async move {
                let (response, turn) = pool.send(address, get("/slow"), true).await.unwrap();
                let body = body_of(response).await;
                drop(turn);
                body
            })
        };
        tokio::task::yield_now().await;
        let second = pool.send(address, get("/"), true).await.unwrap().0;
        assert_eq!(body_of(second).await, "ok");
        assert_eq!(connections.load(Ordering::SeqCst), 2);
        assert_eq!(slow.await.unwrap(), "okok");
    }

    fn replaying_pool() -> UpstreamPool {
        UpstreamPool::new(PoolSettings {
            replay_after_idle: Duration::ZERO,
            ..PoolSettings::default()
        })
    }

    #[tokio::test]
    async fn an_idempotent_request_goes_again_when_the_app_closed_its_idle_connection() {
        let (address, connections) = closes_under_the_second_request().await;
        let pool = replaying_pool();
        let first = pool.send(address, get("/"), true).await.unwrap().0;
        assert_eq!(body_of(first).await, "ok");
        tokio::task::yield_now().await;
        // Goes out on the pooled connection, which the app closes under it;
        // answered on a new one.
        let second = pool.send(address, get("/"), true).await.unwrap().0;
        assert_eq!(body_of(second).await, "ok");
        assert_eq!(connections.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_post_is_not_sent_twice() {
        let (address, connections) = closes_under_the_second_request().await;
        let pool = replaying_pool();
        let first = pool.send(address, get("/"), true).await.unwrap().0;
        assert_eq!(body_of(first).await, "ok");
        tokio::task::yield_now().await;
        let mut post = get("/");
        *post.method_mut() = http::Method::POST;
        let error = pool.send(address, post, true).await.unwrap_err();
        assert!(!error.is_connect(), "{error:?}");
        assert_eq!(connections.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_busy_connection_is_not_replayed_by_default() {
        // Used a moment ago: the default skips the copy, so the request
        // fails like any broken answer.
        let (address, _) = closes_under_the_second_request().await;
        let pool = UpstreamPool::new(PoolSettings::default());
        let first = pool.send(address, get("/"), true).await.unwrap().0;
        assert_eq!(body_of(first).await, "ok");
        tokio::task::yield_now().await;
        assert!(pool.send(address, get("/"), true).await.is_err());
    }

    #[tokio::test]
    async fn a_refused_connection_is_a_connect_error() {
        let closed = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = closed.local_addr().unwrap();
        drop(closed);
        let pool = UpstreamPool::new(PoolSettings::default());
        let error = pool.send(address, get("/"), true).await.unwrap_err();
        assert!(error.is_connect(), "{error:?}");
    }
}
