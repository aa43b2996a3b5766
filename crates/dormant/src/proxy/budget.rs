//! The proxy's shared budgets: connection slots (`--max-connections`) and
//! what held requests may keep in memory (`--max-held-requests`,
//! `--wake-buffer-total`). Lock-free counters, shared by every proxy thread;
//! a guard gives back what it took when dropped, however its task ends.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use prometheus_client::metrics::gauge::Gauge;

/// Takes `amount` from `left` if that much is left; one compare-and-swap
/// loop, no lock.
fn take(left: &AtomicUsize, amount: usize) -> bool {
    left.fetch_update(Ordering::AcqRel, Ordering::Acquire, |now| {
        now.checked_sub(amount)
    })
    .is_ok()
}

/// Open client connections of the whole proxy, against `--max-connections`.
#[derive(Debug)]
pub struct ConnectionLimit {
    left: AtomicUsize,
    /// The `dormant_proxy_open_connections` gauge, kept in step.
    open: Gauge,
}

impl ConnectionLimit {
    pub fn new(max: usize, open: Gauge) -> Arc<Self> {
        Arc::new(Self {
            left: AtomicUsize::new(max),
            open,
        })
    }

    /// A slot for one more connection, or `None` when the proxy is full.
    pub fn try_open(self: &Arc<Self>) -> Option<ConnectionSlot> {
        if !take(&self.left, 1) {
            return None;
        }
        self.open.inc();
        Some(ConnectionSlot {
            limit: self.clone(),
            thread: None,
        })
    }
}

/// One open connection's slot, given back when dropped. It goes with the
/// client's socket, so an upgraded connection (a WebSocket tunnel) keeps it.
#[derive(Debug)]
pub struct ConnectionSlot {
    limit: Arc<ConnectionLimit>,
    /// The open connections of the proxy thread serving it (see `spread`).
    thread: Option<Arc<AtomicUsize>>,
}

impl ConnectionSlot {
    /// Also counts the connection in `thread`'s open connections (already
    /// incremented) until the slot is dropped.
    pub fn counted_in(mut self, thread: Arc<AtomicUsize>) -> Self {
        self.thread = Some(thread);
        self
    }
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        self.limit.open.dec();
        self.limit.left.fetch_add(1, Ordering::AcqRel);
        if let Some(thread) = &self.thread {
            thread.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

/// Which cap a request for a waking container ran into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HoldRefused {
    /// `--max-held-requests`.
    TooManyRequests,
    /// `--wake-buffer-total`.
    TooManyBytes,
}

/// What all held requests together may keep while their containers wake.
#[derive(Debug)]
pub struct HoldBudget {
    requests_left: AtomicUsize,
    bytes_left: AtomicUsize,
}

impl HoldBudget {
    pub fn new(max_requests: usize, max_bytes: usize) -> Arc<Self> {
        Arc::new(Self {
            requests_left: AtomicUsize::new(max_requests),
            bytes_left: AtomicUsize::new(max_bytes),
        })
    }

    /// Room to hold one more request and read `bytes` of its body ahead.
    pub fn try_hold(self: &Arc<Self>, bytes: usize) -> Result<HoldTicket, HoldRefused> {
        if !take(&self.requests_left, 1) {
            return Err(HoldRefused::TooManyRequests);
        }
        if !take(&self.bytes_left, bytes) {
            self.requests_left.fetch_add(1, Ordering::AcqRel);
            return Err(HoldRefused::TooManyBytes);
        }
        Ok(HoldTicket {
            budget: self.clone(),
            bytes,
        })
    }
}

/// One held request's share of the budget, given back when dropped.
#[derive(Debug)]
pub struct HoldTicket {
    budget: Arc<HoldBudget>,
    /// The body bytes it may read ahead.
    bytes: usize,
}

impl HoldTicket {
    pub fn bytes(&self) -> usize {
        self.bytes
    }
}

impl Drop for HoldTicket {
    fn drop(&mut self) {
        self.budget
            .bytes_left
            .fetch_add(self.bytes, Ordering::AcqRel);
        self.budget.requests_left.fetch_add(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_slots_run_out_and_come_back() {
        let open = Gauge::default();
        let limit = ConnectionLimit::new(2, open.clone());
        let a = limit.try_open().unwrap();
        let _b = limit.try_open().unwrap();
        assert!(limit.try_open().is_none());
        assert_eq!(open.get(), 2);
        drop(a);
        assert_eq!(open.get(), 1);
        assert!(limit.try_open().is_some());
    }

    #[test]
    fn holds_are_refused_past_either_cap_and_refusals_take_nothing() {
        let budget = HoldBudget::new(2, 100);
        let big = budget.try_hold(80).unwrap();
        assert_eq!(big.bytes(), 80);
        assert_eq!(budget.try_hold(30).unwrap_err(), HoldRefused::TooManyBytes);
        let small = budget.try_hold(20).unwrap();
        assert_eq!(
            budget.try_hold(0).unwrap_err(),
            HoldRefused::TooManyRequests
        );
        drop(big);
        // The refused 30 took nothing: 80 are back, 20 still held.
        let again = budget.try_hold(80).unwrap();
        assert_eq!(
            budget.try_hold(1).unwrap_err(),
            HoldRefused::TooManyRequests
        );
        drop((small, again));
        assert!(budget.try_hold(100).is_ok());
    }
}
