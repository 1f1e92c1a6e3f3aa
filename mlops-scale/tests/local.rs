//! The capacity policy driving the instances of a real model in a real server: HTTP load
//! on 127.0.0.1 from the profiler's load generator, metrics read from the server's own
//! `/metrics` page, instances added and retired in the running server.
//!
//! The policy's capacity per instance is the recorded profile's, or less where this
//! machine measures less: the machine running the tests is not the one profiled, and is
//! often shared, so a rate taken from the profile alone may be more than it can answer
//! with every core busy. The capacity handed to the policy is then at most 40% of what one
//! instance answers here, measured just before; the load at 1.6× it needs two instances
//! by the policy's arithmetic and stays within what the machine answers with one.

// The test prints the timeline it saw.
#![allow(clippy::print_stdout)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use mlops_core::ModelFormat;
use mlops_core::ProfileReport;
use mlops_core::testkit::testdata;
use mlops_profile::target::{HttpEncoding, HttpTarget};
use mlops_profile::{InputOptions, LoadConfig, LoadGenerator, LoadMode};
use mlops_runtime::http::{HttpConfig, router};
use mlops_runtime::{BatcherConfig, ModelServer, ModelSpec, OrtOptions, OrtRuntime};
use mlops_scale::policy::{Bounds, Capacity, CapacityConfig};
use mlops_scale::scaler::{Applied, Controller, ControllerConfig, Local, PrometheusSource, Scaler};

fn vision_profile() -> ProfileReport {
    let text = std::fs::read_to_string(testdata("profiles/vision.json")).expect("the profile");
    serde_json::from_str(&text).expect("a profile report")
}

/// The vision model as its profile's recommended configuration runs it (batches of up to
/// 4, one intra-op thread), with one instance, over HTTP with its metrics.
async fn serve() -> (Arc<ModelServer>, String) {
    let ort = OrtRuntime::new(OrtOptions::default().with_intra_threads(1)).expect("ONNX Runtime");
    let server = ModelServer::new().with_runtime(ModelFormat::Onnx, Arc::new(ort));
    let spec = ModelSpec::default().with_batcher(BatcherConfig::default().with_max_batch_size(4));
    server
        .load_path(&testdata("vision.onnx"), spec)
        .expect("the bundled vision model");
    let server = Arc::new(server);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a port");
    let addr = listener.local_addr().expect("its address");
    let app = router(server.clone(), HttpConfig::default());
    tokio::spawn(mlops_runtime::http::serve(
        listener,
        app,
        std::future::pending(),
    ));
    (server, format!("http://{addr}"))
}

/// What one instance answers on this machine, closed loop at four requests in flight
/// (the batch size), on a server of its own so that the controller's metrics never see it.
async fn one_instance_throughput() -> f64 {
    let (server, base) = serve().await;
    let signature = server
        .get("vision", None)
        .expect("served")
        .signature()
        .clone();
    let requests = mlops_profile::input::random("vision", &signature, &InputOptions::default())
        .expect("random inputs");
    let target = HttpTarget::new(&base, "vision", None, HttpEncoding::Binary).expect("a target");
    let load = LoadGenerator::new(
        Arc::new(target),
        &requests,
        LoadConfig {
            warmup: Duration::from_millis(500),
            window: Duration::from_secs(1),
            stability_threshold: f64::MAX,
            stability_windows: 2,
            max_trials: 2,
            ..LoadConfig::default()
        },
    )
    .expect("a load generator");
    let outcome = load
        .measure(LoadMode::Concurrency(4))
        .await
        .expect("a measurement");
    let throughput = outcome.measurement.throughput_rps;
    assert!(throughput > 1.0, "{:?}", outcome.windows);
    throughput
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_capacity_policy_grows_and_shrinks_a_real_server_under_real_load() {
    let measured = one_instance_throughput().await;
    let (server, base) = serve().await;
    let report = vision_profile();
    // The profile's capacity and target, with windows short enough for a test: decide
    // every 0.5 s on the last 2 s, keep what was wanted over the last 3 s.
    let mut config = CapacityConfig::from_profile_of(&report, "vision").unwrap();
    config.capacity_rps = config.capacity_rps.min(0.4 * measured);
    config.period = Duration::from_millis(500);
    config.rate_window = Duration::from_secs(2);
    config.trend_window = Duration::from_secs(4);
    config.scale_down_window = Duration::from_secs(3);
    config.startup_time = Duration::from_millis(500);
    let capacity = config.capacity_rps;
    let policy = Capacity::new(config).unwrap();
    let source = PrometheusSource::new([format!("{base}/metrics")], "vision").unwrap();
    let scaler = Local::new(server.clone(), "vision").unwrap();
    let mut controller =
        Controller::new(policy, source, scaler.clone()).with_config(ControllerConfig {
            bounds: Bounds::new(1, 4).unwrap(),
            ..ControllerConfig::default()
        });
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let control = tokio::spawn(async move {
        controller
            .run(async {
                let _ = stopped.await;
            })
            .await
    });

    // Watch the instances every 50 ms.
    let started = Instant::now();
    let watched = server.clone();
    let watching = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let still = watching.clone();
    let watch = tokio::spawn(async move {
        let mut seen = Vec::new();
        while still.load(std::sync::atomic::Ordering::Relaxed) {
            let n = watched.get("vision", None).expect("served").instances();
            if seen.last().map(|&(_, last)| last) != Some(n) {
                seen.push((started.elapsed(), n));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        seen
    });

    // 1.5 s idle, then 6 s at 1.6× the capacity the policy counts, then idle.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let signature = server.get("vision", None).unwrap().signature().clone();
    let requests =
        mlops_profile::input::random("vision", &signature, &InputOptions::default()).unwrap();
    let target = HttpTarget::new(&base, "vision", None, HttpEncoding::Binary).unwrap();
    let load = LoadGenerator::new(
        Arc::new(target),
        &requests,
        LoadConfig {
            warmup: Duration::ZERO,
            window: Duration::from_secs(1),
            stability_threshold: f64::MAX,
            stability_windows: 6,
            max_trials: 6,
            ..LoadConfig::default()
        },
    )
    .unwrap();
    let rps = (1.6 * capacity).round();
    let load_began = started.elapsed();
    let outcome = load
        .measure(LoadMode::Rate {
            rps,
            poisson: false,
        })
        .await
        .unwrap();
    let load_ended = started.elapsed();

    // Back to one instance within the scale-down window and a few periods.
    let deadline = Instant::now() + Duration::from_secs(15);
    while scaler.state().await.unwrap().desired > 1 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let back_at = started.elapsed();
    stop.send(()).unwrap();
    let steps = control.await.unwrap();
    watching.store(false, std::sync::atomic::Ordering::Relaxed);
    let seen = watch.await.unwrap();

    let sent: u64 = outcome.windows.iter().map(|w| w.requests).sum();
    let failed: u64 = outcome.windows.iter().flat_map(|w| w.errors.values()).sum();
    assert_eq!(failed, 0, "{:?}", outcome.windows);
    assert!(
        sent as f64 > 0.8 * rps * 6.0,
        "{sent} answered of {} sent",
        rps * 6.0
    );
    let stats = server.stats("vision", None).unwrap();
    assert_eq!(stats.request_failure, 0);

    let sets: Vec<(Duration, u32, u32)> = steps
        .iter()
        .filter_map(|s| match s.applied {
            Applied::Set { from, to } => Some((s.at, from, to)),
            _ => None,
        })
        .collect();
    // Only sets: no failed set, no step without the replicas.
    assert_eq!(sets.len(), steps.len(), "{steps:#?}");
    let peak = sets.iter().map(|&(_, _, to)| to).max().unwrap_or(1);
    assert!(
        peak >= 2,
        "{rps} req/s on one instance's {capacity:.1}: {sets:?}"
    );
    assert!(peak <= 4, "bounds kept: {sets:?}");
    // Up while the load runs (never before it), back to one only after it stopped.
    let (first_at, from, to) = sets[0];
    assert!(
        to > from && first_at >= load_began,
        "{sets:?} (load from {load_began:?})"
    );
    let (last_at, _, last_to) = *sets.last().unwrap();
    assert_eq!(last_to, 1, "{sets:?}");
    assert!(
        last_at >= load_ended,
        "{sets:?} (load until {load_ended:?})"
    );
    assert!(back_at < load_ended + Duration::from_secs(15), "{sets:?}");
    // While the load runs, never below what its rate needs (a queue that built up may
    // have asked for more, and it may give those back once drained).
    let needed = (rps / (0.85 * capacity)).ceil() as u32;
    for &(at, _, to) in &sets {
        if at >= sets[0].0 && at < load_ended {
            assert!(to >= needed, "below {needed} during the load: {sets:?}");
        }
    }
    assert_eq!(server.get("vision", None).unwrap().instances(), 1);
    // What the server ran agrees with what the controller set.
    let served_peak = seen.iter().map(|&(_, n)| n).max().unwrap_or(0);
    assert_eq!(served_peak as u32, peak, "{seen:?}");
    println!(
        "one instance answers {measured:.1} req/s here, the policy counts {capacity:.1}; \
         {rps} req/s from {load_began:.1?} to {load_ended:.1?}, {sent} answered, 0 failed; \
         instances over time: {seen:.1?}"
    );
}

#[test]
fn the_local_scaler_passes_the_conformance_checks() {
    let ort = OrtRuntime::new(OrtOptions::default().with_intra_threads(1)).expect("ONNX Runtime");
    let server = Arc::new(ModelServer::new().with_runtime(ModelFormat::Onnx, Arc::new(ort)));
    server
        .load_path(&testdata("mlp.onnx"), ModelSpec::default())
        .expect("the bundled MLP");
    let scaler = Local::new(server.clone(), "mlp").unwrap();
    mlops_scale::testkit::scaler_conformance(&scaler);
    assert_eq!(
        server.get("mlp", None).unwrap().instances() as u32,
        tokio::runtime::Runtime::new()
            .unwrap()
            .block_on(scaler.state())
            .unwrap()
            .desired
    );

    // Zero is refused (unload the model to stop serving it), and so is a model not served.
    let err = tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(scaler.set_replicas(0))
        .unwrap_err();
    assert!(err.to_string().contains("at least one instance"), "{err}");
    let err = Local::new(server, "resnet").unwrap_err();
    assert!(err.to_string().contains("'resnet'"), "{err}");
}
