//! `GET /v1/events`: every container transition as Server-Sent Events,
//! resumable with `Last-Event-ID`, filtered to what the caller may see and,
//! optionally, to one container.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use futures_util::stream::{self, Stream};
use serde::Deserialize;
use utoipa::IntoParams;

use super::error::ErrorBody;
use super::{ApiError, ApiState};
use crate::auth::{Caller, TokenIndex};
use crate::events::{Event, Next, Subscription};

/// Streams open at once, all callers together: each holds a connection and
/// a place in the bus.
pub const MAX_STREAMS: usize = 256;
/// A comment line this often keeps proxies and load balancers from closing
/// a quiet stream.
const HEARTBEAT: Duration = Duration::from_secs(15);
/// How often a quiet stream checks that its token is still live.
const TOKEN_RECHECK: Duration = Duration::from_secs(5);
/// Longest container name a filter may hold (names are DNS labels).
const MAX_NAME: usize = 63;

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EventsQuery {
    /// Only this container's events.
    pub name: Option<String>,
    /// Resume after this event id, as the `Last-Event-ID` header does
    /// (for clients that cannot set headers).
    pub last_event_id: Option<u64>,
}

/// Follow container transitions (Server-Sent Events).
///
/// Each event has `id` (increasing), `event` (its kind: created, starting,
/// ready, sleeping, asleep, archiving, archived, restoring, failed, deleted)
/// and `data`, an `Event` as JSON. Send `Last-Event-ID` to resume; an
/// event `reset` means events were missed (resumed from too far back, or
/// read too slowly): read `GET /v1/containers` again. A tenant sees its own
/// containers' events; the stream ends when its token is revoked.
#[utoipa::path(
    get,
    path = "/v1/events",
    params(EventsQuery, ("Last-Event-ID" = Option<u64>, Header, description = "Resume after this event id")),
    responses(
        (status = 200, description = "A stream of events", content_type = "text/event-stream", body = crate::events::Event),
        (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 503, description = "Too many streams are open", body = ErrorBody),
    ),
    security(("admin" = []), ("tenant" = []))
)]
pub async fn stream(
    State(state): State<ApiState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    query: Result<Query<EventsQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::invalid("query", e.body_text()))?;
    if let Some(name) = &query.name {
        if name.is_empty() || name.len() > MAX_NAME {
            return Err(ApiError::invalid(
                "name",
                format!("must be a container name of 1 to {MAX_NAME} characters"),
            ));
        }
    }
    let last_seen = match headers.get("last-event-id") {
        Some(value) => Some(
            value
                .to_str()
                .ok()
                .and_then(|v| v.trim().parse::<u64>().ok())
                .ok_or_else(|| {
                    ApiError::invalid("Last-Event-ID", "must be an event id (a whole number)")
                })?,
        ),
        None => query.last_event_id,
    };
    let bus = state.lifecycle.events();
    if bus.subscribers() >= MAX_STREAMS {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "too_many_streams",
            format!("{MAX_STREAMS} event streams are open already; close one or retry later"),
        )
        .with_retry_after(Duration::from_secs(10)));
    }
    let reader = Reader {
        subscription: bus.subscribe(last_seen),
        caller,
        tokens: state.tokens.clone(),
        name: query.name,
        stopping: state.stopping.clone(),
    };
    let events = Sse::new(reader.into_stream()).keep_alive(KeepAlive::new().interval(HEARTBEAT));
    Ok(events.into_response())
}

/// One open stream: its place on the bus and what it may see.
struct Reader {
    subscription: Subscription,
    caller: Caller,
    tokens: Arc<TokenIndex>,
    name: Option<String>,
    stopping: tokio::sync::watch::Receiver<bool>,
}

impl Reader {
    fn into_stream(self) -> impl Stream<Item = Result<SseEvent, Infallible>> {
        stream::unfold(self, |mut reader| async move {
            let event = reader.next().await?;
            Some((Ok(event), reader))
        })
    }

    /// The next event this reader may see; `None` ends the stream.
    async fn next(&mut self) -> Option<SseEvent> {
        loop {
            let next = tokio::select! {
                next = self.subscription.next() => next,
                _ = self.stopping.wait_for(|stop| *stop) => return None,
                _ = tokio::time::sleep(TOKEN_RECHECK) => {
                    if self.tokens.still_live(&self.caller) {
                        continue;
                    }
                    return None;
                }
            };
            if !self.tokens.still_live(&self.caller) {
                return None;
            }
            match next {
                Next::Event(event) if self.wants(&event) => return Some(sse_event(&event)),
                Next::Event(_) => continue,
                Next::Reset => {
                    return Some(
                        SseEvent::default()
                            .event("reset")
                            .data(r#"{"reason":"events were missed; list the containers again"}"#),
                    )
                }
                Next::Closed => return None,
            }
        }
    }

    fn wants(&self, event: &Event) -> bool {
        self.caller.principal.sees(&event.tenant)
            && self
                .name
                .as_ref()
                .is_none_or(|name| *name == event.container)
    }
}

fn sse_event(event: &Event) -> SseEvent {
    let data = serde_json::to_string(event).unwrap_or_else(|_| "{}".into());
    SseEvent::default()
        .id(event.id.to_string())
        .event(event.kind.as_str())
        .data(data)
}
