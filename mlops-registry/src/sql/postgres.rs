//! The shared backend: PostgreSQL, for a registry many machines use at once.

use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions, PgQueryResult};
use sqlx::{PgPool, Pool, Postgres, Transaction};

use super::SqlRegistry;
use super::sealed::{self, Migration};
use crate::error::Result;

const MIGRATIONS: &[Migration] = &[Migration {
    version: 1,
    sql: include_str!("../../migrations/postgres/0001_initial.sql"),
}];

/// A registry and endpoint directory in PostgreSQL.
///
/// Concurrent writers from any number of machines are safe: each write locks its model's
/// row, so version numbers stay consecutive and alias compare-and-set is exact.
pub type PostgresRegistry = SqlRegistry<PostgresDialect>;

/// PostgreSQL's part of the SQL registry: row locks order the writers, an advisory lock
/// the migrations.
#[derive(Debug, Clone)]
pub struct PostgresDialect {
    _private: (),
}

impl sealed::Dialect for PostgresDialect {
    type Db = Postgres;
    type WriteGuard = ();

    fn migrations(&self) -> &'static [Migration] {
        MIGRATIONS
    }

    /// Every write locks the rows it changes, so a plain transaction is enough.
    async fn begin_write(
        &self,
        pool: &Pool<Postgres>,
    ) -> Result<(Transaction<'static, Postgres>, ())> {
        Ok((pool.begin().await?, ()))
    }

    /// Two processes starting at once must not both apply a migration.
    async fn lock_for_migration(&self, tx: &mut Transaction<'static, Postgres>) -> Result<()> {
        sqlx::query("SELECT pg_advisory_xact_lock(7253431001)")
            .execute(&mut **tx)
            .await?;
        Ok(())
    }

    fn rows_affected(result: &PgQueryResult) -> u64 {
        result.rows_affected()
    }
}

impl SqlRegistry<PostgresDialect> {
    /// Connects to `url` (`postgres://user:password@host:port/database`) and brings the
    /// schema up to date. A database from a newer library is refused with
    /// [`crate::Error::SchemaTooNew`].
    pub async fn connect(url: &str) -> Result<Self> {
        let options: PgConnectOptions = url.parse()?;
        let pool = PgPoolOptions::new()
            .max_connections(16)
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(options)
            .await?;
        Self::with_pool(pool).await
    }

    /// Uses an existing pool (and brings the schema up to date). Its connections must keep
    /// PostgreSQL's default READ COMMITTED isolation: the writes wait on a model's row
    /// lock, which a stricter level turns into serialization errors.
    pub async fn with_pool(pool: PgPool) -> Result<Self> {
        let store = SqlRegistry {
            pool,
            dialect: PostgresDialect { _private: () },
        };
        store.migrate().await?;
        Ok(store)
    }
}
