//! The bundled models on a GPU (feature `cuda`): the same golden outputs as on the CPU.
//! Without an NVIDIA device the tests say so and pass without running.

// Test helpers may panic: a panic is a failed test.
#![allow(clippy::unwrap_used)]
// Skips are said on the test's output.
#![allow(clippy::print_stdout)]
#![cfg(feature = "cuda")]

use std::sync::Arc;

use mlops_core::testkit::{Golden, assert_close, testdata};
use mlops_core::{ModelFormat, ModelManifest};
use mlops_runtime::{
    Device, ExecutionProvider, InferenceRuntime, ModelServer, ModelSpec, OrtOptions, OrtRuntime,
};

fn gpu_present() -> bool {
    let present = std::path::Path::new("/dev/nvidia0").exists();
    if !present {
        println!("skipped: no NVIDIA GPU (/dev/nvidia0) on this machine");
    }
    present
}

fn cuda_runtime() -> OrtRuntime {
    OrtRuntime::new(OrtOptions::default().with_provider(ExecutionProvider::Cuda { device_id: 0 }))
        .unwrap()
}

#[test]
fn onnx_models_match_golden_on_cuda() {
    if !gpu_present() {
        return;
    }
    let runtime = cuda_runtime();
    for (model, golden) in [
        ("mlp.onnx", "mlp"),
        ("cnn.onnx", "cnn"),
        ("torch_tagger.onnx", "torch_tagger"),
    ] {
        let manifest = ModelManifest::from_path(&testdata(model)).unwrap();
        let mut session = runtime.load(&manifest, &testdata("")).unwrap();
        assert_eq!(session.device(), Device::Cuda(0));
        let golden = Golden::load(golden).unwrap();
        let out = session.run(&golden.inputs).unwrap();
        for (got, want) in out.iter().zip(&golden.outputs) {
            assert_close(got, want, 1e-4, 1e-3).unwrap_or_else(|e| panic!("{model}: {e}"));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_batches_on_cuda() {
    if !gpu_present() {
        return;
    }
    let server = ModelServer::new().with_runtime(ModelFormat::Onnx, Arc::new(cuda_runtime()));
    server
        .load_path(&testdata("cnn.onnx"), ModelSpec::default())
        .unwrap();
    let golden = Golden::load("cnn").unwrap();
    let out = server
        .infer("cnn", None, golden.inputs.clone())
        .await
        .unwrap();
    assert_close(&out[0], &golden.outputs[0], 1e-4, 1e-3).unwrap();
}

#[test]
#[cfg(feature = "candle")]
fn candle_mlp_matches_golden_on_cuda() {
    if !gpu_present() {
        return;
    }
    let runtime = mlops_runtime::CandleRuntime::new(Device::Cuda(0)).unwrap();
    let mut session = runtime.open(&testdata("mlp.safetensors")).unwrap();
    let golden = Golden::load("mlp").unwrap();
    let out = mlops_runtime::ModelSession::run(&mut session, &golden.inputs).unwrap();
    assert_close(&out[0], &golden.outputs[0], 1e-4, 1e-3).unwrap();
}

#[test]
fn without_a_gpu_the_cuda_provider_fails_loudly() {
    if std::path::Path::new("/dev/nvidia0").exists() {
        return;
    }
    // Never a silent fallback to the CPU: loading must fail and say why.
    let manifest = ModelManifest::from_path(&testdata("mlp.onnx")).unwrap();
    let err = cuda_runtime()
        .load(&manifest, &testdata(""))
        .map(|_| ())
        .unwrap_err()
        .to_string();
    assert!(err.contains("CUDA execution provider cannot load"), "{err}");
}

#[test]
fn the_cuda_build_carries_onnx_runtimes_gpu_providers() {
    if std::env::var_os("ORT_DYLIB_PATH").is_some() {
        println!("skipped: ORT_DYLIB_PATH names a library of the user's");
        return;
    }
    // The build fetched PyPI's onnxruntime-gpu: its core library, with the CUDA and
    // TensorRT providers beside it, where ONNX Runtime looks for them.
    let library = mlops_runtime::library_path().unwrap();
    let dir = library.parent().unwrap();
    assert!(
        dir.ends_with("onnxruntime-gpu-1.31.1"),
        "{}",
        library.display()
    );
    for provider in [
        "libonnxruntime_providers_shared.so",
        "libonnxruntime_providers_cuda.so",
        "libonnxruntime_providers_tensorrt.so",
    ] {
        let size = std::fs::metadata(dir.join(provider)).unwrap().len();
        assert!(size > 10_000, "{provider}: {size} bytes");
    }
}
