//! MLflow end to end, against a real tracking server (`scripts/mlflow.sh`, named by
//! `MLOPS_TEST_MLFLOW_URL`): a model logged, registered and aliased with MLflow's own
//! Python client is resolved, downloaded, served over the repository extension and answers
//! the golden outputs; a candidate registered through our crates is validated against it
//! and promoted, and MLflow's own client sees the alias move.
#![cfg(all(feature = "mlflow", feature = "runtime"))]
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use mlops::core::ModelFormat;
use mlops::core::testkit::{Golden, assert_close, testdata};
use mlops::registry::{Change, NewVersion, Promotion, Registry, ValidationCase, ValidationPolicy};
use mlops::runtime::protocol::{Protocol, Repository};
use mlops::runtime::{Batcher, BatcherConfig, ModelServer, ModelSpec, OrtOptions, OrtRuntime};
use mlops::serving::RegistryRepository;

fn server() -> Option<String> {
    match std::env::var("MLOPS_TEST_MLFLOW_URL") {
        Ok(url) => Some(url),
        Err(_) if std::env::var_os("CI").is_some() => {
            panic!("MLOPS_TEST_MLFLOW_URL is not set: scripts/test.sh starts MLflow")
        }
        Err(_) => {
            eprintln!("skipped: MLOPS_TEST_MLFLOW_URL is not set (scripts/test.sh starts MLflow)");
            None
        }
    }
}

/// Runs one of the scripts that use MLflow's own client; returns its last line of output.
fn mlflow_client(script: &str, args: &[&str]) -> String {
    let python =
        std::env::var("MLOPS_TEST_PYTHON").expect("MLOPS_TEST_PYTHON: scripts/test.sh sets it");
    let out = Command::new(python)
        .arg(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("scripts")
                .join(script),
        )
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{script}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    stdout.lines().last().unwrap_or_default().to_owned()
}

async fn batcher(registry: &Registry, reference: &str, scratch: &Path) -> Batcher {
    let got = registry
        .download(reference, &scratch.join(reference.replace(['/', '@'], "_")))
        .await
        .unwrap();
    let session = OrtRuntime::new(OrtOptions::default().with_intra_threads(1))
        .unwrap()
        .open(&got.entry)
        .unwrap();
    Batcher::start(reference, vec![Box::new(session)], BatcherConfig::default()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_model_logged_with_mlflow_is_served_and_a_validated_promotion_moves_its_alias() {
    let Some(url) = server() else { return };
    // A name of this run's own: the server may hold earlier runs' models.
    let name = format!(
        "mlflow-mlp-{:x}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_micros()
    );
    let mlp = testdata("mlp.onnx");
    let logged = mlflow_client(
        "mlflow-log-model.py",
        &[&url, &name, "production", mlp.to_str().unwrap()],
    );
    let logged: serde_json::Value = serde_json::from_str(&logged).unwrap();
    let v1 = logged["version"].as_u64().unwrap();
    let registry = Registry::mlflow(&url).unwrap();
    let dir = tempfile::tempdir().unwrap();

    // Served by alias through the repository extension, as `serve --registry` does.
    let ort = OrtRuntime::new(OrtOptions::default().with_intra_threads(1)).unwrap();
    let server = Arc::new(ModelServer::new().with_runtime(ModelFormat::Onnx, Arc::new(ort)));
    let repository: Arc<dyn Repository> = Arc::new(RegistryRepository::new(
        registry.clone(),
        dir.path().join("downloads"),
        ModelSpec::default(),
    ));
    let protocol = Protocol::new(server.clone()).with_repository(repository);
    assert_eq!(
        protocol.load(&format!("{name}@production")).await.unwrap(),
        vec![(name.clone(), v1)]
    );
    let golden = Golden::load("mlp").unwrap();
    let got = server
        .infer(&name, Some(v1), golden.inputs.clone())
        .await
        .unwrap();
    assert_close(&got[0], &golden.outputs[0], 1e-5, 1e-4).unwrap();

    // A candidate registered through our crates (the same weights as an MLflow model
    // directory), validated against production and promoted by the gate.
    let v2 = registry
        .register(
            &name,
            &testdata("mlflow_onnx"),
            NewVersion::new(),
            &Change::by("ci"),
        )
        .await
        .unwrap()
        .version;
    assert_eq!(v2, v1 + 1);
    let baseline = batcher(&registry, &format!("{name}@production"), dir.path()).await;
    let candidate = batcher(&registry, &format!("{name}/{v2}"), dir.path()).await;
    let cases =
        vec![ValidationCase::new(golden.inputs.clone()).with_expected(golden.outputs.clone())];
    let policy = ValidationPolicy::default().with_tolerance(1e-5, 1e-4);
    let outcome = registry
        .promote_if_valid(
            Promotion {
                model: &name,
                alias: "production",
                candidate: (v2, &candidate),
                baseline: Some((v1, &baseline)),
                cases: &cases,
                policy: &policy,
            },
            &Change::by("ci").because("retrained"),
        )
        .await
        .unwrap();
    assert!(outcome.promoted, "{}", outcome.report.summary());
    // MLflow's own client sees the alias move, and the report is kept on the candidate.
    assert_eq!(
        mlflow_client("mlflow-alias.py", &[&url, &name, "production"]),
        v2.to_string()
    );
    assert_eq!(
        registry
            .models()
            .get_version(&name, v2)
            .await
            .unwrap()
            .validation,
        Some(outcome.report)
    );
    candidate.shutdown();
    baseline.shutdown();
    protocol.unload(&name).await.unwrap();
}
