//! The load generator, its targets and its inputs, against real models and real servers
//! on 127.0.0.1.

use std::sync::Arc;
use std::time::Duration;

use mlops_core::testkit::{Golden, testdata};
use mlops_core::{ModelFormat, ModelManifest, Tensor};
use mlops_profile::input::{self, InputOptions, RequestSet};
use mlops_profile::load::{WindowStats, is_stable};
use mlops_profile::{
    GrpcTarget, HttpEncoding, HttpTarget, LoadConfig, LoadGenerator, LoadMode, ServerTarget, Target,
};
use mlops_runtime::http::{HttpConfig, router, serve};
use mlops_runtime::{ModelServer, ModelSpec, OrtOptions, OrtRuntime};

fn server_with(model: &str) -> Arc<ModelServer> {
    let ort = OrtRuntime::new(OrtOptions::default().with_intra_threads(1)).expect("ONNX Runtime");
    let server = ModelServer::new().with_runtime(ModelFormat::Onnx, Arc::new(ort));
    server
        .load_path(&testdata(model), ModelSpec::default().with_name("mlp"))
        .expect("load");
    Arc::new(server)
}

fn golden_requests() -> RequestSet {
    let manifest = ModelManifest::from_path(&testdata("mlp.onnx")).expect("manifest");
    input::for_model(&manifest, &testdata("mlp.onnx"), &InputOptions::default()).expect("inputs")
}

fn quick() -> LoadConfig {
    LoadConfig::default()
        .with_warmup(Duration::from_millis(100))
        .with_window(Duration::from_millis(200))
        .with_check_outputs(true)
}

#[test]
fn the_golden_file_becomes_one_row_requests_with_their_answers() {
    let set = golden_requests();
    let golden = Golden::load("mlp").expect("golden");
    assert_eq!(
        set.requests.len(),
        4,
        "the golden file's 4 rows, one request each"
    );
    assert_eq!(set.batch_size(), 1);
    let expected = set.expected.as_ref().expect("golden outputs");
    assert_eq!(expected.len(), 4);
    assert_eq!(set.requests[2][0].shape(), &[1, 64]);
    let rows = golden.inputs[0].split_batch(&[1, 1, 1, 1]).expect("split");
    assert_eq!(
        set.requests[2][0].to_vec::<f32>().ok(),
        rows[2].to_vec::<f32>().ok()
    );
    let outs = golden.outputs[0].split_batch(&[1, 1, 1, 1]).expect("split");
    assert_eq!(
        expected[3][0].to_vec::<f32>().ok(),
        outs[3].to_vec::<f32>().ok()
    );
}

#[test]
fn random_inputs_need_shapes_for_dynamic_dimensions_and_say_which_flag() {
    let manifest = ModelManifest::from_path(&testdata("torch_tagger.onnx")).expect("manifest");
    let options = InputOptions::default().with_golden(false);
    let err = input::for_model(&manifest, &testdata("torch_tagger.onnx"), &options)
        .expect_err("tokens has a dynamic sequence length");
    let text = err.to_string();
    assert!(text.contains("--shape tokens:"), "{text}");

    let options = options
        .with_shape("tokens", vec![2, 5])
        .with_shape("mask", vec![2, 5]);
    let set =
        input::for_model(&manifest, &testdata("torch_tagger.onnx"), &options).expect("inputs");
    assert_eq!(set.requests.len(), 16);
    assert_eq!(set.requests[0][0].shape(), &[2, 5]);
    assert!(
        set.requests[0][0]
            .to_vec::<i64>()
            .expect("int64")
            .iter()
            .all(|v| (0..10).contains(v))
    );
    assert!(set.expected.is_none());
    // The same seed gives the same data.
    let again =
        input::for_model(&manifest, &testdata("torch_tagger.onnx"), &options).expect("inputs");
    assert_eq!(set, again);
}

#[test]
fn request_files_are_read_and_their_faults_named() {
    let dir = tempfile::tempdir().expect("tempdir");
    let good = dir.path().join("requests.json");
    std::fs::write(
        &good,
        r#"[{"inputs":[{"name":"x","datatype":"FP32","shape":[1,2],"data":[1.5,"NaN"]}]},
            {"inputs":[{"name":"x","datatype":"FP32","shape":[1,2],"data":[3,4]}]}]"#,
    )
    .expect("write");
    let set = input::from_file(&good).expect("parsed");
    assert_eq!(set.requests.len(), 2);
    let first = set.requests[0][0].to_vec::<f32>().expect("f32");
    assert_eq!(first[0], 1.5);
    assert!(first[1].is_nan());
    assert!(set.expected.is_none());

    let bad = dir.path().join("bad.json");
    std::fs::write(
        &bad,
        r#"{"requests":[{"inputs":[{"name":"x","datatype":"FP99","shape":[1],"data":[1]}]}]}"#,
    )
    .expect("write");
    let err = input::from_file(&bad)
        .expect_err("unknown datatype")
        .to_string();
    assert!(
        err.contains("bad.json") && err.contains("unknown datatype"),
        "{err}"
    );
    std::fs::write(&bad, "[]").expect("write");
    assert!(
        input::from_file(&bad)
            .expect_err("empty")
            .to_string()
            .contains("no requests")
    );
}

fn window(rps: f64, p99: f64) -> WindowStats {
    WindowStats {
        throughput_rps: rps,
        latency: mlops_core::profile::LatencySummary {
            p99_ms: p99,
            ..Default::default()
        },
        requests: 1,
        errors: Default::default(),
        elapsed: Duration::from_secs(1),
    }
}

#[test]
fn stability_is_perf_analyzers_rule() {
    let steady = [window(100.0, 2.0), window(105.0, 2.1), window(109.0, 2.0)];
    assert!(is_stable(&steady, 3, 0.10, 99));
    // Throughput 100 -> 111 is 11% apart.
    let drifting = [window(100.0, 2.0), window(105.0, 2.0), window(111.0, 2.0)];
    assert!(!is_stable(&drifting, 3, 0.10, 99));
    // Latency 2.0 -> 2.3 is 15% apart.
    let jittery = [window(100.0, 2.0), window(100.0, 2.3), window(100.0, 2.0)];
    assert!(!is_stable(&jittery, 3, 0.10, 99));
    // A window with no answer is never stable.
    let stalled = [window(0.0, 0.0), window(0.0, 0.0), window(0.0, 0.0)];
    assert!(!is_stable(&stalled, 3, 0.10, 99));
    // Only the last three count.
    let settled = [
        window(10.0, 9.0),
        window(100.0, 2.0),
        window(101.0, 2.0),
        window(102.0, 2.0),
    ];
    assert!(is_stable(&settled, 3, 0.10, 99));
    assert!(!is_stable(&settled[..2], 3, 0.10, 99));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closed_loop_in_process_checks_every_answer() {
    let target: Arc<dyn Target> = Arc::new(ServerTarget::new(server_with("mlp.onnx"), "mlp", None));
    let generator = LoadGenerator::new(target, &golden_requests(), quick()).expect("generator");
    let outcome = generator
        .measure(LoadMode::Concurrency(4))
        .await
        .expect("measured");
    let m = &outcome.measurement;
    assert!(m.requests > 100, "{m:?}");
    assert_eq!(
        m.error_count(),
        0,
        "every answer matches the golden outputs: {:?}",
        m.errors
    );
    assert!((3..=10).contains(&m.trials), "{}", m.trials);
    assert_eq!(outcome.windows.len(), m.trials);
    let l = m.latency;
    assert!(0.0 < l.p50_ms && l.p50_ms <= l.p90_ms && l.p90_ms <= l.p95_ms);
    assert!(l.p95_ms <= l.p99_ms && l.p99_ms <= l.max_ms, "{l:?}");
    assert!(m.client_cpu_us_per_request > 0.0);
    // Throughput is what the last windows answered over their length.
    let k = 3.min(outcome.windows.len());
    let last = &outcome.windows[outcome.windows.len() - k..];
    let answered: u64 = last.iter().map(|w| w.requests).sum();
    assert_eq!(answered, m.requests);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_answers_are_counted_as_mismatches() {
    // A model retrained badly answers the golden inputs differently.
    let target: Arc<dyn Target> = Arc::new(ServerTarget::new(
        server_with("mlp_retrained.onnx"),
        "mlp",
        None,
    ));
    let generator = LoadGenerator::new(target, &golden_requests(), quick().with_max_trials(3))
        .expect("generator");
    let m = generator
        .measure(LoadMode::Concurrency(2))
        .await
        .expect("measured")
        .measurement;
    assert_eq!(m.requests, 0);
    assert!(
        m.errors.get("mismatch").copied().unwrap_or(0) > 10,
        "{:?}",
        m.errors
    );
    assert!(!m.stable, "no answered request, so never stable");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_loop_holds_its_rate() {
    let target: Arc<dyn Target> = Arc::new(ServerTarget::new(server_with("mlp.onnx"), "mlp", None));
    let config = quick()
        .with_window(Duration::from_millis(400))
        .with_max_trials(4);
    let generator = LoadGenerator::new(target, &golden_requests(), config).expect("generator");
    for poisson in [false, true] {
        let m = generator
            .measure(LoadMode::Rate {
                rps: 500.0,
                poisson,
            })
            .await
            .expect("measured")
            .measurement;
        assert_eq!(m.error_count(), 0);
        let ratio = m.throughput_rps / 500.0;
        assert!(
            (0.8..1.2).contains(&ratio),
            "poisson {poisson}: {} req/s",
            m.throughput_rps
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_load_settings_are_refused() {
    let target: Arc<dyn Target> = Arc::new(ServerTarget::new(server_with("mlp.onnx"), "mlp", None));
    let generator =
        LoadGenerator::new(target.clone(), &golden_requests(), quick()).expect("generator");
    assert!(generator.measure(LoadMode::Concurrency(0)).await.is_err());
    let err = generator
        .measure(LoadMode::Rate {
            rps: -1.0,
            poisson: false,
        })
        .await
        .expect_err("negative rate");
    assert!(err.to_string().contains("rate"), "{err}");
    let err = LoadGenerator::new(target, &golden_requests(), quick().with_max_trials(2))
        .err()
        .expect("fewer trials than stability windows");
    assert!(err.to_string().contains("max_trials"), "{err}");
}

/// HTTP and gRPC front ends over one server on 127.0.0.1.
async fn network_server() -> (String, String, tokio::sync::watch::Sender<bool>) {
    let server = server_with("mlp.onnx");
    let http = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let grpc = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let (http_addr, grpc_addr) = (
        http.local_addr().expect("addr"),
        grpc.local_addr().expect("addr"),
    );
    let (tx, rx) = tokio::sync::watch::channel(false);
    let mut r1 = rx.clone();
    tokio::spawn(serve(
        http,
        router(server.clone(), HttpConfig::default()),
        async move {
            let _ = r1.wait_for(|s| *s).await;
        },
    ));
    let mut r2 = rx;
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(mlops_runtime::grpc::service(
                server,
                None,
                ModelSpec::default(),
            ))
            .serve_with_incoming_shutdown(mlops_runtime::grpc::incoming(grpc), async move {
                let _ = r2.wait_for(|s| *s).await;
            }),
    );
    (
        format!("http://{http_addr}"),
        format!("http://{grpc_addr}"),
        tx,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_network_target_gets_the_golden_answers() {
    let (http, grpc, _stop) = network_server().await;
    let golden = Golden::load("mlp").expect("golden");
    let targets: Vec<Arc<dyn Target>> = vec![
        Arc::new(HttpTarget::new(&http, "mlp", None, HttpEncoding::Json).expect("json")),
        Arc::new(HttpTarget::new(&http, "mlp", Some(1), HttpEncoding::Binary).expect("binary")),
        Arc::new(GrpcTarget::new(&grpc, "mlp", None, 2).expect("grpc")),
    ];
    for target in targets {
        let prepared = target.prepare(&golden.inputs).expect("prepared");
        let outputs = target
            .send(&prepared, true)
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", target.describe()))
            .expect("outputs asked for");
        input::check_outputs(&outputs, &golden.outputs, 1e-5, 1e-4)
            .unwrap_or_else(|e| panic!("{}: {e}", target.protocol()));
        // Without outputs asked, nothing is decoded.
        assert_eq!(target.send(&prepared, false).await.expect("sent"), None);

        let generator = LoadGenerator::new(
            target.clone(),
            &golden_requests(),
            quick().with_max_trials(3),
        )
        .expect("generator");
        let m = generator
            .measure(LoadMode::Concurrency(2))
            .await
            .expect("measured")
            .measurement;
        assert!(m.requests > 20, "{}: {m:?}", target.protocol());
        assert_eq!(m.error_count(), 0, "{}: {:?}", target.protocol(), m.errors);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_errors_are_grouped_by_kind() {
    let (http, grpc, _stop) = network_server().await;
    let wrong_shape = vec![Tensor::from_vec("x", vec![1, 3], vec![0.0f32; 3]).expect("tensor")];
    let http_target = HttpTarget::new(&http, "mlp", None, HttpEncoding::Json).expect("json");
    let err = http_target
        .send(&http_target.prepare(&wrong_shape).expect("prepared"), false)
        .await
        .expect_err("wrong shape");
    assert_eq!(err.kind, "http_400", "{err}");
    let missing = HttpTarget::new(&http, "nope", None, HttpEncoding::Json).expect("json");
    let err = missing
        .send(&missing.prepare(&wrong_shape).expect("prepared"), false)
        .await
        .expect_err("unknown model");
    assert_eq!(err.kind, "http_404", "{err}");
    let grpc_target = GrpcTarget::new(&grpc, "mlp", None, 1).expect("grpc");
    let err = grpc_target
        .send(&grpc_target.prepare(&wrong_shape).expect("prepared"), false)
        .await
        .expect_err("wrong shape");
    assert_eq!(err.kind, "grpc_invalid_argument", "{err}");
    // Nothing listens on this port.
    let down =
        HttpTarget::new("http://127.0.0.1:9", "mlp", None, HttpEncoding::Json).expect("json");
    let err = down
        .send(&down.prepare(&wrong_shape).expect("prepared"), false)
        .await
        .expect_err("down");
    assert_eq!(err.kind, "connect", "{err}");
}

/// A raw HTTP/1.1 server on 127.0.0.1 that answers the n-th request on a connection with
/// the n-th canned response, to drive the client through framings our server never sends.
async fn canned(responses: Vec<&'static str>) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let responses = responses.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 65536];
                for response in responses {
                    // One request: its head and its (small) body arrive in one read here.
                    if socket.read(&mut buf).await.unwrap_or(0) == 0 {
                        return;
                    }
                    if socket.write_all(response.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    format!("http://{addr}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_http_client_reads_chunked_and_sized_bodies_and_refuses_bad_framing() {
    let x = vec![Tensor::from_vec("x", vec![1, 2], vec![1.0f32, 2.0]).expect("tensor")];
    let json_outputs =
        r#"{"outputs":[{"name":"y","datatype":"FP32","shape":[1,2],"data":[3.0,"Infinity"]}]}"#;
    let chunked = Box::leak(
        format!(
            "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n{:x}\r\n{}\r\n{:x}\r\n{}\r\n0\r\nx-trailer: 1\r\n\r\n",
            10,
            &json_outputs[..10],
            json_outputs.len() - 10,
            &json_outputs[10..]
        )
        .into_boxed_str(),
    );
    let sized =
        "HTTP/1.1 503 Service Unavailable\r\ncontent-length: 20\r\n\r\n{\"error\":\"too busy\"}";
    let base = canned(vec![chunked, sized]).await;
    let target = HttpTarget::new(&base, "m", None, HttpEncoding::Json).expect("target");
    let request = target.prepare(&x).expect("prepared");
    // Chunks with a trailer, decoded.
    let outputs = target
        .send(&request, true)
        .await
        .expect("chunked")
        .expect("outputs");
    assert_eq!(outputs[0].name(), "y");
    let values = outputs[0].to_vec::<f32>().expect("f32");
    assert_eq!(values[0], 3.0);
    assert!(values[1].is_infinite());
    // The same connection, in step, for a sized error answer.
    let err = target.send(&request, false).await.expect_err("503");
    assert_eq!(
        (err.kind.as_str(), err.message.as_str()),
        ("http_503", "too busy")
    );

    let huge = "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nffffffffffffffff\r\n";
    let base = canned(vec![huge]).await;
    let target = HttpTarget::new(&base, "m", None, HttpEncoding::Json).expect("target");
    let err = target
        .send(&target.prepare(&x).expect("prepared"), false)
        .await
        .expect_err("an impossible chunk size");
    assert_eq!(err.kind, "malformed_response", "{err}");

    let no_crlf = "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2\r\nokXX0\r\n\r\n";
    let base = canned(vec![no_crlf]).await;
    let target = HttpTarget::new(&base, "m", None, HttpEncoding::Json).expect("target");
    let err = target
        .send(&target.prepare(&x).expect("prepared"), false)
        .await
        .expect_err("a chunk without its CRLF");
    assert_eq!(err.kind, "malformed_response", "{err}");
}
