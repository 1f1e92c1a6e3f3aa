//! KEDA's external scaler answering a real gRPC client (built from the same proto) with
//! figures that follow real load on a real model server's metrics endpoint.

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use mlops_core::testkit::Golden;
use mlops_runtime::ModelServer;
use mlops_scale::PolicyConfig;
use mlops_scale::keda::proto::external_scaler_client::ExternalScalerClient;
use mlops_scale::keda::proto::{GetMetricsRequest, ScaledObjectRef};
use mlops_scale::keda::{KedaScaler, METRIC};
use mlops_scale::policy::{Bounds, CapacityConfig};
use mlops_scale::scaler::PrometheusSource;
use tonic::transport::Channel;

async fn serve_model() -> (Arc<ModelServer>, String) {
    common::serve_echo_mlp(Duration::from_millis(2)).await
}

/// Replicas of 20 req/s each, with windows short enough for a test.
fn policy() -> PolicyConfig {
    let mut config = CapacityConfig::new(20.0, 100.0);
    config.period = Duration::from_millis(200);
    config.rate_window = Duration::from_secs(1);
    config.trend_window = Duration::from_secs(2);
    config.scale_down_window = Duration::from_secs(1);
    config.startup_time = Duration::from_millis(200);
    config.bounds = Bounds::new(1, 10).expect("bounds");
    PolicyConfig::Capacity(config)
}

async fn start_scaler(metrics_url: &str) -> ExternalScalerClient<Channel> {
    let source = PrometheusSource::new([metrics_url], "mlp").expect("a source");
    let scaler = KedaScaler::new()
        .with_model("mlp", source, &policy())
        .expect("a scaler");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a port");
    let addr = listener.local_addr().expect("its address");
    tokio::spawn(scaler.serve_on(listener, std::future::pending()));
    ExternalScalerClient::connect(format!("http://{addr}"))
        .await
        .expect("a gRPC connection")
}

fn object(metadata: &[(&str, &str)]) -> ScaledObjectRef {
    ScaledObjectRef {
        name: "mlp".to_string(),
        namespace: "default".to_string(),
        scaler_metadata: metadata
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<HashMap<_, _>>(),
    }
}

async fn replicas(client: &mut ExternalScalerClient<Channel>, metric: &str) -> f64 {
    let answer = client
        .get_metrics(GetMetricsRequest {
            scaled_object_ref: Some(object(&[("model", "mlp")])),
            metric_name: metric.to_string(),
        })
        .await
        .expect("metrics")
        .into_inner();
    assert_eq!(answer.metric_values.len(), 1);
    assert_eq!(answer.metric_values[0].metric_name, metric);
    answer.metric_values[0].metric_value_float
}

/// Sends about `rps` requests a second from 8 tasks until `stop`.
fn load(
    server: &Arc<ModelServer>,
    rps: f64,
    stop: &Arc<AtomicBool>,
) -> Vec<tokio::task::JoinHandle<u64>> {
    let golden = Golden::load("mlp").expect("golden");
    let row = golden.inputs[0]
        .split_batch(&[1, 3])
        .expect("a row")
        .remove(0);
    (0..8)
        .map(|_| {
            let (server, stop, row) = (server.clone(), stop.clone(), row.clone());
            let gap = Duration::from_secs_f64(8.0 / rps);
            tokio::spawn(async move {
                let mut failed = 0;
                let mut next = tokio::time::Instant::now();
                while !stop.load(Ordering::Relaxed) {
                    if server.infer("mlp", None, vec![row.clone()]).await.is_err() {
                        failed += 1;
                    }
                    next += gap;
                    tokio::time::sleep_until(next).await;
                }
                failed
            })
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_replicas_answered_follow_real_load_up_and_down() {
    let (server, url) = serve_model().await;
    let mut client = start_scaler(&url).await;

    let spec = client
        .get_metric_spec(object(&[("model", "mlp")]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(spec.metric_specs.len(), 1);
    assert_eq!(spec.metric_specs[0].metric_name, METRIC);
    assert_eq!(spec.metric_specs[0].target_size_float, 1.0);
    assert_eq!(spec.metric_specs[0].target_size, 1);

    // Idle: the lower bound.
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(replicas(&mut client, METRIC).await, 1.0);

    // About 100 req/s on replicas of 20 at 85%: ceil(100 / 17) = 6.
    let stop = Arc::new(AtomicBool::new(false));
    let tasks = load(&server, 100.0, &stop);
    let mut seen = Vec::new();
    let began = Instant::now();
    while began.elapsed() < Duration::from_secs(4) {
        tokio::time::sleep(Duration::from_millis(200)).await;
        // KEDA prefixes the metric with its trigger's index.
        seen.push(replicas(&mut client, "s0-replicas").await);
    }
    let peak = seen.iter().copied().fold(0.0, f64::max);
    let settled = *seen.last().unwrap();
    let active = client
        .is_active(object(&[("model", "mlp"), ("idleAfterSeconds", "1")]))
        .await
        .unwrap()
        .into_inner()
        .result;
    stop.store(true, Ordering::Relaxed);
    let mut failed = 0;
    for t in tasks {
        failed += t.await.unwrap();
    }
    assert_eq!(failed, 0);
    // The rise is projected ahead (the trend term) and capped by the bounds; once steady,
    // the demand alone sets the count.
    assert!(peak <= 10.0, "{seen:?}");
    assert!((5.0..=8.0).contains(&settled), "{seen:?} for ~100 req/s");
    assert!(active, "active while requests arrive");

    // After the load: back to one replica, and inactive once idle for a second.
    let stopped = Instant::now();
    let mut now = peak;
    while now > 1.0 && stopped.elapsed() < Duration::from_secs(5) {
        tokio::time::sleep(Duration::from_millis(200)).await;
        now = replicas(&mut client, METRIC).await;
    }
    assert_eq!(now, 1.0, "still {now} replicas 5 s after the load");
    tokio::time::sleep(Duration::from_millis(1300)).await;
    let idle = object(&[("model", "mlp"), ("idleAfterSeconds", "1")]);
    assert!(
        !client
            .is_active(idle.clone())
            .await
            .unwrap()
            .into_inner()
            .result
    );
    // Without the key, never inactive: no scale to zero unless asked.
    assert!(
        client
            .is_active(object(&[("model", "mlp")]))
            .await
            .unwrap()
            .into_inner()
            .result
    );
    // The stream says the same at once.
    let mut stream = client.stream_is_active(idle).await.unwrap().into_inner();
    let first = stream.message().await.unwrap().unwrap();
    assert!(!first.result);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_models_metrics_and_bad_metadata_are_errors_that_name_them() {
    let (_server, url) = serve_model().await;
    let mut client = start_scaler(&url).await;

    let err = client
        .get_metric_spec(object(&[("model", "resnet")]))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound);
    assert!(
        err.message().contains("'resnet'") && err.message().contains("mlp"),
        "{err}"
    );

    let err = client
        .get_metrics(GetMetricsRequest {
            scaled_object_ref: Some(object(&[("model", "mlp")])),
            metric_name: "gpu_utilization".to_string(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound);
    assert!(err.message().contains("'gpu_utilization'"), "{err}");

    for bad in ["soon", "-1", "1e30", "NaN"] {
        let err = client
            .is_active(object(&[("model", "mlp"), ("idleAfterSeconds", bad)]))
            .await
            .unwrap_err();
        assert_eq!(err.code(), tonic::Code::InvalidArgument, "{bad}");
        assert!(err.message().contains("idleAfterSeconds"), "{err}");
    }

    // No model named: the default (the first added) answers.
    let spec = client
        .get_metric_spec(object(&[]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(spec.metric_specs[0].metric_name, METRIC);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_metrics_endpoint_that_goes_down_holds_the_answer() {
    // A port nothing listens on: every scrape fails, and the answer stays at the lower
    // bound rather than dropping to zero.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = format!("http://{}/metrics", listener.local_addr().unwrap());
    drop(listener);
    let mut client = start_scaler(&dead).await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(replicas(&mut client, METRIC).await, 1.0);
    assert!(
        client
            .is_active(object(&[("model", "mlp")]))
            .await
            .unwrap()
            .into_inner()
            .result
    );
    // Even where scale to zero is asked, past its idle time: an outage of the metrics
    // shows no idleness.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert!(
        client
            .is_active(object(&[("model", "mlp"), ("idleAfterSeconds", "1")]))
            .await
            .unwrap()
            .into_inner()
            .result
    );
}
