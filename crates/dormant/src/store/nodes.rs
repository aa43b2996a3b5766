//! Nodes sharing one store, and the leases they take on containers' rows
//! (issue 14): a node acts on a container only while it holds its lease,
//! and loses a lease it stops renewing once the lease's time is up. Every
//! time here is the database's clock (`{now_ms}`), never a node's, so nodes
//! whose clocks disagree still agree on who holds what.
//!
//! Nothing outside tests uses these yet; the multi-node work will.

use std::time::Duration;

use super::sql::vals;
use super::{Store, StoreError};
use crate::domain::UnixMillis;

/// A node as it last reported itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeRow {
    pub name: String,
    /// Where other nodes reach its proxy.
    pub advertise_addr: String,
    /// The database's time of its last heartbeat (Unix milliseconds).
    pub last_heartbeat: UnixMillis,
    /// How long ago that was, by the database's clock.
    pub since_heartbeat: Duration,
}

/// A lease's length in milliseconds, as the database adds it.
fn ttl_ms(ttl: Duration) -> i64 {
    i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX / 2)
}

impl Store {
    /// Takes the lease on container `name` for `node` until `ttl` from now:
    /// true if it was free, expired or already `node`'s (then it is
    /// extended); false if another node holds it, or there is no such row.
    /// One statement, so of two nodes racing for a row exactly one wins.
    pub async fn take_lease(
        &self,
        name: &str,
        node: &str,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        let (name, node) = (name.to_owned(), node.to_owned());
        self.with(move |tx| {
            let taken = tx.execute(
                "UPDATE containers SET lease_node = ?2, lease_expires = {now_ms} + ?3
                 WHERE name = ?1
                   AND (lease_node IS NULL OR lease_node = ?2 OR lease_expires <= {now_ms})",
                &vals![name, node, ttl_ms(ttl)],
            )?;
            Ok(taken == 1)
        })
        .await
    }

    /// Extends every unexpired lease `node` holds to `ttl` from now; the
    /// names of the containers whose leases it still holds, by name. A
    /// lease that expired is not renewed: another node may have taken it,
    /// and this node must act as if it had.
    pub async fn renew_leases(&self, node: &str, ttl: Duration) -> Result<Vec<String>, StoreError> {
        let node = node.to_owned();
        self.with(move |tx| {
            tx.execute(
                "UPDATE containers SET lease_expires = {now_ms} + ?2
                 WHERE lease_node = ?1 AND lease_expires > {now_ms}",
                &vals![&node, ttl_ms(ttl)],
            )?;
            tx.query(
                "SELECT name FROM containers
                 WHERE lease_node = ?1 AND lease_expires > {now_ms} ORDER BY name",
                &vals![&node],
            )?
            .iter()
            .map(|row| row.text(0))
            .collect()
        })
        .await
    }

    /// Gives up `node`'s lease on `name`; false if `node` did not hold it.
    pub async fn release_lease(&self, name: &str, node: &str) -> Result<bool, StoreError> {
        let (name, node) = (name.to_owned(), node.to_owned());
        self.with(move |tx| {
            let released = tx.execute(
                "UPDATE containers SET lease_node = NULL, lease_expires = NULL
                 WHERE name = ?1 AND lease_node = ?2",
                &vals![name, node],
            )?;
            Ok(released == 1)
        })
        .await
    }

    /// Records that `node` is alive and reached at `advertise_addr`.
    pub async fn heartbeat(&self, node: &str, advertise_addr: &str) -> Result<(), StoreError> {
        let (node, addr) = (node.to_owned(), advertise_addr.to_owned());
        self.with(move |tx| {
            tx.execute(
                "INSERT INTO nodes (name, advertise_addr, last_heartbeat)
                 VALUES (?1, ?2, {now_ms})
                 ON CONFLICT(name) DO UPDATE
                   SET advertise_addr = excluded.advertise_addr,
                       last_heartbeat = excluded.last_heartbeat",
                &vals![node, addr],
            )?;
            Ok(())
        })
        .await
    }

    /// How many containers each node runs or keeps, by state: `(node, state,
    /// count)`, node `None` for those no node holds (archived), by node and
    /// state.
    pub async fn count_by_node(&self) -> Result<Vec<(Option<String>, String, i64)>, StoreError> {
        self.with(|tx| {
            tx.query(
                "SELECT node, state, COUNT(*) FROM containers
                 GROUP BY node, state ORDER BY node, state",
                &[],
            )?
            .iter()
            .map(|row| Ok((row.opt_text(0)?, row.text(1)?, row.int(2)?)))
            .collect()
        })
        .await
    }

    /// Every node that ever sent a heartbeat, by name.
    pub async fn list_nodes(&self) -> Result<Vec<NodeRow>, StoreError> {
        self.with(|tx| {
            tx.query(
                "SELECT name, advertise_addr, last_heartbeat, {now_ms} - last_heartbeat
                 FROM nodes ORDER BY name",
                &[],
            )?
            .iter()
            .map(|row| {
                Ok(NodeRow {
                    name: row.text(0)?,
                    advertise_addr: row.text(1)?,
                    last_heartbeat: row.int(2)?,
                    since_heartbeat: Duration::from_millis(row.int(3)?.max(0) as u64),
                })
            })
            .collect()
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::test_backend::TestDb;

    const LONG: Duration = Duration::from_secs(600);

    async fn with_rows(db: &TestDb, names: &[&str]) -> Store {
        let store = db.open();
        let records = names
            .iter()
            .map(|name| crate::domain::sample_record(name, 1))
            .collect();
        store.insert_all(records).await.unwrap();
        store
    }

    #[tokio::test]
    async fn a_lease_is_held_by_one_node_until_released_or_expired() {
        for db in TestDb::both() {
            let backend = db.name();
            let store = with_rows(&db, &["a", "b"]).await;
            assert!(
                store.take_lease("a", "n1", LONG).await.unwrap(),
                "{backend}: free"
            );
            assert!(
                store.take_lease("a", "n1", LONG).await.unwrap(),
                "{backend}: ours"
            );
            assert!(
                !store.take_lease("a", "n2", LONG).await.unwrap(),
                "{backend}: held"
            );
            assert!(
                !store.take_lease("nope", "n1", LONG).await.unwrap(),
                "{backend}: no row"
            );
            assert!(
                !store.release_lease("a", "n2").await.unwrap(),
                "{backend}: not n2's"
            );
            assert!(store.release_lease("a", "n1").await.unwrap(), "{backend}");
            assert!(
                store.take_lease("a", "n2", LONG).await.unwrap(),
                "{backend}: released"
            );

            // A lease of zero length expires at once: the next node takes it
            // over, and its old holder can no longer renew it.
            assert!(store.take_lease("b", "n1", Duration::ZERO).await.unwrap());
            assert!(
                store.renew_leases("n1", LONG).await.unwrap().is_empty(),
                "{backend}: an expired lease is not renewed"
            );
            assert!(
                store.take_lease("b", "n2", LONG).await.unwrap(),
                "{backend}: taken over"
            );
            assert!(
                !store.take_lease("b", "n1", LONG).await.unwrap(),
                "{backend}"
            );
            assert_eq!(
                store.renew_leases("n2", LONG).await.unwrap(),
                ["a", "b"],
                "{backend}"
            );
            assert!(
                store.renew_leases("n1", LONG).await.unwrap().is_empty(),
                "{backend}"
            );
        }
    }

    /// Two handles on one database (two nodes) race for the same rows many
    /// times: each row goes to exactly one of them.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn two_nodes_racing_for_a_row_never_both_win() {
        for db in TestDb::both() {
            let backend = db.name();
            let names: Vec<String> = (0..40).map(|i| format!("c{i}")).collect();
            let refs: Vec<&str> = names.iter().map(String::as_str).collect();
            let first = with_rows(&db, &refs).await;
            let second = db.open();
            let race = |store: Store, node: &'static str| {
                let names = names.clone();
                tokio::spawn(async move {
                    let mut won = Vec::new();
                    for name in names {
                        if store.take_lease(&name, node, LONG).await.unwrap() {
                            won.push(name);
                        }
                    }
                    won
                })
            };
            let (a, b) = (race(first.clone(), "n1"), race(second, "n2"));
            let (a, b) = (a.await.unwrap(), b.await.unwrap());
            assert_eq!(a.len() + b.len(), names.len(), "{backend}: {a:?} {b:?}");
            assert!(a.iter().all(|name| !b.contains(name)), "{backend}");
            assert_eq!(first.renew_leases("n1", LONG).await.unwrap(), {
                let mut a = a;
                a.sort();
                a
            });
        }
    }

    #[tokio::test]
    async fn heartbeats_list_nodes_by_the_database_clock() {
        for db in TestDb::both() {
            let backend = db.name();
            let store = db.open();
            assert!(store.list_nodes().await.unwrap().is_empty(), "{backend}");
            store.heartbeat("n2", "10.0.0.2:8080").await.unwrap();
            store.heartbeat("n1", "10.0.0.1:8080").await.unwrap();
            let before = store.list_nodes().await.unwrap();
            store.heartbeat("n1", "10.0.0.9:8080").await.unwrap();
            let nodes = store.list_nodes().await.unwrap();
            let names: Vec<_> = nodes.iter().map(|n| n.name.as_str()).collect();
            assert_eq!(names, ["n1", "n2"], "{backend}");
            assert_eq!(nodes[0].advertise_addr, "10.0.0.9:8080", "{backend}");
            assert!(
                nodes[0].last_heartbeat >= before[0].last_heartbeat,
                "{backend}"
            );
            // The database's clock is Unix time in milliseconds, as ours.
            let drift = (nodes[0].last_heartbeat - crate::domain::now_millis()).abs();
            assert!(drift < 60_000, "{backend}: {drift} ms off");
        }
    }

    #[tokio::test]
    async fn containers_are_counted_by_node_and_state() {
        for db in TestDb::both() {
            let store = db.open();
            let mut rows = Vec::new();
            for (name, node) in [
                ("a", Some("n1")),
                ("b", Some("n1")),
                ("c", Some("n2")),
                ("d", None),
            ] {
                let mut row = crate::domain::sample_record(name, 1);
                row.node = node.map(str::to_owned);
                rows.push(row);
            }
            store.insert_all(rows).await.unwrap();
            let counts = store.count_by_node().await.unwrap();
            let mut expected = vec![
                (Some("n1".to_owned()), "creating".to_owned(), 2),
                (Some("n2".to_owned()), "creating".to_owned(), 1),
                (None, "creating".to_owned(), 1),
            ];
            // NULLs sort first on SQLite and last on PostgreSQL.
            let mut counts_sorted = counts.clone();
            counts_sorted.sort();
            expected.sort();
            assert_eq!(counts_sorted, expected, "{}", db.name());
        }
    }

    #[tokio::test]
    async fn a_container_row_may_have_no_node() {
        for db in TestDb::both() {
            let store = db.open();
            let mut archived = crate::domain::sample_record("a", 1);
            archived.node = None;
            store.insert_all(vec![archived]).await.unwrap();
            let got = store.get("a").await.unwrap().unwrap();
            assert_eq!(got.node, None, "{}", db.name());
        }
    }
}
