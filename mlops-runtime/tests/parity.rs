//! Both front ends asked the same questions over one server give the same answers:
//! server and model metadata, Triton's configuration, statistics, the repository index,
//! loads and unloads, and errors (their kind and message). The HTTP front end is called in
//! process; the gRPC one over 127.0.0.1 with the generated client. Each gRPC answer is
//! written in the HTTP front end's JSON, field by field, and the two must be equal.

// Test helpers may panic: a panic is a failed test.
#![allow(clippy::unwrap_used)]
#![cfg(all(feature = "http", feature = "grpc", feature = "ort"))]

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use mlops_core::testkit::{Golden, testdata};
use mlops_core::{ModelFormat, Tensor};
use mlops_runtime::grpc::proto::grpc_inference_service_client::GrpcInferenceServiceClient;
use mlops_runtime::grpc::proto::{self, model_infer_request::InferRequestedOutputTensor};
use mlops_runtime::grpc::{code_of, infer_request, service_for};
use mlops_runtime::http::{HttpConfig, router};
use mlops_runtime::protocol::{DirectoryRepository, Protocol, Repository};
use mlops_runtime::{BatcherConfig, ModelServer, ModelSpec, OrtOptions, OrtRuntime};
use serde_json::{Value, json};
use tonic::transport::Channel;
use tower::ServiceExt;

type Grpc = GrpcInferenceServiceClient<Channel>;

struct Both {
    http: Router,
    grpc: Grpc,
}

/// A server with `mlp` loaded, over a repository that also holds `cnn`; with
/// `repository: false`, no model control.
async fn start(repository: bool) -> (Both, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    for model in ["mlp.onnx", "cnn.onnx"] {
        std::fs::copy(testdata(model), dir.path().join(model)).unwrap();
    }
    let ort = OrtRuntime::new(OrtOptions::default().with_intra_threads(1)).unwrap();
    let server = Arc::new(ModelServer::new().with_runtime(ModelFormat::Onnx, Arc::new(ort)));
    let spec = ModelSpec {
        batcher: BatcherConfig::default()
            .with_max_batch_size(8)
            .with_preferred_batch_sizes(vec![4, 8])
            .with_max_queue_delay(Duration::from_micros(250)),
        ..ModelSpec::default()
    };
    server
        .load_path(&dir.path().join("mlp.onnx"), spec.clone())
        .unwrap();
    let mut config = HttpConfig::default();
    let mut protocol = Protocol::new(server.clone());
    if repository {
        let repo: Arc<dyn Repository> = Arc::new(DirectoryRepository::new(dir.path(), spec));
        config = config.with_model_repository(repo.clone());
        protocol = protocol.with_repository(repo);
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let svc = service_for(protocol);
    tokio::spawn(async move {
        tonic::transport::Server::builder()
            .add_service(svc)
            .serve_with_incoming(mlops_runtime::grpc::incoming(listener))
            .await
            .unwrap();
    });
    let grpc = GrpcInferenceServiceClient::connect(format!("http://{addr}"))
        .await
        .unwrap();
    (
        Both {
            http: router(server, config),
            grpc,
        },
        dir,
    )
}

/// An HTTP answer: its status and its JSON body (`null` when empty).
async fn http(app: &Router, method: &str, uri: &str, body: Value) -> (StatusCode, Value) {
    let body = if body.is_null() {
        Body::empty()
    } else {
        Body::from(body.to_string())
    };
    let response = app
        .clone()
        .oneshot(
            Request::builder()
                .method(method)
                .uri(uri)
                .body(body)
                .unwrap(),
        )
        .await
        .unwrap();
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let json = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes).unwrap()
    };
    (status, json)
}

/// An HTTP error as (status, message); panics on a success.
async fn http_error(app: &Router, method: &str, uri: &str) -> (u16, String) {
    let (status, body) = http(app, method, uri, Value::Null).await;
    assert!(!status.is_success(), "{uri}: {status} {body}");
    (status.as_u16(), body["error"].as_str().unwrap().to_owned())
}

/// A gRPC error as the HTTP status its code stands for, and its message.
fn grpc_error<T: std::fmt::Debug>(
    answer: Result<tonic::Response<T>, tonic::Status>,
) -> (u16, String) {
    let status = answer.unwrap_err();
    (
        code_of(status.code()).http_status(),
        status.message().to_owned(),
    )
}

fn tensors_json(ts: &[proto::model_metadata_response::TensorMetadata]) -> Value {
    ts.iter()
        .map(|t| json!({ "name": t.name, "datatype": t.datatype, "shape": t.shape }))
        .collect()
}

fn metadata_json(m: proto::ModelMetadataResponse) -> Value {
    json!({
        "name": m.name,
        "versions": m.versions,
        "platform": m.platform,
        "inputs": tensors_json(&m.inputs),
        "outputs": tensors_json(&m.outputs),
    })
}

fn type_name(data_type: i32) -> &'static str {
    proto::DataType::try_from(data_type).unwrap().as_str_name()
}

fn config_json(c: proto::ModelConfig) -> Value {
    let group = &c.instance_group[0];
    let mut config = json!({
        "name": c.name,
        "platform": c.platform,
        "max_batch_size": c.max_batch_size,
        "input": c.input.iter().map(|t| json!({ "name": t.name, "data_type": type_name(t.data_type), "dims": t.dims })).collect::<Vec<_>>(),
        "output": c.output.iter().map(|t| json!({ "name": t.name, "data_type": type_name(t.data_type), "dims": t.dims })).collect::<Vec<_>>(),
        "version_policy": { "specific": { "versions": c.version_policy.unwrap().specific.unwrap().versions } },
        "instance_group": [{
            "name": group.name,
            "count": group.count,
            "kind": proto::model_instance_group::Kind::try_from(group.kind).unwrap().as_str_name(),
        }],
    });
    if let Some(b) = c.dynamic_batching {
        config.as_object_mut().unwrap().insert(
            "dynamic_batching".into(),
            json!({
                "preferred_batch_size": b.preferred_batch_size,
                "max_queue_delay_microseconds": b.max_queue_delay_microseconds,
            }),
        );
    }
    config
}

fn duration_json(d: Option<proto::StatisticDuration>) -> Value {
    let d = d.unwrap();
    json!({ "count": d.count, "ns": d.ns })
}

fn statistics_json(s: proto::ModelStatisticsResponse) -> Value {
    let stats: Vec<Value> = s
        .model_stats
        .into_iter()
        .map(|m| {
            let i = m.inference_stats.unwrap();
            json!({
                "name": m.name,
                "version": m.version,
                "last_inference": m.last_inference,
                "inference_count": m.inference_count,
                "execution_count": m.execution_count,
                "inference_stats": {
                    "success": duration_json(i.success),
                    "fail": duration_json(i.fail),
                    "queue": duration_json(i.queue),
                    "compute_input": duration_json(i.compute_input),
                    "compute_infer": duration_json(i.compute_infer),
                    "compute_output": duration_json(i.compute_output),
                    "cache_hit": duration_json(i.cache_hit),
                    "cache_miss": duration_json(i.cache_miss),
                },
                "batch_stats": m.batch_stats.into_iter().map(|b| json!({
                    "batch_size": b.batch_size,
                    "compute_infer": duration_json(b.compute_infer),
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    json!({ "model_stats": stats })
}

fn index_json(r: proto::RepositoryIndexResponse) -> Value {
    r.models
        .into_iter()
        .map(|m| {
            let mut entry = json!({ "name": m.name, "state": m.state });
            if !m.version.is_empty() {
                entry["version"] = Value::String(m.version);
            }
            if !m.reason.is_empty() {
                entry["reason"] = Value::String(m.reason);
            }
            entry
        })
        .collect()
}

fn metadata_request(name: &str, version: &str) -> proto::ModelMetadataRequest {
    proto::ModelMetadataRequest {
        name: name.into(),
        version: version.into(),
    }
}

async fn grpc_index(grpc: &mut Grpc, ready: bool) -> Value {
    index_json(
        grpc.repository_index(proto::RepositoryIndexRequest {
            ready,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner(),
    )
}

fn json_inputs(inputs: &[Tensor]) -> Value {
    let inputs: Vec<Value> = inputs
        .iter()
        .map(|t| {
            json!({
                "name": t.name(),
                "datatype": t.dtype().to_string(),
                "shape": t.shape(),
                "data": t.to_vec::<f32>().unwrap(),
            })
        })
        .collect();
    json!({ "inputs": inputs })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_and_configuration_are_the_same_on_both() {
    let (mut both, _dir) = start(true).await;

    let (status, meta) = http(&both.http, "GET", "/v2", Value::Null).await;
    assert_eq!(status, StatusCode::OK);
    let g = both
        .grpc
        .server_metadata(proto::ServerMetadataRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        meta,
        json!({ "name": g.name, "version": g.version, "extensions": g.extensions })
    );
    assert_eq!(
        meta["extensions"],
        json!([
            "binary_tensor_data",
            "statistics",
            "model_configuration",
            "model_repository"
        ])
    );

    for (uri, version) in [("/v2/models/mlp", ""), ("/v2/models/mlp/versions/1", "1")] {
        let (status, h) = http(&both.http, "GET", uri, Value::Null).await;
        assert_eq!(status, StatusCode::OK);
        let g = both
            .grpc
            .model_metadata(metadata_request("mlp", version))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(h, metadata_json(g), "{uri}");
        assert_eq!(h["inputs"][0]["shape"], json!([-1, 64]));
    }

    let (status, h) = http(&both.http, "GET", "/v2/models/mlp/config", Value::Null).await;
    assert_eq!(status, StatusCode::OK);
    let g = both
        .grpc
        .model_config(proto::ModelConfigRequest {
            name: "mlp".into(),
            version: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .config
        .unwrap();
    assert_eq!(h, config_json(g));
    assert_eq!(
        h["dynamic_batching"],
        json!({ "preferred_batch_size": [4, 8], "max_queue_delay_microseconds": 250 })
    );
    assert_eq!(h["input"][0]["dims"], json!([64]), "no batch dimension");

    // Readiness: the same for what is served. For a model not served, HTTP answers 404
    // and gRPC `ready: false`, as Triton does.
    for (name, version, ready) in [
        ("mlp", "", true),
        ("mlp", "1", true),
        ("mlp", "2", false),
        ("bert", "", false),
    ] {
        let uri = if version.is_empty() {
            format!("/v2/models/{name}/ready")
        } else {
            format!("/v2/models/{name}/versions/{version}/ready")
        };
        let (status, _) = http(&both.http, "GET", &uri, Value::Null).await;
        let g = both
            .grpc
            .model_ready(proto::ModelReadyRequest {
                name: name.into(),
                version: version.into(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!((status == StatusCode::OK, g.ready), (ready, ready), "{uri}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_have_the_same_kind_and_message_on_both() {
    let (mut both, _dir) = start(true).await;
    let golden = Golden::load("mlp").unwrap();

    // Unknown model, unknown version, a version that is not one.
    for (name, version, uri) in [
        ("bert", "", "/v2/models/bert"),
        ("mlp", "2", "/v2/models/mlp/versions/2"),
        ("mlp", "0", "/v2/models/mlp/versions/0"),
        ("mlp", "x", "/v2/models/mlp/versions/x"),
    ] {
        let h = http_error(&both.http, "GET", uri).await;
        let g = grpc_error(
            both.grpc
                .model_metadata(metadata_request(name, version))
                .await,
        );
        assert_eq!(h, g, "{uri}");
        let h = http_error(&both.http, "GET", &format!("{uri}/config")).await;
        let g = grpc_error(
            both.grpc
                .model_config(proto::ModelConfigRequest {
                    name: name.into(),
                    version: version.into(),
                })
                .await,
        );
        assert_eq!(h, g, "{uri}/config");
        let h = http_error(&both.http, "GET", &format!("{uri}/stats")).await;
        let g = grpc_error(
            both.grpc
                .model_statistics(proto::ModelStatisticsRequest {
                    name: name.into(),
                    version: version.into(),
                })
                .await,
        );
        assert_eq!(h, g, "{uri}/stats");
    }
    let (status, message) = http_error(&both.http, "GET", "/v2/models/bert").await;
    assert_eq!(
        (status, message.as_str()),
        (404, "model 'bert' is not loaded")
    );

    // Inference that the model refuses: an output it lacks, a wrong data type, a model
    // not served.
    let input = &golden.inputs[0];
    let mut body = json_inputs(&golden.inputs);
    body["outputs"] = json!([{ "name": "nope" }]);
    let (status, h) = http(&both.http, "POST", "/v2/models/mlp/infer", body).await;
    let mut request = infer_request("mlp", None, &golden.inputs);
    request.outputs = vec![InferRequestedOutputTensor {
        name: "nope".into(),
        ..Default::default()
    }];
    let g = grpc_error(both.grpc.model_infer(request).await);
    assert_eq!(
        (status.as_u16(), h["error"].as_str().unwrap().to_owned()),
        g
    );
    assert_eq!(g, (400, "model 'mlp' has no output 'nope'".into()));

    let wide = Tensor::from_vec(
        input.name(),
        input.shape().to_vec(),
        input
            .to_vec::<f32>()
            .unwrap()
            .into_iter()
            .map(f64::from)
            .collect::<Vec<_>>(),
    )
    .unwrap();
    let (status, h) = http(
        &both.http,
        "POST",
        "/v2/models/mlp/infer",
        json!({ "inputs": [{ "name": wide.name(), "datatype": "FP64", "shape": wide.shape(), "data": wide.to_vec::<f64>().unwrap() }] }),
    )
    .await;
    let g = grpc_error(
        both.grpc
            .model_infer(infer_request("mlp", None, std::slice::from_ref(&wide)))
            .await,
    );
    assert_eq!(
        (status.as_u16(), h["error"].as_str().unwrap().to_owned()),
        g
    );
    assert_eq!(g.0, 400);

    let (status, h) = http(
        &both.http,
        "POST",
        "/v2/models/bert/infer",
        json_inputs(&golden.inputs),
    )
    .await;
    let g = grpc_error(
        both.grpc
            .model_infer(infer_request("bert", None, &golden.inputs))
            .await,
    );
    assert_eq!(
        (status.as_u16(), h["error"].as_str().unwrap().to_owned()),
        g
    );
    assert_eq!(g.0, 404);

    // Loads that cannot be: no such model, a name that is not one.
    for name in ["bert", "..%2Fetc"] {
        let h = http_error(
            &both.http,
            "POST",
            &format!("/v2/repository/models/{name}/load"),
        )
        .await;
        let g = grpc_error(
            both.grpc
                .repository_model_load(proto::RepositoryModelLoadRequest {
                    model_name: name.replace("%2F", "/"),
                    ..Default::default()
                })
                .await,
        );
        assert_eq!(h, g, "{name}");
    }
    let h = http_error(&both.http, "POST", "/v2/repository/models/bert/unload").await;
    let g = grpc_error(
        both.grpc
            .repository_model_unload(proto::RepositoryModelUnloadRequest {
                model_name: "bert".into(),
                ..Default::default()
            })
            .await,
    );
    assert_eq!(h, g);
    assert_eq!(h.0, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statistics_and_the_repository_index_are_the_same_on_both() {
    let (mut both, _dir) = start(true).await;
    let golden = Golden::load("mlp").unwrap();
    // Three requests on each front end.
    for _ in 0..3 {
        let (status, _) = http(
            &both.http,
            "POST",
            "/v2/models/mlp/infer",
            json_inputs(&golden.inputs),
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        both.grpc
            .model_infer(infer_request("mlp", None, &golden.inputs))
            .await
            .unwrap();
    }
    for (uri, name, version) in [
        ("/v2/models/stats", "", ""),
        ("/v2/models/mlp/stats", "mlp", ""),
        ("/v2/models/mlp/versions/1/stats", "mlp", "1"),
    ] {
        let (status, h) = http(&both.http, "GET", uri, Value::Null).await;
        assert_eq!(status, StatusCode::OK);
        let g = both
            .grpc
            .model_statistics(proto::ModelStatisticsRequest {
                name: name.into(),
                version: version.into(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(h, statistics_json(g), "{uri}");
        assert_eq!(
            h["model_stats"][0]["inference_stats"]["success"]["count"],
            json!(6)
        );
    }

    let index = |h: Value| h;
    let (_, h) = http(&both.http, "POST", "/v2/repository/index", Value::Null).await;
    assert_eq!(h, grpc_index(&mut both.grpc, false).await);
    assert_eq!(
        index(h),
        json!([{ "name": "mlp", "version": "1", "state": "READY" }, { "name": "cnn", "state": "UNAVAILABLE" }])
    );
    let (_, h) = http(
        &both.http,
        "POST",
        "/v2/repository/index",
        json!({ "ready": true }),
    )
    .await;
    assert_eq!(h, grpc_index(&mut both.grpc, true).await);
    assert_eq!(
        h,
        json!([{ "name": "mlp", "version": "1", "state": "READY" }])
    );

    // Loaded over gRPC: both index it as ready; unloaded over HTTP: neither does.
    both.grpc
        .repository_model_load(proto::RepositoryModelLoadRequest {
            model_name: "cnn".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let (_, h) = http(&both.http, "POST", "/v2/repository/index", Value::Null).await;
    assert_eq!(h, grpc_index(&mut both.grpc, false).await);
    assert_eq!(
        h,
        json!([{ "name": "cnn", "version": "1", "state": "READY" }, { "name": "mlp", "version": "1", "state": "READY" }])
    );
    let (status, _) = http(
        &both.http,
        "POST",
        "/v2/repository/models/cnn/unload",
        Value::Null,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let (_, h) = http(&both.http, "POST", "/v2/repository/index", Value::Null).await;
    assert_eq!(h, grpc_index(&mut both.grpc, false).await);
    assert_eq!(
        h,
        json!([{ "name": "mlp", "version": "1", "state": "READY" }, { "name": "cnn", "state": "UNAVAILABLE" }])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_repository_both_refuse_model_control_alike() {
    let (mut both, _dir) = start(false).await;
    let (_, meta) = http(&both.http, "GET", "/v2", Value::Null).await;
    assert_eq!(
        meta["extensions"],
        json!(["binary_tensor_data", "statistics", "model_configuration"])
    );
    for action in ["load", "unload"] {
        let h = http_error(
            &both.http,
            "POST",
            &format!("/v2/repository/models/mlp/{action}"),
        )
        .await;
        let g = if action == "load" {
            grpc_error(
                both.grpc
                    .repository_model_load(proto::RepositoryModelLoadRequest {
                        model_name: "mlp".into(),
                        ..Default::default()
                    })
                    .await,
            )
        } else {
            grpc_error(
                both.grpc
                    .repository_model_unload(proto::RepositoryModelUnloadRequest {
                        model_name: "mlp".into(),
                        ..Default::default()
                    })
                    .await,
            )
        };
        assert_eq!(h, g, "{action}");
        assert_eq!(
            h,
            (
                400,
                "model control is disabled: this server has no model repository".into()
            )
        );
    }
    // Still served: a refused unload changes nothing.
    let (_, h) = http(&both.http, "POST", "/v2/repository/index", Value::Null).await;
    assert_eq!(h, grpc_index(&mut both.grpc, false).await);
    assert_eq!(
        h,
        json!([{ "name": "mlp", "version": "1", "state": "READY" }])
    );
}
