//! How long a client connection may take to send a request head
//! (`--header-timeout`) and may sit idle between requests
//! (`--idle-connection-timeout`).
//!
//! hyper arms its header-read timer whenever it waits for a head: from the
//! accept, and again as soon as a response is done. Given our own timer it
//! asks us for that sleep, so we decide its deadline: the first head must be
//! complete `header_timeout` after the accept; a later one may wait
//! `idle_timeout` for its first byte, and must be complete `header_timeout`
//! after that byte. [`TimedIo`] notes when the first byte came. While a
//! request is in flight, a response streams or a connection is upgraded,
//! hyper waits for no head, so nothing here can cut it.
//!
//! One gap, bounded: a partial head pipelined behind a request in flight
//! arrived while no head was awaited, so it gets the idle timeout, not the
//! header timeout.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::budget::ConnectionSlot;
// tokio's clock, not std's: it is the one the timer wheel (and a paused
// test clock) runs on.
use tokio::time::Instant;

/// One connection's clock, shared by its timer and its IO.
#[derive(Debug)]
pub struct HeadClock {
    header_timeout: Duration,
    idle_timeout: Duration,
    accepted: Instant,
    /// Heads hyper has waited for, the current one included; also tells a
    /// stale sleep from the current one.
    heads: AtomicU32,
    /// Set while hyper waits for a head.
    waiting: AtomicBool,
    /// When the current head's first byte came, in nanoseconds after
    /// `accepted` plus one; zero until it comes.
    first_byte: AtomicU64,
    /// One timer entry per connection, re-armed for each head instead of a
    /// new one per request. Only this connection's task touches it, and
    /// never across an await, so the lock is never contended.
    sleep: Mutex<Pin<Box<tokio::time::Sleep>>>,
}

impl HeadClock {
    pub fn new(header_timeout: Duration, idle_timeout: Duration) -> Arc<Self> {
        let accepted = Instant::now();
        Arc::new(Self {
            header_timeout,
            idle_timeout,
            accepted,
            heads: AtomicU32::new(0),
            waiting: AtomicBool::new(false),
            first_byte: AtomicU64::new(0),
            sleep: Mutex::new(Box::pin(tokio::time::sleep_until(
                accepted + header_timeout,
            ))),
        })
    }

    /// Called on every read that returned bytes: the first one while hyper
    /// waits for a head starts that head's clock.
    fn saw_bytes(&self) {
        if self.waiting.load(Ordering::Relaxed) && self.first_byte.load(Ordering::Relaxed) == 0 {
            let since = self.accepted.elapsed().as_nanos();
            let since = u64::try_from(since).unwrap_or(u64::MAX - 1);
            self.first_byte.store(since + 1, Ordering::Relaxed);
        }
    }

    /// When the head hyper waits for (armed at `armed`) is out of time.
    fn deadline(&self, head: u32, armed: Instant) -> Instant {
        if head == 1 {
            return armed + self.header_timeout;
        }
        match self.first_byte.load(Ordering::Relaxed) {
            0 => armed + self.idle_timeout,
            since => self.accepted + Duration::from_nanos(since - 1) + self.header_timeout,
        }
    }
}

/// The timer hyper's connection asks for its header-read sleeps.
#[derive(Debug, Clone)]
pub struct HeadTimer(pub Arc<HeadClock>);

impl hyper::rt::Timer for HeadTimer {
    fn sleep(&self, duration: Duration) -> Pin<Box<dyn hyper::rt::Sleep>> {
        Box::pin(PlainSleep(Box::pin(tokio::time::sleep(duration))))
    }

    /// hyper starts waiting for a head. Its own deadline (now plus the
    /// header timeout) is replaced by ours.
    fn sleep_until(&self, _deadline: std::time::Instant) -> Pin<Box<dyn hyper::rt::Sleep>> {
        let clock = &self.0;
        let head = clock.heads.fetch_add(1, Ordering::Relaxed) + 1;
        clock.first_byte.store(0, Ordering::Relaxed);
        clock.waiting.store(true, Ordering::Relaxed);
        Box::pin(HeadSleep {
            clock: clock.clone(),
            head,
            armed: Instant::now(),
        })
    }
}

/// The wait for one request head.
struct HeadSleep {
    clock: Arc<HeadClock>,
    head: u32,
    armed: Instant,
}

impl Future for HeadSleep {
    type Output = ();

    /// The connection's one timer entry is moved only when the deadline that
    /// counts is earlier than the one it holds. Kept-alive requests push the
    /// deadline later each time; rather than moving the entry in tokio's
    /// timer wheel for every request, a timer that fires early is re-armed
    /// then. So a busy connection costs no timer-wheel work per request.
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let deadline = self.clock.deadline(self.head, self.armed);
        let mut sleep = self
            .clock
            .sleep
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        if sleep.deadline() > deadline {
            sleep.as_mut().reset(deadline);
        }
        loop {
            std::task::ready!(sleep.as_mut().poll(cx));
            if Instant::now() >= deadline {
                return Poll::Ready(());
            }
            // It fired for an earlier head's deadline: wait for this one's.
            sleep.as_mut().reset(deadline);
        }
    }
}

impl hyper::rt::Sleep for HeadSleep {}

impl Drop for HeadSleep {
    fn drop(&mut self) {
        // The head is complete (or the connection is done), unless hyper
        // has already started waiting for the next one.
        if self.clock.heads.load(Ordering::Relaxed) == self.head {
            self.clock.waiting.store(false, Ordering::Relaxed);
        }
    }
}

/// Any other sleep hyper asks for (none in HTTP/1 server use today).
struct PlainSleep(Pin<Box<tokio::time::Sleep>>);

impl Future for PlainSleep {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        self.0.as_mut().poll(cx)
    }
}

impl hyper::rt::Sleep for PlainSleep {}

/// A client connection's socket: it tells its clock when bytes arrive, and
/// holds the connection's slot until it is closed, upgraded or not.
#[derive(Debug)]
pub struct TimedIo<S> {
    inner: S,
    clock: Arc<HeadClock>,
    _slot: ConnectionSlot,
}

impl<S> TimedIo<S> {
    pub fn new(inner: S, clock: Arc<HeadClock>, slot: ConnectionSlot) -> Self {
        Self {
            inner,
            clock,
            _slot: slot,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for TimedIo<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.clock.saw_bytes();
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for TimedIo<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::rt::Timer;

    const HEADER: Duration = Duration::from_secs(10);
    const IDLE: Duration = Duration::from_secs(120);

    #[tokio::test]
    async fn the_first_head_gets_the_header_timeout_from_the_accept() {
        let clock = HeadClock::new(HEADER, IDLE);
        let armed = Instant::now();
        assert_eq!(clock.deadline(1, armed), armed + HEADER);
        clock.waiting.store(true, Ordering::Relaxed);
        clock.saw_bytes();
        assert_eq!(
            clock.deadline(1, armed),
            armed + HEADER,
            "a first byte extended the first head"
        );
    }

    #[tokio::test]
    async fn a_later_head_may_idle_then_must_be_quick_once_started() {
        let clock = HeadClock::new(HEADER, IDLE);
        let timer = HeadTimer(clock.clone());
        drop(timer.sleep_until(std::time::Instant::now()));
        assert!(
            !clock.waiting.load(Ordering::Relaxed),
            "a dropped sleep still waits"
        );
        clock.saw_bytes();
        assert_eq!(
            clock.first_byte.load(Ordering::Relaxed),
            0,
            "bytes of a request in flight started a head"
        );

        let _sleep = timer.sleep_until(std::time::Instant::now());
        assert!(clock.waiting.load(Ordering::Relaxed));
        let armed = Instant::now();
        assert_eq!(
            clock.deadline(2, armed),
            armed + IDLE,
            "an idle connection is not given the idle timeout"
        );
        let before = Instant::now();
        clock.saw_bytes();
        let after = Instant::now();
        let deadline = clock.deadline(2, armed);
        assert!(
            before + HEADER <= deadline && deadline <= after + HEADER + Duration::from_micros(1),
            "a started head is not given the header timeout from its first byte"
        );
    }

    #[tokio::test]
    async fn a_stale_sleep_does_not_end_the_wait_of_the_next() {
        let clock = HeadClock::new(HEADER, IDLE);
        let timer = HeadTimer(clock.clone());
        let old = timer.sleep_until(std::time::Instant::now());
        let _new = timer.sleep_until(std::time::Instant::now());
        drop(old);
        assert!(clock.waiting.load(Ordering::Relaxed));
    }

    #[tokio::test]
    async fn a_timer_armed_for_an_earlier_head_does_not_end_a_later_wait() {
        let idle = Duration::from_millis(300);
        let clock = HeadClock::new(Duration::from_millis(20), idle);
        let timer = HeadTimer(clock);
        // The first head: polled once, so the timer is armed at ~20 ms.
        let mut first = timer.sleep_until(std::time::Instant::now());
        let mut cx = Context::from_waker(std::task::Waker::noop());
        assert!(first.as_mut().poll(&mut cx).is_pending());
        drop(first);
        // The next head may idle for 300 ms.
        let started = Instant::now();
        let second = timer.sleep_until(std::time::Instant::now());
        tokio::time::timeout(Duration::from_secs(10), second)
            .await
            .expect("the idle wait never ended");
        assert!(
            started.elapsed() >= idle,
            "ended after {:?}, before the idle timeout",
            started.elapsed()
        );
    }

    #[tokio::test]
    async fn a_head_sleep_fires_at_its_deadline() {
        let clock = HeadClock::new(Duration::from_millis(20), IDLE);
        let sleep = HeadTimer(clock).sleep_until(std::time::Instant::now());
        tokio::time::timeout(Duration::from_secs(10), sleep)
            .await
            .expect("the first head's sleep never fired");
    }
}
