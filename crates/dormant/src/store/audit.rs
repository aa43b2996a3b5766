//! The audit log in the store: one row per API call that changed something
//! (or tried to), newest first, pruned after the retention.

use super::sql::vals;

use super::{Store, StoreError};
use crate::domain::UnixMillis;

/// One recorded API call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEntry {
    /// Increasing; the paging cursor.
    pub id: i64,
    pub at: UnixMillis,
    /// The public id of the token used, or `admin`.
    pub token_id: String,
    /// The tenant id, or `admin`.
    pub principal: String,
    pub method: String,
    pub path: String,
    /// The HTTP status the API answered.
    pub status: u16,
}

impl Store {
    /// Appends one entry (its `id` is assigned).
    pub async fn record_audit(&self, entry: AuditEntry) -> Result<(), StoreError> {
        self.with(move |tx| {
            tx.execute(
                "INSERT INTO audit (at, token_id, principal, method, path, status)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                &vals![
                    entry.at,
                    entry.token_id,
                    entry.principal,
                    entry.method,
                    entry.path,
                    entry.status
                ],
            )?;
            Ok(())
        })
        .await
    }

    /// Up to `limit` entries older than the entry `before` (all when
    /// `None`), newest first; only `principal`'s when given.
    pub async fn audit_page(
        &self,
        principal: Option<String>,
        before: Option<i64>,
        limit: usize,
    ) -> Result<Vec<AuditEntry>, StoreError> {
        self.with(move |tx| {
            tx.query(
                "SELECT id, at, token_id, principal, method, path, status FROM audit
                 WHERE (CAST(?1 AS TEXT) IS NULL OR principal = ?1) AND id < ?2
                 ORDER BY id DESC LIMIT ?3",
                &vals![principal, before.unwrap_or(i64::MAX), limit as i64],
            )?
            .iter()
            .map(|row| {
                Ok(AuditEntry {
                    id: row.int(0)?,
                    at: row.int(1)?,
                    token_id: row.text(2)?,
                    principal: row.text(3)?,
                    method: row.text(4)?,
                    path: row.text(5)?,
                    status: u16::try_from(row.int(6)?).unwrap_or(0),
                })
            })
            .collect()
        })
        .await
    }

    /// Deletes the entries recorded before `cutoff`, and the oldest past
    /// the newest `keep_at_most`; returns how many.
    pub async fn prune_audit(
        &self,
        cutoff: UnixMillis,
        keep_at_most: u64,
    ) -> Result<usize, StoreError> {
        let keep = i64::try_from(keep_at_most).unwrap_or(i64::MAX);
        self.with(move |tx| {
            let old = tx.execute("DELETE FROM audit WHERE at < ?1", &vals![cutoff])?;
            let over = tx.execute(
                "DELETE FROM audit WHERE id <= (SELECT MAX(id) FROM audit) - ?1",
                &vals![keep],
            )?;
            Ok((old + over) as usize)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::test_backend::TestDb;

    fn entry(at: UnixMillis, principal: &str) -> AuditEntry {
        AuditEntry {
            id: 0,
            at,
            token_id: format!("tok_{principal}"),
            principal: principal.into(),
            method: "POST".into(),
            path: "/v1/containers".into(),
            status: 201,
        }
    }

    #[tokio::test]
    async fn pages_go_newest_first_per_principal_and_pruning_drops_the_old() {
        for db in TestDb::both() {
            eprintln!("backend: {}", db.name());
            pages_and_pruning(db.open()).await;
        }
    }

    async fn pages_and_pruning(store: Store) {
        for at in 1..=5 {
            store.record_audit(entry(at, "acme")).await.unwrap();
            store.record_audit(entry(at, "other")).await.unwrap();
        }
        let all = store.audit_page(None, None, 3).await.unwrap();
        assert_eq!(all.len(), 3);
        assert!(all.windows(2).all(|w| w[0].id > w[1].id), "newest first");
        let acme = store
            .audit_page(Some("acme".into()), None, 2)
            .await
            .unwrap();
        assert_eq!(acme.iter().map(|e| e.at).collect::<Vec<_>>(), [5, 4]);
        let next = store
            .audit_page(Some("acme".into()), Some(acme[1].id), 10)
            .await
            .unwrap();
        assert_eq!(next.iter().map(|e| e.at).collect::<Vec<_>>(), [3, 2, 1]);
        assert!(next.iter().all(|e| e.principal == "acme"));
        assert_eq!(store.prune_audit(3, 100).await.unwrap(), 4);
        assert_eq!(store.audit_page(None, None, 100).await.unwrap().len(), 6);
        assert_eq!(
            store.prune_audit(0, 2).await.unwrap(),
            4,
            "the newest 2 kept"
        );
        let left = store.audit_page(None, None, 100).await.unwrap();
        assert_eq!(left.iter().map(|e| e.at).collect::<Vec<_>>(), [5, 5]);
    }
}
