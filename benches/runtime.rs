//! Inference throughput on the CPU: a raw ONNX Runtime session at rising batch sizes, and
//! the same model behind the dynamic batcher at rising concurrency (single-row requests),
//! with one and two instances.
//!
//! ```text
//! cargo bench --bench runtime --features candle
//! ```
//!
//! Each iteration of a batcher bench submits `concurrency` requests at once and waits for
//! all of them; criterion's element throughput is then requests (samples) per second, the
//! same unit as the raw session's rows per second.

use std::hint::black_box;
use std::path::Path;
use std::sync::Arc;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use mlops::core::testkit::{Golden, testdata};
use mlops::core::{ModelManifest, Tensor};
use mlops::runtime::{
    Batcher, BatcherConfig, InferenceRuntime, ModelSession, OrtOptions, OrtRuntime,
};

const DEVICE: &str = "cpu";
const MODELS: [(&str, &str); 2] = [("mlp", "mlp.onnx"), ("cnn", "cnn.onnx")];

fn session(model: &str, threads: usize) -> Box<dyn ModelSession> {
    let runtime = OrtRuntime::new(OrtOptions::default().with_intra_threads(threads))
        .expect("ONNX Runtime (the build fetches it; or set ORT_DYLIB_PATH)");
    let path = testdata(model);
    let manifest = ModelManifest::from_path(&path).expect("bundled model");
    runtime
        .load(&manifest, path.parent().unwrap_or(Path::new(".")))
        .expect("bundled model loads")
}

/// The first golden row repeated `rows` times.
fn batch_of(golden: &Golden, rows: usize) -> Tensor {
    let input = &golden.inputs[0];
    let rest = input.shape()[0] - 1;
    let row = input
        .split_batch(&[1, rest])
        .expect("golden batch splits")
        .remove(0);
    Tensor::concat_batch(&vec![row; rows]).expect("rows stack")
}

fn raw_session(c: &mut Criterion) {
    for (name, file) in MODELS {
        let golden = Golden::load(name).expect("golden data");
        for threads in [1usize, 2] {
            let mut group =
                c.benchmark_group(format!("{DEVICE}/ort_session/{name}/threads{threads}"));
            let mut session = session(file, threads);
            for rows in [1usize, 8, 32, 128] {
                let input = vec![batch_of(&golden, rows)];
                group.throughput(Throughput::Elements(rows as u64));
                group.bench_with_input(BenchmarkId::new("batch", rows), &input, |b, input| {
                    b.iter(|| session.run(black_box(input)).expect("runs"))
                });
            }
            group.finish();
        }
    }
}

fn batcher(c: &mut Criterion) {
    let client = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    for (name, file) in MODELS {
        let golden = Golden::load(name).expect("golden data");
        let row = batch_of(&golden, 1);
        for instances in [1usize, 2] {
            let sessions = (0..instances).map(|_| session(file, 1)).collect();
            let batcher = Arc::new(
                Batcher::start(
                    name,
                    sessions,
                    BatcherConfig::default()
                        .with_max_batch_size(128)
                        .with_max_queue_size(4096),
                )
                .expect("batcher starts"),
            );
            let mut group =
                c.benchmark_group(format!("{DEVICE}/batcher/{name}/instances{instances}"));
            for concurrency in [1usize, 8, 32, 128] {
                group.throughput(Throughput::Elements(concurrency as u64));
                group.bench_function(BenchmarkId::new("concurrency", concurrency), |b| {
                    b.iter(|| {
                        client.block_on(async {
                            let mut requests = tokio::task::JoinSet::new();
                            for _ in 0..concurrency {
                                let batcher = Arc::clone(&batcher);
                                let row = row.clone();
                                requests.spawn(async move { batcher.infer(vec![row]).await });
                            }
                            while let Some(answer) = requests.join_next().await {
                                black_box(answer.expect("task").expect("inference"));
                            }
                        })
                    })
                });
            }
            group.finish();
            let stats = batcher.stats();
            eprintln!(
                "{DEVICE}/batcher/{name}/instances{instances}: mean batch size {:.1} over {} executions",
                stats.mean_batch_size(),
                stats.execution_count
            );
            batcher.shutdown();
        }
    }
}

/// The same MLP (same weights) in candle and in ONNX Runtime, one thread each.
#[cfg(feature = "candle")]
fn candle_vs_ort(c: &mut Criterion) {
    use mlops::runtime::{CandleRuntime, Device};
    let golden = Golden::load("mlp").expect("golden data");
    let mut group = c.benchmark_group(format!("{DEVICE}/mlp_candle_vs_ort"));
    let mut ort = session("mlp.onnx", 1);
    let mut candle = CandleRuntime::new(Device::Cpu)
        .and_then(|r| r.open(&testdata("mlp.safetensors")))
        .expect("candle MLP");
    for rows in [1usize, 32, 128] {
        let input = vec![batch_of(&golden, rows)];
        group.throughput(Throughput::Elements(rows as u64));
        group.bench_with_input(BenchmarkId::new("ort", rows), &input, |b, input| {
            b.iter(|| ort.run(black_box(input)).expect("runs"))
        });
        group.bench_with_input(BenchmarkId::new("candle", rows), &input, |b, input| {
            b.iter(|| candle.run(black_box(input)).expect("runs"))
        });
    }
    group.finish();
}

#[cfg(not(feature = "candle"))]
fn candle_vs_ort(_: &mut Criterion) {
    eprintln!("candle vs ort skipped: run with --features candle");
}

criterion_group!(benches, raw_session, batcher, candle_vs_ort);
criterion_main!(benches);
