//! What the load generator itself can drive, against the fastest target there is.
//!
//! ```text
//! cargo bench --bench profile
//! ```
//!
//! Two closed loops at concurrency 16, each iteration one request (criterion's throughput
//! is requests per second):
//! - `null`: a target that answers at once, so the figure is the generator's own ceiling;
//! - `in_process/mlp`: the bundled MLP behind mlops-runtime's batcher in this process, the
//!   fastest real target (no network, no codec).
//!
//! The generator must drive at least 5× what the fastest target absorbs: the ratio of the
//! two figures, taken in the same run.

use std::sync::Arc;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use mlops::core::testkit::testdata;
use mlops::core::{ModelFormat, ModelManifest, Tensor};
use mlops::profile::input::{self, InputOptions};
use mlops::profile::target::SendFuture;
use mlops::profile::{LoadConfig, LoadGenerator, Prepared, ServerTarget, Target};
use mlops::runtime::{ModelServer, ModelSpec, OrtOptions, OrtRuntime};

const DEVICE: &str = "cpu";
const CONCURRENCY: usize = 16;

/// Answers every request at once, with no outputs.
struct Null;

impl Target for Null {
    fn protocol(&self) -> &'static str {
        "null"
    }
    fn describe(&self) -> String {
        "a target that answers at once".into()
    }
    fn prepare(&self, inputs: &[Tensor]) -> mlops::profile::Result<Prepared> {
        Ok(Prepared::new(inputs.to_vec()))
    }
    fn send<'a>(&'a self, _request: &'a Prepared, _outputs: bool) -> SendFuture<'a> {
        Box::pin(async { Ok(None) })
    }
}

fn generator_ceiling(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let path = testdata("mlp.onnx");
    let manifest = ModelManifest::from_path(&path).expect("bundled model");
    let requests = input::for_model(&manifest, &path, &InputOptions::default()).expect("inputs");
    let ort = OrtRuntime::new(OrtOptions::default().with_intra_threads(1)).expect("ONNX Runtime");
    let server = ModelServer::new().with_runtime(ModelFormat::Onnx, Arc::new(ort));
    server
        .load_path(&path, ModelSpec::default().with_name("mlp"))
        .expect("loads");
    let targets: Vec<(&str, Arc<dyn Target>)> = vec![
        ("null", Arc::new(Null)),
        (
            "in_process/mlp",
            Arc::new(ServerTarget::new(Arc::new(server), "mlp", None)),
        ),
    ];
    let mut group = c.benchmark_group(format!("{DEVICE}/load_generator/concurrency{CONCURRENCY}"));
    group.throughput(Throughput::Elements(1));
    group.measurement_time(Duration::from_secs(5));
    for (name, target) in targets {
        let generator =
            LoadGenerator::new(target, &requests, LoadConfig::default()).expect("generator");
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let (took, failed, _) = rt.block_on(generator.run_requests(CONCURRENCY, iters));
                assert_eq!(failed, 0);
                took
            })
        });
    }
    group.finish();
}

criterion_group!(benches, generator_ceiling);
criterion_main!(benches);
