//! Tenants and their API tokens in the store. A token is kept only as the
//! SHA-256 of its secret, under a short public id shown in listings and the
//! audit log.

use super::sql::{vals, SqlRow, Tx};
use super::{Store, StoreError};
use crate::domain::UnixMillis;
use crate::tenant::Quotas;
/// A tenant as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantRow {
    pub id: String,
    pub created_at: UnixMillis,
    pub quotas: Quotas,
}

/// One API token of a tenant, without its secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRow {
    /// Public id, e.g. `tok_1a2b3c4d`.
    pub id: String,
    pub tenant: String,
    /// SHA-256 of the secret, lowercase hex.
    pub sha256: String,
    pub created_at: UnixMillis,
    pub revoked_at: Option<UnixMillis>,
}

/// What adding a token came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenAdded {
    Added,
    /// The tenant has as many live tokens as it may.
    TooMany,
    /// No such tenant, or (rotate) no such live token.
    NotFound,
}

const TENANT_COLUMNS: &str =
    "id, created_at, max_containers, max_running, max_memory_bytes, max_snapshot_bytes";
const TOKEN_COLUMNS: &str = "id, tenant, sha256, created_at, revoked_at";

fn read_tenant(row: &SqlRow) -> Result<TenantRow, StoreError> {
    let limit = |i: usize| -> Result<Option<u64>, StoreError> {
        Ok(row.opt_int(i)?.map(|v| v.max(0) as u64))
    };
    Ok(TenantRow {
        id: row.text(0)?,
        created_at: row.int(1)?,
        quotas: Quotas {
            max_containers: limit(2)?,
            max_running: limit(3)?,
            max_memory_bytes: limit(4)?,
            max_snapshot_bytes: limit(5)?,
        },
    })
}

fn read_token(row: &SqlRow) -> Result<TokenRow, StoreError> {
    Ok(TokenRow {
        id: row.text(0)?,
        tenant: row.text(1)?,
        sha256: row.text(2)?,
        created_at: row.int(3)?,
        revoked_at: row.opt_int(4)?,
    })
}

/// SQL integers are signed; a quota past `i64::MAX` is as good as none.
fn sql_limit(limit: Option<u64>) -> Option<i64> {
    limit.map(|v| i64::try_from(v).unwrap_or(i64::MAX))
}

fn insert_token(tx: &mut Tx<'_>, token: &TokenRow) -> Result<(), StoreError> {
    tx.execute(
        &format!("INSERT INTO tenant_tokens ({TOKEN_COLUMNS}) VALUES (?1, ?2, ?3, ?4, NULL)"),
        &vals![&token.id, &token.tenant, &token.sha256, token.created_at],
    )?;
    Ok(())
}

fn live_tokens(tx: &mut Tx<'_>, tenant: &str) -> Result<usize, StoreError> {
    let row = tx.query_opt(
        "SELECT COUNT(*) FROM tenant_tokens WHERE tenant = ?1 AND revoked_at IS NULL",
        &vals![tenant],
    )?;
    Ok(row.map_or(Ok(0), |row| row.int(0))?.max(0) as usize)
}

impl Store {
    /// Adds a tenant and its first token together. `TenantTaken` if the id exists.
    pub async fn insert_tenant(
        &self,
        tenant: TenantRow,
        token: TokenRow,
    ) -> Result<(), StoreError> {
        self.with(move |tx| {
            let q = &tenant.quotas;
            let inserted = tx.execute(
                &format!(
                    "INSERT INTO tenants ({TENANT_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                     ON CONFLICT(id) DO NOTHING"
                ),
                &vals![
                    &tenant.id,
                    tenant.created_at,
                    sql_limit(q.max_containers),
                    sql_limit(q.max_running),
                    sql_limit(q.max_memory_bytes),
                    sql_limit(q.max_snapshot_bytes),
                ],
            )?;
            if inserted == 0 {
                return Err(StoreError::TenantTaken(tenant.id.clone()));
            }
            insert_token(tx, &token)
        })
        .await
    }

    /// Every tenant, ordered by id.
    pub async fn tenants(&self) -> Result<Vec<TenantRow>, StoreError> {
        self.with(|tx| {
            tx.query(
                &format!("SELECT {TENANT_COLUMNS} FROM tenants ORDER BY id"),
                &[],
            )?
            .iter()
            .map(read_tenant)
            .collect()
        })
        .await
    }

    pub async fn tenant(&self, id: &str) -> Result<Option<TenantRow>, StoreError> {
        let id = id.to_owned();
        self.with(move |tx| {
            tx.query_opt(
                &format!("SELECT {TENANT_COLUMNS} FROM tenants WHERE id = ?1"),
                &vals![id],
            )?
            .map(|row| read_tenant(&row))
            .transpose()
        })
        .await
    }

    /// Replaces a tenant's quotas; false if there is no such tenant.
    pub async fn set_quotas(&self, id: &str, quotas: Quotas) -> Result<bool, StoreError> {
        let id = id.to_owned();
        self.with(move |tx| {
            let changed = tx.execute(
                "UPDATE tenants SET max_containers = ?2, max_running = ?3,
                   max_memory_bytes = ?4, max_snapshot_bytes = ?5 WHERE id = ?1",
                &vals![
                    id,
                    sql_limit(quotas.max_containers),
                    sql_limit(quotas.max_running),
                    sql_limit(quotas.max_memory_bytes),
                    sql_limit(quotas.max_snapshot_bytes),
                ],
            )?;
            Ok(changed > 0)
        })
        .await
    }

    /// Removes a tenant and all its tokens; false if there was none.
    pub async fn delete_tenant(&self, id: &str) -> Result<bool, StoreError> {
        let id = id.to_owned();
        self.with(move |tx| {
            tx.execute("DELETE FROM tenant_tokens WHERE tenant = ?1", &vals![&id])?;
            let deleted = tx.execute("DELETE FROM tenants WHERE id = ?1", &vals![&id])?;
            Ok(deleted > 0)
        })
        .await
    }

    /// Every live (unrevoked) token of every tenant, for the token index.
    pub async fn live_tokens(&self) -> Result<Vec<TokenRow>, StoreError> {
        self.with(|tx| {
            tx.query(
                &format!(
                    "SELECT {TOKEN_COLUMNS} FROM tenant_tokens WHERE revoked_at IS NULL ORDER BY created_at, id"
                ),
                &[],
            )?
            .iter()
            .map(read_token)
            .collect()
        })
        .await
    }

    /// The live tokens of one tenant, oldest first.
    pub async fn tenant_tokens(&self, tenant: &str) -> Result<Vec<TokenRow>, StoreError> {
        let tenant = tenant.to_owned();
        self.with(move |tx| {
            tx.query(
                &format!(
                    "SELECT {TOKEN_COLUMNS} FROM tenant_tokens
                     WHERE tenant = ?1 AND revoked_at IS NULL ORDER BY created_at, id"
                ),
                &vals![tenant],
            )?
            .iter()
            .map(read_token)
            .collect()
        })
        .await
    }

    /// Adds a token to an existing tenant that has fewer than `max_live`.
    pub async fn add_token(
        &self,
        token: TokenRow,
        max_live: usize,
    ) -> Result<TokenAdded, StoreError> {
        self.with(move |tx| {
            let exists = tx
                .query_opt("SELECT 1 FROM tenants WHERE id = ?1", &vals![&token.tenant])?
                .is_some();
            if !exists {
                return Ok(TokenAdded::NotFound);
            }
            if live_tokens(tx, &token.tenant)? >= max_live {
                return Ok(TokenAdded::TooMany);
            }
            insert_token(tx, &token)?;
            Ok(TokenAdded::Added)
        })
        .await
    }

    /// Revokes the live token `token_id` of `tenant`; false if there is none.
    pub async fn revoke_token(
        &self,
        tenant: &str,
        token_id: &str,
        at: UnixMillis,
    ) -> Result<bool, StoreError> {
        let (tenant, token_id) = (tenant.to_owned(), token_id.to_owned());
        self.with(move |tx| {
            let changed = tx.execute(
                "UPDATE tenant_tokens SET revoked_at = ?3
                 WHERE id = ?1 AND tenant = ?2 AND revoked_at IS NULL",
                &vals![token_id, tenant, at],
            )?;
            Ok(changed > 0)
        })
        .await
    }

    /// Replaces the live token `old_id` with `new` in one transaction: the
    /// old one is revoked exactly when the new one exists.
    pub async fn rotate_token(
        &self,
        old_id: &str,
        new: TokenRow,
    ) -> Result<TokenAdded, StoreError> {
        let old_id = old_id.to_owned();
        self.with(move |tx| {
            let revoked = tx.execute(
                "UPDATE tenant_tokens SET revoked_at = ?3
                 WHERE id = ?1 AND tenant = ?2 AND revoked_at IS NULL",
                &vals![old_id, &new.tenant, new.created_at],
            )?;
            if revoked == 0 {
                return Ok(TokenAdded::NotFound);
            }
            insert_token(tx, &new)?;
            Ok(TokenAdded::Added)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::test_backend::TestDb;

    fn token(id: &str, tenant: &str) -> TokenRow {
        TokenRow {
            id: id.into(),
            tenant: tenant.into(),
            sha256: format!("hash-of-{id}"),
            created_at: 10,
            revoked_at: None,
        }
    }

    fn tenant(id: &str) -> TenantRow {
        TenantRow {
            id: id.into(),
            created_at: 5,
            quotas: Quotas {
                max_containers: Some(3),
                max_memory_bytes: Some(u64::MAX),
                ..Quotas::default()
            },
        }
    }

    #[tokio::test]
    async fn tenants_and_tokens_round_trip() {
        for db in TestDb::both() {
            eprintln!("backend: {}", db.name());
            round_trip(db.open()).await;
        }
    }

    async fn round_trip(store: Store) {
        store
            .insert_tenant(tenant("acme"), token("tok_1", "acme"))
            .await
            .unwrap();
        let err = store
            .insert_tenant(tenant("acme"), token("tok_2", "acme"))
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::TenantTaken(ref id) if id == "acme"));
        let mut expected = tenant("acme");
        expected.quotas.max_memory_bytes = Some(i64::MAX as u64);
        assert_eq!(store.tenants().await.unwrap(), vec![expected]);

        assert_eq!(
            store.add_token(token("tok_2", "acme"), 2).await.unwrap(),
            TokenAdded::Added
        );
        assert_eq!(
            store.add_token(token("tok_3", "acme"), 2).await.unwrap(),
            TokenAdded::TooMany
        );
        assert_eq!(
            store.add_token(token("tok_4", "nobody"), 2).await.unwrap(),
            TokenAdded::NotFound
        );
        assert!(store.revoke_token("acme", "tok_1", 20).await.unwrap());
        assert!(!store.revoke_token("acme", "tok_1", 20).await.unwrap());
        assert_eq!(
            store
                .rotate_token("tok_2", token("tok_5", "acme"))
                .await
                .unwrap(),
            TokenAdded::Added
        );
        assert_eq!(
            store
                .rotate_token("tok_2", token("tok_6", "acme"))
                .await
                .unwrap(),
            TokenAdded::NotFound,
            "a revoked token cannot be rotated again"
        );
        let live: Vec<_> = store
            .live_tokens()
            .await
            .unwrap()
            .into_iter()
            .map(|t| t.id)
            .collect();
        assert_eq!(live, ["tok_5"]);

        let quotas = Quotas {
            max_running: Some(1),
            ..Quotas::default()
        };
        assert!(store.set_quotas("acme", quotas).await.unwrap());
        assert_eq!(store.tenant("acme").await.unwrap().unwrap().quotas, quotas);
        assert!(store.delete_tenant("acme").await.unwrap());
        assert!(store.tenant("acme").await.unwrap().is_none());
        assert!(store.live_tokens().await.unwrap().is_empty());
        assert!(!store.delete_tenant("acme").await.unwrap());
    }
}
