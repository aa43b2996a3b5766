//! Session cookies of private containers: signed by dormant (HMAC-SHA256),
//! bound to one container, expiring; read from and stripped out of the
//! `Cookie` header before a request is forwarded.
//!
//! A value is `<name>.<created_at>.<expires>.<signature>`: the container's
//! name and when it was made (so a cookie never opens a later container of
//! the same name), the Unix second it expires, and the HMAC of the three
//! in hex. Verifying allocates nothing.

use hmac::{Hmac, Mac};
use http::header::{self, HeaderMap, HeaderValue};
use sha2::Sha256;

use crate::domain::UnixMillis;

/// The cookie's name. Any other cookie is the app's and passes untouched.
pub const COOKIE_NAME: &str = "dormant_session";
/// Separates the signed message's fields; never in a name or a number.
const DOMAIN_SEPARATION: &[u8] = b"dormant-session-v1";
/// Most `dormant_session` cookies of one request that are checked: another
/// app under the same base domain can toss in cookies for the whole domain,
/// which must not make a request cost many signatures.
const MOST_CANDIDATES: usize = 4;

/// Signs and verifies session cookies with the data dir's key.
#[derive(Clone)]
pub struct SessionSigner {
    /// Keyed once; each use clones it (no key schedule per request).
    mac: Hmac<Sha256>,
}

impl SessionSigner {
    pub fn new(key: &[u8]) -> Self {
        Self {
            mac: Hmac::new_from_slice(key).expect("HMAC takes keys of any length"),
        }
    }

    /// A cookie value for container `name` made at `created_at`, valid
    /// until the Unix second `expires`.
    pub fn sign(&self, name: &str, created_at: UnixMillis, expires: u64) -> String {
        let (created_at, expires) = (created_at.to_string(), expires.to_string());
        let tag = self
            .mac(name, &created_at, &expires)
            .finalize()
            .into_bytes();
        let mut value = format!("{name}.{created_at}.{expires}.");
        for byte in tag {
            value.push(char::from(HEX[usize::from(byte >> 4)]));
            value.push(char::from(HEX[usize::from(byte & 0xf)]));
        }
        value
    }

    /// Whether `value` is a session for container `name` made at
    /// `created_at`, signed by this key and not expired at Unix second `now`.
    pub fn verify(&self, value: &[u8], name: &str, created_at: UnixMillis, now: u64) -> bool {
        let Ok(value) = std::str::from_utf8(value) else {
            return false;
        };
        let mut fields = value.rsplitn(4, '.');
        let (Some(tag), Some(expires), Some(made), Some(cookie_name)) =
            (fields.next(), fields.next(), fields.next(), fields.next())
        else {
            return false;
        };
        if cookie_name != name || made.parse::<UnixMillis>().ok() != Some(created_at) {
            return false;
        }
        if !expires.parse::<u64>().is_ok_and(|expires| expires > now) {
            return false;
        }
        let Some(tag) = decode_tag(tag) else {
            return false;
        };
        // Constant time: a forger learns nothing from how long it took.
        self.mac(cookie_name, made, expires)
            .verify_slice(&tag)
            .is_ok()
    }

    /// Whether any `dormant_session` cookie in `headers` verifies (see
    /// [`Self::verify`]).
    pub fn any_valid(
        &self,
        headers: &HeaderMap,
        name: &str,
        created_at: UnixMillis,
        now: u64,
    ) -> bool {
        session_values(headers)
            .take(MOST_CANDIDATES)
            .any(|value| self.verify(value, name, created_at, now))
    }

    fn mac(&self, name: &str, created_at: &str, expires: &str) -> Hmac<Sha256> {
        let mut mac = self.mac.clone();
        for part in [name, created_at, expires] {
            mac.update(DOMAIN_SEPARATION);
            mac.update(b"\0");
            mac.update(part.as_bytes());
        }
        mac
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// The 32-byte tag from 64 lowercase hex digits, on the stack.
fn decode_tag(text: &str) -> Option<[u8; 32]> {
    let text = text.as_bytes();
    if text.len() != 64 {
        return None;
    }
    let digit = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    let mut tag = [0u8; 32];
    for (byte, pair) in tag.iter_mut().zip(text.chunks_exact(2)) {
        *byte = digit(pair[0])? << 4 | digit(pair[1])?;
    }
    Some(tag)
}

/// Each `name=value` pair of every `Cookie` header, trimmed.
fn cookie_pairs(headers: &HeaderMap) -> impl Iterator<Item = &[u8]> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .flat_map(|value| value.as_bytes().split(|b| *b == b';'))
        .map(<[u8]>::trim_ascii)
        .filter(|pair| !pair.is_empty())
}

/// The value of a `dormant_session` pair, if `pair` is one.
fn session_value(pair: &[u8]) -> Option<&[u8]> {
    pair.strip_prefix(COOKIE_NAME.as_bytes())?
        .strip_prefix(b"=")
        .map(|value| {
            value
                .strip_prefix(b"\"")
                .and_then(|v| v.strip_suffix(b"\""))
                .unwrap_or(value)
        })
}

fn session_values(headers: &HeaderMap) -> impl Iterator<Item = &[u8]> {
    cookie_pairs(headers).filter_map(session_value)
}

/// Takes dormant's cookie out of the request so the app never sees it:
/// the other cookies are kept, in one `Cookie` header; none left, no header.
/// Allocates only when dormant's cookie is there.
pub fn strip_session_cookie(headers: &mut HeaderMap) {
    if session_values(headers).next().is_none() {
        return;
    }
    let mut kept: Vec<u8> = Vec::new();
    for pair in cookie_pairs(headers).filter(|pair| session_value(pair).is_none()) {
        if !kept.is_empty() {
            kept.extend_from_slice(b"; ");
        }
        kept.extend_from_slice(pair);
    }
    headers.remove(header::COOKIE);
    if kept.is_empty() {
        return;
    }
    // The pairs came from valid header values, so this cannot fail; if it
    // somehow did, the app gets no cookies rather than dormant's.
    if let Ok(value) = HeaderValue::from_bytes(&kept) {
        headers.insert(header::COOKIE, value);
    }
}

/// The `Set-Cookie` of a new session: for this hostname only (no
/// `Domain`), never readable by scripts, sent on top-level navigation from
/// other sites but not on their sub-requests, and only over TLS when the
/// client reached dormant over TLS.
pub fn set_cookie(value: &str, max_age_secs: u64, secure: bool) -> HeaderValue {
    let secure = if secure { "; Secure" } else { "" };
    HeaderValue::from_str(&format!(
        "{COOKIE_NAME}={value}; Max-Age={max_age_secs}; Path=/; HttpOnly; SameSite=Lax{secure}"
    ))
    .expect("a cookie of a DNS name, digits and hex is a valid header value")
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_800_000_000;

    fn signer() -> SessionSigner {
        SessionSigner::new(&[7u8; 32])
    }

    fn cookies(values: &[&str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for value in values {
            headers.append(header::COOKIE, HeaderValue::from_str(value).unwrap());
        }
        headers
    }

    #[test]
    fn a_signed_session_verifies_for_its_container_until_it_expires() {
        let value = signer().sign("alice", 42, NOW + 60);
        assert!(value.starts_with("alice.42."), "{value}");
        let s = signer();
        assert!(s.verify(value.as_bytes(), "alice", 42, NOW));
        assert!(s.verify(value.as_bytes(), "alice", 42, NOW + 59));
        assert!(
            !s.verify(value.as_bytes(), "alice", 42, NOW + 60),
            "expired"
        );
        assert!(
            !s.verify(value.as_bytes(), "bob", 42, NOW),
            "another container"
        );
        assert!(
            !s.verify(value.as_bytes(), "alice", 43, NOW),
            "a later container of the same name"
        );
        let other_key = SessionSigner::new(&[8u8; 32]);
        assert!(!other_key.verify(value.as_bytes(), "alice", 42, NOW));
    }

    #[test]
    fn tampered_values_are_refused() {
        let s = signer();
        let value = s.sign("alice", 42, NOW + 60);
        let tag = value.rsplit('.').next().unwrap().to_owned();
        // A later expiry, another name, another incarnation, with the old tag.
        for forged in [
            format!("alice.42.{}.{tag}", NOW + 6000),
            format!("bob.42.{}.{tag}", NOW + 60),
            format!("alice.43.{}.{tag}", NOW + 60),
            format!("x.alice.42.{}.{tag}", NOW + 60),
        ] {
            assert!(!s.verify(forged.as_bytes(), "alice", 42, NOW), "{forged}");
        }
        let mut flipped = value.clone().into_bytes();
        let last = flipped.len() - 1;
        flipped[last] = if flipped[last] == b'0' { b'1' } else { b'0' };
        assert!(!s.verify(&flipped, "alice", 42, NOW));
        for junk in [
            "",
            "alice",
            "alice.42",
            "alice.42.x.y",
            "....",
            "alice.42.99999999999.zz",
        ] {
            assert!(!s.verify(junk.as_bytes(), "alice", 42, NOW), "{junk}");
        }
        let upper = value.to_ascii_uppercase().replace("ALICE", "alice");
        assert!(!s.verify(upper.as_bytes(), "alice", 42, NOW));
    }

    #[test]
    fn any_valid_cookie_among_tossed_ones_admits() {
        let s = signer();
        let good = s.sign("alice", 42, NOW + 60);
        let theirs = s.sign("evil", 9, NOW + 60);
        let headers = cookies(&[
            &format!("a=1; dormant_session={theirs}"),
            &format!("dormant_session=\"{good}\"; b=2"),
        ]);
        assert!(s.any_valid(&headers, "alice", 42, NOW));
        assert!(!s.any_valid(&headers, "bob", 42, NOW));
        assert!(!s.any_valid(&cookies(&["a=1"]), "alice", 42, NOW));
        assert!(!s.any_valid(&HeaderMap::new(), "alice", 42, NOW));
        let many: Vec<String> = (0..MOST_CANDIDATES)
            .map(|_| format!("dormant_session={theirs}"))
            .chain([format!("dormant_session={good}")])
            .collect();
        let headers = cookies(&[&many.join("; ")]);
        assert!(
            !s.any_valid(&headers, "alice", 42, NOW),
            "only the first few candidates are checked"
        );
    }

    #[test]
    fn stripping_keeps_the_apps_cookies_and_only_them() {
        let mut headers = cookies(&[
            "a=1; dormant_session=x.1.2.3;b=2",
            "dormant_session=y",
            "c=3",
        ]);
        headers.insert(header::ACCEPT, HeaderValue::from_static("*/*"));
        strip_session_cookie(&mut headers);
        let all: Vec<_> = headers.get_all(header::COOKIE).iter().collect();
        assert_eq!(all, ["a=1; b=2; c=3"]);
        assert_eq!(headers[header::ACCEPT], "*/*");

        let mut only_ours = cookies(&["dormant_session=x"]);
        strip_session_cookie(&mut only_ours);
        assert!(!only_ours.contains_key(header::COOKIE));

        let mut theirs = cookies(&["dormant_sessionx=1; xdormant_session=2", "d=4"]);
        let before = theirs.clone();
        strip_session_cookie(&mut theirs);
        assert_eq!(theirs, before, "look-alike names are the app's: untouched");
    }

    #[test]
    fn the_set_cookie_is_host_only_http_only_and_lax() {
        let plain = set_cookie("v", 43200, false);
        assert_eq!(
            plain,
            "dormant_session=v; Max-Age=43200; Path=/; HttpOnly; SameSite=Lax"
        );
        assert!(!plain.to_str().unwrap().contains("Domain"));
        let secure = set_cookie("v", 60, true);
        assert!(secure.to_str().unwrap().ends_with("; Secure"));
    }
}
