//! What the scaling backends cost on real parts.
//!
//! ```text
//! cargo bench --bench scalers --features keda,http
//! ```
//!
//! - `local/add_and_retire_one_instance`: `ModelServer::set_instances` 1 → 2 → 1 on the
//!   bundled vision model (one ONNX Runtime session loaded, one retired), beside
//!   `local/hot_swap_two_instances`, reloading the same model with two instances (what
//!   resizing by hot swap would cost);
//! - `keda/get_metrics`: one `GetMetrics` call to the KEDA external scaler over gRPC on
//!   127.0.0.1, beside `prometheus/scrape`, one scrape of a server's `/metrics` page (what
//!   the scaler's background loop does every period).

use std::sync::Arc;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use mlops::core::ModelFormat;
use mlops::core::testkit::testdata;
use mlops::runtime::http::{HttpConfig, router};
use mlops::runtime::{ModelServer, ModelSpec, OrtOptions, OrtRuntime};
use mlops::scale::PolicyConfig;
use mlops::scale::keda::KedaScaler;
use mlops::scale::keda::proto::external_scaler_client::ExternalScalerClient;
use mlops::scale::keda::proto::{GetMetricsRequest, ScaledObjectRef};
use mlops::scale::policy::CapacityConfig;
use mlops::scale::scaler::{MetricsSource, PrometheusSource};

fn server() -> Arc<ModelServer> {
    let ort = OrtRuntime::new(OrtOptions::default().with_intra_threads(1)).expect("ONNX Runtime");
    let server = ModelServer::new().with_runtime(ModelFormat::Onnx, Arc::new(ort));
    server
        .load_path(&testdata("vision.onnx"), ModelSpec::default())
        .expect("the bundled vision model");
    Arc::new(server)
}

fn local(c: &mut Criterion) {
    let server = server();
    let mut group = c.benchmark_group("local");
    group.sample_size(20);
    group.bench_function("add_and_retire_one_instance", |b| {
        b.iter(|| {
            server.set_instances("vision", None, 2).expect("grow");
            server.set_instances("vision", None, 1).expect("shrink");
        })
    });
    group.bench_function("hot_swap_two_instances", |b| {
        b.iter(|| {
            server
                .load_path(
                    &testdata("vision.onnx"),
                    ModelSpec::default().with_instances(2),
                )
                .expect("reload")
        })
    });
    group.finish();
}

fn keda(c: &mut Criterion) {
    let runtime = tokio::runtime::Runtime::new().expect("a runtime");
    let server = server();
    let (metrics_url, mut client) = runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a port");
        let addr = listener.local_addr().expect("its address");
        let app = router(server.clone(), HttpConfig::default());
        tokio::spawn(mlops::runtime::http::serve(
            listener,
            app,
            std::future::pending(),
        ));
        let url = format!("http://{addr}/metrics");
        let source = PrometheusSource::new([&url], "vision").expect("a source");
        let config = CapacityConfig::new(40.0, 100.0);
        let scaler = KedaScaler::new()
            .with_model("vision", source, &PolicyConfig::Capacity(config))
            .expect("a scaler");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a port");
        let addr = listener.local_addr().expect("its address");
        tokio::spawn(scaler.serve_on(listener, std::future::pending()));
        tokio::time::sleep(Duration::from_millis(100)).await;
        let client = ExternalScalerClient::connect(format!("http://{addr}"))
            .await
            .expect("a gRPC connection");
        (url, client)
    });
    let request = GetMetricsRequest {
        scaled_object_ref: Some(ScaledObjectRef {
            name: "vision".to_string(),
            namespace: "default".to_string(),
            scaler_metadata: [("model".to_string(), "vision".to_string())].into(),
        }),
        metric_name: "s0-replicas".to_string(),
    };
    c.bench_function("keda/get_metrics", |b| {
        b.iter(|| {
            runtime
                .block_on(client.get_metrics(request.clone()))
                .expect("an answer")
        })
    });
    let source = PrometheusSource::new([&metrics_url], "vision").expect("a source");
    c.bench_function("prometheus/scrape", |b| {
        b.iter(|| runtime.block_on(source.scrape()).expect("a scrape"))
    });
}

criterion_group!(benches, local, keda);
criterion_main!(benches);
