//! The Open Inference Protocol over gRPC (feature `grpc`): the `inference.GRPCInferenceService`
//! of KServe V2 and Triton, as tonic generates it from `proto/inference.proto`.
//!
//! [`service`] wraps a [`ModelServer`]; serve it with tonic's `Server`, or next to the HTTP
//! front end. Inputs come as `raw_input_contents` (what tritonclient and perf_analyzer
//! send) or as typed `contents`; outputs always go back as `raw_output_contents`, as
//! Triton answers. Errors are gRPC statuses: `INVALID_ARGUMENT` for a request at fault,
//! `NOT_FOUND` for an unknown model, `RESOURCE_EXHAUSTED` for a full queue,
//! `DEADLINE_EXCEEDED`, `UNAVAILABLE` while shutting down.

use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use mlops_core::{DataType, Tensor};
use tonic::{Request, Response, Status};

use crate::error::{Code, Error};
use crate::limits::ConnectionLimits;
use crate::protocol::{self, DirectoryRepository, InstanceKind, Protocol};
use crate::server::{ModelServer, ModelSpec};

/// The code tonic generated from `proto/inference.proto`: messages, the server trait and a
/// client.
#[allow(missing_docs, unreachable_pub, clippy::all, clippy::pedantic)]
pub mod proto {
    tonic::include_proto!("inference");
}

use proto::grpc_inference_service_server::{GrpcInferenceService, GrpcInferenceServiceServer};
use proto::model_infer_request::InferInputTensor;
use proto::model_infer_response::InferOutputTensor;
use proto::model_metadata_response::TensorMetadata;

/// A `ModelInfer` request for `model` at `version` (its latest when `None`), with the
/// inputs as raw contents, as clients send them.
pub fn infer_request(
    model: &str,
    version: Option<u64>,
    inputs: &[Tensor],
) -> proto::ModelInferRequest {
    proto::ModelInferRequest {
        model_name: model.to_owned(),
        model_version: version.map(|v| v.to_string()).unwrap_or_default(),
        inputs: inputs
            .iter()
            .map(|t| InferInputTensor {
                name: t.name().to_owned(),
                datatype: t.dtype().to_string(),
                shape: t
                    .shape()
                    .iter()
                    .map(|&d| i64::try_from(d).unwrap_or(i64::MAX))
                    .collect(),
                ..Default::default()
            })
            .collect(),
        raw_input_contents: inputs.iter().map(|t| t.data().clone()).collect(),
        ..Default::default()
    }
}

/// The output tensors of a `ModelInfer` response with raw contents; `Err` says what is
/// malformed about it.
pub fn response_outputs(response: proto::ModelInferResponse) -> Result<Vec<Tensor>, String> {
    if response.raw_output_contents.len() != response.outputs.len() {
        return Err(format!(
            "{} outputs but {} raw_output_contents",
            response.outputs.len(),
            response.raw_output_contents.len()
        ));
    }
    response
        .outputs
        .into_iter()
        .zip(response.raw_output_contents)
        .map(|(o, data)| {
            let dtype: DataType = o
                .datatype
                .parse()
                .map_err(|_| format!("unknown datatype '{}'", o.datatype))?;
            let shape = o
                .shape
                .iter()
                .map(|&d| usize::try_from(d))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|_| format!("output '{}' has a negative dimension", o.name))?;
            Tensor::new(o.name, dtype, shape, data).map_err(|e| e.to_string())
        })
        .collect()
}

/// The gRPC front end: a [`Protocol`] in tonic's clothes; build it with [`service`] or
/// [`service_for`].
#[derive(Clone, Debug)]
pub struct GrpcFrontEnd {
    protocol: Protocol,
}

/// The largest message accepted or sent by default: 64 MiB.
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 64 << 20;

/// The gRPC service over `server`; `repository` enables load and unload from a directory
/// (models loaded with `load_spec`).
pub fn service(
    server: Arc<ModelServer>,
    repository: Option<PathBuf>,
    load_spec: ModelSpec,
) -> GrpcInferenceServiceServer<GrpcFrontEnd> {
    let mut protocol = Protocol::new(server);
    if let Some(dir) = repository {
        protocol = protocol.with_repository(Arc::new(DirectoryRepository::new(dir, load_spec)));
    }
    service_for(protocol)
}

/// The gRPC service answering for `protocol`: the same server, name and repository as an
/// HTTP front end over it.
pub fn service_for(protocol: Protocol) -> GrpcInferenceServiceServer<GrpcFrontEnd> {
    GrpcInferenceServiceServer::new(GrpcFrontEnd { protocol })
        .max_decoding_message_size(DEFAULT_MAX_MESSAGE_BYTES)
        .max_encoding_message_size(DEFAULT_MAX_MESSAGE_BYTES)
}

/// Accepted connections for `tonic`'s `serve_with_incoming` from a bound listener, with
/// `TCP_NODELAY` set (without it, small responses wait on the peer's delayed ACK, tens of
/// milliseconds per request under load) and the default [`ConnectionLimits`].
pub fn incoming(
    listener: tokio::net::TcpListener,
) -> impl futures::Stream<Item = std::io::Result<LimitedStream>> + Send + 'static {
    incoming_with(listener, ConnectionLimits::default())
}

/// [`incoming`] with other limits: a connection that sends nothing within
/// `first_byte_timeout` is closed before tonic sees it (HTTP/2's preface has no deadline
/// of its own), and connections past `max_connections` are closed as they are accepted.
/// Call within a tokio runtime: the accepting runs on a task of its own.
pub fn incoming_with(
    listener: tokio::net::TcpListener,
    limits: ConnectionLimits,
) -> impl futures::Stream<Item = std::io::Result<LimitedStream>> + Send + 'static {
    let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<LimitedStream>>(64);
    let open = Arc::new(tokio::sync::Semaphore::new(
        limits
            .max_connections
            .clamp(1, tokio::sync::Semaphore::MAX_PERMITS),
    ));
    tokio::spawn(async move {
        loop {
            // Served no more (tonic dropped the stream): let the port go at once.
            let accepted = tokio::select! {
                accepted = listener.accept() => accepted,
                () = tx.closed() => return,
            };
            let stream = match accepted {
                Ok((stream, _)) => stream,
                Err(_) if tx.is_closed() => return,
                // Out of file descriptors and the like: pause rather than spin or exit.
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed: pausing 10 ms");
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                    continue;
                }
            };
            if tx.is_closed() {
                return;
            }
            let Ok(permit) = Arc::clone(&open).try_acquire_owned() else {
                drop(stream);
                continue;
            };
            let _ = stream.set_nodelay(true);
            let tx = tx.clone();
            tokio::spawn(async move {
                if crate::limits::starts_a_request(&stream, limits.first_byte_timeout).await {
                    let _ = tx
                        .send(Ok(LimitedStream {
                            inner: stream,
                            _permit: permit,
                        }))
                        .await;
                }
            });
        }
    });
    futures::stream::unfold(rx, |mut rx| async move {
        let next = rx.recv().await?;
        Some((next, rx))
    })
}

/// An accepted connection that holds its place under the connection cap until it closes.
#[derive(Debug)]
pub struct LimitedStream {
    inner: tokio::net::TcpStream,
    _permit: tokio::sync::OwnedSemaphorePermit,
}

impl tokio::io::AsyncRead for LimitedStream {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for LimitedStream {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

impl tonic::transport::server::Connected for LimitedStream {
    type ConnectInfo = tonic::transport::server::TcpConnectInfo;
    fn connect_info(&self) -> Self::ConnectInfo {
        self.inner.connect_info()
    }
}

/// The gRPC status for a runtime error.
pub fn status_of(error: &Error) -> Status {
    status(&protocol::Status::from(error))
}

/// The gRPC code of a protocol status.
pub fn grpc_code(code: Code) -> tonic::Code {
    match code {
        Code::InvalidArgument => tonic::Code::InvalidArgument,
        Code::NotFound => tonic::Code::NotFound,
        Code::FailedPrecondition => tonic::Code::FailedPrecondition,
        Code::ResourceExhausted => tonic::Code::ResourceExhausted,
        Code::DeadlineExceeded => tonic::Code::DeadlineExceeded,
        Code::Unavailable => tonic::Code::Unavailable,
        Code::Unimplemented => tonic::Code::Unimplemented,
        Code::Internal => tonic::Code::Internal,
        _ => tonic::Code::Unknown,
    }
}

/// The protocol status of a gRPC code: what a client makes of a server's answer.
pub fn code_of(code: tonic::Code) -> Code {
    match code {
        tonic::Code::InvalidArgument | tonic::Code::OutOfRange => Code::InvalidArgument,
        tonic::Code::NotFound => Code::NotFound,
        tonic::Code::FailedPrecondition => Code::FailedPrecondition,
        tonic::Code::ResourceExhausted => Code::ResourceExhausted,
        tonic::Code::DeadlineExceeded => Code::DeadlineExceeded,
        tonic::Code::Unavailable => Code::Unavailable,
        tonic::Code::Unimplemented => Code::Unimplemented,
        tonic::Code::Internal | tonic::Code::DataLoss => Code::Internal,
        _ => Code::Unknown,
    }
}

fn status(s: &protocol::Status) -> Status {
    Status::new(grpc_code(s.code), s.message.clone())
}

fn refused(s: protocol::Status) -> Status {
    Status::new(grpc_code(s.code), s.message)
}

fn version_of(text: &str) -> Result<Option<u64>, Status> {
    protocol::parse_version(text).map_err(refused)
}

fn metadata_of(t: protocol::TensorMetadata) -> TensorMetadata {
    TensorMetadata {
        name: t.name,
        datatype: t.datatype.to_string(),
        shape: t.shape,
    }
}

fn shape_of(name: &str, shape: &[i64]) -> Result<Vec<usize>, Status> {
    shape
        .iter()
        .map(|&d| {
            usize::try_from(d).map_err(|_| {
                Status::invalid_argument(format!("input '{name}': dimension {d} is negative"))
            })
        })
        .collect()
}

/// One input from typed `contents`.
fn from_contents(input: InferInputTensor) -> Result<Tensor, Status> {
    let name = input.name.clone();
    let dtype: DataType = input.datatype.parse().map_err(|_| {
        Status::invalid_argument(format!(
            "input '{name}': unknown datatype '{}'",
            input.datatype
        ))
    })?;
    let shape = shape_of(&name, &input.shape)?;
    let c = input.contents.unwrap_or_default();
    let bad = |e: mlops_core::Error| Status::invalid_argument(e.to_string());
    // INT8/16 and UINT8/16 travel in the 32-bit fields: each value must fit.
    fn narrow<S: Copy, T: TryFrom<S>>(
        values: &[S],
        name: &str,
        dtype: DataType,
    ) -> Result<Vec<T>, Status> {
        values
            .iter()
            .map(|&v| T::try_from(v))
            .collect::<Result<_, _>>()
            .map_err(|_| {
                Status::invalid_argument(format!("input '{name}': a value does not fit {dtype}"))
            })
    }
    let tensor = match dtype {
        DataType::Bool => Tensor::from_bools(name.clone(), shape, &c.bool_contents),
        DataType::Int8 => Tensor::from_vec(
            name.clone(),
            shape,
            narrow::<_, i8>(&c.int_contents, &name, dtype)?,
        ),
        DataType::Int16 => Tensor::from_vec(
            name.clone(),
            shape,
            narrow::<_, i16>(&c.int_contents, &name, dtype)?,
        ),
        DataType::Int32 => Tensor::from_vec(name.clone(), shape, c.int_contents),
        DataType::Int64 => Tensor::from_vec(name.clone(), shape, c.int64_contents),
        DataType::Uint8 => Tensor::from_vec(
            name.clone(),
            shape,
            narrow::<_, u8>(&c.uint_contents, &name, dtype)?,
        ),
        DataType::Uint16 => Tensor::from_vec(
            name.clone(),
            shape,
            narrow::<_, u16>(&c.uint_contents, &name, dtype)?,
        ),
        DataType::Uint32 => Tensor::from_vec(name.clone(), shape, c.uint_contents),
        DataType::Uint64 => Tensor::from_vec(name.clone(), shape, c.uint64_contents),
        DataType::Fp32 => Tensor::from_vec(name.clone(), shape, c.fp32_contents),
        DataType::Fp64 => Tensor::from_vec(name.clone(), shape, c.fp64_contents),
        DataType::Bytes => Tensor::from_byte_strings(name.clone(), shape, &c.bytes_contents),
        DataType::Fp16 | DataType::Bf16 => {
            return Err(Status::invalid_argument(format!(
                "input '{name}': {dtype} has no typed contents field; send raw_input_contents"
            )));
        }
    };
    tensor.map_err(bad)
}

#[tonic::async_trait]
impl GrpcInferenceService for GrpcFrontEnd {
    async fn server_live(
        &self,
        _: Request<proto::ServerLiveRequest>,
    ) -> Result<Response<proto::ServerLiveResponse>, Status> {
        Ok(Response::new(proto::ServerLiveResponse { live: true }))
    }

    async fn server_ready(
        &self,
        _: Request<proto::ServerReadyRequest>,
    ) -> Result<Response<proto::ServerReadyResponse>, Status> {
        Ok(Response::new(proto::ServerReadyResponse {
            ready: self.protocol.server_ready(),
        }))
    }

    async fn model_ready(
        &self,
        request: Request<proto::ModelReadyRequest>,
    ) -> Result<Response<proto::ModelReadyResponse>, Status> {
        let r = request.into_inner();
        let ready = match self.protocol.model_ready(&r.name, version_of(&r.version)?) {
            Ok(ready) => ready,
            // As Triton: a model not served is not ready, not an error.
            Err(s) if s.code == Code::NotFound => false,
            Err(s) => return Err(refused(s)),
        };
        Ok(Response::new(proto::ModelReadyResponse { ready }))
    }

    async fn server_metadata(
        &self,
        _: Request<proto::ServerMetadataRequest>,
    ) -> Result<Response<proto::ServerMetadataResponse>, Status> {
        let m = self.protocol.server_metadata();
        Ok(Response::new(proto::ServerMetadataResponse {
            name: m.name,
            version: m.version,
            extensions: m.extensions.into_iter().map(str::to_owned).collect(),
        }))
    }

    async fn model_metadata(
        &self,
        request: Request<proto::ModelMetadataRequest>,
    ) -> Result<Response<proto::ModelMetadataResponse>, Status> {
        let r = request.into_inner();
        let m = self
            .protocol
            .model_metadata(&r.name, version_of(&r.version)?)
            .map_err(refused)?;
        Ok(Response::new(proto::ModelMetadataResponse {
            name: m.name,
            versions: m.versions.iter().map(u64::to_string).collect(),
            platform: m.platform,
            inputs: m.inputs.into_iter().map(metadata_of).collect(),
            outputs: m.outputs.into_iter().map(metadata_of).collect(),
        }))
    }

    async fn model_infer(
        &self,
        request: Request<proto::ModelInferRequest>,
    ) -> Result<Response<proto::ModelInferResponse>, Status> {
        let r = request.into_inner();
        let version = version_of(&r.model_version)?;
        let version = self
            .protocol
            .served_version(&r.model_name, version)
            .map_err(refused)?;
        let raw = r.raw_input_contents;
        let mut inputs = Vec::with_capacity(r.inputs.len());
        if raw.is_empty() {
            for input in r.inputs {
                inputs.push(from_contents(input)?);
            }
        } else {
            if raw.len() != r.inputs.len() {
                return Err(Status::invalid_argument(format!(
                    "{} inputs but {} raw_input_contents: one each, in order",
                    r.inputs.len(),
                    raw.len()
                )));
            }
            for (input, data) in r.inputs.into_iter().zip(raw) {
                if input.contents.is_some() {
                    return Err(Status::invalid_argument(format!(
                        "input '{}' has both contents and raw_input_contents",
                        input.name
                    )));
                }
                let dtype: DataType = input.datatype.parse().map_err(|_| {
                    Status::invalid_argument(format!(
                        "input '{}': unknown datatype '{}'",
                        input.name, input.datatype
                    ))
                })?;
                let shape = shape_of(&input.name, &input.shape)?;
                let tensor = Tensor::new(input.name, dtype, shape, data)
                    .map_err(|e| Status::invalid_argument(e.to_string()))?;
                inputs.push(tensor);
            }
        }
        let answer = self
            .protocol
            .infer(protocol::InferRequest {
                model: r.model_name,
                version: Some(version),
                id: (!r.id.is_empty()).then_some(r.id),
                inputs,
                outputs: r.outputs.into_iter().map(|o| o.name).collect(),
            })
            .await
            .map_err(refused)?;
        let mut described = Vec::with_capacity(answer.outputs.len());
        let mut raw_out: Vec<Bytes> = Vec::with_capacity(answer.outputs.len());
        for t in answer.outputs {
            let (name, dtype, shape, data) = t.into_parts();
            described.push(InferOutputTensor {
                name,
                datatype: dtype.to_string(),
                shape: shape
                    .iter()
                    .map(|&d| i64::try_from(d).unwrap_or(i64::MAX))
                    .collect(),
                parameters: Default::default(),
                contents: None,
            });
            raw_out.push(data);
        }
        Ok(Response::new(proto::ModelInferResponse {
            model_name: answer.model,
            model_version: answer.version.to_string(),
            id: answer.id.unwrap_or_default(),
            parameters: Default::default(),
            outputs: described,
            raw_output_contents: raw_out,
        }))
    }

    async fn model_config(
        &self,
        request: Request<proto::ModelConfigRequest>,
    ) -> Result<Response<proto::ModelConfigResponse>, Status> {
        let r = request.into_inner();
        let c = self
            .protocol
            .model_config(&r.name, version_of(&r.version)?)
            .map_err(refused)?;
        let clamp = |n: usize| i32::try_from(n).unwrap_or(i32::MAX);
        let config = proto::ModelConfig {
            name: c.name.clone(),
            platform: c.platform,
            version_policy: Some(proto::ModelVersionPolicy {
                specific: Some(proto::model_version_policy::Specific {
                    versions: vec![i64::try_from(c.version).unwrap_or(i64::MAX)],
                }),
            }),
            max_batch_size: clamp(c.max_batch_size),
            input: c
                .inputs
                .into_iter()
                .map(|t| proto::ModelInput {
                    name: t.name,
                    data_type: triton_type(t.datatype) as i32,
                    dims: t.shape,
                })
                .collect(),
            output: c
                .outputs
                .into_iter()
                .map(|t| proto::ModelOutput {
                    name: t.name,
                    data_type: triton_type(t.datatype) as i32,
                    dims: t.shape,
                })
                .collect(),
            instance_group: vec![proto::ModelInstanceGroup {
                name: c.name,
                count: clamp(c.instance_count),
                kind: match c.instance_kind {
                    InstanceKind::Gpu => proto::model_instance_group::Kind::Gpu,
                    InstanceKind::Cpu => proto::model_instance_group::Kind::Cpu,
                } as i32,
            }],
            dynamic_batching: c.dynamic_batching.map(|b| proto::ModelDynamicBatching {
                preferred_batch_size: b.preferred_batch_sizes.into_iter().map(clamp).collect(),
                max_queue_delay_microseconds: u64::try_from(b.max_queue_delay.as_micros())
                    .unwrap_or(u64::MAX),
            }),
            backend: String::new(),
        };
        Ok(Response::new(proto::ModelConfigResponse {
            config: Some(config),
        }))
    }

    async fn model_statistics(
        &self,
        request: Request<proto::ModelStatisticsRequest>,
    ) -> Result<Response<proto::ModelStatisticsResponse>, Status> {
        let r = request.into_inner();
        let all = if r.name.is_empty() {
            self.protocol.model_statistics(None, None)
        } else {
            self.protocol
                .model_statistics(Some(&r.name), version_of(&r.version)?)
        }
        .map_err(refused)?;
        let duration = |count: u64, d: std::time::Duration| proto::StatisticDuration {
            count,
            ns: u64::try_from(d.as_nanos()).unwrap_or(u64::MAX),
        };
        let model_stats = all
            .into_iter()
            .map(|m| {
                let s = m.stats;
                let ok = s.request_success;
                proto::ModelStatistics {
                    name: m.name,
                    version: m.version.to_string(),
                    last_inference: 0,
                    inference_count: s.inference_count,
                    execution_count: s.execution_count,
                    inference_stats: Some(proto::InferStatistics {
                        success: Some(duration(ok, s.request_duration)),
                        fail: Some(duration(s.request_failure, std::time::Duration::ZERO)),
                        queue: Some(duration(ok, s.queue_duration)),
                        compute_input: Some(duration(ok, s.compute_input_duration)),
                        compute_infer: Some(duration(ok, s.compute_infer_duration)),
                        compute_output: Some(duration(ok, s.compute_output_duration)),
                        // No response cache: nothing is ever a hit or a miss.
                        cache_hit: Some(duration(0, std::time::Duration::ZERO)),
                        cache_miss: Some(duration(0, std::time::Duration::ZERO)),
                    }),
                    batch_stats: s
                        .batch_sizes
                        .iter()
                        .map(|(size, count)| proto::InferBatchStatistics {
                            batch_size: *size as u64,
                            compute_infer: Some(proto::StatisticDuration {
                                count: *count,
                                ns: 0,
                            }),
                            ..Default::default()
                        })
                        .collect(),
                }
            })
            .collect();
        Ok(Response::new(proto::ModelStatisticsResponse {
            model_stats,
        }))
    }

    async fn repository_index(
        &self,
        request: Request<proto::RepositoryIndexRequest>,
    ) -> Result<Response<proto::RepositoryIndexResponse>, Status> {
        let ready_only = request.into_inner().ready;
        let models = self
            .protocol
            .repository_index(ready_only)
            .await
            .map_err(refused)?
            .into_iter()
            .map(|e| proto::repository_index_response::ModelIndex {
                name: e.name,
                version: e.version.map(|v| v.to_string()).unwrap_or_default(),
                state: e.state.as_str().into(),
                reason: e.reason,
            })
            .collect();
        Ok(Response::new(proto::RepositoryIndexResponse { models }))
    }

    async fn repository_model_load(
        &self,
        request: Request<proto::RepositoryModelLoadRequest>,
    ) -> Result<Response<proto::RepositoryModelLoadResponse>, Status> {
        let model = request.into_inner().model_name;
        self.protocol.load(&model).await.map_err(refused)?;
        Ok(Response::new(proto::RepositoryModelLoadResponse {}))
    }

    async fn repository_model_unload(
        &self,
        request: Request<proto::RepositoryModelUnloadRequest>,
    ) -> Result<Response<proto::RepositoryModelUnloadResponse>, Status> {
        let model = request.into_inner().model_name;
        self.protocol.unload(&model).await.map_err(refused)?;
        Ok(Response::new(proto::RepositoryModelUnloadResponse {}))
    }
}

/// Triton's data type for a tensor's element type.
fn triton_type(dtype: DataType) -> proto::DataType {
    use proto::DataType as T;
    match dtype {
        DataType::Bool => T::TypeBool,
        DataType::Uint8 => T::TypeUint8,
        DataType::Uint16 => T::TypeUint16,
        DataType::Uint32 => T::TypeUint32,
        DataType::Uint64 => T::TypeUint64,
        DataType::Int8 => T::TypeInt8,
        DataType::Int16 => T::TypeInt16,
        DataType::Int32 => T::TypeInt32,
        DataType::Int64 => T::TypeInt64,
        DataType::Fp16 => T::TypeFp16,
        DataType::Bf16 => T::TypeBf16,
        DataType::Fp32 => T::TypeFp32,
        DataType::Fp64 => T::TypeFp64,
        DataType::Bytes => T::TypeString,
    }
}
