//! Test helpers shared by the family's crates (feature `testkit`): where the bundled
//! test models are, and their golden inputs and outputs.

use std::path::PathBuf;

use serde::Deserialize;
use serde_json::Value;

use crate::dtype::DataType;
use crate::error::{Error, Result};
use crate::tensor::Tensor;

/// The repository's `testdata/` folder, which holds the bundled models.
pub fn testdata_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(|root| root.join("testdata"))
        .unwrap_or_else(|| PathBuf::from("testdata"))
}

/// A path inside `testdata/`.
pub fn testdata(relative: &str) -> PathBuf {
    testdata_dir().join(relative)
}

/// Golden inputs and the outputs the model's own framework computed for them.
#[derive(Clone, Debug, PartialEq)]
pub struct Golden {
    /// The model file or directory, relative to `testdata/`.
    pub model: String,
    /// For a SavedModel, which signature the outputs came from.
    pub signature: Option<String>,
    /// The request tensors.
    pub inputs: Vec<Tensor>,
    /// The expected response tensors.
    pub outputs: Vec<Tensor>,
}

#[derive(Deserialize)]
struct GoldenFile {
    model: String,
    #[serde(default)]
    signature: Option<String>,
    inputs: Vec<JsonTensor>,
    outputs: Vec<JsonTensor>,
}

/// A tensor as the Open Inference Protocol's JSON writes it.
#[derive(Deserialize)]
struct JsonTensor {
    name: String,
    datatype: DataType,
    shape: Vec<usize>,
    data: Vec<Value>,
}

impl Golden {
    /// Loads `testdata/<name>.golden.json`.
    pub fn load(name: &str) -> Result<Golden> {
        let path = testdata(&format!("{name}.golden.json"));
        let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
        let file: GoldenFile = serde_json::from_str(&text)
            .map_err(|e| Error::manifest(format!("not a golden file: {e}")).at_path(&path))?;
        let convert = |tensors: Vec<JsonTensor>| {
            tensors
                .into_iter()
                .map(JsonTensor::into_tensor)
                .collect::<Result<Vec<_>>>()
        };
        Ok(Golden {
            model: file.model,
            signature: file.signature,
            inputs: convert(file.inputs)?,
            outputs: convert(file.outputs)?,
        })
    }
}

impl JsonTensor {
    fn into_tensor(self) -> Result<Tensor> {
        let name = self.name;
        let bad =
            |i: usize| Error::tensor(&name, format!("element {i} is not a {}", self.datatype));
        macro_rules! numbers {
            ($ty:ty, $get:ident) => {{
                let values = self
                    .data
                    .iter()
                    .enumerate()
                    .map(|(i, v)| {
                        v.$get()
                            .and_then(|x| <$ty>::from_golden(x))
                            .ok_or_else(|| bad(i))
                    })
                    .collect::<Result<Vec<$ty>>>()?;
                Tensor::from_vec(name.clone(), self.shape, values)
            }};
        }
        match self.datatype {
            DataType::Fp32 => numbers!(f32, as_f64),
            DataType::Fp64 => numbers!(f64, as_f64),
            DataType::Int32 => numbers!(i32, as_i64),
            DataType::Int64 => numbers!(i64, as_i64),
            DataType::Uint8 => numbers!(u8, as_u64),
            DataType::Bool => {
                let values = self
                    .data
                    .iter()
                    .enumerate()
                    .map(|(i, v)| v.as_bool().ok_or_else(|| bad(i)))
                    .collect::<Result<Vec<bool>>>()?;
                Tensor::from_bools(name.clone(), self.shape, &values)
            }
            DataType::Bytes => {
                let values = self
                    .data
                    .iter()
                    .enumerate()
                    .map(|(i, v)| v.as_str().ok_or_else(|| bad(i)))
                    .collect::<Result<Vec<&str>>>()?;
                Tensor::from_byte_strings(name.clone(), self.shape, &values)
            }
            other => Err(Error::tensor(
                &name,
                format!("golden files do not carry {other} tensors"),
            )),
        }
    }
}

/// Converts a JSON number to an element type, refusing what does not fit.
trait FromGolden<T>: Sized {
    fn from_golden(value: T) -> Option<Self>;
}

impl FromGolden<f64> for f32 {
    fn from_golden(value: f64) -> Option<Self> {
        // Golden files hold exact float32 values written as f64.
        Some(value as f32)
    }
}

impl FromGolden<f64> for f64 {
    fn from_golden(value: f64) -> Option<Self> {
        Some(value)
    }
}

macro_rules! integer_from_golden {
    ($($ty:ty: $from:ty),*) => {$(
        impl FromGolden<$from> for $ty {
            fn from_golden(value: $from) -> Option<Self> {
                <$ty>::try_from(value).ok()
            }
        }
    )*};
}

integer_from_golden!(i32: i64, i64: i64, u8: u64);

/// Checks that two FP32 tensors agree element by element within `|a - e| <= atol + rtol
/// * |e|`, with the same name, shape and type; the error says where they first differ.
pub fn assert_close(
    actual: &Tensor,
    expected: &Tensor,
    atol: f32,
    rtol: f32,
) -> Result<(), String> {
    if actual.name() != expected.name()
        || actual.shape() != expected.shape()
        || actual.dtype() != expected.dtype()
    {
        return Err(format!(
            "got {} {} {:?}, expected {} {} {:?}",
            actual.name(),
            actual.dtype(),
            actual.shape(),
            expected.name(),
            expected.dtype(),
            expected.shape()
        ));
    }
    let a = actual.to_vec::<f32>().map_err(|e| e.to_string())?;
    let e = expected.to_vec::<f32>().map_err(|e| e.to_string())?;
    match a.iter().zip(&e).position(|(a, e)| {
        // NaN anywhere counts as a difference.
        let tolerance = atol + rtol * e.abs();
        matches!(
            (a - e).abs().partial_cmp(&tolerance),
            None | Some(std::cmp::Ordering::Greater)
        )
    }) {
        Some(i) => Err(format!(
            "{}: element {i} is {}, expected {} (atol {atol}, rtol {rtol})",
            actual.name(),
            a[i],
            e[i]
        )),
        None => Ok(()),
    }
}
