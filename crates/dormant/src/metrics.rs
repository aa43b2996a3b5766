//! dormant's metrics, served as Prometheus text at `GET /metrics`.
//!
//! Counters and histograms are atomics, cheap enough for the proxy's path.
//! No metric carries a container's name: labels per container would grow
//! without bound and leak names to whoever can scrape.

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::{Registry, Unit};

use crate::domain::ContainerState;

/// Every metric dormant keeps.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    pub wakes: Counter,
    pub wake_failures: Counter,
    /// Start of a wake to the app answering.
    pub wake_duration: Histogram,
    pub sleeps: Counter,
    /// Containers paused (napping).
    pub naps: Counter,
    /// Napping containers unpaused by a request.
    pub unpauses: Counter,
    /// Docker's unpause call, from a request's wake to the container thawed.
    pub unpause_duration: Histogram,
    /// Containers put to sleep to make room for another.
    pub evictions: Counter,
    pub archives: Counter,
    pub archive_duration: Histogram,
    pub archived_bytes: Counter,
    pub restores: Counter,
    pub restore_duration: Histogram,
    /// From a restore's end to its files being on disk, off the request's path.
    pub restore_flush_duration: Histogram,
    pub restored_bytes: Counter,
    pub proxy_requests: Family<StatusClassLabel, Counter>,
    /// From a request's arrival to its response headers.
    pub proxy_duration: Histogram,
    /// Client connections the proxy holds open.
    pub open_connections: Gauge,
    /// Client connections closed at once because the proxy was full.
    pub refused_connections: Counter,
    /// Requests for waking containers refused: the hold budget was spent.
    pub refused_holds: Counter,
    /// Wakes waiting for room (capacity limits).
    pub wake_queue: Gauge,
    /// Beside nginx: reloads of nginx after its map changed, and those
    /// that failed (each is tried again).
    pub nginx_reloads: Counter,
    pub nginx_reload_failures: Counter,
    /// Requests for containers not running that dormant answered itself
    /// instead of waking them, by reason (see `proxy::no_wake`).
    no_wake_answers: Family<ReasonLabel, Counter>,
    /// Requests refused by a rate limit, by limit (see `proxy::wake_filter`).
    rate_limited: Family<LimitLabel, Counter>,
    containers: Family<StateLabel, Gauge>,
    /// Wakes per minute over the last hour, for the dashboard's chart.
    pub wake_history: crate::wake_history::WakeHistory,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StatusClassLabel {
    pub class: StatusClass,
}

/// An HTTP status class: `2xx`, `5xx`, ...
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub struct StatusClass(u8);

impl EncodeLabelValue for StatusClass {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        use std::fmt::Write;
        write!(encoder, "{}xx", self.0)
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LimitLabel {
    limit: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabel {
    state: String,
}

impl StatusClass {
    pub fn of(status: u16) -> Self {
        Self((status / 100).clamp(1, 5) as u8)
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    // Long but flat: one registration per metric, each with its help text.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("dormant");
        let seconds = || Histogram::new(exponential_buckets(0.001, 2.0, 18));
        let metrics = Self {
            wakes: Counter::default(),
            wake_failures: Counter::default(),
            wake_duration: seconds(),
            sleeps: Counter::default(),
            naps: Counter::default(),
            unpauses: Counter::default(),
            unpause_duration: Histogram::new(exponential_buckets(0.0005, 2.0, 16)),
            evictions: Counter::default(),
            archives: Counter::default(),
            archive_duration: seconds(),
            archived_bytes: Counter::default(),
            restores: Counter::default(),
            restore_duration: seconds(),
            restore_flush_duration: seconds(),
            restored_bytes: Counter::default(),
            proxy_requests: Family::default(),
            proxy_duration: Histogram::new(exponential_buckets(0.0001, 2.0, 20)),
            open_connections: Gauge::default(),
            refused_connections: Counter::default(),
            refused_holds: Counter::default(),
            nginx_reloads: Counter::default(),
            nginx_reload_failures: Counter::default(),
            wake_queue: Gauge::default(),
            no_wake_answers: Family::default(),
            rate_limited: Family::default(),
            containers: Family::default(),
            wake_history: crate::wake_history::WakeHistory::new(),
            registry: Registry::default(),
        };
        registry.register(
            "wakes",
            "Wakes that finished with the app answering",
            metrics.wakes.clone(),
        );
        registry.register(
            "wake_failures",
            "Wakes that failed",
            metrics.wake_failures.clone(),
        );
        registry.register(
            "naps",
            "Running containers paused after nap_after idle",
            metrics.naps.clone(),
        );
        registry.register(
            "unpauses",
            "Napping containers unpaused for a request",
            metrics.unpauses.clone(),
        );
        registry.register_with_unit(
            "unpause_duration",
            "Time of Docker's unpause of a napping container, on its first request's path",
            Unit::Seconds,
            metrics.unpause_duration.clone(),
        );
        registry.register_with_unit(
            "wake_duration",
            "Time from the start of a wake until the app answers",
            Unit::Seconds,
            metrics.wake_duration.clone(),
        );
        registry.register("sleeps", "Containers put to sleep", metrics.sleeps.clone());
        registry.register(
            "evictions",
            "Running containers put to sleep to make room for another",
            metrics.evictions.clone(),
        );
        registry.register("archives", "Containers archived", metrics.archives.clone());
        registry.register_with_unit(
            "archive_duration",
            "Time to archive a container",
            Unit::Seconds,
            metrics.archive_duration.clone(),
        );
        registry.register_with_unit(
            "archived",
            "Bytes of snapshots written",
            Unit::Bytes,
            metrics.archived_bytes.clone(),
        );
        registry.register(
            "restores",
            "Containers restored from their snapshot",
            metrics.restores.clone(),
        );
        registry.register_with_unit(
            "restore_duration",
            "Time to restore a snapshot into a new container",
            Unit::Seconds,
            metrics.restore_duration.clone(),
        );
        registry.register_with_unit(
            "restore_flush_duration",
            "Time to make a restore's files durable, after the wake went on",
            Unit::Seconds,
            metrics.restore_flush_duration.clone(),
        );
        registry.register_with_unit(
            "restored",
            "Bytes of snapshots restored",
            Unit::Bytes,
            metrics.restored_bytes.clone(),
        );
        registry.register(
            "proxy_requests",
            "Requests the proxy answered, by status class",
            metrics.proxy_requests.clone(),
        );
        registry.register_with_unit(
            "proxy_request_duration",
            "Time from a request's arrival to its response headers",
            Unit::Seconds,
            metrics.proxy_duration.clone(),
        );
        registry.register(
            "proxy_open_connections",
            "Client connections the proxy holds open",
            metrics.open_connections.clone(),
        );
        registry.register(
            "proxy_refused_connections",
            "Client connections closed at once because --max-connections were open",
            metrics.refused_connections.clone(),
        );
        registry.register(
            "proxy_refused_holds",
            "Requests for waking containers answered 503 because --max-held-requests or --wake-buffer-total was spent",
            metrics.refused_holds.clone(),
        );
        registry.register(
            "nginx_reloads",
            "Beside nginx: nginx reloaded after its map changed (--nginx-reload)",
            metrics.nginx_reloads.clone(),
        );
        registry.register(
            "nginx_reload_failures",
            "Beside nginx: --nginx-reload runs that failed; each is tried again",
            metrics.nginx_reload_failures.clone(),
        );
        registry.register(
            "wake_queue_length",
            "Wakes waiting for room under the capacity limits",
            metrics.wake_queue.clone(),
        );
        registry.register(
            "proxy_no_wake_answers",
            "Requests for containers not running answered by dormant without a wake: listed agents, robots.txt, favicon.ico",
            metrics.no_wake_answers.clone(),
        );
        registry.register(
            "proxy_rate_limited",
            "Requests refused by a rate limit: per client on wakes or unknown hosts, or the host's --max-wake-rate",
            metrics.rate_limited.clone(),
        );
        registry.register(
            "containers",
            "Containers by state",
            metrics.containers.clone(),
        );
        Self {
            registry,
            ..metrics
        }
    }

    /// The request counters of the five status classes, by `status / 100 - 1`,
    /// so the proxy counts with an array index instead of a map lookup.
    pub fn proxy_request_counters(&self) -> [Counter; 5] {
        std::array::from_fn(|i| {
            self.proxy_requests
                .get_or_create(&StatusClassLabel {
                    class: StatusClass(i as u8 + 1),
                })
                .clone()
        })
    }

    /// The counter of requests answered without a wake for `reason`, to keep
    /// (one map lookup at start, none per request).
    pub fn no_wake_answer_counter(&self, reason: &str) -> Counter {
        self.no_wake_answers
            .get_or_create(&ReasonLabel {
                reason: reason.to_owned(),
            })
            .clone()
    }

    /// The counter of requests refused by `limit`, to keep.
    pub fn rate_limited_counter(&self, limit: &str) -> Counter {
        self.rate_limited
            .get_or_create(&LimitLabel {
                limit: limit.to_owned(),
            })
            .clone()
    }

    /// The metrics in Prometheus/OpenMetrics text, with the containers-by-
    /// state gauges set from `counts` first.
    pub fn render(&self, counts: &[(ContainerState, i64)]) -> String {
        for (state, count) in counts {
            self.containers
                .get_or_create(&StateLabel {
                    state: state.as_str().to_owned(),
                })
                .set(*count);
        }
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_prometheus_conventions() {
        let metrics = Metrics::new();
        metrics.wakes.inc();
        metrics.wake_duration.observe(0.3);
        metrics.archived_bytes.inc_by(10);
        metrics
            .proxy_requests
            .get_or_create(&StatusClassLabel {
                class: StatusClass::of(204),
            })
            .inc();
        metrics.no_wake_answer_counter("robots").inc();
        metrics.rate_limited_counter("wake").inc();
        let text = metrics.render(&[(ContainerState::Asleep, 3)]);
        for expected in [
            "dormant_wakes_total 1",
            "dormant_wake_duration_seconds_count 1",
            "dormant_archived_bytes_total 10",
            "dormant_proxy_requests_total{class=\"2xx\"} 1",
            "dormant_containers{state=\"asleep\"} 3",
            "dormant_proxy_no_wake_answers_total{reason=\"robots\"} 1",
            "dormant_proxy_rate_limited_total{limit=\"wake\"} 1",
        ] {
            assert!(text.contains(expected), "missing `{expected}` in:\n{text}");
        }
    }
}
