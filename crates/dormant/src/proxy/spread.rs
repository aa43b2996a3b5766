//! Accepting client connections for all proxy threads: one accept loop hands
//! each connection to the thread that has the fewest open.
//!
//! Why not every thread accepting on the shared listener: each thread's
//! poller is woken for a new connection and the first one awake takes every
//! connection queued, so a burst (a load generator's 64, a herd of 1,000)
//! landed on one thread while the other idled — measured: 0 and 216 CPU
//! ticks on the two threads under `wrk -c64`. `SO_REUSEPORT` listeners would
//! spread by hash, but would also let a second process bind the same port
//! and silently take a share of the connections.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use tokio::net::TcpListener;
use tokio::sync::mpsc;

use super::budget::{ConnectionLimit, ConnectionSlot};

/// Connections accepted in one go before the accept loop lets its
/// runtime's other tasks (the API, the lifecycle) run.
const ACCEPT_BATCH: usize = 64;

/// An accepted connection on its way to a proxy thread.
pub struct Handed {
    pub stream: std::net::TcpStream,
    pub peer: SocketAddr,
    /// Its `--max-connections` slot, which also counts it against its
    /// thread until the socket closes.
    pub slot: ConnectionSlot,
}

/// Where one proxy thread receives its connections.
pub struct Inbox {
    sender: mpsc::UnboundedSender<Handed>,
    /// Connections handed to the thread and not closed yet.
    open: Arc<AtomicUsize>,
}

/// A thread's inbox and the receiving end its accept loop reads. Unbounded
/// in type only: every connection in it holds a `--max-connections` slot.
pub fn inbox() -> (Inbox, mpsc::UnboundedReceiver<Handed>) {
    let (sender, receiver) = mpsc::unbounded_channel();
    let inbox = Inbox {
        sender,
        open: Arc::new(AtomicUsize::new(0)),
    };
    (inbox, receiver)
}

/// Accepts on `listener` until `shutdown` completes, handing each
/// connection to the inbox with the fewest open connections. Past
/// `--max-connections` a connection is closed at once (counted in
/// `refused`): a full proxy must not take the API, the store or a wake
/// down with it. Dropping the inboxes at the end tells the threads that no
/// more connections come.
pub async fn spread(
    listener: std::net::TcpListener,
    inboxes: Vec<Inbox>,
    connections: Arc<ConnectionLimit>,
    refused: Counter,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    listener.set_nonblocking(true)?;
    let listener = TcpListener::from_std(listener)?;
    let mut next = 0usize;
    tokio::pin!(shutdown);
    loop {
        for _ in 0..ACCEPT_BATCH {
            let (stream, peer) = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        // Usually EMFILE: back off instead of spinning.
                        tracing::warn!(error = %e, "proxy accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
                () = &mut shutdown => return Ok(()),
            };
            let Some(slot) = connections.try_open() else {
                refused.inc();
                continue;
            };
            // Off this runtime's poller, onto the chosen thread's.
            let stream = match stream.into_std() {
                Ok(stream) => stream,
                Err(e) => {
                    tracing::debug!(client = %peer, error = %e, "cannot hand a client connection to a proxy thread");
                    continue;
                }
            };
            let inbox = &inboxes[least_loaded(&inboxes, next)];
            next = next.wrapping_add(1);
            inbox.open.fetch_add(1, Ordering::Relaxed);
            let slot = slot.counted_in(inbox.open.clone());
            // A thread that has stopped takes no more: the socket closes.
            let _ = inbox.sender.send(Handed { stream, peer, slot });
        }
        tokio::task::yield_now().await;
    }
}

/// The inbox with the fewest open connections; ties go round, starting at
/// `start`.
fn least_loaded(inboxes: &[Inbox], start: usize) -> usize {
    let count = inboxes.len();
    (0..count)
        .map(|offset| (start + offset) % count)
        .min_by_key(|&index| inboxes[index].open.load(Ordering::Relaxed))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inboxes(open: &[usize]) -> Vec<Inbox> {
        open.iter()
            .map(|&n| {
                let (inbox, _) = inbox();
                inbox.open.store(n, Ordering::Relaxed);
                inbox
            })
            .collect()
    }

    #[test]
    fn the_thread_with_fewest_open_connections_gets_the_next() {
        assert_eq!(least_loaded(&inboxes(&[3, 1, 2]), 0), 1);
        assert_eq!(least_loaded(&inboxes(&[0, 5]), 1), 0);
    }

    #[test]
    fn ties_go_round() {
        let even = inboxes(&[2, 2, 2]);
        assert_eq!(least_loaded(&even, 0), 0);
        assert_eq!(least_loaded(&even, 1), 1);
        assert_eq!(least_loaded(&even, 5), 2);
    }

    /// A burst of connections that all arrive before anyone serves them is
    /// split evenly, and a closed connection frees its thread's share.
    #[tokio::test]
    async fn a_burst_is_split_evenly_between_threads() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let (first, mut first_rx) = inbox();
        let (second, mut second_rx) = inbox();
        let first_open = first.open.clone();
        let limit = ConnectionLimit::new(100, Default::default());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let accepting = tokio::spawn(spread(
            listener,
            vec![first, second],
            limit,
            Counter::default(),
            async {
                let _ = stopped.await;
            },
        ));
        let mut clients = Vec::new();
        for _ in 0..20 {
            clients.push(tokio::net::TcpStream::connect(addr).await.unwrap());
        }
        let mut to_first = Vec::new();
        let mut to_second = Vec::new();
        while to_first.len() + to_second.len() < 20 {
            tokio::select! {
                Some(handed) = first_rx.recv() => to_first.push(handed),
                Some(handed) = second_rx.recv() => to_second.push(handed),
            }
        }
        assert_eq!((to_first.len(), to_second.len()), (10, 10));
        assert_eq!(first_open.load(Ordering::Relaxed), 10);
        to_first.truncate(4);
        assert_eq!(first_open.load(Ordering::Relaxed), 4);
        // The next ones go to the thread that now has fewer.
        for _ in 0..6 {
            clients.push(tokio::net::TcpStream::connect(addr).await.unwrap());
        }
        for _ in 0..6 {
            to_first.push(first_rx.recv().await.unwrap());
        }
        assert_eq!(first_open.load(Ordering::Relaxed), 10);
        stop.send(()).unwrap();
        accepting.await.unwrap().unwrap();
        assert!(
            first_rx.recv().await.is_none(),
            "the inboxes close at shutdown"
        );
    }

    #[tokio::test]
    async fn past_the_connection_cap_a_connection_is_closed_and_counted() {
        use tokio::io::AsyncReadExt;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let (only, mut only_rx) = inbox();
        let refused = Counter::default();
        tokio::spawn(spread(
            listener,
            vec![only],
            ConnectionLimit::new(1, Default::default()),
            refused.clone(),
            std::future::pending(),
        ));
        let _kept = tokio::net::TcpStream::connect(addr).await.unwrap();
        let held = only_rx.recv().await.unwrap();
        let mut turned_away = tokio::net::TcpStream::connect(addr).await.unwrap();
        let mut buf = [0u8; 1];
        assert_eq!(
            turned_away.read(&mut buf).await.unwrap(),
            0,
            "closed at once"
        );
        assert_eq!(refused.get(), 1);
        drop(held);
    }
}
