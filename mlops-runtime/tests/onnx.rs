//! ONNX Runtime sessions on the bundled models: golden outputs, and bad input refused
//! before it reaches ONNX Runtime.

// Test helpers may panic: a panic is a failed test.
#![allow(clippy::unwrap_used)]
#![cfg(feature = "ort")]

use std::fs;

use mlops_core::testkit::{Golden, assert_close, testdata};
use mlops_core::{ModelManifest, Tensor};
use mlops_runtime::{
    Device, Error, ExecutionProvider, InferenceRuntime, ModelSession, OrtOptions, OrtRuntime,
};

fn runtime() -> OrtRuntime {
    OrtRuntime::new(OrtOptions::default().with_intra_threads(1)).unwrap()
}

fn session(relative: &str) -> Box<dyn ModelSession> {
    let path = testdata(relative);
    let manifest = ModelManifest::from_path(&path).unwrap();
    let root = if path.is_dir() {
        path
    } else {
        path.parent().unwrap().to_path_buf()
    };
    runtime().load(&manifest, &root).unwrap()
}

fn check_golden(model: &str, golden: &str) {
    let golden = Golden::load(golden).unwrap();
    let mut session = session(model);
    assert_eq!(session.device(), Device::Cpu);
    let outputs = session.run(&golden.inputs).unwrap();
    assert_eq!(outputs.len(), golden.outputs.len(), "{model}");
    for (got, want) in outputs.iter().zip(&golden.outputs) {
        assert_close(got, want, 1e-5, 1e-4).unwrap_or_else(|e| panic!("{model}: {e}"));
    }
}

#[test]
fn mlp_matches_golden() {
    check_golden("mlp.onnx", "mlp");
}

#[test]
fn cnn_matches_golden() {
    check_golden("cnn.onnx", "cnn");
}

#[test]
fn pytorch_export_with_int64_and_bool_inputs_matches_golden() {
    check_golden("torch_tagger.onnx", "torch_tagger");
}

#[test]
fn external_data_and_mlflow_packages_run_the_same_model() {
    check_golden("mlp_external/model.onnx", "mlp");
    check_golden("mlflow_onnx", "mlp");
}

#[test]
fn batch_of_one_row_gives_that_rows_output() {
    let golden = Golden::load("mlp").unwrap();
    let mut session = session("mlp.onnx");
    let rows = golden.inputs[0].split_batch(&[1, 1, 1, 1]).unwrap();
    let expected = golden.outputs[0].split_batch(&[1, 1, 1, 1]).unwrap();
    for (row, want) in rows.iter().zip(&expected) {
        let got = session.run(std::slice::from_ref(row)).unwrap();
        assert_close(&got[0], want, 1e-5, 1e-4).unwrap();
    }
}

#[test]
fn a_model_file_onnx_runtime_refuses_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    // A valid-looking header (it parses as a ModelProto) but a graph ONNX Runtime rejects:
    // the bundled model with its nodes cut out.
    let bytes = fs::read(testdata("mlp.onnx")).unwrap();
    let manifest = ModelManifest::from_path(&testdata("mlp.onnx")).unwrap();
    fs::write(dir.path().join("mlp.onnx"), &bytes[..bytes.len() / 2]).unwrap();
    let err = runtime()
        .load(&manifest, dir.path())
        .map(|_| ())
        .unwrap_err();
    assert!(matches!(err, Error::Load { .. }), "{err}");
    let message = err.to_string();
    assert!(
        message.starts_with("cannot load model 'mlp': "),
        "{message}"
    );
    assert!(message.contains("mlp.onnx"), "{message}");
    // ONNX Runtime's own error is kept as the source, not only as text.
    let source = std::error::Error::source(&err).expect("the backend's error as the source");
    assert!(
        !source.to_string().is_empty() && message.ends_with(&source.to_string()),
        "{message} / {source}"
    );
    assert_eq!(err.code(), mlops_runtime::Code::Internal);
}

#[test]
fn a_manifest_that_disagrees_with_the_file_is_refused() {
    let mut manifest = ModelManifest::from_path(&testdata("mlp.onnx")).unwrap();
    manifest.signature.as_mut().unwrap().inputs[0].name = "features".into();
    let err = runtime()
        .load(&manifest, &testdata(""))
        .map(|_| ())
        .unwrap_err()
        .to_string();
    assert!(err.contains("does not match the model file"), "{err}");
}

#[test]
fn gpu_providers_are_refused_without_their_feature() {
    let result = OrtRuntime::new(
        OrtOptions::default().with_provider(ExecutionProvider::Cuda { device_id: 0 }),
    );
    if cfg!(feature = "cuda") {
        // With the feature, loading a model must fail loudly on a machine without CUDA;
        // see tests/gpu.rs.
        return;
    }
    let err = result.unwrap_err();
    assert_eq!(
        err.to_string(),
        "the CUDA execution provider needs the 'cuda' feature of mlops-runtime, which this build does not have"
    );
}

#[test]
fn wrong_inputs_are_refused_before_onnx_runtime_sees_them() {
    let mut session = session("cnn.onnx");
    let cases = [
        (
            Tensor::from_vec("image", vec![1, 3, 32], vec![0f32; 96]).unwrap(),
            "input 'image': expected rank 4 (shape [-1, 3, 32, 32]), got rank 3 (shape [1, 3, 32])",
        ),
        (
            Tensor::from_vec("image", vec![1, 3, 32, 32], vec![0f64; 3072]).unwrap(),
            "input 'image': expected data type FP32, got FP64",
        ),
        (
            Tensor::from_vec("pixels", vec![1, 3, 32, 32], vec![0f32; 3072]).unwrap(),
            "input 'pixels': not an input of this model; its inputs are 'image'",
        ),
    ];
    for (tensor, message) in cases {
        let err = session.run(&[tensor]).unwrap_err();
        assert!(matches!(err, Error::InvalidInput(_)), "{err}");
        assert_eq!(err.to_string(), message);
    }
}
