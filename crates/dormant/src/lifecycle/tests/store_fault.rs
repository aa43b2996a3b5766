//! Store failures on demand, for the harness: SQLite triggers installed
//! from a second connection make chosen statements fail, with no change to
//! the store's code. Needs the store in a file (`Options::store_faults`).

use std::time::Duration;

use super::harness::Harness;
use crate::domain::ContainerState;

/// A store statement that fails (with an SQLite error) until `heal_store`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreFault {
    /// Writing this state.
    SetState(ContainerState),
    /// Recording a snapshot (`forget: false`) or forgetting it (`true`).
    SetSnapshot {
        forget: bool,
    },
    SetDockerId,
    RecordWake,
    Insert,
    Delete,
    /// Every statement: the database is gone.
    Everything,
}

impl Harness {
    /// Makes `fault` fail in the store until `heal_store`. Needs
    /// `Options::store_faults`.
    pub fn fail_store(&self, fault: StoreFault) {
        let sql = match fault {
            StoreFault::SetState(state) => format!(
                "CREATE TRIGGER fault_state_{state} BEFORE UPDATE OF state ON containers
                 WHEN NEW.state = '{state}' BEGIN SELECT RAISE(ABORT, 'injected store failure'); END"
            ),
            StoreFault::SetSnapshot { forget } => format!(
                "CREATE TRIGGER fault_snapshot BEFORE UPDATE OF snapshot_file ON containers
                 WHEN NEW.snapshot_file IS {} NULL BEGIN SELECT RAISE(ABORT, 'injected store failure'); END",
                if forget { "" } else { "NOT" }
            ),
            StoreFault::SetDockerId => "CREATE TRIGGER fault_docker_id BEFORE UPDATE OF docker_id ON containers
                 BEGIN SELECT RAISE(ABORT, 'injected store failure'); END"
                .into(),
            StoreFault::RecordWake => "CREATE TRIGGER fault_wake BEFORE UPDATE OF wakes ON containers
                 BEGIN SELECT RAISE(ABORT, 'injected store failure'); END"
                .into(),
            StoreFault::Insert => "CREATE TRIGGER fault_insert BEFORE INSERT ON containers
                 BEGIN SELECT RAISE(ABORT, 'injected store failure'); END"
                .into(),
            StoreFault::Delete => "CREATE TRIGGER fault_delete BEFORE DELETE ON containers
                 BEGIN SELECT RAISE(ABORT, 'injected store failure'); END"
                .into(),
            StoreFault::Everything => "ALTER TABLE containers RENAME TO containers_away".into(),
        };
        self.store_connection()
            .execute_batch(&sql)
            .expect("inject a store fault");
    }

    /// Every store fault stops.
    pub fn heal_store(&self) {
        let conn = self.store_connection();
        let away: bool = conn
            .query_row(
                "SELECT count(*) FROM sqlite_master WHERE name = 'containers_away'",
                [],
                |row| row.get::<_, i64>(0),
            )
            .expect("look at the schema")
            > 0;
        if away {
            conn.execute_batch("ALTER TABLE containers_away RENAME TO containers")
                .expect("heal the store");
        }
        let triggers: Vec<String> = conn
            .prepare("SELECT name FROM sqlite_master WHERE type = 'trigger'")
            .expect("list triggers")
            .query_map([], |row| row.get(0))
            .expect("list triggers")
            .map(|name| name.expect("a trigger name"))
            .collect();
        for trigger in triggers {
            conn.execute_batch(&format!("DROP TRIGGER {trigger}"))
                .expect("drop a trigger");
        }
    }

    fn store_connection(&self) -> rusqlite::Connection {
        assert!(
            self.options().store_faults,
            "fail_store needs Options {{ store_faults: true, .. }}"
        );
        let conn = rusqlite::Connection::open(self.data_dir().join("dormant.db"))
            .expect("a second connection to the store");
        conn.busy_timeout(Duration::from_secs(5))
            .expect("busy timeout");
        conn
    }
}
