//! mlops-core on the request path, on the CPU: what a batcher pays to stack requests
//! and split responses, what checking a request against a signature costs, and how long
//! reading a model's signature takes.
//!
//! ```text
//! cargo bench --bench core
//! ```

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use mlops::core::format::onnx;
use mlops::core::{DataType, Dim, ModelManifest, Signature, Tensor, TensorSpec, detect_bytes};

const DEVICE: &str = "cpu";

fn requests(count: usize, rows: usize, width: usize) -> Vec<Tensor> {
    (0..count)
        .map(|i| {
            let values: Vec<f32> = (0..rows * width).map(|j| (i * j) as f32).collect();
            Tensor::from_vec("x", vec![rows, width], values).expect("consistent shape")
        })
        .collect()
}

fn batching(c: &mut Criterion) {
    let mut group = c.benchmark_group(format!("{DEVICE}/batch"));
    // The MLP's input (64 features) and the CNN's (3x32x32 = 3,072).
    for width in [64usize, 3072] {
        for count in [8usize, 32, 128] {
            let parts = requests(count, 1, width);
            group.throughput(Throughput::Bytes((count * width * 4) as u64));
            group.bench_with_input(
                BenchmarkId::new(format!("concat/width{width}"), count),
                &parts,
                |b, parts| b.iter(|| Tensor::concat_batch(black_box(parts))),
            );
            let batch = Tensor::concat_batch(&parts).expect("same shapes");
            let sizes = vec![1usize; count];
            group.bench_with_input(
                BenchmarkId::new(format!("split/width{width}"), count),
                &batch,
                |b, batch| b.iter(|| batch.split_batch(black_box(&sizes))),
            );
        }
    }
    group.finish();
}

fn validation(c: &mut Criterion) {
    let signature = Signature::new(
        vec![TensorSpec::new(
            "x",
            DataType::Fp32,
            vec![Dim::Dynamic, Dim::Fixed(64)],
        )],
        vec![TensorSpec::new(
            "y",
            DataType::Fp32,
            vec![Dim::Dynamic, Dim::Fixed(16)],
        )],
    );
    let request = requests(1, 1, 64);
    c.bench_function(&format!("{DEVICE}/signature/validate_inputs"), |b| {
        b.iter(|| signature.validate_inputs(black_box(&request)))
    });
}

fn reading(c: &mut Criterion) {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata");
    let mut group = c.benchmark_group(format!("{DEVICE}/read"));
    for model in ["mlp.onnx", "cnn.onnx"] {
        let bytes = std::fs::read(root.join(model)).expect("bundled model");
        group.throughput(Throughput::Bytes(bytes.len() as u64));
        group.bench_with_input(BenchmarkId::new("detect", model), &bytes, |b, bytes| {
            b.iter(|| detect_bytes(black_box(bytes)))
        });
        group.bench_with_input(
            BenchmarkId::new("onnx_signature", model),
            &bytes,
            |b, bytes| b.iter(|| onnx::parse(black_box(bytes))),
        );
    }
    group.bench_function("manifest/mlflow_onnx", |b| {
        b.iter(|| ModelManifest::from_path(black_box(&root.join("mlflow_onnx"))))
    });
    group.finish();
}

criterion_group!(benches, batching, validation, reading);
criterion_main!(benches);
