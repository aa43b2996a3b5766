//! The `X-Forwarded-*` headers a container sees, set by dormant: a client
//! can claim any address in them, so only a peer in `--trusted-proxies`
//! (a load balancer in front of dormant) may extend the chain.

use std::fmt;
use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
/// Other ways a client could claim an address, removed unless trusted.
const CLIENT_CLAIMS: [HeaderName; 2] = [header::FORWARDED, HeaderName::from_static("x-real-ip")];

/// An address block, `10.0.0.0/8` or `2001:db8::/32`; a bare address is a
/// block of one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

impl Cidr {
    pub fn contains(&self, ip: IpAddr) -> bool {
        // A v4 peer on a dual-stack socket shows as `::ffff:a.b.c.d`.
        match (self.network, ip.to_canonical()) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                prefix_matches(&net.octets(), &ip.octets(), self.prefix)
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                prefix_matches(&net.octets(), &ip.octets(), self.prefix)
            }
            _ => false,
        }
    }
}

/// Whether the first `prefix` bits of `a` and `b` agree.
fn prefix_matches(a: &[u8], b: &[u8], prefix: u8) -> bool {
    let whole = usize::from(prefix / 8);
    let rest = prefix % 8;
    if a[..whole] != b[..whole] {
        return false;
    }
    rest == 0 || {
        let mask = 0xffu8 << (8 - rest);
        a[whole] & mask == b[whole] & mask
    }
}

impl FromStr for Cidr {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let (address, prefix) = match s.split_once('/') {
            Some((address, prefix)) => (address, Some(prefix)),
            None => (s, None),
        };
        let network: IpAddr = address
            .parse()
            .map_err(|_| format!("`{s}` is not an address block like 10.0.0.0/8 or fd00::/8"))?;
        let max = if network.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => match p.parse::<u8>() {
                Ok(p) if p <= max => p,
                _ => return Err(format!("`{s}`: the prefix length must be 0..={max}")),
            },
        };
        Ok(Self { network, prefix })
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

/// The peers whose `X-Forwarded-*` headers are believed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies(Vec<Cidr>);

impl TrustedProxies {
    pub fn new(blocks: Vec<Cidr>) -> Self {
        Self(blocks)
    }

    pub fn trusts(&self, peer: IpAddr) -> bool {
        self.0.iter().any(|block| block.contains(peer))
    }
}

/// A peer's address as an `X-Forwarded-For` entry: made once per
/// connection, not per request.
pub fn client_ip_header(peer: SocketAddr) -> HeaderValue {
    let text = format_ip(peer.ip());
    HeaderValue::from_bytes(text.as_bytes()).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// Sets the forwarded headers for a request from the peer whose address is
/// `peer_ip` (see [`client_ip_header`]). From a trusted proxy the chain is
/// kept and the peer appended; from anyone else the client's own claims are
/// replaced by what dormant saw: its address, the `Host` it asked for and
/// plain `http`.
pub fn set_forwarded_headers(headers: &mut HeaderMap, peer_ip: &HeaderValue, trusted: bool) {
    let forwarded_for = if trusted && headers.contains_key(&X_FORWARDED_FOR) {
        // Several header lines are one comma-separated list (RFC 9110 §5.3).
        let mut joined = Vec::with_capacity(64);
        for hop in headers.get_all(&X_FORWARDED_FOR) {
            if !hop.is_empty() {
                joined.extend_from_slice(hop.as_bytes());
                joined.extend_from_slice(b", ");
            }
        }
        joined.extend_from_slice(peer_ip.as_bytes());
        HeaderValue::from_bytes(&joined)
    } else {
        Ok(peer_ip.clone())
    };
    if let Ok(value) = forwarded_for {
        headers.insert(X_FORWARDED_FOR, value);
    }
    if !trusted || !headers.contains_key(&X_FORWARDED_HOST) {
        match headers.get(header::HOST).cloned() {
            Some(host) => headers.insert(X_FORWARDED_HOST, host),
            None => headers.remove(&X_FORWARDED_HOST),
        };
    }
    if !trusted || !headers.contains_key(&X_FORWARDED_PROTO) {
        // dormant's proxy speaks plain HTTP; TLS, if any, ended before it.
        headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static("http"));
    }
    // One pass over the names instead of a hashed lookup per claim: most
    // requests carry none.
    if !trusted && headers.keys().any(|name| CLIENT_CLAIMS.contains(name)) {
        for claim in &CLIENT_CLAIMS {
            headers.remove(claim);
        }
    }
}

/// Most `X-Forwarded-For` hops looked at for the client's address: a chain
/// of trusted proxies longer than this is not a real set-up.
const MAX_CLIENT_HOPS: usize = 16;

/// The address a request comes from, for limits: the peer; or, when the
/// peer is a trusted proxy, the first hop of `X-Forwarded-For` that is not
/// a trusted proxy, reading from the right (the hops a trusted proxy added
/// are true, what the client wrote to the left of them may not be). A hop
/// that is not an address ends the walk at the last trusted one: whatever
/// sent it is behind that proxy.
pub fn client_ip(
    peer: SocketAddr,
    trusted: bool,
    proxies: &TrustedProxies,
    headers: &HeaderMap,
) -> IpAddr {
    let mut client = peer.ip().to_canonical();
    if !trusted {
        return client;
    }
    // Later header lines are later hops (RFC 9110 §5.3).
    let hops = headers
        .get_all(&X_FORWARDED_FOR)
        .iter()
        .rev()
        .flat_map(|line| line.as_bytes().rsplit(|&b| b == b','))
        .take(MAX_CLIENT_HOPS);
    for hop in hops {
        let Some(ip) = parse_hop(hop) else {
            break;
        };
        client = ip;
        if !proxies.trusts(ip) {
            break;
        }
    }
    client
}

/// One `X-Forwarded-For` entry: an address, maybe with a port
/// (`1.2.3.4:5`, `[2001:db8::1]:5`).
fn parse_hop(hop: &[u8]) -> Option<IpAddr> {
    let text = std::str::from_utf8(hop).ok()?.trim();
    if let Ok(ip) = text.parse::<IpAddr>() {
        return Some(ip.to_canonical());
    }
    text.parse::<SocketAddr>()
        .ok()
        .map(|addr| addr.ip().to_canonical())
}

/// An address as text, on the stack: the request path allocates nothing
/// for it.
fn format_ip(ip: IpAddr) -> StackText {
    let mut text = StackText {
        bytes: [0; 46],
        len: 0,
    };
    let mut cursor = std::io::Cursor::new(&mut text.bytes[..]);
    // 46 bytes hold the longest IPv6 text form.
    let _ = write!(cursor, "{}", ip.to_canonical());
    text.len = cursor.position() as usize;
    text
}

struct StackText {
    bytes: [u8; 46],
    len: usize,
}

impl StackText {
    fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cidr(s: &str) -> Cidr {
        s.parse().unwrap()
    }

    #[test]
    fn cidrs_parse_and_match() {
        assert!(cidr("10.0.0.0/8").contains("10.200.3.4".parse().unwrap()));
        assert!(!cidr("10.0.0.0/8").contains("11.0.0.1".parse().unwrap()));
        assert!(cidr("192.168.1.128/25").contains("192.168.1.200".parse().unwrap()));
        assert!(!cidr("192.168.1.128/25").contains("192.168.1.100".parse().unwrap()));
        assert!(cidr("127.0.0.1").contains("127.0.0.1".parse().unwrap()));
        assert!(!cidr("127.0.0.1").contains("127.0.0.2".parse().unwrap()));
        assert!(cidr("0.0.0.0/0").contains("8.8.8.8".parse().unwrap()));
        assert!(cidr("fd00::/8").contains("fd12::1".parse().unwrap()));
        assert!(!cidr("fd00::/8").contains("fe80::1".parse().unwrap()));
        assert!(cidr(" 10.0.0.0/8 ").contains("::ffff:10.1.2.3".parse().unwrap()));
        assert!(!cidr("fd00::/8").contains("10.1.2.3".parse().unwrap()));
        assert_eq!(cidr("10.0.0.0/8").to_string(), "10.0.0.0/8");
        for bad in [
            "",
            "10.0.0.0/33",
            "fd00::/129",
            "10.0.0/8",
            "host/8",
            "10.0.0.0/-1",
            "10.0.0.0/",
        ] {
            assert!(bad.parse::<Cidr>().is_err(), "{bad:?} parsed");
        }
    }

    fn client_headers() -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::HOST, HeaderValue::from_static("a.localhost"));
        headers.insert(X_FORWARDED_FOR, HeaderValue::from_static("6.6.6.6"));
        headers.insert(X_FORWARDED_HOST, HeaderValue::from_static("bank.example"));
        headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static("https"));
        headers.insert(header::FORWARDED, HeaderValue::from_static("for=6.6.6.6"));
        headers.insert("x-real-ip", HeaderValue::from_static("6.6.6.6"));
        headers
    }

    #[test]
    fn an_untrusted_peer_s_claims_are_replaced() {
        let mut headers = client_headers();
        set_forwarded_headers(
            &mut headers,
            &client_ip_header("203.0.113.9:5000".parse().unwrap()),
            false,
        );
        assert_eq!(headers[X_FORWARDED_FOR], "203.0.113.9");
        assert_eq!(headers[X_FORWARDED_HOST], "a.localhost");
        assert_eq!(headers[X_FORWARDED_PROTO], "http");
        assert!(!headers.contains_key(header::FORWARDED));
        assert!(!headers.contains_key("x-real-ip"));
        assert_eq!(headers.get_all(X_FORWARDED_FOR).iter().count(), 1);
    }

    #[test]
    fn a_trusted_peer_s_chain_is_kept_and_extended() {
        let mut headers = client_headers();
        set_forwarded_headers(
            &mut headers,
            &client_ip_header("10.0.0.2:5000".parse().unwrap()),
            true,
        );
        assert_eq!(headers[X_FORWARDED_FOR], "6.6.6.6, 10.0.0.2");
        headers.append(X_FORWARDED_FOR, HeaderValue::from_static("7.7.7.7"));
        set_forwarded_headers(
            &mut headers,
            &client_ip_header("10.0.0.3:5000".parse().unwrap()),
            true,
        );
        assert_eq!(
            headers[X_FORWARDED_FOR],
            "6.6.6.6, 10.0.0.2, 7.7.7.7, 10.0.0.3"
        );
        assert_eq!(headers.get_all(X_FORWARDED_FOR).iter().count(), 1);
        assert_eq!(headers[X_FORWARDED_HOST], "bank.example");
        assert_eq!(headers[X_FORWARDED_PROTO], "https");
        assert!(headers.contains_key(header::FORWARDED));
    }

    #[test]
    fn a_trusted_peer_without_a_chain_starts_one() {
        let mut headers = HeaderMap::new();
        headers.insert(header::HOST, HeaderValue::from_static("a.localhost"));
        set_forwarded_headers(
            &mut headers,
            &client_ip_header("[::ffff:10.0.0.2]:5000".parse().unwrap()),
            true,
        );
        assert_eq!(headers[X_FORWARDED_FOR], "10.0.0.2");
        assert_eq!(headers[X_FORWARDED_HOST], "a.localhost");
        assert_eq!(headers[X_FORWARDED_PROTO], "http");
    }

    #[test]
    fn the_client_is_the_first_untrusted_hop_from_the_right() {
        let proxies = TrustedProxies::new(vec![cidr("10.0.0.0/8")]);
        let peer: SocketAddr = "10.0.0.2:5000".parse().unwrap();
        let with = |lines: &[&str]| {
            let mut headers = HeaderMap::new();
            for line in lines {
                headers.append(X_FORWARDED_FOR, HeaderValue::from_str(line).unwrap());
            }
            headers
        };
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        // An untrusted peer's claims are ignored.
        let stranger: SocketAddr = "203.0.113.9:1".parse().unwrap();
        assert_eq!(
            client_ip(stranger, false, &proxies, &with(&["1.1.1.1"])),
            ip("203.0.113.9")
        );
        // The client wrote a fake hop; the trusted proxies added the rest.
        assert_eq!(
            client_ip(
                peer,
                true,
                &proxies,
                &with(&["6.6.6.6, 198.51.100.4, 10.0.0.7"])
            ),
            ip("198.51.100.4")
        );
        assert_eq!(
            client_ip(
                peer,
                true,
                &proxies,
                &with(&["6.6.6.6", "198.51.100.4", "10.0.0.7"])
            ),
            ip("198.51.100.4")
        );
        assert_eq!(
            client_ip(peer, true, &proxies, &with(&["[2001:db8::1]:443"])),
            ip("2001:db8::1")
        );
        // No chain, or only trusted hops: the nearest trusted address.
        assert_eq!(client_ip(peer, true, &proxies, &with(&[])), ip("10.0.0.2"));
        assert_eq!(
            client_ip(peer, true, &proxies, &with(&["10.0.0.9"])),
            ip("10.0.0.9")
        );
        // Garbage ends the walk at the last trusted hop.
        assert_eq!(
            client_ip(
                peer,
                true,
                &proxies,
                &with(&["198.51.100.4, junk, 10.0.0.7"])
            ),
            ip("10.0.0.7")
        );
    }

    #[test]
    fn trusted_proxies_match_any_of_their_blocks() {
        let trusted = TrustedProxies::new(vec![cidr("10.0.0.0/8"), cidr("::1")]);
        assert!(trusted.trusts("10.9.9.9".parse().unwrap()));
        assert!(trusted.trusts("::1".parse().unwrap()));
        assert!(!trusted.trusts("127.0.0.1".parse().unwrap()));
        assert!(!TrustedProxies::default().trusts("10.0.0.1".parse().unwrap()));
    }
}
