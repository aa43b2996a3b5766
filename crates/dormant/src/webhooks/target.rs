//! Where a webhook may point: a parsed `http://` or `https://` URL, and
//! which addresses its host may resolve to. A tenant's webhook must not
//! become a way into the host's own network (dormant's API, a database on
//! loopback, a cloud metadata service): its host is resolved at each
//! delivery and only public addresses are dialled, unless
//! `--webhook-allow-private`.

use std::net::{IpAddr, SocketAddr};

use http::Uri;

/// Longest webhook URL accepted.
pub const MAX_URL: usize = 2048;

/// How a delivery talks to the receiver.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    Http,
    /// TLS, the certificate checked against the URL's host.
    Https,
}

/// A webhook's URL, checked once when it is registered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub scheme: Scheme,
    pub host: String,
    pub port: u16,
    /// Path and query, starting with `/`.
    pub path: String,
    /// `Host` header value (host, and the port when the URL gives one).
    pub authority: String,
}

impl Target {
    /// Parses `url`; the error says what is wrong, for the API's 400.
    pub fn parse(url: &str) -> Result<Self, String> {
        if url.len() > MAX_URL {
            return Err(format!("must be at most {MAX_URL} characters"));
        }
        let uri: Uri = url.parse().map_err(|e| format!("is not a URL ({e})"))?;
        let scheme = match uri.scheme_str() {
            Some("http") => Scheme::Http,
            Some("https") => Scheme::Https,
            _ => return Err("must be an http:// or https:// URL".into()),
        };
        let authority = uri.authority().ok_or("must name a host")?;
        if authority.as_str().contains('@') {
            return Err("must not carry a user name or password".into());
        }
        let host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_ascii_lowercase();
        if host.is_empty() {
            return Err("must name a host".into());
        }
        if scheme == Scheme::Https {
            super::tls::server_name(&host)?;
        }
        let port = authority.port_u16().unwrap_or(match scheme {
            Scheme::Http => 80,
            Scheme::Https => 443,
        });
        let path = uri
            .path_and_query()
            .map(|p| p.as_str().to_owned())
            .filter(|p| p.starts_with('/'))
            .unwrap_or_else(|| "/".into());
        Ok(Self {
            scheme,
            authority: authority.as_str().to_owned(),
            host,
            port,
            path,
        })
    }

    /// The addresses to dial, resolved now and filtered by `policy`; the
    /// error says why none is left.
    pub async fn resolve(&self, policy: AddressPolicy) -> Result<Vec<SocketAddr>, String> {
        let found: Vec<SocketAddr> = match self.host.parse::<IpAddr>() {
            Ok(ip) => vec![SocketAddr::new(ip, self.port)],
            Err(_) => tokio::net::lookup_host((self.host.as_str(), self.port))
                .await
                .map_err(|e| format!("cannot resolve {}: {e}", self.host))?
                .collect(),
        };
        let allowed: Vec<SocketAddr> = found
            .iter()
            .copied()
            .filter(|addr| policy.allows(addr.ip()))
            .collect();
        if allowed.is_empty() {
            return Err(match found.first() {
                Some(addr) => format!(
                    "{} resolves to {}, a private or local address; only the admin's webhooks may reach those (or set --webhook-allow-private)",
                    self.host,
                    addr.ip()
                ),
                None => format!("{} resolves to no address", self.host),
            });
        }
        Ok(allowed)
    }
}

/// Which addresses a webhook may dial.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddressPolicy {
    /// Any address: the admin's webhooks, or `--webhook-allow-private`.
    Any,
    /// Public addresses only: a tenant's webhooks.
    PublicOnly,
}

impl AddressPolicy {
    pub fn allows(self, ip: IpAddr) -> bool {
        match self {
            Self::Any => true,
            Self::PublicOnly => is_public(ip),
        }
    }
}

/// Whether `ip` is a public unicast address: not loopback, private,
/// link-local, shared (CGNAT), documentation, multicast or unspecified.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            !(v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.is_documentation()
                || a == 0
                || (a == 100 && (64..128).contains(&b))
                || (a == 192 && b == 0)
                || (a == 198 && (18..20).contains(&b))
                || a >= 240)
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public(IpAddr::V4(v4));
            }
            let first = v6.segments()[0];
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80
                || first == 0x2001 && v6.segments()[1] == 0x0db8)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_http_url_is_split_into_what_a_delivery_needs() {
        let t = Target::parse("http://Hooks.Example.com:8080/in?x=1").unwrap();
        assert_eq!(t.scheme, Scheme::Http);
        assert_eq!(t.host, "hooks.example.com");
        assert_eq!(t.port, 8080);
        assert_eq!(t.path, "/in?x=1");
        assert_eq!(t.authority, "Hooks.Example.com:8080");
        let bare = Target::parse("http://[::1]").unwrap();
        assert_eq!(
            (bare.host.as_str(), bare.port, bare.path.as_str()),
            ("::1", 80, "/")
        );
    }

    #[test]
    fn an_https_url_defaults_to_port_443() {
        let t = Target::parse("https://hooks.example.com/in").unwrap();
        assert_eq!(
            (t.scheme, t.host.as_str(), t.port, t.path.as_str()),
            (Scheme::Https, "hooks.example.com", 443, "/in")
        );
        assert_eq!(t.authority, "hooks.example.com");
        let literal = Target::parse("https://[::1]:8443/").unwrap();
        assert_eq!((literal.host.as_str(), literal.port), ("::1", 8443));
    }

    #[test]
    fn other_urls_are_refused_with_a_reason() {
        for (url, says) in [
            ("ftp://example.com/", "http:// or https://"),
            ("https://user:pw@example.com/", "password"),
            (
                "https://-hooks.example.com/",
                "cannot be checked against a certificate",
            ),
            ("/relative", "http://"),
            ("not a url", "not a URL"),
        ] {
            let why = Target::parse(url).unwrap_err();
            assert!(why.contains(says), "{url}: {why}");
        }
        let long = format!("http://example.com/{}", "a".repeat(MAX_URL));
        assert!(Target::parse(&long).unwrap_err().contains("at most"));
    }

    #[test]
    fn only_public_addresses_are_public() {
        for private in [
            "127.0.0.1",
            "10.1.2.3",
            "172.17.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "255.255.255.255",
            "224.0.0.1",
            "::1",
            "fe80::1",
            "fd00::1",
            "::ffff:127.0.0.1",
            "::",
        ] {
            assert!(!is_public(private.parse().unwrap()), "{private}");
        }
        for public in ["1.1.1.1", "93.184.216.34", "2606:4700::1111"] {
            assert!(is_public(public.parse().unwrap()), "{public}");
        }
    }

    #[tokio::test]
    async fn a_tenants_webhook_never_dials_a_local_address() {
        let t = Target::parse("http://127.0.0.1:7070/v1/containers").unwrap();
        let why = t.resolve(AddressPolicy::PublicOnly).await.unwrap_err();
        assert!(why.contains("private or local"), "{why}");
        let named = Target::parse("http://localhost:7070/").unwrap();
        assert!(named.resolve(AddressPolicy::PublicOnly).await.is_err());
        assert_eq!(
            t.resolve(AddressPolicy::Any).await.unwrap(),
            ["127.0.0.1:7070".parse().unwrap()]
        );
    }
}
