//! Which container a request is for: the first label of its Host under the
//! base domain.

/// Finds the container name in a Host header value: `alice.example.com:8080`
/// with base domain `example.com` gives `alice`. Case-insensitive; the port
/// and a trailing dot are ignored; only one label may precede the base domain.
pub fn name_from_host<'h>(host: &'h str, base_domain: &str) -> Option<std::borrow::Cow<'h, str>> {
    let host = strip_port(host);
    let host = host.strip_suffix('.').unwrap_or(host);
    let split = host.len().checked_sub(base_domain.len() + 1)?;
    if !host.is_char_boundary(split) {
        return None;
    }
    let (name, suffix) = host.split_at(split);
    if !suffix.starts_with('.') || !suffix[1..].eq_ignore_ascii_case(base_domain) {
        return None;
    }
    if name.is_empty() || name.contains('.') {
        return None;
    }
    Some(if name.bytes().any(|b| b.is_ascii_uppercase()) {
        std::borrow::Cow::Owned(name.to_ascii_lowercase())
    } else {
        std::borrow::Cow::Borrowed(name)
    })
}

fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        // An IPv6 literal never names a container; keep it whole so it fails.
        return host;
    }
    match host.rsplit_once(':') {
        Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => host,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_come_from_the_first_label_of_the_base_domain() {
        let name = |h| name_from_host(h, "localhost").map(|n| n.into_owned());
        assert_eq!(name("alice.localhost").as_deref(), Some("alice"));
        assert_eq!(name("alice.localhost:8080").as_deref(), Some("alice"));
        assert_eq!(name("ALICE.LocalHost.").as_deref(), Some("alice"));
        assert_eq!(name("localhost"), None);
        assert_eq!(name(".localhost"), None);
        assert_eq!(name("a.b.localhost"), None);
        assert_eq!(name("alicelocalhost"), None);
        assert_eq!(name("alice.otherhost"), None);
        assert_eq!(name("[::1]:8080"), None);
        let name = |h| name_from_host(h, "dev.example.com").map(|n| n.into_owned());
        assert_eq!(name("bob.dev.example.com").as_deref(), Some("bob"));
        assert_eq!(name("bob.example.com"), None);
    }
}
