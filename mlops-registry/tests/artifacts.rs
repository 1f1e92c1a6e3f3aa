//! Every artifact store against the one conformance suite: memory, local disk, and S3
//! (feature `s3`, against the S3-compatible server named by `MLOPS_TEST_S3_ENDPOINT`);
//! HDFS where `MLOPS_TEST_HDFS_URI` names a cluster.
#![allow(clippy::unwrap_used)]

use mlops_registry::{OpendalStore, testkit};

#[tokio::test]
async fn memory_store() {
    testkit::artifact_store(&OpendalStore::memory().unwrap()).await;
}

#[tokio::test]
async fn local_store() {
    let dir = tempfile::tempdir().unwrap();
    let store = OpendalStore::local(dir.path()).unwrap();
    testkit::artifact_store(&store).await;
    // Nothing is left in the temporary area after the failed write.
    assert_eq!(
        std::fs::read_dir(dir.path().join(".tmp")).unwrap().count(),
        0
    );
}

#[tokio::test]
async fn local_store_clears_stale_leftovers_of_killed_writers_only() {
    let dir = tempfile::tempdir().unwrap();
    let tmp = dir.path().join(".tmp");
    std::fs::create_dir_all(&tmp).unwrap();
    std::fs::write(tmp.join("stale"), b"partial").unwrap();
    let two_hours_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(7200);
    std::fs::File::options()
        .write(true)
        .open(tmp.join("stale"))
        .unwrap()
        .set_modified(two_hours_ago)
        .unwrap();
    // Another process's file in progress: recent, kept.
    std::fs::write(tmp.join("in-progress"), b"partial").unwrap();
    let _store = OpendalStore::local(dir.path()).unwrap();
    let left: Vec<_> = std::fs::read_dir(&tmp)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(left, ["in-progress"]);
}

#[tokio::test]
async fn store_uris() {
    let dir = tempfile::tempdir().unwrap();
    let uri = format!("file://{}", dir.path().display());
    let store = OpendalStore::from_uri(&uri).unwrap();
    assert!(mlops_registry::ArtifactStore::uri(&store).starts_with("file:///"));
    assert!(OpendalStore::from_uri("memory://").is_ok());
    let err = OpendalStore::from_uri("ftp://x/y").unwrap_err();
    assert!(err.to_string().contains("unknown scheme 'ftp'"), "{err}");
    #[cfg(not(feature = "s3"))]
    assert!(matches!(
        OpendalStore::from_uri("s3://b/p"),
        Err(mlops_registry::Error::NotCompiled(_))
    ));
    #[cfg(not(feature = "hdfs"))]
    assert!(matches!(
        OpendalStore::from_uri("hdfs://nn:8020/p"),
        Err(mlops_registry::Error::NotCompiled(_))
    ));
}

#[cfg(feature = "s3")]
#[tokio::test]
async fn s3_store() {
    let Ok(endpoint) = std::env::var("MLOPS_TEST_S3_ENDPOINT") else {
        if std::env::var_os("CI").is_some() {
            panic!("MLOPS_TEST_S3_ENDPOINT is not set: scripts/test.sh starts the S3 server");
        }
        eprintln!("skipped: MLOPS_TEST_S3_ENDPOINT is not set (scripts/s3.sh starts a server)");
        return;
    };
    let uri = format!(
        "s3://mlops-test/{}?endpoint={endpoint}&region=us-east-1&access_key_id=test&secret_access_key=test",
        testkit::unique_name("run")
    );
    let store = OpendalStore::from_uri(&uri).unwrap();
    testkit::artifact_store(&store).await;
    let err = OpendalStore::from_uri("s3://mlops-test/x?colour=blue").unwrap_err();
    assert!(
        err.to_string().contains("unknown S3 parameter 'colour'"),
        "{err}"
    );
}

#[cfg(feature = "hdfs")]
#[tokio::test]
async fn hdfs_store() {
    let Ok(uri) = std::env::var("MLOPS_TEST_HDFS_URI") else {
        // No HDFS cluster can be installed on the CI machine; the client is built and
        // configured, and the suite runs where a cluster is named.
        assert!(OpendalStore::from_uri("hdfs://127.0.0.1:8020/models").is_ok());
        eprintln!("skipped: MLOPS_TEST_HDFS_URI names no HDFS cluster");
        return;
    };
    testkit::artifact_store(&OpendalStore::from_uri(&uri).unwrap()).await;
}
