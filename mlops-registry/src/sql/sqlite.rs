//! The embedded backend: SQLite in one file, in WAL mode.

use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteQueryResult,
    SqliteSynchronous,
};
use sqlx::{Pool, Sqlite, SqlitePool, Transaction};

use super::sealed::{self, Migration};
use super::{SqlRegistry, queries};
use crate::error::Result;

const MIGRATIONS: &[Migration] = &[Migration {
    version: 1,
    sql: include_str!("../../migrations/sqlite/0001_initial.sql"),
}];

/// A registry and endpoint directory in an SQLite database file.
///
/// WAL mode with `synchronous = NORMAL`: a crashed process loses nothing it committed;
/// a power cut may lose the last transactions but never corrupts the file. Several
/// processes may open the same file; writers wait for each other up to the busy timeout.
pub type SqliteRegistry = SqlRegistry<SqliteDialect>;

/// SQLite's part of the SQL registry: writers queued in the process, read-only
/// connections for resolving on the calling thread.
#[derive(Debug, Clone)]
pub struct SqliteDialect {
    readers: Option<Arc<InlineReaders>>,
    // In-process writers queue here instead of in SQLite's sleeping busy handler.
    write_lock: Arc<tokio::sync::Mutex<()>>,
}

impl SqliteDialect {
    fn new(readers: Option<InlineReaders>) -> Self {
        SqliteDialect {
            readers: readers.map(Arc::new),
            write_lock: Arc::default(),
        }
    }
}

impl sealed::Dialect for SqliteDialect {
    type Db = Sqlite;
    type WriteGuard = tokio::sync::OwnedMutexGuard<()>;

    fn migrations(&self) -> &'static [Migration] {
        MIGRATIONS
    }

    async fn begin_write(
        &self,
        pool: &Pool<Sqlite>,
    ) -> Result<(Transaction<'static, Sqlite>, Self::WriteGuard)> {
        let guard = self.write_lock.clone().lock_owned().await;
        // IMMEDIATE takes the write lock now, so a transaction never fails half-way on a
        // lock upgrade; other processes' writers wait up to the busy timeout.
        let tx = pool.begin_with("BEGIN IMMEDIATE").await?;
        Ok((tx, guard))
    }

    /// BEGIN IMMEDIATE already holds the database's write lock.
    async fn lock_for_migration(&self, _tx: &mut Transaction<'static, Sqlite>) -> Result<()> {
        Ok(())
    }

    fn rows_affected(result: &SqliteQueryResult) -> u64 {
        result.rows_affected()
    }

    fn resolve_inline(
        &self,
        reference: &mlops_core::ModelRef,
    ) -> Option<crate::model::ModelVersion> {
        resolve_inline(self.readers.as_deref()?, reference).flatten()
    }
}

impl SqlRegistry<SqliteDialect> {
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
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            // A local file does not drop connections: skip the ping before each use.
            .test_before_acquire(false)
            .connect_with(options)
            .await?;
        let readers = InlineReaders {
            path: path.as_ref().to_path_buf(),
            idle: std::sync::Mutex::new(Vec::new()),
        };
        Self::with_dialect(pool, SqliteDialect::new(Some(readers))).await
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
        Self::with_dialect(pool, SqliteDialect::new(None)).await
    }

    async fn with_dialect(pool: SqlitePool, dialect: SqliteDialect) -> Result<Self> {
        let store = SqlRegistry { pool, dialect };
        store.migrate().await?;
        Ok(store)
    }
}

/// Read-only connections for [`SqliteRegistry`]'s `resolve`, used on the calling thread.
///
/// Resolving a reference is the registry's hot read (every deployment and client asks
/// it). Through the pool it costs a hop to the connection's worker thread and back, which
/// is most of its time; inline it is one indexed lookup. In WAL mode a reader never waits
/// for writers, so the call does not block on them.
#[derive(Debug)]
struct InlineReaders {
    path: std::path::PathBuf,
    idle: std::sync::Mutex<Vec<rusqlite::Connection>>,
}

const MAX_IDLE_READERS: usize = 4;

impl InlineReaders {
    fn with<T>(&self, f: impl FnOnce(&rusqlite::Connection) -> rusqlite::Result<T>) -> Option<T> {
        let taken = self.idle.lock().ok().and_then(|mut idle| idle.pop());
        let conn = match taken {
            Some(c) => c,
            None => {
                let flags = rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY
                    | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX;
                let c = rusqlite::Connection::open_with_flags(&self.path, flags).ok()?;
                // Never wait on the executor: a busy database sends the caller to the pool.
                c.busy_timeout(Duration::ZERO).ok()?;
                c
            }
        };
        let result = f(&conn).ok();
        if let Ok(mut idle) = self.idle.lock()
            && idle.len() < MAX_IDLE_READERS
        {
            idle.push(conn);
        }
        result
    }
}

/// `Some(Some(version))` when found inline, `Some(None)` on a miss, `None` when the
/// inline readers could not answer (a busy database, say).
fn resolve_inline(
    readers: &InlineReaders,
    reference: &mlops_core::ModelRef,
) -> Option<Option<crate::model::ModelVersion>> {
    use mlops_core::VersionSelector;
    let name = reference.name.as_str();
    readers.with(|conn| {
        let decode = |row: &rusqlite::Row<'_>| Ok(decode_inline(row));
        let found = match &reference.selector {
            VersionSelector::Version(v) => {
                let v = i64::try_from(*v).unwrap_or(i64::MAX);
                conn.prepare_cached(queries::VERSION_BY_NUMBER.as_str())?
                    .query_row(rusqlite::params![name, v], decode)
            }
            VersionSelector::Alias(alias) => conn
                .prepare_cached(queries::VERSION_BY_ALIAS.as_str())?
                .query_row(rusqlite::params![name, alias], decode),
            VersionSelector::Latest => conn
                .prepare_cached(queries::VERSION_LATEST.as_str())?
                .query_row(rusqlite::params![name], decode),
        };
        match found {
            Ok(v) => Ok(v),
            Err(rusqlite::Error::QueryReturnedNoRows) => Ok(None),
            Err(e) => Err(e),
        }
    })
}

/// The pool path's `decode_version` over a rusqlite row; `None` on anything unexpected, so
/// that the pool path reports it properly.
fn decode_inline(row: &rusqlite::Row<'_>) -> Option<crate::model::ModelVersion> {
    use crate::model::{ModelVersion, VersionStatus};
    use crate::time::from_micros;
    let text = |i: usize| row.get::<_, String>(i).ok();
    let opt_text = |i: usize| row.get::<_, Option<String>>(i).ok();
    let aliases: Option<String> = opt_text(14)?;
    let mut aliases: Vec<String> = aliases
        .map(|a| a.split(',').map(str::to_owned).collect())
        .unwrap_or_default();
    aliases.sort();
    Some(ModelVersion {
        name: text(0)?,
        version: u64::try_from(row.get::<_, i64>(1).ok()?).ok()?,
        status: VersionStatus::parse(&text(2)?).ok()?,
        status_message: opt_text(3)?,
        description: opt_text(4)?,
        source: opt_text(5)?,
        manifest: queries::opt_json(opt_text(6)?, "manifest").ok()?,
        metrics: queries::from_json(&text(7)?, "metrics").ok()?,
        params: queries::from_json(&text(8)?, "params").ok()?,
        tags: queries::from_json(&text(9)?, "tags").ok()?,
        lineage: queries::from_json(&text(10)?, "lineage").ok()?,
        validation: queries::opt_json(opt_text(11)?, "validation report").ok()?,
        created_at: from_micros(row.get(12).ok()?),
        updated_at: from_micros(row.get(13).ok()?),
        aliases,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::model::{Change, Expect, NewVersion};
    use crate::registry::ModelRegistry;
    use mlops_core::ModelRef;

    /// The inline path answers (rather than falling back to the pool) and agrees with the
    /// pool path, including for another handle's latest writes.
    #[tokio::test]
    async fn inline_resolution_answers_and_agrees_with_the_pool() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.db");
        let reader = SqliteRegistry::open(&path).await.unwrap();
        let writer = SqliteRegistry::open(&path).await.unwrap();
        let by = Change::by("t");
        for _ in 0..3 {
            let new = NewVersion::new()
                .with_metric("m", 0.1 + 0.2)
                .with_tag("k", "v")
                .ready();
            writer.create_version("m", new, &by).await.unwrap();
        }
        writer
            .set_alias("m", "prod", 2, Expect::Absent, &by, None)
            .await
            .unwrap();
        writer
            .set_alias("m", "canary", 2, Expect::Absent, &by, None)
            .await
            .unwrap();
        for r in [
            ModelRef::alias("m", "prod"),
            ModelRef::version("m", 3),
            ModelRef::latest("m"),
        ] {
            let found = inline(&reader, &r).unwrap().unwrap();
            let pooled = fetch_pooled(&reader, found.version).await;
            assert_eq!(found, pooled, "{r}");
        }
        let v = inline(&reader, &ModelRef::alias("m", "prod"))
            .unwrap()
            .unwrap();
        assert_eq!(
            (v.version, v.aliases),
            (2, vec!["canary".to_owned(), "prod".to_owned()])
        );
        // A move by the other handle is seen at once.
        writer
            .set_alias("m", "prod", 3, Expect::Version(2), &by, None)
            .await
            .unwrap();
        assert_eq!(
            inline(&reader, &ModelRef::alias("m", "prod"))
                .unwrap()
                .unwrap()
                .version,
            3
        );
        // A miss is left to the pool path, which names what is missing.
        assert_eq!(inline(&reader, &ModelRef::alias("m", "nope")), Some(None));
        let err = reader
            .resolve(&ModelRef::alias("m", "nope"))
            .await
            .unwrap_err();
        assert!(err.to_string().contains("alias 'm@nope'"), "{err}");
    }

    fn inline(
        store: &SqliteRegistry,
        reference: &ModelRef,
    ) -> Option<Option<crate::model::ModelVersion>> {
        resolve_inline(store.dialect.readers.as_deref().unwrap(), reference)
    }

    async fn fetch_pooled(store: &SqliteRegistry, version: u64) -> crate::model::ModelVersion {
        let pool_only = SqliteRegistry {
            pool: store.pool.clone(),
            dialect: SqliteDialect {
                readers: None,
                ..store.dialect.clone()
            },
        };
        pool_only
            .resolve(&ModelRef::version("m", version))
            .await
            .unwrap()
    }
}
