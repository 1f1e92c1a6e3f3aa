//! The embedded backend: SQLite in one file, in WAL mode.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Sqlite, SqlitePool, Transaction};

use super::Migration;
use crate::error::Result;

type Db = Sqlite;
type Store = SqliteRegistry;

const MIGRATIONS: &[Migration] = &[Migration {
    version: 1,
    sql: include_str!("../../migrations/sqlite/0001_initial.sql"),
}];

/// Aggregates a version's aliases into one comma-separated string.
const ALIAS_AGG: &str = "group_concat(alias, ',')";

/// A registry and endpoint directory in an SQLite database file.
///
/// WAL mode with `synchronous = NORMAL`: a crashed process loses nothing it committed;
/// a power cut may lose the last transactions but never corrupts the file. Several
/// processes may open the same file; writers wait for each other up to the busy timeout.
#[derive(Debug, Clone)]
pub struct SqliteRegistry {
    pool: SqlitePool,
    // In-process writers queue here instead of in SQLite's sleeping busy handler.
    write_lock: std::sync::Arc<tokio::sync::Mutex<()>>,
}

impl SqliteRegistry {
    /// Opens (creating if needed) the database file at `path`, and brings its schema up
    /// to date. A database from a newer library is refused with [`crate::Error::SchemaTooNew`].
    pub async fn open(path: impl AsRef<Path>) -> Result<Self> {
        let options = SqliteConnectOptions::new()
            .filename(path.as_ref())
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10));
        Self::with_options(options).await
    }

    /// A private in-memory SQLite database: for tests that want SQL semantics without
    /// a file.
    pub async fn open_in_memory() -> Result<Self> {
        let options = SqliteConnectOptions::from_str("sqlite::memory:")?.foreign_keys(true);
        // One connection: each in-memory connection would be a separate database.
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_with(options)
            .await?;
        Self::with_pool(pool).await
    }

    async fn with_options(options: SqliteConnectOptions) -> Result<Self> {
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options)
            .await?;
        Self::with_pool(pool).await
    }

    async fn with_pool(pool: SqlitePool) -> Result<Self> {
        let store = SqliteRegistry {
            pool,
            write_lock: Default::default(),
        };
        imp::migrate(&store).await?;
        Ok(store)
    }

    /// The connection pool, for applications that keep their own tables beside ours.
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// Closes every connection.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    async fn begin_write(&self) -> Result<(Transaction<'static, Db>, WriteGuard)> {
        let guard = self.write_lock.clone().lock_owned().await;
        // IMMEDIATE takes the write lock now, so a transaction never fails half-way on a
        // lock upgrade; other processes' writers wait up to the busy timeout.
        let tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        Ok((tx, Some(guard)))
    }
}

type WriteGuard = Option<tokio::sync::OwnedMutexGuard<()>>;

/// Serialises migrations between processes: BEGIN IMMEDIATE already holds the lock.
async fn lock_for_migration(_tx: &mut Transaction<'static, Db>) -> Result<()> {
    Ok(())
}

fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db) if db.is_unique_violation())
}


#[path = "imp.rs"]
mod imp;
