//! The MLflow backend against a real MLflow tracking server (`scripts/mlflow.sh` starts one
//! and `scripts/test.sh` names it in `MLOPS_TEST_MLFLOW_URL`): the conformance suites with
//! MLflow's capabilities, a model logged with MLflow's own Python client downloaded and
//! described, and the faults a deployment meets (a server down, slow or failing, files
//! missing or changed).
#![cfg(feature = "mlflow")]
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use mlops_core::ModelFormat;
use mlops_core::testkit::testdata;
use mlops_registry::testkit::{self, Capabilities};
use mlops_registry::{
    ArtifactStore, Change, Error, Expect, MlflowArtifacts, MlflowRegistry, ModelRegistry,
    NewVersion, Registry,
};

/// The server's URI; `None` (with the reason printed) where there is none, except under CI.
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

fn python() -> String {
    std::env::var("MLOPS_TEST_PYTHON").expect("MLOPS_TEST_PYTHON: scripts/test.sh sets it")
}

/// Logs `testdata/mlp.onnx` as `name`, aliased `alias`, with MLflow's own client; returns
/// the version number.
fn log_with_mlflow(url: &str, name: &str, alias: &str) -> u64 {
    let script = testdata("../scripts/mlflow-log-model.py");
    let out = std::process::Command::new(python())
        .arg(&script)
        .args([url, name, alias])
        .arg(testdata("mlp.onnx"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "mlflow-log-model.py: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // MLflow prints its own lines first; the script's answer is the last.
    let stdout = String::from_utf8(out.stdout).unwrap();
    let answer: serde_json::Value =
        serde_json::from_str(stdout.lines().last().unwrap_or_default()).unwrap();
    answer["version"].as_u64().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn passes_the_conformance_suites_with_mlflows_capabilities() {
    let Some(url) = server() else { return };
    let r = Arc::new(MlflowRegistry::new(&url).unwrap());
    testkit::model_registry_with(r.as_ref(), Capabilities::MLFLOW).await;
    testkit::concurrent_versions(r.clone(), 40).await;
    testkit::concurrent_alias_moves_with(r.clone(), 10, Capabilities::MLFLOW).await;
    testkit::artifact_store_with(&r.artifacts(), Capabilities::MLFLOW).await;
    assert!(matches!(
        r.audit_log(&Default::default()).await,
        Err(Error::Unsupported(_))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_model_logged_with_mlflow_is_resolved_with_its_run_and_downloaded() {
    let Some(url) = server() else { return };
    let name = testkit::unique_name("logged");
    let number = log_with_mlflow(&url, &name, "production");
    let registry = Registry::mlflow(&url).unwrap();

    let v = registry
        .resolve(&format!("{name}@production"))
        .await
        .unwrap();
    assert_eq!(v.version, number);
    assert_eq!(v.aliases, ["production"]);
    assert_eq!(
        v.metrics.get("accuracy"),
        Some(&0.93),
        "from the version's run"
    );
    assert_eq!(v.params.get("lr").map(String::as_str), Some("0.01"));
    assert!(v.lineage.run_id.is_some());
    assert!(
        v.source
            .as_deref()
            .unwrap()
            .starts_with("mlflow-artifacts:/"),
        "the source is where the files are: {:?}",
        v.source
    );

    let dir = tempfile::tempdir().unwrap();
    let got = registry
        .download(&format!("{name}@production"), dir.path())
        .await
        .unwrap();
    assert_eq!(got.entry, dir.path().join("model.onnx"));
    let manifest = mlops_core::ModelManifest::describe(dir.path()).unwrap();
    assert_eq!(manifest.entry.format, ModelFormat::Onnx);
    let signature = manifest.signature.as_ref().unwrap();
    assert_eq!(signature.inputs[0].name, "x");
    assert_eq!(signature.outputs[0].name, "y");
    // The weights MLflow wrote beside the graph came too, byte for byte.
    let graph_and_weights: u64 = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum();
    assert!(graph_and_weights > 40_000, "{graph_and_weights} bytes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_registered_here_is_stored_where_mlflow_looks_and_verified() {
    let Some(url) = server() else { return };
    let registry = Registry::mlflow(&url).unwrap();
    let name = testkit::unique_name("ours");
    let v = registry
        .register(
            &name,
            &testdata("mlp.onnx"),
            NewVersion::new().with_metric("accuracy", 0.9),
            &Change::by("ci"),
        )
        .await
        .unwrap();
    let source = v.source.clone().unwrap();
    assert!(
        source.starts_with("mlflow-artifacts:/") && source.ends_with("/artifacts/model"),
        "in its run's artifacts, as MLflow's log_model puts them: {source}"
    );
    assert!(v.lineage.run_id.is_some());
    assert_eq!(
        v.lineage.source.as_deref(),
        Some(testdata("mlp.onnx").display().to_string().as_str()),
        "the local path it came from"
    );
    let store = MlflowArtifacts::connect(&url).unwrap();
    let folder = store.locate(&source).unwrap();
    assert_eq!(
        store.list(&folder).await.unwrap(),
        [format!("{folder}mlp.onnx")]
    );

    let dir = tempfile::tempdir().unwrap();
    let got = registry
        .download(&format!("{name}/{}", v.version), &dir.path().join("ok"))
        .await
        .unwrap();
    assert_eq!(
        std::fs::read(&got.entry).unwrap(),
        std::fs::read(testdata("mlp.onnx")).unwrap()
    );

    // Someone replaces the file behind the registry's back, same size, one byte changed:
    // the digest refuses it.
    let mut changed = std::fs::read(testdata("mlp.onnx")).unwrap();
    let last = changed.len() - 1;
    changed[last] ^= 0x55;
    store
        .put(&format!("{folder}mlp.onnx"), &mut changed.as_slice())
        .await
        .unwrap();
    let err = registry
        .download(&format!("{name}/{}", v.version), &dir.path().join("bad"))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::Integrity { reason, .. } if reason.contains("sha256")),
        "{err}"
    );
    assert!(!dir.path().join("bad/mlp.onnx").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn versions_without_servable_files_never_download() {
    let Some(url) = server() else { return };
    let mlflow = MlflowRegistry::new(&url).unwrap();
    let store = mlflow.artifacts();
    let registry = Registry::new(
        Arc::new(mlflow.clone()),
        Arc::new(store.clone()),
        Arc::new(mlops_registry::InMemoryRegistry::new()),
    );
    let name = testkit::unique_name("unservable");
    let sklearn = mlflow
        .create_version(&name, NewVersion::new().ready(), &Change::by("ci"))
        .await
        .unwrap();
    let folder = store.locate(sklearn.source.as_deref().unwrap()).unwrap();
    let mlmodel = "artifact_path: model\nflavors:\n  python_function:\n    loader_module: mlflow.sklearn\n  sklearn:\n    pickled_model: model.pkl\n    sklearn_version: 1.5.0\nmlflow_version: 3.17.2\n";
    store
        .put(&format!("{folder}MLmodel"), &mut mlmodel.as_bytes())
        .await
        .unwrap();
    store
        .put(&format!("{folder}model.pkl"), &mut &b"pickle"[..])
        .await
        .unwrap();
    // Registered, READY, and no file was ever stored for it.
    let empty = mlflow
        .create_version(&name, NewVersion::new().ready(), &Change::by("ci"))
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let err = registry
        .download(
            &format!("{name}/{}", sklearn.version),
            &dir.path().join("a"),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, Error::FailedPrecondition(_)), "{err}");
    let text = err.to_string();
    assert!(
        text.contains("[python_function, sklearn]") && text.contains("'onnx'"),
        "names what it has and what is served: {text}"
    );
    // Refused on its MLmodel alone: the pickle was never fetched, and nothing is left.
    let left: Vec<_> = std::fs::read_dir(dir.path().join("a"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(left.is_empty(), "{left:?}");
    let err = registry
        .download(&format!("{name}/{}", empty.version), &dir.path().join("b"))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::FailedPrecondition(m) if m.contains("holds no files")),
        "{err}"
    );
}

/// A server on 127.0.0.1 that reads each connection's request and hands the socket to
/// `answer`; its address.
async fn raw_server<F, Fut>(answer: F) -> String
where
    F: Fn(tokio::net::TcpStream) -> Fut + Send + Copy + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    use tokio::io::AsyncReadExt;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut socket, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = socket.read(&mut buf).await;
                answer(socket).await;
            });
        }
    });
    format!("http://{addr}")
}

/// A server that answers each request after `delay` with `status`.
async fn fake_server(status: &'static str, delay: Duration) -> String {
    raw_server(move |mut socket| async move {
        use tokio::io::AsyncWriteExt;
        tokio::time::sleep(delay).await;
        let body = r#"{"error_code": "INTERNAL_ERROR", "message": "database is locked"}"#;
        let answer = format!(
            "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        );
        let _ = socket.write_all(answer.as_bytes()).await;
    })
    .await
}

#[tokio::test]
async fn a_server_down_slow_or_failing_is_a_temporary_error() {
    // Down: nothing listens on the port.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let down = MlflowRegistry::new(&format!("http://127.0.0.1:{port}")).unwrap();
    let err = down.get_model("mlp").await.unwrap_err();
    assert!(err.is_temporary(), "{err}");
    assert!(err.to_string().contains("cannot connect"), "{err}");

    let failing =
        MlflowRegistry::new(&fake_server("503 Service Unavailable", Duration::ZERO).await).unwrap();
    let err = failing.get_model("mlp").await.unwrap_err();
    assert!(
        matches!(err, Error::Unavailable { .. }) && err.is_temporary(),
        "{err}"
    );
    assert!(err.to_string().contains("database is locked"), "{err}");

    let slow = MlflowRegistry::new(&fake_server("200 OK", Duration::from_secs(10)).await)
        .unwrap()
        .with_timeout(Duration::from_millis(300));
    let err = slow.get_model("mlp").await.unwrap_err();
    assert!(err.is_temporary(), "{err}");
    assert!(err.to_string().contains("timed out"), "{err}");

    let err = MlflowRegistry::new("ftp://example.com").unwrap_err();
    assert!(matches!(err, Error::InvalidArgument(_)), "{err}");
}

/// A server that answers every request with `status` and a body without end: announced
/// as 1 GiB, or chunked with no length given.
async fn flooding_server(status: &'static str, announced: bool) -> String {
    raw_server(move |mut socket| async move {
        use tokio::io::AsyncWriteExt;
        let length = if announced {
            "content-length: 1073741824"
        } else {
            "transfer-encoding: chunked"
        };
        let head =
            format!("HTTP/1.1 {status}\r\ncontent-type: application/json\r\n{length}\r\n\r\n");
        if socket.write_all(head.as_bytes()).await.is_err() {
            return;
        }
        // JSON whitespace, a MiB at a time, until the client hangs up.
        let spaces = vec![b' '; 1 << 20];
        let mut chunk = Vec::new();
        if !announced {
            chunk.extend_from_slice(format!("{:x}\r\n", spaces.len()).as_bytes());
        }
        chunk.extend_from_slice(&spaces);
        if !announced {
            chunk.extend_from_slice(b"\r\n");
        }
        for _ in 0..1024 {
            if socket.write_all(&chunk).await.is_err() {
                return;
            }
        }
    })
    .await
}

#[tokio::test]
async fn an_answer_past_the_size_limit_is_refused_without_reading_it_all() {
    for announced in [true, false] {
        let flooding = MlflowRegistry::new(&flooding_server("200 OK", announced).await).unwrap();
        let err = flooding.get_model("mlp").await.unwrap_err();
        assert!(
            matches!(err, Error::Service { status: 200, .. }) && !err.is_temporary(),
            "announced {announced}: {err}"
        );
        assert!(
            err.to_string().contains("larger than 64 MiB"),
            "announced {announced}: {err}"
        );
    }
    // An error answer of any size is still the error its status says: a 503 is temporary.
    let failing =
        MlflowRegistry::new(&flooding_server("503 Service Unavailable", true).await).unwrap();
    let err = failing.get_model("mlp").await.unwrap_err();
    assert!(
        matches!(err, Error::Unavailable { .. }) && err.is_temporary(),
        "{err}"
    );
}

/// A run's lifecycle stage (`active`, `deleted`), read with MLflow's REST API.
async fn run_stage(url: &str, run_id: &str) -> String {
    let answer = reqwest::get(format!("{url}/api/2.0/mlflow/runs/get?run_id={run_id}"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let answer: serde_json::Value = serde_json::from_str(&answer).unwrap();
    answer["run"]["info"]["lifecycle_stage"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// A POST to MLflow's REST API; its JSON answer.
async fn post(url: &str, endpoint: &str, body: &serde_json::Value) -> serde_json::Value {
    let answer = reqwest::Client::new()
        .post(format!("{url}/api/2.0/mlflow/{endpoint}"))
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    serde_json::from_str(&answer).unwrap()
}

/// The active runs this backend made for `name`'s versions.
async fn active_runs(url: &str, name: &str) -> usize {
    let body = serde_json::json!({
        "experiment_ids": ["0"],
        "filter": format!("tags.`mlops.registration` = '{name}'"),
    });
    let answer = post(url, "runs/search", &body).await;
    answer["runs"].as_array().map_or(0, Vec::len)
}

#[tokio::test]
async fn the_runs_of_versions_made_here_go_with_them() {
    let Some(url) = server() else { return };
    let r = MlflowRegistry::new(&url).unwrap();
    let name = testkit::unique_name("runs");
    let by = Change::by("t");
    let first = r
        .create_version(
            &name,
            NewVersion::new().with_metric("auc", 0.9).ready(),
            &by,
        )
        .await
        .unwrap();
    let second = r
        .create_version(
            &name,
            NewVersion::new().with_metric("auc", 0.8).ready(),
            &by,
        )
        .await
        .unwrap();
    let (first_run, second_run) = (
        first.lineage.run_id.clone().unwrap(),
        second.lineage.run_id.clone().unwrap(),
    );
    assert_eq!(run_stage(&url, &first_run).await, "active");
    assert_eq!(active_runs(&url, &name).await, 2);

    // A deleted version takes its run along.
    r.delete_version(&name, first.version, &by).await.unwrap();
    assert_eq!(run_stage(&url, &first_run).await, "deleted");
    assert_eq!(run_stage(&url, &second_run).await, "active");

    // A registration MLflow refuses (a metric name it does not accept) leaves no run.
    let err = r
        .create_version(&name, NewVersion::new().with_metric("auc!", 0.7), &by)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::InvalidArgument(_)), "{err}");
    assert_eq!(active_runs(&url, &name).await, 1);
    // And so does one refused later, when the version itself is created (a tag key MLflow
    // does not accept).
    let err = r
        .create_version(&name, NewVersion::new().with_tag("bad!", "x"), &by)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::InvalidArgument(_)), "{err}");
    assert_eq!(active_runs(&url, &name).await, 1);

    // A run another model's version was registered from, as MLflow's
    // `register_model("runs:/...")` does, stays while that version does.
    let other = testkit::unique_name("runs-other");
    for (endpoint, body) in [
        (
            "registered-models/create",
            serde_json::json!({"name": other}),
        ),
        (
            "model-versions/create",
            serde_json::json!({
                "name": other,
                "source": second.source.clone().unwrap(),
                "run_id": second_run,
            }),
        ),
    ] {
        let answer = post(&url, endpoint, &body).await;
        assert!(answer.get("error_code").is_none(), "{endpoint}: {answer}");
    }
    r.delete_model(&name, &by).await.unwrap();
    assert_eq!(run_stage(&url, &second_run).await, "active");
    // Deleting that one too lets the run go.
    r.delete_model(&other, &by).await.unwrap();
    assert_eq!(run_stage(&url, &second_run).await, "deleted");
    assert_eq!(active_runs(&url, &name).await, 0);

    // A run MLflow's own client made stays when its version is deleted here.
    let logged = testkit::unique_name("runs-logged");
    let version = log_with_mlflow(&url, &logged, "production");
    let theirs = r
        .get_version(&logged, version)
        .await
        .unwrap()
        .lineage
        .run_id
        .unwrap();
    r.delete_alias(&logged, "production", Expect::Any, &by)
        .await
        .unwrap();
    r.delete_version(&logged, version, &by).await.unwrap();
    assert_eq!(run_stage(&url, &theirs).await, "active");
}

#[tokio::test]
async fn a_registration_past_mlflows_batch_limits_keeps_every_metric_and_param() {
    let Some(url) = server() else { return };
    let r = MlflowRegistry::new(&url).unwrap();
    let name = testkit::unique_name("batches");
    // MLflow takes at most 100 params and 1000 entries per `runs/log-batch`.
    let mut new = NewVersion::new().ready();
    for i in 0..1234 {
        new = new.with_metric(format!("m{i:04}"), f64::from(i) / 8.0);
    }
    for i in 0..250 {
        new = new.with_param(format!("p{i:03}"), format!("v{i}"));
    }
    let v = r
        .create_version(&name, new, &Change::by("t"))
        .await
        .unwrap();
    let got = r.get_version(&name, v.version).await.unwrap();
    assert_eq!((got.metrics.len(), got.params.len()), (1234, 250));
    assert_eq!(got.metrics["m1233"], 1233.0 / 8.0);
    assert_eq!(got.params["p249"], "v249");
    assert_eq!(got, v);
}

#[test]
fn artifact_uris_of_another_server_are_not_this_stores() {
    let store = MlflowRegistry::new("http://Tracking.example:5000")
        .unwrap()
        .artifacts();
    let here = Some("1/abc/artifacts/model/".to_owned());
    assert_eq!(
        store.locate("mlflow-artifacts:/1/abc/artifacts/model"),
        here
    );
    assert_eq!(
        store.locate("mlflow-artifacts://tracking.example:5000/1/abc/artifacts/model/"),
        here
    );
    // Another host, another port, or the scheme's default port when ours is 5000.
    for other in [
        "mlflow-artifacts://other.example:5000/1/abc/artifacts/model",
        "mlflow-artifacts://tracking.example:5001/1/abc/artifacts/model",
        "mlflow-artifacts://tracking.example/1/abc/artifacts/model",
        "s3://bucket/1/abc/artifacts/model",
        "mlflow-artifacts:/../escape",
    ] {
        assert_eq!(store.locate(other), None, "{other}");
    }
    let default_port = MlflowRegistry::new("https://tracking.example")
        .unwrap()
        .artifacts();
    assert_eq!(
        default_port.locate("mlflow-artifacts://tracking.example:443/1/m"),
        Some("1/m/".to_owned())
    );
}
