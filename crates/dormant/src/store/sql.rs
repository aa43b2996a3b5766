//! The one SQL surface every store query is written against, so that each
//! query is written once and runs on SQLite and on PostgreSQL alike.
//!
//! A store call runs inside one transaction (`Tx`) of either backend, with
//! parameters and results as a small `Value` enum. Queries are written in
//! SQLite's spelling with `?N` placeholders; for PostgreSQL they become
//! `$N`. The database's clock is spelled `{now_ms}` (Unix milliseconds) and
//! becomes each dialect's expression. Everything else is SQL both accept.

use std::borrow::Cow;

use super::StoreError;

/// Which SQL dialect a transaction speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
}

impl Dialect {
    /// The database's clock now, in Unix milliseconds, as an SQL expression.
    fn now_ms(self) -> &'static str {
        match self {
            // julianday counts days as a double: sub-millisecond precision
            // for millennia around now.
            Dialect::Sqlite => "CAST((julianday('now') - 2440587.5) * 86400000.0 AS INTEGER)",
            // clock_timestamp(), not now(): the time of the statement, not
            // of the start of its transaction.
            Dialect::Postgres => "CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000 AS BIGINT)",
        }
    }

    /// `sql` in this dialect: `{now_ms}` replaced and, for PostgreSQL, `?N`
    /// placeholders turned into `$N`. The store's own SQL has no `?` or
    /// `{now_ms}` inside string literals.
    pub fn translate(self, sql: &str) -> Cow<'_, str> {
        let sql: Cow<'_, str> = if sql.contains(NOW_MS) {
            Cow::Owned(sql.replace(NOW_MS, self.now_ms()))
        } else {
            Cow::Borrowed(sql)
        };
        if self == Dialect::Sqlite || !sql.contains('?') {
            return sql;
        }
        let mut out = String::with_capacity(sql.len());
        let mut chars = sql.chars().peekable();
        while let Some(c) = chars.next() {
            if c == '?' && chars.peek().is_some_and(char::is_ascii_digit) {
                out.push('$');
            } else {
                out.push(c);
            }
        }
        Cow::Owned(out)
    }
}

/// The database's clock in a query (see `Dialect::now_ms`).
pub const NOW_MS: &str = "{now_ms}";

/// One parameter or column value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Null,
    Int(i64),
    Text(String),
    Blob(Vec<u8>),
}

impl From<i64> for Value {
    fn from(v: i64) -> Self {
        Value::Int(v)
    }
}

impl From<u16> for Value {
    fn from(v: u16) -> Self {
        Value::Int(v.into())
    }
}

impl From<String> for Value {
    fn from(v: String) -> Self {
        Value::Text(v)
    }
}

impl From<&String> for Value {
    fn from(v: &String) -> Self {
        Value::Text(v.clone())
    }
}

impl From<&str> for Value {
    fn from(v: &str) -> Self {
        Value::Text(v.to_owned())
    }
}

impl<T: Into<Value>> From<Option<T>> for Value {
    fn from(v: Option<T>) -> Self {
        v.map_or(Value::Null, Into::into)
    }
}

impl<T: Clone + Into<Value>> From<&Option<T>> for Value {
    fn from(v: &Option<T>) -> Self {
        v.clone().map_or(Value::Null, Into::into)
    }
}

/// Parameters of a query: `vals![a, b]` is `[Value::from(a), Value::from(b)]`.
macro_rules! vals {
    ($($v:expr),* $(,)?) => {
        [$($crate::store::sql::Value::from($v)),*]
    };
}
pub(crate) use vals;

/// One result row.
#[derive(Debug)]
pub struct SqlRow(Vec<Value>);

impl SqlRow {
    fn at(&self, index: usize) -> Result<&Value, StoreError> {
        self.0
            .get(index)
            .ok_or_else(|| StoreError::Column(format!("no column {index} in a row")))
    }

    pub fn int(&self, index: usize) -> Result<i64, StoreError> {
        self.opt_int(index)?
            .ok_or_else(|| StoreError::Column(format!("column {index} is NULL")))
    }

    pub fn opt_int(&self, index: usize) -> Result<Option<i64>, StoreError> {
        match self.at(index)? {
            Value::Null => Ok(None),
            Value::Int(v) => Ok(Some(*v)),
            other => Err(StoreError::Column(format!(
                "column {index} is {other:?}, not an integer"
            ))),
        }
    }

    pub fn text(&self, index: usize) -> Result<String, StoreError> {
        self.opt_text(index)?
            .ok_or_else(|| StoreError::Column(format!("column {index} is NULL")))
    }

    pub fn opt_text(&self, index: usize) -> Result<Option<String>, StoreError> {
        match self.at(index)? {
            Value::Null => Ok(None),
            Value::Text(v) => Ok(Some(v.clone())),
            other => Err(StoreError::Column(format!(
                "column {index} is {other:?}, not text"
            ))),
        }
    }
}

/// One transaction on either backend. Dropped without `commit`, it rolls back.
pub enum Tx<'c> {
    Sqlite(rusqlite::Transaction<'c>),
    /// With the connection's prepared statements, as SQLite's
    /// `prepare_cached`: one round trip per statement instead of two.
    Postgres(postgres::Transaction<'c>, &'c mut PgStatements),
}

/// A PostgreSQL connection's prepared statements, by their SQL.
#[derive(Default)]
pub struct PgStatements(std::collections::HashMap<String, postgres::Statement>);

impl PgStatements {
    /// More than the store's own SQL (a few dozen statements): a bound,
    /// should that ever change.
    const MAX: usize = 256;

    fn get(
        &mut self,
        tx: &mut postgres::Transaction<'_>,
        sql: &str,
    ) -> Result<postgres::Statement, postgres::Error> {
        if let Some(statement) = self.0.get(sql) {
            return Ok(statement.clone());
        }
        let statement = tx.prepare(sql)?;
        if self.0.len() >= Self::MAX {
            self.0.clear();
        }
        self.0.insert(sql.to_owned(), statement.clone());
        Ok(statement)
    }

    /// Forgets them all (they die with their connection).
    pub fn clear(&mut self) {
        self.0.clear();
    }
}

impl Tx<'_> {
    pub fn dialect(&self) -> Dialect {
        match self {
            Tx::Sqlite(_) => Dialect::Sqlite,
            Tx::Postgres(..) => Dialect::Postgres,
        }
    }

    /// Runs one statement; how many rows it changed.
    pub fn execute(&mut self, sql: &str, params: &[Value]) -> Result<u64, StoreError> {
        let sql = self.dialect().translate(sql);
        match self {
            Tx::Sqlite(tx) => {
                let mut stmt = tx.prepare_cached(&sql)?;
                Ok(stmt.execute(rusqlite::params_from_iter(params))? as u64)
            }
            Tx::Postgres(tx, statements) => {
                let statement = statements.get(tx, &sql)?;
                Ok(tx.execute(&statement, &pg_params(params))?)
            }
        }
    }

    /// Runs one query; all its rows.
    pub fn query(&mut self, sql: &str, params: &[Value]) -> Result<Vec<SqlRow>, StoreError> {
        let sql = self.dialect().translate(sql);
        match self {
            Tx::Sqlite(tx) => {
                let mut stmt = tx.prepare_cached(&sql)?;
                let columns = stmt.column_count();
                let mut rows = stmt.query(rusqlite::params_from_iter(params))?;
                let mut out = Vec::new();
                while let Some(row) = rows.next()? {
                    let values = (0..columns)
                        .map(|i| row.get_ref(i).map(from_sqlite))
                        .collect::<Result<Vec<_>, _>>()?;
                    out.push(SqlRow(values.into_iter().collect::<Result<_, _>>()?));
                }
                Ok(out)
            }
            Tx::Postgres(tx, statements) => {
                let statement = statements.get(tx, &sql)?;
                tx.query(&statement, &pg_params(params))?
                    .iter()
                    .map(|row| {
                        (0..row.len())
                            .map(|i| row.try_get::<_, Value>(i))
                            .collect::<Result<Vec<_>, _>>()
                            .map(SqlRow)
                            .map_err(StoreError::from)
                    })
                    .collect()
            }
        }
    }

    /// Runs one query expected to return at most one row.
    pub fn query_opt(&mut self, sql: &str, params: &[Value]) -> Result<Option<SqlRow>, StoreError> {
        Ok(self.query(sql, params)?.into_iter().next())
    }

    /// Runs several `;`-separated statements without parameters (migrations).
    pub fn batch(&mut self, sql: &str) -> Result<(), StoreError> {
        match self {
            Tx::Sqlite(tx) => tx.execute_batch(sql)?,
            Tx::Postgres(tx, _) => tx.batch_execute(sql)?,
        }
        Ok(())
    }

    pub fn commit(self) -> Result<(), StoreError> {
        match self {
            Tx::Sqlite(tx) => tx.commit()?,
            Tx::Postgres(tx, _) => tx.commit()?,
        }
        Ok(())
    }
}

fn from_sqlite(value: rusqlite::types::ValueRef<'_>) -> Result<Value, StoreError> {
    use rusqlite::types::ValueRef;
    Ok(match value {
        ValueRef::Null => Value::Null,
        ValueRef::Integer(v) => Value::Int(v),
        ValueRef::Text(t) => Value::Text(
            std::str::from_utf8(t)
                .map_err(|e| StoreError::Column(format!("text that is not UTF-8: {e}")))?
                .to_owned(),
        ),
        ValueRef::Blob(b) => Value::Blob(b.to_vec()),
        ValueRef::Real(r) => {
            return Err(StoreError::Column(format!(
                "a floating-point value {r} where the store keeps none"
            )))
        }
    })
}

impl rusqlite::ToSql for Value {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        use rusqlite::types::{ToSqlOutput, ValueRef};
        Ok(ToSqlOutput::Borrowed(match self {
            Value::Null => ValueRef::Null,
            Value::Int(v) => ValueRef::Integer(*v),
            Value::Text(v) => ValueRef::Text(v.as_bytes()),
            Value::Blob(v) => ValueRef::Blob(v),
        }))
    }
}

fn pg_params(params: &[Value]) -> Vec<&(dyn postgres::types::ToSql + Sync)> {
    params
        .iter()
        .map(|p| p as &(dyn postgres::types::ToSql + Sync))
        .collect()
}

type PgResult<T> = Result<T, Box<dyn std::error::Error + Sync + Send>>;

/// A `Value` goes into whatever column type PostgreSQL inferred for its
/// placeholder (the store's integers are BIGINT, but `COUNT(*)` and
/// `LIMIT` have their own).
impl postgres::types::ToSql for Value {
    fn to_sql(
        &self,
        ty: &postgres::types::Type,
        out: &mut bytes::BytesMut,
    ) -> PgResult<postgres::types::IsNull> {
        use postgres::types::{IsNull, Type};
        match self {
            Value::Null => Ok(IsNull::Yes),
            Value::Int(v) => match *ty {
                Type::INT8 => v.to_sql(ty, out),
                Type::INT4 => i32::try_from(*v)?.to_sql(ty, out),
                Type::INT2 => i16::try_from(*v)?.to_sql(ty, out),
                Type::BOOL => (*v != 0).to_sql(ty, out),
                _ => Err(format!("cannot pass the integer {v} as {ty}").into()),
            },
            Value::Text(v) => v.to_sql(ty, out),
            Value::Blob(v) => v.to_sql(ty, out),
        }
    }

    fn accepts(_: &postgres::types::Type) -> bool {
        true
    }

    postgres::types::to_sql_checked!();
}

impl<'a> postgres::types::FromSql<'a> for Value {
    fn from_sql(ty: &postgres::types::Type, raw: &'a [u8]) -> PgResult<Self> {
        use postgres::types::Type;
        Ok(match *ty {
            Type::INT8 => Value::Int(i64::from_sql(ty, raw)?),
            Type::INT4 => Value::Int(i32::from_sql(ty, raw)?.into()),
            Type::INT2 => Value::Int(i16::from_sql(ty, raw)?.into()),
            Type::BOOL => Value::Int(bool::from_sql(ty, raw)?.into()),
            Type::BYTEA => Value::Blob(Vec::<u8>::from_sql(ty, raw)?),
            _ => Value::Text(String::from_sql(ty, raw)?),
        })
    }

    fn from_sql_null(_: &postgres::types::Type) -> PgResult<Self> {
        Ok(Value::Null)
    }

    fn accepts(_: &postgres::types::Type) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_become_dollars_only_for_postgres() {
        let sql = "UPDATE t SET a = ?2 WHERE b = ?1 AND c > {now_ms}";
        assert_eq!(
            Dialect::Postgres.translate(sql),
            format!(
                "UPDATE t SET a = $2 WHERE b = $1 AND c > {}",
                Dialect::Postgres.now_ms()
            )
        );
        assert_eq!(
            Dialect::Sqlite.translate(sql),
            format!(
                "UPDATE t SET a = ?2 WHERE b = ?1 AND c > {}",
                Dialect::Sqlite.now_ms()
            )
        );
        assert!(matches!(
            Dialect::Sqlite.translate("SELECT ?1"),
            Cow::Borrowed(_)
        ));
    }
}
