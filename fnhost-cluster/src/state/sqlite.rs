//! The embedded driver: SQLite (bundled) in WAL mode, one connection
//! behind a mutex (statements take microseconds; the manager is one
//! process).

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use rusqlite::Connection;
use rusqlite::types::{ToSqlOutput, ValueRef};

use super::{Db, Migration, Statement, Value};
use crate::error::{Error, Result};

/// A SQLite database file.
#[derive(Debug)]
pub struct SqliteDb {
    path: PathBuf,
    conn: Mutex<Connection>,
}

impl SqliteDb {
    /// Opens (or creates) the database at `path`.
    pub fn open(path: impl AsRef<Path>) -> Result<SqliteDb> {
        let path = path.as_ref().to_path_buf();
        let fail = |e: rusqlite::Error| Error::State {
            store: path.display().to_string(),
            message: e.to_string(),
        };
        let conn = Connection::open(&path).map_err(fail)?;
        conn.busy_timeout(Duration::from_secs(10)).map_err(fail)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(fail)?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(fail)?;
        Ok(SqliteDb {
            path,
            conn: Mutex::new(conn),
        })
    }

    fn fail(&self, e: rusqlite::Error) -> Error {
        Error::State {
            store: self.describe(),
            message: e.to_string(),
        }
    }

    fn with<T>(&self, f: impl FnOnce(&mut Connection) -> rusqlite::Result<T>) -> Result<T> {
        let mut conn = self.conn.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut conn).map_err(|e| self.fail(e))
    }
}

impl rusqlite::ToSql for Value {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(match self {
            Value::Int(i) => ToSqlOutput::from(*i),
            Value::Text(t) => ToSqlOutput::Borrowed(ValueRef::Text(t.as_bytes())),
        })
    }
}

/// `$1` (both dialects' numbered parameter) as SQLite's `?1`, whose
/// number is the index whatever the order of first use.
fn dialect(sql: &str) -> String {
    sql.replace('$', "?")
}

fn read(row: &rusqlite::Row<'_>, columns: usize) -> rusqlite::Result<Vec<Value>> {
    (0..columns)
        .map(|i| {
            Ok(match row.get_ref(i)? {
                ValueRef::Integer(n) => Value::Int(n),
                ValueRef::Real(f) => Value::Int(f as i64),
                ValueRef::Null => Value::Text(String::new()),
                ValueRef::Text(t) | ValueRef::Blob(t) => {
                    Value::Text(String::from_utf8_lossy(t).into_owned())
                }
            })
        })
        .collect()
}

fn query(conn: &Connection, sql: &str, params: &[Value]) -> rusqlite::Result<Vec<Vec<Value>>> {
    let mut stmt = conn.prepare_cached(&dialect(sql))?;
    let columns = stmt.column_count();
    let rows = stmt.query_map(rusqlite::params_from_iter(params.iter()), |r| {
        read(r, columns)
    })?;
    rows.collect()
}

#[async_trait]
impl Db for SqliteDb {
    fn describe(&self) -> String {
        format!("sqlite:{}", self.path.display())
    }

    async fn execute(&self, sql: &str, params: &[Value]) -> Result<u64> {
        self.with(|c| {
            c.prepare_cached(&dialect(sql))?
                .execute(rusqlite::params_from_iter(params.iter()))
                .map(|n| n as u64)
        })
    }

    async fn query(&self, sql: &str, params: &[Value]) -> Result<Vec<Vec<Value>>> {
        self.with(|c| query(c, sql, params))
    }

    async fn batch(&self, statements: &[Statement]) -> Result<Vec<u64>> {
        self.with(|c| {
            let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let mut counts = Vec::with_capacity(statements.len());
            for (sql, params) in statements {
                let n = tx
                    .prepare_cached(&dialect(sql))?
                    .execute(rusqlite::params_from_iter(params.iter()))?;
                counts.push(n as u64);
            }
            tx.commit()?;
            Ok(counts)
        })
    }

    async fn migrate(&self, migrations: &[Migration]) -> Result<()> {
        self.with(|c| {
            let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            tx.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY, applied_at BIGINT NOT NULL)",
                [],
            )?;
            let applied: i64 = tx.query_row(
                "SELECT COALESCE(MAX(version), 0) FROM schema_migrations",
                [],
                |r| r.get(0),
            )?;
            for m in migrations.iter().filter(|m| m.version > applied) {
                for s in m.statements {
                    tx.execute(s, [])?;
                }
                tx.execute(
                    "INSERT INTO schema_migrations (version, applied_at) VALUES (?1, ?2)",
                    rusqlite::params![m.version, crate::now_ms()],
                )?;
            }
            tx.commit()
        })
    }
}
