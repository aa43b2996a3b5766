//! What dormant's listeners need from the host: enough open files for
//! `--max-connections`, a deep accept queue for bursts of connections, and a
//! separate cap for the API's connections so the API answers while the proxy
//! is full.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use anyhow::bail;
use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Proxy connections when `--max-connections` is not given.
pub const DEFAULT_MAX_CONNECTIONS: usize = 10_000;
/// Files for everything but client connections: the Docker socket's
/// connections, SQLite's files, snapshots being written or read, listeners,
/// each runtime's poller and wakers, and idle pooled upstream connections.
pub const FILES_FOR_THE_REST: u64 = 512;
/// Files one proxied connection may need: the client's and the upstream's.
pub const FILES_PER_CONNECTION: u64 = 2;

/// Connections the kernel may queue on the proxy's listener before dormant
/// accepts them (capped by `net.core.somaxconn`). The standard library
/// asks for 128: a herd of 1,000 clients arriving at once overflowed it and
/// the rest waited a second in SYN retries.
pub const PROXY_ACCEPT_BACKLOG: u32 = 4096;

/// The proxy's listening socket on `addr`, with [`PROXY_ACCEPT_BACKLOG`].
/// Must be called inside a Tokio runtime.
pub fn bind_proxy(addr: std::net::SocketAddr) -> io::Result<std::net::TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    // As the standard library's bind does: a restart can bind again at once.
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(PROXY_ACCEPT_BACKLOG)?.into_std()
}

/// Raises the open-file limit to its hard limit and works out how many
/// proxy connections it holds next to `api_connections`: `wanted` if given
/// (an error if the limit cannot hold it), else the default or as many as
/// fit, whichever is less.
pub fn size_connections(wanted: Option<usize>, api_connections: usize) -> anyhow::Result<usize> {
    let files = raise_open_file_limit();
    let reserved = FILES_FOR_THE_REST + api_connections as u64;
    let fit = usize::try_from(files.saturating_sub(reserved) / FILES_PER_CONNECTION)
        .unwrap_or(usize::MAX);
    match wanted {
        Some(wanted) if wanted > fit => bail!(
            "--max-connections {wanted} needs about {} open files ({FILES_PER_CONNECTION} per connection, \
             plus {reserved} for the API and the rest), but this process may open only {files}; \
             raise the hard limit (`ulimit -Hn`, systemd's LimitNOFILE=) or lower --max-connections to {fit} or less",
            wanted as u64 * FILES_PER_CONNECTION + reserved
        ),
        Some(wanted) => Ok(wanted),
        None if fit < DEFAULT_MAX_CONNECTIONS => {
            if fit == 0 {
                bail!(
                    "this process may open only {files} files, too few to proxy anything next to \
                     {reserved} for the API and the rest; raise the limit (`ulimit -Hn`, systemd's LimitNOFILE=)"
                );
            }
            tracing::warn!(
                open_files = files,
                max_connections = fit,
                "the open-file limit holds fewer proxy connections than the default {DEFAULT_MAX_CONNECTIONS}"
            );
            Ok(fit)
        }
        None => Ok(DEFAULT_MAX_CONNECTIONS),
    }
}

/// Sets the soft open-file limit to the hard one; returns the limit now in
/// force.
fn raise_open_file_limit() -> u64 {
    let limit = getrlimit(Resource::Nofile);
    let soft = limit.current.unwrap_or(u64::MAX);
    let Some(hard) = limit.maximum else {
        // Unlimited: no raise is needed, nothing to hold back.
        return soft;
    };
    if soft >= hard {
        return soft;
    }
    match setrlimit(
        Resource::Nofile,
        Rlimit {
            current: Some(hard),
            maximum: Some(hard),
        },
    ) {
        Ok(()) => hard,
        Err(e) => {
            tracing::warn!(soft, hard, error = %e, "cannot raise the open-file limit");
            soft
        }
    }
}

/// A listener that holds at most `max` connections open; more wait in the
/// kernel's backlog until one closes.
pub struct CappedListener {
    listener: TcpListener,
    slots: Arc<Semaphore>,
}

impl CappedListener {
    pub fn new(listener: TcpListener, max: usize) -> Self {
        Self {
            listener,
            slots: Arc::new(Semaphore::new(max)),
        }
    }
}

/// The address of the peer on an API connection, for handlers that ask
/// (`ConnectInfo<ApiPeer>`).
#[derive(Debug, Clone, Copy)]
pub struct ApiPeer(pub std::net::SocketAddr);

impl axum::extract::connect_info::Connected<axum::serve::IncomingStream<'_, CappedListener>>
    for ApiPeer
{
    fn connect_info(stream: axum::serve::IncomingStream<'_, CappedListener>) -> Self {
        Self(*stream.remote_addr())
    }
}

impl axum::serve::Listener for CappedListener {
    type Io = CappedStream;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            // The semaphore is never closed, so this only waits.
            let Ok(slot) = self.slots.clone().acquire_owned().await else {
                continue;
            };
            match self.listener.accept().await {
                Ok((stream, addr)) => {
                    return (
                        CappedStream {
                            stream,
                            _slot: slot,
                        },
                        addr,
                    )
                }
                Err(e) => {
                    // Usually EMFILE: back off instead of spinning.
                    tracing::warn!(error = %e, "API accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            }
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.listener.local_addr()
    }
}

/// An accepted API connection; its slot is free again once it is dropped.
pub struct CappedStream {
    stream: TcpStream,
    _slot: OwnedSemaphorePermit,
}

impl AsyncRead for CappedStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for CappedStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::serve::Listener;
    use tokio::io::AsyncWriteExt;

    #[test]
    fn connections_are_sized_to_the_open_file_limit() {
        let files = raise_open_file_limit();
        let fit = ((files - FILES_FOR_THE_REST - 10) / FILES_PER_CONNECTION) as usize;
        assert_eq!(size_connections(Some(fit), 10).unwrap(), fit);
        let err = size_connections(Some(fit + 1), 10).unwrap_err().to_string();
        assert!(err.contains("--max-connections"), "{err}");
        assert_eq!(
            size_connections(None, 10).unwrap(),
            fit.min(DEFAULT_MAX_CONNECTIONS)
        );
    }

    #[tokio::test]
    async fn the_proxy_listener_queues_more_than_the_default_128_connections() {
        let listener = bind_proxy("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = listener.local_addr().unwrap();
        // Nobody accepts: every connect past the backlog would hang in SYN
        // retries, so 300 connects all finishing shows the deeper queue.
        let mut open = Vec::new();
        for _ in 0..300 {
            let stream = tokio::time::timeout(
                std::time::Duration::from_millis(500),
                TcpStream::connect(addr),
            )
            .await
            .expect("a connect waited: the accept queue is full")
            .unwrap();
            open.push(stream);
        }
    }

    #[tokio::test]
    async fn a_capped_listener_accepts_again_once_a_connection_closes() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut capped = CappedListener::new(listener, 1);
        let addr = capped.local_addr().unwrap();
        let _a = TcpStream::connect(addr).await.unwrap();
        let _b = TcpStream::connect(addr).await.unwrap();
        let (mut first, _) = capped.accept().await;
        let second = tokio::time::timeout(std::time::Duration::from_millis(200), capped.accept());
        assert!(
            second.await.is_err(),
            "a second connection was accepted past the cap"
        );
        first.shutdown().await.unwrap();
        drop(first);
        let second = tokio::time::timeout(std::time::Duration::from_secs(5), capped.accept());
        assert!(second.await.is_ok(), "the freed slot was not reused");
    }
}
