//! `--store`: where the store lives.

use super::PgTarget;

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
