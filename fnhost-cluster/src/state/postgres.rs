//! The driver for several managers: PostgreSQL (tokio-postgres), one
//! connection per manager. Migrations run under a transaction-scoped
//! advisory lock, so replicas starting together apply them once.

use async_trait::async_trait;
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::{Client, NoTls};

use super::{Db, Migration, Statement, Value};
use crate::error::{Error, Result};

/// The advisory lock key of migrations ("fnhost" in ASCII).
const MIGRATION_LOCK: i64 = 0x666e_686f_7374;

/// A PostgreSQL database.
pub struct PostgresDb {
    url: String,
    described: String,
    client: tokio::sync::Mutex<Client>,
}

impl std::fmt::Debug for PostgresDbUrl<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&redact(self.0))
    }
}

/// A URL shown without its password.
struct PostgresDbUrl<'a>(&'a str);

impl std::fmt::Debug for PostgresDb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresDb")
            .field("url", &PostgresDbUrl(&self.url))
            .finish_non_exhaustive()
    }
}

async fn open_client(url: &str, described: &str) -> Result<Client> {
    let (client, connection) =
        tokio_postgres::connect(url, NoTls)
            .await
            .map_err(|e| Error::State {
                store: described.to_string(),
                message: format!("cannot connect: {e}"),
            })?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(client)
}

impl PostgresDb {
    /// Connects to `url` (`postgres://user[:password]@host[:port]/db`).
    pub async fn connect(url: &str) -> Result<PostgresDb> {
        let described = redact(url);
        let client = open_client(url, &described).await?;
        Ok(PostgresDb {
            url: url.to_string(),
            described,
            client: tokio::sync::Mutex::new(client),
        })
    }

    /// The connection, made again when the server closed it (a restart,
    /// a failover).
    async fn client(&self) -> Result<tokio::sync::MutexGuard<'_, Client>> {
        let mut client = self.client.lock().await;
        if client.is_closed() {
            *client = open_client(&self.url, &self.described).await?;
        }
        Ok(client)
    }

    fn fail(&self, e: tokio_postgres::Error) -> Error {
        Error::State {
            store: self.described.clone(),
            message: e.to_string(),
        }
    }
}

/// The URL without its password.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let userinfo = &url[s + 3..at];
            let user = userinfo.split(':').next().unwrap_or("");
            format!("{}{user}@{}", &url[..s + 3], &url[at + 1..])
        }
        _ => url.to_string(),
    }
}

enum Param {
    Int(i64),
    Text(String),
}

fn params(values: &[Value]) -> Vec<Param> {
    values
        .iter()
        .map(|v| match v {
            Value::Int(i) => Param::Int(*i),
            Value::Text(t) => Param::Text(t.clone()),
        })
        .collect()
}

fn refs(params: &[Param]) -> Vec<&(dyn ToSql + Sync)> {
    params
        .iter()
        .map(|p| match p {
            Param::Int(i) => i as &(dyn ToSql + Sync),
            Param::Text(t) => t as &(dyn ToSql + Sync),
        })
        .collect()
}

fn row(r: &tokio_postgres::Row) -> Vec<Value> {
    (0..r.len())
        .map(|i| match *r.columns()[i].type_() {
            Type::INT8 => Value::Int(r.get::<_, Option<i64>>(i).unwrap_or(0)),
            Type::INT4 => Value::Int(i64::from(r.get::<_, Option<i32>>(i).unwrap_or(0))),
            _ => Value::Text(r.get::<_, Option<String>>(i).unwrap_or_default()),
        })
        .collect()
}

#[async_trait]
impl Db for PostgresDb {
    fn describe(&self) -> String {
        self.described.clone()
    }

    async fn execute(&self, sql: &str, values: &[Value]) -> Result<u64> {
        let p = params(values);
        let client = self.client().await?;
        client
            .execute(sql, &refs(&p))
            .await
            .map_err(|e| self.fail(e))
    }

    async fn query(&self, sql: &str, values: &[Value]) -> Result<Vec<Vec<Value>>> {
        let p = params(values);
        let client = self.client().await?;
        let rows = client
            .query(sql, &refs(&p))
            .await
            .map_err(|e| self.fail(e))?;
        Ok(rows.iter().map(row).collect())
    }

    async fn batch(&self, statements: &[Statement]) -> Result<Vec<u64>> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(|e| self.fail(e))?;
        let mut counts = Vec::with_capacity(statements.len());
        for (sql, values) in statements {
            let p = params(values);
            counts.push(
                tx.execute(*sql, &refs(&p))
                    .await
                    .map_err(|e| self.fail(e))?,
            );
        }
        tx.commit().await.map_err(|e| self.fail(e))?;
        Ok(counts)
    }

    async fn migrate(&self, migrations: &[Migration]) -> Result<()> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(|e| self.fail(e))?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
            .await
            .map_err(|e| self.fail(e))?;
        tx.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY, applied_at BIGINT NOT NULL)",
            &[],
        )
        .await
        .map_err(|e| self.fail(e))?;
        let applied: i64 = tx
            .query_one(
                "SELECT COALESCE(MAX(version), 0)::BIGINT FROM schema_migrations",
                &[],
            )
            .await
            .map_err(|e| self.fail(e))?
            .get(0);
        for m in migrations.iter().filter(|m| m.version > applied) {
            for s in m.statements {
                tx.execute(*s, &[]).await.map_err(|e| self.fail(e))?;
            }
            tx.execute(
                "INSERT INTO schema_migrations (version, applied_at) VALUES ($1, $2)",
                &[&m.version, &crate::now_ms()],
            )
            .await
            .map_err(|e| self.fail(e))?;
        }
        tx.commit().await.map_err(|e| self.fail(e))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn passwords_are_not_shown() {
        assert_eq!(
            super::redact("postgres://fn:secret@db:5432/fnhost"),
            "postgres://fn@db:5432/fnhost"
        );
        assert_eq!(
            super::redact("postgres://fn@db/fnhost"),
            "postgres://fn@db/fnhost"
        );
    }
}
