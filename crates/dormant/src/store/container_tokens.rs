//! Container access tokens in the store: only the SHA-256 of each secret,
//! with its public id and the container (by name and creation time) it opens.

use super::sql::vals;

use super::{Store, StoreError};
use crate::domain::UnixMillis;

/// One stored container access token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerTokenRow {
    /// Public id, `tok_<hex>`: shown in listings, used to revoke.
    pub id: String,
    pub container: String,
    /// When the container it opens was made: never a later one of its name.
    pub container_created_at: UnixMillis,
    /// SHA-256 of the secret, hex.
    pub hash: String,
    pub created_at: UnixMillis,
}

impl Store {
    pub async fn insert_container_token(&self, row: ContainerTokenRow) -> Result<(), StoreError> {
        self.with(move |tx| {
            tx.execute(
                "INSERT INTO container_tokens (id, container, container_created_at, hash, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                &vals![row.id, row.container, row.container_created_at, row.hash, row.created_at],
            )?;
            Ok(())
        })
        .await
    }

    /// Deletes token `id` of `container`; false when it has no such token.
    pub async fn delete_container_token(
        &self,
        container: &str,
        id: &str,
    ) -> Result<bool, StoreError> {
        let (container, id) = (container.to_owned(), id.to_owned());
        self.with(move |tx| {
            let deleted = tx.execute(
                "DELETE FROM container_tokens WHERE container = ?1 AND id = ?2",
                &vals![container, id],
            )?;
            Ok(deleted > 0)
        })
        .await
    }

    /// Every token whose container still exists; tokens of containers gone
    /// meanwhile (a crash between the two deletes) are deleted first.
    pub async fn load_container_tokens(&self) -> Result<Vec<ContainerTokenRow>, StoreError> {
        self.with(|tx| {
            tx.execute(
                "DELETE FROM container_tokens WHERE NOT EXISTS (
                   SELECT 1 FROM containers c
                   WHERE c.name = container_tokens.container
                     AND c.created_at = container_tokens.container_created_at)",
                &[],
            )?;
            tx.query(
                "SELECT id, container, container_created_at, hash, created_at
                 FROM container_tokens ORDER BY created_at, id",
                &[],
            )?
            .iter()
            .map(|row| {
                Ok(ContainerTokenRow {
                    id: row.text(0)?,
                    container: row.text(1)?,
                    container_created_at: row.int(2)?,
                    hash: row.text(3)?,
                    created_at: row.int(4)?,
                })
            })
            .collect()
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::test_backend::TestDb;

    fn row(id: &str, container: &str, made: UnixMillis) -> ContainerTokenRow {
        ContainerTokenRow {
            id: id.into(),
            container: container.into(),
            container_created_at: made,
            hash: format!("hash-{id}"),
            created_at: 10,
        }
    }

    #[tokio::test]
    async fn tokens_go_with_their_container() {
        for db in TestDb::both() {
            eprintln!("backend: {}", db.name());
            go_with_their_container(db.open()).await;
        }
    }

    async fn go_with_their_container(store: Store) {
        let a = crate::domain::sample_record("a", 1);
        store.insert_all(vec![a.clone()]).await.unwrap();
        store
            .insert_container_token(row("tok_1", "a", a.created_at))
            .await
            .unwrap();
        store
            .insert_container_token(row("tok_2", "a", a.created_at))
            .await
            .unwrap();
        // A token for an earlier container named `a` (made at another time).
        store
            .insert_container_token(row("tok_3", "a", 999))
            .await
            .unwrap();
        let ids = |rows: Vec<ContainerTokenRow>| rows.into_iter().map(|r| r.id).collect::<Vec<_>>();
        assert_eq!(
            ids(store.load_container_tokens().await.unwrap()),
            ["tok_1", "tok_2"]
        );
        assert!(!store.delete_container_token("b", "tok_1").await.unwrap());
        assert!(store.delete_container_token("a", "tok_1").await.unwrap());
        assert!(!store.delete_container_token("a", "tok_1").await.unwrap());
        assert_eq!(ids(store.load_container_tokens().await.unwrap()), ["tok_2"]);
        store.delete_all(vec!["a".into()]).await.unwrap();
        store.insert_all(vec![a]).await.unwrap();
        assert!(
            store.load_container_tokens().await.unwrap().is_empty(),
            "deleting a container deletes its tokens"
        );
    }
}
