//! The bus itself: a numbered ring of recent events plus a broadcast channel
//! for live ones, so a subscriber gets what it missed and then what comes,
//! with no gap and no duplicate, and a slow one is dropped, never waited for.
//!
//! Publishing wakes the live readers itself: about 2 µs with none and 25 µs
//! with 50 (see `cost` below). Handing events to a relay task instead
//! measured worse here: waking the relay's thread cost more than waking the
//! readers from the publisher's.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use tokio::sync::broadcast;

use super::{Event, EventKind, Transition};
use crate::domain::now_millis;

/// Numbers, keeps and fans out events. Cheap to share (`Arc`).
pub struct EventBus {
    inner: Mutex<Ring>,
    live: broadcast::Sender<Arc<Event>>,
    capacity: usize,
}

struct Ring {
    events: VecDeque<Arc<Event>>,
    next_id: u64,
}

/// What a subscriber reads next.
#[derive(Debug, Clone, PartialEq)]
pub enum Next {
    Event(Arc<Event>),
    /// Events were lost to this subscriber (it asked to resume from before
    /// the ring's oldest, from another dormant process, or it fell behind
    /// the live stream): it should read the current state again.
    Reset,
    /// The bus is gone (dormant is stopping).
    Closed,
}

impl EventBus {
    /// Keeps the last `capacity` events for resuming (`--event-buffer`);
    /// each live subscriber may fall at most `per_subscriber` events behind
    /// before it is reset.
    pub fn new(capacity: usize, per_subscriber: usize) -> Self {
        let capacity = capacity.max(1);
        let (live, _) = broadcast::channel(per_subscriber.max(1));
        // Ids go on increasing across restarts (they start from the clock,
        // in microseconds), so an id from an earlier process is always
        // older than this one's first and resuming from it is a reset.
        let first_id = (now_millis().max(0) as u64).saturating_mul(1000);
        Self {
            inner: Mutex::new(Ring {
                events: VecDeque::with_capacity(capacity.min(1024)),
                next_id: first_id.max(1),
            }),
            live,
            capacity,
        }
    }

    fn ring(&self) -> std::sync::MutexGuard<'_, Ring> {
        self.inner
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }

    /// Records one transition and hands it to every subscriber; never waits.
    pub fn publish(&self, transition: Transition) -> u64 {
        let mut ring = self.ring();
        let id = ring.next_id;
        ring.next_id += 1;
        let event = Arc::new(Event {
            id,
            at: now_millis(),
            kind: EventKind::entering(transition.state),
            container: transition.container,
            tenant: transition.tenant,
            state: transition.state,
            reason: transition.reason,
            wake_ms: transition.wake_ms,
            unpause_ms: transition.unpause_ms,
            snapshot_bytes: transition.snapshot_bytes,
        });
        if ring.events.len() == self.capacity {
            ring.events.pop_front();
        }
        ring.events.push_back(event.clone());
        // Sent under the lock, so a subscriber joining now sees each event
        // either in its backlog or live, never both, never neither. No
        // receiver is not an error.
        let _ = self.live.send(event);
        id
    }

    /// A reader of the events after `last_seen`, then of live ones.
    ///
    /// `None` starts with what happens from now on; `Some(id)` first
    /// replays every kept event after `id`, or starts with `Next::Reset`
    /// when events after `id` were already dropped from the ring.
    pub fn subscribe(&self, last_seen: Option<u64>) -> Subscription {
        let ring = self.ring();
        let live = self.live.subscribe();
        let (backlog, reset) = match last_seen {
            None => (VecDeque::new(), false),
            Some(last) => {
                let oldest_kept = ring.events.front().map_or(ring.next_id, |e| e.id);
                // Resuming is exact only when the event right after `last`
                // is still kept (or has not happened yet) and `last` is one
                // of this process's ids.
                let exact = last.saturating_add(1) >= oldest_kept && last < ring.next_id;
                let backlog = ring
                    .events
                    .iter()
                    .filter(|e| e.id > last)
                    .cloned()
                    .collect();
                (backlog, !exact)
            }
        };
        Subscription {
            backlog,
            live,
            reset,
            last_id: last_seen.unwrap_or(0),
        }
    }

    /// How many subscribers read the live stream now.
    pub fn subscribers(&self) -> usize {
        self.live.receiver_count()
    }
}

/// One reader of the bus.
pub struct Subscription {
    backlog: VecDeque<Arc<Event>>,
    live: broadcast::Receiver<Arc<Event>>,
    reset: bool,
    last_id: u64,
}

impl Subscription {
    /// The next event, waiting for one if need be.
    pub async fn next(&mut self) -> Next {
        if std::mem::take(&mut self.reset) {
            return Next::Reset;
        }
        if let Some(event) = self.backlog.pop_front() {
            self.last_id = event.id;
            return Next::Event(event);
        }
        loop {
            match self.live.recv().await {
                // Already replayed from the backlog.
                Ok(event) if event.id <= self.last_id => continue,
                Ok(event) => {
                    self.last_id = event.id;
                    return Next::Event(event);
                }
                Err(broadcast::error::RecvError::Lagged(_)) => return Next::Reset,
                Err(broadcast::error::RecvError::Closed) => return Next::Closed,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::ContainerState;

    fn transition(name: &str, state: ContainerState) -> Transition {
        Transition {
            container: name.into(),
            tenant: "admin".into(),
            state,
            reason: None,
            wake_ms: None,
            unpause_ms: None,
            snapshot_bytes: None,
        }
    }

    async fn next_event(sub: &mut Subscription) -> Arc<Event> {
        match sub.next().await {
            Next::Event(event) => event,
            other => panic!("expected an event, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn ids_increase_and_a_live_subscriber_sees_each_event_once() {
        let bus = EventBus::new(10, 10);
        let mut sub = bus.subscribe(None);
        let a = bus.publish(transition("a", ContainerState::Starting));
        let b = bus.publish(transition("a", ContainerState::Running));
        assert_eq!(b, a + 1);
        let first = next_event(&mut sub).await;
        assert_eq!((first.id, first.kind), (a, EventKind::Starting));
        let second = next_event(&mut sub).await;
        assert_eq!((second.id, second.kind), (b, EventKind::Ready));
    }

    #[tokio::test]
    async fn resuming_replays_what_was_missed_then_continues_live_without_duplicates() {
        let bus = EventBus::new(10, 10);
        let first = bus.publish(transition("a", ContainerState::Starting));
        let second = bus.publish(transition("a", ContainerState::Running));
        let mut sub = bus.subscribe(Some(first));
        let third = bus.publish(transition("a", ContainerState::Stopping));
        assert_eq!(next_event(&mut sub).await.id, second);
        assert_eq!(next_event(&mut sub).await.id, third);
        let fourth = bus.publish(transition("a", ContainerState::Asleep));
        assert_eq!(next_event(&mut sub).await.id, fourth);
    }

    #[tokio::test]
    async fn resuming_from_before_the_ring_or_another_process_starts_with_a_reset() {
        let bus = EventBus::new(2, 10);
        let first = bus.publish(transition("a", ContainerState::Starting));
        let second = bus.publish(transition("a", ContainerState::Running));
        let third = bus.publish(transition("a", ContainerState::Stopping));
        // `first` itself is gone, but everything after it is kept: exact.
        let mut exact = bus.subscribe(Some(first));
        assert_eq!(next_event(&mut exact).await.id, second);
        assert_eq!(next_event(&mut exact).await.id, third);
        // What came after `first - 1` (that is, `first`) is gone.
        let mut behind = bus.subscribe(Some(first - 1));
        assert_eq!(behind.next().await, Next::Reset);
        assert_eq!(
            next_event(&mut behind).await.id,
            second,
            "then what is kept"
        );
        // An id this process never gave.
        let mut stranger = bus.subscribe(Some(third + 1000));
        assert_eq!(stranger.next().await, Next::Reset);
    }

    #[tokio::test]
    async fn a_slow_subscriber_is_reset_and_never_holds_up_publishing() {
        let bus = EventBus::new(100, 4);
        let mut slow = bus.subscribe(None);
        for _ in 0..50 {
            bus.publish(transition("a", ContainerState::Running));
        }
        assert_eq!(slow.next().await, Next::Reset);
        // It goes on with what the live stream still holds.
        assert!(matches!(slow.next().await, Next::Event(_)));
    }

    #[tokio::test]
    async fn the_ring_keeps_at_most_its_capacity() {
        let bus = EventBus::new(3, 4);
        for _ in 0..10 {
            bus.publish(transition("a", ContainerState::Running));
        }
        assert_eq!(bus.ring().events.len(), 3);
    }

    #[tokio::test]
    async fn a_dropped_bus_closes_its_subscriptions() {
        let bus = EventBus::new(3, 4);
        let mut sub = bus.subscribe(None);
        drop(bus);
        assert_eq!(sub.next().await, Next::Closed);
    }
}

/// What publishing costs the lifecycle with 0 and 50 live subscribers, at
/// 1,000 transitions per second, next to what the transition's own store
/// write costs. A measurement, not a check (run it in release):
/// `cargo test --release -p dormant --lib events::bus::cost -- --ignored --nocapture`
#[cfg(test)]
mod cost {
    use std::time::{Duration, Instant};

    use super::*;
    use crate::domain::ContainerState;

    const RATE: u32 = 1000;
    const SECONDS: u32 = 3;

    /// Publishes `RATE` transitions a second for `SECONDS` with `readers`
    /// subscribers, each turning every event into its SSE text as the API
    /// does; returns the time spent inside `publish`, per event.
    async fn publish_cost(readers: usize) -> Duration {
        let bus = Arc::new(EventBus::new(10_000, 4096));
        let mut tasks = Vec::new();
        for _ in 0..readers {
            let mut sub = bus.subscribe(None);
            tasks.push(tokio::spawn(async move {
                let mut bytes = 0usize;
                while let Next::Event(event) = sub.next().await {
                    bytes += serde_json::to_string(&*event).unwrap().len();
                }
                bytes
            }));
        }
        let mut spent = Duration::ZERO;
        let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / RATE as u64));
        for n in 0..RATE * SECONDS {
            tick.tick().await;
            let transition = Transition {
                container: format!("c{}", n % 500),
                tenant: "admin".into(),
                state: ContainerState::Running,
                reason: None,
                wake_ms: Some(400),
                unpause_ms: None,
                snapshot_bytes: None,
            };
            let started = Instant::now();
            bus.publish(transition);
            spent += started.elapsed();
        }
        drop(bus);
        for task in tasks {
            task.await.unwrap();
        }
        spent / (RATE * SECONDS)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore = "a measurement; run it in release with --ignored --nocapture"]
    async fn cost_of_the_event_stream_to_the_lifecycle() {
        let dir = std::env::temp_dir().join(format!(
            "dormant-events-cost-{}",
            crate::token::random_hex(6)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let store = crate::store::Store::open(&dir.join("dormant.db")).unwrap();
        store
            .insert_all(vec![crate::domain::sample_record("a", 1)])
            .await
            .unwrap();
        let writes = 200;
        let started = Instant::now();
        for n in 0..writes {
            let state = if n % 2 == 0 {
                ContainerState::Running
            } else {
                ContainerState::Asleep
            };
            let change = crate::store::RowChange {
                state: Some((state, None)),
                ..Default::default()
            };
            store.apply("a", change).await.unwrap();
        }
        let commit = started.elapsed() / writes;
        std::fs::remove_dir_all(&dir).unwrap();
        for readers in [0, 50] {
            let publish = publish_cost(readers).await;
            let budget = Duration::from_secs(1) / RATE;
            println!(
                "{readers:>2} subscribers, {RATE} transitions/s: publish {publish:?} per transition \
                 = {:.2}% of the {budget:?} each transition has at this rate; \
                 {:.2}% of a store commit alone ({commit:?})",
                100.0 * publish.as_secs_f64() / budget.as_secs_f64(),
                100.0 * publish.as_secs_f64() / commit.as_secs_f64()
            );
        }
    }
}
