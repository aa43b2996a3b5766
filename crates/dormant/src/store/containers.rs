//! Containers' rows in the store: one per container, its spec as JSON, its
//! state and what each transition records with it.

use super::sql::{vals, SqlRow};
use super::{Store, StoreError};
use crate::domain::{
    now_millis, ContainerRecord, ContainerSpec, ContainerState, SnapshotRecord, UnixMillis,
};

/// One transition's change of a row; `None` fields stay as they are.
#[derive(Debug, Clone, Default)]
pub struct RowChange {
    pub state: Option<(ContainerState, Option<String>)>,
    /// `Some(None)` forgets the Docker id.
    pub docker_id: Option<Option<String>>,
    /// `Some(None)` forgets the snapshot.
    pub snapshot: Option<Option<SnapshotRecord>>,
    /// A finished wake that took this many milliseconds.
    pub wake_ms: Option<u64>,
    /// A changed setting (access): the whole spec, rewritten.
    pub spec: Option<ContainerSpec>,
}

impl Store {
    /// Inserts a batch of new containers, all or none. Fails with `NameTaken`
    /// naming the first name that exists already.
    pub async fn insert_all(&self, records: Vec<ContainerRecord>) -> Result<(), StoreError> {
        self.with(move |tx| {
            for record in &records {
                let spec = serde_json::to_string(&record.spec).map_err(|e| StoreError::Corrupt {
                    name: record.name.clone(),
                    detail: e.to_string(),
                })?;
                let inserted = tx.execute(
                    "INSERT INTO containers
                       (name, spec, state, reason, docker_id, owner, node, created_at, last_active_at, state_since)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?8)
                     ON CONFLICT(name) DO NOTHING",
                    &vals![
                        &record.name,
                        spec,
                        record.state.as_str(),
                        &record.reason,
                        &record.docker_id,
                        &record.owner,
                        &record.node,
                        record.created_at,
                        record.last_active_at
                    ],
                )?;
                if inserted == 0 {
                    return Err(StoreError::NameTaken(record.name.clone()));
                }
            }
            Ok(())
        })
        .await
    }

    pub async fn get(&self, name: &str) -> Result<Option<ContainerRecord>, StoreError> {
        let name = name.to_owned();
        self.with(move |tx| {
            tx.query_opt(
                &format!("SELECT {COLUMNS} FROM containers WHERE name = ?1"),
                &vals![name],
            )?
            .map(|row| read_row(&row))
            .transpose()
        })
        .await
    }

    /// Every container, ordered by name.
    pub async fn list(&self) -> Result<Vec<ContainerRecord>, StoreError> {
        self.with(|tx| {
            tx.query(
                &format!("SELECT {COLUMNS} FROM containers ORDER BY name"),
                &[],
            )?
            .iter()
            .map(read_row)
            .collect()
        })
        .await
    }

    /// Writes one transition's change of a row in one transaction: state
    /// and reason, Docker id, snapshot and wake statistics together, so a
    /// crash never leaves half of a transition recorded.
    pub async fn apply(&self, name: &str, change: RowChange) -> Result<(), StoreError> {
        let name = name.to_owned();
        self.with(move |tx| {
            if let Some((state, reason)) = &change.state {
                tx.execute(
                    "UPDATE containers SET state = ?2, reason = ?3,
                       state_since = CASE WHEN state = ?2 THEN state_since ELSE ?4 END
                     WHERE name = ?1",
                    &vals![&name, state.as_str(), reason, now_millis()],
                )?;
            }
            if let Some(docker_id) = &change.docker_id {
                tx.execute(
                    "UPDATE containers SET docker_id = ?2 WHERE name = ?1",
                    &vals![&name, docker_id],
                )?;
            }
            if let Some(snapshot) = &change.snapshot {
                let s = snapshot.as_ref();
                tx.execute(
                    "UPDATE containers SET snapshot_file = ?2, snapshot_bytes = ?3, snapshot_files = ?4,
                       snapshot_sha256 = ?5, snapshot_created_at = ?6 WHERE name = ?1",
                    &vals![
                        &name,
                        s.map(|s| s.file.clone()),
                        s.map(|s| s.bytes as i64),
                        s.map(|s| s.files as i64),
                        s.map(|s| s.sha256.clone()),
                        s.map(|s| s.created_at),
                    ],
                )?;
            }
            if let Some(spec) = &change.spec {
                let spec = serde_json::to_string(spec).map_err(|e| StoreError::Corrupt {
                    name: name.clone(),
                    detail: e.to_string(),
                })?;
                tx.execute(
                    "UPDATE containers SET spec = ?2 WHERE name = ?1",
                    &vals![&name, spec],
                )?;
            }
            if let Some(took_ms) = change.wake_ms {
                tx.execute(
                    "UPDATE containers SET wakes = wakes + 1, last_wake_ms = ?2 WHERE name = ?1",
                    &vals![&name, took_ms as i64],
                )?;
            }
            Ok(())
        })
        .await
    }

    /// Records last activity for many containers in one transaction. Times
    /// only move forward, so a late flush never makes a container look idler.
    pub async fn record_activity(
        &self,
        times: Vec<(String, UnixMillis)>,
    ) -> Result<(), StoreError> {
        if times.is_empty() {
            return Ok(());
        }
        self.with(move |tx| {
            for (name, at) in &times {
                tx.execute(
                    "UPDATE containers SET last_active_at =
                       CASE WHEN last_active_at > ?2 THEN last_active_at ELSE ?2 END
                     WHERE name = ?1",
                    &vals![name, *at],
                )?;
            }
            Ok(())
        })
        .await
    }

    /// Deletes the rows of `names` (missing ones are ignored), and their
    /// access tokens with them.
    pub async fn delete_all(&self, names: Vec<String>) -> Result<(), StoreError> {
        self.with(move |tx| {
            for name in &names {
                tx.execute("DELETE FROM containers WHERE name = ?1", &vals![name])?;
                tx.execute(
                    "DELETE FROM container_tokens WHERE container = ?1",
                    &vals![name],
                )?;
            }
            Ok(())
        })
        .await
    }
}

const COLUMNS: &str =
    "name, spec, state, reason, docker_id, owner, node, created_at, last_active_at, wakes, last_wake_ms,
     state_since, snapshot_file, snapshot_bytes, snapshot_files, snapshot_sha256, snapshot_created_at";

/// Reads one row of `COLUMNS`.
fn read_row(row: &SqlRow) -> Result<ContainerRecord, StoreError> {
    let name = row.text(0)?;
    let corrupt = |detail: String| StoreError::Corrupt {
        name: name.clone(),
        detail,
    };
    let spec = serde_json::from_str(&row.text(1)?).map_err(|e| corrupt(format!("spec: {e}")))?;
    let state = row.text(2)?.parse().map_err(corrupt)?;
    let count =
        |i: usize| -> Result<u64, StoreError> { Ok(row.opt_int(i)?.unwrap_or(0).max(0) as u64) };
    Ok(ContainerRecord {
        spec,
        state,
        reason: row.opt_text(3)?,
        docker_id: row.opt_text(4)?,
        owner: row.text(5)?,
        node: row.opt_text(6)?,
        created_at: row.int(7)?,
        last_active_at: row.int(8)?,
        wakes: count(9)?,
        last_wake_ms: row.opt_int(10)?.map(|ms| ms.max(0) as u64),
        state_since: row.int(11)?,
        snapshot: match row.opt_text(12)? {
            Some(file) => Some(SnapshotRecord {
                file,
                bytes: count(13)?,
                files: count(14)?,
                sha256: row.opt_text(15)?.unwrap_or_default(),
                created_at: row.opt_int(16)?.unwrap_or(0),
            }),
            None => None,
        },
        name,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::test_backend::TestDb;

    fn record(name: &str) -> ContainerRecord {
        crate::domain::sample_record(name, 1)
    }

    #[tokio::test]
    async fn an_in_memory_store_keeps_rows_until_dropped() {
        let store = Store::open_in_memory().unwrap();
        store.insert_all(vec![record("a")]).await.unwrap();
        let asleep = RowChange {
            state: Some((ContainerState::Asleep, None)),
            ..RowChange::default()
        };
        store.apply("a", asleep).await.unwrap();
        let got = store.get("a").await.unwrap().unwrap();
        assert_eq!(got.state, ContainerState::Asleep);
        assert!(Store::open_in_memory()
            .unwrap()
            .list()
            .await
            .unwrap()
            .is_empty());
    }

    #[tokio::test]
    async fn a_batch_with_a_taken_name_inserts_nothing() {
        for db in TestDb::both() {
            let backend = db.name();
            let store = db.open();
            store.insert_all(vec![record("a")]).await.unwrap();
            let err = store
                .insert_all(vec![record("b"), record("a"), record("c")])
                .await
                .unwrap_err();
            assert!(
                matches!(err, StoreError::NameTaken(ref n) if n == "a"),
                "{backend}: {err}"
            );
            let names: Vec<_> = store
                .list()
                .await
                .unwrap()
                .into_iter()
                .map(|r| r.name)
                .collect();
            assert_eq!(names, ["a"], "{backend}");
        }
    }

    #[tokio::test]
    async fn records_survive_reopening_and_activity_only_moves_forward() {
        for db in TestDb::both() {
            eprintln!("backend: {}", db.name());
            survive_reopening(&db).await;
        }
    }

    async fn survive_reopening(db: &TestDb) {
        let store = db.open();
        store.insert_all(vec![record("a")]).await.unwrap();
        let failed = RowChange {
            state: Some((ContainerState::Failed, Some("boom".into()))),
            docker_id: Some(Some("abc".into())),
            ..RowChange::default()
        };
        store.apply("a", failed).await.unwrap();
        store.record_activity(vec![("a".into(), 50)]).await.unwrap();
        store.record_activity(vec![("a".into(), 10)]).await.unwrap();
        for took in [120, 80] {
            let wake = RowChange {
                wake_ms: Some(took),
                ..RowChange::default()
            };
            store.apply("a", wake).await.unwrap();
        }
        drop(store);

        let store = db.open();
        let got = store.get("a").await.unwrap().unwrap();
        assert_eq!(got.state, ContainerState::Failed);
        assert_eq!(got.reason.as_deref(), Some("boom"));
        assert_eq!(got.docker_id.as_deref(), Some("abc"));
        assert_eq!(got.node.as_deref(), Some("n1"));
        assert_eq!(got.last_active_at, 50);
        assert_eq!((got.wakes, got.last_wake_ms), (2, Some(80)));
        assert!(got.state_since > 1, "a state change stamps state_since");
        let snapshot = SnapshotRecord {
            file: "a.snap".into(),
            bytes: 10,
            files: 3,
            sha256: "ab".into(),
            created_at: 7,
        };
        let record_it = RowChange {
            snapshot: Some(Some(snapshot.clone())),
            ..RowChange::default()
        };
        store.apply("a", record_it).await.unwrap();
        assert_eq!(
            store.get("a").await.unwrap().unwrap().snapshot,
            Some(snapshot)
        );
        let forget = RowChange {
            snapshot: Some(None),
            ..RowChange::default()
        };
        store.apply("a", forget).await.unwrap();
        assert_eq!(store.get("a").await.unwrap().unwrap().snapshot, None);
        assert_eq!(got.spec, record("a").spec);
        let private = crate::domain::ContainerSpec {
            access: crate::domain::Access::Private,
            ..got.spec.clone()
        };
        let change = RowChange {
            spec: Some(private.clone()),
            ..RowChange::default()
        };
        store.apply("a", change).await.unwrap();
        assert_eq!(store.get("a").await.unwrap().unwrap().spec, private);
        store.delete_all(vec!["a".into()]).await.unwrap();
        assert!(store.get("a").await.unwrap().is_none());
    }
}
