//! The shared backend: PostgreSQL, for a registry many machines use at once.

use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{PgPool, Postgres, Transaction};

use super::Migration;
use crate::error::Result;

type Db = Postgres;
type Store = PostgresRegistry;

const MIGRATIONS: &[Migration] = &[Migration {
    version: 1,
    sql: include_str!("../../migrations/postgres/0001_initial.sql"),
}];

/// Aggregates a version's aliases into one comma-separated string.
const ALIAS_AGG: &str = "string_agg(alias, ',' ORDER BY alias)";

/// A registry and endpoint directory in PostgreSQL.
///
/// Concurrent writers from any number of machines are safe: each write locks its model's
/// row, so version numbers stay consecutive and alias compare-and-set is exact.
#[derive(Debug, Clone)]
pub struct PostgresRegistry {
    pool: PgPool,
}

impl PostgresRegistry {
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

    /// Uses an existing pool (and brings the schema up to date).
    pub async fn with_pool(pool: PgPool) -> Result<Self> {
        let store = PostgresRegistry { pool };
        imp::migrate(&store).await?;
        Ok(store)
    }

    /// The connection pool.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Closes every connection.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    async fn begin_write(&self) -> Result<(Transaction<'static, Db>, WriteGuard)> {
        Ok((self.pool.begin().await?, None))
    }
}

type WriteGuard = Option<()>;

/// Two processes starting at once must not both apply a migration.
async fn lock_for_migration(tx: &mut Transaction<'static, Db>) -> Result<()> {
    sqlx::query("SELECT pg_advisory_xact_lock(7253431001)")
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// PostgreSQL resolves through the pool like every other read.
fn resolve_inline(
    _store: &Store,
    _reference: &mlops_core::ModelRef,
) -> Option<Option<crate::model::ModelVersion>> {
    None
}

fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db) if db.is_unique_violation())
}

// The shared queries, compiled with this database's types.
#[allow(clippy::duplicate_mod)]
#[path = "imp.rs"]
mod imp;
