//! What the load generator drives: a small trait with one implementation per way of
//! reaching a model.
//!
//! - [`ServerTarget`]: a [`ModelServer`] in this process (no network, no codec), the
//!   fastest target there is, which shows what the load generator itself can drive;
//! - [`InferTarget`]: anything that implements [`mlops_core::Infer`] (a batcher, the
//!   model-id client, a test double);
//! - [`HttpTarget`]: a remote Open Inference Protocol endpoint over HTTP, with JSON tensors
//!   or Triton's binary tensor extension;
//! - [`GrpcTarget`]: the same over gRPC, raw tensor contents, over a few connections.
//!
//! A request is encoded once ([`Target::prepare`]) and sent many times
//! ([`Target::send`]): the load generator's cost per request is the transport, not the
//! codec, so it stays far below the server it measures.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use mlops_core::{DataType, Infer, Tensor};
use mlops_runtime::ModelServer;
use mlops_runtime::grpc::proto::ModelInferRequest;
use mlops_runtime::grpc::proto::grpc_inference_service_client::GrpcInferenceServiceClient;
use serde_json::Value;
use tonic::transport::{Channel, Endpoint};

use crate::error::{Error, Result};

/// Why one request failed, with a short kind that results group errors by.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{kind}: {message}")]
pub struct TargetError {
    /// A short, stable name: `connect`, `http_503`, `grpc_unavailable`, `overloaded`,
    /// `timeout`, `inference`, `bad_request`, `mismatch`, `malformed_response`.
    pub kind: String,
    /// What was said.
    pub message: String,
}

impl TargetError {
    /// An error of this kind.
    pub fn new(kind: impl Into<String>, message: impl Into<String>) -> TargetError {
        TargetError {
            kind: kind.into(),
            message: message.into(),
        }
    }
}

/// The future [`Target::send`] returns: the outputs when asked for.
pub type SendFuture<'a> = Pin<
    Box<dyn Future<Output = std::result::Result<Option<Vec<Tensor>>, TargetError>> + Send + 'a>,
>;

/// A request, encoded once for the target it was prepared for.
#[derive(Clone)]
pub struct Prepared {
    inputs: Vec<Tensor>,
    encoded: Encoded,
}

#[derive(Clone)]
enum Encoded {
    Tensors,
    /// The whole HTTP/1.1 request, head and body.
    Http(Bytes),
    Grpc(Box<ModelInferRequest>),
}

impl Prepared {
    /// A request that carries its tensors as they are (for targets without a codec).
    pub fn new(inputs: Vec<Tensor>) -> Prepared {
        Prepared {
            inputs,
            encoded: Encoded::Tensors,
        }
    }

    /// The request's tensors.
    pub fn inputs(&self) -> &[Tensor] {
        &self.inputs
    }

    /// The encoded body's size in bytes (0 when the target needs no encoding).
    pub fn encoded_len(&self) -> usize {
        match &self.encoded {
            Encoded::Tensors => 0,
            Encoded::Http(body) => body.len(),
            Encoded::Grpc(r) => r.raw_input_contents.iter().map(Bytes::len).sum(),
        }
    }
}

impl fmt::Debug for Prepared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Prepared")
            .field("inputs", &self.inputs)
            .field("encoded_len", &self.encoded_len())
            .finish()
    }
}

/// Something the load generator can send requests to.
///
/// Implementations must be safe to call concurrently: the load generator keeps many
/// requests in flight at once.
pub trait Target: Send + Sync {
    /// How requests travel: `in_process`, `http_json`, `http_binary`, `grpc`.
    fn protocol(&self) -> &'static str;

    /// Where requests go, for reports and errors.
    fn describe(&self) -> String;

    /// Encodes a request once; [`send`](Self::send) then sends it as often as asked.
    fn prepare(&self, inputs: &[Tensor]) -> Result<Prepared>;

    /// Sends one request. With `outputs`, the answer is decoded and returned (to be
    /// checked); without, only its success counts, which keeps the client cheap.
    fn send<'a>(&'a self, request: &'a Prepared, outputs: bool) -> SendFuture<'a>;
}

impl<T: Target + ?Sized> Target for Arc<T> {
    fn protocol(&self) -> &'static str {
        (**self).protocol()
    }
    fn describe(&self) -> String {
        (**self).describe()
    }
    fn prepare(&self, inputs: &[Tensor]) -> Result<Prepared> {
        (**self).prepare(inputs)
    }
    fn send<'a>(&'a self, request: &'a Prepared, outputs: bool) -> SendFuture<'a> {
        (**self).send(request, outputs)
    }
}

/// The kind a runtime error is counted under.
fn runtime_kind(error: &mlops_runtime::Error) -> &'static str {
    use mlops_runtime::Error as E;
    match error {
        E::Overloaded { .. } => "overloaded",
        E::Timeout { .. } => "timeout",
        E::ModelNotFound { .. } => "model_not_found",
        E::InvalidInput(_) => "bad_request",
        E::ShuttingDown { .. } => "shutting_down",
        _ => "inference",
    }
}

/// A model served by a [`ModelServer`] in this process.
pub struct ServerTarget {
    server: Arc<ModelServer>,
    model: String,
    version: Option<u64>,
}

impl ServerTarget {
    /// Sends to `model` at `version` (its latest when `None`) on `server`.
    pub fn new(server: Arc<ModelServer>, model: impl Into<String>, version: Option<u64>) -> Self {
        ServerTarget {
            server,
            model: model.into(),
            version,
        }
    }
}

impl Target for ServerTarget {
    fn protocol(&self) -> &'static str {
        "in_process"
    }

    fn describe(&self) -> String {
        format!("in-process model '{}'", self.model)
    }

    fn prepare(&self, inputs: &[Tensor]) -> Result<Prepared> {
        Ok(Prepared::new(inputs.to_vec()))
    }

    fn send<'a>(&'a self, request: &'a Prepared, _outputs: bool) -> SendFuture<'a> {
        Box::pin(async move {
            self.server
                .infer(&self.model, self.version, request.inputs.clone())
                .await
                .map(Some)
                .map_err(|e| TargetError::new(runtime_kind(&e), e.to_string()))
        })
    }
}

/// Anything that implements [`Infer`].
pub struct InferTarget<I> {
    inner: I,
    name: String,
}

impl<I: Infer> InferTarget<I> {
    /// Sends through `inner`, described as `name`.
    pub fn new(inner: I, name: impl Into<String>) -> Self {
        InferTarget {
            inner,
            name: name.into(),
        }
    }
}

impl<I: Infer> Target for InferTarget<I> {
    fn protocol(&self) -> &'static str {
        "in_process"
    }

    fn describe(&self) -> String {
        self.name.clone()
    }

    fn prepare(&self, inputs: &[Tensor]) -> Result<Prepared> {
        Ok(Prepared::new(inputs.to_vec()))
    }

    fn send<'a>(&'a self, request: &'a Prepared, _outputs: bool) -> SendFuture<'a> {
        Box::pin(async move {
            self.inner
                .infer(request.inputs.clone())
                .await
                .map(Some)
                .map_err(|e| match e.downcast_ref::<mlops_runtime::Error>() {
                    Some(r) => TargetError::new(runtime_kind(r), r.to_string()),
                    None => TargetError::new("inference", e.to_string()),
                })
        })
    }
}

/// How tensors travel over HTTP.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HttpEncoding {
    /// Tensors as JSON numbers.
    Json,
    /// Triton's binary tensor extension, for inputs and outputs.
    Binary,
}

/// A remote Open Inference Protocol endpoint over HTTP/1.1 with keep-alive connections
/// (one per request in flight). Requests are serialised whole, headers included, once.
pub struct HttpTarget {
    pool: crate::wire::Pool,
    path: String,
    host: String,
    base: String,
    model: String,
    encoding: HttpEncoding,
}

impl HttpTarget {
    /// Sends to `model` (at `version`, else its latest) at `base` (`http://127.0.0.1:8000`).
    pub fn new(
        base: &str,
        model: &str,
        version: Option<u64>,
        encoding: HttpEncoding,
    ) -> Result<HttpTarget> {
        let base = base.trim_end_matches('/').to_owned();
        let bad = |reason: String| Error::Target {
            target: base.clone(),
            reason,
        };
        let uri: hyper::Uri = base.parse().map_err(|e| bad(format!("not a URL: {e}")))?;
        if uri.scheme_str() != Some("http") {
            return Err(bad("only http:// endpoints are supported".into()));
        }
        let authority = uri
            .authority()
            .ok_or_else(|| bad("the URL names no host".into()))?;
        let host = authority.as_str().to_owned();
        let address = format!(
            "{}:{}",
            authority.host().trim_matches(['[', ']']),
            authority.port_u16().unwrap_or(80)
        );
        let prefix = uri.path().trim_end_matches('/');
        let path = match version {
            Some(v) => format!("{prefix}/v2/models/{model}/versions/{v}/infer"),
            None => format!("{prefix}/v2/models/{model}/infer"),
        };
        Ok(HttpTarget {
            pool: crate::wire::Pool::new(address),
            path,
            host,
            base,
            model: model.to_owned(),
            encoding,
        })
    }

    fn serialise(&self, body: &[u8], header_length: Option<usize>) -> Vec<u8> {
        let mut head = format!("POST {} HTTP/1.1\r\nhost: {}\r\n", self.path, self.host);
        match header_length {
            Some(len) => head.push_str(&format!(
                "content-type: application/octet-stream\r\n{}: {len}\r\n",
                mlops_runtime::http::HEADER_LENGTH
            )),
            None => head.push_str("content-type: application/json\r\n"),
        }
        head.push_str(&format!("content-length: {}\r\n\r\n", body.len()));
        let mut out = head.into_bytes();
        out.extend_from_slice(body);
        out
    }
}

impl Target for HttpTarget {
    fn protocol(&self) -> &'static str {
        match self.encoding {
            HttpEncoding::Json => "http_json",
            HttpEncoding::Binary => "http_binary",
        }
    }

    fn describe(&self) -> String {
        format!("{} model '{}' ({})", self.base, self.model, self.protocol())
    }

    fn prepare(&self, inputs: &[Tensor]) -> Result<Prepared> {
        let (body, header_length) = match self.encoding {
            HttpEncoding::Json => (json_request(inputs)?, None),
            HttpEncoding::Binary => {
                let (body, len) = binary_request(inputs)?;
                (body, Some(len))
            }
        };
        Ok(Prepared {
            inputs: inputs.to_vec(),
            encoded: Encoded::Http(Bytes::from(self.serialise(&body, header_length))),
        })
    }

    fn send<'a>(&'a self, request: &'a Prepared, outputs: bool) -> SendFuture<'a> {
        Box::pin(async move {
            let Encoded::Http(body) = &request.encoded else {
                return Err(TargetError::new(
                    "bad_request",
                    "request was not prepared for an HTTP target",
                ));
            };
            let response = self.pool.send(body, outputs).await?;
            if !(200..300).contains(&response.status) {
                let message = serde_json::from_slice::<Value>(&response.body)
                    .ok()
                    .and_then(|v| v.get("error").and_then(Value::as_str).map(str::to_owned))
                    .unwrap_or_else(|| String::from_utf8_lossy(&response.body).into_owned());
                return Err(TargetError::new(
                    format!("http_{}", response.status),
                    message,
                ));
            }
            if !outputs {
                return Ok(None);
            }
            decode_http_response(&response.body, response.header_length)
                .map(Some)
                .map_err(|e| TargetError::new("malformed_response", e))
        })
    }
}

/// A remote Open Inference Protocol endpoint over gRPC.
pub struct GrpcTarget {
    channels: Vec<GrpcInferenceServiceClient<Channel>>,
    next: AtomicUsize,
    address: String,
    model: String,
    version: Option<u64>,
}

impl GrpcTarget {
    /// Connects `connections` HTTP/2 connections to `address` (`http://127.0.0.1:8001`)
    /// and sends to `model` at `version` (else its latest). Connections are made lazily,
    /// so a server that is not up yet fails the requests, not this call.
    pub fn new(
        address: &str,
        model: &str,
        version: Option<u64>,
        connections: usize,
    ) -> Result<GrpcTarget> {
        let endpoint = Endpoint::from_shared(address.to_owned())
            .map_err(|e| Error::Target {
                target: address.to_owned(),
                reason: format!("not a gRPC address: {e}"),
            })?
            .tcp_nodelay(true)
            .connect_timeout(Duration::from_secs(5));
        let channels = (0..connections.max(1))
            .map(|_| {
                GrpcInferenceServiceClient::new(endpoint.connect_lazy())
                    .max_decoding_message_size(64 << 20)
            })
            .collect();
        Ok(GrpcTarget {
            channels,
            next: AtomicUsize::new(0),
            address: address.to_owned(),
            model: model.to_owned(),
            version,
        })
    }
}

impl Target for GrpcTarget {
    fn protocol(&self) -> &'static str {
        "grpc"
    }

    fn describe(&self) -> String {
        format!("{} model '{}' (grpc)", self.address, self.model)
    }

    fn prepare(&self, inputs: &[Tensor]) -> Result<Prepared> {
        let request = mlops_runtime::grpc::infer_request(&self.model, self.version, inputs);
        Ok(Prepared {
            inputs: inputs.to_vec(),
            encoded: Encoded::Grpc(Box::new(request)),
        })
    }

    fn send<'a>(&'a self, request: &'a Prepared, outputs: bool) -> SendFuture<'a> {
        Box::pin(async move {
            let Encoded::Grpc(message) = &request.encoded else {
                return Err(TargetError::new(
                    "bad_request",
                    "request was not prepared for a gRPC target",
                ));
            };
            let i = self.next.fetch_add(1, Ordering::Relaxed) % self.channels.len();
            let mut client = self.channels[i].clone();
            let response = client
                .model_infer((**message).clone())
                .await
                .map_err(|s| {
                    TargetError::new(
                        format!("grpc_{}", grpc_code_name(s.code())),
                        s.message().to_owned(),
                    )
                })?
                .into_inner();
            if !outputs {
                return Ok(None);
            }
            mlops_runtime::grpc::response_outputs(response)
                .map(Some)
                .map_err(|e| TargetError::new("malformed_response", e))
        })
    }
}

fn grpc_code_name(code: tonic::Code) -> &'static str {
    use tonic::Code as C;
    match code {
        C::Ok => "ok",
        C::Cancelled => "cancelled",
        C::Unknown => "unknown",
        C::InvalidArgument => "invalid_argument",
        C::DeadlineExceeded => "deadline_exceeded",
        C::NotFound => "not_found",
        C::AlreadyExists => "already_exists",
        C::PermissionDenied => "permission_denied",
        C::ResourceExhausted => "resource_exhausted",
        C::FailedPrecondition => "failed_precondition",
        C::Aborted => "aborted",
        C::OutOfRange => "out_of_range",
        C::Unimplemented => "unimplemented",
        C::Internal => "internal",
        C::Unavailable => "unavailable",
        C::DataLoss => "data_loss",
        C::Unauthenticated => "unauthenticated",
    }
}

/// A tensor's values as JSON numbers (or booleans, or strings for BYTES).
fn json_data(t: &Tensor) -> Result<Value> {
    let values = match t.dtype() {
        DataType::Bool => Value::from(t.to_bools()?),
        DataType::Bytes => Value::from(
            t.byte_strings()?
                .into_iter()
                .map(|b| Value::from(String::from_utf8_lossy(b).into_owned()))
                .collect::<Vec<_>>(),
        ),
        DataType::Fp32 => Value::from(t.to_vec::<f32>()?),
        DataType::Int64 => Value::from(t.to_vec::<i64>()?),
        DataType::Int32 => Value::from(t.to_vec::<i32>()?),
        DataType::Int8
        | DataType::Int16
        | DataType::Uint8
        | DataType::Uint16
        | DataType::Uint32
        | DataType::Uint64 => Value::from(
            t.to_f64()?
                .into_iter()
                .map(|v| v as i64)
                .collect::<Vec<_>>(),
        ),
        _ => Value::from(t.to_f64()?),
    };
    Ok(values)
}

fn tensor_header(t: &Tensor) -> serde_json::Map<String, Value> {
    let mut m = serde_json::Map::new();
    m.insert("name".into(), Value::from(t.name()));
    m.insert("shape".into(), Value::from(t.shape().to_vec()));
    m.insert("datatype".into(), Value::from(t.dtype().to_string()));
    m
}

/// `{"inputs": [...]}` with JSON tensor data.
pub(crate) fn json_request(inputs: &[Tensor]) -> Result<Vec<u8>> {
    let tensors = inputs
        .iter()
        .map(|t| {
            let mut m = tensor_header(t);
            m.insert("data".into(), json_data(t)?);
            Ok(Value::Object(m))
        })
        .collect::<Result<Vec<_>>>()?;
    let body = serde_json::json!({ "inputs": tensors });
    serde_json::to_vec(&body).map_err(|e| Error::Config(e.to_string()))
}

/// The JSON header with `binary_data_size` per input and every output asked in binary,
/// then the raw tensors; returns the body and the header's length.
fn binary_request(inputs: &[Tensor]) -> Result<(Vec<u8>, usize)> {
    let tensors: Vec<Value> = inputs
        .iter()
        .map(|t| {
            let mut m = tensor_header(t);
            m.insert(
                "parameters".into(),
                serde_json::json!({ "binary_data_size": t.data().len() }),
            );
            Value::Object(m)
        })
        .collect();
    let header = serde_json::json!({
        "inputs": tensors,
        "parameters": { "binary_data_output": true },
    });
    let mut body = serde_json::to_vec(&header).map_err(|e| Error::Config(e.to_string()))?;
    let len = body.len();
    for t in inputs {
        body.extend_from_slice(t.data());
    }
    Ok((body, len))
}

/// Decodes a V2 response: JSON tensors, or a JSON header of `header_len` bytes followed by
/// the binary outputs in order.
pub(crate) fn decode_http_response(
    bytes: &[u8],
    header_len: Option<usize>,
) -> std::result::Result<Vec<Tensor>, String> {
    let json_len = header_len.unwrap_or(bytes.len());
    let head = bytes.get(..json_len).ok_or_else(|| {
        format!(
            "header length {json_len} beyond a {}-byte body",
            bytes.len()
        )
    })?;
    // Servers that write non-finite numbers as Triton does (bare `NaN`, `Infinity`).
    let quoted = mlops_runtime::http::codec::quote_non_finite(head);
    let value: Value =
        serde_json::from_slice(quoted.as_deref().unwrap_or(head)).map_err(|e| e.to_string())?;
    let outputs = value
        .get("outputs")
        .and_then(Value::as_array)
        .ok_or("no outputs in the response")?;
    let mut offset = json_len;
    outputs
        .iter()
        .map(|o| {
            let (name, dtype, shape) = tensor_head(o)?;
            let binary = o
                .get("parameters")
                .and_then(|p| p.get("binary_data_size"))
                .and_then(Value::as_u64);
            match binary {
                Some(size) => {
                    let end = usize::try_from(size)
                        .ok()
                        .and_then(|size| offset.checked_add(size))
                        .ok_or_else(|| format!("output '{name}' runs past the body"))?;
                    let data = bytes
                        .get(offset..end)
                        .ok_or_else(|| format!("output '{name}' runs past the body"))?;
                    offset = end;
                    Tensor::new(name, dtype, shape, Bytes::copy_from_slice(data))
                        .map_err(|e| e.to_string())
                }
                None => {
                    let data = o
                        .get("data")
                        .and_then(Value::as_array)
                        .ok_or_else(|| format!("output '{name}' has no data"))?;
                    tensor_from_json(name, dtype, shape, data)
                }
            }
        })
        .collect()
}

/// A JSON tensor's `name`, `datatype` and `shape`.
pub(crate) fn tensor_head(v: &Value) -> std::result::Result<(&str, DataType, Vec<usize>), String> {
    let name = v
        .get("name")
        .and_then(Value::as_str)
        .ok_or("a tensor without a name")?;
    let dtype: DataType = v
        .get("datatype")
        .and_then(Value::as_str)
        .ok_or_else(|| format!("tensor '{name}' has no datatype"))?
        .parse()
        .map_err(|_| format!("tensor '{name}' has an unknown datatype"))?;
    let shape = v
        .get("shape")
        .and_then(Value::as_array)
        .ok_or_else(|| format!("tensor '{name}' has no shape"))?
        .iter()
        .map(|d| d.as_u64().and_then(|d| usize::try_from(d).ok()))
        .collect::<Option<Vec<_>>>()
        .ok_or_else(|| format!("tensor '{name}' has a negative or non-integer dimension"))?;
    Ok((name, dtype, shape))
}

/// A JSON tensor with its values in `data`.
pub(crate) fn json_tensor(v: &Value) -> std::result::Result<Tensor, String> {
    let (name, dtype, shape) = tensor_head(v)?;
    let data = v
        .get("data")
        .and_then(Value::as_array)
        .ok_or_else(|| format!("tensor '{name}' has no data"))?;
    tensor_from_json(name, dtype, shape, data)
}

/// A tensor from JSON values of its datatype.
pub(crate) fn tensor_from_json(
    name: &str,
    dtype: DataType,
    shape: Vec<usize>,
    data: &[Value],
) -> std::result::Result<Tensor, String> {
    let num = |v: &Value| -> std::result::Result<f64, String> {
        match v {
            Value::Number(n) => n
                .as_f64()
                .ok_or_else(|| format!("'{name}': {n} is not a number")),
            Value::String(s) if mlops_runtime::http::codec::non_finite(s).is_some() => {
                Ok(mlops_runtime::http::codec::non_finite(s).unwrap_or(f64::NAN))
            }
            Value::String(s) if s == "NaN" => Ok(f64::NAN),
            Value::String(s) if s == "Infinity" => Ok(f64::INFINITY),
            Value::String(s) if s == "-Infinity" => Ok(f64::NEG_INFINITY),
            Value::Null => Ok(f64::NAN),
            other => Err(format!("'{name}': {other} is not a number")),
        }
    };
    let floats = || {
        data.iter()
            .map(num)
            .collect::<std::result::Result<Vec<f64>, String>>()
    };
    let built = match dtype {
        DataType::Fp32 => Tensor::from_vec(
            name,
            shape,
            floats()?.into_iter().map(|v| v as f32).collect(),
        ),
        DataType::Fp64 => Tensor::from_vec(name, shape, floats()?),
        DataType::Int64 => Tensor::from_vec(
            name,
            shape,
            floats()?.into_iter().map(|v| v as i64).collect(),
        ),
        DataType::Int32 => Tensor::from_vec(
            name,
            shape,
            floats()?.into_iter().map(|v| v as i32).collect(),
        ),
        DataType::Uint8 => Tensor::from_vec(
            name,
            shape,
            floats()?.into_iter().map(|v| v as u8).collect(),
        ),
        DataType::Bool => {
            let bools = data
                .iter()
                .map(|v| {
                    v.as_bool()
                        .ok_or_else(|| format!("'{name}': {v} is not a boolean"))
                })
                .collect::<std::result::Result<Vec<_>, _>>()?;
            Tensor::from_bools(name, shape, &bools)
        }
        DataType::Bytes => {
            let strings = data
                .iter()
                .map(|v| {
                    v.as_str()
                        .map(str::as_bytes)
                        .ok_or_else(|| format!("'{name}': {v} is not a string"))
                })
                .collect::<std::result::Result<Vec<_>, _>>()?;
            Tensor::from_byte_strings(name, shape, &strings)
        }
        other => {
            return Err(format!(
                "'{name}': {other} tensors are not read from JSON here"
            ));
        }
    };
    built.map_err(|e| e.to_string())
}
