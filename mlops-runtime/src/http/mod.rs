//! The Open Inference Protocol (KServe V2) over HTTP/REST, as Triton, MLServer and KServe
//! speak it (feature `http`).
//!
//! [`router`] is an [`axum::Router`] an application mounts in its own server or serves as
//! is. It answers:
//!
//! | route | what |
//! |---|---|
//! | `GET /v2/health/live`, `/v2/health/ready` | liveness, readiness |
//! | `GET /v2` | server metadata and extensions |
//! | `GET /v2/models/{m}[/versions/{v}]` | model metadata: platform, versions, inputs, outputs |
//! | `GET /v2/models/{m}[/versions/{v}]/ready` | model readiness |
//! | `POST /v2/models/{m}[/versions/{v}]/infer` | inference, JSON tensors or the binary tensor extension |
//! | `GET /v2/models/{m}[/versions/{v}]/config` | Triton's model configuration (for perf_analyzer, Model Analyzer) |
//! | `GET /v2/models[/{m}[/versions/{v}]]/stats` | Triton's statistics extension |
//! | `POST /v2/repository/index`, `/v2/repository/models/{m}/load`, `…/unload` | the model repository extension |
//! | `GET /metrics` | Prometheus metrics (also on its own port with [`metrics_router`]) |
//!
//! Errors are `{"error": "..."}` with the status [`status_of`] gives: 400 for a request at
//! fault, 404 for an unknown model, 429 for a full queue, 503 while shutting down, 504 for
//! a passed deadline; 413 for a body over [`HttpConfig::max_body_bytes`] and 408 for one
//! slower than [`HttpConfig::body_timeout`].
//!
//! [`serve`] runs the router on a listener with `TCP_NODELAY`, a
//! [`HEADER_READ_TIMEOUT`] and a graceful stop bounded by [`DRAIN_TIMEOUT`].

pub mod codec;
mod metrics;

use std::path::PathBuf;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use mlops_core::DataType;
use serde_json::{Value, json};

pub use codec::HEADER_LENGTH;

use crate::error::{Code, Error};
use crate::protocol::{
    DirectoryRepository, InferRequest, InstanceKind, ModelStatistics, Protocol, Repository, Status,
    TensorMetadata, parse_version,
};
use crate::server::{ModelServer, ModelSpec};

/// How the HTTP front end behaves.
#[derive(Clone, Debug)]
pub struct HttpConfig {
    /// Bodies larger than this are refused with 413 before they are read whole.
    pub max_body_bytes: usize,
    /// How long a request body may take to arrive; a slower one is answered 408 and its
    /// connection freed.
    pub body_timeout: std::time::Duration,
    /// Where the repository extension loads models from; `None` disables load and unload.
    pub repository: Option<Arc<dyn Repository>>,
    /// The name `GET /v2` reports.
    pub server_name: String,
    /// The most request-body bytes the server holds at once, all requests together
    /// (256 MiB); a request that would pass it is answered 503 with `Retry-After` before
    /// its body is read. A body without a length counts as `max_body_bytes`.
    pub max_body_bytes_in_flight: usize,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            max_body_bytes: 64 << 20,
            body_timeout: std::time::Duration::from_secs(30),
            repository: None,
            server_name: "mlops".into(),
            max_body_bytes_in_flight: 256 << 20,
        }
    }
}

impl HttpConfig {
    /// Sets the body limit.
    pub fn with_max_body_bytes(mut self, bytes: usize) -> Self {
        self.max_body_bytes = bytes;
        self
    }

    /// Sets the budget of request-body bytes in flight.
    pub fn with_max_body_bytes_in_flight(mut self, bytes: usize) -> Self {
        self.max_body_bytes_in_flight = bytes;
        self
    }

    /// Sets how long a request body may take to arrive.
    pub fn with_body_timeout(mut self, timeout: std::time::Duration) -> Self {
        self.body_timeout = timeout;
        self
    }

    /// Enables the repository extension over the directory `dir` (`<dir>/<name>`, a file
    /// or a directory), loading models with `spec`.
    pub fn with_repository(self, dir: impl Into<PathBuf>, spec: ModelSpec) -> Self {
        self.with_model_repository(Arc::new(DirectoryRepository::new(dir, spec)))
    }

    /// Enables the repository extension over any [`Repository`].
    pub fn with_model_repository(mut self, repository: Arc<dyn Repository>) -> Self {
        self.repository = Some(repository);
        self
    }
}

/// Bodies above this size are decoded on a blocking thread.
const BLOCKING_DECODE_BYTES: usize = 256 << 10;

struct AppState {
    protocol: Protocol,
    config: HttpConfig,
    /// Body bytes in flight, in KiB permits.
    bodies: Arc<tokio::sync::Semaphore>,
}

/// Permits are KiB, so a budget of any size fits the semaphore's count.
fn kib(bytes: usize) -> usize {
    bytes.div_ceil(1024)
}

/// Holds a request's body bytes against the server-wide budget for as long as the request
/// runs; a request that would pass the budget is a 503 before its body is read.
async fn body_budget(
    State(state): State<Shared>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    let bytes = match declared {
        Some(0) => return next.run(request).await,
        // Past the body limit: refused before a byte of it is read.
        Some(n) if n > state.config.max_body_bytes => {
            return error_response(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!(
                    "the body of {n} bytes is over the limit of {} bytes",
                    state.config.max_body_bytes
                ),
            );
        }
        Some(n) => n,
        None if request.method() == axum::http::Method::GET => return next.run(request).await,
        None => state.config.max_body_bytes,
    };
    let permits = u32::try_from(kib(bytes)).unwrap_or(u32::MAX);
    let Ok(held) = Arc::clone(&state.bodies).try_acquire_many_owned(permits) else {
        let mut response = error_response(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "the server holds its {} MiB of request bodies in flight: retry shortly",
                state.config.max_body_bytes_in_flight >> 20
            ),
        );
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        return response;
    };
    let response = next.run(request).await;
    drop(held);
    response
}

type Shared = Arc<AppState>;

/// The Open Inference Protocol REST routes over `server`.
pub fn router(server: Arc<ModelServer>, config: HttpConfig) -> Router {
    let limit = config.max_body_bytes;
    // At least one largest body fits, whatever the budget says.
    let budget = kib(config.max_body_bytes_in_flight.max(config.max_body_bytes))
        .min(tokio::sync::Semaphore::MAX_PERMITS);
    let mut protocol = Protocol::new(server).with_name(config.server_name.clone());
    if let Some(repository) = &config.repository {
        protocol = protocol.with_repository(Arc::clone(repository));
    }
    let state = Arc::new(AppState {
        protocol,
        config,
        bodies: Arc::new(tokio::sync::Semaphore::new(budget)),
    });
    Router::new()
        .route("/v2/health/live", get(|| async { StatusCode::OK }))
        .route("/v2/health/ready", get(ready))
        .route("/v2", get(server_metadata))
        .route("/v2/models/stats", get(all_stats))
        .route("/v2/models/{model}", get(metadata_handler))
        .route(
            "/v2/models/{model}/versions/{version}",
            get(metadata_handler),
        )
        .route("/v2/models/{model}/ready", get(ready_handler))
        .route(
            "/v2/models/{model}/versions/{version}/ready",
            get(ready_handler),
        )
        .route("/v2/models/{model}/infer", post(infer_handler))
        .route(
            "/v2/models/{model}/versions/{version}/infer",
            post(infer_handler),
        )
        .route("/v2/models/{model}/config", get(config_handler))
        .route(
            "/v2/models/{model}/versions/{version}/config",
            get(config_handler),
        )
        .route("/v2/models/{model}/stats", get(stats_handler))
        .route(
            "/v2/models/{model}/versions/{version}/stats",
            get(stats_handler),
        )
        .route("/v2/repository/index", post(repository_index))
        .route("/v2/repository/models/{model}/load", post(repository_load))
        .route(
            "/v2/repository/models/{model}/unload",
            post(repository_unload),
        )
        .route("/metrics", get(render_metrics))
        .layer(DefaultBodyLimit::max(limit))
        .layer(axum::middleware::from_fn_with_state(
            Arc::clone(&state),
            body_budget,
        ))
        .layer(axum::middleware::map_response(json_errors))
        .with_state(state)
}

/// Every error leaves as `{"error": ...}`, including those axum writes itself (413 from the
/// body limit, 404 for an unknown route, 405, rejected paths): clients parse error bodies
/// as JSON.
async fn json_errors(response: Response) -> Response {
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let body = axum::body::to_bytes(response.into_body(), 64 << 10)
        .await
        .unwrap_or_default();
    let text = String::from_utf8_lossy(&body);
    let message = if text.trim().is_empty() {
        status.canonical_reason().unwrap_or("error").to_owned()
    } else {
        text.into_owned()
    };
    error_response(status, message)
}

/// How long a client may take to send a request's headers.
pub const HEADER_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// How long a graceful stop waits for requests in flight before closing their connections.
pub const DRAIN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

pub use crate::limits::ConnectionLimits;

/// Serves `app` on `listener` until `shutdown` completes, then lets requests in flight
/// finish (for at most [`DRAIN_TIMEOUT`]), with the default [`ConnectionLimits`].
///
/// Unlike a bare `axum::serve`, every connection has `TCP_NODELAY` (small responses do not
/// wait for the peer's delayed ACK) and a [`HEADER_READ_TIMEOUT`] (a client that trickles
/// its headers cannot hold a connection); bodies have [`HttpConfig::body_timeout`].
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: Router,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_with(listener, app, ConnectionLimits::default(), shutdown).await
}

/// [`serve`] with other connection limits.
pub async fn serve_with(
    listener: tokio::net::TcpListener,
    app: Router,
    limits: ConnectionLimits,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
    use hyper_util::server::conn::auto::Builder;
    use hyper_util::service::TowerToHyperService;
    use tower::ServiceExt;

    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let open = Arc::new(tokio::sync::Semaphore::new(
        limits
            .max_connections
            .clamp(1, tokio::sync::Semaphore::MAX_PERMITS),
    ));
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                // Out of file descriptors and the like: pause rather than spin or exit.
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed: pausing 10 ms");
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        // At the cap: closed at once, so it costs a descriptor for no longer than this.
        let Ok(permit) = Arc::clone(&open).try_acquire_owned() else {
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let service = app
            .clone()
            .map_request(|req: axum::http::Request<hyper::body::Incoming>| {
                req.map(axum::body::Body::new)
            });
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let _permit = permit;
            // HTTP/1 and HTTP/2 are told apart by the first bytes, and hyper waits for them
            // without a deadline: a silent socket, or one that stops inside HTTP/2's
            // preface, is closed here instead.
            if !crate::limits::starts_a_request(&stream, limits.first_byte_timeout).await {
                return;
            }
            let mut builder = Builder::new(TokioExecutor::new());
            builder
                .http1()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_READ_TIMEOUT);
            let conn = builder.serve_connection_with_upgrades(
                TokioIo::new(stream),
                TowerToHyperService::new(service),
            );
            // A connection error (a client gone mid-request) ends only that connection.
            let _ = watcher.watch(conn).await;
        });
    }
    let _ = tokio::time::timeout(DRAIN_TIMEOUT, graceful.shutdown()).await;
    Ok(())
}

/// `GET /metrics` alone, for a dedicated metrics port (8002 by convention).
pub fn metrics_router(server: Arc<ModelServer>) -> Router {
    let state = Arc::new(AppState {
        protocol: Protocol::new(server),
        config: HttpConfig::default(),
        bodies: Arc::new(tokio::sync::Semaphore::new(0)),
    });
    Router::new()
        .route("/metrics", get(render_metrics))
        .with_state(state)
}

/// The HTTP status for a runtime error: the one place where errors meet the protocol.
pub fn status_of(error: &Error) -> StatusCode {
    http_status(error.code())
}

fn http_status(code: Code) -> StatusCode {
    StatusCode::from_u16(code.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

fn error_response(status: StatusCode, message: impl std::fmt::Display) -> Response {
    (status, axum::Json(json!({ "error": message.to_string() }))).into_response()
}

/// A refusal on its way to becoming a response (small, unlike a `Response`).
#[derive(Debug)]
struct ApiError(Status);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        error_response(http_status(self.0.code), self.0.message)
    }
}

impl From<Status> for ApiError {
    fn from(s: Status) -> Self {
        ApiError(s)
    }
}

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        ApiError(Status::from(e))
    }
}

type Answer = Result<Response, ApiError>;

/// `/v2/models/{model}[/versions/{version}]`: one extractor for both route shapes.
#[derive(serde::Deserialize)]
struct ModelPath {
    model: String,
    #[serde(default)]
    version: Option<String>,
}

impl ModelPath {
    fn version(&self) -> Result<Option<u64>, ApiError> {
        match self.version.as_deref() {
            // An empty segment never routes here; a version in the path must be one.
            Some("") => Err(Status::invalid("'' is not a model version (1, 2, ...)").into()),
            Some(v) => Ok(parse_version(v)?),
            None => Ok(None),
        }
    }
}

fn json_answer(value: Value) -> Answer {
    Ok(axum::Json(value).into_response())
}

async fn ready(State(st): State<Shared>) -> StatusCode {
    if st.protocol.server_ready() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    }
}

async fn server_metadata(State(st): State<Shared>) -> Answer {
    let m = st.protocol.server_metadata();
    json_answer(json!({ "name": m.name, "version": m.version, "extensions": m.extensions }))
}

fn tensor_json(t: &TensorMetadata) -> Value {
    json!({ "name": t.name, "datatype": t.datatype.to_string(), "shape": t.shape })
}

async fn metadata_handler(State(st): State<Shared>, Path(p): Path<ModelPath>) -> Answer {
    let m = st.protocol.model_metadata(&p.model, p.version()?)?;
    json_answer(json!({
        "name": m.name,
        "versions": m.versions.iter().map(u64::to_string).collect::<Vec<_>>(),
        "platform": m.platform,
        "inputs": m.inputs.iter().map(tensor_json).collect::<Vec<_>>(),
        "outputs": m.outputs.iter().map(tensor_json).collect::<Vec<_>>(),
    }))
}

async fn ready_handler(State(st): State<Shared>, Path(p): Path<ModelPath>) -> Answer {
    if st.protocol.model_ready(&p.model, p.version()?)? {
        Ok(StatusCode::OK.into_response())
    } else {
        Err(Status::new(
            Code::Unavailable,
            format!("model '{}' is not ready", p.model),
        )
        .into())
    }
}

async fn infer_handler(
    State(st): State<Shared>,
    Path(path): Path<ModelPath>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Response {
    let version = match path.version() {
        Ok(v) => v,
        Err(e) => return e.into_response(),
    };
    match read_body(&st, body).await {
        Ok(body) => match infer(&st, path.model, version, &headers, body).await {
            Ok(r) | Err(r) => r,
        },
        Err(r) => r,
    }
}

async fn infer(
    st: &AppState,
    model: String,
    version: Option<u64>,
    headers: &HeaderMap,
    body: Bytes,
) -> Result<Response, Response> {
    let version = st
        .protocol
        .served_version(&model, version)
        .map_err(|s| ApiError(s).into_response())?;
    let header_length = headers
        .get(HEADER_LENGTH)
        .map(|h| h.to_str().unwrap_or("?").to_owned());
    // Small bodies parse in microseconds; large ones go to a blocking thread so that the
    // executor keeps answering (health checks included).
    let decoded = if body.len() <= BLOCKING_DECODE_BYTES {
        codec::decode_request(body, header_length.as_deref())
    } else {
        tokio::task::spawn_blocking(move || codec::decode_request(body, header_length.as_deref()))
            .await
            .map_err(|e| error_response(StatusCode::INTERNAL_SERVER_ERROR, e))?
    };
    let request = decoded.map_err(|e| error_response(StatusCode::BAD_REQUEST, e))?;
    let binary_default = request.binary_default;
    let binary_of: Vec<(String, bool)> = request.outputs.clone();
    let answer = st
        .protocol
        .infer(InferRequest {
            model,
            version: Some(version),
            id: request.id,
            inputs: request.inputs,
            outputs: request.outputs.into_iter().map(|(name, _)| name).collect(),
        })
        .await
        .map_err(|s| ApiError(s).into_response())?;
    let binary: Vec<bool> = answer
        .outputs
        .iter()
        .map(|t| {
            binary_of
                .iter()
                .find(|(name, _)| name == t.name())
                .map_or(binary_default, |(_, b)| *b)
        })
        .collect();
    let encoded = codec::encode_response(
        &answer.model,
        answer.version,
        answer.id.as_deref(),
        &answer.outputs,
        &binary,
    )
    .map_err(|e| {
        error_response(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("cannot encode the response: {e}"),
        )
    })?;
    let mut response = encoded.body.into_response();
    let h = response.headers_mut();
    match encoded.header_length {
        Some(n) => {
            h.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/octet-stream"),
            );
            h.insert(HEADER_LENGTH, HeaderValue::from(n));
        }
        None => {
            h.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
        }
    }
    Ok(response)
}

/// Reads a request body within the size limit and the body timeout: neither an oversized
/// nor a trickling body holds the server.
async fn read_body(st: &AppState, body: axum::body::Body) -> Result<Bytes, Response> {
    let limit = st.config.max_body_bytes;
    match tokio::time::timeout(st.config.body_timeout, axum::body::to_bytes(body, limit)).await {
        Ok(Ok(bytes)) => Ok(bytes),
        Ok(Err(e)) => {
            let too_large = std::error::Error::source(&e)
                .is_some_and(|s| s.is::<http_body_util::LengthLimitError>());
            Err(if too_large {
                error_response(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!("the request body is over the limit of {limit} bytes"),
                )
            } else {
                error_response(
                    StatusCode::BAD_REQUEST,
                    format!("cannot read the request body: {e}"),
                )
            })
        }
        Err(_) => Err(error_response(
            StatusCode::REQUEST_TIMEOUT,
            format!(
                "the request body did not arrive within {:?}",
                st.config.body_timeout
            ),
        )),
    }
}

/// Triton's `data_type` names.
fn triton_type(dtype: DataType) -> &'static str {
    match dtype {
        DataType::Bool => "TYPE_BOOL",
        DataType::Uint8 => "TYPE_UINT8",
        DataType::Uint16 => "TYPE_UINT16",
        DataType::Uint32 => "TYPE_UINT32",
        DataType::Uint64 => "TYPE_UINT64",
        DataType::Int8 => "TYPE_INT8",
        DataType::Int16 => "TYPE_INT16",
        DataType::Int32 => "TYPE_INT32",
        DataType::Int64 => "TYPE_INT64",
        DataType::Fp16 => "TYPE_FP16",
        DataType::Bf16 => "TYPE_BF16",
        DataType::Fp32 => "TYPE_FP32",
        DataType::Fp64 => "TYPE_FP64",
        DataType::Bytes => "TYPE_STRING",
    }
}

fn micros(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

async fn config_handler(State(st): State<Shared>, Path(p): Path<ModelPath>) -> Answer {
    let c = st.protocol.model_config(&p.model, p.version()?)?;
    let tensors = |ts: &[TensorMetadata]| -> Vec<Value> {
        ts.iter()
            .map(|t| json!({ "name": t.name, "data_type": triton_type(t.datatype), "dims": t.shape }))
            .collect()
    };
    let mut config = json!({
        "name": c.name,
        "platform": c.platform,
        "max_batch_size": c.max_batch_size,
        "input": tensors(&c.inputs),
        "output": tensors(&c.outputs),
        "version_policy": { "specific": { "versions": [c.version] } },
        "instance_group": [{
            "name": c.name,
            "count": c.instance_count,
            "kind": match c.instance_kind { InstanceKind::Gpu => "KIND_GPU", InstanceKind::Cpu => "KIND_CPU" },
        }],
    });
    if let (Some(b), Some(object)) = (&c.dynamic_batching, config.as_object_mut()) {
        object.insert(
            "dynamic_batching".into(),
            json!({
                "preferred_batch_size": b.preferred_batch_sizes,
                "max_queue_delay_microseconds": micros(b.max_queue_delay),
            }),
        );
    }
    json_answer(config)
}

fn duration_json(count: u64, d: std::time::Duration) -> Value {
    json!({ "count": count, "ns": u64::try_from(d.as_nanos()).unwrap_or(u64::MAX) })
}

fn statistics_json(all: Vec<ModelStatistics>) -> Answer {
    let stats: Vec<Value> = all
        .into_iter()
        .map(|m| {
            let s = m.stats;
            let success = s.request_success;
            json!({
                "name": m.name,
                "version": m.version.to_string(),
                "last_inference": 0,
                "inference_count": s.inference_count,
                "execution_count": s.execution_count,
                "inference_stats": {
                    "success": duration_json(success, s.request_duration),
                    "fail": duration_json(s.request_failure, std::time::Duration::ZERO),
                    "queue": duration_json(success, s.queue_duration),
                    "compute_input": duration_json(success, s.compute_input_duration),
                    "compute_infer": duration_json(success, s.compute_infer_duration),
                    "compute_output": duration_json(success, s.compute_output_duration),
                    // No response cache: nothing is ever a hit or a miss.
                    "cache_hit": duration_json(0, std::time::Duration::ZERO),
                    "cache_miss": duration_json(0, std::time::Duration::ZERO),
                },
                "batch_stats": s.batch_sizes.iter().map(|(size, count)| json!({
                    "batch_size": size,
                    "compute_infer": { "count": count, "ns": 0 },
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    json_answer(json!({ "model_stats": stats }))
}

async fn all_stats(State(st): State<Shared>) -> Answer {
    statistics_json(st.protocol.model_statistics(None, None)?)
}

async fn stats_handler(State(st): State<Shared>, Path(p): Path<ModelPath>) -> Answer {
    statistics_json(st.protocol.model_statistics(Some(&p.model), p.version()?)?)
}

/// The index request's body: `{"ready": true}` lists only what is loaded.
#[derive(serde::Deserialize, Default)]
struct IndexRequest {
    #[serde(default)]
    ready: bool,
}

async fn repository_index(State(st): State<Shared>, body: Bytes) -> Answer {
    let request: IndexRequest = if body.iter().all(u8::is_ascii_whitespace) {
        IndexRequest::default()
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| Status::invalid(format!("malformed index request: {e}")))?
    };
    let index = st.protocol.repository_index(request.ready).await?;
    json_answer(Value::Array(
        index
            .into_iter()
            .map(|e| {
                let mut entry = json!({ "name": e.name, "state": e.state.as_str() });
                if let Some(object) = entry.as_object_mut() {
                    if let Some(v) = e.version {
                        object.insert("version".into(), Value::String(v.to_string()));
                    }
                    if !e.reason.is_empty() {
                        object.insert("reason".into(), Value::String(e.reason));
                    }
                }
                entry
            })
            .collect(),
    ))
}

async fn repository_load(State(st): State<Shared>, Path(model): Path<String>) -> Answer {
    st.protocol.load(&model).await?;
    Ok(StatusCode::OK.into_response())
}

async fn repository_unload(State(st): State<Shared>, Path(model): Path<String>) -> Answer {
    st.protocol.unload(&model).await?;
    Ok(StatusCode::OK.into_response())
}

async fn render_metrics(State(st): State<Shared>) -> Response {
    // Reads /proc and walks every model's statistics: off the executor.
    let server = st.protocol.server().clone();
    let text = match tokio::task::spawn_blocking(move || metrics::render(&server)).await {
        Ok(text) => text,
        Err(e) => return error_response(StatusCode::INTERNAL_SERVER_ERROR, e),
    };
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4"),
        )],
        text,
    )
        .into_response()
}
