//! The multi-model server: many models by name and version, each behind its own batcher.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use mlops_core::{ModelFormat, ModelManifest, Tensor};

use crate::batcher::{Batcher, BatcherConfig};
use crate::error::{Error, Result};
use crate::session::InferenceRuntime;
use crate::stats::StatsSnapshot;

/// How to serve one model.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModelSpec {
    /// The name to serve it under; the manifest's name when `None`.
    pub name: Option<String>,
    /// The version to serve it as.
    pub version: u64,
    /// How many instances (sessions, each on its own thread).
    pub instances: usize,
    /// Queueing and batching.
    pub batcher: BatcherConfig,
}

impl Default for ModelSpec {
    fn default() -> Self {
        ModelSpec {
            name: None,
            version: 1,
            instances: 1,
            batcher: BatcherConfig::default(),
        }
    }
}

impl ModelSpec {
    /// Serves the model under this name.
    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Serves the model as this version.
    pub fn with_version(mut self, version: u64) -> Self {
        self.version = version;
        self
    }

    /// Runs this many instances.
    pub fn with_instances(mut self, instances: usize) -> Self {
        self.instances = instances;
        self
    }

    /// Queues and batches requests this way.
    pub fn with_batcher(mut self, batcher: BatcherConfig) -> Self {
        self.batcher = batcher;
        self
    }
}

type Versions = BTreeMap<u64, Arc<Batcher>>;

/// What [`ModelServer::load_repository`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RepositoryReport {
    /// The models now served, as `(name, version)`.
    pub loaded: Vec<(String, u64)>,
    /// The entries not served, as `(file name, reason)`.
    pub skipped: Vec<(String, String)>,
}

/// Holds models by name and version and routes requests to them.
///
/// Loading a version that is already served replaces it without failing a request:
/// requests already queued or running on the old one finish there, new ones go to the new
/// one. Unloading drains the same way.
#[derive(Default)]
pub struct ModelServer {
    runtimes: HashMap<ModelFormat, Arc<dyn InferenceRuntime>>,
    models: RwLock<BTreeMap<String, Versions>>,
    loaded: RwLock<HashMap<(String, u64), Loaded>>,
    /// Held while a version is loaded or resized: two resizes do not both add, and a
    /// resize never loads one version's files into another's batcher.
    resizing: std::sync::Mutex<()>,
    stopped: std::sync::atomic::AtomicBool,
}

/// Where a served version came from: what new instances of it load.
struct Loaded {
    platform: String,
    format: ModelFormat,
    manifest: Arc<ModelManifest>,
    root: PathBuf,
}

impl ModelServer {
    /// A server with no runtimes and no models.
    pub fn new() -> Self {
        ModelServer::default()
    }

    /// Serves models whose entry has this format with this runtime.
    pub fn with_runtime(mut self, format: ModelFormat, runtime: Arc<dyn InferenceRuntime>) -> Self {
        self.runtimes.insert(format, runtime);
        self
    }

    /// Learns the manifest of a model file or directory and loads it. Reads and hashes
    /// the model's files: call from a blocking thread in async code.
    pub fn load_path(&self, path: &Path, spec: ModelSpec) -> Result<(String, u64)> {
        let manifest = ModelManifest::from_path(path)?;
        // The manifest's paths are relative to the package root (the directory itself, or
        // a file's folder).
        let root = mlops_core::format::package_root(path)?;
        self.load_manifest(&manifest, &root, spec)
    }

    /// Loads a model from its manifest, whose files are under `root`, replacing the same
    /// name and version if it is served.
    pub fn load_manifest(
        &self,
        manifest: &ModelManifest,
        root: &Path,
        spec: ModelSpec,
    ) -> Result<(String, u64)> {
        let name = spec.name.clone().unwrap_or_else(|| manifest.name.clone());
        // Names travel in references (`name/7`) and URLs: hold them to the registry's rules.
        if let Err(e) = mlops_core::validate_model_name(&name) {
            return Err(Error::Load {
                model: name,
                reason: e.to_string(),
                source: None,
            });
        }
        let _one_at_a_time = self.resizing.lock().unwrap_or_else(|p| p.into_inner());
        let Some(runtime) = self.runtimes.get(&manifest.entry.format) else {
            return Err(Error::Load {
                model: name,
                reason: format!(
                    "no runtime serves {} entries; this server has {}",
                    manifest.entry.format,
                    self.runtime_list()
                ),
                source: None,
            });
        };
        let sessions = (0..spec.instances.max(1))
            .map(|_| runtime.load(manifest, root))
            .collect::<Result<Vec<_>>>()?;
        let batcher = Arc::new(Batcher::start(name.clone(), sessions, spec.batcher)?);
        self.loaded
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(
                (name.clone(), spec.version),
                Loaded {
                    platform: platform_of(manifest.entry.format, runtime.name()),
                    format: manifest.entry.format,
                    manifest: Arc::new(manifest.clone()),
                    root: root.to_path_buf(),
                },
            );
        let replaced = self
            .write()
            .entry(name.clone())
            .or_default()
            .insert(spec.version, batcher);
        // Queued and running requests finish on the old version; new ones that still hold
        // it are refused and retried on the replacement (see `infer`); its threads then exit.
        if let Some(old) = replaced {
            old.close();
        }
        Ok((name, spec.version))
    }

    /// Loads every model in a directory: each entry is a model named after it (up to its
    /// first dot), or, in Triton's layout, a folder of numbered version folders
    /// (`<name>/<version>/…`). Entries that are not models, or that no runtime serves, or
    /// that fail to load are reported, not fatal: the rest are served.
    pub fn load_repository(&self, dir: &Path, spec: &ModelSpec) -> Result<RepositoryReport> {
        let mut entries = std::fs::read_dir(dir)
            .and_then(|e| e.collect::<std::io::Result<Vec<_>>>())
            .map_err(|source| {
                Error::InvalidInput(mlops_core::Error::Io {
                    path: dir.to_path_buf(),
                    source,
                })
            })?;
        entries.sort_by_key(|e| e.file_name());
        let mut report = RepositoryReport::default();
        // `mlp.onnx` and `mlp.safetensors` would both be `mlp`: the first one keeps it.
        let mut taken: HashMap<String, String> = HashMap::new();
        for entry in entries {
            let file_name = entry.file_name().to_string_lossy().into_owned();
            if file_name.starts_with('.') {
                continue;
            }
            let name = file_name.split('.').next().unwrap_or(&file_name).to_owned();
            if let Some(first) = taken.get(&name) {
                report.skipped.push((
                    file_name.clone(),
                    format!("its name '{name}' is already taken by {first}"),
                ));
                continue;
            }
            let path = entry.path();
            let mut versions = versions_in(&path);
            if versions.is_empty() {
                versions.push((spec.version, path));
            }
            for (version, path) in versions {
                let model_spec = spec.clone().with_name(name.clone()).with_version(version);
                match self.load_path(&path, model_spec) {
                    Ok(id) => {
                        taken.insert(name.clone(), file_name.clone());
                        report.loaded.push(id);
                    }
                    Err(e) => report.skipped.push((file_name.clone(), e.to_string())),
                }
            }
        }
        Ok(report)
    }

    /// Loads the model `name` from a repository directory, as the repository extension's
    /// load does: `<dir>/<name>` (a model directory, or Triton's `<name>/<version>/`
    /// layout), else the files `<dir>/<name>.*` in name order until one loads. Reads and
    /// hashes files: call from a blocking thread in async code.
    pub fn load_from_repository(
        &self,
        dir: &Path,
        name: &str,
        spec: &ModelSpec,
    ) -> Result<Vec<(String, u64)>> {
        mlops_core::validate_model_name(name)?;
        let mut candidates: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(|source| {
                Error::InvalidInput(mlops_core::Error::Io {
                    path: dir.to_path_buf(),
                    source,
                })
            })?
            .flatten()
            .filter(|e| {
                let f = e.file_name().to_string_lossy().into_owned();
                f == name || f.split('.').next() == Some(name)
            })
            .map(|e| e.path())
            .collect();
        // The directory of that name first, then files by name.
        candidates.sort_by_key(|p| (!p.is_dir(), p.clone()));
        let mut last = None;
        for path in candidates {
            let versioned = versions_in(&path);
            let attempts: Vec<(u64, PathBuf)> = if versioned.is_empty() {
                vec![(spec.version, path)]
            } else {
                versioned
            };
            let mut loaded = Vec::new();
            for (version, p) in attempts {
                let s = spec.clone().with_name(name).with_version(version);
                match self.load_path(&p, s) {
                    Ok(id) => loaded.push(id),
                    Err(e) => last = Some(e),
                }
            }
            if !loaded.is_empty() {
                return Ok(loaded);
            }
        }
        Err(last.unwrap_or_else(|| Error::ModelNotFound {
            name: name.to_owned(),
            version: None,
        }))
    }

    /// Stops serving a version (or every version), letting queued requests finish.
    pub fn unload(&self, name: &str, version: Option<u64>) -> Result<()> {
        let mut models = self.write();
        let Some(versions) = models.get_mut(name) else {
            return Err(Error::ModelNotFound {
                name: name.to_owned(),
                version,
            });
        };
        match version {
            Some(v) => {
                let Some(removed) = versions.remove(&v) else {
                    return Err(Error::ModelNotFound {
                        name: name.to_owned(),
                        version,
                    });
                };
                removed.close();
                if versions.is_empty() {
                    models.remove(name);
                }
                self.loaded
                    .write()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(&(name.to_owned(), v));
            }
            None => {
                for removed in models
                    .remove(name)
                    .into_iter()
                    .flat_map(BTreeMap::into_values)
                {
                    removed.close();
                }
                self.loaded
                    .write()
                    .unwrap_or_else(|p| p.into_inner())
                    .retain(|(n, _), _| n != name);
            }
        }
        Ok(())
    }

    /// The batcher serving `name` at `version`, or its latest version.
    pub fn get(&self, name: &str, version: Option<u64>) -> Result<Arc<Batcher>> {
        let models = self.read();
        let found = models.get(name).and_then(|versions| match version {
            Some(v) => versions.get(&v),
            None => versions.values().next_back(),
        });
        found.cloned().ok_or_else(|| Error::ModelNotFound {
            name: name.to_owned(),
            version,
        })
    }

    /// The version a request for `name` at `version` (or its latest) goes to, if served.
    pub fn served_version(&self, name: &str, version: Option<u64>) -> Result<u64> {
        let models = self.read();
        let found = models.get(name).and_then(|versions| match version {
            Some(v) => versions.contains_key(&v).then_some(v),
            None => versions.keys().next_back().copied(),
        });
        found.ok_or_else(|| Error::ModelNotFound {
            name: name.to_owned(),
            version,
        })
    }

    /// Resolves `name` (its latest version), `name/7` or `name/latest`. Aliases
    /// (`name@production`) belong to the registry: resolve them there, then ask for the
    /// version.
    pub fn resolve(&self, reference: &str) -> Result<Arc<Batcher>> {
        let parsed = mlops_core::ModelRef::parse(reference)?;
        match parsed.selector {
            mlops_core::VersionSelector::Latest => self.get(&parsed.name, None),
            mlops_core::VersionSelector::Version(v) => self.get(&parsed.name, Some(v)),
            mlops_core::VersionSelector::Alias(alias) => {
                Err(Error::InvalidInput(mlops_core::Error::InvalidReference {
                    reference: reference.to_owned(),
                    reason: format!(
                        "'{alias}' is an alias: the registry resolves aliases to versions; \
                         this server serves versions (`{}/7`)",
                        parsed.name
                    ),
                }))
            }
        }
    }

    /// Runs one request on `name` at `version` (or its latest). A request that meets a
    /// version just replaced is sent to its replacement.
    pub async fn infer(
        &self,
        name: &str,
        version: Option<u64>,
        inputs: Vec<Tensor>,
    ) -> Result<Vec<Tensor>> {
        let batcher = self.get(name, version)?;
        match batcher.infer(inputs.clone()).await {
            Err(Error::ShuttingDown { .. }) => {
                // Unloaded or shutting down for good: say so, not "not found".
                let Ok(current) = self.get(name, version) else {
                    return Err(Error::ShuttingDown {
                        model: name.to_owned(),
                    });
                };
                if Arc::ptr_eq(&current, &batcher) {
                    return Err(Error::ShuttingDown {
                        model: name.to_owned(),
                    });
                }
                current.infer(inputs).await
            }
            answer => answer,
        }
    }

    /// The platform serving `name` at `version`, in Triton's words where it has one
    /// (`onnxruntime_onnx`), else `<runtime>_<format>`.
    pub fn platform(&self, name: &str, version: u64) -> Option<String> {
        self.loaded
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&(name.to_owned(), version))
            .map(|l| l.platform.clone())
    }

    /// The manifest `name` at `version` was loaded from, and the root its paths are
    /// relative to.
    pub fn source(&self, name: &str, version: u64) -> Option<(ModelManifest, PathBuf)> {
        self.loaded
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&(name.to_owned(), version))
            .map(|l| ((*l.manifest).clone(), l.root.clone()))
    }

    /// Serves `name` at `version` (or its latest) with `instances` instances: adds or
    /// retires the difference on its running batcher, so nothing queued or running is
    /// dropped and its statistics go on. New instances load from the files the version was
    /// loaded from; retired ones finish their batch first. Returns the instances now
    /// serving. Loads sessions: call from a blocking thread in async code. Loads and
    /// resizes take turns, across all models.
    pub fn set_instances(
        &self,
        name: &str,
        version: Option<u64>,
        instances: usize,
    ) -> Result<usize> {
        let _one_at_a_time = self.resizing.lock().unwrap_or_else(|p| p.into_inner());
        let version = self.served_version(name, version)?;
        let batcher = self.get(name, Some(version))?;
        if instances == 0 {
            return Err(Error::Resize {
                model: name.to_owned(),
                reason: "at least one instance must serve it (unload it to stop serving)"
                    .to_owned(),
            });
        }
        let now = batcher.instances();
        if instances < now {
            return batcher.remove_instances(now - instances);
        }
        if instances == now {
            return Ok(now);
        }
        let (format, manifest, root) = {
            let loaded = self.loaded.read().unwrap_or_else(|p| p.into_inner());
            let Some(l) = loaded.get(&(name.to_owned(), version)) else {
                return Err(Error::ModelNotFound {
                    name: name.to_owned(),
                    version: Some(version),
                });
            };
            (l.format, Arc::clone(&l.manifest), l.root.clone())
        };
        let Some(runtime) = self.runtimes.get(&format) else {
            return Err(Error::Resize {
                model: name.to_owned(),
                reason: format!("no runtime serves {format} entries any more"),
            });
        };
        let sessions = (now..instances)
            .map(|_| runtime.load(&manifest, &root))
            .collect::<Result<Vec<_>>>()?;
        batcher.add_instances(sessions)
    }

    /// Marks the server not ready (readiness probes fail, so load balancers stop sending)
    /// while it keeps serving what reaches it: the first step of a graceful stop.
    pub fn begin_shutdown(&self) {
        self.stopped
            .store(true, std::sync::atomic::Ordering::Release);
    }

    /// Whether the server takes requests: true until [`begin_shutdown`](Self::begin_shutdown)
    /// or [`shutdown`](Self::shutdown).
    pub fn is_ready(&self) -> bool {
        !self.stopped.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Every served model and its versions, by name.
    pub fn models(&self) -> BTreeMap<String, Vec<u64>> {
        self.read()
            .iter()
            .map(|(name, versions)| (name.clone(), versions.keys().copied().collect()))
            .collect()
    }

    /// The statistics of `name` at `version` (or its latest).
    pub fn stats(&self, name: &str, version: Option<u64>) -> Result<StatsSnapshot> {
        self.get(name, version).map(|b| b.stats())
    }

    /// Unloads everything and waits for every instance thread to finish its queue.
    pub fn shutdown(&self) {
        self.stopped
            .store(true, std::sync::atomic::Ordering::Release);
        let models = std::mem::take(&mut *self.write());
        for batcher in models.into_values().flat_map(BTreeMap::into_values) {
            batcher.shutdown();
        }
    }

    fn runtime_list(&self) -> String {
        let mut names: Vec<String> = self
            .runtimes
            .iter()
            .map(|(format, runtime)| format!("{} for {format}", runtime.name()))
            .collect();
        names.sort();
        if names.is_empty() {
            "none".to_owned()
        } else {
            names.join(", ")
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, Versions>> {
        self.models.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, BTreeMap<String, Versions>> {
        self.models.write().unwrap_or_else(|p| p.into_inner())
    }
}

fn platform_of(format: ModelFormat, runtime: &str) -> String {
    match format {
        ModelFormat::Onnx => "onnxruntime_onnx".to_owned(),
        ModelFormat::TensorrtPlan => "tensorrt_plan".to_owned(),
        ModelFormat::TfSavedModel => "tensorflow_savedmodel".to_owned(),
        ModelFormat::TorchScript => "pytorch_libtorch".to_owned(),
        other => format!("{runtime}_{other}"),
    }
}

/// Triton's `<name>/<version>/` folders under `path`, by version; empty if none.
fn versions_in(path: &Path) -> Vec<(u64, PathBuf)> {
    let mut versions: Vec<(u64, PathBuf)> = std::fs::read_dir(path)
        .map(|children| {
            children
                .filter_map(|c| {
                    let c = c.ok()?;
                    Some((c.file_name().to_str()?.parse::<u64>().ok()?, c.path()))
                })
                .collect()
        })
        .unwrap_or_default();
    versions.sort();
    versions
}
