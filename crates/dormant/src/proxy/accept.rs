//! Serving the client connections one proxy thread is handed: the HTTP/1 limits of
//! each connection (head time, size and field count, idle time), and the
//! drain at shutdown.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};

use super::budget::ConnectionSlot;
use super::head_timer::{HeadClock, HeadTimer, TimedIo};
use super::spread::Handed;
use super::{Client, Proxy};

/// hyper's own default: up to this many fields it parses a head on the
/// stack; any other limit costs a heap allocation per request.
const HYPER_DEFAULT_MAX_HEADERS: usize = 100;
/// The smallest read/write buffer per connection; at least a whole head.
const MIN_CONNECTION_BUFFER: usize = 64 * 1024;

impl Proxy {
    /// Serves the connections handed to this thread (see `spread`) until
    /// `shutdown` completes or no more come, then lets in-flight requests
    /// finish for up to `drain`.
    pub async fn run(
        self: Arc<Self>,
        mut inbox: mpsc::UnboundedReceiver<Handed>,
        shutdown: impl Future<Output = ()>,
        drain: Duration,
    ) {
        // Every connection task holds a clone of `open_tx`; when all are
        // dropped, `open_rx` says the drain is over.
        let (open_tx, mut open_rx) = mpsc::channel::<()>(1);
        let (stop_tx, stop_rx) = watch::channel(false);
        let builder = self.connection_builder();
        tokio::pin!(shutdown);
        loop {
            let Handed {
                stream,
                peer: client_addr,
                slot,
            } = tokio::select! {
                handed = inbox.recv() => match handed {
                    Some(handed) => handed,
                    None => break,
                },
                () = &mut shutdown => break,
            };
            let stream = match TcpStream::from_std(stream) {
                Ok(stream) => stream,
                Err(e) => {
                    tracing::warn!(client = %client_addr, error = %e, "cannot serve a client connection on this proxy thread");
                    continue;
                }
            };
            let _ = stream.set_nodelay(true);
            let trusted = self.limits.trusted_proxies.trusts(client_addr.ip());
            let client = Arc::new(Client::new(client_addr, trusted));
            let proxy = self.clone();
            let service = service_fn(move |req| {
                let proxy = proxy.clone();
                let client = client.clone();
                async move { proxy.handle(&client, req).await }
            });
            let (io, timer) = self.timed(stream, slot);
            let mut builder = builder.clone();
            let connection = builder
                .timer(timer)
                .serve_connection(TokioIo::new(io), service)
                .with_upgrades();
            let mut stop_rx = stop_rx.clone();
            let open = open_tx.clone();
            tokio::spawn(async move {
                let _open = open;
                tokio::pin!(connection);
                let result = tokio::select! {
                    result = connection.as_mut() => result,
                    () = async { let _ = stop_rx.wait_for(|stop| *stop).await; } => {
                        // Finish the request in flight, then close.
                        connection.as_mut().graceful_shutdown();
                        connection.await
                    }
                };
                if let Err(e) = result {
                    tracing::debug!(client = %client_addr, error = %e, "proxy connection ended with an error");
                }
            });
        }
        drop(inbox);
        let _ = stop_tx.send(true);
        drop(open_tx);
        if tokio::time::timeout(drain, open_rx.recv()).await.is_err() {
            tracing::warn!(
                ?drain,
                "proxy: some connections were still open after the drain period"
            );
        }
    }

    /// The HTTP/1 settings every client connection shares; each connection
    /// adds its own timer.
    fn connection_builder(&self) -> hyper::server::conn::http1::Builder {
        let limits = &self.limits;
        let mut builder = hyper::server::conn::http1::Builder::new();
        // Past either limit hyper answers 431 and closes.
        builder.max_header_size(limits.max_request_head);
        if limits.max_request_headers != HYPER_DEFAULT_MAX_HEADERS {
            builder.max_headers(limits.max_request_headers);
        }
        builder.max_buf_size(limits.max_request_head.max(MIN_CONNECTION_BUFFER));
        builder.header_read_timeout(limits.header_timeout);
        builder
    }

    /// The connection's socket and the timer that bounds its heads and its
    /// idle time.
    fn timed(&self, stream: TcpStream, slot: ConnectionSlot) -> (TimedIo<TcpStream>, HeadTimer) {
        let clock = HeadClock::new(
            self.limits.header_timeout,
            self.limits.idle_connection_timeout,
        );
        (TimedIo::new(stream, clock.clone(), slot), HeadTimer(clock))
    }
}
