//! Activity of offloaded containers: nginx serves running containers
//! without dormant, so it writes each request's host to an access log of its
//! own (the recipe's `access_log FILE dormant_activity buffer=32k
//! flush=1s`: one write per 32 KiB of lines, at least every second), and
//! dormant reads that file every second, counts each host under the base
//! domain once as its container's activity, and empties the file, so it
//! never grows. Buffered lines cost nginx next to nothing per request; a
//! syslog datagram per request cost a quarter of its throughput
//! (bench/RESULTS-offload.md).
//!
//! nginx logs a request when it ends: a WebSocket or a download through
//! nginx is only seen once it closes (see the README).

use std::collections::HashSet;
use std::future::Future;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::lifecycle::table::ContainerTable;
use crate::proxy::host::name_from_host;

/// How often the log is read: with nginx's `flush=1s`, a request counts
/// within about two seconds.
const POLL: Duration = Duration::from_secs(1);
/// Most bytes read at one poll (a few million requests' lines); the rest is
/// emptied unread: busy hosts appear again within the next second.
const READ_LIMIT: u64 = 64 << 20;

/// The hosts in the lines of `text` (one `$host` per line), each once.
pub fn hosts_of(text: &[u8]) -> HashSet<&str> {
    text.split(|b| *b == b'\n')
        .filter_map(|line| std::str::from_utf8(line).ok())
        .map(str::trim)
        .filter(|host| !host.is_empty() && host.len() <= 253)
        .collect()
}

/// Reads what nginx appended to `path` since the last call and empties the
/// file (nginx appends with `O_APPEND`, so it goes on at the new end). A
/// line nginx writes between the read and the emptying is lost; at that
/// rate of requests, others follow.
pub fn take(path: &Path) -> std::io::Result<Vec<u8>> {
    let mut file = match std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
    {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut text = Vec::new();
    (&mut file).take(READ_LIMIT).read_to_end(&mut text)?;
    if !text.is_empty() {
        file.set_len(0)?;
    }
    Ok(text)
}

/// Every second until `stopped`, counts the hosts nginx logged to `path`
/// as activity of their containers.
pub async fn follow(
    path: PathBuf,
    table: Arc<ContainerTable>,
    base_domain: String,
    stopped: impl Future<Output = ()>,
) {
    tokio::pin!(stopped);
    let base_domain = base_domain.trim_matches('.').to_ascii_lowercase();
    let mut tick = tokio::time::interval(POLL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut warned = false;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = &mut stopped => return,
        }
        let reading = path.clone();
        let text = match tokio::task::spawn_blocking(move || take(&reading)).await {
            Ok(Ok(text)) => text,
            Ok(Err(e)) => {
                if !warned {
                    tracing::warn!(file = %path.display(), error = %e, "cannot read nginx's activity log (--nginx-activity): requests nginx serves do not count as activity, so its containers may go to sleep in use");
                    warned = true;
                }
                continue;
            }
            Err(_) => continue,
        };
        warned = false;
        for host in hosts_of(&text) {
            if let Some(route) =
                name_from_host(host, &base_domain).and_then(|name| table.get(&name))
            {
                route.touch();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_host_counts_once_and_junk_is_skipped() {
        let hosts = hosts_of(b"a.localhost\nb.localhost\na.localhost\n\n\xff\xfe\nc.local");
        let mut hosts: Vec<_> = hosts.into_iter().collect();
        hosts.sort_unstable();
        assert_eq!(hosts, ["a.localhost", "b.localhost", "c.local"]);
    }

    #[test]
    fn the_log_is_read_once_and_emptied() {
        let dir =
            std::env::temp_dir().join(format!("dormant-activity-{}", crate::token::random_hex(4)));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("activity.log");
        assert!(take(&path).unwrap().is_empty(), "no file yet: nothing");
        let mut nginx = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .unwrap();
        use std::io::Write;
        nginx.write_all(b"a.localhost\n").unwrap();
        assert_eq!(take(&path).unwrap(), b"a.localhost\n");
        assert!(take(&path).unwrap().is_empty(), "read once");
        // nginx goes on appending at the new end, not past a hole.
        nginx.write_all(b"b.localhost\n").unwrap();
        assert_eq!(take(&path).unwrap(), b"b.localhost\n");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
