//! What a model needs here: the same model through every device this build and machine
//! have, with a comparison table at the end.
//!
//! ```text
//! cargo bench --bench hardware                   # the CPU, 1 and 2 intra-op threads
//! cargo bench --bench hardware --features cuda   # and CUDA, where a GPU is present
//! MLOPS_BENCH_MODEL=path/to/model.onnx cargo bench --bench hardware
//! ```
//!
//! Each device serves the model (default: the bundled MLP, its golden requests) behind
//! mlops-runtime's batcher in this process, batches of up to 8, one instance. Criterion
//! times one request at concurrency 8 (`hardware/<device>`); the table then measures each
//! device in one-second windows until perf_analyzer's stability rule holds (at most five)
//! and prints throughput, p50 and p99, samples per second and the cost per million
//! inferences under the profiler's default prices. Devices that are not there are listed
//! as skipped, with the reason. MPS shares of a GPU need one server per share: the profiler
//! measures those (`cargo run --release --example profile -- MODEL --devices gpu0
//! --gpu-fractions 0.25,0.5,1`).

// The comparison table is the bench's output.
#![allow(clippy::print_stdout)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use mlops::core::profile::{ComputeDevice, CostModel, ServingConfig};
use mlops::core::{ModelFormat, ModelManifest};
use mlops::profile::input::{self, InputOptions};
use mlops::profile::{LoadConfig, LoadGenerator, LoadMode, RequestSet, ServerTarget};
use mlops::runtime::{
    BatcherConfig, ExecutionProvider, ModelServer, ModelSpec, OrtOptions, OrtRuntime,
};

const CONCURRENCY: usize = 8;
const MAX_BATCH: usize = 8;

/// One way to run the model.
struct Device {
    name: String,
    options: OrtOptions,
    config: ServingConfig,
}

fn devices() -> Vec<Device> {
    let cpu = |threads: usize| Device {
        name: format!("cpu/{threads}-thread{}", if threads > 1 { "s" } else { "" }),
        options: OrtOptions::default().with_intra_threads(threads),
        config: ServingConfig {
            device: ComputeDevice::Cpu,
            cpu_cores: threads as u32,
            intra_op_threads: threads,
            max_batch_size: MAX_BATCH,
            ..ServingConfig::default()
        },
    };
    let mut out = vec![cpu(1), cpu(2)];
    if cfg!(feature = "cuda") {
        out.push(Device {
            name: "cuda/0".to_string(),
            options: OrtOptions::default()
                .with_intra_threads(1)
                .with_provider(ExecutionProvider::Cuda { device_id: 0 }),
            config: ServingConfig {
                device: ComputeDevice::Gpu { index: 0 },
                cpu_cores: 1,
                gpu_fraction: Some(1.0),
                intra_op_threads: 1,
                max_batch_size: MAX_BATCH,
                ..ServingConfig::default()
            },
        });
    }
    out
}

/// The model served on `device`, or why it cannot be.
fn serve(device: &Device, path: &Path, name: &str) -> Result<Arc<ModelServer>, String> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    if !device.config.device.is_gpu() && device.config.intra_op_threads > cores {
        return Err(format!(
            "{} intra-op threads need as many cores; this machine has {cores}",
            device.config.intra_op_threads
        ));
    }
    let runtime = OrtRuntime::new(device.options.clone()).map_err(|e| e.to_string())?;
    let server = ModelServer::new().with_runtime(ModelFormat::Onnx, Arc::new(runtime));
    let spec = ModelSpec::default()
        .with_name(name)
        .with_batcher(BatcherConfig::default().with_max_batch_size(MAX_BATCH));
    server.load_path(path, spec).map_err(|e| e.to_string())?;
    Ok(Arc::new(server))
}

fn hardware(c: &mut Criterion) {
    let path = std::env::var_os("MLOPS_BENCH_MODEL").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("testdata/mlp.onnx"),
        PathBuf::from,
    );
    let manifest = ModelManifest::from_path(&path).expect("the model to compare");
    let requests: RequestSet =
        input::for_model(&manifest, &path, &InputOptions::default()).expect("its requests");
    let rows = requests.batch_size().max(1);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");

    let mut served = Vec::new();
    let mut skipped = Vec::new();
    for device in devices() {
        match serve(&device, &path, &manifest.name) {
            Ok(server) => served.push((device, server)),
            Err(reason) => skipped.push((device.name, reason)),
        }
    }
    if !cfg!(feature = "cuda") {
        skipped.push((
            "cuda".to_string(),
            "not compiled in (build with --features cuda)".to_string(),
        ));
    }

    let mut group = c.benchmark_group("hardware");
    group.throughput(Throughput::Elements(1));
    group.measurement_time(Duration::from_secs(3));
    let mut generators = Vec::new();
    for (device, server) in &served {
        let target = Arc::new(ServerTarget::new(
            server.clone(),
            manifest.name.clone(),
            None,
        ));
        let generator =
            LoadGenerator::new(target, &requests, LoadConfig::default()).expect("a generator");
        group.bench_function(&device.name, |b| {
            b.iter_custom(|iters| {
                let (took, failed, _) =
                    runtime.block_on(generator.run_requests(CONCURRENCY, iters));
                assert_eq!(failed, 0, "{}: failed requests", device.name);
                took
            })
        });
        generators.push(generator);
    }
    group.finish();

    let cost = CostModel::default();
    println!(
        "\n{} ({}), {rows} row(s) per request, concurrency {CONCURRENCY}, batches of up to {MAX_BATCH}:\n",
        manifest.name, manifest.entry.format
    );
    println!("| device | requests/s | p50 ms | p99 ms | samples/s | cost per million inferences |");
    println!("|---|--:|--:|--:|--:|--:|");
    for ((device, _), generator) in served.iter().zip(&generators) {
        let load = LoadConfig::default()
            .with_warmup(Duration::from_millis(500))
            .with_window(Duration::from_secs(1))
            .with_max_trials(5);
        let generator = generator.with_config(load).expect("a generator");
        let outcome = runtime
            .block_on(generator.measure(LoadMode::Concurrency(CONCURRENCY)))
            .expect("a measurement");
        let m = &outcome.measurement;
        let samples = m.throughput_rps * rows as f64;
        println!(
            "| {} | {:.0} | {:.3} | {:.3} | {:.0} | {:.5} |",
            device.name,
            m.throughput_rps,
            m.latency.p50_ms,
            m.latency.p99_ms,
            samples,
            cost.per_million(&device.config, samples)
        );
    }
    for (name, reason) in &skipped {
        println!("| {name} | skipped: {reason} | | | | |");
    }
    println!(
        "\nprices: {}/core-hour, {}/GPU-hour (the profiler's defaults)",
        cost.cpu_core_hour, cost.gpu_hour
    );
}

criterion_group!(benches, hardware);
criterion_main!(benches);
