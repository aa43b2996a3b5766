//! The TCP ports a container's app listens on, read from the host's `/proc` through the
//! container's init process: its `net/tcp` and `net/tcp6` show the sockets of its network
//! namespace. Only possible with the daemon on this host and dormant as root; otherwise
//! (the pid means nothing here, or may not be read) the answer is "cannot tell".

use std::net::{Ipv4Addr, Ipv6Addr};

/// Sockets in state LISTEN, as `/proc/net/tcp` writes it.
const LISTEN: &str = "0A";
/// Lines read from each table at most: a container holding more sockets than this is not
/// left without an answer, only judged on its first ones.
const MAX_LINES: usize = 65_536;

/// The ports container `id` (whose init process is `pid` on this host) listens on at an
/// address reachable from outside its namespace, sorted; `None` when `pid` is not that
/// container's process as seen from here, or its tables cannot be read.
pub fn listening(pid: i64, id: &str) -> Option<Vec<u16>> {
    let pid = u32::try_from(pid).ok().filter(|pid| *pid > 0)?;
    // A pid from a daemon on another host, or in another pid namespace, names some other
    // process here (or none): its cgroups must name the container.
    let cgroup = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    if id.len() < 12 || !cgroup.contains(id) {
        return None;
    }
    let mut ports = Vec::new();
    for table in ["tcp", "tcp6"] {
        let text = std::fs::read_to_string(format!("/proc/{pid}/net/{table}")).ok()?;
        ports.extend(parse_table(&text));
    }
    ports.sort_unstable();
    ports.dedup();
    Some(ports)
}

/// Ports of the LISTEN sockets in one table whose address is not loopback: an app bound to
/// 127.0.0.1 cannot be reached from outside its container (and Docker's embedded DNS
/// listens there in every container of a user-defined network).
fn parse_table(text: &str) -> Vec<u16> {
    let mut ports = Vec::new();
    for line in text.lines().skip(1).take(MAX_LINES) {
        let mut fields = line.split_whitespace();
        let (Some(_slot), Some(local), Some(_remote), Some(state)) =
            (fields.next(), fields.next(), fields.next(), fields.next())
        else {
            continue;
        };
        if state != LISTEN {
            continue;
        }
        let Some((address, port)) = local.split_once(':') else {
            continue;
        };
        let Ok(port) = u16::from_str_radix(port, 16) else {
            continue;
        };
        if is_loopback(address) == Some(false) {
            ports.push(port);
        }
    }
    ports
}

/// Whether a hex address of `/proc/net/tcp{,6}` (32-bit words in the kernel's byte order)
/// is loopback; `None` if it is not one.
fn is_loopback(hex: &str) -> Option<bool> {
    let word = |i: usize| {
        hex.get(i * 8..i * 8 + 8)
            .and_then(|w| u32::from_str_radix(w, 16).ok())
            .map(u32::to_ne_bytes)
    };
    match hex.len() {
        8 => Some(Ipv4Addr::from(word(0)?).is_loopback()),
        32 => {
            let mut bytes = [0u8; 16];
            for i in 0..4 {
                bytes[i * 4..i * 4 + 4].copy_from_slice(&word(i)?);
            }
            let v6 = Ipv6Addr::from(bytes);
            Some(v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback()))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Hex as the kernel writes an IPv4 address on this machine.
    fn v4(a: Ipv4Addr) -> String {
        format!("{:08X}", u32::from_ne_bytes(a.octets()))
    }

    fn v6(a: Ipv6Addr) -> String {
        a.octets()
            .chunks(4)
            .map(|w| format!("{:08X}", u32::from_ne_bytes(w.try_into().unwrap())))
            .collect()
    }

    #[test]
    fn listening_sockets_off_loopback_are_read_from_both_tables() {
        let header = "  sl  local_address rem_address   st tx_queue rx_queue\n";
        let tcp = format!(
            "{header}   0: {}:A955 00000000:0000 0A 0\n   1: {}:1F90 00000000:0000 0A 0\n   \
             2: {}:0BB8 0A000005:D431 01 0\n   3: {}:2382 00000000:0000 0A 0\n",
            v4(Ipv4Addr::new(127, 0, 0, 11)),
            v4(Ipv4Addr::UNSPECIFIED),
            v4(Ipv4Addr::new(10, 0, 0, 2)),
            v4(Ipv4Addr::new(10, 0, 0, 2)),
        );
        // DNS on loopback (ignored), 8080 on any address, an established connection from
        // port 3000 (ignored), 9090 on the container's own address.
        assert_eq!(parse_table(&tcp), vec![8080, 9090]);
        let tcp6 = format!(
            "{header}   0: {}:0BB8 {}:0000 0A 0\n   1: {}:1F40 {}:0000 0A 0\n   \
             2: {}:0050 {}:0000 0A 0\n",
            v6(Ipv6Addr::UNSPECIFIED),
            v6(Ipv6Addr::UNSPECIFIED),
            v6(Ipv6Addr::LOCALHOST),
            v6(Ipv6Addr::UNSPECIFIED),
            v6(Ipv4Addr::new(127, 0, 0, 1).to_ipv6_mapped()),
            v6(Ipv6Addr::UNSPECIFIED),
        );
        assert_eq!(parse_table(&tcp6), vec![3000]);
        assert_eq!(parse_table("header only\n"), Vec::<u16>::new());
        assert_eq!(
            parse_table("h\n garbage line\n 0: zz:1F90 0 0A\n"),
            Vec::<u16>::new()
        );
    }

    #[test]
    fn a_process_that_is_not_the_container_gives_no_answer() {
        // This test's own process is no container's init.
        let me = i64::from(std::process::id());
        assert_eq!(listening(me, "0123456789abcdef0123456789abcdef"), None);
        assert_eq!(listening(0, "0123456789abcdef"), None);
        assert_eq!(listening(-1, "0123456789abcdef"), None);
    }
}
