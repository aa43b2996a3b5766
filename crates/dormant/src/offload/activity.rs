//! Activity of offloaded containers: nginx serves running containers
//! without dormant, so it tells dormant of each request through its access
//! log, sent as syslog over UDP (the recipe's `access_log
//! syslog:server=...` with the format `$host`). Each datagram from a trusted
//! peer that names a container under the base domain counts as that
//! container's activity, as a request through dormant's own proxy would.
//!
//! nginx logs a request when it ends: a WebSocket or a download through
//! nginx is only seen once it closes (see the README).

use std::future::Future;
use std::sync::Arc;

use tokio::net::UdpSocket;

use crate::lifecycle::table::ContainerTable;
use crate::proxy::forwarded::TrustedProxies;
use crate::proxy::host::name_from_host;

/// Longest datagram read; longer ones are cut there (a hostname is at most
/// 253 bytes, a syslog header a few dozen).
const DATAGRAM_LIMIT: usize = 1024;

/// The container a syslog line's last word (the `$host` of the log format)
/// names, if any.
pub fn host_of_line(datagram: &[u8]) -> Option<&str> {
    let text = std::str::from_utf8(datagram).ok()?;
    text.split_ascii_whitespace().next_back()
}

/// Counts each datagram on `socket` from a `trusted` peer as activity of
/// the container it names, until `stopped`.
pub async fn hear(
    socket: UdpSocket,
    table: Arc<ContainerTable>,
    base_domain: String,
    trusted: TrustedProxies,
    stopped: impl Future<Output = ()>,
) {
    tokio::pin!(stopped);
    let base_domain = base_domain.trim_matches('.').to_ascii_lowercase();
    let mut buffer = vec![0u8; DATAGRAM_LIMIT];
    loop {
        let (len, peer) = tokio::select! {
            received = socket.recv_from(&mut buffer) => match received {
                Ok(received) => received,
                Err(e) => {
                    tracing::debug!(error = %e, "reading nginx's access log");
                    continue;
                }
            },
            () = &mut stopped => return,
        };
        if !trusted.trusts(peer.ip()) {
            tracing::debug!(%peer, "an access log line from a peer outside --trusted-proxies: ignored");
            continue;
        }
        let Some(host) = host_of_line(&buffer[..len]) else {
            continue;
        };
        if let Some(route) = name_from_host(host, &base_domain).and_then(|name| table.get(&name)) {
            route.touch();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_host_is_the_last_word_of_the_line() {
        assert_eq!(
            host_of_line(b"<190>Dec  2 16:20:01 dormant: alice.apps.example.com"),
            Some("alice.apps.example.com")
        );
        assert_eq!(
            host_of_line(b"<190>Dec  2 16:20:01 dormant: "),
            Some("dormant:")
        );
        assert_eq!(host_of_line(b""), None);
        assert_eq!(host_of_line(b"\xff\xfe"), None);
    }
}
