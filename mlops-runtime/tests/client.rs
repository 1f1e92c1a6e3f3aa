//! The model-id client against real gRPC replicas on 127.0.0.1, found through the
//! registry's endpoint directory: balancing, surviving a replica killed mid-load, and a
//! clear error when none is left.

// Test helpers may panic: a panic is a failed test.
#![allow(clippy::unwrap_used)]
#![cfg(all(feature = "client", feature = "ort"))]

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use mlops_core::ModelFormat;
use mlops_core::testkit::{Golden, assert_close, testdata};
use mlops_registry::{Change, Endpoint, Expect, NewVersion, Protocol, Registry};
use mlops_runtime::client::{Client, ClientConfig};
use mlops_runtime::grpc::service;
use mlops_runtime::{Error, ModelServer, ModelSpec, OrtOptions, OrtRuntime};

/// A replica with its own runtime, so that it can be killed: shutting the runtime down
/// drops its listener and every connection at once, as a dead process would.
struct Replica {
    runtime: tokio::runtime::Runtime,
    addr: SocketAddr,
    server: Arc<ModelServer>,
}

fn replica() -> Replica {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let ort = OrtRuntime::new(OrtOptions::default().with_intra_threads(1)).unwrap();
    let server = Arc::new(ModelServer::new().with_runtime(ModelFormat::Onnx, Arc::new(ort)));
    server
        .load_path(&testdata("mlp.onnx"), ModelSpec::default())
        .unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap();
    let svc = service(server.clone(), None, ModelSpec::default());
    runtime.spawn(async move {
        let listener = tokio::net::TcpListener::from_std(listener).unwrap();
        tonic::transport::Server::builder()
            .add_service(svc)
            .serve_with_incoming(mlops_runtime::grpc::incoming(listener))
            .await
            .unwrap();
    });
    Replica {
        runtime,
        addr,
        server,
    }
}

async fn registry_with(replicas: &[&Replica]) -> Registry {
    let registry = Registry::in_memory().unwrap();
    let by = Change::by("t");
    registry
        .models()
        .create_version("mlp", NewVersion::new().ready(), &by)
        .await
        .unwrap();
    registry
        .models()
        .set_alias("mlp", "production", 1, Expect::Absent, &by, None)
        .await
        .unwrap();
    for r in replicas {
        let e = Endpoint::new("mlp", Some(1), r.addr.to_string(), Protocol::OipGrpc);
        registry
            .endpoints()
            .register_endpoint(&e, Duration::from_secs(60))
            .await
            .unwrap();
    }
    registry
}

fn served(r: &Replica) -> u64 {
    r.server.stats("mlp", None).unwrap().request_success
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_by_model_id_spread_over_replicas() {
    let (a, b) = (replica(), replica());
    let registry = registry_with(&[&a, &b]).await;
    let client = Arc::new(Client::new(Arc::new(registry), ClientConfig::default()));
    let golden = Golden::load("mlp").unwrap();
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let (client, inputs, want) = (
            client.clone(),
            golden.inputs.clone(),
            golden.outputs[0].clone(),
        );
        tasks.push(tokio::spawn(async move {
            for _ in 0..25 {
                let out = client
                    .infer("mlp@production", inputs.clone())
                    .await
                    .unwrap();
                assert_close(&out[0], &want, 1e-5, 1e-4).unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let (na, nb) = (served(&a), served(&b));
    assert_eq!(na + nb, 200);
    assert!(na >= 40 && nb >= 40, "both replicas serve: {na} and {nb}");
    a.runtime.shutdown_background();
    b.runtime.shutdown_background();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_killed_mid_load_fails_no_request() {
    let (a, b) = (replica(), replica());
    let registry = registry_with(&[&a, &b]).await;
    let client = Arc::new(Client::new(Arc::new(registry), ClientConfig::default()));
    let golden = Golden::load("mlp").unwrap();
    let done = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let (client, inputs, done) = (client.clone(), golden.inputs.clone(), done.clone());
        tasks.push(tokio::spawn(async move {
            let mut failures = Vec::new();
            for _ in 0..40 {
                match client.infer("mlp", inputs.clone()).await {
                    Ok(out) => assert_eq!(out[0].shape(), &[4, 16]),
                    Err(e) => failures.push(e.to_string()),
                }
                done.fetch_add(1, Ordering::Relaxed);
            }
            failures
        }));
    }
    while done.load(Ordering::Relaxed) < 100 {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let before = served(&b);
    let b_server = b.server.clone();
    b.runtime.shutdown_background();
    let mut failures = Vec::new();
    for t in tasks {
        failures.extend(t.await.unwrap());
    }
    assert!(
        failures.is_empty(),
        "{} failed: {:?}",
        failures.len(),
        &failures[..failures.len().min(3)]
    );
    assert!(before > 0, "the killed replica had served before it died");
    // A request the killed replica had finished but could not send back was run again on
    // the other one: at most one extra run per request in flight at the kill.
    let runs = served(&a) + b_server.stats("mlp", None).unwrap().request_success;
    assert!(
        (640..=640 + 16).contains(&runs),
        "{runs} runs for 640 answers"
    );
    a.runtime.shutdown_background();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_live_replica_and_bad_requests_are_clear_errors() {
    let (a, b) = (replica(), replica());
    let registry = registry_with(&[&a, &b]).await;
    let client = Client::new(Arc::new(registry), ClientConfig::default());
    let golden = Golden::load("mlp").unwrap();

    // A request at fault is not retried on the other replica: one refusal in all.
    let wrong = vec![golden.inputs[0].clone().with_name("nope")];
    let err = client.infer("mlp", wrong).await.unwrap_err();
    assert!(
        matches!(
            &err,
            Error::Remote {
                code: mlops_runtime::Code::InvalidArgument,
                ..
            }
        ),
        "{err}"
    );
    assert!(!err.is_temporary(), "a bad request stays bad");
    let refused = |r: &Replica| r.server.stats("mlp", None).unwrap().request_failure;
    assert_eq!(refused(&a) + refused(&b), 1);

    // Unknown model ids have no replica.
    let err = client
        .infer("bert", golden.inputs.clone())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::NoReplica { .. }), "{err}");
    assert!(
        err.to_string()
            .contains("the directory lists no gRPC replica"),
        "{err}"
    );

    // Every replica dead: said so, with what was tried.
    a.runtime.shutdown_background();
    b.runtime.shutdown_background();
    let err = client
        .infer("mlp", golden.inputs.clone())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::NoReplica { .. }), "{err}");
    assert!(
        err.to_string()
            .starts_with("no live replica of model 'mlp'"),
        "{err}"
    );
    assert!(err.is_temporary(), "replicas may come back");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_model_id_is_an_infer_that_validation_and_profiling_can_drive() {
    let a = replica();
    let registry = registry_with(&[&a]).await;
    let client = Arc::new(Client::new(Arc::new(registry), ClientConfig::default()));
    let remote = client.model("mlp@production");
    assert_eq!(remote.model_id(), "mlp@production");
    let model: &dyn mlops_core::Infer = &remote;
    let golden = Golden::load("mlp").unwrap();
    let out = model.infer(golden.inputs.clone()).await.unwrap();
    assert_close(&out[0], &golden.outputs[0], 1e-5, 1e-4).unwrap();
    assert_eq!(served(&a), 1);
    // An unknown model id is an error through the trait too.
    let missing = client.model("resnet@production");
    let err = mlops_core::Infer::infer(&missing, golden.inputs.clone())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("resnet"), "{err}");
    a.runtime.shutdown_background();
}
