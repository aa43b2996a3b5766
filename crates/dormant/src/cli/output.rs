//! How client commands print containers: an aligned table for people.

use crate::api::model::ContainerView;

/// Prints `rows` under `headers` with columns aligned.
pub fn print_table(headers: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        println!("{}", padded.join("  ").trim_end());
    };
    line(headers.to_vec());
    for row in rows {
        line(row.iter().map(String::as_str).collect());
    }
}

pub fn print_containers(containers: &[ContainerView]) {
    let now = std::time::SystemTime::now();
    let rows: Vec<Vec<String>> = containers
        .iter()
        .map(|c| {
            vec![
                c.name.clone(),
                c.state.to_string(),
                c.image.clone(),
                ago(&c.last_active_at, now),
                c.last_wake_ms
                    .map_or_else(|| "-".into(), |ms| format!("{ms} ms")),
                c.snapshot
                    .as_ref()
                    .map_or_else(|| "-".into(), |s| format_size(s.bytes)),
                c.url.clone(),
            ]
        })
        .collect();
    let headers = [
        "NAME",
        "STATE",
        "IMAGE",
        "IDLE",
        "LAST WAKE",
        "ARCHIVE",
        "URL",
    ];
    print_table(&headers, &rows);
}

pub fn print_tokens(tokens: &[crate::api::model::ContainerTokenView]) {
    let rows: Vec<Vec<String>> = tokens
        .iter()
        .map(|t| vec![t.id.clone(), t.created_at.clone()])
        .collect();
    print_table(&["ID", "CREATED"], &rows);
}

pub fn print_container(c: &ContainerView) {
    let mut fields = vec![
        ("name", c.name.clone()),
        ("state", c.state.to_string()),
        ("url", c.url.clone()),
        ("access", c.access.as_str().to_owned()),
        ("image", c.image.clone()),
        ("port", c.port.to_string()),
        ("memory", c.memory.clone()),
        (
            "cpus",
            c.cpus.map(|n| n.to_string()).unwrap_or_else(|| "-".into()),
        ),
        ("idle timeout", c.idle_timeout.clone()),
        (
            "volumes",
            if c.volumes.is_empty() {
                "-".into()
            } else {
                c.volumes.join(", ")
            },
        ),
        ("wake", c.wake.map_or("default", |w| w.as_str()).to_owned()),
        (
            "ready path",
            c.ready_path.clone().unwrap_or_else(|| "-".into()),
        ),
        ("wakes", c.wakes.to_string()),
        (
            "nap after",
            c.nap_after.clone().unwrap_or_else(|| "default".into()),
        ),
        (
            "archive after",
            c.archive_after.clone().unwrap_or_else(|| "default".into()),
        ),
        (
            "snapshot",
            c.snapshot.as_ref().map_or_else(
                || "-".into(),
                |s| {
                    format!(
                        "{} ({} entries, {})",
                        format_size(s.bytes),
                        s.files,
                        s.created_at
                    )
                },
            ),
        ),
        (
            "last wake",
            c.last_wake_ms
                .map_or_else(|| "-".into(), |ms| format!("{ms} ms")),
        ),
        ("created", c.created_at.clone()),
        (
            "last active",
            format!(
                "{} ({} ago)",
                c.last_active_at,
                ago(&c.last_active_at, std::time::SystemTime::now())
            ),
        ),
    ];
    if let Some(reason) = &c.reason {
        fields.insert(2, ("reason", reason.clone()));
    }
    for (key, value) in fields {
        println!("{key:<13} {value}");
    }
}

pub fn print_stats(stats: &crate::api::model::Stats) {
    let states: Vec<String> = stats
        .containers
        .iter()
        .filter(|(_, count)| **count > 0)
        .map(|(state, count)| format!("{count} {state}"))
        .collect();
    let states = if states.is_empty() {
        "none".to_owned()
    } else {
        states.join(", ")
    };
    let max = stats
        .max_running
        .map_or_else(|| "no limit".into(), |m| format!("at most {m}"));
    println!("{:<12} {states}", "containers");
    println!("{:<12} {} ({max})", "running", stats.running);
    println!(
        "{:<12} {} of {} budget",
        "memory",
        format_size(stats.memory_bytes),
        format_size(stats.memory_budget_bytes)
    );
    println!("{:<12} {}", "wake queue", stats.wake_queue);
    println!(
        "{:<12} {} in {} files",
        "snapshots",
        format_size(stats.snapshot_bytes),
        stats.snapshot_files
    );
    println!(
        "{:<12} {}",
        "dormant RSS",
        format_size(stats.dormant_rss_bytes)
    );
}

/// `512 B`, `3.4 MB`: a size on disk for people.
fn format_size(bytes: u64) -> String {
    match bytes {
        0..1_000 => format!("{bytes} B"),
        1_000..1_000_000 => format!("{:.1} kB", bytes as f64 / 1e3),
        1_000_000..1_000_000_000 => format!("{:.1} MB", bytes as f64 / 1e6),
        _ => format!("{:.2} GB", bytes as f64 / 1e9),
    }
}

/// `2m`, `3h`, `5d`: how long ago an RFC 3339 time was.
fn ago(rfc3339: &str, now: std::time::SystemTime) -> String {
    let Ok(then) = humantime::parse_rfc3339(rfc3339) else {
        return "?".into();
    };
    let secs = now.duration_since(then).map(|d| d.as_secs()).unwrap_or(0);
    match secs {
        0..60 => format!("{secs}s"),
        60..3600 => format!("{}m", secs / 60),
        3600..86400 => format!("{}h", secs / 3600),
        _ => format!("{}d", secs / 86400),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn ago_rounds_down_to_one_unit() {
        let now = UNIX_EPOCH + Duration::from_secs(1_000_000);
        assert_eq!(ago("1970-01-12T13:46:40Z", now), "0s");
        assert_eq!(ago("1970-01-12T13:44:40Z", now), "2m");
        assert_eq!(ago("1970-01-12T10:46:40Z", now), "3h");
        assert_eq!(ago("not a time", now), "?");
    }
}
