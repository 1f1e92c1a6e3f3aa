//! The SQL backends: SQLite (embedded, the default) and PostgreSQL (feature `postgres`).
//!
//! Both are one implementation, [`SqlRegistry`], generic over a [`Dialect`]: the queries,
//! the schema's shape, the contract checks and the audit log are written once in
//! `queries.rs`; a dialect supplies only what differs between the databases. Migrations
//! live in `migrations/<database>/` and are embedded in the binary; the schema version is
//! kept in the `mlops_schema` table.

use sqlx::Pool;

mod queries;
pub mod sqlite;

#[cfg(feature = "postgres")]
pub mod postgres;

/// A database the SQL registry runs on: SQLite or PostgreSQL. Sealed.
///
/// The contract between the shared queries (`queries.rs`) and each database. The
/// queries assume of the database's SQL:
/// - placeholders are `$1`, `$2`…, one may appear more than once in a statement, and
///   `$n IS NULL` works on a bound `NULL` (sqlx sends typed parameters);
/// - `INSERT … ON CONFLICT … DO NOTHING | DO UPDATE`, `UPDATE … RETURNING` and
///   `string_agg(x, ',')` behave as in PostgreSQL. SQLite has them all since
///   3.44 (the bundled library is newer), with one difference the queries respect: an
///   `INSERT … SELECT … ON CONFLICT` needs a `WHERE` in its `SELECT`, or SQLite reads the
///   `ON` as a join's;
/// - each dialect's migrations create the same tables and columns
///   (`migrations/{sqlite,postgres}/0001_initial.sql`, which differ only in how
///   `audit_log.id` is generated), with integers as 64-bit, text as UTF-8,
///   `DOUBLE PRECISION` as `f64`, and `audit_log.id` increasing with each insert. The
///   DDL is transactional: a migration runs as one script inside the write transaction;
/// - `UPDATE registered_models … WHERE name = $1` inside a write transaction keeps every
///   other writer of that model out until the transaction ends, and what the transaction
///   reads after it is current: PostgreSQL by the row lock under its default READ
///   COMMITTED isolation (a pool set to a stricter level turns those waits into
///   serialization errors), SQLite because a write transaction excludes every other
///   writer. Version numbers and alias compare-and-set rest on it;
/// - a unique-key violation is a `sqlx::Error::Database` whose `is_unique_violation()`
///   is true (an alias written concurrently is reported as a conflict from it).
///
/// What each dialect supplies besides is listed, for the crate, on its sealed part: its
/// migrations, how a write transaction begins and what it holds until it ends, the lock
/// that keeps two processes from migrating at once, rows affected, and optionally a way to
/// resolve a reference on the calling thread.
pub trait Dialect: sealed::Dialect {}

impl<D: sealed::Dialect> Dialect for D {}

pub(crate) mod sealed {
    use std::fmt;
    use std::future::Future;

    use sqlx::{Database, Pool, Transaction};

    use crate::error::Result;

    /// A schema migration: its version and DDL.
    #[derive(Debug)]
    pub struct Migration {
        pub(crate) version: i64,
        pub(crate) sql: &'static str,
    }

    /// The dialect's part, callable inside the crate only.
    pub trait Dialect: Clone + fmt::Debug + Send + Sync + 'static {
        /// The sqlx database.
        type Db: Database;
        /// What a write holds beside its transaction until it ends.
        type WriteGuard: Send;

        /// The schema migrations, oldest first, the last at [`super::SCHEMA_VERSION`].
        fn migrations(&self) -> &'static [Migration];

        /// Begins a transaction that will write. It may wait for other writers; it must
        /// not fail later for having started as a reader (SQLite's lock upgrade).
        fn begin_write(
            &self,
            pool: &Pool<Self::Db>,
        ) -> impl Future<Output = Result<(Transaction<'static, Self::Db>, Self::WriteGuard)>> + Send;

        /// Within the migration's write transaction: keeps other processes from
        /// migrating the same database at the same time.
        fn lock_for_migration(
            &self,
            tx: &mut Transaction<'static, Self::Db>,
        ) -> impl Future<Output = Result<()>> + Send;

        /// Rows an `INSERT`, `UPDATE` or `DELETE` touched (sqlx has no common method).
        fn rows_affected(result: &<Self::Db as Database>::QueryResult) -> u64;

        /// Resolves a reference on the calling thread, which is an async executor's: it
        /// must never wait (on a busy database it gives up). `Some(v)` is the answer;
        /// anything else, a miss included, is asked again through the pool, which names
        /// what is missing. The default always goes through the pool.
        fn resolve_inline(
            &self,
            _reference: &mlops_core::ModelRef,
        ) -> Option<crate::model::ModelVersion> {
            None
        }
    }
}

/// A model registry and endpoint directory in a SQL database: the one implementation of
/// [`crate::ModelRegistry`] and [`crate::EndpointDirectory`] that
/// [`SqliteRegistry`](crate::SqliteRegistry) and `PostgresRegistry` share.
#[derive(Debug)]
pub struct SqlRegistry<D: Dialect> {
    pool: Pool<D::Db>,
    dialect: D,
}

// By hand: a derive would ask the database marker type (`sqlx::Sqlite`) to be `Clone`.
impl<D: Dialect> Clone for SqlRegistry<D> {
    fn clone(&self) -> Self {
        SqlRegistry {
            pool: self.pool.clone(),
            dialect: self.dialect.clone(),
        }
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

/// The highest schema version this build understands.
pub(crate) const SCHEMA_VERSION: i64 = 1;
