//! A Rust-defined MLP built by candle from the bundled safetensors weights: the same
//! golden outputs as the ONNX model with those weights, through the same batcher.

// Test helpers may panic: a panic is a failed test.
#![allow(clippy::unwrap_used)]
#![cfg(feature = "candle")]

use std::fs;

use mlops_core::testkit::{Golden, assert_close, testdata};
use mlops_core::{DataType, Dim, ModelManifest, TensorSpec};
use mlops_runtime::{
    Batcher, BatcherConfig, CandleRuntime, Device, Error, InferenceRuntime, ModelSession,
};

#[test]
fn the_mlp_matches_the_onnx_golden_outputs() {
    let runtime = CandleRuntime::new(Device::Cpu).unwrap();
    let mut session = runtime.open(&testdata("mlp.safetensors")).unwrap();
    assert_eq!(session.device(), Device::Cpu);
    let signature = session.signature().clone();
    assert_eq!(
        signature.inputs,
        vec![TensorSpec::new(
            "x",
            DataType::Fp32,
            vec![Dim::Dynamic, Dim::Fixed(64)]
        )]
    );
    assert_eq!(
        signature.outputs,
        vec![TensorSpec::new(
            "y",
            DataType::Fp32,
            vec![Dim::Dynamic, Dim::Fixed(16)]
        )]
    );
    let golden = Golden::load("mlp").unwrap();
    let out = session.run(&golden.inputs).unwrap();
    assert_close(&out[0], &golden.outputs[0], 1e-5, 1e-4).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn candle_models_serve_through_the_batcher() {
    let runtime = CandleRuntime::new(Device::Cpu).unwrap();
    let manifest = ModelManifest::from_path(&testdata("mlp.safetensors")).unwrap();
    let sessions = (0..2)
        .map(|_| runtime.load(&manifest, &testdata("")).unwrap())
        .collect();
    let batcher = std::sync::Arc::new(
        Batcher::start("mlp-candle", sessions, BatcherConfig::default()).unwrap(),
    );
    let golden = Golden::load("mlp").unwrap();
    let rows = golden.inputs[0].split_batch(&[1, 1, 1, 1]).unwrap();
    let expected = golden.outputs[0].split_batch(&[1, 1, 1, 1]).unwrap();
    let mut tasks = Vec::new();
    for (row, want) in rows.into_iter().zip(expected) {
        let b = std::sync::Arc::clone(&batcher);
        tasks.push(tokio::spawn(async move {
            let out = b.infer(vec![row]).await.unwrap();
            assert_close(&out[0], &want, 1e-5, 1e-4).unwrap();
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    assert_eq!(batcher.stats().request_success, 4);
}

#[test]
fn weights_that_do_not_fit_the_architecture_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = fs::read(testdata("mlp.safetensors")).unwrap();
    // Claim a first layer of 32 inputs: fc1.weight is [128, 64].
    let header_len = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header = std::str::from_utf8(&bytes[8..8 + header_len]).unwrap();
    let patched = header.replace("64,128,16", "32,128,16");
    assert_eq!(patched.len(), header.len());
    let mut out = bytes[..8].to_vec();
    out.extend_from_slice(patched.as_bytes());
    out.extend_from_slice(&bytes[8 + header_len..]);
    fs::write(dir.path().join("bad.safetensors"), out).unwrap();

    let err = CandleRuntime::new(Device::Cpu)
        .unwrap()
        .open(&dir.path().join("bad.safetensors"))
        .unwrap_err();
    assert!(matches!(err, Error::Load { .. }));
    assert_eq!(
        err.to_string(),
        "cannot load model 'bad': layer fc1: weight [128, 64] and bias [128] do not match widths 32 -> 128"
    );
}

#[test]
fn cuda_needs_its_feature() {
    if cfg!(feature = "cuda") {
        return;
    }
    let err = CandleRuntime::new(Device::Cuda(0)).unwrap_err();
    assert_eq!(
        err.to_string(),
        "candle on CUDA needs the 'cuda' feature of mlops-runtime, which this build does not have"
    );
}
