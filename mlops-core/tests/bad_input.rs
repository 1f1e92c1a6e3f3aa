//! No byte string makes a detector or parser panic: random bytes, real models cut short
//! at any point, and real models with bytes flipped.

// Test helpers may panic: a panic is a failed test.
#![allow(clippy::unwrap_used)]

use std::fs;

use bytes::Bytes;
use mlops_core::format::{onnx, safetensors, saved_model};
use mlops_core::mlflow::MlModel;
use mlops_core::testkit::testdata;
use mlops_core::{DataType, ModelManifest, Tensor, detect_bytes};
use proptest::prelude::*;

/// Every reader over one buffer; only panics matter here, so results are dropped.
fn read_everything(bytes: &[u8]) {
    let _ = detect_bytes(bytes);
    let _ = onnx::parse(bytes);
    let _ = saved_model::parse(bytes);
    let _ = safetensors::parse(bytes);
    if let Ok(text) = std::str::from_utf8(bytes) {
        let _ = MlModel::from_yaml(text).map(|doc| doc.parse_signature());
        let _ = ModelManifest::from_mlmodel_str(text, "fuzz");
    }
}

/// The bundled models' bytes, read once for all cases.
fn model_files() -> &'static [Vec<u8>] {
    static FILES: std::sync::LazyLock<Vec<Vec<u8>>> = std::sync::LazyLock::new(|| {
        [
            "mlp.onnx",
            "cnn.onnx",
            "torch_tagger.onnx",
            "mlp.safetensors",
            "mlp.torchscript.pt",
            "tf_savedmodel/saved_model.pb",
            "tf_named_signature/saved_model.pb",
            "mlflow_onnx/MLmodel",
            "mlflow_columns/MLmodel",
        ]
        .iter()
        .map(|f| fs::read(testdata(f)).unwrap())
        .collect()
    });
    &FILES
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn random_bytes(bytes in prop::collection::vec(any::<u8>(), 0..4096)) {
        read_everything(&bytes);
    }

    #[test]
    fn random_bytes_behind_each_magic(
        magic in prop::sample::select(vec![
            b"ftrt".to_vec(),
            b"PK\x03\x04".to_vec(),
            b"\x08\x08\x12".to_vec(),
            vec![0x20, 0, 0, 0, 0, 0, 0, 0, b'{'],
            b"flavors:\n".to_vec(),
        ]),
        tail in prop::collection::vec(any::<u8>(), 0..2048),
    ) {
        let mut bytes = magic;
        bytes.extend(tail);
        read_everything(&bytes);
    }

    #[test]
    fn truncated_models(file in 0usize..9, cut in 0.0f64..1.0) {
        let bytes = &model_files()[file];
        let end = (bytes.len() as f64 * cut) as usize;
        read_everything(&bytes[..end]);
    }

    #[test]
    fn corrupted_models(file in 0usize..9, flips in prop::collection::vec((0.0f64..1.0, any::<u8>()), 1..8)) {
        let mut bytes = model_files()[file].clone();
        for (at, value) in flips {
            let i = ((bytes.len() - 1) as f64 * at) as usize;
            bytes[i] = value;
        }
        read_everything(&bytes);
    }

    #[test]
    fn tensors_from_any_bytes(
        dtype in prop::sample::select(DataType::ALL.to_vec()),
        shape in prop::collection::vec(0usize..6, 0..4),
        data in prop::collection::vec(any::<u8>(), 0..256),
    ) {
        if let Ok(t) = Tensor::new("t", dtype, shape, Bytes::from(data)) {
            // Whatever was accepted is consistent.
            let _ = t.byte_strings();
            if let Some(&rows) = t.shape().first() {
                let _ = t.split_batch(&[rows]);
            }
        }
    }

    /// Stacking requests into a batch and splitting the outputs back gives every request
    /// exactly its own rows.
    #[test]
    fn concat_then_split_is_identity(
        rows in prop::collection::vec(0usize..5, 1..6),
        width in 1usize..4,
    ) {
        let mut next = 0i32;
        let parts: Vec<Tensor> = rows
            .iter()
            .map(|&r| {
                let values: Vec<i32> = (0..r * width).map(|_| { next += 1; next }).collect();
                Tensor::from_vec("x", vec![r, width], values).unwrap()
            })
            .collect();
        let batch = Tensor::concat_batch(&parts).unwrap();
        prop_assert_eq!(batch.shape(), &[rows.iter().sum::<usize>(), width][..]);
        prop_assert_eq!(batch.to_vec::<i32>().unwrap(), (1..=next).collect::<Vec<_>>());
        prop_assert_eq!(batch.split_batch(&rows).unwrap(), parts);
    }

    #[test]
    fn bytes_tensors_concat_then_split(
        rows in prop::collection::vec(prop::collection::vec(".{0,6}", 0..4), 1..5),
    ) {
        let parts: Vec<Tensor> = rows
            .iter()
            .map(|r| Tensor::from_byte_strings("s", vec![r.len()], r).unwrap())
            .collect();
        let batch = Tensor::concat_batch(&parts).unwrap();
        let sizes: Vec<usize> = rows.iter().map(Vec::len).collect();
        prop_assert_eq!(batch.split_batch(&sizes).unwrap(), parts);
    }
}
