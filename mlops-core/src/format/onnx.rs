//! ONNX models: the signature and facts a `ModelProto` carries.

use std::collections::{BTreeMap, HashSet};

use prost::Message;
use serde::{Deserialize, Serialize};

use super::ModelFormat;
use super::proto::{ModelProto, ValueInfoProto};
use crate::dtype::DataType;
use crate::error::{Error, Result};
use crate::signature::{Dim, Signature, TensorSpec};

/// What an ONNX file says about itself.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OnnxInfo {
    /// The graph's inputs that are not initializers, and its outputs.
    pub signature: Signature,
    /// The ONNX IR version.
    pub ir_version: i64,
    /// Operator set versions by domain (`ai.onnx` for the default domain).
    pub opsets: BTreeMap<String, i64>,
    /// The tool that wrote the file, with its version (`pytorch 2.5`, `tf2onnx 1.16`).
    pub producer: String,
    /// The graph's name.
    pub graph_name: String,
    /// The model's `metadata_props`.
    pub metadata: BTreeMap<String, String>,
    /// The files holding initializers stored outside the model, relative to it, in order
    /// of first use.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub external_data: Vec<String>,
}

/// Reads an ONNX model from its bytes.
///
/// Graph inputs that are also initializers are weights with defaults, not inputs a
/// request must supply, and are left out of the signature. Symbolic and unknown dimensions
/// are dynamic.
pub fn parse(bytes: &[u8]) -> Result<OnnxInfo> {
    let model = ModelProto::decode(bytes)
        .map_err(|e| Error::malformed(ModelFormat::Onnx, format!("not a valid ModelProto: {e}")))?;
    if model.ir_version <= 0 {
        return Err(Error::malformed(
            ModelFormat::Onnx,
            "ir_version is missing; not an ONNX ModelProto",
        ));
    }
    let Some(graph) = model.graph else {
        return Err(Error::malformed(
            ModelFormat::Onnx,
            "the model has no graph",
        ));
    };
    let weights: HashSet<&str> = graph
        .initializer
        .iter()
        .map(|t| t.name.as_str())
        .chain(
            graph
                .sparse_initializer
                .iter()
                .filter_map(|s| s.values.as_ref().map(|v| v.name.as_str())),
        )
        .collect();
    let inputs = graph
        .input
        .iter()
        .filter(|v| !weights.contains(v.name.as_str()))
        .map(|v| tensor_spec(v, "input"))
        .collect::<Result<Vec<_>>>()?;
    let outputs = graph
        .output
        .iter()
        .map(|v| tensor_spec(v, "output"))
        .collect::<Result<Vec<_>>>()?;
    let opsets = model
        .opset_import
        .iter()
        .map(|o| {
            let domain = if o.domain.is_empty() {
                "ai.onnx".to_owned()
            } else {
                o.domain.clone()
            };
            (domain, o.version)
        })
        .collect();
    let mut external_data: Vec<String> = Vec::new();
    let locations = graph
        .initializer
        .iter()
        .chain(
            graph
                .sparse_initializer
                .iter()
                .filter_map(|s| s.values.as_ref()),
        )
        .flat_map(|t| &t.external_data)
        .filter(|entry| entry.key == "location");
    for entry in locations {
        if !external_data.contains(&entry.value) {
            external_data.push(entry.value.clone());
        }
    }
    let producer = [model.producer_name, model.producer_version]
        .into_iter()
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    Ok(OnnxInfo {
        signature: Signature::new(inputs, outputs),
        ir_version: model.ir_version,
        opsets,
        producer,
        graph_name: graph.name,
        metadata: model
            .metadata_props
            .into_iter()
            .map(|p| (p.key, p.value))
            .collect(),
        external_data,
    })
}

fn tensor_spec(value: &ValueInfoProto, role: &str) -> Result<TensorSpec> {
    let name = &value.name;
    let Some(ty) = &value.r#type else {
        return Err(Error::malformed(
            ModelFormat::Onnx,
            format!("{role} '{name}' has no type"),
        ));
    };
    let Some(tensor) = &ty.tensor_type else {
        let kind = if ty.sequence_type.is_some() {
            "a sequence"
        } else if ty.map_type.is_some() {
            "a map"
        } else if ty.sparse_tensor_type.is_some() {
            "a sparse tensor"
        } else if ty.optional_type.is_some() {
            "an optional"
        } else {
            "of no known type"
        };
        return Err(Error::unsupported(format!(
            "ONNX {role} '{name}' is {kind}; only dense tensors can be served \
             (for scikit-learn converters, export with zipmap disabled)"
        )));
    };
    let Some(dtype) = DataType::from_onnx(tensor.elem_type) else {
        return Err(Error::unsupported(format!(
            "ONNX {role} '{name}' has element type {} ({}), which the Open Inference Protocol cannot carry",
            tensor.elem_type,
            onnx_type_name(tensor.elem_type)
        )));
    };
    let shape = tensor.shape.as_ref().map(|s| {
        s.dim
            .iter()
            .map(|d| match d.dim_value {
                Some(v) if d.dim_param.is_none() => Dim::from_i64(v),
                _ => Dim::Dynamic,
            })
            .collect::<Vec<_>>()
    });
    Ok(TensorSpec {
        name: name.clone(),
        dtype,
        shape,
    })
}

fn onnx_type_name(code: i32) -> &'static str {
    match code {
        0 => "UNDEFINED",
        14 => "COMPLEX64",
        15 => "COMPLEX128",
        17..=20 => "FLOAT8",
        21 => "UINT4",
        22 => "INT4",
        23 => "FLOAT4E2M1",
        _ => "unknown",
    }
}

/// Whether a file's first bytes look like an ONNX `ModelProto`.
///
/// ONNX has no magic number. Serializers write fields in field-number order, so a model
/// starts with `ir_version` (field 1). The check walks the top-level fields present in the
/// prefix and accepts only `ModelProto`'s field numbers with their wire types. A field that
/// runs past the prefix ends the walk: the full parse judges the rest.
pub(crate) fn sniff(prefix: &[u8]) -> bool {
    let mut r = WireReader { buf: prefix, at: 0 };
    // Field 1, varint: the IR version, 3 (ONNX 1.0) to 100 (10 is current). A SavedModel
    // starts the same way with its schema version, 1.
    match (r.varint(), r.varint()) {
        (Some(0x08), Some(3..=100)) => {}
        _ => return false,
    }
    while r.at < prefix.len() {
        let Some(key) = r.varint() else { return true };
        let (field, wire) = (key >> 3, key & 7);
        let ok = match field {
            5 => wire == 0,
            2 | 3 | 4 | 6 | 7 | 8 | 14 | 20 | 25 | 26 => wire == 2,
            _ => false,
        };
        if !ok {
            return false;
        }
        let skipped = if wire == 0 {
            r.varint().map(|_| ())
        } else {
            r.varint()
                .map(|len| r.at = r.at.saturating_add(len as usize))
        };
        if skipped.is_none() {
            return true;
        }
    }
    true
}

/// Just enough of the protobuf wire format to walk top-level fields.
struct WireReader<'a> {
    buf: &'a [u8],
    at: usize,
}

impl WireReader<'_> {
    fn varint(&mut self) -> Option<u64> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = *self.buf.get(self.at)?;
            self.at += 1;
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Some(value);
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sniff_rejects_other_content() {
        assert!(!sniff(b""));
        assert!(!sniff(b"PK\x03\x04"));
        assert!(!sniff(b"\x08\x00"), "ir_version 0");
        assert!(
            !sniff(b"\x08\x01\x12\x05"),
            "a SavedModel's schema version 1"
        );
        assert!(!sniff(b"\x08\x07\x10\x01"), "field 2 as a varint");
        assert!(sniff(b"\x08\x07\x12\x05pytor"), "producer_name");
        assert!(
            sniff(b"\x08\x08\x3a\xff\xff\x03"),
            "a graph longer than the prefix"
        );
    }

    #[test]
    fn parse_rejects_a_message_without_a_graph() {
        let err = parse(b"\x08\x07").unwrap_err().to_string();
        assert_eq!(
            err,
            "<in-memory content>: malformed ONNX model: the model has no graph"
        );
    }
}
