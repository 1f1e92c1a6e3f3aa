//! Every metadata backend against the one conformance suite: in memory, SQLite (file and
//! in-memory), and PostgreSQL (feature `postgres`, against the server named by
//! `MLOPS_TEST_POSTGRES_URL`).
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use mlops_registry::testkit;
use mlops_registry::{InMemoryRegistry, ModelRegistry, SqliteRegistry};

#[tokio::test]
async fn in_memory() {
    let r = Arc::new(InMemoryRegistry::new());
    testkit::model_registry(r.as_ref()).await;
    testkit::endpoint_directory(r.as_ref()).await;
    testkit::concurrent_versions(r.clone(), 1000).await;
    testkit::concurrent_alias_moves(r, 20).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_file() {
    let dir = tempfile::tempdir().unwrap();
    let r = Arc::new(
        SqliteRegistry::open(dir.path().join("registry.db"))
            .await
            .unwrap(),
    );
    testkit::model_registry(r.as_ref()).await;
    testkit::endpoint_directory(r.as_ref()).await;
    testkit::concurrent_versions(r.clone(), 1000).await;
    testkit::concurrent_alias_moves(r, 20).await;
}

#[tokio::test]
async fn sqlite_in_memory() {
    let r = Arc::new(SqliteRegistry::open_in_memory().await.unwrap());
    testkit::model_registry(r.as_ref()).await;
    testkit::endpoint_directory(r.as_ref()).await;
}

/// Two handles on one file (as two processes would have): one's writes are the other's
/// reads, and concurrent writers through both still get consecutive numbers.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_two_handles_share_one_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("registry.db");
    let a = SqliteRegistry::open(&path).await.unwrap();
    let b = SqliteRegistry::open(&path).await.unwrap();
    let change = mlops_registry::Change::by("t");
    let mut tasks = Vec::new();
    for i in 0..100 {
        let r = if i % 2 == 0 { a.clone() } else { b.clone() };
        let change = change.clone();
        tasks.push(tokio::spawn(async move {
            r.create_version("shared", mlops_registry::NewVersion::new(), &change)
                .await
                .unwrap()
                .version
        }));
    }
    let mut got = Vec::new();
    for t in tasks {
        got.push(t.await.unwrap());
    }
    got.sort_unstable();
    assert_eq!(got, (1..=100).collect::<Vec<_>>());
    assert_eq!(b.get_model("shared").await.unwrap().latest_version, 100);
}

#[cfg(feature = "postgres")]
mod postgres {
    use super::*;
    use mlops_registry::PostgresRegistry;

    /// A fresh database per test, so the schema is created from nothing each time.
    async fn fresh() -> Option<(PostgresRegistry, String, String)> {
        let Ok(url) = std::env::var("MLOPS_TEST_POSTGRES_URL") else {
            if std::env::var_os("CI").is_some() {
                panic!("MLOPS_TEST_POSTGRES_URL is not set: scripts/test.sh starts PostgreSQL");
            }
            eprintln!(
                "skipped: MLOPS_TEST_POSTGRES_URL is not set (scripts/postgres.sh starts a server)"
            );
            return None;
        };
        let admin = sqlx::PgPool::connect(&url).await.unwrap();
        let db = mlops_registry::testkit::unique_name("mlops_t").replace('-', "_");
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {db}")))
            .execute(&admin)
            .await
            .unwrap();
        let (base, _) = url.rsplit_once('/').unwrap();
        let r = PostgresRegistry::connect(&format!("{base}/{db}"))
            .await
            .unwrap();
        Some((r, url, db))
    }

    async fn drop_db(r: PostgresRegistry, url: &str, db: &str) {
        r.close().await;
        let admin = sqlx::PgPool::connect(url).await.unwrap();
        sqlx::query(sqlx::AssertSqlSafe(format!("DROP DATABASE {db}")))
            .execute(&admin)
            .await
            .unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn postgres_conformance() {
        let Some((r, url, db)) = fresh().await else {
            return;
        };
        let shared = Arc::new(r.clone());
        testkit::model_registry(shared.as_ref()).await;
        testkit::endpoint_directory(shared.as_ref()).await;
        testkit::concurrent_versions(shared.clone() as Arc<dyn ModelRegistry>, 1000).await;
        testkit::concurrent_alias_moves(shared, 20).await;
        drop_db(r, &url, &db).await;
    }

    #[tokio::test]
    async fn postgres_refuses_a_newer_schema() {
        let Some((r, url, db)) = fresh().await else {
            return;
        };
        sqlx::query("INSERT INTO mlops_schema (version) VALUES (999)")
            .execute(r.pool())
            .await
            .unwrap();
        let (base, _) = url.rsplit_once('/').unwrap();
        let err = PostgresRegistry::connect(&format!("{base}/{db}"))
            .await
            .unwrap_err();
        assert!(
            matches!(
                err,
                mlops_registry::Error::SchemaTooNew {
                    found: 999,
                    supported: 1
                }
            ),
            "{err}"
        );
        drop_db(r, &url, &db).await;
    }
}

#[tokio::test]
async fn sqlite_refuses_a_newer_schema_and_reopens_an_older_one() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("registry.db");
    let r = SqliteRegistry::open(&path).await.unwrap();
    r.create_version(
        "kept",
        mlops_registry::NewVersion::new().ready(),
        &mlops_registry::Change::by("t"),
    )
    .await
    .unwrap();
    r.close().await;
    // Reopening the same schema changes nothing.
    let r = SqliteRegistry::open(&path).await.unwrap();
    assert_eq!(r.get_version("kept", 1).await.unwrap().version, 1);
    sqlx::query("INSERT INTO mlops_schema (version) VALUES (2)")
        .execute(r.pool())
        .await
        .unwrap();
    r.close().await;
    let err = SqliteRegistry::open(&path).await.unwrap_err();
    assert!(
        matches!(
            err,
            mlops_registry::Error::SchemaTooNew {
                found: 2,
                supported: 1
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("upgrade the library"), "{err}");
}
