//! Container access tokens: `dmc_<hex>` secrets, each opening one private
//! container's URL, shown once, kept only as their SHA-256.
//!
//! The store keeps them; an in-memory index answers the proxy (a hash and a
//! map lookup under a read lock, no I/O). Issuing and revoking change the
//! store first, then the index, so a revoked token stops working at once.

use std::collections::HashMap;
use std::sync::RwLock;

use sha2::{Digest, Sha256};

use crate::domain::{now_millis, UnixMillis};
use crate::store::{ContainerTokenRow, Store, StoreError};

/// What every container access token starts with.
pub const TOKEN_PREFIX: &str = "dmc_";
/// Most tokens one container may have.
pub const MAX_PER_CONTAINER: usize = 100;

type Hash = [u8; 32];

/// A token just issued: the secret is shown this once.
#[derive(Debug, Clone)]
pub struct IssuedToken {
    pub id: String,
    pub token: String,
    pub created_at: UnixMillis,
}

/// A token as listings show it: never the secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenInfo {
    pub id: String,
    pub created_at: UnixMillis,
}

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("container `{0}` already has {MAX_PER_CONTAINER} access tokens; revoke one first")]
    TooMany(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

#[derive(Debug, Clone)]
struct Entry {
    id: String,
    container: String,
    container_created_at: UnixMillis,
    created_at: UnixMillis,
}

#[derive(Debug, Default)]
struct Index {
    by_hash: HashMap<Hash, Entry>,
    /// Hashes of each container's tokens, oldest first.
    by_container: HashMap<String, Vec<Hash>>,
}

impl Index {
    fn add(&mut self, hash: Hash, entry: Entry) {
        self.by_container
            .entry(entry.container.clone())
            .or_default()
            .push(hash);
        self.by_hash.insert(hash, entry);
    }

    fn of(&self, container: &str, created_at: UnixMillis) -> impl Iterator<Item = &Entry> {
        self.by_container
            .get(container)
            .into_iter()
            .flatten()
            .filter_map(|hash| self.by_hash.get(hash))
            .filter(move |entry| entry.container_created_at == created_at)
    }
}

/// Every container access token, for the API and the proxy.
pub struct ContainerTokens {
    store: Store,
    index: RwLock<Index>,
    /// Issues and revocations, one at a time: the count per container is
    /// checked and changed together.
    writes: tokio::sync::Mutex<()>,
}

impl ContainerTokens {
    /// Loads every token of an existing container from the store.
    pub async fn load(store: Store) -> Result<Self, StoreError> {
        let mut index = Index::default();
        for row in store.load_container_tokens().await? {
            let Some(hash) = decode_hash(&row.hash) else {
                tracing::warn!(id = %row.id, container = %row.container, "a stored access token hash is unreadable; the token is ignored");
                continue;
            };
            index.add(
                hash,
                Entry {
                    id: row.id,
                    container: row.container,
                    container_created_at: row.container_created_at,
                    created_at: row.created_at,
                },
            );
        }
        Ok(Self {
            store,
            index: RwLock::new(index),
            writes: tokio::sync::Mutex::new(()),
        })
    }

    /// A new token for container `container` made at `created_at`.
    pub async fn issue(
        &self,
        container: &str,
        created_at: UnixMillis,
    ) -> Result<IssuedToken, TokenError> {
        let _turn = self.writes.lock().await;
        if self.list(container, created_at).len() >= MAX_PER_CONTAINER {
            return Err(TokenError::TooMany(container.to_owned()));
        }
        let token = format!("{TOKEN_PREFIX}{}", crate::token::random_hex(32));
        let hash = hash(&token);
        let row = ContainerTokenRow {
            id: format!("tok_{}", crate::token::random_hex(4)),
            container: container.to_owned(),
            container_created_at: created_at,
            hash: hex(&hash),
            created_at: now_millis(),
        };
        self.store.insert_container_token(row.clone()).await?;
        self.write().add(
            hash,
            Entry {
                id: row.id.clone(),
                container: row.container,
                container_created_at: created_at,
                created_at: row.created_at,
            },
        );
        Ok(IssuedToken {
            id: row.id,
            token,
            created_at: row.created_at,
        })
    }

    /// The tokens of container `container` made at `created_at`, oldest first.
    pub fn list(&self, container: &str, created_at: UnixMillis) -> Vec<TokenInfo> {
        self.read()
            .of(container, created_at)
            .map(|entry| TokenInfo {
                id: entry.id.clone(),
                created_at: entry.created_at,
            })
            .collect()
    }

    /// Revokes token `id` of `container`: it stops working before this
    /// returns. False when the container has no such token.
    pub async fn revoke(&self, container: &str, id: &str) -> Result<bool, StoreError> {
        let _turn = self.writes.lock().await;
        let deleted = self.store.delete_container_token(container, id).await?;
        let mut index = self.write();
        let found = index
            .by_container
            .get(container)
            .into_iter()
            .flatten()
            .copied()
            .find(|hash| index.by_hash.get(hash).is_some_and(|e| e.id == id));
        if let Some(hash) = found {
            index.by_hash.remove(&hash);
            if let Some(hashes) = index.by_container.get_mut(container) {
                hashes.retain(|h| *h != hash);
            }
        }
        Ok(deleted || found.is_some())
    }

    /// Forgets every token of `container` (deleted; the store's rows went
    /// with its row).
    pub fn forget_container(&self, container: &str) {
        let mut index = self.write();
        for hash in index.by_container.remove(container).unwrap_or_default() {
            index.by_hash.remove(&hash);
        }
    }

    /// Whether `token` opens container `container` made at `created_at`.
    pub fn admits(&self, token: &str, container: &str, created_at: UnixMillis) -> bool {
        if !token.starts_with(TOKEN_PREFIX) {
            return false;
        }
        let hash = hash(token);
        self.read().by_hash.get(&hash).is_some_and(|entry| {
            entry.container == container && entry.container_created_at == created_at
        })
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Index> {
        self.index.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Index> {
        self.index.write().unwrap_or_else(|p| p.into_inner())
    }
}

fn hash(token: &str) -> Hash {
    Sha256::digest(token.as_bytes()).into()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn decode_hash(text: &str) -> Option<Hash> {
    if text.len() != 64 || !text.is_ascii() {
        return None;
    }
    let mut hash = [0u8; 32];
    for (i, byte) in hash.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&text[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(hash)
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn store_with(names: &[&str]) -> Store {
        let store = Store::open_in_memory().unwrap();
        let records = names
            .iter()
            .map(|n| crate::domain::sample_record(n, 1))
            .collect();
        store.insert_all(records).await.unwrap();
        store
    }

    #[tokio::test]
    async fn a_token_opens_its_container_only_until_revoked_and_survives_reloads() {
        let store = store_with(&["a", "b"]).await;
        let tokens = ContainerTokens::load(store.clone()).await.unwrap();
        let issued = tokens.issue("a", 1).await.unwrap();
        assert!(issued.token.starts_with("dmc_") && issued.token.len() == 68);
        assert!(issued.id.starts_with("tok_"));
        assert!(tokens.admits(&issued.token, "a", 1));
        assert!(!tokens.admits(&issued.token, "b", 1), "another container");
        assert!(
            !tokens.admits(&issued.token, "a", 2),
            "a later container named a"
        );
        assert!(!tokens.admits(&issued.token[..40], "a", 1));
        assert!(!tokens.admits("test-token", "a", 1));

        let listed = tokens.list("a", 1);
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].id, issued.id);
        assert!(tokens.list("b", 1).is_empty());

        let reloaded = ContainerTokens::load(store.clone()).await.unwrap();
        assert!(reloaded.admits(&issued.token, "a", 1), "kept in the store");
        let stored: Vec<_> = store.load_container_tokens().await.unwrap();
        assert!(
            !stored[0].hash.contains(&issued.token[4..]),
            "only the hash is stored"
        );

        assert!(!tokens.revoke("b", &issued.id).await.unwrap());
        assert!(tokens.revoke("a", &issued.id).await.unwrap());
        assert!(!tokens.admits(&issued.token, "a", 1), "revoked at once");
        assert!(!tokens.revoke("a", &issued.id).await.unwrap());
        let reloaded = ContainerTokens::load(store).await.unwrap();
        assert!(!reloaded.admits(&issued.token, "a", 1));
    }

    #[tokio::test]
    async fn tokens_per_container_are_bounded_and_forgotten_with_it() {
        let tokens = ContainerTokens::load(store_with(&["a"]).await)
            .await
            .unwrap();
        let mut last = None;
        for _ in 0..MAX_PER_CONTAINER {
            last = Some(tokens.issue("a", 1).await.unwrap());
        }
        assert!(matches!(
            tokens.issue("a", 1).await,
            Err(TokenError::TooMany(_))
        ));
        let last = last.unwrap();
        tokens.revoke("a", &last.id).await.unwrap();
        let again = tokens.issue("a", 1).await.unwrap();
        tokens.forget_container("a");
        assert!(!tokens.admits(&again.token, "a", 1));
        assert!(tokens.list("a", 1).is_empty());
    }
}
