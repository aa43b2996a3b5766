//! The durable record of what should exist: SQLite (WAL) in the data dir by
//! default, or PostgreSQL (`--store postgres://...`) for nodes that share one.
//!
//! Docker is the truth about what exists; the store is the truth about what
//! should exist. Calls are short and run on the blocking pool, never on the
//! proxy's path. Each call is one transaction written once against `sql::Tx`,
//! which runs it on either backend.

pub mod audit;
mod container_tokens;
mod containers;
mod error;
mod migrations;
pub mod nodes;
mod pg;
pub(crate) mod sql;
pub mod tenants;
#[cfg(test)]
pub(crate) mod test_backend;
#[cfg(test)]
pub(crate) mod test_postgres;
mod url;
pub mod webhooks;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rusqlite::Connection;

pub use container_tokens::ContainerTokenRow;
pub use containers::RowChange;
pub use error::StoreError;
pub use pg::PgTarget;
use sql::Tx;
pub use url::StoreUrl;

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
}

#[cfg(test)]
mod tests {
    use super::*;
    use test_backend::TestDb;

    fn record(name: &str) -> crate::domain::ContainerRecord {
        crate::domain::sample_record(name, 1)
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
