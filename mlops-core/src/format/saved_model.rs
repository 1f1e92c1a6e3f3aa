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
    /// Signatures that cannot be served (sparse, ragged or exotic tensors), with why.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub unsupported: BTreeMap<String, String>,
}

impl SavedModelInfo {
    /// The signature served by default: `serving_default` when present, else the first
    /// servable signature by name. A `serving_default` that cannot be served is an error,
    /// not a reason to serve another signature in its place.
    pub fn default_signature(&self) -> Result<(&str, &Signature)> {
        if let Some(reason) = self.unsupported.get(DEFAULT_SIGNATURE) {
            return Err(Error::unsupported(reason.clone()));
        }
        self.signatures
            .get_key_value(DEFAULT_SIGNATURE)
            .or_else(|| self.signatures.iter().next())
            .map(|(name, sig)| (name.as_str(), sig))
            .ok_or_else(|| {
                let why = if self.unsupported.is_empty() {
                    "the SavedModel has no signatures to serve; save it with signatures=..."
                        .to_owned()
                } else {
                    let reasons: Vec<&str> =
                        self.unsupported.values().map(String::as_str).collect();
                    format!(
                        "no signature of the SavedModel can be served: {}",
                        reasons.join("; ")
                    )
                };
                Error::unsupported(why)
            })
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
    let mut unsupported = BTreeMap::new();
    for (key, def) in graph.signature_def {
        // TensorFlow's own entries (`__saved_model_init_op`, TF 1's `__saver_def__`) are
        // not signatures a client calls.
        if key.starts_with("__") {
            continue;
        }
        let read = specs(&key, "input", &def.inputs)
            .and_then(|inputs| Ok(Signature::new(inputs, specs(&key, "output", &def.outputs)?)));
        match read {
            Ok(signature) => {
                signatures.insert(key, signature);
            }
            Err(Error::UnsupportedFormat { reason, .. }) => {
                unsupported.insert(key, reason);
            }
            Err(e) => return Err(e),
        }
    }
    Ok(SavedModelInfo {
        tags,
        tensorflow_version,
        signatures,
        unsupported,
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
