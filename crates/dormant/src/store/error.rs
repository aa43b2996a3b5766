//! The store's errors: each names what failed and, for PostgreSQL, which
//! store (never with its password) and what to check.

use std::time::Duration;

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
