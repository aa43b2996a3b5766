//! Private container URLs: who may reach a private container through the
//! proxy, and the credentials that say so.
//!
//! - `tokens.rs`: container access tokens (`dmc_...`), stored hashed, with
//!   an in-memory index the proxy reads.
//! - `login.rs`: one-time login links and where they may lead.
//! - `session.rs`: the signed session cookie a login link sets.
//! - `key.rs`: the key that signs it, kept in the data dir.
//!
//! The proxy's check itself is `proxy/gate.rs`; the API is `api/access.rs`.

pub mod key;
pub mod login;
pub mod session;
pub mod tokens;

use std::sync::Arc;
use std::time::Duration;

use login::LoginCodes;
use session::SessionSigner;
use tokens::ContainerTokens;

/// Recognises an API token presented to a private container's URL: the
/// tenant it belongs to (`"admin"` for the admin token), or `None`. Wired to
/// the API's token index (`auth::TokenIndex::owner_of`) at start-up.
pub type ApiTokenCheck = Arc<dyn Fn(&str) -> Option<String> + Send + Sync>;

/// What the API and the proxy share about private containers.
pub struct AccessControl {
    pub sessions: SessionSigner,
    pub tokens: ContainerTokens,
    pub logins: LoginCodes,
    /// Lifetime of a session cookie (`--session-ttl`).
    pub session_ttl: Duration,
    pub api_tokens: ApiTokenCheck,
}

impl AccessControl {
    /// Sessions signed with a fixed key, tokens in a store in memory, the
    /// admin token `admin-secret`; for tests of what reads it.
    #[cfg(test)]
    pub async fn for_test() -> Self {
        let store = crate::store::Store::open_in_memory().expect("a store in memory");
        Self {
            sessions: SessionSigner::new(&[1; 32]),
            tokens: ContainerTokens::load(store).await.expect("no tokens yet"),
            logins: LoginCodes::new(),
            session_ttl: Duration::from_secs(3600),
            api_tokens: Arc::new(|token: &str| {
                (token == "admin-secret").then(|| crate::tenant::ADMIN.to_owned())
            }),
        }
    }
}

impl std::fmt::Debug for AccessControl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessControl")
            .field("session_ttl", &self.session_ttl)
            .finish_non_exhaustive()
    }
}
