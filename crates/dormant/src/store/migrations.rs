//! The store's schema, as an ordered list of migrations applied once each.
//!
//! `PRAGMA user_version` records how many have run. Append new migrations;
//! never edit one that has shipped.

use rusqlite::Connection;

const MIGRATIONS: &[&str] = &[
    // 1: containers, one row each, with their spec as JSON so that adding a
    // setting never needs a schema change.
    "CREATE TABLE containers (
        name            TEXT PRIMARY KEY,
        spec            TEXT NOT NULL,
        state           TEXT NOT NULL,
        reason          TEXT,
        docker_id       TEXT,
        owner           TEXT NOT NULL,
        node            TEXT NOT NULL,
        created_at      INTEGER NOT NULL,
        last_active_at  INTEGER NOT NULL
    );
    CREATE INDEX containers_state ON containers(state);",
    // 2: wake statistics.
    "ALTER TABLE containers ADD COLUMN wakes INTEGER NOT NULL DEFAULT 0;
     ALTER TABLE containers ADD COLUMN last_wake_ms INTEGER;",
    // 3: when the state last changed (for archive-after), and the snapshot
    // of an archived container.
    "ALTER TABLE containers ADD COLUMN state_since INTEGER NOT NULL DEFAULT 0;
     UPDATE containers SET state_since = last_active_at;
     ALTER TABLE containers ADD COLUMN snapshot_file TEXT;
     ALTER TABLE containers ADD COLUMN snapshot_bytes INTEGER;
     ALTER TABLE containers ADD COLUMN snapshot_files INTEGER;
     ALTER TABLE containers ADD COLUMN snapshot_sha256 TEXT;
     ALTER TABLE containers ADD COLUMN snapshot_created_at INTEGER;",
    // 4: tenants with their quotas (NULL = unlimited), their API tokens
    // (only the SHA-256 of each is kept) and the audit log. Containers made
    // before tenants keep owner `admin`: they belong to the admin.
    "CREATE TABLE tenants (
        id                  TEXT PRIMARY KEY,
        created_at          INTEGER NOT NULL,
        max_containers      INTEGER,
        max_running         INTEGER,
        max_memory_bytes    INTEGER,
        max_snapshot_bytes  INTEGER
    );
    CREATE TABLE tenant_tokens (
        id          TEXT PRIMARY KEY,
        tenant      TEXT NOT NULL REFERENCES tenants(id),
        sha256      TEXT NOT NULL UNIQUE,
        created_at  INTEGER NOT NULL,
        revoked_at  INTEGER
    );
    CREATE INDEX tenant_tokens_tenant ON tenant_tokens(tenant);
    CREATE TABLE audit (
        id          INTEGER PRIMARY KEY AUTOINCREMENT,
        at          INTEGER NOT NULL,
        token_id    TEXT NOT NULL,
        principal   TEXT NOT NULL,
        method      TEXT NOT NULL,
        path        TEXT NOT NULL,
        status      INTEGER NOT NULL
    );
    CREATE INDEX audit_principal ON audit(principal, id);
    CREATE INDEX audit_at ON audit(at);",
    // 5: webhooks: where each owner's container events are sent, and the
    // secret its deliveries are signed with.
    "CREATE TABLE webhooks (
        id          TEXT PRIMARY KEY,
        owner       TEXT NOT NULL,
        url         TEXT NOT NULL,
        events      TEXT NOT NULL,
        container   TEXT,
        secret      TEXT NOT NULL,
        created_at  INTEGER NOT NULL
    );
    CREATE INDEX webhooks_owner ON webhooks(owner);",
];

/// Brings the schema up to date inside one transaction.
pub fn migrate(conn: &mut Connection) -> rusqlite::Result<()> {
    let applied: usize = conn.query_row("PRAGMA user_version", [], |row| row.get(0))?;
    if applied > MIGRATIONS.len() {
        return Err(rusqlite::Error::InvalidParameterName(format!(
            "the database has schema version {applied} but this dormant knows only {}; \
             run a newer dormant or point --data-dir elsewhere",
            MIGRATIONS.len()
        )));
    }
    let tx = conn.transaction()?;
    for (index, sql) in MIGRATIONS.iter().enumerate().skip(applied) {
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", index + 1)?;
    }
    tx.commit()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrating_twice_is_a_no_op() {
        let mut conn = Connection::open_in_memory().unwrap();
        migrate(&mut conn).unwrap();
        migrate(&mut conn).unwrap();
        let version: usize = conn
            .query_row("PRAGMA user_version", [], |row| row.get(0))
            .unwrap();
        assert_eq!(version, MIGRATIONS.len());
    }

    #[test]
    fn containers_made_before_tenants_stay_the_admins() {
        let mut conn = Connection::open_in_memory().unwrap();
        for sql in &MIGRATIONS[..3] {
            conn.execute_batch(sql).unwrap();
        }
        conn.pragma_update(None, "user_version", 3).unwrap();
        conn.execute(
            "INSERT INTO containers (name, spec, state, owner, node, created_at, last_active_at)
             VALUES ('old', '{}', 'asleep', 'admin', 'n', 1, 1)",
            [],
        )
        .unwrap();
        migrate(&mut conn).unwrap();
        let owner: String = conn
            .query_row("SELECT owner FROM containers WHERE name = 'old'", [], |r| {
                r.get(0)
            })
            .unwrap();
        assert_eq!(owner, "admin");
        let tenants: i64 = conn
            .query_row("SELECT COUNT(*) FROM tenants", [], |r| r.get(0))
            .unwrap();
        assert_eq!(tenants, 0);
    }
}
