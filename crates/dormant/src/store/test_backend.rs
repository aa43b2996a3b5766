//! Test stores on both backends: a SQLite file in a temp dir, or a fresh
//! database on the test process's PostgreSQL (`test_postgres`). A test
//! runs its body once on each (`TestDb::both`).

use std::sync::Arc;

use super::{PgTarget, Store};
use crate::runtime::fake::TempDir;

/// Where a test's store lives; `open` it as often as needed (a restart).
#[derive(Clone, Debug)]
pub enum TestDb {
    Sqlite(Arc<TempDir>),
    Postgres(PgTarget),
}

impl TestDb {
    pub fn sqlite() -> Self {
        TestDb::Sqlite(Arc::new(TempDir::new("store-test")))
    }

    /// A fresh database on the shared test server (started on first use;
    /// the test fails, saying what to install, without PostgreSQL).
    pub fn postgres() -> Self {
        let url = super::test_postgres::server().create_database();
        TestDb::Postgres(PgTarget::parse(&url).expect("the test URL parses"))
    }

    /// One of each, SQLite first.
    pub fn both() -> [TestDb; 2] {
        [TestDb::sqlite(), TestDb::postgres()]
    }

    /// Opens (and migrates) the store, off any async thread.
    pub fn open(&self) -> Store {
        let db = self.clone();
        std::thread::spawn(move || match &db {
            TestDb::Sqlite(dir) => Store::open(&dir.path().join("dormant.db")),
            TestDb::Postgres(target) => Store::open_postgres(target.clone()),
        })
        .join()
        .expect("no panic opening the store")
        .unwrap_or_else(|e| panic!("open the test store {self:?}: {e}"))
    }

    /// `sqlite` or `postgres`, for failure messages.
    pub fn name(&self) -> &'static str {
        match self {
            TestDb::Sqlite(_) => "sqlite",
            TestDb::Postgres(_) => "postgres",
        }
    }
}
