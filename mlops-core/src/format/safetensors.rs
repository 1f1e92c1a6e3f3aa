//! safetensors files: the weights a header declares.
//!
//! A safetensors file is an 8-byte little-endian header length, a JSON header, then the
//! tensor data. The header names weights, not a model's inputs and outputs, so what it
//! yields is a list of weights and the free-form `__metadata__`.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Read;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::ModelFormat;
use crate::dtype::DataType;
use crate::error::{Error, Result};
use crate::signature::{Dim, TensorSpec};

/// Headers larger than this are refused, as the reference implementation does.
pub const MAX_HEADER_LEN: u64 = 100_000_000;

/// What a safetensors header declares.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SafetensorsInfo {
    /// The weights, in the order of their data.
    pub weights: Vec<TensorSpec>,
    /// The header's `__metadata__` strings.
    pub metadata: BTreeMap<String, String>,
}

#[derive(Deserialize)]
struct Entry {
    dtype: String,
    shape: Vec<u64>,
    data_offsets: (u64, u64),
}

/// Reads the header of a safetensors file, without reading the tensor data.
pub fn read(path: &Path) -> Result<SafetensorsInfo> {
    let mut file = File::open(path).map_err(|e| Error::io(path, e))?;
    let file_len = file.metadata().map_err(|e| Error::io(path, e))?.len();
    let mut len = [0u8; 8];
    file.read_exact(&mut len)
        .map_err(|_| truncated(file_len).at_path(path))?;
    let header_len =
        check_header_len(u64::from_le_bytes(len), file_len).map_err(|e| e.at_path(path))?;
    // Bounded by the file's size and by MAX_HEADER_LEN.
    let mut header = vec![0u8; header_len as usize];
    file.read_exact(&mut header)
        .map_err(|e| Error::io(path, e))?;
    parse_header(&header, file_len - 8 - header_len).map_err(|e| e.at_path(path))
}

/// Reads the header of a safetensors file held in memory.
pub fn parse(bytes: &[u8]) -> Result<SafetensorsInfo> {
    let file_len = bytes.len() as u64;
    let Some(len) = bytes.first_chunk::<8>() else {
        return Err(truncated(file_len));
    };
    let header_len = check_header_len(u64::from_le_bytes(*len), file_len)?;
    let header = &bytes[8..8 + header_len as usize];
    parse_header(header, file_len - 8 - header_len)
}

/// Whether the first bytes look like a safetensors file: a plausible header length
/// followed by a JSON object. Whether the header fits in the file is for the parse to
/// say, so that a truncated file is reported as such.
pub(crate) fn sniff(prefix: &[u8]) -> bool {
    match prefix.first_chunk::<8>() {
        Some(len) => {
            (2..=MAX_HEADER_LEN).contains(&u64::from_le_bytes(*len)) && prefix.get(8) == Some(&b'{')
        }
        None => false,
    }
}

fn truncated(file_len: u64) -> Error {
    Error::malformed(
        ModelFormat::Safetensors,
        format!("the file holds {file_len} bytes, too few for the 8-byte header length"),
    )
}

fn check_header_len(header_len: u64, file_len: u64) -> Result<u64> {
    if !(2..=MAX_HEADER_LEN).contains(&header_len) {
        return Err(Error::malformed(
            ModelFormat::Safetensors,
            format!("header length {header_len} is outside 2..={MAX_HEADER_LEN}"),
        ));
    }
    if header_len > file_len.saturating_sub(8) {
        return Err(Error::malformed(
            ModelFormat::Safetensors,
            format!("header length {header_len} runs past the end of the file ({file_len} bytes)"),
        ));
    }
    Ok(header_len)
}

fn parse_header(header: &[u8], data_len: u64) -> Result<SafetensorsInfo> {
    let bad = |reason: String| Error::malformed(ModelFormat::Safetensors, reason);
    let mut raw: BTreeMap<String, serde_json::Value> = serde_json::from_slice(header)
        .map_err(|e| bad(format!("the header is not a JSON object: {e}")))?;
    let metadata = match raw.remove("__metadata__") {
        None => BTreeMap::new(),
        Some(value) => serde_json::from_value(value)
            .map_err(|e| bad(format!("__metadata__ must map strings to strings: {e}")))?,
    };
    let mut entries = Vec::with_capacity(raw.len());
    for (name, value) in raw {
        let entry: Entry =
            serde_json::from_value(value).map_err(|e| bad(format!("weight '{name}': {e}")))?;
        let Some(dtype) = DataType::from_safetensors(&entry.dtype) else {
            return Err(Error::unsupported(format!(
                "safetensors weight '{name}' has dtype {}, which the Open Inference Protocol cannot carry",
                entry.dtype
            )));
        };
        let (begin, end) = entry.data_offsets;
        let needed = entry
            .shape
            .iter()
            .try_fold(dtype.size().unwrap_or(1) as u64, |acc, &d| {
                acc.checked_mul(d)
            });
        if begin > end || needed != Some(end - begin) {
            return Err(bad(format!(
                "weight '{name}': data_offsets [{begin}, {end}] do not hold shape {:?} of {}",
                entry.shape, entry.dtype
            )));
        }
        entries.push((
            begin,
            end,
            TensorSpec::new(
                name,
                dtype,
                entry
                    .shape
                    .iter()
                    .map(|&d| Dim::Fixed(d))
                    .collect::<Vec<_>>(),
            ),
        ));
    }
    entries.sort_by_key(|&(begin, end, _)| (begin, end));
    let mut at = 0u64;
    for (begin, end, spec) in &entries {
        if *begin != at {
            return Err(bad(format!(
                "weight '{}' starts at data offset {begin}, expected {at}: the data has a gap or an overlap",
                spec.name
            )));
        }
        at = *end;
    }
    if at != data_len {
        return Err(bad(format!(
            "the weights need {at} bytes of data but the file holds {data_len}"
        )));
    }
    Ok(SafetensorsInfo {
        weights: entries.into_iter().map(|(_, _, spec)| spec).collect(),
        metadata,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(header: &str, data: &[u8]) -> Vec<u8> {
        let mut out = (header.len() as u64).to_le_bytes().to_vec();
        out.extend_from_slice(header.as_bytes());
        out.extend_from_slice(data);
        out
    }

    #[test]
    fn reads_weights_in_data_order_and_metadata() {
        let bytes = file(
            r#"{"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]},"a":{"dtype":"I32","shape":[],"data_offsets":[0,4]},"__metadata__":{"arch":"mlp"}}"#,
            &[0; 12],
        );
        let info = parse(&bytes).unwrap();
        assert_eq!(
            info.weights,
            vec![
                TensorSpec::new("a", DataType::Int32, vec![]),
                TensorSpec::new("b", DataType::Fp32, vec![Dim::Fixed(2)]),
            ]
        );
        assert_eq!(info.metadata.get("arch").map(String::as_str), Some("mlp"));
    }

    #[test]
    fn refuses_inconsistent_headers() {
        let cases = [
            (
                file(
                    r#"{"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}"#,
                    &[0; 8],
                ),
                "weight 'a': data_offsets [0, 8] do not hold shape [3] of F32",
            ),
            (
                file(
                    r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#,
                    &[0; 4],
                ),
                "the weights need 8 bytes of data but the file holds 4",
            ),
            (
                file(
                    r#"{"a":{"dtype":"U8","shape":[2],"data_offsets":[1,3]}}"#,
                    &[0; 3],
                ),
                "weight 'a' starts at data offset 1, expected 0: the data has a gap or an overlap",
            ),
            (file("[1, 2]", &[]), "the header is not a JSON object"),
        ];
        for (bytes, reason) in cases {
            let err = parse(&bytes).unwrap_err().to_string();
            assert!(err.contains(reason), "{err} should say {reason}");
        }
        let huge = u64::MAX.to_le_bytes();
        assert!(
            parse(&huge)
                .unwrap_err()
                .to_string()
                .contains("header length 18446744073709551615 is outside")
        );
    }
}
