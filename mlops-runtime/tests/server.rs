//! The model server over real ONNX models: routing by name and version, hot swap under
//! load, unload, statistics.

// Test helpers may panic: a panic is a failed test.
#![allow(clippy::unwrap_used)]
#![cfg(feature = "ort")]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use mlops_core::ModelFormat;
use mlops_core::testkit::{Golden, assert_close, testdata};
use mlops_runtime::{BatcherConfig, Error, ModelServer, ModelSpec, OrtOptions, OrtRuntime};

fn server() -> ModelServer {
    let ort = OrtRuntime::new(OrtOptions::default().with_intra_threads(1)).unwrap();
    ModelServer::new().with_runtime(ModelFormat::Onnx, Arc::new(ort))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_models_by_name_and_version() {
    let server = server();
    server
        .load_path(&testdata("mlp.onnx"), ModelSpec::default())
        .unwrap();
    server
        .load_path(&testdata("cnn.onnx"), ModelSpec::default().with_version(3))
        .unwrap();
    assert_eq!(
        server.models().into_iter().collect::<Vec<_>>(),
        vec![("cnn".to_owned(), vec![3]), ("mlp".to_owned(), vec![1])]
    );
    for (name, golden) in [("mlp", "mlp"), ("cnn/3", "cnn")] {
        let golden = Golden::load(golden).unwrap();
        let batcher = server.resolve(name).unwrap();
        let out = batcher.infer(golden.inputs.clone()).await.unwrap();
        assert_close(&out[0], &golden.outputs[0], 1e-5, 1e-4).unwrap();
    }
    let golden = Golden::load("mlp").unwrap();
    let out = server
        .infer("mlp", Some(1), golden.inputs.clone())
        .await
        .unwrap();
    assert_close(&out[0], &golden.outputs[0], 1e-5, 1e-4).unwrap();
    assert_eq!(server.stats("mlp", None).unwrap().request_success, 2);

    let missing = server.resolve("cnn/2").map(|_| ()).unwrap_err();
    assert_eq!(missing.to_string(), "model 'cnn' version 2 is not loaded");
    let alias = server.resolve("cnn@production").map(|_| ()).unwrap_err();
    assert!(matches!(alias, Error::InvalidInput(_)), "{alias}");
    assert!(
        alias.to_string().contains("the registry resolves aliases"),
        "{alias}"
    );
    let bad = server.resolve("cnn/x").map(|_| ()).unwrap_err();
    assert!(matches!(bad, Error::InvalidInput(_)), "{bad}");
    let bad_name = server
        .load_path(&testdata("mlp.onnx"), ModelSpec::default().with_name("a@b"))
        .unwrap_err();
    assert!(
        bad_name.to_string().contains("'@' is not allowed"),
        "{bad_name}"
    );
    let unknown = server.infer("bert", None, vec![]).await.unwrap_err();
    assert!(matches!(unknown, Error::ModelNotFound { .. }));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_latest_version_answers_a_request_without_one() {
    let server = server();
    server
        .load_path(&testdata("mlp.onnx"), ModelSpec::default().with_name("m"))
        .unwrap();
    server
        .load_path(
            &testdata("cnn.onnx"),
            ModelSpec::default().with_name("m").with_version(2),
        )
        .unwrap();
    assert_eq!(
        server.resolve("m").unwrap().signature().inputs[0].name,
        "image"
    );
    assert_eq!(
        server.resolve("m/1").unwrap().signature().inputs[0].name,
        "x"
    );
    server.unload("m", Some(2)).unwrap();
    assert_eq!(server.resolve("m").unwrap().signature().inputs[0].name, "x");
    server.unload("m", None).unwrap();
    assert!(matches!(
        server.resolve("m").map(|_| ()).unwrap_err(),
        Error::ModelNotFound { .. }
    ));
    assert!(server.unload("m", None).is_err());
}

/// Eight clients that ask the MLP for one row and check the answer until `stop`; each
/// answer counts in `answered`.
fn mlp_clients(
    server: &Arc<ModelServer>,
    stop: &Arc<AtomicBool>,
    answered: &Arc<AtomicU64>,
) -> Vec<tokio::task::JoinHandle<()>> {
    let golden = Golden::load("mlp").unwrap();
    let row = golden.inputs[0].split_batch(&[1, 3]).unwrap().remove(0);
    let expected = golden.outputs[0].split_batch(&[1, 3]).unwrap().remove(0);
    (0..8)
        .map(|_| {
            let (server, stop, answered) =
                (Arc::clone(server), Arc::clone(stop), Arc::clone(answered));
            let (row, expected) = (row.clone(), expected.clone());
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let out = server.infer("mlp", None, vec![row.clone()]).await.unwrap();
                    assert_close(&out[0], &expected, 1e-5, 1e-4).unwrap();
                    answered.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hot_swap_under_load_fails_no_request() {
    let server = Arc::new(server());
    let spec = ModelSpec::default()
        .with_instances(2)
        .with_batcher(BatcherConfig::default().with_max_batch_size(8));
    server
        .load_path(&testdata("mlp.onnx"), spec.clone())
        .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let answered = Arc::new(AtomicU64::new(0));
    let clients = mlp_clients(&server, &stop, &answered);
    // Replace the served version five times while the clients run.
    for _ in 0..5 {
        tokio::time::sleep(std::time::Duration::from_millis(40)).await;
        let (server, spec) = (Arc::clone(&server), spec.clone());
        tokio::task::spawn_blocking(move || server.load_path(&testdata("mlp.onnx"), spec))
            .await
            .unwrap()
            .unwrap();
    }
    tokio::time::sleep(std::time::Duration::from_millis(40)).await;
    stop.store(true, Ordering::Relaxed);
    for client in clients {
        client.await.unwrap();
    }
    assert!(
        answered.load(Ordering::Relaxed) > 100,
        "{} answered",
        answered.load(Ordering::Relaxed)
    );
    assert_eq!(server.models()["mlp"], vec![1]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repository_loads_what_it_can_serve_and_says_what_it_skipped() {
    let server = server();
    let report = server
        .load_repository(&testdata(""), &ModelSpec::default())
        .unwrap();
    let loaded: Vec<&str> = report
        .loaded
        .iter()
        .map(|(name, _)| name.as_str())
        .collect();
    assert_eq!(
        loaded,
        [
            "cnn",
            "mlflow_onnx",
            "mlp",
            "mlp_external",
            "mlp_retrained",
            "torch_tagger",
            "vision"
        ]
    );
    let skipped: Vec<&str> = report
        .skipped
        .iter()
        .map(|(name, _)| name.as_str())
        .collect();
    assert!(skipped.contains(&"tf_savedmodel"), "{skipped:?}");
    assert!(skipped.contains(&"mlp.safetensors"), "{skipped:?}");
    let collision = report
        .skipped
        .iter()
        .find(|(f, _)| f == "mlp.torchscript.pt")
        .unwrap();
    assert_eq!(collision.1, "its name 'mlp' is already taken by mlp.onnx");
    let golden = Golden::load("torch_tagger").unwrap();
    let out = server
        .infer("torch_tagger", None, golden.inputs.clone())
        .await
        .unwrap();
    for (got, want) in out.iter().zip(&golden.outputs) {
        assert_close(got, want, 1e-5, 1e-4).unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_grow_and_shrink_under_load_without_a_failed_request() {
    let server = Arc::new(server());
    let spec = ModelSpec::default().with_batcher(BatcherConfig::default().with_max_batch_size(8));
    server.load_path(&testdata("mlp.onnx"), spec).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let answered = Arc::new(AtomicU64::new(0));
    let clients = mlp_clients(&server, &stop, &answered);
    let mut seen = Vec::new();
    for instances in [3, 4, 2, 1, 3, 1] {
        tokio::time::sleep(std::time::Duration::from_millis(30)).await;
        let s = Arc::clone(&server);
        let now = tokio::task::spawn_blocking(move || s.set_instances("mlp", None, instances))
            .await
            .unwrap()
            .unwrap();
        seen.push((now, server.get("mlp", None).unwrap().instances()));
    }
    tokio::time::sleep(std::time::Duration::from_millis(30)).await;
    stop.store(true, Ordering::Relaxed);
    for client in clients {
        client.await.unwrap();
    }
    assert_eq!(seen, [(3, 3), (4, 4), (2, 2), (1, 1), (3, 3), (1, 1)]);
    let stats = server.stats("mlp", None).unwrap();
    let answered = answered.load(Ordering::Relaxed);
    assert!(answered > 100, "{answered} answered");
    // One batcher throughout: its counters span every resize.
    assert_eq!(stats.request_success, answered);
    assert_eq!(stats.request_failure, 0);

    let err = server.set_instances("mlp", None, 0).unwrap_err();
    assert!(matches!(err, Error::Resize { .. }), "{err}");
    let err = server.set_instances("nope", None, 2).unwrap_err();
    assert!(matches!(err, Error::ModelNotFound { .. }), "{err}");
    assert_eq!(server.get("mlp", None).unwrap().instances(), 1);
}
