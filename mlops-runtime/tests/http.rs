//! The Open Inference Protocol REST front end, in process (`tower::ServiceExt::oneshot`)
//! over real ONNX models: every route, JSON and binary tensors, and every kind of bad
//! request.

// Test helpers may panic: a panic is a failed test.
#![allow(clippy::unwrap_used)]
#![cfg(all(feature = "http", feature = "ort"))]

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use mlops_core::testkit::{Golden, assert_close, testdata};
use mlops_core::{DataType, ModelFormat, Tensor};
use mlops_runtime::http::{HEADER_LENGTH, HttpConfig, router};
use mlops_runtime::{BatcherConfig, EchoRuntime, ModelServer, ModelSpec, OrtOptions, OrtRuntime};
use serde_json::{Value, json};
use tower::ServiceExt;

fn server() -> Arc<ModelServer> {
    let ort = OrtRuntime::new(OrtOptions::default().with_intra_threads(1)).unwrap();
    let server = ModelServer::new().with_runtime(ModelFormat::Onnx, Arc::new(ort));
    server
        .load_path(&testdata("mlp.onnx"), ModelSpec::default())
        .unwrap();
    server
        .load_path(&testdata("torch_tagger.onnx"), ModelSpec::default())
        .unwrap();
    Arc::new(server)
}

fn app() -> Router {
    router(server(), HttpConfig::default().with_max_body_bytes(1 << 20))
}

struct Reply {
    status: StatusCode,
    header_length: Option<usize>,
    content_type: Option<String>,
    body: Bytes,
}

impl Reply {
    fn json(&self) -> Value {
        let end = self.header_length.unwrap_or(self.body.len());
        serde_json::from_slice(&self.body[..end])
            .unwrap_or_else(|e| panic!("{e}: {:?}", String::from_utf8_lossy(&self.body)))
    }

    fn error(&self) -> String {
        self.json()["error"].as_str().unwrap().to_owned()
    }
}

async fn call(
    app: &Router,
    method: &str,
    uri: &str,
    headers: &[(&str, String)],
    body: impl Into<Body>,
) -> Reply {
    let mut req = Request::builder().method(method).uri(uri);
    for (k, v) in headers {
        req = req.header(*k, v);
    }
    let resp = app
        .clone()
        .oneshot(req.body(body.into()).unwrap())
        .await
        .unwrap();
    let status = resp.status();
    let header_length = resp
        .headers()
        .get(HEADER_LENGTH)
        .map(|h| h.to_str().unwrap().parse().unwrap());
    let content_type = resp
        .headers()
        .get("content-type")
        .map(|h| h.to_str().unwrap().to_owned());
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    Reply {
        status,
        header_length,
        content_type,
        body,
    }
}

fn tensor_json(t: &Tensor) -> Value {
    let data: Vec<Value> = match t.dtype() {
        DataType::Fp32 => t
            .to_vec::<f32>()
            .unwrap()
            .into_iter()
            .map(|v| json!(v))
            .collect(),
        DataType::Int64 => t
            .to_vec::<i64>()
            .unwrap()
            .into_iter()
            .map(|v| json!(v))
            .collect(),
        DataType::Bool => t
            .to_bools()
            .unwrap()
            .into_iter()
            .map(|v| json!(v))
            .collect(),
        other => panic!("{other}"),
    };
    json!({ "name": t.name(), "datatype": t.dtype().to_string(), "shape": t.shape(), "data": data })
}

fn output_from_json(v: &Value) -> Tensor {
    let shape: Vec<usize> = v["shape"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d.as_u64().unwrap() as usize)
        .collect();
    let data: Vec<f32> = v["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect();
    Tensor::from_vec(v["name"].as_str().unwrap(), shape, data).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_metadata() {
    let app = app();
    assert_eq!(
        call(&app, "GET", "/v2/health/live", &[], "").await.status,
        StatusCode::OK
    );
    assert_eq!(
        call(&app, "GET", "/v2/health/ready", &[], "").await.status,
        StatusCode::OK
    );
    let meta = call(&app, "GET", "/v2", &[], "").await.json();
    assert_eq!(meta["name"], "mlops");
    assert!(
        meta["extensions"]
            .as_array()
            .unwrap()
            .contains(&json!("binary_tensor_data"))
    );

    let m = call(&app, "GET", "/v2/models/mlp", &[], "").await;
    assert_eq!(m.status, StatusCode::OK);
    assert_eq!(
        m.json(),
        json!({
            "name": "mlp",
            "versions": ["1"],
            "platform": "onnxruntime_onnx",
            "inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 64]}],
            "outputs": [{"name": "y", "datatype": "FP32", "shape": [-1, 16]}],
        })
    );
    assert_eq!(
        call(&app, "GET", "/v2/models/mlp/versions/1", &[], "")
            .await
            .json(),
        m.json()
    );
    assert_eq!(
        call(&app, "GET", "/v2/models/mlp/ready", &[], "")
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(
        call(&app, "GET", "/v2/models/mlp/versions/1/ready", &[], "")
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(
        call(&app, "GET", "/v2/models/mlp/versions/2/ready", &[], "")
            .await
            .status,
        StatusCode::NOT_FOUND
    );

    let config = call(&app, "GET", "/v2/models/mlp/config", &[], "")
        .await
        .json();
    assert_eq!(config["name"], "mlp");
    assert_eq!(config["platform"], "onnxruntime_onnx");
    assert_eq!(config["max_batch_size"], 32);
    assert_eq!(
        config["input"],
        json!([{"name": "x", "data_type": "TYPE_FP32", "dims": [64]}])
    );
    assert_eq!(
        config["output"],
        json!([{"name": "y", "data_type": "TYPE_FP32", "dims": [16]}])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_inference_matches_the_golden_outputs() {
    let app = app();
    for model in ["mlp", "torch_tagger"] {
        let golden = Golden::load(model).unwrap();
        let body = json!({
            "id": "req-1",
            "inputs": golden.inputs.iter().map(tensor_json).collect::<Vec<_>>(),
        });
        let r = call(
            &app,
            "POST",
            &format!("/v2/models/{model}/infer"),
            &[],
            body.to_string(),
        )
        .await;
        assert_eq!(
            r.status,
            StatusCode::OK,
            "{}",
            String::from_utf8_lossy(&r.body)
        );
        assert_eq!(r.content_type.as_deref(), Some("application/json"));
        let v = r.json();
        assert_eq!(
            (
                v["model_name"].as_str(),
                v["model_version"].as_str(),
                v["id"].as_str()
            ),
            (Some(model), Some("1"), Some("req-1"))
        );
        let outputs = v["outputs"].as_array().unwrap();
        assert_eq!(outputs.len(), golden.outputs.len());
        for want in &golden.outputs {
            let got = outputs.iter().find(|o| o["name"] == want.name()).unwrap();
            assert_close(&output_from_json(got), want, 1e-5, 1e-4).unwrap();
        }
    }
    // Nested data arrays are accepted as well as flat ones.
    let golden = Golden::load("mlp").unwrap();
    let rows: Vec<Vec<f32>> = golden.inputs[0]
        .to_vec::<f32>()
        .unwrap()
        .chunks(64)
        .map(<[f32]>::to_vec)
        .collect();
    let body =
        json!({"inputs": [{"name": "x", "datatype": "FP32", "shape": [4, 64], "data": rows}]});
    let r = call(
        &app,
        "POST",
        "/v2/models/mlp/versions/1/infer",
        &[],
        body.to_string(),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_close(
        &output_from_json(&r.json()["outputs"][0]),
        &golden.outputs[0],
        1e-5,
        1e-4,
    )
    .unwrap();
}

/// Builds a binary-extension request: JSON header, then each input's raw bytes.
fn binary_request(inputs: &[Tensor], outputs: Value) -> (Vec<u8>, usize) {
    let header = json!({
        "inputs": inputs.iter().map(|t| json!({
            "name": t.name(), "datatype": t.dtype().to_string(), "shape": t.shape(),
            "parameters": {"binary_data_size": t.data().len()},
        })).collect::<Vec<_>>(),
        "outputs": outputs,
    })
    .to_string();
    let mut body = header.clone().into_bytes();
    for t in inputs {
        body.extend_from_slice(t.data());
    }
    (body, header.len())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_tensors_in_and_out() {
    let app = app();
    let golden = Golden::load("mlp").unwrap();
    let (body, n) = binary_request(
        &golden.inputs,
        json!([{"name": "y", "parameters": {"binary_data": true}}]),
    );
    let r = call(
        &app,
        "POST",
        "/v2/models/mlp/infer",
        &[(HEADER_LENGTH, n.to_string())],
        body,
    )
    .await;
    assert_eq!(
        r.status,
        StatusCode::OK,
        "{}",
        String::from_utf8_lossy(&r.body)
    );
    assert_eq!(r.content_type.as_deref(), Some("application/octet-stream"));
    let n = r.header_length.unwrap();
    let v = r.json();
    let out = &v["outputs"][0];
    assert_eq!(out["parameters"]["binary_data_size"], 4 * 16 * 4);
    assert!(out.get("data").is_none());
    let y = Tensor::new("y", DataType::Fp32, vec![4, 16], r.body.slice(n..)).unwrap();
    assert_close(&y, &golden.outputs[0], 1e-5, 1e-4).unwrap();

    // Binary in, JSON out (no outputs named: all of them, as JSON).
    let (body, n) = binary_request(&golden.inputs, Value::Null);
    let r = call(
        &app,
        "POST",
        "/v2/models/mlp/infer",
        &[(HEADER_LENGTH, n.to_string())],
        body,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.header_length, None);
    assert_close(
        &output_from_json(&r.json()["outputs"][0]),
        &golden.outputs[0],
        1e-5,
        1e-4,
    )
    .unwrap();

    // binary_data_output for all, overridden per output.
    let body = json!({
        "inputs": golden.inputs.iter().map(tensor_json).collect::<Vec<_>>(),
        "parameters": {"binary_data_output": true},
    });
    let r = call(&app, "POST", "/v2/models/mlp/infer", &[], body.to_string()).await;
    assert!(r.header_length.is_some());
    let body = json!({
        "inputs": golden.inputs.iter().map(tensor_json).collect::<Vec<_>>(),
        "parameters": {"binary_data_output": true},
        "outputs": [{"name": "y", "parameters": {"binary_data": false}}],
    });
    let r = call(&app, "POST", "/v2/models/mlp/infer", &[], body.to_string()).await;
    assert_eq!(r.header_length, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_a_clear_400_and_never_a_panic() {
    let app = app();
    let golden = Golden::load("mlp").unwrap();
    let x = tensor_json(&golden.inputs[0]);
    let good_binary = binary_request(&golden.inputs, Value::Null);
    // (what, headers, body, what the error must say)
    type Case<'a> = (&'a str, Vec<(&'a str, String)>, Vec<u8>, &'a str);
    let cases: Vec<Case> = vec![
        ("malformed JSON", vec![], b"{\"inputs\": [".to_vec(), "malformed request JSON"),
        ("not an object", vec![], b"[1,2]".to_vec(), "malformed request JSON"),
        ("unknown datatype", vec![], json!({"inputs": [{"name": "x", "datatype": "FP99", "shape": [1], "data": [1]}]}).to_string().into_bytes(), "unknown datatype 'FP99'"),
        ("wrong datatype", vec![], json!({"inputs": [{"name": "x", "datatype": "INT32", "shape": [1, 64], "data": vec![1; 64]}]}).to_string().into_bytes(), "input 'x'"),
        ("shape/data mismatch", vec![], json!({"inputs": [{"name": "x", "datatype": "FP32", "shape": [2, 64], "data": vec![0.5; 64]}]}).to_string().into_bytes(), "holds 128 elements but data has 64"),
        ("string for a number", vec![], json!({"inputs": [{"name": "x", "datatype": "FP32", "shape": [1], "data": ["a"]}]}).to_string().into_bytes(), "element 0"),
        ("integer out of range", vec![], json!({"inputs": [{"name": "x", "datatype": "INT8", "shape": [1], "data": [300]}]}).to_string().into_bytes(), "not a valid INT8"),
        ("missing input", vec![], json!({"inputs": []}).to_string().into_bytes(), "input 'x'"),
        ("unknown output", vec![], json!({"inputs": [x.clone()], "outputs": [{"name": "z"}]}).to_string().into_bytes(), "has no output 'z'"),
        ("binary shorter than announced", vec![(HEADER_LENGTH, good_binary.1.to_string())], good_binary.0[..good_binary.0.len() - 3].to_vec(), "only 1021 binary bytes remain"),
        ("binary longer than announced", vec![(HEADER_LENGTH, good_binary.1.to_string())], [good_binary.0.clone(), vec![0; 5]].concat(), "5 binary bytes follow"),
        ("header length past the body", vec![(HEADER_LENGTH, "99999".into())], good_binary.0.clone(), "the body has only"),
        ("header length not a number", vec![(HEADER_LENGTH, "ten".into())], good_binary.0.clone(), "is not a byte count"),
        ("data and binary both", vec![], json!({"inputs": [{"name": "x", "datatype": "FP32", "shape": [1], "data": [1], "parameters": {"binary_data_size": 4}}]}).to_string().into_bytes(), "both data and binary_data_size"),
        ("bad parameter type", vec![], json!({"inputs": [x.clone()], "parameters": {"binary_data_output": "yes"}}).to_string().into_bytes(), "must be true or false"),
    ];
    for (what, headers, body, needle) in cases {
        let r = call(&app, "POST", "/v2/models/mlp/infer", &headers, body).await;
        assert_eq!(
            r.status,
            StatusCode::BAD_REQUEST,
            "{what}: {}",
            String::from_utf8_lossy(&r.body)
        );
        assert!(
            r.error().contains(needle),
            "{what}: {:?} lacks {needle:?}",
            r.error()
        );
    }
    let r = call(
        &app,
        "POST",
        "/v2/models/bert/infer",
        &[],
        json!({"inputs": [x]}).to_string(),
    )
    .await;
    assert_eq!(
        (r.status, r.error().as_str()),
        (StatusCode::NOT_FOUND, "model 'bert' is not loaded")
    );
    let r = call(&app, "POST", "/v2/models/mlp/versions/x/infer", &[], "{}").await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let r = call(&app, "POST", "/v2/models/mlp/versions/7/infer", &[], "{}").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    // Over the body limit: refused without reading it whole.
    let r = call(
        &app,
        "POST",
        "/v2/models/mlp/infer",
        &[],
        vec![b' '; (1 << 20) + 1],
    )
    .await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(!r.error().is_empty(), "axum's own errors are JSON too");
    // Unknown routes and methods, and model control without a repository.
    let r = call(&app, "GET", "/v2/nothing/here", &[], "").await;
    assert_eq!(
        (r.status, r.error().as_str()),
        (StatusCode::NOT_FOUND, "Not Found")
    );
    let r = call(&app, "DELETE", "/v2/models/mlp", &[], "").await;
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);
    assert!(!r.error().is_empty());
    let r = call(&app, "POST", "/v2/repository/models/mlp/unload", &[], "").await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(
        r.error().contains("model control is disabled"),
        "{}",
        r.error()
    );
    assert_eq!(
        call(&app, "GET", "/v2/models/mlp/ready", &[], "")
            .await
            .status,
        StatusCode::OK
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statistics_and_metrics_count_what_was_served() {
    let app = app();
    let golden = Golden::load("mlp").unwrap();
    let body =
        json!({"inputs": golden.inputs.iter().map(tensor_json).collect::<Vec<_>>()}).to_string();
    for _ in 0..3 {
        assert_eq!(
            call(&app, "POST", "/v2/models/mlp/infer", &[], body.clone())
                .await
                .status,
            StatusCode::OK
        );
    }
    let bad =
        json!({"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 3], "data": [1, 2, 3]}]})
            .to_string();
    assert_eq!(
        call(&app, "POST", "/v2/models/mlp/infer", &[], bad)
            .await
            .status,
        StatusCode::BAD_REQUEST
    );

    let stats = call(&app, "GET", "/v2/models/mlp/stats", &[], "")
        .await
        .json();
    let s = &stats["model_stats"][0];
    assert_eq!(
        (s["name"].as_str(), s["version"].as_str()),
        (Some("mlp"), Some("1"))
    );
    assert_eq!(s["inference_count"], 12, "3 requests of 4 rows");
    assert_eq!(s["inference_stats"]["success"]["count"], 3);
    assert_eq!(s["inference_stats"]["fail"]["count"], 1);
    let all = call(&app, "GET", "/v2/models/stats", &[], "").await.json();
    assert_eq!(all["model_stats"].as_array().unwrap().len(), 2);

    let metrics = call(&app, "GET", "/metrics", &[], "").await;
    let text = String::from_utf8(metrics.body.to_vec()).unwrap();
    for line in [
        "nv_inference_request_success{model=\"mlp\",version=\"1\"} 3",
        "nv_inference_request_failure{model=\"mlp\",version=\"1\"} 1",
        "nv_inference_count{model=\"mlp\",version=\"1\"} 12",
        "nv_inference_request_success{model=\"torch_tagger\",version=\"1\"} 0",
        "nv_inference_pending_request_count{model=\"mlp\",version=\"1\"} 0",
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "missing {line:?} in\n{text}"
        );
    }
    assert!(
        text.lines()
            .any(|l| l.starts_with("process_resident_memory_bytes ")),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_repository_extension_loads_and_unloads() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(testdata("mlp.onnx"), dir.path().join("mlp.onnx")).unwrap();
    std::fs::copy(testdata("cnn.onnx"), dir.path().join("cnn.onnx")).unwrap();
    // Files that are not models: never listed, and never chosen over the model.
    std::fs::copy(
        testdata("cnn.golden.json"),
        dir.path().join("cnn.golden.json"),
    )
    .unwrap();
    std::fs::write(dir.path().join("README.md"), "models").unwrap();
    let ort = OrtRuntime::new(OrtOptions::default().with_intra_threads(1)).unwrap();
    let server = Arc::new(ModelServer::new().with_runtime(ModelFormat::Onnx, Arc::new(ort)));
    let app = router(
        server,
        HttpConfig::default().with_repository(dir.path(), ModelSpec::default()),
    );

    let index = call(&app, "POST", "/v2/repository/index", &[], "")
        .await
        .json();
    assert_eq!(
        index,
        json!([{"name": "cnn", "state": "UNAVAILABLE"}, {"name": "mlp", "state": "UNAVAILABLE"}])
    );
    assert_eq!(
        call(&app, "POST", "/v2/repository/models/cnn/load", &[], "")
            .await
            .status,
        StatusCode::OK
    );
    let index = call(&app, "POST", "/v2/repository/index", &[], "")
        .await
        .json();
    assert_eq!(
        index,
        json!([{"name": "cnn", "version": "1", "state": "READY"}, {"name": "mlp", "state": "UNAVAILABLE"}])
    );
    let golden = Golden::load("cnn").unwrap();
    let body =
        json!({"inputs": golden.inputs.iter().map(tensor_json).collect::<Vec<_>>()}).to_string();
    let r = call(&app, "POST", "/v2/models/cnn/infer", &[], body.clone()).await;
    assert_close(
        &output_from_json(&r.json()["outputs"][0]),
        &golden.outputs[0],
        1e-4,
        1e-3,
    )
    .unwrap();

    assert_eq!(
        call(&app, "POST", "/v2/repository/models/cnn/unload", &[], "")
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(
        call(&app, "POST", "/v2/models/cnn/infer", &[], body)
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    let r = call(&app, "POST", "/v2/repository/models/bert/load", &[], "").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = call(&app, "POST", "/v2/repository/models/..%2Fetc/load", &[], "").await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_is_a_429_and_health_still_answers() {
    let server = ModelServer::new().with_runtime(
        ModelFormat::Onnx,
        Arc::new(EchoRuntime::new().with_delay(Duration::from_millis(200))),
    );
    let spec = ModelSpec::default().with_batcher(
        BatcherConfig::default()
            .with_max_batch_size(1)
            .with_max_queue_size(1),
    );
    server.load_path(&testdata("mlp.onnx"), spec).unwrap();
    let app = router(Arc::new(server), HttpConfig::default());
    let golden = Golden::load("mlp").unwrap();
    let row = golden.inputs[0].split_batch(&[1, 3]).unwrap().remove(0);
    let body = json!({"inputs": [tensor_json(&row)]}).to_string();
    let mut tasks = Vec::new();
    for _ in 0..6 {
        let (app, body) = (app.clone(), body.clone());
        tasks.push(tokio::spawn(async move {
            call(&app, "POST", "/v2/models/mlp/infer", &[], body)
                .await
                .status
        }));
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(
        call(&app, "GET", "/v2/health/ready", &[], "").await.status,
        StatusCode::OK
    );
    let mut statuses = Vec::new();
    for t in tasks {
        statuses.push(t.await.unwrap());
    }
    let ok = statuses.iter().filter(|s| **s == StatusCode::OK).count();
    let shed = statuses
        .iter()
        .filter(|s| **s == StatusCode::TOO_MANY_REQUESTS)
        .count();
    assert_eq!(ok + shed, 6, "{statuses:?}");
    assert!(
        shed >= 3,
        "one runs, one queues, the rest are shed: {statuses:?}"
    );
}

/// NVIDIA's `tritonclient` (HTTP, JSON and binary tensors) and a plain HTTP client against
/// the server on 127.0.0.1: the golden outputs come back. Needs the Python environment
/// named by `MLOPS_TEST_PYTHON` (`scripts/test.sh` sets it up).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_clients_get_the_golden_outputs() {
    let Some(python) = std::env::var_os("MLOPS_TEST_PYTHON") else {
        assert!(
            std::env::var_os("CI").is_none(),
            "MLOPS_TEST_PYTHON must be set in CI (scripts/test.sh sets it)"
        );
        println!("skipped: MLOPS_TEST_PYTHON is not set (scripts/test.sh sets it)");
        return;
    };
    let server = server();
    server
        .load_path(&testdata("cnn.onnx"), ModelSpec::default())
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = router(server, HttpConfig::default());
    tokio::spawn(async move {
        mlops_runtime::http::serve(listener, app, std::future::pending())
            .await
            .unwrap()
    });

    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/clients/oip_http.py");
    let out = tokio::process::Command::new(python)
        .args([script, &addr.to_string(), testdata("").to_str().unwrap()])
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        report["checked"],
        json!([
            "tritonclient http mlp binary=false",
            "tritonclient http mlp binary=true",
            "urllib mlp",
            "tritonclient http cnn binary=false",
            "tritonclient http cnn binary=true",
            "urllib cnn",
            "tritonclient error",
            "tritonclient statistics",
        ])
    );
}

mod fuzz {
    use super::*;
    use proptest::prelude::*;

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap()
    }

    /// A JSON value shaped like a request, with random names, types, shapes and data.
    fn request_like() -> impl Strategy<Value = Value> {
        let scalar = prop_oneof![
            any::<i64>().prop_map(|v| json!(v)),
            any::<f64>()
                .prop_filter("finite", |v| v.is_finite())
                .prop_map(|v| json!(v)),
            any::<bool>().prop_map(|v| json!(v)),
            "[a-z]{0,3}".prop_map(|v| json!(v)),
        ];
        let dtype = prop_oneof![
            Just("FP32"),
            Just("INT64"),
            Just("BOOL"),
            Just("BYTES"),
            Just("FP16"),
            Just("UINT8"),
            Just("X")
        ];
        let input = (
            prop_oneof![Just("x".to_owned()), "[a-z]{1,3}"],
            dtype,
            proptest::collection::vec(0u64..70, 0..4),
            proptest::collection::vec(scalar, 0..80),
            proptest::option::of(0u64..300),
        )
            .prop_map(|(name, dtype, shape, data, binary)| {
                let mut v = json!({"name": name, "datatype": dtype, "shape": shape, "data": data});
                if let Some(n) = binary {
                    v["parameters"] = json!({"binary_data_size": n});
                    v.as_object_mut().unwrap().remove("data");
                }
                v
            });
        proptest::collection::vec(input, 0..3).prop_map(|inputs| json!({"inputs": inputs}))
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]

        /// Random bytes, with or without a binary header: a 4xx with a message, never a
        /// panic or a 500.
        #[test]
        fn random_bodies_are_refused_cleanly(body in proptest::collection::vec(any::<u8>(), 0..600), split in proptest::option::of(0usize..700)) {
            let rt = runtime();
            let app = app();
            let headers: Vec<(&str, String)> = split.map(|n| (HEADER_LENGTH, n.to_string())).into_iter().collect();
            let r = rt.block_on(call(&app, "POST", "/v2/models/mlp/infer", &headers, body));
            prop_assert!(r.status.is_client_error(), "{}", r.status);
            prop_assert!(!r.error().is_empty());
        }

        /// Request-shaped JSON, possibly with trailing binary bytes: a correct answer or a
        /// 4xx, never a 500.
        #[test]
        fn request_shaped_json_is_answered_or_refused(req in request_like(), tail in proptest::collection::vec(any::<u8>(), 0..300)) {
            let rt = runtime();
            let app = app();
            let header = req.to_string();
            let mut body = header.clone().into_bytes();
            body.extend_from_slice(&tail);
            let r = rt.block_on(call(&app, "POST", "/v2/models/mlp/infer", &[(HEADER_LENGTH, header.len().to_string())], body));
            prop_assert!(r.status == StatusCode::OK || r.status.is_client_error(), "{} {}", r.status, String::from_utf8_lossy(&r.body));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trickling_body_is_timed_out_and_frees_the_server() {
    let app = router(
        server(),
        HttpConfig::default().with_body_timeout(Duration::from_millis(100)),
    );
    // Headers arrive, the body never does.
    let stalled = Body::from_stream(futures::stream::pending::<Result<Bytes, std::io::Error>>());
    // Bounded so that a missing timeout fails the test instead of hanging it.
    let r = tokio::time::timeout(
        Duration::from_secs(5),
        call(&app, "POST", "/v2/models/mlp/infer", &[], stalled),
    )
    .await
    .expect("answered, not left hanging");
    assert_eq!(r.status, StatusCode::REQUEST_TIMEOUT);
    assert!(
        r.error().contains("did not arrive within 100ms"),
        "{}",
        r.error()
    );
    assert_eq!(
        call(&app, "GET", "/v2/health/ready", &[], "").await.status,
        StatusCode::OK
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_answers_over_tcp_and_stops_gracefully() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(mlops_runtime::http::serve(listener, app(), async {
        let _ = stopped.await;
    }));
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    tcp.write_all(b"GET /v2/health/live HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut answer = String::new();
    tcp.read_to_string(&mut answer).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    stop.send(()).unwrap();
    let result = tokio::time::timeout(Duration::from_secs(5), server).await;
    assert!(matches!(result, Ok(Ok(Ok(())))), "{result:?}");
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "the listener is closed"
    );
}

/// `NaN`, `Infinity` and `-Infinity` are numbers to Triton and its clients (perf_analyzer
/// sends random bit patterns as JSON): accepted in, written back the same way out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_finite_numbers_travel_as_triton_writes_them() {
    let echo = ModelServer::new().with_runtime(ModelFormat::Onnx, Arc::new(EchoRuntime::new()));
    echo.load_path(&testdata("mlp.onnx"), ModelSpec::default())
        .unwrap();
    let app = router(Arc::new(echo), HttpConfig::default());
    let mut values = vec![
        "NaN".to_string(),
        "Infinity".into(),
        "-Infinity".into(),
        "1.5".into(),
    ];
    values.extend((4..64).map(|i| format!("{i}.25")));
    let body = format!(
        r#"{{"id":"nf","inputs":[{{"name":"x","shape":[1,64],"datatype":"FP32","parameters":{{"note":"NaN stays a string here"}},"data":[{}]}}]}}"#,
        values.join(",")
    );
    let reply = call(&app, "POST", "/v2/models/mlp/infer", &[], body).await;
    let text = String::from_utf8_lossy(&reply.body).into_owned();
    assert_eq!(reply.status, StatusCode::OK, "{text}");
    assert!(text.contains("[NaN,Infinity,-Infinity,1.5,4.25"), "{text}");
    assert!(
        !text.contains("null") && !text.contains("mlops-non-finite"),
        "{text}"
    );

    // A finite value beyond the datatype's range is refused, naming the element.
    let mut values: Vec<String> = (0..64).map(|_| "0.5".to_string()).collect();
    values[3] = "3.5e38".to_string();
    let body = format!(
        r#"{{"inputs":[{{"name":"x","shape":[1,64],"datatype":"FP32","data":[{}]}}]}}"#,
        values.join(",")
    );
    let reply = call(&app, "POST", "/v2/models/mlp/infer", &[], body).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert!(
        reply
            .error()
            .contains("element 3 (3.5e38) is outside the range of FP32"),
        "{}",
        reply.error()
    );

    // A bare NaN is no text: in a BYTES input it is a 400, not a string.
    let body = r#"{"inputs":[{"name":"x","shape":[1],"datatype":"BYTES","data":[NaN]}]}"#;
    let reply = call(&app, "POST", "/v2/models/mlp/infer", &[], body).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{}", reply.error());

    // A bare token is still a syntax error where a number cannot be, and a string "NaN" is
    // not a number.
    let body = r#"{"inputs":[{"name":"x","shape":[1,1],"datatype":"FP32","data":["NaN"]}]}"#;
    let reply = call(&app, "POST", "/v2/models/mlp/infer", &[], body).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{}", reply.error());
}

/// A body far larger than the shape it declares is refused at the first element too many,
/// not parsed whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_beyond_the_declared_shape_stops_the_parse() {
    let app = router(
        server(),
        HttpConfig::default().with_max_body_bytes(64 << 20),
    );
    let values: Vec<&str> = std::iter::repeat_n("0.5", 500_000).collect();
    let body = format!(
        r#"{{"inputs":[{{"name":"x","shape":[1,64],"datatype":"FP32","data":[{}]}}]}}"#,
        values.join(",")
    );
    let reply = call(&app, "POST", "/v2/models/mlp/infer", &[], body).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert!(
        reply
            .error()
            .contains("data holds more than the 64 elements its shape declares"),
        "{}",
        reply.error()
    );
}

/// Silent sockets are closed after the first-byte timeout, connections past the cap are
/// closed at once, and the server keeps answering through both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_and_surplus_connections_are_closed() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let limits = mlops_runtime::http::ConnectionLimits {
        first_byte_timeout: Duration::from_millis(300),
        max_connections: 8,
    };
    tokio::spawn(mlops_runtime::http::serve_with(
        listener,
        app(),
        limits,
        std::future::pending(),
    ));
    // Eight that never send a byte hold every slot...
    let mut silent = Vec::new();
    for _ in 0..8 {
        silent.push(tokio::net::TcpStream::connect(addr).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    // ...so a ninth is closed at once.
    let mut surplus = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut buf = [0u8; 16];
    let n = tokio::time::timeout(Duration::from_secs(2), surplus.read(&mut buf))
        .await
        .expect("closed, not left open")
        .unwrap_or(0);
    assert_eq!(n, 0, "a connection past the cap is closed");
    // After the timeout the silent ones are closed too...
    for mut s in silent {
        let n = tokio::time::timeout(Duration::from_secs(2), s.read(&mut buf))
            .await
            .expect("closed after the first-byte timeout")
            .unwrap_or(0);
        assert_eq!(n, 0);
    }
    // One that sends the start of HTTP/2's preface and stops is closed the same way.
    let mut partial = tokio::net::TcpStream::connect(addr).await.unwrap();
    partial.write_all(b"PRI * HT").await.unwrap();
    let n = tokio::time::timeout(Duration::from_secs(2), partial.read(&mut buf))
        .await
        .expect("closed inside the preface")
        .unwrap_or(0);
    assert_eq!(n, 0);
    // ...and a real request gets its answer.
    let mut client = tokio::net::TcpStream::connect(addr).await.unwrap();
    client
        .write_all(b"GET /v2/health/ready HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut answer = String::new();
    client.read_to_string(&mut answer).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

/// Bodies in flight share one budget: past it, a request is a 503 with `Retry-After` before
/// its body is read, and the budget comes back when the bodies are done.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_bodies_in_flight_share_one_budget() {
    let app = router(
        server(),
        HttpConfig::default()
            .with_max_body_bytes(1 << 20)
            .with_max_body_bytes_in_flight(2 << 20)
            .with_body_timeout(Duration::from_secs(5)),
    );
    // Two 1-MiB bodies that have not arrived hold the whole budget...
    let stalled = || {
        let mut req = Request::builder()
            .method("POST")
            .uri("/v2/models/mlp/infer")
            .header("content-length", (1 << 20).to_string());
        req = req.header("content-type", "application/json");
        req.body(Body::from_stream(futures::stream::pending::<
            Result<Bytes, std::io::Error>,
        >()))
        .unwrap()
    };
    let held: Vec<_> = (0..2)
        .map(|_| tokio::spawn(app.clone().oneshot(stalled())))
        .collect();
    tokio::time::sleep(Duration::from_millis(100)).await;
    // ...so a third is refused at once, saying when to come back.
    let body = serde_json::to_vec(&json!({"inputs": []})).unwrap();
    let resp = app
        .clone()
        .oneshot(
            Request::builder()
                .method("POST")
                .uri("/v2/models/mlp/infer")
                .header("content-length", body.len().to_string())
                .body(Body::from(body.clone()))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(resp.headers().get("retry-after").unwrap(), "1");
    // A body declared over the limit is refused before it is read, budget or not.
    let resp = app
        .clone()
        .oneshot(
            Request::builder()
                .method("POST")
                .uri("/v2/models/mlp/infer")
                .header("content-length", (2 << 20).to_string())
                .body(Body::from_stream(futures::stream::pending::<
                    Result<Bytes, std::io::Error>,
                >()))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE);
    // Health checks carry no body and still answer.
    assert_eq!(
        call(&app, "GET", "/v2/health/ready", &[], "").await.status,
        StatusCode::OK
    );
    // Once the stalled bodies give up, the budget is back.
    for h in held {
        h.abort();
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let r = call(&app, "POST", "/v2/models/mlp/infer", &[], body).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.error());
}

/// A load that fails because the server cannot read its own files is the server's fault
/// (500), not the request's (400).
#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_load_the_server_cannot_read_is_a_500() {
    let repo = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(repo.path().join("gone.onnx"), repo.path().join("lost.onnx"))
        .unwrap();
    let app = router(
        server(),
        HttpConfig::default().with_repository(repo.path(), ModelSpec::default()),
    );
    let r = call(&app, "POST", "/v2/repository/models/lost/load", &[], "").await;
    assert_eq!(r.status, StatusCode::INTERNAL_SERVER_ERROR, "{}", r.error());
    assert!(r.error().contains("lost.onnx"), "{}", r.error());
    // A model that is not there at all is still a 404.
    let r = call(&app, "POST", "/v2/repository/models/absent/load", &[], "").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.error());
}
