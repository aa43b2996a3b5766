//! One-time login links: a random code, good once, for one container, for a
//! short time, and the path to go to after signing in.
//!
//! Codes live in memory only: a restart forgets them, so a link made
//! before it no longer works (it fails closed; ask for a new one). Their
//! number is bounded; expired ones are dropped when room is needed.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::domain::UnixMillis;

/// The reserved path, on a private container's own hostname, that signs in.
pub const LOGIN_PATH: &str = "/.dormant/login";
/// Paths under this prefix are dormant's, never a redirect target.
const RESERVED_PREFIX: &str = "/.dormant/";
/// Longest path a link may lead to.
pub const MAX_PATH_LEN: usize = 2048;
/// Most unused, unexpired codes kept at once.
pub const MAX_PENDING: usize = 10_000;
/// Random bytes in a code.
const CODE_BYTES: usize = 32;

/// What a code signs into.
#[derive(Debug, Clone)]
struct Pending {
    container: String,
    created_at: UnixMillis,
    path: String,
    expires: Instant,
}

/// Why no code was issued.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("{MAX_PENDING} login links are waiting to be used; try again once some have expired")]
pub struct TooManyPending;

/// The unused login codes.
#[derive(Debug, Default)]
pub struct LoginCodes {
    pending: Mutex<HashMap<String, Pending>>,
}

impl LoginCodes {
    pub fn new() -> Self {
        Self::default()
    }

    /// A new code for container `container` (made at `created_at`) that
    /// leads to `path` (already checked with [`check_redirect_path`]), good
    /// once until `now + ttl`.
    pub fn issue(
        &self,
        container: &str,
        created_at: UnixMillis,
        path: &str,
        ttl: Duration,
        now: Instant,
    ) -> Result<String, TooManyPending> {
        let mut pending = self.lock();
        if pending.len() >= MAX_PENDING {
            pending.retain(|_, p| p.expires > now);
            if pending.len() >= MAX_PENDING {
                return Err(TooManyPending);
            }
        }
        let code = crate::token::random_hex(CODE_BYTES);
        pending.insert(
            code.clone(),
            Pending {
                container: container.to_owned(),
                created_at,
                path: path.to_owned(),
                expires: now + ttl,
            },
        );
        Ok(code)
    }

    /// Uses up `code` if it is for this container (`container` made at
    /// `created_at`) and unexpired at `now`; returns the path it leads to.
    /// A code shown to another hostname stays unused: it is not theirs.
    pub fn redeem(
        &self,
        code: &str,
        container: &str,
        created_at: UnixMillis,
        now: Instant,
    ) -> Option<String> {
        let mut pending = self.lock();
        let entry = pending.get(code)?;
        if entry.container != container {
            return None;
        }
        let entry = pending.remove(code)?;
        (entry.created_at == created_at && entry.expires > now).then_some(entry.path)
    }

    /// How many codes are waiting (used and expired ones excluded once swept).
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Pending>> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The `code` parameter of a login URL's query, if there is exactly one.
pub fn code_from_query(query: Option<&str>) -> Option<&str> {
    let mut codes = query?
        .split('&')
        .filter_map(|pair| pair.strip_prefix("code="));
    let code = codes.next()?;
    let well_formed = code.len() == CODE_BYTES * 2 && code.bytes().all(|b| b.is_ascii_hexdigit());
    (well_formed && codes.next().is_none()).then_some(code)
}

/// Whether `path` may be where a login link sends the browser: a path on
/// the same hostname (one leading `/`, never `//` or a backslash, which
/// browsers read as another host), printable ASCII only (percent-encode the
/// rest), no fragment, and not dormant's own reserved paths.
pub fn check_redirect_path(path: &str) -> Result<(), String> {
    if !path.starts_with('/') {
        return Err(format!(
            "is `{path}`; it must be a path on the container's hostname such as `/` or `/app?x=1`"
        ));
    }
    if path.len() > MAX_PATH_LEN {
        return Err(format!(
            "is {} bytes; at most {MAX_PATH_LEN} are allowed",
            path.len()
        ));
    }
    if path.starts_with("//") || path.contains('\\') {
        return Err(
            "must not start with `//` or contain `\\`: browsers read those as another host".into(),
        );
    }
    if !path.bytes().all(|b| b.is_ascii_graphic()) || path.contains('#') {
        return Err(
            "must be printable ASCII without spaces or `#`; percent-encode anything else".into(),
        );
    }
    if path.starts_with(RESERVED_PREFIX) {
        return Err(format!(
            "must not be under `{RESERVED_PREFIX}`, which dormant reserves"
        ));
    }
    path.parse::<http::uri::PathAndQuery>()
        .map(drop)
        .map_err(|e| format!("is not a valid URL path: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const TTL: Duration = Duration::from_secs(60);

    #[test]
    fn a_code_works_once_for_its_container_until_it_expires() {
        let codes = LoginCodes::new();
        let now = Instant::now();
        let code = codes.issue("alice", 5, "/app", TTL, now).unwrap();
        assert_eq!(code.len(), 64);
        assert_eq!(codes.redeem(&code, "bob", 5, now), None, "another hostname");
        assert_eq!(
            codes.redeem(&code, "alice", 5, now).as_deref(),
            Some("/app")
        );
        assert_eq!(codes.redeem(&code, "alice", 5, now), None, "used up");
        assert!(codes.is_empty());

        let code = codes.issue("alice", 5, "/", TTL, now).unwrap();
        assert_eq!(codes.redeem(&code, "alice", 5, now + TTL), None, "expired");
        assert!(codes.is_empty(), "an expired code is dropped when shown");

        let code = codes.issue("alice", 5, "/", TTL, now).unwrap();
        assert_eq!(
            codes.redeem(&code, "alice", 6, now),
            None,
            "a later container of the same name"
        );
        assert_eq!(codes.redeem("nope", "alice", 5, now), None);
    }

    #[test]
    fn pending_codes_are_bounded_and_expired_ones_make_room() {
        let codes = LoginCodes::new();
        let now = Instant::now();
        for _ in 0..MAX_PENDING {
            codes.issue("a", 1, "/", TTL, now).unwrap();
        }
        assert_eq!(codes.issue("a", 1, "/", TTL, now), Err(TooManyPending));
        assert_eq!(codes.len(), MAX_PENDING);
        let later = now + TTL;
        assert!(
            codes.issue("a", 1, "/", TTL, later).is_ok(),
            "expired codes are swept"
        );
        assert_eq!(codes.len(), 1);
    }

    #[test]
    fn the_code_comes_from_the_query_once() {
        let code = "ab".repeat(32);
        assert_eq!(
            code_from_query(Some(&format!("code={code}"))),
            Some(code.as_str())
        );
        assert_eq!(
            code_from_query(Some(&format!("x=1&code={code}"))),
            Some(code.as_str())
        );
        assert_eq!(
            code_from_query(Some(&format!("code={code}&code={code}"))),
            None
        );
        assert_eq!(code_from_query(Some("code=short")), None);
        assert_eq!(
            code_from_query(Some(&format!("code={}", "zz".repeat(32)))),
            None
        );
        assert_eq!(code_from_query(None), None);
    }

    #[test]
    fn only_same_origin_paths_are_redirect_targets() {
        for good in ["/", "/app", "/a/b?x=1&y=%20z", "/~user/"] {
            assert_eq!(check_redirect_path(good), Ok(()), "{good}");
        }
        for bad in [
            "",
            "app",
            "http://evil.example/",
            "//evil.example/",
            "/\\evil.example",
            "\\\\evil.example",
            "/a b",
            "/a\nSet-Cookie: x=1",
            "/é",
            "/a#frag",
            "/.dormant/login?code=x",
            "https:/evil.example",
        ] {
            assert!(check_redirect_path(bad).is_err(), "{bad:?} was accepted");
        }
        assert!(check_redirect_path(&format!("/{}", "a".repeat(MAX_PATH_LEN))).is_err());
    }
}
