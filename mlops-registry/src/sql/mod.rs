//! The SQL backends: SQLite (embedded, the default) and PostgreSQL (feature `postgres`).
//!
//! Both are one implementation, [`SqlRegistry`], generic over a [`Dialect`]: the queries,
//! the schema's shape, the contract checks and the audit log are written once in
//! `queries.rs`; a dialect supplies only what differs between the databases. Migrations
//! live in `migrations/<database>/` and are embedded in the binary; the schema version is
//! kept in the `mlops_schema` table.

use std::fmt;
use std::future::Future;
use std::pin::Pin;

use sqlx::{Database, Pool, Transaction};

use crate::error::Result;

mod queries;
pub mod sqlite;

#[cfg(feature = "postgres")]
pub mod postgres;

/// A boxed future, as the dialect's asynchronous parts return.
pub type DialectFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T>> + Send + 'a>>;

/// What a database gives the shared SQL registry: the contract between `queries.rs`
/// and each backend. Sealed: SQLite and PostgreSQL are the dialects.
///
/// The shared queries assume of every dialect's SQL:
/// - placeholders are `$1`, `$2`…, and `INSERT … ON CONFLICT … DO NOTHING | DO UPDATE`,
///   `UPDATE … RETURNING` and `string_agg(x, ',' ORDER BY x)` behave as in PostgreSQL
///   (SQLite has all of them since 3.44; the bundled library is newer);
/// - the tables and columns of `migrations/sqlite/0001_initial.sql`, with integers as
///   64-bit, text as UTF-8, `DOUBLE PRECISION` as `f64`, and the audit log's `id`
///   increasing with each insert;
/// - `UPDATE registered_models … WHERE name = $1` inside a write transaction keeps every
///   other writer of that model out until the transaction ends: PostgreSQL by the row
///   lock it takes, SQLite because a write transaction excludes all other writers. Version
///   numbers and alias compare-and-set rest on it.
///
/// And of the dialect itself, the items below.
pub trait Dialect: sealed::Sealed + Clone + fmt::Debug + Send + Sync + 'static {
    /// The sqlx database.
    type Db: Database;
    /// What a write holds beside its transaction until it ends.
    type WriteGuard: Send;

    /// The schema migrations, oldest first, the last at [`SCHEMA_VERSION`].
    fn migrations(&self) -> &'static [Migration];

    /// Begins a transaction that will write. It may wait for other writers; it must
    /// not fail later for having started as a reader (SQLite's lock upgrade).
    fn begin_write<'a>(
        &'a self,
        pool: &'a Pool<Self::Db>,
    ) -> DialectFuture<'a, (Transaction<'static, Self::Db>, Self::WriteGuard)>;

    /// Within the migration's write transaction: keeps other processes from migrating
    /// the same database at the same time.
    fn lock_for_migration<'a>(
        &'a self,
        tx: &'a mut Transaction<'static, Self::Db>,
    ) -> DialectFuture<'a, ()>;

    /// Rows an `INSERT`, `UPDATE` or `DELETE` touched (sqlx has no common method).
    fn rows_affected(result: &<Self::Db as Database>::QueryResult) -> u64;

    /// Resolves a reference without the pool, on the calling thread: `Some(Some(v))`
    /// when found, `Some(None)` on a miss, `None` to go through the pool. The default
    /// always goes through the pool.
    fn resolve_inline(
        &self,
        reference: &mlops_core::ModelRef,
    ) -> Option<Option<crate::model::ModelVersion>> {
        let _ = reference;
        None
    }
}

mod sealed {
    pub trait Sealed {}
}

/// A model registry and endpoint directory in a SQL database: the one implementation of
/// [`crate::ModelRegistry`] and [`crate::EndpointDirectory`] that
/// [`SqliteRegistry`](crate::SqliteRegistry) and `PostgresRegistry` share.
pub struct SqlRegistry<D: Dialect> {
    pool: Pool<D::Db>,
    dialect: D,
}

// By hand: a derive would ask the database marker type itself to be `Clone`/`Debug`.
impl<D: Dialect> Clone for SqlRegistry<D> {
    fn clone(&self) -> Self {
        SqlRegistry {
            pool: self.pool.clone(),
            dialect: self.dialect.clone(),
        }
    }
}

impl<D: Dialect> fmt::Debug for SqlRegistry<D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqlRegistry")
            .field("pool", &self.pool)
            .field("dialect", &self.dialect)
            .finish()
    }
}

impl<D: Dialect> SqlRegistry<D> {
    /// The connection pool, for applications that keep their own tables beside ours.
    pub fn pool(&self) -> &Pool<D::Db> {
        &self.pool
    }

    /// Closes every connection.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// A schema migration: its version and DDL.
#[derive(Debug)]
pub struct Migration {
    pub(crate) version: i64,
    pub(crate) sql: &'static str,
}

/// The highest schema version this build understands.
pub(crate) const SCHEMA_VERSION: i64 = 1;
