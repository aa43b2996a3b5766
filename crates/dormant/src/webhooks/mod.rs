//! Webhooks: each registered URL receives the container events it asked
//! for, signed, in order, retried with backoff for a bounded time.
//!
//! One dispatcher reads the event bus and puts each event on the bounded
//! queue of every webhook that wants it (never waiting: a full queue drops
//! the event and says so in the webhook's status); one worker per webhook
//! delivers its queue one event at a time. Nothing here can slow the
//! lifecycle. Deliveries still queued when dormant stops are not kept.
//!
//! - `target.rs`: which URLs, and which addresses they may reach.
//! - `delivery.rs`: one signed attempt, and the retry schedule.
//! - `tls.rs`: the trusted certificate authorities, and the handshake for
//!   `https://` URLs.

mod delivery;
pub mod target;
pub mod tls;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use rustls::ClientConfig;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use crate::domain::{now_millis, UnixMillis};
use crate::events::{Event, EventBus, Next};
use crate::store::webhooks::WebhookRow;
use delivery::{attempt, backoff, Failure, Outcome};
pub use delivery::{signature, SIGNATURE_HEADER};
use target::{AddressPolicy, Target};

/// Events waiting for one webhook at most; past it new ones are dropped.
pub const QUEUE: usize = 1000;

/// How webhooks behave, from `dormant serve`'s flags.
#[derive(Debug, Clone)]
pub struct Settings {
    /// How long one event is retried before it is given up
    /// (`--webhook-retry-for`).
    pub retry_for: Duration,
    /// Whether tenants' webhooks may reach private and local addresses
    /// (`--webhook-allow-private`).
    pub allow_private: bool,
    /// How `https://` receivers' certificates are checked: the public
    /// certificate authorities plus `--webhook-ca-file`'s
    /// ([`tls::client_config`]).
    pub tls: Arc<ClientConfig>,
}

/// How a webhook's deliveries are going.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Status {
    pub delivered: u64,
    /// Events given up after their retries, or refused for good.
    pub failed: u64,
    /// Events dropped because its queue was full (or the dispatcher fell
    /// behind the bus).
    pub dropped: u64,
    /// Events waiting in its queue.
    pub queued: usize,
    /// The receiver's last HTTP status.
    pub last_status: Option<u16>,
    /// What went wrong last, if the last attempt failed.
    pub last_error: Option<String>,
    pub last_attempt_at: Option<UnixMillis>,
}

struct Hook {
    row: WebhookRow,
    queue: mpsc::Sender<Arc<Event>>,
    status: Arc<Mutex<Status>>,
    stop: CancellationToken,
}

/// The live webhooks. Shared (`Arc`) by the API and the dispatcher.
pub struct Webhooks {
    hooks: Mutex<HashMap<String, Hook>>,
    settings: Settings,
    /// Cancelled when dormant stops: every worker ends.
    stopped: CancellationToken,
}

impl Webhooks {
    pub fn new(settings: Settings) -> Arc<Self> {
        Arc::new(Self {
            hooks: Mutex::new(HashMap::new()),
            settings,
            stopped: CancellationToken::new(),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Hook>> {
        self.hooks.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The addresses a webhook of `owner` may reach.
    pub fn policy_for(&self, owner: &str) -> AddressPolicy {
        if owner == crate::tenant::ADMIN || self.settings.allow_private {
            AddressPolicy::Any
        } else {
            AddressPolicy::PublicOnly
        }
    }

    /// Starts delivering to `row` (already stored and checked).
    pub fn start(&self, row: WebhookRow) {
        let target = match Target::parse(&row.url) {
            Ok(target) => target,
            Err(why) => {
                tracing::error!(webhook = %row.id, url = %row.url, %why, "a stored webhook has an unusable URL; it receives nothing");
                return;
            }
        };
        let (queue, events) = mpsc::channel(QUEUE);
        let status = Arc::new(Mutex::new(Status::default()));
        let stop = self.stopped.child_token();
        let worker = Worker {
            id: row.id.clone(),
            target,
            policy: self.policy_for(&row.owner),
            tls: self.settings.tls.clone(),
            secret: row.secret.clone(),
            retry_for: self.settings.retry_for,
            status: status.clone(),
            stop: stop.clone(),
        };
        tokio::spawn(worker.run(events));
        let hook = Hook {
            row: row.clone(),
            queue,
            status,
            stop,
        };
        if let Some(old) = self.lock().insert(row.id, hook) {
            old.stop.cancel();
        }
    }

    /// Stops delivering to webhook `id` (deleted); what it had queued is dropped.
    pub fn stop(&self, id: &str) {
        if let Some(hook) = self.lock().remove(id) {
            hook.stop.cancel();
        }
    }

    /// Every webhook with how its deliveries go, oldest first.
    pub fn list(&self) -> Vec<(WebhookRow, Status)> {
        let mut all: Vec<_> = self
            .lock()
            .values()
            .map(|hook| {
                let mut status = hook
                    .status
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .clone();
                status.queued = QUEUE - hook.queue.capacity();
                (hook.row.clone(), status)
            })
            .collect();
        all.sort_by(|a, b| (a.0.created_at, &a.0.id).cmp(&(b.0.created_at, &b.0.id)));
        all
    }

    /// Hands `event` to every webhook that wants it, never waiting.
    pub fn dispatch(&self, event: &Arc<Event>) {
        for hook in self.lock().values() {
            if !wants(&hook.row, event) {
                continue;
            }
            if hook.queue.try_send(event.clone()).is_err() {
                let mut status = hook.status.lock().unwrap_or_else(|p| p.into_inner());
                status.dropped += 1;
                status.last_error = Some(format!(
                    "its queue of {QUEUE} events is full (the receiver is slow or down); event {} was dropped",
                    event.id
                ));
            }
        }
    }

    /// Every webhook lost events it may have wanted.
    fn note_missed(&self) {
        for hook in self.lock().values() {
            let mut status = hook.status.lock().unwrap_or_else(|p| p.into_inner());
            status.dropped += 1;
            status.last_error =
                Some("dormant fell behind its own event stream; some events were not sent".into());
        }
    }

    /// Reads `bus` and dispatches each event until `stopping` turns true;
    /// then stops every worker.
    pub async fn run(self: Arc<Self>, bus: Arc<EventBus>, mut stopping: watch::Receiver<bool>) {
        let mut events = bus.subscribe(None);
        loop {
            let next = tokio::select! {
                next = events.next() => next,
                _ = stopping.wait_for(|stop| *stop) => break,
            };
            match next {
                Next::Event(event) => self.dispatch(&event),
                Next::Reset => self.note_missed(),
                Next::Closed => break,
            }
        }
        self.stopped.cancel();
    }
}

/// Whether `hook` asked for `event`: its owner sees the container, and the
/// kind and container filters (when set) match.
fn wants(hook: &WebhookRow, event: &Event) -> bool {
    (hook.owner == crate::tenant::ADMIN || hook.owner == event.tenant)
        && (hook.events.is_empty() || hook.events.iter().any(|k| k == event.kind.as_str()))
        && hook
            .container
            .as_ref()
            .is_none_or(|c| *c == event.container)
}

/// Delivers one webhook's queue, in order.
struct Worker {
    id: String,
    target: Target,
    policy: AddressPolicy,
    tls: Arc<ClientConfig>,
    secret: String,
    retry_for: Duration,
    status: Arc<Mutex<Status>>,
    stop: CancellationToken,
}

impl Worker {
    async fn run(self, mut events: mpsc::Receiver<Arc<Event>>) {
        loop {
            let event = tokio::select! {
                event = events.recv() => match event {
                    Some(event) => event,
                    None => return,
                },
                _ = self.stop.cancelled() => return,
            };
            tokio::select! {
                _ = self.deliver(&event) => {}
                _ = self.stop.cancelled() => return,
            }
        }
    }

    /// Tries `event` until it is delivered, refused for good, or
    /// `retry_for` has passed.
    async fn deliver(&self, event: &Event) {
        let body = Bytes::from(serde_json::to_vec(event).unwrap_or_default());
        let give_up_at = tokio::time::Instant::now() + self.retry_for;
        let mut tries = 0;
        loop {
            let outcome = attempt(
                &self.target,
                self.policy,
                &self.tls,
                &self.secret,
                event.id,
                event.kind.as_str(),
                body.clone(),
            )
            .await;
            let wait = backoff(tries);
            tries += 1;
            let out_of_time = tokio::time::Instant::now() + wait > give_up_at;
            if self.record(event.id, outcome, wait, tries, out_of_time) {
                return;
            }
            tokio::time::sleep(wait).await;
        }
    }

    /// Notes what an attempt came to in the webhook's status; `true` when
    /// this event is done with (delivered, refused, or out of time).
    fn record(
        &self,
        event_id: u64,
        outcome: Outcome,
        wait: Duration,
        tries: u32,
        out_of_time: bool,
    ) -> bool {
        let mut status = self.status.lock().unwrap_or_else(|p| p.into_inner());
        status.last_attempt_at = Some(now_millis());
        let (code, message, done) = match outcome {
            Outcome::Delivered(code) => {
                status.delivered += 1;
                status.last_status = Some(code);
                status.last_error = None;
                return true;
            }
            Outcome::GiveUp(Failure { status: code, why }) => {
                tracing::warn!(webhook = %self.id, event = event_id, %why, "webhook delivery refused; not retried");
                (code, format!("event {event_id}: {why}; not retried"), true)
            }
            Outcome::Retry(Failure { status: code, why }) if out_of_time => {
                tracing::warn!(webhook = %self.id, event = event_id, %why, tries, "webhook delivery given up");
                let message = format!("event {event_id}: {why}; given up after {tries} tries");
                (code, message, true)
            }
            Outcome::Retry(Failure { status: code, why }) => {
                let message = format!(
                    "event {event_id}: {why}; trying again in {}s",
                    wait.as_secs()
                );
                (code, message, false)
            }
        };
        if done {
            status.failed += 1;
        }
        status.last_status = code.or(status.last_status);
        status.last_error = Some(message);
        done
    }
}

#[cfg(test)]
mod tests;
