//! Webhooks in the store: where to send which events, and the secret each
//! delivery is signed with (kept as is: dormant needs it to sign; the
//! database is private to dormant, 0600).

use super::sql::{vals, SqlRow};

use super::{Store, StoreError};
use crate::domain::UnixMillis;

/// A registered webhook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookRow {
    /// Public id, e.g. `wh_1a2b3c4d`.
    pub id: String,
    /// The tenant whose containers' events it receives (`admin`: all).
    pub owner: String,
    pub url: String,
    /// Event kinds it receives (`created`, `ready`, ...); empty: all.
    pub events: Vec<String>,
    /// Only this container's events, when set.
    pub container: Option<String>,
    /// HMAC-SHA256 key of its signatures, hex.
    pub secret: String,
    pub created_at: UnixMillis,
}

const COLUMNS: &str = "id, owner, url, events, container, secret, created_at";

fn read(row: &SqlRow) -> Result<WebhookRow, StoreError> {
    let events = row.text(3)?;
    Ok(WebhookRow {
        id: row.text(0)?,
        owner: row.text(1)?,
        url: row.text(2)?,
        events: events
            .split(',')
            .filter(|e| !e.is_empty())
            .map(str::to_owned)
            .collect(),
        container: row.opt_text(4)?,
        secret: row.text(5)?,
        created_at: row.int(6)?,
    })
}

/// What adding a webhook came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WebhookAdded {
    Added,
    /// Its owner has as many webhooks as it may.
    TooMany,
}

impl Store {
    /// Adds `hook` unless its owner already has `max` webhooks.
    pub async fn add_webhook(
        &self,
        hook: WebhookRow,
        max: usize,
    ) -> Result<WebhookAdded, StoreError> {
        self.with(move |tx| {
            let have = tx
                .query_opt(
                    "SELECT COUNT(*) FROM webhooks WHERE owner = ?1",
                    &vals![&hook.owner],
                )?
                .map_or(Ok(0), |row| row.int(0))?;
            if have.max(0) as usize >= max {
                return Ok(WebhookAdded::TooMany);
            }
            tx.execute(
                &format!("INSERT INTO webhooks ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)"),
                &vals![
                    hook.id,
                    hook.owner,
                    hook.url,
                    hook.events.join(","),
                    hook.container,
                    hook.secret,
                    hook.created_at
                ],
            )?;
            Ok(WebhookAdded::Added)
        })
        .await
    }

    /// Every webhook, oldest first.
    pub async fn webhooks(&self) -> Result<Vec<WebhookRow>, StoreError> {
        self.with(|tx| {
            tx.query(
                &format!("SELECT {COLUMNS} FROM webhooks ORDER BY created_at, id"),
                &[],
            )?
            .iter()
            .map(read)
            .collect()
        })
        .await
    }

    /// Deletes every webhook of `owner` (a tenant that is gone); their ids.
    pub async fn delete_webhooks_of(&self, owner: &str) -> Result<Vec<String>, StoreError> {
        let owner = owner.to_owned();
        self.with(move |tx| {
            let ids = tx
                .query("SELECT id FROM webhooks WHERE owner = ?1", &vals![&owner])?
                .iter()
                .map(|row| row.text(0))
                .collect::<Result<Vec<_>, _>>()?;
            tx.execute("DELETE FROM webhooks WHERE owner = ?1", &vals![&owner])?;
            Ok(ids)
        })
        .await
    }

    /// Deletes webhook `id`; `false` if there was none.
    pub async fn delete_webhook(&self, id: &str) -> Result<bool, StoreError> {
        let id = id.to_owned();
        self.with(move |tx| Ok(tx.execute("DELETE FROM webhooks WHERE id = ?1", &vals![id])? > 0))
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::test_backend::TestDb;

    fn hook(id: &str, owner: &str) -> WebhookRow {
        WebhookRow {
            id: id.into(),
            owner: owner.into(),
            url: "http://127.0.0.1:9/hook".into(),
            events: vec!["ready".into(), "failed".into()],
            container: Some("a".into()),
            secret: "00ff".into(),
            created_at: 5,
        }
    }

    #[tokio::test]
    async fn webhooks_are_kept_counted_per_owner_and_deleted() {
        for db in TestDb::both() {
            eprintln!("backend: {}", db.name());
            kept_counted_deleted(db.open()).await;
        }
    }

    async fn kept_counted_deleted(store: Store) {
        assert_eq!(
            store.add_webhook(hook("wh_1", "acme"), 2).await.unwrap(),
            WebhookAdded::Added
        );
        store.add_webhook(hook("wh_2", "acme"), 2).await.unwrap();
        assert_eq!(
            store.add_webhook(hook("wh_3", "acme"), 2).await.unwrap(),
            WebhookAdded::TooMany
        );
        store.add_webhook(hook("wh_4", "other"), 2).await.unwrap();
        let all = store.webhooks().await.unwrap();
        assert_eq!(all.len(), 3);
        assert_eq!(all[0], hook("wh_1", "acme"));
        assert!(store.delete_webhook("wh_1").await.unwrap());
        assert!(!store.delete_webhook("wh_1").await.unwrap());
        assert_eq!(store.webhooks().await.unwrap().len(), 2);
    }
}
