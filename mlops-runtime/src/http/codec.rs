//! The Open Inference Protocol's REST messages: tensors in JSON, and the binary tensor
//! extension (a JSON header of `Inference-Header-Content-Length` bytes, then the raw
//! tensors back to back).

use std::fmt;

use bytes::{Bytes, BytesMut};
use mlops_core::{DataType, Tensor};
use serde::de::{self, DeserializeSeed, Deserializer, SeqAccess, Visitor};
use serde::ser::{SerializeSeq, Serializer};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{Map, Value};

/// The header that splits a binary request or response into its JSON and binary parts.
pub const HEADER_LENGTH: &str = "inference-header-content-length";

/// A decoded inference request.
#[derive(Debug)]
pub struct InferRequest {
    /// The request's `id`, echoed in the response.
    pub id: Option<String>,
    /// The input tensors.
    pub inputs: Vec<Tensor>,
    /// Outputs asked for, with whether each goes in the binary part; all when empty.
    pub outputs: Vec<(String, bool)>,
    /// `binary_data_output`: every output in the binary part unless it says otherwise.
    pub binary_default: bool,
}

/// A request the client got wrong: a 400 with this message.
#[derive(Debug)]
pub struct BadRequest(pub String);

impl fmt::Display for BadRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn bad(msg: impl Into<String>) -> BadRequest {
    BadRequest(msg.into())
}

#[derive(Deserialize)]
struct JsonRequest<'a> {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    parameters: Option<Map<String, Value>>,
    #[serde(borrow)]
    inputs: Vec<JsonInput<'a>>,
    #[serde(default)]
    outputs: Option<Vec<JsonRequestedOutput>>,
}

#[derive(Deserialize)]
struct JsonInput<'a> {
    name: String,
    shape: Vec<u64>,
    datatype: String,
    #[serde(default)]
    parameters: Option<Map<String, Value>>,
    // Kept as text until the datatype is known, then parsed straight into a typed vector:
    // no per-element enum, so memory stays near the body's size.
    #[serde(default, borrow)]
    data: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct JsonRequestedOutput {
    name: String,
    #[serde(default)]
    parameters: Option<Map<String, Value>>,
}

/// Parses a request body: JSON alone, or, when `header_length` is given, a JSON header of
/// that many bytes followed by the binary tensors its inputs announce.
pub fn decode_request(
    body: Bytes,
    header_length: Option<&str>,
) -> Result<InferRequest, BadRequest> {
    let (json, mut binary) = match header_length {
        None => (body.clone(), Bytes::new()),
        Some(text) => {
            let n: usize = text
                .trim()
                .parse()
                .map_err(|_| bad(format!("{HEADER_LENGTH} '{text}' is not a byte count")))?;
            if n > body.len() {
                return Err(bad(format!(
                    "{HEADER_LENGTH} is {n} but the body has only {} bytes",
                    body.len()
                )));
            }
            (body.slice(..n), body.slice(n..))
        }
    };
    // Triton reads `NaN`, `Infinity` and `-Infinity` as numbers (perf_analyzer sends them);
    // JSON has no such tokens, so they are turned into marked strings first.
    let quoted = quote_non_finite(&json);
    let text: &[u8] = quoted.as_deref().unwrap_or(&json);
    let request: JsonRequest =
        serde_json::from_slice(text).map_err(|e| bad(format!("malformed request JSON: {e}")))?;
    let mut inputs = Vec::with_capacity(request.inputs.len());
    for input in request.inputs {
        let dtype: DataType = input.datatype.parse().map_err(|_| {
            bad(format!(
                "input '{}': unknown datatype '{}'",
                input.name, input.datatype
            ))
        })?;
        let shape = input
            .shape
            .iter()
            .map(|&d| {
                usize::try_from(d).map_err(|_| {
                    bad(format!(
                        "input '{}': dimension {d} is too large",
                        input.name
                    ))
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let binary_size = param_u64(input.parameters.as_ref(), "binary_data_size")
            .map_err(|e| bad(format!("input '{}': {e}", input.name)))?;
        let tensor = match (binary_size, input.data) {
            (Some(size), None) => {
                let size = usize::try_from(size).unwrap_or(usize::MAX);
                if size > binary.len() {
                    return Err(bad(format!(
                        "input '{}': binary_data_size is {size} but only {} binary bytes remain",
                        input.name,
                        binary.len()
                    )));
                }
                let data = binary.split_to(size);
                Tensor::new(input.name.clone(), dtype, shape, data)
                    .map_err(|e| bad(e.to_string()))?
            }
            (None, Some(raw)) => typed_tensor(raw, input.name.clone(), dtype, shape)?,
            (Some(_), Some(_)) => {
                return Err(bad(format!(
                    "input '{}' has both data and binary_data_size",
                    input.name
                )));
            }
            (None, None) => {
                return Err(bad(format!(
                    "input '{}' has neither data nor binary_data_size",
                    input.name
                )));
            }
        };
        inputs.push(tensor);
    }
    if !binary.is_empty() {
        return Err(bad(format!(
            "{} binary bytes follow the inputs that no input announced",
            binary.len()
        )));
    }
    let binary_default =
        param_bool(request.parameters.as_ref(), "binary_data_output")?.unwrap_or(false);
    let mut outputs = Vec::new();
    for o in request.outputs.unwrap_or_default() {
        let binary = param_bool(o.parameters.as_ref(), "binary_data")
            .map_err(|e| bad(format!("output '{}': {e}", o.name)))?
            .unwrap_or(binary_default);
        outputs.push((o.name, binary));
    }
    Ok(InferRequest {
        id: request.id,
        inputs,
        outputs,
        binary_default,
    })
}

fn param_u64(params: Option<&Map<String, Value>>, key: &str) -> Result<Option<u64>, BadRequest> {
    match params.and_then(|p| p.get(key)) {
        None => Ok(None),
        Some(v) => v.as_u64().map(Some).ok_or_else(|| {
            bad(format!(
                "parameter {key} must be a non-negative integer, not {v}"
            ))
        }),
    }
}

fn param_bool(params: Option<&Map<String, Value>>, key: &str) -> Result<Option<bool>, BadRequest> {
    match params.and_then(|p| p.get(key)) {
        None => Ok(None),
        Some(v) => v
            .as_bool()
            .map(Some)
            .ok_or_else(|| bad(format!("parameter {key} must be true or false, not {v}"))),
    }
}

/// What a bare non-finite token becomes while parsing: a string that starts with a NUL,
/// which no number and no text a client means to send does. Short, so that a body full of
/// `NaN` grows at most threefold.
const NON_FINITE_MARK: &str = "\u{0}";

/// The JSON text with every bare `NaN`, `Infinity` and `-Infinity` outside strings written
/// as a marked string, or `None` when it has none (the common case: one scan, no copy).
pub fn quote_non_finite(json: &[u8]) -> Option<Vec<u8>> {
    // Most bodies hold neither token anywhere: a vectorised search settles it.
    if memchr::memmem::find(json, b"NaN").is_none()
        && memchr::memmem::find(json, b"Infinity").is_none()
    {
        return None;
    }
    let tokens: [&[u8]; 3] = [b"-Infinity", b"Infinity", b"NaN"];
    let mut out: Option<Vec<u8>> = None;
    let mut copied = 0;
    let mut in_string = false;
    let mut i = 0;
    while i < json.len() {
        let b = json[i];
        if in_string {
            match b {
                b'\\' => i += 1,
                b'"' => in_string = false,
                _ => {}
            }
            i += 1;
            continue;
        }
        if b == b'"' {
            in_string = true;
            i += 1;
            continue;
        }
        if matches!(b, b'N' | b'I' | b'-')
            && let Some(token) = tokens.iter().find(|t| json[i..].starts_with(t))
        {
            let buf = out.get_or_insert_with(|| Vec::with_capacity(json.len() + 64));
            buf.extend_from_slice(&json[copied..i]);
            buf.push(b'"');
            buf.extend_from_slice(b"\\u0000");
            buf.extend_from_slice(match *token {
                b"NaN" => b"N",
                b"Infinity" => b"I",
                _ => b"-I",
            });
            buf.push(b'"');
            i += token.len();
            copied = i;
            continue;
        }
        i += 1;
    }
    let mut buf = out?;
    buf.extend_from_slice(&json[copied..]);
    Some(buf)
}

/// A marked non-finite token's value (what [`quote_non_finite`] wrote).
pub fn non_finite(v: &str) -> Option<f64> {
    match v.strip_prefix(NON_FINITE_MARK)? {
        "N" => Some(f64::NAN),
        "I" => Some(f64::INFINITY),
        "-I" => Some(f64::NEG_INFINITY),
        _ => None,
    }
}

/// Which JSON values an element class accepts, and how they are stored while parsing.
trait Elem: Sized {
    const WHAT: &'static str;
    fn from_i64(_: i64) -> Option<Self> {
        None
    }
    fn from_u64(_: u64) -> Option<Self> {
        None
    }
    fn from_f64(_: f64) -> Option<Self> {
        None
    }
    fn from_bool(_: bool) -> Option<Self> {
        None
    }
    fn from_str(_: &str) -> Option<Self> {
        None
    }
}

impl Elem for f64 {
    const WHAT: &'static str = "number";
    fn from_i64(v: i64) -> Option<Self> {
        Some(v as f64)
    }
    fn from_u64(v: u64) -> Option<Self> {
        Some(v as f64)
    }
    fn from_f64(v: f64) -> Option<Self> {
        Some(v)
    }
    fn from_str(v: &str) -> Option<Self> {
        non_finite(v)
    }
}

impl Elem for i64 {
    const WHAT: &'static str = "integer";
    fn from_i64(v: i64) -> Option<Self> {
        Some(v)
    }
    fn from_u64(v: u64) -> Option<Self> {
        i64::try_from(v).ok()
    }
}

impl Elem for u64 {
    const WHAT: &'static str = "non-negative integer";
    fn from_i64(v: i64) -> Option<Self> {
        u64::try_from(v).ok()
    }
    fn from_u64(v: u64) -> Option<Self> {
        Some(v)
    }
}

impl Elem for bool {
    const WHAT: &'static str = "boolean";
    fn from_bool(v: bool) -> Option<Self> {
        Some(v)
    }
    fn from_i64(v: i64) -> Option<Self> {
        match v {
            0 => Some(false),
            1 => Some(true),
            _ => None,
        }
    }
    fn from_u64(v: u64) -> Option<Self> {
        Self::from_i64(i64::try_from(v).ok()?)
    }
}

impl Elem for String {
    const WHAT: &'static str = "string";
    fn from_str(v: &str) -> Option<Self> {
        // A bare NaN among strings is not text.
        (non_finite(v).is_none()).then(|| v.to_owned())
    }
}

/// Parses a `data` array, however deeply nested, into one flat vector of `T`, stopping at
/// the first element past `limit` (what the declared shape holds): a body far larger than
/// its shape costs no more memory than the shape does.
fn flat<T: Elem>(
    raw: &RawValue,
    name: &str,
    dtype: DataType,
    limit: usize,
) -> Result<Vec<T>, BadRequest> {
    let mut out = Vec::with_capacity(limit.min(64 << 10));
    let mut de = serde_json::Deserializer::from_str(raw.get());
    let seed = FlatSeed {
        out: &mut out,
        limit,
    };
    match seed.deserialize(&mut de) {
        Ok(()) => Ok(out),
        Err(e) => Err(bad(format!(
            "input '{name}': {e} (a valid {dtype} {} expected)",
            T::WHAT
        ))),
    }
}

struct FlatSeed<'a, T> {
    out: &'a mut Vec<T>,
    limit: usize,
}

impl<'de, T: Elem> DeserializeSeed<'de> for FlatSeed<'_, T> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(FlatVisitor(self.out, self.limit))
    }
}

struct FlatVisitor<'a, T>(&'a mut Vec<T>, usize);

impl<T: Elem> FlatVisitor<'_, T> {
    fn push<E: de::Error>(self, v: Option<T>, shown: &dyn fmt::Display) -> Result<(), E> {
        if self.0.len() >= self.1 {
            return Err(E::custom(format!(
                "data holds more than the {} elements its shape declares",
                self.1
            )));
        }
        match v {
            Some(v) => {
                self.0.push(v);
                Ok(())
            }
            None => Err(E::custom(format!(
                "element {} ({shown}) is out of range or of the wrong type",
                self.0.len()
            ))),
        }
    }
}

impl<'de, T: Elem> Visitor<'de> for FlatVisitor<'_, T> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "an array of {} values", T::WHAT)
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<(), E> {
        self.push(T::from_i64(v), &v)
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<(), E> {
        self.push(T::from_u64(v), &v)
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<(), E> {
        self.push(T::from_f64(v), &v)
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<(), E> {
        self.push(T::from_bool(v), &v)
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<(), E> {
        self.push(T::from_str(v), &format_args!("{v:?}"))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq
            .next_element_seed(FlatSeed {
                out: &mut *self.0,
                limit: self.1,
            })?
            .is_some()
        {}
        Ok(())
    }
}

/// A tensor of `dtype` and `shape` from its JSON `data`.
fn typed_tensor(
    raw: &RawValue,
    name: String,
    dtype: DataType,
    shape: Vec<usize>,
) -> Result<Tensor, BadRequest> {
    let count = shape
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| bad(format!("input '{name}': shape {shape:?} is too large")))?;
    let check = |n: usize| {
        if n == count {
            Ok(())
        } else {
            Err(bad(format!(
                "input '{name}': shape {shape:?} holds {count} elements but data has {n}"
            )))
        }
    };
    let range = |what: &str| bad(format!("input '{name}': a value is not a valid {what}"));
    macro_rules! narrow {
        ($src:ty, $t:ty, $what:expr) => {{
            let v = flat::<$src>(raw, &name, dtype, count)?;
            check(v.len())?;
            let v = v
                .into_iter()
                .map(<$t>::try_from)
                .collect::<Result<Vec<$t>, _>>()
                .map_err(|_| range($what))?;
            Tensor::from_vec(name.clone(), shape.clone(), v)
        }};
    }
    macro_rules! float {
        ($t:ty, $conv:expr, $finite:expr) => {{
            let v = flat::<f64>(raw, &name, dtype, count)?;
            check(v.len())?;
            let mut out = Vec::with_capacity(v.len());
            for (i, x) in v.into_iter().enumerate() {
                let y: $t = $conv(x);
                // A finite number the type cannot hold must not become infinity.
                if x.is_finite() && !$finite(y) {
                    return Err(bad(format!(
                        "input '{name}': element {i} ({x:e}) is outside the range of {dtype}"
                    )));
                }
                out.push(y);
            }
            Tensor::from_vec(name.clone(), shape.clone(), out)
        }};
    }
    let tensor = match dtype {
        DataType::Bool => {
            let v = flat::<bool>(raw, &name, dtype, count)?;
            check(v.len())?;
            Tensor::from_bools(name.clone(), shape.clone(), &v)
        }
        DataType::Int8 => narrow!(i64, i8, "INT8"),
        DataType::Int16 => narrow!(i64, i16, "INT16"),
        DataType::Int32 => narrow!(i64, i32, "INT32"),
        DataType::Int64 => narrow!(i64, i64, "INT64"),
        DataType::Uint8 => narrow!(u64, u8, "UINT8"),
        DataType::Uint16 => narrow!(u64, u16, "UINT16"),
        DataType::Uint32 => narrow!(u64, u32, "UINT32"),
        DataType::Uint64 => narrow!(u64, u64, "UINT64"),
        DataType::Fp16 => float!(half::f16, half::f16::from_f64, |y: half::f16| y.is_finite()),
        DataType::Bf16 => float!(half::bf16, half::bf16::from_f64, |y: half::bf16| y
            .is_finite()),
        DataType::Fp32 => float!(f32, |x: f64| x as f32, |y: f32| y.is_finite()),
        DataType::Fp64 => float!(f64, |x: f64| x, |y: f64| y.is_finite()),
        DataType::Bytes => {
            let v = flat::<String>(raw, &name, dtype, count)?;
            check(v.len())?;
            Tensor::from_byte_strings(name.clone(), shape.clone(), &v)
        }
    };
    tensor.map_err(|e| bad(e.to_string()))
}

#[derive(Serialize)]
struct JsonResponse<'a> {
    model_name: &'a str,
    model_version: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'a str>,
    outputs: Vec<JsonOutput<'a>>,
}

#[derive(Serialize)]
struct JsonOutput<'a> {
    name: &'a str,
    datatype: String,
    shape: &'a [usize],
    #[serde(skip_serializing_if = "Option::is_none")]
    parameters: Option<BinaryParams>,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<TensorData<'a>>,
}

#[derive(Serialize)]
struct BinaryParams {
    binary_data_size: usize,
}

/// A tensor's elements as a flat JSON array. Non-finite floats are written as strings
/// that start with the marker, when there is one, and become bare tokens afterwards.
struct TensorData<'a>(&'a Tensor, Option<&'a str>);

/// A float that may be written as a marked token; `true` when it was single precision or
/// less (written as the shortest `f32` that reads back).
struct Float<'a>(f64, Option<&'a str>, bool);

impl Serialize for Float<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match (self.1, self.0) {
            (Some(mark), v) if v.is_nan() => s.serialize_str(&format!("{mark}NaN")),
            (Some(mark), v) if v == f64::INFINITY => s.serialize_str(&format!("{mark}Infinity")),
            (Some(mark), v) if v == f64::NEG_INFINITY => {
                s.serialize_str(&format!("{mark}-Infinity"))
            }
            (_, v) if self.2 => s.serialize_f32(v as f32),
            (_, v) => s.serialize_f64(v),
        }
    }
}

impl Serialize for TensorData<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::Error;
        let (t, mark) = (self.0, self.1);
        fn seq<S: Serializer, T: Serialize>(
            s: S,
            items: impl ExactSizeIterator<Item = T>,
        ) -> Result<S::Ok, S::Error> {
            let mut out = s.serialize_seq(Some(items.len()))?;
            for item in items {
                out.serialize_element(&item)?;
            }
            out.end()
        }
        macro_rules! typed {
            ($t:ty) => {{
                let values = t.values::<$t>().map_err(S::Error::custom)?;
                seq(s, values.iter().copied())
            }};
        }
        match t.dtype() {
            DataType::Bool => seq(s, t.data().iter().map(|b| *b != 0)),
            DataType::Uint8 => typed!(u8),
            DataType::Uint16 => typed!(u16),
            DataType::Uint32 => typed!(u32),
            DataType::Uint64 => typed!(u64),
            DataType::Int8 => typed!(i8),
            DataType::Int16 => typed!(i16),
            DataType::Int32 => typed!(i32),
            DataType::Int64 => typed!(i64),
            DataType::Fp16 => {
                let values = t.values::<half::f16>().map_err(S::Error::custom)?;
                seq(s, values.iter().map(|v| Float(v.to_f64(), mark, true)))
            }
            DataType::Bf16 => {
                let values = t.values::<half::bf16>().map_err(S::Error::custom)?;
                seq(s, values.iter().map(|v| Float(v.to_f64(), mark, true)))
            }
            DataType::Fp32 if mark.is_some() => {
                let values = t.values::<f32>().map_err(S::Error::custom)?;
                seq(s, values.iter().map(|v| Float(f64::from(*v), mark, true)))
            }
            DataType::Fp32 => typed!(f32),
            DataType::Fp64 => {
                let values = t.values::<f64>().map_err(S::Error::custom)?;
                seq(s, values.iter().map(|v| Float(*v, mark, false)))
            }
            DataType::Bytes => {
                let strings = t.byte_strings().map_err(S::Error::custom)?;
                seq(s, strings.iter().map(|b| String::from_utf8_lossy(b)))
            }
        }
    }
}

/// Whether a float tensor holds a NaN or an infinity.
fn has_non_finite(t: &Tensor) -> bool {
    match t.dtype() {
        DataType::Fp32 => t
            .values::<f32>()
            .is_ok_and(|v| v.iter().any(|x| !x.is_finite())),
        DataType::Fp64 => t
            .values::<f64>()
            .is_ok_and(|v| v.iter().any(|x| !x.is_finite())),
        DataType::Fp16 => t
            .values::<half::f16>()
            .is_ok_and(|v| v.iter().any(|x| !x.is_finite())),
        DataType::Bf16 => t
            .values::<half::bf16>()
            .is_ok_and(|v| v.iter().any(|x| !x.is_finite())),
        _ => false,
    }
}

/// A marker no output string can be expected to hold: fresh for each response.
fn non_finite_nonce() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64),
    );
    format!("mlops-non-finite-{:016x}-", h.finish())
}

/// The JSON with each marked string (`"<mark>NaN"`) written as its bare token (`NaN`).
fn unquote_non_finite(json: &[u8], mark: &str) -> Vec<u8> {
    let needle = format!("\"{mark}");
    let needle = needle.as_bytes();
    let mut out = Vec::with_capacity(json.len());
    let mut i = 0;
    while i < json.len() {
        if json[i..].starts_with(needle) {
            let start = i + needle.len();
            if let Some(end) = json[start..].iter().position(|&b| b == b'"') {
                out.extend_from_slice(&json[start..start + end]);
                i = start + end + 1;
                continue;
            }
        }
        out.push(json[i]);
        i += 1;
    }
    out
}

/// An encoded response body, and the JSON header's length when a binary part follows.
#[derive(Debug)]
pub struct Encoded {
    /// The whole body.
    pub body: Bytes,
    /// The value of `Inference-Header-Content-Length`, when there is a binary part.
    pub header_length: Option<usize>,
}

/// Encodes `outputs` (already filtered and ordered) for the client; `binary[i]` says
/// whether output `i` goes in the binary part.
pub fn encode_response(
    model: &str,
    version: u64,
    id: Option<&str>,
    outputs: &[Tensor],
    binary: &[bool],
) -> Result<Encoded, serde_json::Error> {
    // Non-finite floats are written as Triton writes them (`NaN`, `Infinity`), which JSON
    // cannot say: they go out as strings marked with a per-response nonce, then lose the
    // quotes. Only a response that has one pays for it.
    let mark = outputs
        .iter()
        .zip(binary)
        .any(|(t, &bin)| !bin && has_non_finite(t))
        .then(non_finite_nonce);
    let json_outputs = outputs
        .iter()
        .zip(binary)
        .map(|(t, &bin)| JsonOutput {
            name: t.name(),
            datatype: t.dtype().to_string(),
            shape: t.shape(),
            parameters: bin.then(|| BinaryParams {
                binary_data_size: t.data().len(),
            }),
            data: (!bin).then_some(TensorData(t, mark.as_deref())),
        })
        .collect();
    let response = JsonResponse {
        model_name: model,
        model_version: version.to_string(),
        id,
        outputs: json_outputs,
    };
    let mut json = serde_json::to_vec(&response)?;
    if let Some(mark) = &mark {
        json = unquote_non_finite(&json, mark);
    }
    if !binary.iter().any(|b| *b) {
        return Ok(Encoded {
            body: Bytes::from(json),
            header_length: None,
        });
    }
    let extra: usize = outputs
        .iter()
        .zip(binary)
        .filter(|(_, b)| **b)
        .map(|(t, _)| t.data().len())
        .sum();
    let mut body = BytesMut::with_capacity(json.len() + extra);
    body.extend_from_slice(&json);
    for (t, _) in outputs.iter().zip(binary).filter(|(_, b)| **b) {
        body.extend_from_slice(t.data());
    }
    Ok(Encoded {
        body: body.freeze(),
        header_length: Some(json.len()),
    })
}
