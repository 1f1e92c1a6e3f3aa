//! [`Registry`]: metadata, artifacts and endpoints together, and the workflows that span
//! them, one file each: `register` (register, fail stale registrations, delete),
//! `download` (verified downloads), `promote` (validation before an alias moves) and
//! `announce` (the endpoint directory).

mod announce;
mod download;
mod promote;
mod register;

use std::path::Path;
use std::sync::Arc;

pub use announce::Heartbeat;
pub use download::Downloaded;
pub use promote::{Promotion, PromotionOutcome};

use crate::artifact::{ArtifactStore, OpendalStore};
use crate::endpoint::EndpointDirectory;
use crate::error::{Error, Result};
use crate::memory::InMemoryRegistry;
use crate::model::ModelVersion;
use crate::registry::{ModelRegistry, ModelRegistryExt};
use crate::sql::sqlite::SqliteRegistry;

/// The registry as applications use it: a [`ModelRegistry`] for metadata, an
/// [`ArtifactStore`] for files and an [`EndpointDirectory`], with the workflows that span
/// them. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Registry {
    models: Arc<dyn ModelRegistry>,
    artifacts: Arc<dyn ArtifactStore>,
    endpoints: Arc<dyn EndpointDirectory>,
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

    /// Without the `mlflow` feature: [`Error::NotCompiled`].
    #[cfg(not(feature = "mlflow"))]
    pub fn mlflow(_uri: &str) -> Result<Self> {
        Err(Error::NotCompiled("mlflow"))
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
}
