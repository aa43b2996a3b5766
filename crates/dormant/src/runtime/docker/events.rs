//! Docker's event stream in dormant's terms: starts, deaths, pauses and
//! unpauses of this node's containers, from a point in time, after a ping
//! that says the daemon is there.

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bollard::query_parameters::EventsOptions;
use bollard::Docker;
use futures_util::stream::{self, BoxStream};
use futures_util::StreamExt;

use super::{runtime_error, Op};
use crate::domain::LABEL_NAME;
use crate::runtime::{ContainerEvent, ContainerEventKind, EngineEvent, RuntimeResult};

/// `Connected`, then the events of containers labelled `label=value` since
/// `since`, as `Runtime::events` promises.
pub(super) fn stream(
    docker: &Docker,
    label: &str,
    value: &str,
    since: SystemTime,
) -> BoxStream<'static, RuntimeResult<EngineEvent>> {
    let options = EventsOptions {
        since: Some(docker_timestamp(since)),
        filters: Some(HashMap::from([
            ("type".to_owned(), vec!["container".to_owned()]),
            ("label".to_owned(), vec![format!("{label}={value}")]),
            (
                "event".to_owned(),
                ["start", "die", "pause", "unpause"]
                    .map(str::to_owned)
                    .to_vec(),
            ),
        ])),
        ..Default::default()
    };
    // The events call says nothing until an event comes; a ping first
    // tells the follower at once that the daemon is back.
    let pinger = docker.clone();
    let connected = stream::once(async move {
        pinger
            .ping()
            .await
            .map(|_| EngineEvent::Connected)
            .map_err(|e| runtime_error(Op::Events, e))
    });
    let events = docker
        .events(Some(options))
        .filter_map(|message| async move {
            let message = match message {
                Ok(message) => message,
                Err(e) => return Some(Err(runtime_error(Op::Events, e))),
            };
            let at = event_time(message.time_nano, message.time);
            let attributes = message.actor?.attributes.unwrap_or_default();
            let name = attributes.get(LABEL_NAME)?.clone();
            let kind = match message.action.as_deref()? {
                "start" => ContainerEventKind::Started,
                "die" => ContainerEventKind::Died {
                    exit_code: attributes.get("exitCode").and_then(|c| c.parse().ok()),
                },
                "pause" => ContainerEventKind::Paused,
                "unpause" => ContainerEventKind::Unpaused,
                _ => return None,
            };
            Some(Ok(EngineEvent::Container(ContainerEvent {
                name,
                kind,
                at,
            })))
        });
    connected.chain(events).boxed()
}

/// `since` as Docker's events filter takes it: seconds.nanoseconds.
fn docker_timestamp(time: SystemTime) -> String {
    let since_epoch = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    format!(
        "{}.{:09}",
        since_epoch.as_secs(),
        since_epoch.subsec_nanos()
    )
}

/// An event's time from Docker's nanoseconds (or, from an older daemon,
/// seconds); now if it sent neither.
fn event_time(nanos: Option<i64>, secs: Option<i64>) -> SystemTime {
    let since_epoch = match (nanos, secs) {
        (Some(nanos), _) if nanos > 0 => Duration::from_nanos(nanos as u64),
        (_, Some(secs)) if secs > 0 => Duration::from_secs(secs as u64),
        _ => return SystemTime::now(),
    };
    UNIX_EPOCH + since_epoch
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_times_round_trip_through_docker_timestamps() {
        let at = event_time(Some(1_700_000_000_123_456_789), Some(1_700_000_000));
        assert_eq!(docker_timestamp(at), "1700000000.123456789");
        let older_daemon = event_time(None, Some(1_700_000_000));
        assert_eq!(docker_timestamp(older_daemon), "1700000000.000000000");
    }
}
