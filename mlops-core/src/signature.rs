//! Input and output signatures: what a model takes and what it returns.

use std::collections::HashSet;
use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::dtype::DataType;
use crate::error::{Error, Result};
use crate::tensor::Tensor;

/// One dimension of a tensor's shape in a signature.
///
/// Serialized as the Open Inference Protocol writes it: the size, or `-1` for a dimension
/// that varies between requests (a batch dimension, a sequence length).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Dim {
    /// The dimension always has this size.
    Fixed(u64),
    /// The dimension's size is chosen by each request.
    Dynamic,
}

impl Dim {
    /// Reads the `-1`-for-dynamic convention that ONNX, TensorFlow and MLflow share: any
    /// negative size is dynamic.
    pub fn from_i64(size: i64) -> Dim {
        u64::try_from(size).map_or(Dim::Dynamic, Dim::Fixed)
    }

    /// The size as the protocol writes it, `-1` for dynamic.
    pub fn to_i64(self) -> i64 {
        match self {
            // Sizes above i64::MAX cannot be built from any format we read.
            Dim::Fixed(n) => i64::try_from(n).unwrap_or(i64::MAX),
            Dim::Dynamic => -1,
        }
    }

    /// Whether a concrete size fits this dimension.
    pub fn accepts(self, size: usize) -> bool {
        match self {
            Dim::Fixed(n) => n == size as u64,
            Dim::Dynamic => true,
        }
    }
}

impl fmt::Display for Dim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.to_i64())
    }
}

impl Serialize for Dim {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_i64(self.to_i64())
    }
}

impl<'de> Deserialize<'de> for Dim {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        i64::deserialize(deserializer).map(Dim::from_i64)
    }
}

/// A named tensor a model takes or returns: its data type and shape.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TensorSpec {
    /// The tensor's name, as requests must spell it.
    pub name: String,
    /// The element type.
    #[serde(rename = "datatype")]
    pub dtype: DataType,
    /// The shape, or `None` when the model does not declare its rank.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shape: Option<Vec<Dim>>,
}

impl TensorSpec {
    /// A spec with a known shape.
    pub fn new(name: impl Into<String>, dtype: DataType, shape: impl Into<Vec<Dim>>) -> Self {
        TensorSpec {
            name: name.into(),
            dtype,
            shape: Some(shape.into()),
        }
    }

    /// A spec whose rank is not declared: any shape is accepted.
    pub fn any_shape(name: impl Into<String>, dtype: DataType) -> Self {
        TensorSpec {
            name: name.into(),
            dtype,
            shape: None,
        }
    }

    /// Checks a tensor against this spec: data type, rank, and every fixed dimension.
    pub fn check(&self, tensor: &Tensor) -> Result<()> {
        if tensor.dtype() != self.dtype {
            return Err(Error::mismatch(
                &self.name,
                format!("expected data type {}, got {}", self.dtype, tensor.dtype()),
            ));
        }
        let Some(expected) = &self.shape else {
            return Ok(());
        };
        let got = tensor.shape();
        if got.len() != expected.len() {
            return Err(Error::mismatch(
                &self.name,
                format!(
                    "expected rank {} (shape {}), got rank {} (shape {:?})",
                    expected.len(),
                    ShapeDisplay(expected),
                    got.len(),
                    got
                ),
            ));
        }
        for (axis, (dim, &size)) in expected.iter().zip(got).enumerate() {
            if !dim.accepts(size) {
                return Err(Error::mismatch(
                    &self.name,
                    format!(
                        "dimension {axis} must be {dim}, got {size} (expected shape {}, got {got:?})",
                        ShapeDisplay(expected)
                    ),
                ));
            }
        }
        Ok(())
    }
}

struct ShapeDisplay<'a>(&'a [Dim]);

impl fmt::Display for ShapeDisplay<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[")?;
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{d}")?;
        }
        f.write_str("]")
    }
}

/// What a model takes and what it returns.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Signature {
    /// The inputs, in the model's order. Every one is required.
    pub inputs: Vec<TensorSpec>,
    /// The outputs, in the model's order.
    pub outputs: Vec<TensorSpec>,
}

impl Signature {
    /// A signature from its inputs and outputs.
    pub fn new(inputs: Vec<TensorSpec>, outputs: Vec<TensorSpec>) -> Self {
        Signature { inputs, outputs }
    }

    /// The input with this name.
    pub fn input(&self, name: &str) -> Option<&TensorSpec> {
        self.inputs.iter().find(|s| s.name == name)
    }

    /// The output with this name.
    pub fn output(&self, name: &str) -> Option<&TensorSpec> {
        self.outputs.iter().find(|s| s.name == name)
    }

    /// Checks a request's tensors: each names an input (once), every input is present,
    /// and each matches its spec's data type, rank and fixed dimensions. The error names
    /// the first tensor at fault and says why.
    pub fn validate_inputs(&self, tensors: &[Tensor]) -> Result<()> {
        let mut seen = HashSet::with_capacity(tensors.len());
        for tensor in tensors {
            let Some(spec) = self.input(tensor.name()) else {
                return Err(Error::mismatch(
                    tensor.name(),
                    format!(
                        "not an input of this model; its inputs are {}",
                        names(&self.inputs)
                    ),
                ));
            };
            if !seen.insert(tensor.name()) {
                return Err(Error::mismatch(tensor.name(), "given more than once"));
            }
            spec.check(tensor)?;
        }
        if let Some(missing) = self.inputs.iter().find(|s| !seen.contains(s.name.as_str())) {
            return Err(Error::mismatch(
                &missing.name,
                format!(
                    "missing: this model requires {} (data type {}, shape {})",
                    names(&self.inputs),
                    missing.dtype,
                    missing
                        .shape
                        .as_deref()
                        .map_or_else(|| "any".to_owned(), |s| ShapeDisplay(s).to_string())
                ),
            ));
        }
        Ok(())
    }

    /// Whether the first dimension of every input and output is dynamic, so that requests
    /// can be stacked along it into one batch (what Triton calls a model with
    /// `max_batch_size > 0`). A signature with no inputs is not batchable.
    pub fn is_batchable(&self) -> bool {
        !self.inputs.is_empty()
            && self
                .inputs
                .iter()
                .chain(&self.outputs)
                .all(|s| matches!(s.shape.as_deref(), Some([Dim::Dynamic, ..])))
    }
}

fn names(specs: &[TensorSpec]) -> String {
    let quoted: Vec<String> = specs.iter().map(|s| format!("'{}'", s.name)).collect();
    if quoted.is_empty() {
        "none".to_owned()
    } else {
        quoted.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mlp() -> Signature {
        Signature::new(
            vec![TensorSpec::new(
                "x",
                DataType::Fp32,
                [Dim::Dynamic, Dim::Fixed(4)],
            )],
            vec![TensorSpec::new(
                "y",
                DataType::Fp32,
                [Dim::Dynamic, Dim::Fixed(2)],
            )],
        )
    }

    fn message(result: Result<()>) -> String {
        match result {
            Err(e) => e.to_string(),
            Ok(()) => "accepted".to_owned(),
        }
    }

    #[test]
    fn accepts_any_batch_size_with_the_right_features() {
        let sig = mlp();
        for batch in [1usize, 3, 64] {
            let t = Tensor::from_vec("x", vec![batch, 4], vec![0f32; batch * 4]).unwrap();
            assert_eq!(message(sig.validate_inputs(&[t])), "accepted");
        }
    }

    #[test]
    fn names_the_tensor_and_the_rule_it_breaks() {
        let sig = mlp();
        let wrong_dim = Tensor::from_vec("x", vec![2, 5], vec![0f32; 10]).unwrap();
        assert_eq!(
            message(sig.validate_inputs(&[wrong_dim])),
            "input 'x': dimension 1 must be 4, got 5 (expected shape [-1, 4], got [2, 5])"
        );
        let wrong_rank = Tensor::from_vec("x", vec![8], vec![0f32; 8]).unwrap();
        assert_eq!(
            message(sig.validate_inputs(&[wrong_rank])),
            "input 'x': expected rank 2 (shape [-1, 4]), got rank 1 (shape [8])"
        );
        let wrong_type = Tensor::from_vec("x", vec![1, 4], vec![0i64; 4]).unwrap();
        assert_eq!(
            message(sig.validate_inputs(&[wrong_type])),
            "input 'x': expected data type FP32, got INT64"
        );
        let unknown = Tensor::from_vec("z", vec![1, 4], vec![0f32; 4]).unwrap();
        assert_eq!(
            message(sig.validate_inputs(&[unknown])),
            "input 'z': not an input of this model; its inputs are 'x'"
        );
        assert_eq!(
            message(sig.validate_inputs(&[])),
            "input 'x': missing: this model requires 'x' (data type FP32, shape [-1, 4])"
        );
        let x = Tensor::from_vec("x", vec![1, 4], vec![0f32; 4]).unwrap();
        assert_eq!(
            message(sig.validate_inputs(&[x.clone(), x])),
            "input 'x': given more than once"
        );
    }

    #[test]
    fn unknown_rank_accepts_any_shape_of_the_right_type() {
        let sig = Signature::new(vec![TensorSpec::any_shape("x", DataType::Int64)], vec![]);
        let t = Tensor::from_vec("x", vec![2, 3, 1], vec![0i64; 6]).unwrap();
        assert_eq!(message(sig.validate_inputs(&[t])), "accepted");
        assert!(!sig.is_batchable());
    }

    #[test]
    fn batchable_only_when_every_leading_dim_is_dynamic() {
        assert!(mlp().is_batchable());
        let mut fixed = mlp();
        fixed.outputs[0].shape = Some(vec![Dim::Fixed(1), Dim::Fixed(2)]);
        assert!(!fixed.is_batchable());
    }

    #[test]
    fn serializes_dims_the_protocol_way() {
        let json = serde_json::to_string(&mlp().inputs[0]).unwrap();
        assert_eq!(json, r#"{"name":"x","datatype":"FP32","shape":[-1,4]}"#);
        let back: TensorSpec = serde_json::from_str(&json).unwrap();
        assert_eq!(back, mlp().inputs[0]);
    }
}
