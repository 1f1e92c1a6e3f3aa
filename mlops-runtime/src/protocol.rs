//! The Open Inference Protocol (KServe V2, with Triton's extensions) apart from any wire
//! format: the questions a client asks, the answers a [`ModelServer`] gives, and the
//! [`Status`] of a refusal.
//!
//! Both front ends, `http` and `grpc`, hold one [`Protocol`] and only translate: a JSON
//! body or a protobuf message becomes a call here, and its answer goes back in the
//! front end's encoding. So both servers report the same metadata, configuration,
//! statistics, repository index and errors.
//!
//! The repository extension (index, load, unload) asks a [`Repository`]:
//! [`DirectoryRepository`] loads from a directory of model files, as Triton's
//! `--model-repository` does; an application implements the trait to load from anywhere
//! else (a model registry, by alias).

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use mlops_core::{DataType, Tensor, TensorSpec};

use crate::error::{Code, Error};
use crate::server::{ModelServer, ModelSpec};
use crate::stats::StatsSnapshot;

/// A refusal: its kind and what to tell the client.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct Status {
    /// Its kind, which fixes the HTTP status and the gRPC code.
    pub code: Code,
    /// What went wrong, for people.
    pub message: String,
}

impl Status {
    /// A status of `code`.
    pub fn new(code: Code, message: impl Into<String>) -> Self {
        Status {
            code,
            message: message.into(),
        }
    }

    /// A request at fault.
    pub fn invalid(message: impl Into<String>) -> Self {
        Status::new(Code::InvalidArgument, message)
    }
}

impl From<Error> for Status {
    fn from(e: Error) -> Self {
        Status::from(&e)
    }
}

impl From<&Error> for Status {
    fn from(e: &Error) -> Self {
        Status::new(e.code(), e.to_string())
    }
}

/// What a server says of itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerMetadata {
    /// The server's name.
    pub name: String,
    /// Its version (this crate's).
    pub version: String,
    /// The protocol extensions it answers.
    pub extensions: Vec<&'static str>,
}

/// A tensor as model metadata describes it: `-1` for a dimension of any size.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TensorMetadata {
    /// The tensor's name.
    pub name: String,
    /// Its element type.
    pub datatype: DataType,
    /// Its shape, `-1` where any size goes.
    pub shape: Vec<i64>,
}

impl TensorMetadata {
    fn of(spec: &TensorSpec) -> Self {
        TensorMetadata {
            name: spec.name.clone(),
            datatype: spec.dtype,
            shape: spec.shape.iter().flatten().map(|d| d.to_i64()).collect(),
        }
    }
}

/// A model's metadata.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModelMetadata {
    /// The model's name.
    pub name: String,
    /// Every version served, ascending.
    pub versions: Vec<u64>,
    /// What serves it (`onnxruntime_onnx`, …).
    pub platform: String,
    /// Its inputs.
    pub inputs: Vec<TensorMetadata>,
    /// Its outputs.
    pub outputs: Vec<TensorMetadata>,
}

/// Where a model's instances run, in Triton's terms.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InstanceKind {
    /// On CPU (`KIND_CPU`).
    Cpu,
    /// On a GPU (`KIND_GPU`).
    Gpu,
}

/// The dynamic batcher's settings, as Triton's `dynamic_batching` reports them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DynamicBatching {
    /// Batch sizes the batcher prefers to form.
    pub preferred_batch_sizes: Vec<usize>,
    /// How long a request may wait for others to batch with.
    pub max_queue_delay: Duration,
}

/// Triton's model configuration: what perf_analyzer and Model Analyzer read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModelConfig {
    /// The model's name.
    pub name: String,
    /// What serves it.
    pub platform: String,
    /// The largest batch (`0`: the model takes no batch dimension).
    pub max_batch_size: usize,
    /// Its inputs; with batching, `dims` leave out the batch dimension.
    pub inputs: Vec<TensorMetadata>,
    /// Its outputs, likewise.
    pub outputs: Vec<TensorMetadata>,
    /// The version this configuration is of.
    pub version: u64,
    /// Instances serving it.
    pub instance_count: usize,
    /// Where they run.
    pub instance_kind: InstanceKind,
    /// The batcher's settings, when it batches.
    pub dynamic_batching: Option<DynamicBatching>,
}

/// One model version's statistics.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModelStatistics {
    /// The model's name.
    pub name: String,
    /// The version.
    pub version: u64,
    /// Its counters and durations.
    pub stats: StatsSnapshot,
}

/// A model's state in the repository index.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ModelState {
    /// Loaded and serving.
    Ready,
    /// In the repository, not loaded.
    Unavailable,
}

impl ModelState {
    /// The protocol's word for it.
    pub fn as_str(self) -> &'static str {
        match self {
            ModelState::Ready => "READY",
            ModelState::Unavailable => "UNAVAILABLE",
        }
    }
}

/// One entry of the repository index.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IndexEntry {
    /// The name a load asks for.
    pub name: String,
    /// The version, where known before loading.
    pub version: Option<u64>,
    /// Loaded or not.
    pub state: ModelState,
    /// Why it is not ready, if known.
    pub reason: String,
}

/// An inference request, decoded.
#[derive(Debug)]
pub struct InferRequest {
    /// The model.
    pub model: String,
    /// Its version; `None`: the latest served.
    pub version: Option<u64>,
    /// The client's id for the request, echoed back.
    pub id: Option<String>,
    /// The inputs.
    pub inputs: Vec<Tensor>,
    /// The outputs wanted, in order; empty: all of them, in the model's order.
    pub outputs: Vec<String>,
}

/// An inference answer, before encoding.
#[derive(Debug)]
pub struct InferResponse {
    /// The model.
    pub model: String,
    /// The version that answered.
    pub version: u64,
    /// The request's id.
    pub id: Option<String>,
    /// The outputs, in the order asked for.
    pub outputs: Vec<Tensor>,
}

/// Where the repository extension finds models to load.
#[async_trait::async_trait]
pub trait Repository: Send + Sync + std::fmt::Debug + 'static {
    /// The models it can load, by the names a load asks for (loaded ones included or
    /// not: the index marks those loaded as ready).
    async fn list(&self) -> Result<Vec<IndexEntry>, Status>;

    /// Loads `name` into `server`; returns the model names and versions now served.
    async fn load(
        &self,
        server: &Arc<ModelServer>,
        name: &str,
    ) -> Result<Vec<(String, u64)>, Status>;

    /// Stops serving what `name` names. By default: every version of the model `name`.
    async fn unload(&self, server: &Arc<ModelServer>, name: &str) -> Result<(), Status> {
        server.unload(name, None).map_err(Status::from)
    }
}

/// A directory of models, as Triton's `--model-repository`: `<dir>/<name>` (a model
/// directory, or `<name>/<version>/` folders) or files `<dir>/<name>.*`.
#[derive(Clone, Debug)]
pub struct DirectoryRepository {
    dir: PathBuf,
    spec: ModelSpec,
}

impl DirectoryRepository {
    /// Models under `dir`, served with `spec` once loaded.
    pub fn new(dir: impl Into<PathBuf>, spec: ModelSpec) -> Self {
        DirectoryRepository {
            dir: dir.into(),
            spec,
        }
    }

    /// The directory.
    pub fn dir(&self) -> &std::path::Path {
        &self.dir
    }
}

#[async_trait::async_trait]
impl Repository for DirectoryRepository {
    async fn list(&self) -> Result<Vec<IndexEntry>, Status> {
        let dir = self.dir.clone();
        // Reads the directory and detects each entry's format: off the executor.
        let names = tokio::task::spawn_blocking(move || {
            let mut names: Vec<String> = std::fs::read_dir(&dir)
                .into_iter()
                .flatten()
                .flatten()
                .filter_map(|e| {
                    let file = e.file_name().to_string_lossy().into_owned();
                    if file.starts_with('.') {
                        return None;
                    }
                    let name = file.split('.').next()?.to_owned();
                    mlops_core::detect(&e.path()).is_ok().then_some(name)
                })
                .collect();
            names.sort();
            names.dedup();
            names
        })
        .await
        .map_err(|e| Status::new(Code::Internal, e.to_string()))?;
        Ok(names
            .into_iter()
            .map(|name| IndexEntry {
                name,
                version: None,
                state: ModelState::Unavailable,
                reason: String::new(),
            })
            .collect())
    }

    async fn load(
        &self,
        server: &Arc<ModelServer>,
        name: &str,
    ) -> Result<Vec<(String, u64)>, Status> {
        let (server, dir, spec, name) = (
            Arc::clone(server),
            self.dir.clone(),
            self.spec.clone(),
            name.to_owned(),
        );
        // Reads and hashes files and builds sessions: off the executor.
        tokio::task::spawn_blocking(move || server.load_from_repository(&dir, &name, &spec))
            .await
            .map_err(|e| Status::new(Code::Internal, e.to_string()))?
            .map_err(Status::from)
    }
}

/// The protocol over one [`ModelServer`]: what both front ends answer with.
#[derive(Clone)]
pub struct Protocol {
    server: Arc<ModelServer>,
    repository: Option<Arc<dyn Repository>>,
    name: String,
}

impl std::fmt::Debug for Protocol {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Protocol")
            .field("name", &self.name)
            .field("repository", &self.repository)
            .finish_non_exhaustive()
    }
}

/// The extensions every server answers.
const EXTENSIONS: [&str; 3] = ["binary_tensor_data", "statistics", "model_configuration"];

impl Protocol {
    /// The protocol over `server`, named `mlops`, without a repository.
    pub fn new(server: Arc<ModelServer>) -> Self {
        Protocol {
            server,
            repository: None,
            name: "mlops".into(),
        }
    }

    /// Enables the repository extension over `repository`.
    pub fn with_repository(mut self, repository: Arc<dyn Repository>) -> Self {
        self.repository = Some(repository);
        self
    }

    /// Sets the name server metadata reports.
    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// The server answered for.
    pub fn server(&self) -> &Arc<ModelServer> {
        &self.server
    }

    /// The repository, if model control is enabled.
    pub fn repository(&self) -> Option<&Arc<dyn Repository>> {
        self.repository.as_ref()
    }

    /// Whether the server takes requests (false from the start of a shutdown).
    pub fn server_ready(&self) -> bool {
        self.server.is_ready()
    }

    /// The server's name, version and extensions; `model_repository` only with a
    /// repository.
    pub fn server_metadata(&self) -> ServerMetadata {
        let mut extensions = EXTENSIONS.to_vec();
        if self.repository.is_some() {
            extensions.push("model_repository");
        }
        ServerMetadata {
            name: self.name.clone(),
            version: env!("CARGO_PKG_VERSION").into(),
            extensions,
        }
    }

    /// The version a request for `model` at `version` (its latest: `None`) goes to: front
    /// ends ask before decoding a request's tensors, so that a request for a model not
    /// served is a 404 whatever its body.
    pub fn served_version(&self, model: &str, version: Option<u64>) -> Result<u64, Status> {
        Ok(self.server.served_version(model, version)?)
    }

    /// Whether `model` at `version` (its latest: `None`) takes requests; an error when it
    /// is not served at all.
    pub fn model_ready(&self, model: &str, version: Option<u64>) -> Result<bool, Status> {
        let v = self.server.served_version(model, version)?;
        Ok(self.server.get(model, Some(v))?.is_ready())
    }

    /// `model`'s metadata at `version` (its latest: `None`).
    pub fn model_metadata(
        &self,
        model: &str,
        version: Option<u64>,
    ) -> Result<ModelMetadata, Status> {
        let v = self.server.served_version(model, version)?;
        let batcher = self.server.get(model, Some(v))?;
        let sig = batcher.signature();
        Ok(ModelMetadata {
            name: model.to_owned(),
            versions: self.server.models().remove(model).unwrap_or_default(),
            platform: self.server.platform(model, v).unwrap_or_default(),
            inputs: sig.inputs.iter().map(TensorMetadata::of).collect(),
            outputs: sig.outputs.iter().map(TensorMetadata::of).collect(),
        })
    }

    /// Triton's configuration of `model` at `version` (its latest: `None`).
    pub fn model_config(&self, model: &str, version: Option<u64>) -> Result<ModelConfig, Status> {
        let v = self.server.served_version(model, version)?;
        let batcher = self.server.get(model, Some(v))?;
        let max_batch = batcher.max_batch_size();
        // With batching, Triton's dims leave out the batch dimension.
        let dims = |specs: &[TensorSpec]| -> Vec<TensorMetadata> {
            specs
                .iter()
                .map(|s| {
                    let mut t = TensorMetadata::of(s);
                    if max_batch > 0 && !t.shape.is_empty() {
                        t.shape.remove(0);
                    }
                    t
                })
                .collect()
        };
        let sig = batcher.signature();
        let cfg = batcher.config();
        Ok(ModelConfig {
            name: model.to_owned(),
            platform: self.server.platform(model, v).unwrap_or_default(),
            max_batch_size: max_batch,
            inputs: dims(&sig.inputs),
            outputs: dims(&sig.outputs),
            version: v,
            instance_count: batcher.instances(),
            instance_kind: if batcher.device().is_gpu() {
                InstanceKind::Gpu
            } else {
                InstanceKind::Cpu
            },
            dynamic_batching: (max_batch > 0).then(|| DynamicBatching {
                preferred_batch_sizes: cfg.preferred_batch_sizes.clone(),
                max_queue_delay: cfg.max_queue_delay,
            }),
        })
    }

    /// Statistics of every version served (`model`: `None`), of every version of one
    /// model, or of one version.
    pub fn model_statistics(
        &self,
        model: Option<&str>,
        version: Option<u64>,
    ) -> Result<Vec<ModelStatistics>, Status> {
        let models = self.server.models();
        let wanted: Vec<(String, u64)> = match (model, version) {
            (None, _) => models
                .into_iter()
                .flat_map(|(n, vs)| vs.into_iter().map(move |v| (n.clone(), v)))
                .collect(),
            (Some(m), Some(v)) => vec![(m.to_owned(), self.server.served_version(m, Some(v))?)],
            (Some(m), None) => models
                .get(m)
                .ok_or_else(|| {
                    Status::from(Error::ModelNotFound {
                        name: m.to_owned(),
                        version: None,
                    })
                })?
                .iter()
                .map(|v| (m.to_owned(), *v))
                .collect(),
        };
        Ok(wanted
            .into_iter()
            .filter_map(|(name, version)| {
                let stats = self.server.stats(&name, Some(version)).ok()?;
                Some(ModelStatistics {
                    name,
                    version,
                    stats,
                })
            })
            .collect())
    }

    /// The repository index: every version served, ready, then what the repository holds
    /// that is not loaded; `ready_only` leaves the latter out. Without a repository, only
    /// what is served.
    pub async fn repository_index(&self, ready_only: bool) -> Result<Vec<IndexEntry>, Status> {
        let loaded = self.server.models();
        let mut index: Vec<IndexEntry> = loaded
            .iter()
            .flat_map(|(name, versions)| {
                versions.iter().map(move |v| IndexEntry {
                    name: name.clone(),
                    version: Some(*v),
                    state: ModelState::Ready,
                    reason: String::new(),
                })
            })
            .collect();
        if let (Some(repository), false) = (&self.repository, ready_only) {
            // An entry may name a version by alias (`mlp@production`): what it serves is
            // the model `mlp`.
            let served = |e: &IndexEntry| {
                let model = mlops_core::ModelRef::parse(&e.name)
                    .map(|r| r.name)
                    .unwrap_or_else(|_| e.name.clone());
                match e.version {
                    Some(v) => loaded.get(&model).is_some_and(|vs| vs.contains(&v)),
                    None => loaded.contains_key(&model),
                }
            };
            let mut seen: HashSet<(String, Option<u64>)> = HashSet::new();
            for entry in repository.list().await? {
                if served(&entry) || !seen.insert((entry.name.clone(), entry.version)) {
                    continue;
                }
                index.push(IndexEntry {
                    state: ModelState::Unavailable,
                    ..entry
                });
            }
        }
        Ok(index)
    }

    fn repository_or_refuse(&self) -> Result<&Arc<dyn Repository>, Status> {
        self.repository.as_ref().ok_or_else(|| {
            Status::new(
                Code::FailedPrecondition,
                "model control is disabled: this server has no model repository",
            )
        })
    }

    /// Loads `name` from the repository.
    pub async fn load(&self, name: &str) -> Result<Vec<(String, u64)>, Status> {
        let loaded = self.repository_or_refuse()?.load(&self.server, name).await;
        match &loaded {
            Ok(served) => tracing::info!(model = name, ?served, "loaded from the repository"),
            Err(refused) => tracing::info!(model = name, %refused, "load refused"),
        }
        loaded
    }

    /// Unloads what `name` names through the repository.
    pub async fn unload(&self, name: &str) -> Result<(), Status> {
        let unloaded = self
            .repository_or_refuse()?
            .unload(&self.server, name)
            .await;
        match &unloaded {
            Ok(()) => tracing::info!(model = name, "unloaded"),
            Err(refused) => tracing::info!(model = name, %refused, "unload refused"),
        }
        unloaded
    }

    /// Runs one inference: the outputs asked for must be the model's. In a `debug` span
    /// `infer` with the model and version asked for.
    pub async fn infer(&self, request: InferRequest) -> Result<InferResponse, Status> {
        use tracing::Instrument;
        let span = tracing::debug_span!(
            "infer",
            model = %request.model,
            version = ?request.version,
            id = ?request.id
        );
        self.infer_in_span(request).instrument(span).await
    }

    async fn infer_in_span(&self, request: InferRequest) -> Result<InferResponse, Status> {
        let InferRequest {
            model,
            version,
            id,
            inputs,
            outputs: wanted,
        } = request;
        let v = self.server.served_version(&model, version)?;
        if !wanted.is_empty() {
            let batcher = self.server.get(&model, Some(v))?;
            let declared = &batcher.signature().outputs;
            if let Some(unknown) = wanted
                .iter()
                .find(|w| !declared.iter().any(|o| &o.name == *w))
            {
                return Err(Status::invalid(format!(
                    "model '{model}' has no output '{unknown}'"
                )));
            }
        }
        let outputs = self.server.infer(&model, Some(v), inputs).await?;
        let outputs = if wanted.is_empty() {
            outputs
        } else {
            let mut outputs: Vec<Option<Tensor>> = outputs.into_iter().map(Some).collect();
            wanted
                .iter()
                .filter_map(|w| {
                    let slot = outputs
                        .iter_mut()
                        .find(|t| t.as_ref().is_some_and(|t| t.name() == w))?;
                    slot.take()
                })
                .collect()
        };
        Ok(InferResponse {
            model,
            version: v,
            id,
            outputs,
        })
    }
}

/// A model version in a request path or message: empty or absent is the latest.
pub fn parse_version(text: &str) -> Result<Option<u64>, Status> {
    if text.is_empty() {
        return Ok(None);
    }
    match text.parse::<u64>() {
        Ok(v) if v > 0 => Ok(Some(v)),
        _ => Err(Status::invalid(format!(
            "'{text}' is not a model version (1, 2, ...)"
        ))),
    }
}
