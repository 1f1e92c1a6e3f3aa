//! The Open Inference Protocol front ends under load, client and server in one process on
//! 127.0.0.1 (so they share the machine's cores): saturated throughput and p50/p99
//! latency over HTTP with JSON tensors, HTTP with binary tensors, and gRPC with raw
//! contents, against the same model called in process, at concurrency 1, 4, 16, 64.
//! Also the cost of the protocol itself: decoding and encoding one MLP request in JSON.
//!
//! ```text
//! cargo bench --bench serving --features http,grpc
//! MLOPS_BENCH_IDLE_SPIN_US=0 cargo bench --bench serving --features http,grpc -- cnn/
//! ```
//!
//! `MLOPS_BENCH_IDLE_SPIN_US` sets the batcher's idle spin (default 50 µs); a filter
//! argument limits the latency passes to the benchmarks it selects.

use std::hint::black_box;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client as HttpClient;
use hyper_util::rt::TokioExecutor;
use mlops::core::testkit::{Golden, testdata};
use mlops::core::{ModelFormat, Tensor};
use mlops::runtime::grpc::proto::ModelInferRequest;
use mlops::runtime::grpc::proto::grpc_inference_service_client::GrpcInferenceServiceClient;
use mlops::runtime::grpc::proto::model_infer_request::InferInputTensor;
use mlops::runtime::http::codec::{decode_request, encode_response};
use mlops::runtime::http::{HEADER_LENGTH, HttpConfig, router};
use mlops::runtime::{ModelServer, ModelSpec, OrtOptions, OrtRuntime};
use tokio::runtime::Runtime;

const DEVICE: &str = "cpu";
const CONCURRENCY: [usize; 4] = [1, 4, 16, 64];

fn rt() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// Whether criterion's command-line filter (the first argument that is not a flag)
/// selects a benchmark id.
fn selected(id: &str) -> bool {
    std::env::args()
        .skip(1)
        .find(|a| !a.starts_with('-'))
        .is_none_or(|filter| id.contains(&filter))
}

/// How the bench serves: `MLOPS_BENCH_IDLE_SPIN_US` overrides the batcher's idle spin.
fn spec() -> ModelSpec {
    let mut batcher = mlops::runtime::BatcherConfig::default();
    if let Some(us) = std::env::var("MLOPS_BENCH_IDLE_SPIN_US")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        batcher = batcher.with_idle_spin(Duration::from_micros(us));
    }
    ModelSpec::default().with_batcher(batcher)
}

/// One row of the model's golden input.
fn one_row(model: &str) -> Vec<Tensor> {
    let golden = Golden::load(model).expect("golden");
    let x = &golden.inputs[0];
    let rest = x.shape()[0] - 1;
    vec![x.split_batch(&[1, rest]).expect("split").remove(0)]
}

fn json_body(inputs: &[Tensor]) -> Bytes {
    let inputs: Vec<serde_json::Value> = inputs
        .iter()
        .map(|t| {
            serde_json::json!({"name": t.name(), "datatype": "FP32", "shape": t.shape(),
                "data": t.to_vec::<f32>().expect("fp32")})
        })
        .collect();
    Bytes::from(serde_json::json!({ "inputs": inputs }).to_string())
}

fn binary_body(inputs: &[Tensor]) -> (Bytes, usize) {
    let header = serde_json::json!({
        "inputs": inputs.iter().map(|t| serde_json::json!({"name": t.name(), "datatype": "FP32",
            "shape": t.shape(), "parameters": {"binary_data_size": t.data().len()}})).collect::<Vec<_>>(),
        "parameters": {"binary_data_output": true},
    })
    .to_string();
    let mut body = header.clone().into_bytes();
    for t in inputs {
        body.extend_from_slice(t.data());
    }
    (Bytes::from(body), header.len())
}

fn grpc_request(model: &str, inputs: &[Tensor]) -> ModelInferRequest {
    ModelInferRequest {
        model_name: model.into(),
        inputs: inputs
            .iter()
            .map(|t| InferInputTensor {
                name: t.name().into(),
                datatype: "FP32".into(),
                shape: t.shape().iter().map(|&d| d as i64).collect(),
                ..Default::default()
            })
            .collect(),
        raw_input_contents: inputs.iter().map(|t| t.data().clone()).collect(),
        ..Default::default()
    }
}

#[derive(Clone)]
enum Protocol {
    InProcess(Arc<ModelServer>),
    HttpJson(
        HttpClient<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>,
        String,
        Bytes,
    ),
    HttpBinary(
        HttpClient<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>,
        String,
        Bytes,
        usize,
    ),
    /// One client per connection; caller `i` uses connection `i % len`.
    Grpc(
        Vec<GrpcInferenceServiceClient<tonic::transport::Channel>>,
        ModelInferRequest,
    ),
}

impl Protocol {
    fn name(&self) -> &'static str {
        match self {
            Protocol::InProcess(_) => "in_process",
            Protocol::HttpJson(..) => "http_json",
            Protocol::HttpBinary(..) => "http_binary",
            Protocol::Grpc(..) => "grpc",
        }
    }

    async fn once(&self, model: &str, inputs: &[Tensor], caller: usize) {
        match self {
            Protocol::InProcess(server) => {
                black_box(
                    server
                        .infer(model, None, inputs.to_vec())
                        .await
                        .expect("infer"),
                );
            }
            Protocol::HttpJson(client, url, body) => {
                let req = hyper::Request::post(url.as_str())
                    .header("content-type", "application/json")
                    .body(Full::new(body.clone()))
                    .expect("request");
                let resp = client.request(req).await.expect("http");
                assert!(resp.status().is_success());
                black_box(resp.into_body().collect().await.expect("body").to_bytes());
            }
            Protocol::HttpBinary(client, url, body, n) => {
                let req = hyper::Request::post(url.as_str())
                    .header(HEADER_LENGTH, n.to_string())
                    .body(Full::new(body.clone()))
                    .expect("request");
                let resp = client.request(req).await.expect("http");
                assert!(resp.status().is_success());
                black_box(resp.into_body().collect().await.expect("body").to_bytes());
            }
            Protocol::Grpc(clients, request) => {
                let mut c = clients[caller % clients.len()].clone();
                black_box(c.model_infer(request.clone()).await.expect("grpc"));
            }
        }
    }
}

/// Runs `total` requests with `concurrency` callers; returns each request's latency.
async fn drive(
    p: &Protocol,
    model: &str,
    inputs: &[Tensor],
    concurrency: usize,
    total: usize,
) -> Vec<Duration> {
    let per = total.div_ceil(concurrency);
    let tasks: Vec<_> = (0..concurrency)
        .map(|caller| {
            let (p, model, inputs) = (p.clone(), model.to_owned(), inputs.to_vec());
            tokio::spawn(async move {
                let mut lat = Vec::with_capacity(per);
                for _ in 0..per {
                    let t = Instant::now();
                    p.once(&model, &inputs, caller).await;
                    lat.push(t.elapsed());
                }
                lat
            })
        })
        .collect();
    let mut all = Vec::with_capacity(total);
    for t in tasks {
        all.extend(t.await.expect("task"));
    }
    all
}

fn start_servers(rt: &Runtime) -> (Arc<ModelServer>, SocketAddr, SocketAddr) {
    let ort = OrtRuntime::new(OrtOptions::default().with_intra_threads(1)).expect("ONNX Runtime");
    let server = Arc::new(ModelServer::new().with_runtime(ModelFormat::Onnx, Arc::new(ort)));
    for m in ["mlp.onnx", "cnn.onnx"] {
        server.load_path(&testdata(m), spec()).expect("load");
    }
    let (http, grpc) = rt.block_on(async {
        let http = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let grpc = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let (ha, ga) = (
            http.local_addr().expect("addr"),
            grpc.local_addr().expect("addr"),
        );
        let app = router(server.clone(), HttpConfig::default());
        tokio::spawn(async move {
            mlops::runtime::http::serve(http, app, std::future::pending())
                .await
                .expect("http")
        });
        let svc = mlops::runtime::grpc::service(server.clone(), None, ModelSpec::default());
        tokio::spawn(async move {
            tonic::transport::Server::builder()
                .add_service(svc)
                .serve_with_incoming(mlops::runtime::grpc::incoming(grpc))
                .await
                .expect("grpc")
        });
        (ha, ga)
    });
    (server, http, grpc)
}

fn protocols(c: &mut Criterion) {
    let rt = rt();
    let (server, http, grpc) = start_servers(&rt);
    let mut connector = hyper_util::client::legacy::connect::HttpConnector::new();
    connector.set_nodelay(true);
    let http_client = HttpClient::builder(TokioExecutor::new()).build::<_, Full<Bytes>>(connector);
    // Like HTTP/1.1's connection pool, gRPC gets several connections (HTTP/2 multiplexes
    // streams on one, but one connection is served by one task).
    let grpc_clients: Vec<_> = rt.block_on(async {
        let mut clients = Vec::new();
        for _ in 0..4 {
            let channel = tonic::transport::Endpoint::from_shared(format!("http://{grpc}"))
                .expect("endpoint")
                .tcp_nodelay(true)
                .connect()
                .await
                .expect("connect");
            clients.push(GrpcInferenceServiceClient::new(channel));
        }
        clients
    });
    for model in ["mlp", "cnn"] {
        let inputs = one_row(model);
        let url = format!("http://{http}/v2/models/{model}/infer");
        let (bin, n) = binary_body(&inputs);
        let variants = [
            Protocol::InProcess(server.clone()),
            Protocol::HttpJson(http_client.clone(), url.clone(), json_body(&inputs)),
            Protocol::HttpBinary(http_client.clone(), url.clone(), bin, n),
            Protocol::Grpc(grpc_clients.clone(), grpc_request(model, &inputs)),
        ];
        for p in &variants {
            let mut group = c.benchmark_group(format!("{DEVICE}/serving/{model}/{}", p.name()));
            group.warm_up_time(Duration::from_secs(1));
            group.measurement_time(Duration::from_secs(3));
            for concurrency in CONCURRENCY {
                let batch = concurrency * 8;
                group.throughput(Throughput::Elements(batch as u64));
                group.bench_with_input(
                    BenchmarkId::new("concurrency", concurrency),
                    &concurrency,
                    |b, &cc| b.to_async(&rt).iter(|| drive(p, model, &inputs, cc, batch)),
                );
                // Latency percentiles over 2,000 requests at this concurrency (for the
                // benchmarks the command line selects).
                let id = format!(
                    "{DEVICE}/serving/{model}/{}/concurrency/{concurrency}",
                    p.name()
                );
                if !selected(&id) {
                    continue;
                }
                let mut lat = rt.block_on(drive(p, model, &inputs, concurrency, 2000));
                lat.sort_unstable();
                let at = |q: f64| lat[((lat.len() - 1) as f64 * q) as usize];
                eprintln!(
                    "{DEVICE}/serving/{model}/{}/concurrency/{concurrency}: p50 {:?} p99 {:?}",
                    p.name(),
                    at(0.5),
                    at(0.99)
                );
            }
            group.finish();
        }
    }
}

/// Decoding a one-row MLP request from JSON and encoding its response: the protocol's own
/// cost, without the network or the model.
fn protocol_cost(c: &mut Criterion) {
    let inputs = one_row("mlp");
    let body = json_body(&inputs);
    let golden = Golden::load("mlp").expect("golden");
    let output = golden.outputs[0]
        .split_batch(&[1, 3])
        .expect("split")
        .remove(0);
    let mut group = c.benchmark_group(format!("{DEVICE}/serving/protocol/mlp_json"));
    group.bench_function("decode", |b| {
        b.iter(|| black_box(decode_request(body.clone(), None).expect("decode")))
    });
    group.bench_function("encode", |b| {
        b.iter(|| {
            black_box(
                encode_response("mlp", 1, None, std::slice::from_ref(&output), &[false])
                    .expect("encode"),
            )
        })
    });
    group.bench_function("decode_and_encode", |b| {
        b.iter(|| {
            black_box(decode_request(body.clone(), None).expect("decode"));
            black_box(
                encode_response("mlp", 1, None, std::slice::from_ref(&output), &[false])
                    .expect("encode"),
            )
        })
    });
    group.finish();
}

criterion_group!(benches, protocol_cost, protocols);
criterion_main!(benches);
