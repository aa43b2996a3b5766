//! The durable record of what should exist: SQLite (WAL) in the data dir by
//! default, or PostgreSQL (`--store postgres://...`) for nodes that share one.
//!
//! Docker is the truth about what exists; the store is the truth about what
//! should exist. Calls are short and run on the blocking pool, never on the
//! proxy's path. Each call is one transaction written once against `sql::Tx`,
//! which runs it on either backend.

pub mod audit;
mod container_tokens;
mod migrations;
pub mod nodes;
mod pg;
pub(crate) mod sql;
pub mod tenants;
#[cfg(test)]
pub(crate) mod test_backend;
#[cfg(test)]
pub(crate) mod test_postgres;
pub mod webhooks;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rusqlite::Connection;

pub use container_tokens::ContainerTokenRow;
pub use pg::PgTarget;
use sql::{vals, SqlRow, Tx};

use crate::domain::{
    now_millis, ContainerRecord, ContainerSpec, ContainerState, SnapshotRecord, UnixMillis,
};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("a container named `{0}` already exists")]
    NameTaken(String),
    #[error("a tenant `{0}` already exists")]
    TenantTaken(String),
    #[error("store (SQLite) failed: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// A PostgreSQL error not yet tied to its store (turned into `PgQuery`
    /// or `PgConnect` before it leaves the store). The messages below carry
    /// the client's error and its cause, so they are not a `source` too.
    #[error("store (PostgreSQL) failed: {}", pg_detail(.0))]
    Postgres(postgres::Error),
    #[error("store (PostgreSQL {target}) failed: {}", pg_detail(.error))]
    PgQuery {
        target: String,
        error: postgres::Error,
    },
    #[error(
        "store (PostgreSQL {target}) unreachable: {}; is PostgreSQL running and reachable \
         at {address}, and do the user, password and database in --store exist?",
        pg_detail(.error)
    )]
    PgConnect {
        target: String,
        address: String,
        error: postgres::Error,
    },
    #[error(
        "store ({target}) did not answer within {after:?}; is PostgreSQL reachable at \
         {address}, and not overloaded?"
    )]
    PgTimeout {
        target: String,
        address: String,
        after: Duration,
    },
    #[error("store schema: {0}")]
    Schema(String),
    #[error("store returned an unexpected value: {0}")]
    Column(String),
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

impl From<postgres::Error> for StoreError {
    fn from(error: postgres::Error) -> Self {
        StoreError::Postgres(error)
    }
}

/// A PostgreSQL error with its cause (the client's own text is only its
/// kind: "db error").
fn pg_detail(error: &postgres::Error) -> String {
    match std::error::Error::source(error) {
        Some(cause) => format!("{error}: {cause}"),
        None => error.to_string(),
    }
}

/// Where the store lives, as `--store` says.
#[derive(Debug, Clone, Default)]
pub enum StoreUrl {
    /// `sqlite://` (the default): `dormant.db` in the data dir.
    #[default]
    Sqlite,
    /// `postgres://user:password@host:port/database`.
    Postgres(PgTarget),
}

impl StoreUrl {
    /// Parses `--store`. A bad URL's message never repeats it (a password).
    pub fn parse(url: &str) -> Result<Self, String> {
        let url = url.trim();
        if url.is_empty() || url == "sqlite://" {
            Ok(StoreUrl::Sqlite)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            PgTarget::parse(url).map(StoreUrl::Postgres)
        } else {
            Err("expected `sqlite://` (the data dir's SQLite file) or \
                 `postgres://user:password@host:port/database`"
                .into())
        }
    }
}

impl std::fmt::Display for StoreUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreUrl::Sqlite => f.write_str("sqlite://"),
            StoreUrl::Postgres(target) => target.fmt(f),
        }
    }
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
    /// A changed setting (access): the whole spec, rewritten.
    pub spec: Option<ContainerSpec>,
}

/// Handle to the store. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    /// A tokio mutex, taken before going to the blocking pool: a call
    /// waiting for the connection holds no blocking thread, and can give up
    /// at its deadline while another call hangs on a silent server.
    conn: Arc<tokio::sync::Mutex<Backend>>,
    /// PostgreSQL's: a call (waiting for the connection included) fails
    /// past this, whatever the network does. SQLite's calls are bounded by
    /// its busy timeout.
    deadline: Option<(Duration, PgTarget)>,
}

/// Longest a PostgreSQL store call may take, waiting its turn included.
const PG_CALL_DEADLINE: Duration = Duration::from_secs(30);

/// The one connection of a store.
enum Backend {
    Sqlite(Connection),
    /// Boxed: the client is large.
    Postgres(Box<pg::PgConnection>),
}

impl Backend {
    /// Runs `f` in one transaction, committed when `f` succeeds.
    fn run<T>(
        &mut self,
        f: impl FnOnce(&mut Tx<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        match self {
            Backend::Sqlite(conn) => {
                let mut tx = Tx::Sqlite(conn.transaction()?);
                let out = f(&mut tx)?;
                tx.commit()?;
                Ok(out)
            }
            Backend::Postgres(conn) => conn.run(f),
        }
    }
}

impl Store {
    /// Opens the store `url` names (SQLite: `dormant.db` in `data_dir`) on
    /// the blocking pool.
    pub async fn open_url(url: &StoreUrl, data_dir: &Path) -> Result<Self, StoreError> {
        let url = url.clone();
        let path = data_dir.join("dormant.db");
        tokio::task::spawn_blocking(move || match url {
            StoreUrl::Sqlite => Self::open(&path),
            StoreUrl::Postgres(target) => Self::open_postgres(target),
        })
        .await?
    }

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
        let conn = Connection::open(path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        // FULL: every commit is on disk before it returns, power loss
        // included (NORMAL in WAL mode may lose the last commits then). A
        // transition that deletes data (a container once its snapshot is
        // recorded, a snapshot once its restore is committed) relies on the
        // commit before it; the store's writes are few and batched, so the
        // extra fsync per commit costs little.
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        Self::migrated(Backend::Sqlite(conn))
    }

    /// A fresh store that lives in memory only, for tests and throwaway
    /// runs: the same schema and statements as on disk, nothing durable.
    pub fn open_in_memory() -> Result<Self, StoreError> {
        Self::migrated(Backend::Sqlite(Connection::open_in_memory()?))
    }

    /// Connects to PostgreSQL at `target` and migrates its database (nodes
    /// starting together take turns: see `migrations`). Blocks: call it on
    /// a thread that runs no async tasks (`open_url` does).
    pub fn open_postgres(target: PgTarget) -> Result<Self, StoreError> {
        let deadline = Some((PG_CALL_DEADLINE, target.clone()));
        let mut store =
            Self::migrated(Backend::Postgres(Box::new(pg::PgConnection::open(target)?)))?;
        store.deadline = deadline;
        Ok(store)
    }

    fn migrated(mut backend: Backend) -> Result<Self, StoreError> {
        backend.run(migrations::migrate)?;
        Ok(Self {
            conn: Arc::new(tokio::sync::Mutex::new(backend)),
            deadline: None,
        })
    }

    /// Runs `f` as one transaction on the blocking pool, one call at a time.
    async fn with<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Tx<'_>) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let conn = self.conn.clone();
        let call = async move {
            let mut backend = conn.lock_owned().await;
            tokio::task::spawn_blocking(move || backend.run(f)).await?
        };
        match &self.deadline {
            None => call.await,
            // A call past its deadline is left to finish on its own (still
            // holding the connection); this caller gets the error now.
            Some((limit, target)) => {
                tokio::time::timeout(*limit, call)
                    .await
                    .unwrap_or_else(|_| {
                        Err(StoreError::PgTimeout {
                            target: target.to_string(),
                            address: target.address().to_owned(),
                            after: *limit,
                        })
                    })
            }
        }
    }

    /// The SQLite connection, for tests that look at its settings.
    #[cfg(test)]
    fn with_sqlite<T>(&self, f: impl FnOnce(&Connection) -> T) -> Option<T> {
        let guard = self.conn.try_lock().expect("no store call in flight");
        match &*guard {
            Backend::Sqlite(conn) => Some(f(conn)),
            Backend::Postgres(_) => None,
        }
    }

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
    use test_backend::TestDb;

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
    async fn the_database_is_private_and_fully_synchronous() {
        use std::os::unix::fs::PermissionsExt;
        let db = TestDb::sqlite();
        let TestDb::Sqlite(dir) = &db else {
            unreachable!()
        };
        let store = db.open();
        store.insert_all(vec![record("a")]).await.unwrap();
        for name in ["dormant.db", "dormant.db-wal", "dormant.db-shm"] {
            let mode = std::fs::metadata(dir.path().join(name))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "{name}");
        }
        let synchronous: i64 = store
            .with_sqlite(|conn| conn.pragma_query_value(None, "synchronous", |row| row.get(0)))
            .expect("a SQLite store")
            .unwrap();
        assert_eq!(synchronous, 2, "FULL");
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

    #[test]
    fn store_urls_parse_and_never_show_their_password() {
        assert!(matches!(StoreUrl::parse("sqlite://"), Ok(StoreUrl::Sqlite)));
        assert!(matches!(StoreUrl::parse(""), Ok(StoreUrl::Sqlite)));
        let url = StoreUrl::parse("postgres://app:s3cret@db.internal:6543/dormant").unwrap();
        assert_eq!(url.to_string(), "postgres://app@db.internal:6543/dormant");
        assert!(!format!("{url:?}").contains("s3cret"));
        let err = StoreUrl::parse("postgres://app:s3cret@db:notaport/x").unwrap_err();
        assert!(!err.contains("s3cret"), "{err}");
        let err = StoreUrl::parse("mysql://app:s3cret@db/x").unwrap_err();
        assert!(
            err.contains("postgres://") && !err.contains("s3cret"),
            "{err}"
        );
    }

    /// A statement the server refuses says why, and which store refused it.
    #[tokio::test]
    async fn a_postgres_error_says_what_the_server_said() {
        let store = TestDb::postgres().open();
        let err = store
            .with(|tx| tx.execute("UPDATE no_such_table SET x = 1", &[]))
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("no_such_table"), "{err}");
        assert!(err.contains("dormant@127.0.0.1:"), "{err}");
        assert!(!err.contains(test_postgres::PASSWORD), "{err}");
    }

    /// A call that outlasts its deadline (a server that does not answer:
    /// here one that sleeps) fails with an error naming the store, so does
    /// a call waiting behind it, and the store serves again once it ends.
    #[tokio::test]
    async fn a_postgres_call_past_its_deadline_fails_and_the_store_recovers() {
        let mut store = TestDb::postgres().open();
        let target = store.deadline.clone().expect("a PostgreSQL deadline").1;
        store.deadline = Some((Duration::from_millis(300), target.clone()));
        store.insert_all(vec![record("a")]).await.unwrap();
        let err = store
            .with(|tx| tx.execute("SELECT pg_sleep(4)", &[]))
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::PgTimeout { .. }), "{err}");
        assert!(
            err.to_string()
                .contains("is PostgreSQL reachable at 127.0.0.1:"),
            "{err}"
        );
        let err = store.list().await.unwrap_err();
        assert!(
            matches!(err, StoreError::PgTimeout { .. }),
            "waiting for the connection counts: {err}"
        );
        store.deadline = Some((PG_CALL_DEADLINE, target));
        assert_eq!(store.list().await.unwrap().len(), 1);
    }

    /// Nothing listens: the error names the store and asks whether
    /// PostgreSQL is reachable there, without the password.
    #[test]
    fn an_unreachable_postgres_is_named_in_the_error() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let url = format!("postgres://app:s3cret@127.0.0.1:{port}/dormant");
        let StoreUrl::Postgres(target) = StoreUrl::parse(&url).unwrap() else {
            unreachable!()
        };
        let err = match Store::open_postgres(target) {
            Ok(_) => panic!("nothing listens on {port}"),
            Err(e) => e.to_string(),
        };
        assert!(
            err.contains(&format!(
                "is PostgreSQL running and reachable at 127.0.0.1:{port}"
            )),
            "{err}"
        );
        assert!(err.contains("app@127.0.0.1"), "{err}");
        assert!(!err.contains("s3cret"), "{err}");
    }
}
