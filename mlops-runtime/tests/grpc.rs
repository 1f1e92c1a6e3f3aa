//! The Open Inference Protocol gRPC front end on 127.0.0.1, driven by the generated tonic
//! client and by NVIDIA's tritonclient.

// Test helpers may panic: a panic is a failed test.
#![allow(clippy::unwrap_used)]
#![cfg(all(feature = "grpc", feature = "ort"))]

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use mlops_core::testkit::{Golden, assert_close, testdata};
use mlops_core::{DataType, ModelFormat, Tensor};
use mlops_runtime::grpc::proto::grpc_inference_service_client::GrpcInferenceServiceClient;
use mlops_runtime::grpc::proto::model_infer_request::{
    InferInputTensor, InferRequestedOutputTensor,
};
use mlops_runtime::grpc::proto::{
    InferTensorContents, ModelInferRequest, ModelMetadataRequest, ServerLiveRequest,
};
use mlops_runtime::grpc::service;
use mlops_runtime::{ModelServer, ModelSpec, OrtOptions, OrtRuntime};
use tonic::Code;
use tonic::transport::Channel;

async fn start() -> SocketAddr {
    let ort = OrtRuntime::new(OrtOptions::default().with_intra_threads(1)).unwrap();
    let server = ModelServer::new().with_runtime(ModelFormat::Onnx, Arc::new(ort));
    for model in ["mlp.onnx", "cnn.onnx"] {
        server
            .load_path(&testdata(model), ModelSpec::default())
            .unwrap();
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let svc = service(Arc::new(server), None, ModelSpec::default());
    tokio::spawn(async move {
        tonic::transport::Server::builder()
            .add_service(svc)
            .serve_with_incoming(mlops_runtime::grpc::incoming(listener))
            .await
            .unwrap();
    });
    addr
}

async fn client(addr: SocketAddr) -> GrpcInferenceServiceClient<Channel> {
    GrpcInferenceServiceClient::connect(format!("http://{addr}"))
        .await
        .unwrap()
}

fn raw_request(model: &str, inputs: &[Tensor]) -> ModelInferRequest {
    ModelInferRequest {
        model_name: model.into(),
        id: "r1".into(),
        inputs: inputs
            .iter()
            .map(|t| InferInputTensor {
                name: t.name().into(),
                datatype: t.dtype().to_string(),
                shape: t.shape().iter().map(|&d| d as i64).collect(),
                ..Default::default()
            })
            .collect(),
        raw_input_contents: inputs.iter().map(|t| t.data().clone()).collect(),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_and_typed_contents_give_the_golden_outputs() {
    let addr = start().await;
    let mut c = client(addr).await;
    assert!(
        c.server_live(ServerLiveRequest {})
            .await
            .unwrap()
            .into_inner()
            .live
    );
    let meta = c
        .model_metadata(ModelMetadataRequest {
            name: "mlp".into(),
            version: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (meta.platform.as_str(), meta.inputs[0].shape.as_slice()),
        ("onnxruntime_onnx", &[-1i64, 64][..])
    );

    for model in ["mlp", "cnn"] {
        let golden = Golden::load(model).unwrap();
        let out = c
            .model_infer(raw_request(model, &golden.inputs))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            (
                out.model_name.as_str(),
                out.model_version.as_str(),
                out.id.as_str()
            ),
            (model, "1", "r1")
        );
        let o = &out.outputs[0];
        let y = Tensor::new(
            o.name.clone(),
            o.datatype.parse::<DataType>().unwrap(),
            o.shape.iter().map(|&d| d as usize).collect(),
            out.raw_output_contents[0].clone(),
        )
        .unwrap();
        assert_close(&y, &golden.outputs[0], 1e-4, 1e-3).unwrap();
    }

    // Typed contents, asking for the output by name.
    let golden = Golden::load("mlp").unwrap();
    let x = &golden.inputs[0];
    let mut req = raw_request("mlp", &golden.inputs);
    req.raw_input_contents.clear();
    req.inputs[0].contents = Some(InferTensorContents {
        fp32_contents: x.to_vec::<f32>().unwrap(),
        ..Default::default()
    });
    req.outputs = vec![InferRequestedOutputTensor {
        name: "y".into(),
        ..Default::default()
    }];
    let out = c.model_infer(req).await.unwrap().into_inner();
    let y = Tensor::new(
        "y",
        DataType::Fp32,
        vec![4, 16],
        out.raw_output_contents[0].clone(),
    )
    .unwrap();
    assert_close(&y, &golden.outputs[0], 1e-5, 1e-4).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_the_right_status() {
    let addr = start().await;
    let mut c = client(addr).await;
    let golden = Golden::load("mlp").unwrap();
    let mut cases: Vec<(&str, ModelInferRequest, Code, &str)> = Vec::new();
    cases.push((
        "unknown model",
        raw_request("bert", &golden.inputs),
        Code::NotFound,
        "model 'bert' is not loaded",
    ));
    let mut r = raw_request("mlp", &golden.inputs);
    r.raw_input_contents.push(Bytes::from_static(b"x"));
    cases.push((
        "raw count",
        r,
        Code::InvalidArgument,
        "1 inputs but 2 raw_input_contents",
    ));
    let mut r = raw_request("mlp", &golden.inputs);
    r.raw_input_contents[0] = r.raw_input_contents[0].slice(..100);
    cases.push((
        "raw size",
        r,
        Code::InvalidArgument,
        "data holds 100 bytes but shape [4, 64] of FP32 needs 1024",
    ));
    let mut r = raw_request("mlp", &golden.inputs);
    r.inputs[0].datatype = "INT32".into();
    cases.push(("wrong datatype", r, Code::InvalidArgument, "input 'x'"));
    let mut r = raw_request("mlp", &golden.inputs);
    r.outputs = vec![InferRequestedOutputTensor {
        name: "z".into(),
        ..Default::default()
    }];
    cases.push((
        "unknown output",
        r,
        Code::InvalidArgument,
        "has no output 'z'",
    ));
    let mut r = raw_request("mlp", &golden.inputs);
    r.model_version = "x".into();
    cases.push((
        "bad version",
        r,
        Code::InvalidArgument,
        "not a model version",
    ));
    let mut r = raw_request("mlp", &golden.inputs);
    r.inputs[0].shape = vec![-4, 64];
    cases.push(("negative dimension", r, Code::InvalidArgument, "negative"));
    let mut r = raw_request("mlp", &golden.inputs);
    r.raw_input_contents.clear();
    r.inputs[0].datatype = "FP16".into();
    cases.push((
        "fp16 typed",
        r,
        Code::InvalidArgument,
        "send raw_input_contents",
    ));
    for (what, req, code, needle) in cases {
        let status = c.model_infer(req).await.unwrap_err();
        assert_eq!(status.code(), code, "{what}: {status:?}");
        assert!(
            status.message().contains(needle),
            "{what}: {:?} lacks {needle:?}",
            status.message()
        );
    }
}

/// NVIDIA's tritonclient over gRPC gets the golden outputs back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tritonclient_grpc_gets_the_golden_outputs() {
    let Some(python) = std::env::var_os("MLOPS_TEST_PYTHON") else {
        assert!(
            std::env::var_os("CI").is_none(),
            "MLOPS_TEST_PYTHON must be set in CI (scripts/test.sh sets it)"
        );
        println!("skipped: MLOPS_TEST_PYTHON is not set (scripts/test.sh sets it)");
        return;
    };
    let addr = start().await;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/clients/oip_grpc.py");
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
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        report["checked"],
        serde_json::json!([
            "tritonclient grpc config mlp",
            "tritonclient grpc mlp",
            "tritonclient grpc config cnn",
            "tritonclient grpc cnn",
            "tritonclient grpc error",
            "tritonclient grpc statistics",
        ])
    );
}

/// Silent sockets are closed after the first-byte timeout and connections past the cap as
/// they arrive; a real client is still answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_and_surplus_connections_are_closed() {
    use tokio::io::AsyncReadExt;
    let server = ModelServer::new();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let limits = mlops_runtime::ConnectionLimits {
        first_byte_timeout: std::time::Duration::from_millis(300),
        max_connections: 4,
    };
    let svc = service(Arc::new(server), None, ModelSpec::default());
    tokio::spawn(async move {
        tonic::transport::Server::builder()
            .add_service(svc)
            .serve_with_incoming(mlops_runtime::grpc::incoming_with(listener, limits))
            .await
            .unwrap();
    });
    let mut silent = Vec::new();
    for _ in 0..4 {
        silent.push(tokio::net::TcpStream::connect(addr).await.unwrap());
    }
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    let mut buf = [0u8; 16];
    let mut surplus = tokio::net::TcpStream::connect(addr).await.unwrap();
    let n = tokio::time::timeout(std::time::Duration::from_secs(2), surplus.read(&mut buf))
        .await
        .expect("closed, not left open")
        .unwrap_or(0);
    assert_eq!(n, 0, "a connection past the cap is closed");
    for mut s in silent {
        let n = tokio::time::timeout(std::time::Duration::from_secs(2), s.read(&mut buf))
            .await
            .expect("closed after the first-byte timeout")
            .unwrap_or(0);
        assert_eq!(n, 0);
    }
    let mut c = client(addr).await;
    assert!(
        c.server_live(ServerLiveRequest {})
            .await
            .unwrap()
            .into_inner()
            .live
    );
}
