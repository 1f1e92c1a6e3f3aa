//! TensorFlow SavedModels: the SignatureDefs of `saved_model.pb`.

use std::collections::BTreeMap;

use prost::Message;
use serde::{Deserialize, Serialize};

use super::ModelFormat;
use super::proto::{MetaGraphDef, SavedModel, TensorInfo};
use crate::dtype::DataType;
use crate::error::{Error, Result};
use crate::signature::{Dim, Signature, TensorSpec};

/// The signature TensorFlow Serving calls when a request names none.
pub const DEFAULT_SIGNATURE: &str = "serving_default";

/// The tag of the meta graph meant for serving.
pub const SERVE_TAG: &str = "serve";

/// What a SavedModel's `saved_model.pb` says about its serving interface.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SavedModelInfo {
    /// The tags of the meta graph read (the one tagged `serve`, else the first).
    pub tags: Vec<String>,
    /// The TensorFlow version that wrote it, when recorded.
    pub tensorflow_version: String,
    /// Every signature of that meta graph by key; inputs and outputs are named by their
    /// signature keys, as TensorFlow Serving's clients name them.
    pub signatures: BTreeMap<String, Signature>,
}

impl SavedModelInfo {
    /// The signature served by default: `serving_default` when present, else the first
    /// signature by name.
    pub fn default_signature(&self) -> Option<(&str, &Signature)> {
        self.signatures
            .get_key_value(DEFAULT_SIGNATURE)
            .or_else(|| self.signatures.iter().next())
            .map(|(name, sig)| (name.as_str(), sig))
    }
}

/// Reads `saved_model.pb` from its bytes.
pub fn parse(bytes: &[u8]) -> Result<SavedModelInfo> {
    let saved = SavedModel::decode(bytes).map_err(|e| {
        Error::malformed(
            ModelFormat::TfSavedModel,
            format!("saved_model.pb is not a valid SavedModel message: {e}"),
        )
    })?;
    let Some(graph) = pick_meta_graph(saved.meta_graphs) else {
        return Err(Error::malformed(
            ModelFormat::TfSavedModel,
            "saved_model.pb holds no meta graph",
        ));
    };
    let (tags, tensorflow_version) = graph
        .meta_info_def
        .map(|m| (m.tags, m.tensorflow_version))
        .unwrap_or_default();
    let mut signatures = BTreeMap::new();
    for (key, def) in graph.signature_def {
        // TF 1 savers record their save/restore ops as a pseudo-signature.
        if key.starts_with("__") {
            continue;
        }
        let inputs = specs(&key, "input", &def.inputs)?;
        let outputs = specs(&key, "output", &def.outputs)?;
        signatures.insert(key, Signature::new(inputs, outputs));
    }
    Ok(SavedModelInfo {
        tags,
        tensorflow_version,
        signatures,
    })
}

fn pick_meta_graph(graphs: Vec<MetaGraphDef>) -> Option<MetaGraphDef> {
    let serving = graphs.iter().position(|g| {
        g.meta_info_def
            .as_ref()
            .is_some_and(|m| m.tags.iter().any(|t| t == SERVE_TAG))
    });
    graphs.into_iter().nth(serving.unwrap_or(0))
}

fn specs(
    signature: &str,
    role: &str,
    tensors: &BTreeMap<String, TensorInfo>,
) -> Result<Vec<TensorSpec>> {
    tensors
        .iter()
        .map(|(key, info)| {
            if info.coo_sparse.is_some() || info.composite_tensor.is_some() {
                return Err(Error::unsupported(format!(
                    "signature '{signature}' {role} '{key}' is a sparse or composite tensor; only dense tensors can be served"
                )));
            }
            let Some(dtype) = DataType::from_tensorflow(info.dtype) else {
                return Err(Error::unsupported(format!(
                    "signature '{signature}' {role} '{key}' has TensorFlow dtype {}, which the Open Inference Protocol cannot carry",
                    info.dtype
                )));
            };
            let shape = info
                .tensor_shape
                .as_ref()
                .filter(|s| !s.unknown_rank)
                .map(|s| s.dim.iter().map(|d| Dim::from_i64(d.size)).collect());
            Ok(TensorSpec {
                name: key.clone(),
                dtype,
                shape,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_a_saved_model_without_meta_graphs() {
        // Field 1 (schema version) = 1, nothing else.
        let err = parse(b"\x08\x01").unwrap_err().to_string();
        assert_eq!(
            err,
            "<in-memory content>: malformed TensorFlow SavedModel: saved_model.pb holds no meta graph"
        );
    }
}
