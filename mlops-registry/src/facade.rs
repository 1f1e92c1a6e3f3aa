//! [`Registry`]: metadata, artifacts and endpoints together, and the workflows that span
//! them (register, download, promote, find endpoints).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use mlops_core::{FileEntry, Infer, ModelManifest, ModelRef, VersionSelector};
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

use crate::artifact::{ArtifactStore, OpendalStore, check_store_path, version_prefix};
use crate::endpoint::{Endpoint, EndpointDirectory, Lease, LiveEndpoint};
use crate::error::{Error, Result};
use crate::memory::InMemoryRegistry;
use crate::model::{Change, Expect, ModelVersion, NewVersion, VersionStatus};
use crate::registry::{ModelRegistry, ModelRegistryExt, VersionUpdate};
use crate::sql::sqlite::SqliteRegistry;
use crate::validation::{ValidationCase, ValidationPolicy, ValidationReport, validate};

/// The registry as applications use it: a [`ModelRegistry`] for metadata, an
/// [`ArtifactStore`] for files and an [`EndpointDirectory`], with the workflows that span
/// them. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Registry {
    models: Arc<dyn ModelRegistry>,
    artifacts: Arc<dyn ArtifactStore>,
    endpoints: Arc<dyn EndpointDirectory>,
}

/// A version's files, downloaded and verified.
#[derive(Clone, Debug, PartialEq)]
pub struct Downloaded {
    /// The version.
    pub version: ModelVersion,
    /// The directory holding its files.
    pub root: PathBuf,
    /// The model's entry file (or directory) under `root`: what a runtime opens.
    pub entry: PathBuf,
}

/// A request to move `alias` to a candidate version if it passes validation against the
/// version the alias points at now.
#[derive(Clone, Copy)]
#[allow(missing_debug_implementations)] // holds sessions, which need not be Debug
pub struct Promotion<'a> {
    /// The registered model.
    pub model: &'a str,
    /// The alias to move, e.g. `production`.
    pub alias: &'a str,
    /// The candidate version, and a session running it.
    pub candidate: (u64, &'a dyn Infer),
    /// The version the alias points at now, and a session running it; `None` if the alias
    /// does not exist yet. If the alias has moved since, the promotion is a
    /// [`Error::Conflict`].
    pub baseline: Option<(u64, &'a dyn Infer)>,
    /// The validation set.
    pub cases: &'a [ValidationCase],
    /// What the candidate must satisfy.
    pub policy: &'a ValidationPolicy,
}

/// What [`Registry::promote_if_valid`] did.
#[derive(Clone, Debug, PartialEq)]
pub struct PromotionOutcome {
    /// The validation report (also stored on the candidate version).
    pub report: ValidationReport,
    /// Whether the alias moved.
    pub promoted: bool,
}

impl Registry {
    /// Puts three backends together.
    pub fn new(
        models: Arc<dyn ModelRegistry>,
        artifacts: Arc<dyn ArtifactStore>,
        endpoints: Arc<dyn EndpointDirectory>,
    ) -> Self {
        Registry {
            models,
            artifacts,
            endpoints,
        }
    }

    /// The embedded registry in a directory (created if missing): metadata in
    /// `<dir>/registry.db` (SQLite), artifacts under `<dir>/artifacts/`.
    pub async fn open(dir: impl AsRef<Path>) -> Result<Self> {
        let dir = dir.as_ref().to_path_buf();
        // Directory creation and the store's temp-file sweep are file system calls: off the
        // executor.
        let store_dir = dir.clone();
        let artifacts = tokio::task::spawn_blocking(move || {
            std::fs::create_dir_all(&store_dir).map_err(|e| Error::io(store_dir.display(), e))?;
            OpendalStore::local(store_dir.join("artifacts"))
        })
        .await
        .map_err(|e| Error::io(dir.display(), std::io::Error::other(e)))??;
        let db = Arc::new(SqliteRegistry::open(dir.join("registry.db")).await?);
        Ok(Self::new(db.clone(), Arc::new(artifacts), db))
    }

    /// A registry kept in the MLflow tracking server at `uri` (`http://host:5000`): models,
    /// versions and aliases in its model registry, files in its artifact proxy, credentials
    /// from `MLFLOW_TRACKING_TOKEN` or `MLFLOW_TRACKING_USERNAME`/`PASSWORD`. MLflow has
    /// no place for live endpoints: the endpoint directory is this process's own, in
    /// memory (use [`Registry::new`] to pair MLflow with a shared one). Feature `mlflow`.
    #[cfg(feature = "mlflow")]
    pub fn mlflow(uri: &str) -> Result<Self> {
        let models = crate::mlflow::MlflowRegistry::new(uri)?;
        let artifacts = Arc::new(models.artifacts());
        Ok(Self::new(
            Arc::new(models),
            artifacts,
            Arc::new(crate::memory::InMemoryRegistry::new()),
        ))
    }

    /// A registry in memory, artifacts included.
    pub fn in_memory() -> Result<Self> {
        let db = Arc::new(InMemoryRegistry::new());
        Ok(Self::new(db.clone(), Arc::new(OpendalStore::memory()?), db))
    }

    /// A registry shared by many machines: metadata in PostgreSQL at `database_url`,
    /// artifacts at `artifacts_uri` (see [`OpendalStore::from_uri`]).
    #[cfg(feature = "postgres")]
    pub async fn connect_postgres(database_url: &str, artifacts_uri: &str) -> Result<Self> {
        let db = Arc::new(crate::sql::postgres::PostgresRegistry::connect(database_url).await?);
        let artifacts = Arc::new(OpendalStore::from_uri(artifacts_uri)?);
        Ok(Self::new(db.clone(), artifacts, db))
    }

    /// The metadata backend.
    pub fn models(&self) -> &Arc<dyn ModelRegistry> {
        &self.models
    }

    /// The artifact store.
    pub fn artifacts(&self) -> &Arc<dyn ArtifactStore> {
        &self.artifacts
    }

    /// The endpoint directory.
    pub fn endpoints(&self) -> &Arc<dyn EndpointDirectory> {
        &self.endpoints
    }

    /// Resolves `name`, `name/7`, `name@alias` or `models:/...`.
    pub async fn resolve(&self, reference: &str) -> Result<ModelVersion> {
        self.models.resolve_str(reference).await
    }

    /// Registers the model at `path` (a file, or a directory such as an MLflow model or a
    /// SavedModel) as the next version of `name`:
    ///
    /// 1. learns its manifest (format, signature, files);
    /// 2. creates the version, PENDING;
    /// 3. streams every file into the store, hashing as it goes;
    /// 4. records the digests and marks the version READY.
    ///
    /// If anything fails, the version is marked FAILED with the reason and its stored
    /// files are deleted. A process killed half-way leaves the version PENDING, never
    /// READY: a READY version always has every file, complete and as recorded.
    pub async fn register(
        &self,
        name: &str,
        path: &Path,
        version: NewVersion,
        change: &Change,
    ) -> Result<ModelVersion> {
        crate::model::check_name(name)?;
        let owned = path.to_path_buf();
        let (manifest, root) = tokio::task::spawn_blocking(move || {
            let manifest = ModelManifest::describe(&owned)?;
            let root = mlops_core::format::package_root(&owned)?;
            Ok::<_, mlops_core::Error>((manifest, root))
        })
        .await
        .map_err(|e| Error::io(path.display(), std::io::Error::other(e)))??;
        let manifest = manifest.with_name(name);
        let source = version
            .source
            .clone()
            .unwrap_or_else(|| path.display().to_string());
        let new = version.with_manifest(manifest.clone()).with_source(source);
        self.register_files(name, &root, manifest, new, change)
            .await
    }

    /// Registers files under `root` described by `manifest` (its `files`, relative to
    /// `root`); digests recorded in the manifest are checked, empty ones filled in. For
    /// callers that build the manifest themselves.
    pub async fn register_files(
        &self,
        name: &str,
        root: &Path,
        manifest: ModelManifest,
        version: NewVersion,
        change: &Change,
    ) -> Result<ModelVersion> {
        for f in &manifest.files {
            check_store_path(&f.path)?;
        }
        if !manifest.entry.path.is_empty() {
            check_store_path(&manifest.entry.path)?;
        }
        let new = NewVersion {
            ready: false,
            ..version.with_manifest(manifest.clone())
        };
        let created = self.models.create_version(name, new, change).await?;
        let prefix = self.folder_of(&created);
        let stored = async {
            let files = self.store_files(root, &prefix, &manifest).await?;
            let mut manifest = manifest;
            manifest.files = files;
            let update = VersionUpdate {
                manifest: Some(manifest),
                ..VersionUpdate::default()
            };
            self.models
                .update_version(name, created.version, &update)
                .await?;
            self.models
                .set_version_status(name, created.version, VersionStatus::Ready, None, change)
                .await
        }
        .await;
        match stored {
            Ok(ready) => Ok(ready),
            Err(e) => {
                let _ = self.artifacts.delete_all(&prefix).await;
                let _ = self
                    .models
                    .set_version_status(
                        name,
                        created.version,
                        VersionStatus::Failed,
                        Some(&e.to_string()),
                        change,
                    )
                    .await;
                Err(e)
            }
        }
    }

    async fn store_files(
        &self,
        root: &Path,
        prefix: &str,
        manifest: &ModelManifest,
    ) -> Result<Vec<FileEntry>> {
        let mut out = Vec::with_capacity(manifest.files.len());
        for f in &manifest.files {
            let local = root.join(&f.path);
            let mut file = tokio::fs::File::open(&local)
                .await
                .map_err(|e| Error::io(local.display(), e))?;
            let stored = self
                .artifacts
                .put(&format!("{prefix}{}", f.path), &mut file)
                .await?;
            if stored.size != f.size || (!f.sha256.is_empty() && stored.sha256 != f.sha256) {
                return Err(Error::Integrity {
                    path: local.display().to_string(),
                    reason: format!(
                        "changed while it was being registered: recorded {} bytes sha256 '{}', \
                         stored {} bytes sha256 '{}'",
                        f.size, f.sha256, stored.size, stored.sha256
                    ),
                });
            }
            out.push(FileEntry {
                path: f.path.clone(),
                size: stored.size,
                sha256: stored.sha256,
            });
        }
        Ok(out)
    }

    /// Downloads a READY (or archived) version's files into `dest` (created if missing),
    /// checking each file's size and sha256 against the manifest: a corrupt artifact is
    /// [`Error::Integrity`] and leaves no file at its path.
    pub async fn download(&self, reference: &str, dest: &Path) -> Result<Downloaded> {
        let version = self.resolve(reference).await?;
        if !matches!(
            version.status,
            VersionStatus::Ready | VersionStatus::Archived
        ) {
            return Err(Error::FailedPrecondition(format!(
                "model '{}' version {} is {}: it has no complete artifacts",
                version.name, version.version, version.status
            )));
        }
        let Some(manifest) = version.manifest.clone() else {
            return self.download_from_source(version, dest).await;
        };
        if !manifest.entry.path.is_empty() {
            check_store_path(&manifest.entry.path)?;
        }
        let prefix = self.folder_of(&version);
        for f in &manifest.files {
            check_store_path(&f.path)?;
            self.fetch_file(&format!("{prefix}{}", f.path), f, &dest.join(&f.path), true)
                .await?;
        }
        let entry = dest.join(&manifest.entry.path);
        Ok(Downloaded {
            version,
            root: dest.to_path_buf(),
            entry,
        })
    }

    /// Where a version's files are in the store: the folder its source names (an MLflow
    /// version's), else the registry's own layout.
    fn folder_of(&self, version: &ModelVersion) -> String {
        version
            .source
            .as_deref()
            .and_then(|s| self.artifacts.locate(s))
            .unwrap_or_else(|| version_prefix(&version.name, version.version))
    }

    /// A version registered elsewhere (logged with MLflow's own client): no manifest with
    /// digests, so every file its source folder lists is downloaded and checked against the
    /// size the store lists, then the package is described from what arrived (an MLflow
    /// model's `MLmodel` names its flavors and signature). A package no runtime here can
    /// load is refused, naming what it holds.
    async fn download_from_source(&self, version: ModelVersion, dest: &Path) -> Result<Downloaded> {
        let who = format!("model '{}' version {}", version.name, version.version);
        let prefix = version
            .source
            .as_deref()
            .and_then(|s| self.artifacts.locate(s))
            .ok_or_else(|| {
                Error::FailedPrecondition(format!(
                    "{who} has no manifest and its source ({}) is not in this registry's \
                     artifact store ({})",
                    version.source.as_deref().unwrap_or("none"),
                    self.artifacts.uri()
                ))
            })?;
        let files = self.artifacts.list(&prefix).await?;
        if files.is_empty() {
            return Err(Error::FailedPrecondition(format!(
                "{who}: its source {} holds no files",
                version.source.as_deref().unwrap_or_default()
            )));
        }
        for path in &files {
            let relative = path.strip_prefix(&prefix).unwrap_or(path);
            check_store_path(relative)?;
            let size = self
                .artifacts
                .size(path)
                .await?
                .ok_or_else(|| Error::not_found(format!("artifact '{path}' of {who}")))?;
            let want = FileEntry {
                path: relative.to_owned(),
                size,
                sha256: String::new(),
            };
            self.fetch_file(path, &want, &dest.join(relative), false)
                .await?;
        }
        let root = dest.to_path_buf();
        let manifest = tokio::task::spawn_blocking(move || ModelManifest::describe(&root))
            .await
            .map_err(|e| Error::io(dest.display(), std::io::Error::other(e)))??;
        if manifest.entry.format == mlops_core::ModelFormat::Mlflow {
            let flavors = manifest
                .mlflow
                .as_ref()
                .map(|m| m.flavors.keys().cloned().collect::<Vec<_>>().join(", "))
                .unwrap_or_default();
            return Err(Error::FailedPrecondition(format!(
                "{who} is an MLflow model with the flavors [{flavors}]; the runtimes here \
                 serve the 'onnx' flavor (and 'tensorflow' SavedModels through a converter)"
            )));
        }
        let entry = dest.join(&manifest.entry.path);
        Ok(Downloaded {
            version,
            root: dest.to_path_buf(),
            entry,
        })
    }

    async fn fetch_file(
        &self,
        store_path: &str,
        want: &FileEntry,
        target: &Path,
        check_digest: bool,
    ) -> Result<()> {
        if let Some(parent) = target.parent() {
            tokio::fs::create_dir_all(parent)
                .await
                .map_err(|e| Error::io(parent.display(), e))?;
        }
        let part = target.with_extension(format!(
            "{}part",
            target
                .extension()
                .map(|e| format!("{}.", e.to_string_lossy()))
                .unwrap_or_default()
        ));
        let result = async {
            let mut out = tokio::fs::File::create(&part)
                .await
                .map_err(|e| Error::io(part.display(), e))?;
            let mut stream = self.artifacts.get(store_path).await?;
            let mut hasher = Sha256::new();
            let mut size = 0u64;
            while let Some(chunk) = stream.next().await {
                let chunk = chunk?;
                size += chunk.len() as u64;
                let for_hash = chunk.clone();
                let hashing = tokio::task::spawn_blocking(move || {
                    hasher.update(&for_hash);
                    hasher
                });
                let (hashed, written) = tokio::join!(hashing, out.write_all(&chunk));
                written.map_err(|e| Error::io(part.display(), e))?;
                hasher = hashed.map_err(|e| Error::io("sha256", std::io::Error::other(e)))?;
            }
            out.sync_all()
                .await
                .map_err(|e| Error::io(part.display(), e))?;
            let sha256 = hex::encode(hasher.finalize());
            if size != want.size || (check_digest && sha256 != want.sha256) {
                return Err(Error::Integrity {
                    path: store_path.to_owned(),
                    reason: format!(
                        "recorded {} bytes sha256 {}, stored {size} bytes sha256 {sha256}",
                        want.size, want.sha256
                    ),
                });
            }
            tokio::fs::rename(&part, target)
                .await
                .map_err(|e| Error::io(target.display(), e))
        }
        .await;
        if result.is_err() {
            let _ = tokio::fs::remove_file(&part).await;
        }
        result
    }

    /// Marks FAILED every version still PENDING after `older_than` (a registering process
    /// that died, say) and deletes the files it had stored; returns them as `(name,
    /// version)`. Pick `older_than` well above the longest registration: a version whose
    /// upload is still running would be failed under it.
    pub async fn fail_stale_pending(
        &self,
        older_than: Duration,
        change: &Change,
    ) -> Result<Vec<(String, u64)>> {
        let cutoff = chrono::Utc::now()
            - chrono::TimeDelta::from_std(older_than).map_err(|e| Error::invalid(e.to_string()))?;
        let query = crate::model::VersionQuery::default().with_status(VersionStatus::Pending);
        let mut failed = Vec::new();
        for v in self.models.search_versions(&query).await? {
            if v.created_at > cutoff {
                continue;
            }
            let reason = format!("registration did not finish within {older_than:?}");
            match self
                .models
                .set_version_status(
                    &v.name,
                    v.version,
                    VersionStatus::Failed,
                    Some(&reason),
                    change,
                )
                .await
            {
                Ok(_) => {}
                // Finished (or failed) meanwhile: not stale after all.
                Err(Error::FailedPrecondition(_)) => continue,
                Err(e) => return Err(e),
            }
            self.artifacts.delete_all(&self.folder_of(&v)).await?;
            failed.push((v.name, v.version));
        }
        Ok(failed)
    }

    /// Deletes a version (refused while an alias points at it), then its files.
    pub async fn delete_version(&self, name: &str, version: u64, change: &Change) -> Result<()> {
        let folder = self.folder_of(&self.models.get_version(name, version).await?);
        self.models.delete_version(name, version, change).await?;
        self.artifacts.delete_all(&folder).await
    }

    /// Deletes a model, its versions and aliases, then its files.
    pub async fn delete_model(&self, name: &str, change: &Change) -> Result<()> {
        crate::model::check_name(name)?;
        self.models.delete_model(name, change).await?;
        self.artifacts.delete_all(&format!("models/{name}/")).await
    }

    /// Validates a candidate against the alias's current version and moves the alias only
    /// if every check passes. The report is stored on the candidate either way; the alias
    /// moves by compare-and-set from the baseline version, with the report in the audit
    /// event. No human in the loop.
    pub async fn promote_if_valid(
        &self,
        promotion: Promotion<'_>,
        change: &Change,
    ) -> Result<PromotionOutcome> {
        let Promotion {
            model,
            alias,
            candidate,
            baseline,
            cases,
            policy,
        } = promotion;
        crate::model::check_alias(alias)?;
        let cand = self.models.get_version(model, candidate.0).await?;
        if cand.status != VersionStatus::Ready {
            return Err(Error::FailedPrecondition(format!(
                "candidate '{model}' version {} is {}, not READY",
                cand.version, cand.status
            )));
        }
        // Fail fast if the alias already moved; the final compare-and-set re-checks.
        let current = match self.models.resolve(&ModelRef::alias(model, alias)).await {
            Ok(v) => Some(v.version),
            Err(Error::NotFound { .. }) => None,
            Err(e) => return Err(e),
        };
        let expected = baseline.map(|(v, _)| v);
        if current != expected {
            return Err(Error::Conflict(format!(
                "alias '{model}@{alias}' points at {current:?}, the promotion was prepared against {expected:?}"
            )));
        }
        let cand_ref = ModelRef::version(model, candidate.0).to_string();
        let base_ref = baseline.map(|(v, _)| ModelRef::version(model, v).to_string());
        let report = validate(
            (&cand_ref, candidate.1),
            baseline.map(|(_, s)| (base_ref.as_deref().unwrap_or_default(), s)),
            cases,
            policy,
        )
        .await?;
        self.models
            .set_validation(model, candidate.0, &report)
            .await?;
        if !report.passed {
            return Ok(PromotionOutcome {
                report,
                promoted: false,
            });
        }
        let expect = match expected {
            Some(v) => Expect::Version(v),
            None => Expect::Absent,
        };
        let why = match &change.reason {
            Some(r) => format!("{r}; {}", report.summary()),
            None => report.summary(),
        };
        let change = Change {
            actor: change.actor.clone(),
            reason: Some(why),
        };
        self.models
            .set_alias(model, alias, candidate.0, expect, &change, Some(&report))
            .await?;
        Ok(PromotionOutcome {
            report,
            promoted: true,
        })
    }

    /// The live endpoints serving a model id: every replica of `name`; those serving
    /// version 7 for `name/7`; those serving the alias's current version for
    /// `name@alias`.
    pub async fn endpoints_for(&self, reference: &str) -> Result<Vec<LiveEndpoint>> {
        let parsed = ModelRef::parse(reference).map_err(|e| Error::invalid(e.to_string()))?;
        let version = match &parsed.selector {
            VersionSelector::Latest => None,
            VersionSelector::Version(v) => Some(*v),
            VersionSelector::Alias(_) => Some(self.models.resolve(&parsed).await?.version),
        };
        self.endpoints.endpoints(&parsed.name, version).await
    }

    /// Registers `endpoint` and keeps its lease alive from a background task, renewing
    /// every third of `ttl` (and registering again if the lease was lost, say after a
    /// network partition). Dropping or [`stop`](Heartbeat::stop)ping the handle ends it.
    pub async fn announce(&self, endpoint: Endpoint, ttl: Duration) -> Result<Heartbeat> {
        let lease = self.endpoints.register_endpoint(&endpoint, ttl).await?;
        let directory = self.endpoints.clone();
        let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
        let current = Arc::new(std::sync::Mutex::new(lease.clone()));
        let shared = current.clone();
        let task = tokio::spawn(async move {
            let period = ttl / 3;
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(period) => {}
                    _ = stop_rx.changed() => break,
                }
                let id = lock(&shared).id.clone();
                let renewed = match directory.renew(&id, ttl).await {
                    Ok(l) => Ok(l),
                    Err(Error::NotFound { .. }) => {
                        directory.register_endpoint(&endpoint, ttl).await
                    }
                    Err(e) => Err(e),
                };
                // A failed renewal is retried at the next tick; the lease may still be live.
                match renewed {
                    Ok(l) => *lock(&shared) = l,
                    Err(e) => {
                        tracing::warn!(error = %e, "endpoint lease renewal failed: retrying at the next beat")
                    }
                }
            }
            let id = lock(&shared).id.clone();
            let _ = directory.deregister(&id).await;
        });
        Ok(Heartbeat {
            lease: current,
            stop: Some(stop_tx),
            task: Some(task),
        })
    }
}

fn lock(m: &std::sync::Mutex<Lease>) -> std::sync::MutexGuard<'_, Lease> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Keeps an endpoint's lease alive; see [`Registry::announce`].
#[derive(Debug)]
pub struct Heartbeat {
    lease: Arc<std::sync::Mutex<Lease>>,
    stop: Option<tokio::sync::watch::Sender<bool>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Heartbeat {
    /// The current lease.
    pub fn lease(&self) -> Lease {
        lock(&self.lease).clone()
    }

    /// Stops renewing and deregisters the endpoint, waiting until it is gone.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(true);
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for Heartbeat {
    fn drop(&mut self) {
        // The task deregisters on its own once told to stop.
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(true);
        }
    }
}

/// The client side of the endpoint directory: the live replicas of a model id.
impl mlops_core::ReplicaSource for Registry {
    fn replicas<'a>(&'a self, model_id: &'a str) -> mlops_core::ReplicasFuture<'a> {
        Box::pin(async move {
            let live = self.endpoints_for(model_id).await?;
            Ok(live
                .into_iter()
                .map(|e| mlops_core::Replica {
                    address: e.endpoint.address,
                    protocol: e.endpoint.protocol.as_str().to_owned(),
                    model: e.endpoint.model,
                    version: e.endpoint.version,
                })
                .collect())
        })
    }
}
