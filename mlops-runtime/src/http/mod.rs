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
use mlops_core::{DataType, Signature, TensorSpec};
use serde_json::{Value, json};

pub use codec::HEADER_LENGTH;

use crate::error::Error;
use crate::server::{ModelServer, ModelSpec};

/// How the HTTP front end behaves.
#[derive(Clone, Debug)]
pub struct HttpConfig {
    /// Bodies larger than this are refused with 413 before they are read whole.
    pub max_body_bytes: usize,
    /// How long a request body may take to arrive; a slower one is answered 408 and its
    /// connection freed.
    pub body_timeout: std::time::Duration,
    /// Where the repository extension loads models from (`<dir>/<name>`, a file or a
    /// directory); `None` disables load and unload.
    pub repository: Option<PathBuf>,
    /// How models loaded through the repository extension are served.
    pub load_spec: ModelSpec,
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
            load_spec: ModelSpec::default(),
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

    /// Enables the repository extension over `dir`.
    pub fn with_repository(mut self, dir: impl Into<PathBuf>, spec: ModelSpec) -> Self {
        self.repository = Some(dir.into());
        self.load_spec = spec;
        self
    }
}

/// Bodies above this size are decoded on a blocking thread.
const BLOCKING_DECODE_BYTES: usize = 256 << 10;

struct AppState {
    server: Arc<ModelServer>,
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
    let state = Arc::new(AppState {
        server,
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
        server,
        config: HttpConfig::default(),
        bodies: Arc::new(tokio::sync::Semaphore::new(0)),
    });
    Router::new()
        .route("/metrics", get(render_metrics))
        .with_state(state)
}

/// The HTTP status for a runtime error: the one place where errors meet the protocol.
pub fn status_of(error: &Error) -> StatusCode {
    match error {
        // The server could not read its own files (a load from the repository): its fault.
        Error::InvalidInput(mlops_core::Error::Io { .. }) => StatusCode::INTERNAL_SERVER_ERROR,
        Error::InvalidInput(_) => StatusCode::BAD_REQUEST,
        Error::ModelNotFound { .. } => StatusCode::NOT_FOUND,
        Error::Overloaded { .. } => StatusCode::TOO_MANY_REQUESTS,
        Error::Timeout { .. } => StatusCode::GATEWAY_TIMEOUT,
        Error::ShuttingDown { .. } | Error::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

fn error_response(status: StatusCode, message: impl std::fmt::Display) -> Response {
    (status, axum::Json(json!({ "error": message.to_string() }))).into_response()
}

fn runtime_error(e: &Error) -> Response {
    error_response(status_of(e), e)
}

/// An error on its way to becoming a response (small, unlike a `Response`).
#[derive(Debug)]
struct ApiError {
    status: StatusCode,
    message: String,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        error_response(self.status, self.message)
    }
}

impl From<&Error> for ApiError {
    fn from(e: &Error) -> Self {
        ApiError {
            status: status_of(e),
            message: e.to_string(),
        }
    }
}

fn parse_version(text: &str) -> Result<u64, ApiError> {
    text.parse::<u64>()
        .ok()
        .filter(|v| *v > 0)
        .ok_or_else(|| ApiError {
            status: StatusCode::BAD_REQUEST,
            message: format!("'{text}' is not a model version (1, 2, ...)"),
        })
}

/// `/v2/models/{model}[/versions/{version}]`: one extractor for both route shapes.
#[derive(serde::Deserialize)]
struct ModelPath {
    model: String,
    #[serde(default)]
    version: Option<String>,
}

impl ModelPath {
    fn version(&self) -> Result<Option<u64>, ApiError> {
        self.version.as_deref().map(parse_version).transpose()
    }

    /// Runs `f` with the model and its version (`None`: the latest).
    fn then(&self, f: impl FnOnce(&str, Option<u64>) -> Response) -> Response {
        match self.version() {
            Ok(v) => f(&self.model, v),
            Err(e) => e.into_response(),
        }
    }
}

async fn metadata_handler(State(st): State<Shared>, Path(p): Path<ModelPath>) -> Response {
    p.then(|m, v| metadata(&st, m, v))
}

async fn ready_handler(State(st): State<Shared>, Path(p): Path<ModelPath>) -> Response {
    p.then(|m, v| model_ready(&st, m, v))
}

async fn config_handler(State(st): State<Shared>, Path(p): Path<ModelPath>) -> Response {
    p.then(|m, v| config(&st, m, v))
}

async fn stats_handler(State(st): State<Shared>, Path(p): Path<ModelPath>) -> Response {
    p.then(|m, v| stats(&st, m, v))
}

/// The version to use: the one asked for, or the latest served.
fn pick_version(server: &ModelServer, model: &str, version: Option<u64>) -> Result<u64, ApiError> {
    server
        .served_version(model, version)
        .map_err(|e| ApiError::from(&e))
}

async fn ready(State(st): State<Shared>) -> StatusCode {
    if st.server.is_ready() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    }
}

async fn server_metadata(State(st): State<Shared>) -> Response {
    axum::Json(json!({
        "name": st.config.server_name,
        "version": env!("CARGO_PKG_VERSION"),
        "extensions": ["binary_tensor_data", "model_repository", "statistics", "model_configuration"],
    }))
    .into_response()
}

fn spec_json(spec: &TensorSpec) -> Value {
    let shape: Vec<i64> = spec.shape.iter().flatten().map(|d| d.to_i64()).collect();
    json!({ "name": spec.name, "datatype": spec.dtype.to_string(), "shape": shape })
}

fn metadata(st: &AppState, model: &str, version: Option<u64>) -> Response {
    let v = match pick_version(&st.server, model, version) {
        Ok(v) => v,
        Err(r) => return r.into_response(),
    };
    let batcher = match st.server.get(model, Some(v)) {
        Ok(b) => b,
        Err(e) => return runtime_error(&e),
    };
    let versions: Vec<String> = st
        .server
        .models()
        .get(model)
        .map(|vs| vs.iter().map(u64::to_string).collect())
        .unwrap_or_default();
    let sig = batcher.signature();
    axum::Json(json!({
        "name": model,
        "versions": versions,
        "platform": st.server.platform(model, v).unwrap_or_default(),
        "inputs": sig.inputs.iter().map(spec_json).collect::<Vec<_>>(),
        "outputs": sig.outputs.iter().map(spec_json).collect::<Vec<_>>(),
    }))
    .into_response()
}

fn model_ready(st: &AppState, model: &str, version: Option<u64>) -> Response {
    match pick_version(&st.server, model, version).and_then(|v| {
        st.server
            .get(model, Some(v))
            .map_err(|e| ApiError::from(&e))
    }) {
        Ok(b) if b.is_ready() => StatusCode::OK.into_response(),
        Ok(_) => error_response(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("model '{model}' is not ready"),
        ),
        Err(r) => r.into_response(),
    }
}

async fn infer(
    st: &AppState,
    model: &str,
    version: Option<u64>,
    headers: &HeaderMap,
    body: Bytes,
) -> Response {
    let v = match pick_version(&st.server, model, version) {
        Ok(v) => v,
        Err(r) => return r.into_response(),
    };
    let header_length = headers
        .get(HEADER_LENGTH)
        .map(|h| h.to_str().unwrap_or("?").to_owned());
    // Small bodies parse in microseconds; large ones go to a blocking thread so that the
    // executor keeps answering (health checks included).
    let decoded = if body.len() <= BLOCKING_DECODE_BYTES {
        codec::decode_request(body, header_length.as_deref())
    } else {
        let blocking = tokio::task::spawn_blocking(move || {
            codec::decode_request(body, header_length.as_deref())
        });
        match blocking.await {
            Ok(d) => d,
            Err(e) => return error_response(StatusCode::INTERNAL_SERVER_ERROR, e),
        }
    };
    let request = match decoded {
        Ok(r) => r,
        Err(e) => return error_response(StatusCode::BAD_REQUEST, e),
    };
    let signature: Signature = match st.server.get(model, Some(v)) {
        Ok(b) => b.signature().clone(),
        Err(e) => return runtime_error(&e),
    };
    if let Some((unknown, _)) = request
        .outputs
        .iter()
        .find(|(name, _)| !signature.outputs.iter().any(|o| &o.name == name))
    {
        return error_response(
            StatusCode::BAD_REQUEST,
            format!("model '{model}' has no output '{unknown}'"),
        );
    }
    let outputs = match st.server.infer(model, Some(v), request.inputs).await {
        Ok(o) => o,
        Err(e) => return runtime_error(&e),
    };
    let (selected, binary): (Vec<_>, Vec<bool>) = if request.outputs.is_empty() {
        let n = outputs.len();
        (outputs, vec![request.binary_default; n])
    } else {
        let mut chosen = Vec::with_capacity(request.outputs.len());
        let mut flags = Vec::with_capacity(request.outputs.len());
        for (name, bin) in &request.outputs {
            if let Some(t) = outputs.iter().find(|t| t.name() == name) {
                chosen.push(t.clone());
                flags.push(*bin);
            }
        }
        (chosen, flags)
    };
    match codec::encode_response(model, v, request.id.as_deref(), &selected, &binary) {
        Ok(encoded) => {
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
            response
        }
        Err(e) => error_response(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("cannot encode the response: {e}"),
        ),
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
        Ok(body) => infer(&st, &path.model, version, &headers, body).await,
        Err(r) => r,
    }
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

fn config(st: &AppState, model: &str, version: Option<u64>) -> Response {
    let v = match pick_version(&st.server, model, version) {
        Ok(v) => v,
        Err(r) => return r.into_response(),
    };
    let batcher = match st.server.get(model, Some(v)) {
        Ok(b) => b,
        Err(e) => return runtime_error(&e),
    };
    let max_batch = batcher.max_batch_size();
    // With batching, Triton's dims leave out the batch dimension.
    let tensors = |specs: &[TensorSpec]| -> Vec<Value> {
        specs
            .iter()
            .map(|s| {
                let dims: Vec<i64> = s
                    .shape
                    .iter()
                    .flatten()
                    .skip(usize::from(max_batch > 0))
                    .map(|d| d.to_i64())
                    .collect();
                json!({ "name": s.name, "data_type": triton_type(s.dtype), "dims": dims })
            })
            .collect()
    };
    let sig = batcher.signature();
    axum::Json(json!({
        "name": model,
        "platform": st.server.platform(model, v).unwrap_or_default(),
        "max_batch_size": max_batch,
        "input": tensors(&sig.inputs),
        "output": tensors(&sig.outputs),
        "version_policy": { "specific": { "versions": [v] } },
        "instance_group": [{ "count": batcher.instances(), "kind": if batcher.device().is_gpu() { "KIND_GPU" } else { "KIND_CPU" } }],
        "dynamic_batching": {},
    }))
    .into_response()
}

fn duration_json(count: u64, d: std::time::Duration) -> Value {
    json!({ "count": count, "ns": u64::try_from(d.as_nanos()).unwrap_or(u64::MAX) })
}

fn model_stats_json(server: &ModelServer, model: &str, v: u64) -> Option<Value> {
    let s = server.stats(model, Some(v)).ok()?;
    let success = s.request_success;
    Some(json!({
        "name": model,
        "version": v.to_string(),
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
            "compute_infer": { "count": count },
        })).collect::<Vec<_>>(),
    }))
}

async fn all_stats(State(st): State<Shared>) -> Response {
    let stats: Vec<Value> = st
        .server
        .models()
        .iter()
        .flat_map(|(name, versions)| {
            versions
                .iter()
                .filter_map(|v| model_stats_json(&st.server, name, *v))
        })
        .collect();
    axum::Json(json!({ "model_stats": stats })).into_response()
}

fn stats(st: &AppState, model: &str, version: Option<u64>) -> Response {
    let versions: Vec<u64> = match version {
        Some(v) => match pick_version(&st.server, model, Some(v)) {
            Ok(v) => vec![v],
            Err(r) => return r.into_response(),
        },
        None => match st.server.models().get(model) {
            Some(vs) => vs.clone(),
            None => {
                return runtime_error(&Error::ModelNotFound {
                    name: model.to_owned(),
                    version: None,
                });
            }
        },
    };
    let stats: Vec<Value> = versions
        .iter()
        .filter_map(|v| model_stats_json(&st.server, model, *v))
        .collect();
    axum::Json(json!({ "model_stats": stats })).into_response()
}

async fn repository_index(State(st): State<Shared>) -> Response {
    let mut index: Vec<Value> = st
        .server
        .models()
        .iter()
        .flat_map(|(name, versions)| {
            versions
                .iter()
                .map(move |v| json!({ "name": name, "version": v.to_string(), "state": "READY" }))
        })
        .collect();
    // Models in the repository directory that are not loaded, as Triton lists them; the
    // directory is read and each entry's format detected on a blocking thread.
    if let Some(dir) = st.config.repository.clone() {
        let loaded = st.server.models();
        let names = tokio::task::spawn_blocking(move || {
            let mut names: Vec<String> = std::fs::read_dir(&dir)
                .into_iter()
                .flatten()
                .flatten()
                .filter_map(|e| {
                    let file = e.file_name().to_string_lossy().into_owned();
                    let name = file.split('.').next()?.to_owned();
                    let fresh = !file.starts_with('.') && !loaded.contains_key(&name);
                    (fresh && mlops_core::detect(&e.path()).is_ok()).then_some(name)
                })
                .collect();
            names.sort();
            names.dedup();
            names
        })
        .await
        .unwrap_or_default();
        index.extend(
            names
                .into_iter()
                .map(|name| json!({ "name": name, "state": "UNAVAILABLE" })),
        );
    }
    axum::Json(Value::Array(index)).into_response()
}

async fn repository_load(State(st): State<Shared>, Path(model): Path<String>) -> Response {
    let Some(dir) = st.config.repository.clone() else {
        return error_response(
            StatusCode::BAD_REQUEST,
            "this server has no model repository to load from",
        );
    };
    let server = st.server.clone();
    let spec = st.config.load_spec.clone();
    // Loading reads and hashes files and builds sessions: off the executor.
    let loaded =
        tokio::task::spawn_blocking(move || server.load_from_repository(&dir, &model, &spec)).await;
    match loaded {
        Ok(Ok(_)) => StatusCode::OK.into_response(),
        Ok(Err(e)) => runtime_error(&e),
        Err(e) => error_response(StatusCode::INTERNAL_SERVER_ERROR, e),
    }
}

async fn repository_unload(State(st): State<Shared>, Path(model): Path<String>) -> Response {
    if st.config.repository.is_none() {
        return error_response(
            StatusCode::BAD_REQUEST,
            "model control is disabled: this server has no model repository",
        );
    }
    match st.server.unload(&model, None) {
        Ok(()) => StatusCode::OK.into_response(),
        Err(e) => runtime_error(&e),
    }
}

async fn render_metrics(State(st): State<Shared>) -> Response {
    // Reads /proc and walks every model's statistics: off the executor.
    let server = st.server.clone();
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
