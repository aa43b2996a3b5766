//! The durable record of what should exist: SQLite (WAL) in the data dir.
//!
//! Docker is the truth about what exists; the store is the truth about what
//! should exist. Calls are short and run on the blocking pool, never on the
//! proxy's path.

pub mod audit;
mod migrations;
pub mod tenants;
pub mod webhooks;

use std::path::Path;
use std::sync::{Arc, Mutex};

use rusqlite::{params, Connection, OptionalExtension, Row};

use crate::domain::{now_millis, ContainerRecord, ContainerState, SnapshotRecord, UnixMillis};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("a container named `{0}` already exists")]
    NameTaken(String),
    #[error("a tenant `{0}` already exists")]
    TenantTaken(String),
    #[error("store (SQLite) failed: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("store row for `{name}` is unreadable: {detail}")]
    Corrupt { name: String, detail: String },
    #[error("store task failed: {0}")]
    Join(#[from] tokio::task::JoinError),
    #[error("cannot create the database {}: {source}", path.display())]
    Create {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
}

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
}

/// Handle to the SQLite store. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    /// A std mutex, not a tokio one: it is only held inside `spawn_blocking`
    /// for the length of one short statement or transaction.
    conn: Arc<Mutex<Connection>>,
}

impl Store {
    /// Opens (creating if needed) the database at `path` and migrates it. A
    /// new database is created 0600 (it holds containers' env, i.e. users'
    /// secrets); SQLite gives its `-wal` and `-shm` files the same mode.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(path)
            .map_err(|source| StoreError::Create {
                path: path.to_path_buf(),
                source,
            })?;
        let mut conn = Connection::open(path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        // FULL: every commit is on disk before it returns, power loss
        // included (NORMAL in WAL mode may lose the last commits then). A
        // transition that deletes data (a container once its snapshot is
        // recorded, a snapshot once its restore is committed) relies on the
        // commit before it; the store's writes are few and batched, so the
        // extra fsync per commit costs little.
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        migrations::migrate(&mut conn)?;
        Ok(Self {
            conn: Arc::new(Mutex::new(conn)),
        })
    }

    /// A fresh store that lives in memory only, for tests and throwaway
    /// runs: the same schema and statements as on disk, nothing durable.
    pub fn open_in_memory() -> Result<Self, StoreError> {
        let mut conn = Connection::open_in_memory()?;
        migrations::migrate(&mut conn)?;
        Ok(Self {
            conn: Arc::new(Mutex::new(conn)),
        })
    }

    async fn with<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let conn = self.conn.clone();
        tokio::task::spawn_blocking(move || {
            let mut guard = conn.lock().unwrap_or_else(|poison| poison.into_inner());
            f(&mut guard)
        })
        .await?
    }

    /// Inserts a batch of new containers, all or none. Fails with `NameTaken`
    /// naming the first name that exists already.
    pub async fn insert_all(&self, records: Vec<ContainerRecord>) -> Result<(), StoreError> {
        self.with(move |conn| {
            let tx = conn.transaction()?;
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
                    params![
                        record.name,
                        spec,
                        record.state.as_str(),
                        record.reason,
                        record.docker_id,
                        record.owner,
                        record.node,
                        record.created_at,
                        record.last_active_at
                    ],
                )?;
                if inserted == 0 {
                    return Err(StoreError::NameTaken(record.name.clone()));
                }
            }
            tx.commit()?;
            Ok(())
        })
        .await
    }

    pub async fn get(&self, name: &str) -> Result<Option<ContainerRecord>, StoreError> {
        let name = name.to_owned();
        self.with(move |conn| {
            conn.query_row(
                &format!("SELECT {COLUMNS} FROM containers WHERE name = ?1"),
                [&name],
                read_row,
            )
            .optional()?
            .transpose()
        })
        .await
    }

    /// Every container, ordered by name.
    pub async fn list(&self) -> Result<Vec<ContainerRecord>, StoreError> {
        self.with(|conn| {
            let mut stmt =
                conn.prepare(&format!("SELECT {COLUMNS} FROM containers ORDER BY name"))?;
            let rows = stmt.query_map([], read_row)?;
            rows.map(|row| row?).collect()
        })
        .await
    }

    /// Writes one transition's change of a row in one transaction: state
    /// and reason, Docker id, snapshot and wake statistics together, so a
    /// crash never leaves half of a transition recorded.
    pub async fn apply(&self, name: &str, change: RowChange) -> Result<(), StoreError> {
        let name = name.to_owned();
        self.with(move |conn| {
            let tx = conn.transaction()?;
            if let Some((state, reason)) = &change.state {
                tx.execute(
                    "UPDATE containers SET state = ?2, reason = ?3,
                       state_since = CASE WHEN state = ?2 THEN state_since ELSE ?4 END
                     WHERE name = ?1",
                    params![name, state.as_str(), reason, now_millis()],
                )?;
            }
            if let Some(docker_id) = &change.docker_id {
                tx.execute(
                    "UPDATE containers SET docker_id = ?2 WHERE name = ?1",
                    params![name, docker_id],
                )?;
            }
            if let Some(snapshot) = &change.snapshot {
                let s = snapshot.as_ref();
                tx.execute(
                    "UPDATE containers SET snapshot_file = ?2, snapshot_bytes = ?3, snapshot_files = ?4,
                       snapshot_sha256 = ?5, snapshot_created_at = ?6 WHERE name = ?1",
                    params![
                        name,
                        s.map(|s| s.file.clone()),
                        s.map(|s| s.bytes as i64),
                        s.map(|s| s.files as i64),
                        s.map(|s| s.sha256.clone()),
                        s.map(|s| s.created_at),
                    ],
                )?;
            }
            if let Some(took_ms) = change.wake_ms {
                tx.execute(
                    "UPDATE containers SET wakes = wakes + 1, last_wake_ms = ?2 WHERE name = ?1",
                    params![name, took_ms as i64],
                )?;
            }
            tx.commit()?;
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
        self.with(move |conn| {
            let tx = conn.transaction()?;
            {
                let mut stmt = tx.prepare_cached(
                    "UPDATE containers SET last_active_at = MAX(last_active_at, ?2) WHERE name = ?1",
                )?;
                for (name, at) in &times {
                    stmt.execute(params![name, at])?;
                }
            }
            tx.commit()?;
            Ok(())
        })
        .await
    }

    /// Deletes the rows of `names` (missing ones are ignored).
    pub async fn delete_all(&self, names: Vec<String>) -> Result<(), StoreError> {
        self.with(move |conn| {
            let tx = conn.transaction()?;
            for name in &names {
                tx.execute("DELETE FROM containers WHERE name = ?1", [name])?;
            }
            tx.commit()?;
            Ok(())
        })
        .await
    }
}

const COLUMNS: &str =
    "name, spec, state, reason, docker_id, owner, node, created_at, last_active_at, wakes, last_wake_ms,
     state_since, snapshot_file, snapshot_bytes, snapshot_files, snapshot_sha256, snapshot_created_at";

/// Reads one row. The outer `Result` is SQLite's; the inner one says whether
/// dormant can make sense of what SQLite returned.
fn read_row(row: &Row<'_>) -> rusqlite::Result<Result<ContainerRecord, StoreError>> {
    let name: String = row.get(0)?;
    let spec: String = row.get(1)?;
    let state: String = row.get(2)?;
    let corrupt = |detail: String| StoreError::Corrupt {
        name: name.clone(),
        detail,
    };
    let spec = match serde_json::from_str(&spec) {
        Ok(spec) => spec,
        Err(e) => return Ok(Err(corrupt(format!("spec: {e}")))),
    };
    let state = match state.parse() {
        Ok(state) => state,
        Err(e) => return Ok(Err(corrupt(e))),
    };
    Ok(Ok(ContainerRecord {
        spec,
        state,
        reason: row.get(3)?,
        docker_id: row.get(4)?,
        owner: row.get(5)?,
        node: row.get(6)?,
        created_at: row.get(7)?,
        last_active_at: row.get(8)?,
        wakes: row.get::<_, i64>(9)?.max(0) as u64,
        last_wake_ms: row.get::<_, Option<i64>>(10)?.map(|ms| ms.max(0) as u64),
        state_since: row.get(11)?,
        snapshot: match row.get::<_, Option<String>>(12)? {
            Some(file) => Some(SnapshotRecord {
                file,
                bytes: row.get::<_, Option<i64>>(13)?.unwrap_or(0).max(0) as u64,
                files: row.get::<_, Option<i64>>(14)?.unwrap_or(0).max(0) as u64,
                sha256: row.get::<_, Option<String>>(15)?.unwrap_or_default(),
                created_at: row.get::<_, Option<i64>>(16)?.unwrap_or(0),
            }),
            None => None,
        },
        name,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(name: &str) -> ContainerRecord {
        crate::domain::sample_record(name, 1)
    }

    fn temp_store() -> (Store, std::path::PathBuf) {
        let dir = std::env::temp_dir().join(format!(
            "dormant-store-test-{}",
            crate::token::random_hex(8)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        (Store::open(&dir.join("dormant.db")).unwrap(), dir)
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
        let (store, dir) = temp_store();
        store.insert_all(vec![record("a")]).await.unwrap();
        let err = store
            .insert_all(vec![record("b"), record("a"), record("c")])
            .await
            .unwrap_err();
        assert!(
            matches!(err, StoreError::NameTaken(ref n) if n == "a"),
            "{err}"
        );
        let names: Vec<_> = store
            .list()
            .await
            .unwrap()
            .into_iter()
            .map(|r| r.name)
            .collect();
        assert_eq!(names, ["a"]);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[tokio::test]
    async fn the_database_is_private_and_fully_synchronous() {
        use std::os::unix::fs::PermissionsExt;
        let (store, dir) = temp_store();
        store.insert_all(vec![record("a")]).await.unwrap();
        for name in ["dormant.db", "dormant.db-wal", "dormant.db-shm"] {
            let mode = std::fs::metadata(dir.join(name))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "{name}");
        }
        let synchronous: i64 = store
            .with(|conn| Ok(conn.pragma_query_value(None, "synchronous", |row| row.get(0))?))
            .await
            .unwrap();
        assert_eq!(synchronous, 2, "FULL");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[tokio::test]
    async fn records_survive_reopening_and_activity_only_moves_forward() {
        let (store, dir) = temp_store();
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

        let store = Store::open(&dir.join("dormant.db")).unwrap();
        let got = store.get("a").await.unwrap().unwrap();
        assert_eq!(got.state, ContainerState::Failed);
        assert_eq!(got.reason.as_deref(), Some("boom"));
        assert_eq!(got.docker_id.as_deref(), Some("abc"));
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
        store.delete_all(vec!["a".into()]).await.unwrap();
        assert!(store.get("a").await.unwrap().is_none());
        std::fs::remove_dir_all(dir).unwrap();
    }
}
