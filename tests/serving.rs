//! The repository extension over a real registry (SQLite and files on disk): a client
//! loads `mlp@staging` or `mlp/1` over HTTP, the server downloads and verifies the version
//! and serves it by its registered name and version; the index lists what the registry
//! holds; unloads by alias stop the version the alias names.
#![cfg(all(feature = "registry", feature = "http"))]
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use mlops::core::testkit::{Golden, assert_close, testdata};
use mlops::core::{ModelFormat, Tensor};
use mlops::registry::{Change, Expect, NewVersion, Registry};
use mlops::runtime::protocol::{IndexEntry, ModelState, Protocol, Repository};
use mlops::runtime::{Code, ModelServer, ModelSpec, OrtOptions, OrtRuntime};
use mlops::serving::RegistryRepository;

async fn registry(dir: &std::path::Path) -> Registry {
    let registry = Registry::open(dir.join("registry")).await.unwrap();
    let by = Change::by("ana");
    for (path, alias) in [("mlp.onnx", "production"), ("mlflow_onnx", "staging")] {
        let v = registry
            .register("mlp", &testdata(path), NewVersion::new(), &by)
            .await
            .unwrap();
        registry
            .models()
            .set_alias("mlp", alias, v.version, Expect::Absent, &by, None)
            .await
            .unwrap();
    }
    registry
        .register("cnn", &testdata("cnn.onnx"), NewVersion::new(), &by)
        .await
        .unwrap();
    registry
}

fn entry(name: &str, version: u64, state: ModelState) -> IndexEntry {
    IndexEntry {
        name: name.into(),
        version: Some(version),
        state,
        reason: String::new(),
    }
}

fn infer_input() -> (Vec<Tensor>, Vec<Tensor>) {
    let golden = Golden::load("mlp").unwrap();
    (golden.inputs, golden.outputs)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loads_and_unloads_registered_versions_by_alias_and_number() {
    let dir = tempfile::tempdir().unwrap();
    let registry = registry(dir.path()).await;
    let ort = OrtRuntime::new(OrtOptions::default().with_intra_threads(1)).unwrap();
    let server = Arc::new(ModelServer::new().with_runtime(ModelFormat::Onnx, Arc::new(ort)));
    let repository: Arc<dyn Repository> = Arc::new(RegistryRepository::new(
        registry.clone(),
        dir.path().join("downloads"),
        ModelSpec::default(),
    ));
    let protocol = Protocol::new(server.clone()).with_repository(repository);

    // Every alias and every ready version, none loaded.
    use ModelState::{Ready, Unavailable};
    assert_eq!(
        protocol.repository_index(false).await.unwrap(),
        vec![
            entry("cnn/1", 1, Unavailable),
            entry("mlp/1", 1, Unavailable),
            entry("mlp/2", 2, Unavailable),
            entry("mlp@production", 1, Unavailable),
            entry("mlp@staging", 2, Unavailable),
        ]
    );

    // An alias loads the version it names, served by the registered name and number.
    assert_eq!(
        protocol.load("mlp@staging").await.unwrap(),
        vec![("mlp".to_owned(), 2)]
    );
    assert_eq!(server.models().get("mlp"), Some(&vec![2]));
    let (inputs, expected) = infer_input();
    let got = server.infer("mlp", Some(2), inputs.clone()).await.unwrap();
    assert_close(&got[0], &expected[0], 1e-5, 1e-4).unwrap();
    // Its files were verified into the download directory.
    assert!(dir.path().join("downloads/mlp/2").is_dir());
    // Served now: ready in the index, and the entries that name it are not listed again.
    assert_eq!(
        protocol.repository_index(false).await.unwrap(),
        vec![
            entry("mlp", 2, Ready),
            entry("cnn/1", 1, Unavailable),
            entry("mlp/1", 1, Unavailable),
            entry("mlp@production", 1, Unavailable),
        ]
    );

    // A number loads that version next to the first; a second load of the same version
    // serves the files already verified.
    assert_eq!(
        protocol.load("mlp/1").await.unwrap(),
        vec![("mlp".to_owned(), 1)]
    );
    assert_eq!(
        protocol.load("mlp@production").await.unwrap(),
        vec![("mlp".to_owned(), 1)]
    );
    assert_eq!(server.models().get("mlp"), Some(&vec![1, 2]));

    // Unloading by alias stops the version it names, and only that one.
    protocol.unload("mlp@staging").await.unwrap();
    assert_eq!(server.models().get("mlp"), Some(&vec![1]));
    let got = server.infer("mlp", None, inputs).await.unwrap();
    assert_close(&got[0], &expected[0], 1e-5, 1e-4).unwrap();
    protocol.unload("mlp").await.unwrap();
    assert!(server.models().is_empty());

    // What the registry does not hold is a not-found, naming it; a malformed name is the
    // request's fault.
    for name in ["bert", "mlp@canary", "mlp/9"] {
        let refused = protocol.load(name).await.unwrap_err();
        assert_eq!(refused.code, Code::NotFound, "{name}: {refused}");
    }
    let refused = protocol.load("../etc").await.unwrap_err();
    assert_eq!(refused.code, Code::InvalidArgument, "{refused}");
    let refused = protocol.unload("mlp@staging").await.unwrap_err();
    assert_eq!(refused.code, Code::NotFound, "{refused}");
    assert!(server.models().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loads_of_one_version_at_once_all_serve_it() {
    let dir = tempfile::tempdir().unwrap();
    let registry = registry(dir.path()).await;
    let ort = OrtRuntime::new(OrtOptions::default().with_intra_threads(1)).unwrap();
    let server = Arc::new(ModelServer::new().with_runtime(ModelFormat::Onnx, Arc::new(ort)));
    let repository: Arc<dyn Repository> = Arc::new(RegistryRepository::new(
        registry,
        dir.path().join("downloads"),
        ModelSpec::default(),
    ));
    let protocol = Arc::new(Protocol::new(server.clone()).with_repository(repository));
    // By alias and by number, the same version: one download, every load answered.
    let loads = ["mlp@staging", "mlp/2", "mlp@staging", "mlp/2"].map(|name| {
        let protocol = protocol.clone();
        tokio::spawn(async move { protocol.load(name).await })
    });
    for load in loads {
        assert_eq!(load.await.unwrap().unwrap(), vec![("mlp".to_owned(), 2)]);
    }
    assert_eq!(server.models().get("mlp"), Some(&vec![2]));
    let (inputs, expected) = infer_input();
    let got = server.infer("mlp", Some(2), inputs).await.unwrap();
    assert_close(&got[0], &expected[0], 1e-5, 1e-4).unwrap();
    // The version's directory holds its files and nothing half-written.
    let files: Vec<_> = std::fs::read_dir(dir.path().join("downloads/mlp/2"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert!(files.iter().all(|f| !f.ends_with(".part")), "{files:?}");
    server.shutdown();
}

#[cfg(feature = "mlflow")]
#[tokio::test]
async fn a_registry_that_cannot_be_reached_is_unavailable_not_a_server_fault() {
    // A port nothing listens on: the MLflow registry refuses the connection.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let registry = Registry::mlflow(&format!("http://127.0.0.1:{port}")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let server = Arc::new(ModelServer::new());
    let repository: Arc<dyn Repository> = Arc::new(RegistryRepository::new(
        registry,
        dir.path().join("downloads"),
        ModelSpec::default(),
    ));
    let protocol = Protocol::new(server.clone()).with_repository(repository);
    let refused = protocol.load("mlp@production").await.unwrap_err();
    assert_eq!(refused.code, Code::Unavailable, "{refused}");
    assert_eq!(refused.code.http_status(), 503);
    assert!(refused.message.contains("retrying may help"), "{refused}");
    let refused = protocol.repository_index(false).await.unwrap_err();
    assert_eq!(refused.code, Code::Unavailable, "{refused}");
    assert!(server.models().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn versions_loaded_are_announced_while_served() {
    use mlops::registry::Protocol as Wire;
    let dir = tempfile::tempdir().unwrap();
    let registry = registry(dir.path()).await;
    let ort = OrtRuntime::new(OrtOptions::default().with_intra_threads(1)).unwrap();
    let server = Arc::new(ModelServer::new().with_runtime(ModelFormat::Onnx, Arc::new(ort)));
    let repository = Arc::new(
        RegistryRepository::new(
            registry.clone(),
            dir.path().join("downloads"),
            ModelSpec::default(),
        )
        .with_announcements(
            [
                ("10.0.0.7:8000".to_owned(), Wire::OipHttp),
                ("10.0.0.7:8001".to_owned(), Wire::OipGrpc),
            ],
            std::time::Duration::from_secs(30),
        ),
    );
    let protocol = Protocol::new(server.clone()).with_repository(repository.clone());
    let served = |reference: &'static str| {
        let registry = registry.clone();
        async move {
            let mut found: Vec<_> = registry
                .endpoints_for(reference)
                .await
                .unwrap()
                .into_iter()
                .map(|e| (e.endpoint.address, e.endpoint.version))
                .collect();
            found.sort();
            found
        }
    };
    assert!(served("mlp").await.is_empty());

    // Loaded by alias: found by the alias, the number and the name, at both addresses.
    protocol.load("mlp@staging").await.unwrap();
    let both = vec![
        ("10.0.0.7:8000".to_owned(), Some(2)),
        ("10.0.0.7:8001".to_owned(), Some(2)),
    ];
    assert_eq!(served("mlp@staging").await, both);
    assert_eq!(served("mlp/2").await, both);
    assert!(served("mlp@production").await.is_empty());
    // A second load of the same version announces nothing more.
    protocol.load("mlp/2").await.unwrap();
    protocol.load("mlp/1").await.unwrap();
    assert_eq!(served("mlp").await.len(), 4);

    // Unloading a version withdraws its endpoints, and only its.
    protocol.unload("mlp@staging").await.unwrap();
    assert!(served("mlp/2").await.is_empty());
    assert_eq!(served("mlp@production").await.len(), 2);
    protocol.unload("mlp").await.unwrap();
    assert!(served("mlp").await.is_empty());

    // A version served by other means is announced once, and withdrawn by an unload
    // through the repository as well; a stopping server withdraws everything.
    let spec = ModelSpec::default().with_name("cnn").with_version(1);
    let cnn = registry
        .download("cnn/1", &dir.path().join("cnn"))
        .await
        .unwrap();
    server.load_path(&cnn.entry, spec).unwrap();
    repository.announce("cnn", 1).await.unwrap();
    repository.announce("cnn", 1).await.unwrap();
    assert_eq!(served("cnn/1").await.len(), 2);
    protocol.unload("cnn/1").await.unwrap();
    assert!(served("cnn").await.is_empty());
    protocol.load("mlp/1").await.unwrap();
    assert_eq!(served("mlp").await.len(), 2);
    repository.withdraw_all().await;
    assert!(served("mlp").await.is_empty());
    server.shutdown();
}
