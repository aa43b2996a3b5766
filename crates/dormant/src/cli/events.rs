//! `dormant events` and `dormant ls --watch`: the event stream read from
//! the API, reconnecting (with `Last-Event-ID`) when the connection drops.

use std::time::Duration;

use http::Method;
use http_body_util::BodyExt;

use super::client::ApiClient;
use super::{output, ClientArgs};
use crate::api::model::ContainerList;

/// Longest wait between reconnection attempts.
const MAX_RECONNECT_WAIT: Duration = Duration::from_secs(30);
/// Bytes of one event a reader keeps at most: a stream that sends more
/// without an event boundary is broken.
const MAX_EVENT: usize = 1 << 20;

/// One parsed Server-Sent Event.
#[derive(Debug, Default, PartialEq)]
struct Frame {
    id: Option<u64>,
    kind: String,
    data: String,
}

/// Splits complete events off the front of `buffer`.
fn take_frames(buffer: &mut String) -> Vec<Frame> {
    let mut frames = Vec::new();
    while let Some(end) = buffer.find("\n\n") {
        let block: String = buffer.drain(..end + 2).collect();
        let mut frame = Frame::default();
        for line in block.lines() {
            if let Some(id) = line.strip_prefix("id:") {
                frame.id = id.trim().parse().ok();
            } else if let Some(kind) = line.strip_prefix("event:") {
                frame.kind = kind.trim().to_owned();
            } else if let Some(data) = line.strip_prefix("data:") {
                frame.data.push_str(data.trim_start());
            }
        }
        // A block of comments only is a heartbeat.
        if !frame.kind.is_empty() || !frame.data.is_empty() {
            frames.push(frame);
        }
    }
    frames
}

/// Reads the event stream at `path` for ever, calling `on_frame` with each
/// event; reconnects with backoff, resuming after the last id seen.
async fn read_stream(
    api: &ApiClient,
    path: &str,
    mut on_frame: impl AsyncFnMut(Frame) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let mut last_id = None;
    let mut wait = Duration::from_millis(500);
    let mut ever_connected = false;
    loop {
        let body = match api.open_stream(path, last_id).await {
            Ok(body) => body,
            // The first attempt's error (a bad token, a wrong URL) is the
            // user's to fix; later ones are a dormant restarting.
            Err(e) if !ever_connected => return Err(e),
            Err(e) => {
                eprintln!("events: {e}; trying again in {}s", wait.as_secs_f32());
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(MAX_RECONNECT_WAIT);
                continue;
            }
        };
        if !ever_connected {
            // On stderr, so `--json` output stays pure; tells a script
            // (or a person) that from now on nothing is missed.
            eprintln!("following events at {}{path} (Ctrl-C to stop)", api.base());
        }
        ever_connected = true;
        wait = Duration::from_millis(500);
        let mut body = body;
        let mut buffer = String::new();
        while let Some(frame) = body.frame().await {
            let Ok(data) = frame.map(|f| f.into_data()) else {
                break;
            };
            let Ok(data) = data else { continue };
            buffer.push_str(&String::from_utf8_lossy(&data));
            if buffer.len() > MAX_EVENT {
                anyhow::bail!(
                    "the event stream sent more than {MAX_EVENT} bytes without an event boundary"
                );
            }
            for frame in take_frames(&mut buffer) {
                if frame.id.is_some() {
                    last_id = frame.id;
                }
                on_frame(frame).await?;
            }
        }
        eprintln!("events: the stream ended; reconnecting");
    }
}

/// `dormant events [--name N] [--json]`: one line per event.
pub async fn follow(client: ClientArgs, name: Option<String>) -> anyhow::Result<()> {
    let api = client.connect()?;
    let path = match &name {
        Some(name) => format!("/v1/events?name={name}"),
        None => "/v1/events".to_owned(),
    };
    let json = client.json;
    read_stream(&api, &path, async |frame: Frame| {
        if frame.kind == "reset" {
            println!("-- events were missed (dormant restarted, or this reader fell behind); list the containers again");
            return Ok(());
        }
        if json {
            println!("{}", frame.data);
            return Ok(());
        }
        match serde_json::from_str::<serde_json::Value>(&frame.data) {
            Ok(event) => println!("{}", describe(&event)),
            Err(_) => println!("{} {}", frame.kind, frame.data),
        }
        Ok(())
    })
    .await
}

/// One event as a line: time, kind, container, tenant and what it says.
fn describe(event: &serde_json::Value) -> String {
    let at = event["at"]
        .as_i64()
        .map(crate::domain::rfc3339)
        .unwrap_or_default();
    let mut line = format!(
        "{at}  {:<9}  {}",
        event["kind"].as_str().unwrap_or("?"),
        event["container"].as_str().unwrap_or("?")
    );
    if let Some(tenant) = event["tenant"].as_str().filter(|t| *t != "admin") {
        line.push_str(&format!("  tenant={tenant}"));
    }
    if let Some(ms) = event["wake_ms"].as_u64() {
        line.push_str(&format!("  woke in {ms} ms"));
    }
    if let Some(ms) = event["unpause_ms"].as_u64() {
        line.push_str(&format!("  unpaused in {ms} ms"));
    }
    if let Some(bytes) = event["snapshot_bytes"].as_u64() {
        line.push_str(&format!(
            "  snapshot {}",
            crate::units::format_memory(bytes)
        ));
    }
    if let Some(reason) = event["reason"].as_str() {
        line.push_str(&format!("  ({reason})"));
    }
    line
}

/// `dormant ls --watch`: the table, drawn again after each change.
pub async fn watch_list(client: ClientArgs) -> anyhow::Result<()> {
    let api = client.connect()?;
    let draw = async |api: &ApiClient| -> anyhow::Result<()> {
        let list: ContainerList = api.json(Method::GET, "/v1/containers", None).await?;
        // Clear the screen and go home, as `watch` does.
        print!("\x1b[2J\x1b[H");
        output::print_containers(&list.containers);
        Ok(())
    };
    draw(&api).await?;
    read_stream(&api, "/v1/events", async |frame: Frame| {
        if !frame.kind.is_empty() {
            draw(&api).await?;
        }
        Ok(())
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_split_at_blank_lines_and_heartbeats_are_skipped() {
        let mut buffer = String::from(
            ": heartbeat\n\nid: 7\nevent: ready\ndata: {\"a\":1}\n\nid: 8\nevent: asl",
        );
        let frames = take_frames(&mut buffer);
        assert_eq!(
            frames,
            [Frame {
                id: Some(7),
                kind: "ready".into(),
                data: "{\"a\":1}".into()
            }]
        );
        assert_eq!(
            buffer, "id: 8\nevent: asl",
            "a partial event waits for the rest"
        );
    }

    #[test]
    fn an_event_reads_as_one_line() {
        let event = serde_json::json!({
            "at": 0, "kind": "ready", "container": "alice", "tenant": "acme", "wake_ms": 412
        });
        assert_eq!(
            describe(&event),
            "1970-01-01T00:00:00.000Z  ready      alice  tenant=acme  woke in 412 ms"
        );
    }
}
