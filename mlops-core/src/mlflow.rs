//! MLflow's `MLmodel` file: read as MLflow writes it, written so MLflow reads it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::dtype::DataType;
use crate::error::{Error, Result};
use crate::signature::{Dim, Signature, TensorSpec};

/// An `MLmodel` document. Keys this library does not interpret are kept in `other`, so a
/// file read and written back loses nothing.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct MlModel {
    /// Where the model sits in its run's artifacts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_path: Option<String>,
    /// How each framework loads the model, by flavor name (`onnx`, `python_function`, …).
    #[serde(default)]
    pub flavors: BTreeMap<String, Value>,
    /// The MLflow version that wrote the file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mlflow_version: Option<String>,
    /// The size of the model's files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_size_bytes: Option<u64>,
    /// A 32-hex-digit identifier of this model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_uuid: Option<String>,
    /// The run that logged the model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_id: Option<String>,
    /// Where the saved input example is and how it is laid out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub saved_input_example_info: Option<Value>,
    /// The signature, with inputs and outputs as JSON strings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<MlSignature>,
    /// When the model was saved, in UTC, as Python prints a datetime.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub utc_time_created: Option<String>,
    /// Free-form metadata given to `save_model(metadata=…)`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<BTreeMap<String, Value>>,
    /// Every other top-level key, kept as it was.
    #[serde(flatten)]
    pub other: BTreeMap<String, Value>,
}

/// The `signature` section of an `MLmodel` file: JSON documents held in strings.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct MlSignature {
    /// The input schema, a JSON list.
    #[serde(default)]
    pub inputs: Option<String>,
    /// The output schema, a JSON list.
    #[serde(default)]
    pub outputs: Option<String>,
    /// The inference parameters schema, a JSON list.
    #[serde(default)]
    pub params: Option<String>,
}

impl MlModel {
    /// Parses `MLmodel` YAML.
    pub fn from_yaml(text: &str) -> Result<Self> {
        let doc: Self = yaml_serde::from_str(text)
            .map_err(|e| Error::manifest(format!("not a valid MLmodel YAML document: {e}")))?;
        Ok(doc)
    }

    /// Writes `MLmodel` YAML.
    pub fn to_yaml(&self) -> Result<String> {
        yaml_serde::to_string(self)
            .map_err(|e| Error::manifest(format!("cannot write MLmodel YAML: {e}")))
    }

    /// The signature as this library speaks it, when the file has one.
    pub fn parse_signature(&self) -> Result<Option<Signature>> {
        let Some(sig) = &self.signature else {
            return Ok(None);
        };
        let inputs = match &sig.inputs {
            Some(text) => parse_schema(text, "input")?,
            None => Vec::new(),
        };
        let outputs = match &sig.outputs {
            Some(text) => parse_schema(text, "output")?,
            None => Vec::new(),
        };
        Ok(Some(Signature::new(inputs, outputs)))
    }
}

/// Writes a signature in MLflow's tensor-spec form. Returns `None` when a tensor's rank is
/// unknown, or its type is BF16: MLflow's tensor specs (NumPy dtypes) cannot express
/// either.
pub fn signature_to_mlflow(signature: &Signature) -> Option<MlSignature> {
    let schema = |specs: &[TensorSpec]| -> Option<String> {
        let list: Option<Vec<Value>> = specs
            .iter()
            .map(|s| {
                if s.dtype == DataType::Bf16 {
                    return None;
                }
                let shape: Vec<i64> = s.shape.as_ref()?.iter().map(|d| d.to_i64()).collect();
                Some(serde_json::json!({
                    "type": "tensor",
                    "tensor-spec": {"dtype": s.dtype.to_numpy(), "shape": shape},
                    "name": s.name,
                }))
            })
            .collect();
        Some(Value::Array(list?).to_string())
    };
    Some(MlSignature {
        inputs: Some(schema(&signature.inputs)?),
        outputs: Some(schema(&signature.outputs)?),
        params: None,
    })
}

/// Reads one schema (a JSON list) in tensor-spec or column form. Unnamed entries are named
/// by role and position: `input_0`, `output_1`. Every column becomes a required input:
/// MLflow's `required: false` has no counterpart in an Open Inference Protocol signature.
fn parse_schema(text: &str, role: &str) -> Result<Vec<TensorSpec>> {
    let entries: Vec<Value> = serde_json::from_str(text).map_err(|e| {
        Error::manifest(format!("the signature's {role}s are not a JSON list: {e}"))
    })?;
    entries
        .iter()
        .enumerate()
        .map(|(i, entry)| {
            let name = entry
                .get("name")
                .and_then(Value::as_str)
                .map_or_else(|| format!("{role}_{i}"), str::to_owned);
            let bad = |why: String| Error::manifest(format!("signature {role} '{name}': {why}"));
            let kind = entry
                .get("type")
                .and_then(Value::as_str)
                .ok_or_else(|| bad("has no type".to_owned()))?;
            if kind == "tensor" {
                let spec = entry
                    .get("tensor-spec")
                    .ok_or_else(|| bad("a tensor without a tensor-spec".to_owned()))?;
                let dtype_name = spec.get("dtype").and_then(Value::as_str).unwrap_or("");
                let dtype = DataType::from_numpy(dtype_name)
                    .ok_or_else(|| bad(format!("unsupported tensor dtype '{dtype_name}'")))?;
                let shape = spec
                    .get("shape")
                    .and_then(Value::as_array)
                    .ok_or_else(|| bad("a tensor-spec without a shape".to_owned()))?
                    .iter()
                    .map(|d| d.as_i64().map(Dim::from_i64))
                    .collect::<Option<Vec<_>>>()
                    .ok_or_else(|| bad("shape entries must be integers".to_owned()))?;
                Ok(TensorSpec::new(name, dtype, shape))
            } else {
                // A column of a table: one value per row, so a vector as long as the batch.
                let dtype = DataType::from_mlflow_column(kind).ok_or_else(|| {
                    bad(format!(
                        "column type '{kind}' has no Open Inference Protocol equivalent"
                    ))
                })?;
                Ok(TensorSpec::new(name, dtype, vec![Dim::Dynamic]))
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_tensor_and_column_signatures() {
        let doc = MlModel::from_yaml(
            r#"
flavors:
  python_function: {loader_module: mlflow.pyfunc.model}
signature:
  inputs: '[{"type": "double", "name": "a", "required": true}, {"type": "string", "required": true}]'
  outputs: '[{"type": "tensor", "tensor-spec": {"dtype": "float32", "shape": [-1, 3]}}]'
  params: null
custom_key: kept
"#,
        )
        .unwrap();
        let sig = doc.parse_signature().unwrap().unwrap();
        assert_eq!(
            sig.inputs,
            vec![
                TensorSpec::new("a", DataType::Fp64, vec![Dim::Dynamic]),
                TensorSpec::new("input_1", DataType::Bytes, vec![Dim::Dynamic]),
            ]
        );
        assert_eq!(
            sig.outputs,
            vec![TensorSpec::new(
                "output_0",
                DataType::Fp32,
                vec![Dim::Dynamic, Dim::Fixed(3)]
            )]
        );
        assert_eq!(doc.other.get("custom_key"), Some(&Value::from("kept")));
    }

    #[test]
    fn tensor_form_round_trips() {
        let sig = Signature::new(
            vec![TensorSpec::new(
                "x",
                DataType::Int64,
                vec![Dim::Dynamic, Dim::Fixed(7)],
            )],
            vec![TensorSpec::new("y", DataType::Fp16, vec![Dim::Dynamic])],
        );
        let doc = MlModel {
            signature: signature_to_mlflow(&sig),
            ..MlModel::default()
        };
        let back = MlModel::from_yaml(&doc.to_yaml().unwrap()).unwrap();
        assert_eq!(back.parse_signature().unwrap(), Some(sig));
    }

    #[test]
    fn names_what_it_cannot_read() {
        let doc = MlModel::from_yaml(
            "flavors: {}\nsignature:\n  inputs: '[{\"type\": \"array\", \"name\": \"tags\"}]'\n",
        )
        .unwrap();
        assert_eq!(
            doc.parse_signature().unwrap_err().to_string(),
            "<in-memory content>: invalid manifest: signature input 'tags': column type 'array' has no Open Inference Protocol equivalent"
        );
        assert!(
            MlModel::from_yaml("flavors: [unclosed")
                .unwrap_err()
                .to_string()
                .contains("not a valid MLmodel YAML document")
        );
    }
}
