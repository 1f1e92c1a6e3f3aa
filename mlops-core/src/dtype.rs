//! Tensor element types, named as the Open Inference Protocol names them.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The element type of a tensor, with the Open Inference Protocol (KServe V2) names.
///
/// Fixed-size types are stored little-endian. `BYTES` elements are variable-length: each
/// is a 4-byte little-endian length followed by that many bytes, as in the protocol's
/// binary tensor extension.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
#[allow(missing_docs)] // the variants are the protocol's names
pub enum DataType {
    Bool,
    Uint8,
    Uint16,
    Uint32,
    Uint64,
    Int8,
    Int16,
    Int32,
    Int64,
    Fp16,
    Bf16,
    Fp32,
    Fp64,
    Bytes,
}

impl DataType {
    /// Every data type, in protocol order.
    pub const ALL: [DataType; 14] = [
        DataType::Bool,
        DataType::Uint8,
        DataType::Uint16,
        DataType::Uint32,
        DataType::Uint64,
        DataType::Int8,
        DataType::Int16,
        DataType::Int32,
        DataType::Int64,
        DataType::Fp16,
        DataType::Bf16,
        DataType::Fp32,
        DataType::Fp64,
        DataType::Bytes,
    ];

    /// The protocol's name: `FP32`, `INT64`, `BYTES`, …
    pub const fn as_str(self) -> &'static str {
        match self {
            DataType::Bool => "BOOL",
            DataType::Uint8 => "UINT8",
            DataType::Uint16 => "UINT16",
            DataType::Uint32 => "UINT32",
            DataType::Uint64 => "UINT64",
            DataType::Int8 => "INT8",
            DataType::Int16 => "INT16",
            DataType::Int32 => "INT32",
            DataType::Int64 => "INT64",
            DataType::Fp16 => "FP16",
            DataType::Bf16 => "BF16",
            DataType::Fp32 => "FP32",
            DataType::Fp64 => "FP64",
            DataType::Bytes => "BYTES",
        }
    }

    /// The size of one element in bytes, or `None` for the variable-length `BYTES`.
    pub const fn size(self) -> Option<usize> {
        match self {
            DataType::Bool | DataType::Uint8 | DataType::Int8 => Some(1),
            DataType::Uint16 | DataType::Int16 | DataType::Fp16 | DataType::Bf16 => Some(2),
            DataType::Uint32 | DataType::Int32 | DataType::Fp32 => Some(4),
            DataType::Uint64 | DataType::Int64 | DataType::Fp64 => Some(8),
            DataType::Bytes => None,
        }
    }

    /// Maps an ONNX `TensorProto.DataType` code. Types the protocol cannot carry
    /// (complex, 8- and 4-bit floats, 4-bit integers) give `None`.
    pub const fn from_onnx(code: i32) -> Option<DataType> {
        Some(match code {
            1 => DataType::Fp32,
            2 => DataType::Uint8,
            3 => DataType::Int8,
            4 => DataType::Uint16,
            5 => DataType::Int16,
            6 => DataType::Int32,
            7 => DataType::Int64,
            8 => DataType::Bytes,
            9 => DataType::Bool,
            10 => DataType::Fp16,
            11 => DataType::Fp64,
            12 => DataType::Uint32,
            13 => DataType::Uint64,
            16 => DataType::Bf16,
            _ => return None,
        })
    }

    /// The ONNX `TensorProto.DataType` code.
    pub const fn to_onnx(self) -> i32 {
        match self {
            DataType::Fp32 => 1,
            DataType::Uint8 => 2,
            DataType::Int8 => 3,
            DataType::Uint16 => 4,
            DataType::Int16 => 5,
            DataType::Int32 => 6,
            DataType::Int64 => 7,
            DataType::Bytes => 8,
            DataType::Bool => 9,
            DataType::Fp16 => 10,
            DataType::Fp64 => 11,
            DataType::Uint32 => 12,
            DataType::Uint64 => 13,
            DataType::Bf16 => 16,
        }
    }

    /// Maps a TensorFlow `DataType` enum value (`DT_FLOAT` = 1, …). Quantized, complex,
    /// resource and variant types give `None`.
    pub const fn from_tensorflow(code: i32) -> Option<DataType> {
        Some(match code {
            1 => DataType::Fp32,
            2 => DataType::Fp64,
            3 => DataType::Int32,
            4 => DataType::Uint8,
            5 => DataType::Int16,
            6 => DataType::Int8,
            7 => DataType::Bytes,
            9 => DataType::Int64,
            10 => DataType::Bool,
            14 => DataType::Bf16,
            17 => DataType::Uint16,
            19 => DataType::Fp16,
            22 => DataType::Uint32,
            23 => DataType::Uint64,
            _ => return None,
        })
    }

    /// Maps a safetensors header dtype (`F32`, `BF16`, `I64`, …). 8-bit floats and other
    /// types the protocol cannot carry give `None`.
    pub fn from_safetensors(name: &str) -> Option<DataType> {
        Some(match name {
            "BOOL" => DataType::Bool,
            "U8" => DataType::Uint8,
            "U16" => DataType::Uint16,
            "U32" => DataType::Uint32,
            "U64" => DataType::Uint64,
            "I8" => DataType::Int8,
            "I16" => DataType::Int16,
            "I32" => DataType::Int32,
            "I64" => DataType::Int64,
            "F16" => DataType::Fp16,
            "BF16" => DataType::Bf16,
            "F32" => DataType::Fp32,
            "F64" => DataType::Fp64,
            _ => return None,
        })
    }

    /// Maps a NumPy dtype name as MLflow writes it in a tensor-spec signature
    /// (`float32`, `int64`, `bool`, `object`, `str`, …).
    pub fn from_numpy(name: &str) -> Option<DataType> {
        Some(match name {
            "bool" => DataType::Bool,
            "uint8" => DataType::Uint8,
            "uint16" => DataType::Uint16,
            "uint32" => DataType::Uint32,
            "uint64" => DataType::Uint64,
            "int8" => DataType::Int8,
            "int16" => DataType::Int16,
            "int32" => DataType::Int32,
            "int64" => DataType::Int64,
            "float16" => DataType::Fp16,
            "bfloat16" => DataType::Bf16,
            "float32" => DataType::Fp32,
            "float64" => DataType::Fp64,
            "object" | "str" | "bytes" => DataType::Bytes,
            // NumPy's fixed-width unicode and byte strings: `<U10`, `|S4`.
            _ if name
                .trim_start_matches(['<', '>', '|', '='])
                .starts_with(['U', 'S']) =>
            {
                DataType::Bytes
            }
            _ => return None,
        })
    }

    /// The NumPy dtype name MLflow expects in a tensor-spec signature.
    pub const fn to_numpy(self) -> &'static str {
        match self {
            DataType::Bool => "bool",
            DataType::Uint8 => "uint8",
            DataType::Uint16 => "uint16",
            DataType::Uint32 => "uint32",
            DataType::Uint64 => "uint64",
            DataType::Int8 => "int8",
            DataType::Int16 => "int16",
            DataType::Int32 => "int32",
            DataType::Int64 => "int64",
            DataType::Fp16 => "float16",
            DataType::Bf16 => "bfloat16",
            DataType::Fp32 => "float32",
            DataType::Fp64 => "float64",
            DataType::Bytes => "object",
        }
    }

    /// Maps an MLflow column type of a column-based signature (`double`, `long`,
    /// `string`, …). Nested types (`array`, `object`, `map`) give `None`.
    pub fn from_mlflow_column(name: &str) -> Option<DataType> {
        Some(match name {
            "boolean" => DataType::Bool,
            "integer" => DataType::Int32,
            "long" => DataType::Int64,
            "float" => DataType::Fp32,
            "double" => DataType::Fp64,
            "string" | "binary" => DataType::Bytes,
            // MLflow passes datetimes as numpy datetime64[ns]: nanoseconds since the epoch.
            "datetime" => DataType::Int64,
            _ => return None,
        })
    }
}

impl fmt::Display for DataType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for DataType {
    type Err = UnknownDataType;

    /// Parses a protocol name (`FP32`), case-insensitively.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        DataType::ALL
            .into_iter()
            .find(|d| d.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| UnknownDataType(s.to_owned()))
    }
}

/// A string that names no Open Inference Protocol data type.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown data type '{0}': expected one of BOOL, UINT8, UINT16, UINT32, UINT64, INT8, INT16, INT32, INT64, FP16, BF16, FP32, FP64, BYTES"
)]
pub struct UnknownDataType(pub String);

/// A Rust type whose values are the elements of a fixed-size [`DataType`]: what typed
/// constructors and typed views of a [`Tensor`](crate::Tensor) take.
///
/// `BOOL` tensors hold one byte per element (0 or 1) and are read with
/// [`Tensor::to_bools`](crate::Tensor::to_bools).
pub trait Element: bytemuck::Pod + Send + Sync + 'static {
    /// The data type this Rust type stands for.
    const DTYPE: DataType;

    /// Reads one element from exactly `size_of::<Self>()` little-endian bytes.
    fn from_le(bytes: &[u8]) -> Self;

    /// Appends this element's little-endian bytes.
    fn extend_le(self, out: &mut Vec<u8>);
}

macro_rules! element {
    ($($ty:ty => $dtype:ident),* $(,)?) => {$(
        impl Element for $ty {
            const DTYPE: DataType = DataType::$dtype;

            fn from_le(bytes: &[u8]) -> Self {
                let mut raw = [0u8; size_of::<$ty>()];
                raw.copy_from_slice(bytes);
                <$ty>::from_le_bytes(raw)
            }

            fn extend_le(self, out: &mut Vec<u8>) {
                out.extend_from_slice(&self.to_le_bytes());
            }
        }
    )*};
}

element! {
    u8 => Uint8,
    u16 => Uint16,
    u32 => Uint32,
    u64 => Uint64,
    i8 => Int8,
    i16 => Int16,
    i32 => Int32,
    i64 => Int64,
    half::f16 => Fp16,
    half::bf16 => Bf16,
    f32 => Fp32,
    f64 => Fp64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_through_display_and_parse() {
        for d in DataType::ALL {
            assert_eq!(d.to_string().parse::<DataType>(), Ok(d));
            assert_eq!(
                serde_json::to_string(&d).unwrap_or_default(),
                format!("\"{}\"", d.as_str())
            );
        }
        assert_eq!("fp32".parse::<DataType>(), Ok(DataType::Fp32));
        assert!("FLOAT".parse::<DataType>().is_err());
    }

    #[test]
    fn sizes_follow_the_protocol() {
        assert_eq!(DataType::Bool.size(), Some(1));
        assert_eq!(DataType::Bf16.size(), Some(2));
        assert_eq!(DataType::Fp32.size(), Some(4));
        assert_eq!(DataType::Uint64.size(), Some(8));
        assert_eq!(DataType::Bytes.size(), None);
    }

    #[test]
    fn onnx_codes_round_trip() {
        for d in DataType::ALL {
            assert_eq!(DataType::from_onnx(d.to_onnx()), Some(d));
        }
        assert_eq!(
            DataType::from_onnx(14),
            None,
            "complex64 has no protocol type"
        );
        assert_eq!(DataType::from_onnx(0), None);
    }

    #[test]
    fn numpy_names_round_trip() {
        for d in DataType::ALL {
            assert_eq!(DataType::from_numpy(d.to_numpy()), Some(d));
        }
        assert_eq!(DataType::from_numpy("<U12"), Some(DataType::Bytes));
        assert_eq!(DataType::from_numpy("complex64"), None);
    }

    #[test]
    fn foreign_codes_map_to_protocol_types() {
        assert_eq!(DataType::from_tensorflow(1), Some(DataType::Fp32));
        assert_eq!(DataType::from_tensorflow(7), Some(DataType::Bytes));
        assert_eq!(DataType::from_tensorflow(20), None, "DT_RESOURCE");
        assert_eq!(DataType::from_safetensors("BF16"), Some(DataType::Bf16));
        assert_eq!(DataType::from_safetensors("F8_E4M3"), None);
        assert_eq!(DataType::from_mlflow_column("double"), Some(DataType::Fp64));
        assert_eq!(DataType::from_mlflow_column("array"), None);
    }
}
