//! How fast the autoscaling simulator and the policies run.
//!
//! ```text
//! cargo bench --bench scale
//! ```
//!
//! - `simulate/poisson_60k`: a 10-minute Poisson trace of 60,000 requests against
//!   replicas of 50 ms (20 req/s each) scaled by the capacity policy; the figure to
//!   divide 600 s by is the real-time factor (the target is at least 1,000×);
//! - `simulate/bursty_vision`: the bundled bursty trace (89,363 requests) against replicas
//!   modelled on the bundled profile of `testdata/vision.onnx`, capacity policy;
//! - `decide/*`: one decision of each policy on a steady observation;
//! - `pack/five_models`: the exact GPU packing of five models.
//!
//! The simulator is single-threaded and deterministic; its device is the CPU it runs on.

use std::hint::black_box;
use std::path::Path;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use mlops::core::ProfileReport;
use mlops::scale::packing::{GpuSpec, ModelDemand, Variant, pack};
use mlops::scale::policy::{
    CapacityConfig, ConcurrencyConfig, Metrics, Observation, OngoingRequestsConfig, PolicyConfig,
    UtilizationConfig,
};
use mlops::scale::{ReplicaModel, Simulator, Trace, TraceSpec};

const DEVICE: &str = "cpu";

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn simulate(c: &mut Criterion) {
    let mut group = c.benchmark_group(format!("simulate/{DEVICE}"));
    group.sample_size(20);
    let trace = Trace::generate(
        &TraceSpec::Poisson {
            rate_rps: 100.0,
            duration_s: 600.0,
        },
        1,
    )
    .expect("trace");
    let sim = Simulator::builder(ReplicaModel::new(1, 50.0).with_sigma(0.3))
        .latency_target_ms(250.0)
        .cold_start(Duration::from_secs(10))
        .build()
        .expect("simulator");
    let capacity = PolicyConfig::Capacity(
        CapacityConfig::new(18.0, 250.0).with_startup_time(Duration::from_secs(10)),
    );
    group.bench_function("poisson_60k", |b| {
        b.iter(|| {
            let mut policy = capacity.build().expect("policy");
            black_box(sim.run(&trace, &mut policy))
        })
    });

    let text = std::fs::read_to_string(root().join("testdata/profiles/vision.json"))
        .expect("bundled profile");
    let report = ProfileReport::from_json(&text).expect("profile");
    let bursty = Trace::from_file(&root().join("testdata/traces/bursty.txt")).expect("trace");
    let sim = Simulator::builder(ReplicaModel::from_profile(&report).expect("replica"))
        .latency_target_ms(report.latency_target_ms)
        .cold_start(Duration::from_secs(10))
        .initial_replicas(3)
        .build()
        .expect("simulator");
    let capacity = PolicyConfig::Capacity(
        CapacityConfig::from_profile(&report)
            .expect("capacity")
            .with_startup_time(Duration::from_secs(10)),
    );
    group.bench_function("bursty_vision", |b| {
        b.iter(|| {
            let mut policy = capacity.build().expect("policy");
            black_box(sim.run(&bursty, &mut policy))
        })
    });
    group.finish();
}

fn decide(c: &mut Criterion) {
    let mut group = c.benchmark_group(format!("decide/{DEVICE}"));
    for config in [
        PolicyConfig::Utilization(UtilizationConfig::default()),
        PolicyConfig::Concurrency(ConcurrencyConfig::default().with_target(2.0)),
        PolicyConfig::OngoingRequests(OngoingRequestsConfig::default()),
        PolicyConfig::Capacity(CapacityConfig::new(40.0, 100.0)),
    ] {
        let mut policy = config.build().expect("policy");
        let name = config.kind();
        let mut t = 0.0;
        group.bench_function(name, |b| {
            b.iter(|| {
                // A new scrape every call, so the windows stay full and move.
                t += 1.0;
                let now = Duration::from_secs_f64(t);
                let observation = Observation {
                    ready: 5,
                    starting: 0,
                    desired: 5,
                    metrics: Some(Metrics {
                        at: now,
                        window: Duration::from_secs(1),
                        request_rate_rps: Some(180.0 + (t % 7.0)),
                        in_flight: Some(9.0),
                        queue_depth: Some(0.0),
                        latency_ms: Some(40.0),
                        utilization: vec![0.7; 5],
                    }),
                };
                black_box(policy.decide(now, &observation))
            })
        });
    }
    group.finish();
}

fn packing(c: &mut Criterion) {
    const GB: u64 = 1 << 30;
    let variants = |cap: f64, mem: u64| {
        vec![
            Variant::new(1.0, cap, mem * GB),
            Variant::new(0.5, cap * 0.6, mem * GB),
            Variant::new(0.25, cap * 0.33, mem * GB),
        ]
    };
    let models = vec![
        ModelDemand::new("a", 300.0, variants(200.0, 10)),
        ModelDemand::new("b", 90.0, variants(120.0, 20)),
        ModelDemand::new("c", 40.0, variants(100.0, 5)),
        ModelDemand::new("d", 500.0, variants(250.0, 12)),
        ModelDemand::new("e", 25.0, variants(90.0, 30)),
    ];
    let gpu = GpuSpec::new(80 * GB);
    c.bench_function(&format!("pack/{DEVICE}/five_models"), |b| {
        b.iter(|| black_box(pack(&models, &gpu).expect("placement")))
    });
}

criterion_group!(benches, simulate, decide, packing);
criterion_main!(benches);
