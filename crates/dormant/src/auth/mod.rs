//! Who a bearer token is: the admin, or a tenant through one of its tokens.
//!
//! `TokenIndex` answers without I/O (the API's middleware and, once merged,
//! the proxy's access gate ask it on every request). It is loaded from the
//! store at start-up and changed at once, with the store, when a token is
//! made, rotated or revoked, so a revoked token stops working immediately.

pub mod token;

use std::collections::HashMap;
use std::sync::RwLock;

use crate::store::tenants::TokenRow;
use crate::tenant::ADMIN;
use crate::token::constant_time_eq;
pub use token::{new_tenant_token, sha256_hex, NewToken, TENANT_TOKEN_PREFIX};

/// Who is calling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    Admin,
    Tenant(String),
}

impl Principal {
    /// The owner its containers get: the tenant id, or `admin`.
    pub fn owner(&self) -> &str {
        match self {
            Self::Admin => ADMIN,
            Self::Tenant(id) => id,
        }
    }

    pub fn is_admin(&self) -> bool {
        matches!(self, Self::Admin)
    }

    /// Whether it may see what `owner` owns. The one rule of visibility:
    /// what it may not see, it is told does not exist.
    pub fn sees(&self, owner: &str) -> bool {
        match self {
            Self::Admin => true,
            Self::Tenant(id) => id == owner,
        }
    }
}

/// A resolved bearer token: who, and through which token (its public id,
/// or `admin`), for the audit log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub principal: Principal,
    pub token_id: String,
}

#[derive(Debug, Clone)]
struct TenantToken {
    id: String,
    tenant: String,
}

/// Live tokens by the SHA-256 of their secret, plus the admin token. Its
/// size is bounded by the tenants' token caps.
#[derive(Debug)]
pub struct TokenIndex {
    admin: String,
    by_hash: RwLock<HashMap<String, TenantToken>>,
}

impl TokenIndex {
    pub fn new(admin_token: &str, live: impl IntoIterator<Item = TokenRow>) -> Self {
        let index = Self {
            admin: admin_token.to_owned(),
            by_hash: RwLock::new(HashMap::new()),
        };
        for row in live {
            index.insert(&row);
        }
        index
    }

    /// Who `presented` is, or `None` for an unknown or revoked token.
    pub fn resolve(&self, presented: &str) -> Option<Caller> {
        if constant_time_eq(presented.as_bytes(), self.admin.as_bytes()) {
            return Some(Caller {
                principal: Principal::Admin,
                token_id: ADMIN.to_owned(),
            });
        }
        if !presented.starts_with(TENANT_TOKEN_PREFIX) {
            return None;
        }
        // Looked up by hash: the map compares hashes of secrets, never the
        // secrets themselves, so its timing tells nothing about a token.
        let hash = sha256_hex(presented);
        let found = self.read().get(&hash).cloned()?;
        Some(Caller {
            principal: Principal::Tenant(found.tenant),
            token_id: found.id,
        })
    }

    /// The owner a presented API token acts for (`admin` for the admin),
    /// for the proxy's access gate.
    pub fn owner_of(&self, presented: &str) -> Option<String> {
        self.resolve(presented)
            .map(|caller| caller.principal.owner().to_owned())
    }

    /// Whether `caller`'s token is still live: a long-lived call (the event
    /// stream) ends once its token is revoked.
    pub fn still_live(&self, caller: &Caller) -> bool {
        match &caller.principal {
            Principal::Admin => true,
            Principal::Tenant(tenant) => self
                .read()
                .values()
                .any(|t| t.id == caller.token_id && t.tenant == *tenant),
        }
    }

    /// Adds a live token.
    pub fn insert(&self, row: &TokenRow) {
        if row.revoked_at.is_some() {
            return;
        }
        self.write().insert(
            row.sha256.clone(),
            TenantToken {
                id: row.id.clone(),
                tenant: row.tenant.clone(),
            },
        );
    }

    /// Forgets the token with public id `token_id` of `tenant`.
    pub fn revoke(&self, tenant: &str, token_id: &str) {
        self.write()
            .retain(|_, t| !(t.id == token_id && t.tenant == tenant));
    }

    /// Forgets every token of `tenant`.
    pub fn remove_tenant(&self, tenant: &str) {
        self.write().retain(|_, t| t.tenant != tenant);
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<String, TenantToken>> {
        self.by_hash.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<String, TenantToken>> {
        self.by_hash.write().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(token: &NewToken, tenant: &str) -> TokenRow {
        TokenRow {
            id: token.id.clone(),
            tenant: tenant.into(),
            sha256: token.sha256.clone(),
            created_at: 1,
            revoked_at: None,
        }
    }

    #[test]
    fn the_admin_and_tenant_tokens_resolve_and_others_do_not() {
        let acme = new_tenant_token();
        let index = TokenIndex::new("admin-secret", [row(&acme, "acme")]);
        let admin = index.resolve("admin-secret").unwrap();
        assert_eq!(admin.principal, Principal::Admin);
        assert_eq!(admin.token_id, "admin");
        let tenant = index.resolve(&acme.secret).unwrap();
        assert_eq!(tenant.principal, Principal::Tenant("acme".into()));
        assert_eq!(tenant.token_id, acme.id);
        assert_eq!(index.owner_of(&acme.secret).as_deref(), Some("acme"));
        assert!(index.resolve("admin-secreT").is_none());
        assert!(
            index.resolve(&acme.sha256).is_none(),
            "the hash is not a token"
        );
        assert!(index.resolve(&new_tenant_token().secret).is_none());
        assert!(index.resolve("").is_none());
    }

    #[test]
    fn revocation_takes_effect_at_once_and_only_for_that_token() {
        let first = new_tenant_token();
        let second = new_tenant_token();
        let other = new_tenant_token();
        let index = TokenIndex::new(
            "admin-secret",
            [
                row(&first, "acme"),
                row(&second, "acme"),
                row(&other, "beta"),
            ],
        );
        index.revoke("beta", &first.id);
        assert!(
            index.resolve(&first.secret).is_some(),
            "another tenant's id"
        );
        index.revoke("acme", &first.id);
        assert!(index.resolve(&first.secret).is_none());
        assert!(index.resolve(&second.secret).is_some());
        index.remove_tenant("acme");
        assert!(index.resolve(&second.secret).is_none());
        assert!(index.resolve(&other.secret).is_some());
    }

    #[test]
    fn a_tenant_sees_only_its_own() {
        assert!(Principal::Admin.sees("acme"));
        assert!(Principal::Tenant("acme".into()).sees("acme"));
        assert!(!Principal::Tenant("acme".into()).sees("beta"));
        assert!(!Principal::Tenant("acme".into()).sees("admin"));
    }
}
