//! The store's connection to PostgreSQL: one connection, made at start-up
//! and made again after it breaks (the server restarted, the network
//! dropped), with every wait bounded: here by the server's statement and
//! lock timeouts and TCP's, and around each call by the store's deadline.
//!
//! One connection behind the store's mutex, as with SQLite: the store's
//! calls are few and short, and running them one at a time keeps each
//! read-then-write call (a quota check, then the insert) whole on this node.

use std::time::Duration;

use super::sql::{PgStatements, Tx};
use super::StoreError;

/// How long connecting may take before the call fails.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// The server aborts a statement (or a wait for a lock) past these, so a
/// store call never hangs on a slow query or another node's lock.
const STATEMENT_TIMEOUT_MS: u32 = 10_000;
const LOCK_TIMEOUT_MS: u32 = 10_000;
/// Data sent and not acknowledged for this long means the server is gone
/// (Linux's TCP_USER_TIMEOUT); keepalives find a silent one when idle.
const TCP_USER_TIMEOUT: Duration = Duration::from_secs(15);
const KEEPALIVES_IDLE: Duration = Duration::from_secs(10);

/// Where the store is, as `--store postgres://user:password@host:port/db`
/// said; shown without its password.
#[derive(Clone)]
pub struct PgTarget {
    /// Boxed: a `Config` is large, and a `StoreUrl` is mostly `Sqlite`.
    config: Box<postgres::Config>,
    /// `user@host:port/db`, for messages and logs.
    shown: String,
    /// `host:port`, for "is PostgreSQL reachable at ...".
    address: String,
}

impl std::fmt::Debug for PgTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "postgres://{}", self.shown)
    }
}

impl std::fmt::Display for PgTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "postgres://{}", self.shown)
    }
}

impl PgTarget {
    /// Parses a `postgres://` (or `postgresql://`) URL. The message of a
    /// bad one never repeats the URL: it may hold a password.
    pub fn parse(url: &str) -> Result<Self, String> {
        let mut config: postgres::Config = url.parse().map_err(|e| {
            format!("not a PostgreSQL URL (postgres://user:password@host:port/database): {e}")
        })?;
        let hosts = config.get_hosts();
        let host = match hosts {
            [postgres::config::Host::Tcp(host)] => host.clone(),
            [postgres::config::Host::Unix(path)] => path.display().to_string(),
            [] => return Err("the PostgreSQL URL names no host".into()),
            _ => return Err("the PostgreSQL URL names several hosts; give one".into()),
        };
        let port = config.get_ports().first().copied().unwrap_or(5432);
        let user = config.get_user().unwrap_or("(no user)").to_owned();
        let db = config.get_dbname().unwrap_or(&user).to_owned();
        let address = format!("{host}:{port}");
        let shown = format!("{user}@{address}/{db}");
        // Ours first: later `-c` settings win, so the URL's `options` can
        // change these.
        let ours = format!(
            "-c statement_timeout={STATEMENT_TIMEOUT_MS} -c lock_timeout={LOCK_TIMEOUT_MS} \
             -c idle_in_transaction_session_timeout=60000"
        );
        let options = match config.get_options() {
            Some(theirs) => format!("{ours} {theirs}"),
            None => ours,
        };
        config
            .options(&options)
            .connect_timeout(CONNECT_TIMEOUT)
            .tcp_user_timeout(TCP_USER_TIMEOUT)
            .keepalives(true)
            .keepalives_idle(KEEPALIVES_IDLE)
            .application_name("dormant")
            // The server's notices ("already exists, skipping") are no news.
            .notice_callback(|notice| tracing::debug!(%notice, "PostgreSQL notice"));
        Ok(Self {
            config: Box::new(config),
            shown,
            address,
        })
    }

    /// `host:port`.
    pub fn address(&self) -> &str {
        &self.address
    }

    fn connect(&self) -> Result<postgres::Client, StoreError> {
        self.config
            .connect(postgres::NoTls)
            .map_err(|error| StoreError::PgConnect {
                target: self.shown.clone(),
                address: self.address.clone(),
                error,
            })
    }
}

/// The store's PostgreSQL connection.
pub struct PgConnection {
    target: PgTarget,
    /// `None` after the connection broke, until the next call.
    client: Option<postgres::Client>,
    /// Prepared on `client`; forgotten with it.
    statements: PgStatements,
}

impl PgConnection {
    /// Connects now, so that a wrong URL or an unreachable server stops
    /// start-up with the reason.
    pub fn open(target: PgTarget) -> Result<Self, StoreError> {
        let client = target.connect()?;
        Ok(Self {
            target,
            client: Some(client),
            statements: PgStatements::default(),
        })
    }

    /// Runs `f` in one transaction, committed when `f` succeeds. A
    /// connection that fails to begin the transaction (nothing done yet:
    /// the server restarted, say) is made again and the call tried once
    /// more; one that breaks later fails this call and is made again by the
    /// next.
    pub fn run<T, F>(&mut self, f: F) -> Result<T, StoreError>
    where
        F: FnOnce(&mut Tx<'_>) -> Result<T, StoreError>,
    {
        let mut f = f;
        for attempt in 0..2 {
            if self.client.as_ref().is_none_or(postgres::Client::is_closed) {
                self.client = None;
                // Prepared on the connection that is gone.
                self.statements.clear();
                self.client = Some(self.target.connect()?);
                // `open` made the first connection: this one replaces a
                // broken one.
                tracing::info!(store = %self.target, "connected to PostgreSQL again");
            }
            let client = self.client.as_mut().expect("connected above");
            match in_transaction(client, &mut self.statements, f) {
                Ok(result) => {
                    if self
                        .client
                        .as_ref()
                        .is_some_and(postgres::Client::is_closed)
                    {
                        self.client = None;
                    }
                    return result.map_err(|e| match e {
                        StoreError::Postgres(e) => self.error(e),
                        other => other,
                    });
                }
                Err((e, unused)) if attempt == 0 => {
                    tracing::debug!(store = %self.target, error = %e, "beginning a transaction failed; connecting again");
                    self.client = None;
                    f = unused;
                }
                Err((e, _)) => return Err(self.error(e)),
            }
        }
        unreachable!("the second attempt returns")
    }

    fn error(&self, error: postgres::Error) -> StoreError {
        let broken = error.is_closed()
            || std::error::Error::source(&error).is_some_and(|cause| cause.is::<std::io::Error>());
        if broken {
            // Not the server's answer: the connection failed under the call.
            StoreError::PgConnect {
                target: self.target.shown.clone(),
                address: self.target.address.clone(),
                error,
            }
        } else {
            StoreError::PgQuery {
                target: self.target.shown.clone(),
                error,
            }
        }
    }
}

/// Runs `f` in a transaction of `client`, committed when `f` succeeds; `f`
/// back, unused, when the transaction could not begin.
#[allow(clippy::type_complexity)]
fn in_transaction<T, F>(
    client: &mut postgres::Client,
    statements: &mut PgStatements,
    f: F,
) -> Result<Result<T, StoreError>, (postgres::Error, F)>
where
    F: FnOnce(&mut Tx<'_>) -> Result<T, StoreError>,
{
    match client.transaction() {
        Ok(tx) => {
            let mut tx = Tx::Postgres(tx, statements);
            Ok(f(&mut tx).and_then(|out| tx.commit().map(|()| out)))
        }
        Err(e) => Err((e, f)),
    }
}

/// The synchronous client blocks on its own runtime to say goodbye to the
/// server, which panics on a thread that runs async tasks (a store dropped
/// at the end of `serve`, or of a test): so it is dropped on a thread of
/// its own.
impl Drop for PgConnection {
    fn drop(&mut self) {
        if let Some(client) = self.client.take() {
            let _ = std::thread::Builder::new()
                .name("dormant-pg-close".into())
                .spawn(move || drop(client));
        }
    }
}
