//! Every bundled model, read the way a user's model would be: format by content,
//! signature from the model, files hashed; and every broken file refused with its reason.

// Test helpers may panic: a panic is a failed test.
#![allow(clippy::unwrap_used)]

use std::fs;
use std::path::Path;

use mlops_core::testkit::{Golden, testdata};
use mlops_core::{DataType, Dim, Error, ModelFormat, ModelManifest, Signature, TensorSpec, detect};
use sha2::{Digest, Sha256};

const DYN: Dim = Dim::Dynamic;

fn fixed(n: u64) -> Dim {
    Dim::Fixed(n)
}

fn spec(name: &str, dtype: DataType, shape: &[Dim]) -> TensorSpec {
    TensorSpec::new(name, dtype, shape.to_vec())
}

fn manifest(relative: &str) -> ModelManifest {
    ModelManifest::from_path(&testdata(relative))
        .unwrap_or_else(|e| panic!("{relative} should be readable: {e}"))
}

fn sha256_of(path: &Path) -> String {
    hex::encode(Sha256::digest(fs::read(path).unwrap()))
}

fn mlp_signature() -> Signature {
    Signature::new(
        vec![spec("x", DataType::Fp32, &[DYN, fixed(64)])],
        vec![spec("y", DataType::Fp32, &[DYN, fixed(16)])],
    )
}

#[test]
fn onnx_mlp() {
    let m = manifest("mlp.onnx");
    assert_eq!(m.name, "mlp");
    assert_eq!(m.format, ModelFormat::Onnx);
    assert_eq!(m.entry.path, "mlp.onnx");
    assert_eq!(m.entry.format, ModelFormat::Onnx);
    assert_eq!(m.signature, Some(mlp_signature()));
    assert!(m.signature.as_ref().unwrap().is_batchable());
    assert_eq!(m.entry.properties["onnx.ir_version"], "8");
    assert_eq!(m.entry.properties["onnx.opset.ai.onnx"], "17");
    assert_eq!(m.entry.properties["onnx.producer"], "mlops-testdata");
    assert_eq!(m.files.len(), 1);
    assert_eq!(m.files[0].path, "mlp.onnx");
    assert_eq!(
        m.files[0].size,
        fs::metadata(testdata("mlp.onnx")).unwrap().len()
    );
    assert_eq!(m.files[0].sha256, sha256_of(&testdata("mlp.onnx")));
}

#[test]
fn onnx_cnn() {
    let m = manifest("cnn.onnx");
    assert_eq!(
        m.signature,
        Some(Signature::new(
            vec![spec(
                "image",
                DataType::Fp32,
                &[DYN, fixed(3), fixed(32), fixed(32)]
            )],
            vec![spec("logits", DataType::Fp32, &[DYN, fixed(10)])],
        ))
    );
}

#[test]
fn onnx_exported_by_pytorch_with_two_dynamic_axes() {
    let m = manifest("torch_tagger.onnx");
    assert_eq!(m.format, ModelFormat::Onnx);
    assert_eq!(
        m.signature,
        Some(Signature::new(
            vec![
                spec("tokens", DataType::Int64, &[DYN, DYN]),
                spec("mask", DataType::Bool, &[DYN, DYN]),
            ],
            vec![
                spec("scores", DataType::Fp32, &[DYN, DYN, fixed(4)]),
                spec("pooled", DataType::Fp32, &[DYN, fixed(8)]),
            ],
        ))
    );
    assert!(m.entry.properties["onnx.producer"].starts_with("pytorch"));
}

#[test]
fn safetensors_weights_are_not_a_signature() {
    let m = manifest("mlp.safetensors");
    assert_eq!(m.format, ModelFormat::Safetensors);
    assert_eq!(m.signature, None);
    assert_eq!(
        m.weights,
        vec![
            // In the order of their data, which the writer sorted by name.
            spec("fc1.bias", DataType::Fp32, &[fixed(128)]),
            spec("fc1.weight", DataType::Fp32, &[fixed(128), fixed(64)]),
            spec("fc2.bias", DataType::Fp32, &[fixed(16)]),
            spec("fc2.weight", DataType::Fp32, &[fixed(16), fixed(128)]),
        ]
    );
    assert_eq!(
        m.entry.properties["safetensors.metadata.architecture"],
        "mlp"
    );
    assert_eq!(
        m.entry.properties["safetensors.metadata.layers"],
        "64,128,16"
    );
}

#[test]
fn torchscript_is_told_from_a_checkpoint() {
    let m = manifest("mlp.torchscript.pt");
    assert_eq!(m.format, ModelFormat::TorchScript);
    assert_eq!(m.name, "mlp");
    assert_eq!(m.signature, None);
    let err = ModelManifest::from_path(&testdata("bad/checkpoint.pt")).unwrap_err();
    assert!(matches!(err, Error::UnsupportedFormat { .. }));
    assert!(
        err.to_string()
            .contains("a PyTorch checkpoint (torch.save)"),
        "{err}"
    );
}

#[test]
fn mlflow_onnx_model_uses_the_onnx_file_inside() {
    let m = manifest("mlflow_onnx");
    assert_eq!(m.name, "mlflow_onnx");
    assert_eq!(m.format, ModelFormat::Mlflow);
    assert_eq!(m.entry.path, "model.onnx");
    assert_eq!(m.entry.format, ModelFormat::Onnx);
    assert_eq!(m.signature, Some(mlp_signature()));
    let paths: Vec<&str> = m.files.iter().map(|f| f.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "conda.yaml",
            "input_example.json",
            "model.onnx",
            "python_env.yaml",
            "requirements.txt",
            "serving_input_example.json"
        ]
    );
    // MLflow saved the bundled MLP unchanged, weights inside.
    let onnx = m.files.iter().find(|f| f.path == "model.onnx").unwrap();
    assert_eq!(onnx.sha256, sha256_of(&testdata("mlp.onnx")));
    let mlflow = m.mlflow.as_ref().unwrap();
    assert_eq!(mlflow.mlflow_version.as_deref(), Some("3.17.2"));
    assert_eq!(
        mlflow.metadata.as_ref().unwrap()["source"],
        serde_json::json!("mlops testdata")
    );
    // The time MLflow recorded, not the time of reading.
    let recorded = mlflow.utc_time_created.as_deref().unwrap();
    assert_eq!(
        m.created_at.format("%Y-%m-%d %H:%M:%S%.6f").to_string(),
        recorded
    );
    // Pointing at the MLmodel file itself means the same model.
    let via_file = manifest("mlflow_onnx/MLmodel");
    assert_eq!(via_file.entry, m.entry);
    assert_eq!(via_file.files, m.files);
}

#[test]
fn mlflow_column_signature() {
    let m = manifest("mlflow_columns");
    assert_eq!(
        m.entry.format,
        ModelFormat::Mlflow,
        "a pyfunc model has no native entry"
    );
    assert_eq!(
        m.signature,
        Some(Signature::new(
            vec![
                spec("sepal_length", DataType::Fp64, &[DYN]),
                spec("sepal_width", DataType::Fp64, &[DYN]),
                spec("id", DataType::Int64, &[DYN]),
                spec("species", DataType::Bytes, &[DYN]),
            ],
            vec![spec("score", DataType::Fp64, &[DYN])],
        ))
    );
}

#[test]
fn saved_model_serving_default() {
    let m = manifest("tf_savedmodel");
    assert_eq!(m.format, ModelFormat::TfSavedModel);
    assert_eq!(m.entry.path, "");
    assert_eq!(m.entry.signature_name.as_deref(), Some("serving_default"));
    assert_eq!(m.entry.properties["tensorflow.tags"], "serve");
    assert_eq!(
        m.signature,
        Some(Signature::new(
            vec![spec("x", DataType::Fp32, &[DYN, fixed(4)])],
            vec![spec("y", DataType::Fp32, &[DYN, fixed(3)])],
        ))
    );
    assert!(m.files.iter().any(|f| f.path == "saved_model.pb"));
    assert!(m.files.iter().any(|f| f.path.starts_with("variables/")));
}

#[test]
fn saved_model_without_serving_default_takes_the_first_named_signature() {
    let m = manifest("tf_named_signature");
    assert_eq!(m.entry.properties["tensorflow.signatures"], "embed,predict");
    assert_eq!(m.entry.signature_name.as_deref(), Some("embed"));
    assert_eq!(
        m.signature,
        Some(Signature::new(
            vec![spec("tokens", DataType::Int64, &[DYN, DYN])],
            vec![spec("embedding", DataType::Fp32, &[DYN, fixed(8)])],
        ))
    );
    // Pointing at saved_model.pb means its folder, not a protobuf file of unknown kind.
    assert_eq!(
        detect(&testdata("tf_named_signature/saved_model.pb")).unwrap(),
        ModelFormat::TfSavedModel
    );
    // Every signature is there for whoever asks by name.
    let pb = fs::read(testdata("tf_named_signature/saved_model.pb")).unwrap();
    let info = mlops_core::format::saved_model::parse(&pb).unwrap();
    assert_eq!(
        info.signatures["predict"],
        Signature::new(
            vec![spec("features", DataType::Fp32, &[DYN, fixed(4)])],
            vec![spec("probabilities", DataType::Fp32, &[DYN, fixed(3)])],
        )
    );
}

#[test]
fn golden_inputs_fit_their_models_signatures() {
    for (golden, model) in [
        ("mlp", "mlp.onnx"),
        ("cnn", "cnn.onnx"),
        ("torch_tagger", "torch_tagger.onnx"),
        ("tf_savedmodel", "tf_savedmodel"),
    ] {
        let golden = Golden::load(golden).unwrap();
        let signature = manifest(model).signature.unwrap();
        signature
            .validate_inputs(&golden.inputs)
            .unwrap_or_else(|e| panic!("{model}: {e}"));
        for output in &golden.outputs {
            let spec = signature.output(output.name()).unwrap();
            let expected: Vec<Dim> = spec.shape.clone().unwrap();
            assert_eq!(output.shape().len(), expected.len(), "{model}");
            assert!(
                expected
                    .iter()
                    .zip(output.shape())
                    .all(|(d, &n)| d.accepts(n)),
                "{model}: output {} has shape {:?}",
                output.name(),
                output.shape()
            );
        }
    }
}

#[test]
fn detection_ignores_file_names() {
    let dir = tempfile::tempdir().unwrap();
    for (source, disguise, format) in [
        ("mlp.onnx", "weights.bin", ModelFormat::Onnx),
        ("mlp.safetensors", "model.onnx", ModelFormat::Safetensors),
        ("mlp.torchscript.pt", "model.zip", ModelFormat::TorchScript),
    ] {
        let path = dir.path().join(disguise);
        fs::copy(testdata(source), &path).unwrap();
        assert_eq!(
            detect(&path).unwrap(),
            format,
            "{source} renamed {disguise}"
        );
        fs::remove_file(&path).unwrap();
    }
    // A file named like a model but holding text is not one.
    let fake = dir.path().join("model.onnx");
    fs::write(&fake, "not really").unwrap();
    assert!(matches!(
        detect(&fake),
        Err(Error::UnsupportedFormat { .. })
    ));
}

#[test]
fn broken_files_are_refused_with_their_reason() {
    let cases: [(&str, &str); 10] = [
        (
            "bad/empty.bin",
            "unsupported model format: the file is empty",
        ),
        (
            "bad/random.bin",
            "unsupported model format: unrecognized content",
        ),
        (
            "bad/not_a_model.txt",
            "unsupported model format: unrecognized content",
        ),
        (
            "bad/truncated_mlp.onnx",
            "malformed ONNX model: not a valid ModelProto",
        ),
        (
            "bad/truncated.safetensors",
            "malformed safetensors file: header length",
        ),
        (
            "bad/short_data.safetensors",
            "malformed safetensors file: the weights need 41536 bytes of data but the file holds 41436",
        ),
        (
            "bad/bad_yaml",
            "invalid manifest: not a valid MLmodel YAML document",
        ),
        (
            "bad/truncated_savedmodel",
            "malformed TensorFlow SavedModel: saved_model.pb is not a valid SavedModel message",
        ),
        (
            "bad/checkpoint.pt",
            "unsupported model format: a PyTorch checkpoint",
        ),
        ("bad/no_such_file.onnx", "No such file or directory"),
    ];
    for (relative, reason) in cases {
        let path = testdata(relative);
        let err = ModelManifest::from_path(&path).unwrap_err();
        let message = err.to_string();
        assert!(
            message.contains(reason),
            "{relative}: '{message}' should say '{reason}'"
        );
        assert!(
            message.contains(&*path.file_name().unwrap().to_string_lossy()),
            "{relative}: '{message}' should name the file"
        );
        assert!(!message.contains('\n'), "{relative}: one line");
    }
}

#[test]
fn a_directory_takes_the_format_of_its_one_model() {
    let dir = tempfile::tempdir().unwrap();
    fs::copy(testdata("cnn.onnx"), dir.path().join("model.onnx")).unwrap();
    fs::write(dir.path().join("README.txt"), "notes").unwrap();
    let m = ModelManifest::from_path(dir.path()).unwrap();
    assert_eq!(m.format, ModelFormat::Onnx);
    assert_eq!(m.entry.path, "model.onnx");
    assert_eq!(
        m.files.len(),
        2,
        "every file of the directory travels with it"
    );

    fs::copy(testdata("mlp.onnx"), dir.path().join("other.onnx")).unwrap();
    let err = ModelManifest::from_path(dir.path())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("several models (model.onnx is ONNX model, other.onnx is ONNX model)"),
        "{err}"
    );
}

#[test]
fn onnx_external_data_travels_with_the_model() {
    let m = manifest("mlp_external/model.onnx");
    assert_eq!(m.signature, Some(mlp_signature()));
    let files: Vec<(&str, String)> = m
        .files
        .iter()
        .map(|f| (f.path.as_str(), f.sha256.clone()))
        .collect();
    assert_eq!(
        files,
        [
            (
                "model.onnx",
                sha256_of(&testdata("mlp_external/model.onnx"))
            ),
            (
                "weights.bin",
                sha256_of(&testdata("mlp_external/weights.bin"))
            ),
        ]
    );
    // Weights outside the model: the graph file alone is small.
    assert!(m.files[0].size < 2_000, "{}", m.files[0].size);
    assert_eq!(m.size_bytes(), m.files[0].size + m.files[1].size);

    // A model whose external data is missing says so.
    let dir = tempfile::tempdir().unwrap();
    fs::copy(
        testdata("mlp_external/model.onnx"),
        dir.path().join("model.onnx"),
    )
    .unwrap();
    let err = ModelManifest::from_path(&dir.path().join("model.onnx"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("weights.bin"), "{err}");
}
