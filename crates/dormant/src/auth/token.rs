//! Tenant API tokens: a random secret shown once, its SHA-256 (all the
//! store keeps) and a short public id for listings and the audit log.

use sha2::{Digest, Sha256};

use crate::token::random_hex;

/// Every tenant API token starts with this, so a person (or a secret
/// scanner) can tell it from other secrets.
pub const TENANT_TOKEN_PREFIX: &str = "dmt_";

/// A token just made: the secret goes to the caller once, the rest is kept.
#[derive(Debug, Clone)]
pub struct NewToken {
    pub secret: String,
    /// Public id, `tok_` and 8 hex digits.
    pub id: String,
    pub sha256: String,
}

/// A new tenant token: 32 random bytes from the OS, hex, after `dmt_`.
pub fn new_tenant_token() -> NewToken {
    let secret = format!("{TENANT_TOKEN_PREFIX}{}", random_hex(32));
    NewToken {
        id: format!("tok_{}", random_hex(4)),
        sha256: sha256_hex(&secret),
        secret,
    }
}

/// SHA-256 of `secret`, lowercase hex. The tokens are 256 random bits, so
/// a plain hash (no salt, no stretching) cannot be reversed by guessing.
pub fn sha256_hex(secret: &str) -> String {
    Sha256::digest(secret.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_token_is_prefixed_random_and_kept_only_as_its_hash() {
        let a = new_tenant_token();
        let b = new_tenant_token();
        assert!(a.secret.starts_with("dmt_"));
        assert_eq!(a.secret.len(), 4 + 64);
        assert_ne!(a.secret, b.secret);
        assert!(a.id.starts_with("tok_") && a.id.len() == 12);
        assert_eq!(a.sha256, sha256_hex(&a.secret));
        assert_eq!(a.sha256.len(), 64);
        assert!(!a.sha256.contains(&a.secret[4..]));
    }

    #[test]
    fn the_hash_is_sha256() {
        assert_eq!(
            sha256_hex("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
